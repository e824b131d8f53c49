//! The service generator: one Rust module per proto service with the method descriptors,
//! a client, a server trait and the function that turns an implementation into a
//! `grpcore::Service`. The same for every codec: only the message paths and the codec
//! type differ, and those come in resolved.

use std::fmt::Write as _;

use crate::descriptors;
use crate::names;
use crate::options::{code_variant, Deadline, ErrorEnum};
use crate::Error;

/// A service, with its message types already resolved to Rust paths.
#[derive(Clone, Debug)]
pub(crate) struct ServiceDef {
    /// The proto package (`routeguide`), possibly empty.
    pub(crate) package: String,
    /// The service's name in the proto (`RouteGuide`).
    pub(crate) proto_name: String,
    /// Doc lines from the proto comments.
    pub(crate) docs: Vec<String>,
    /// `option deprecated = true`.
    pub(crate) deprecated: bool,
    /// The methods, in proto order.
    pub(crate) methods: Vec<MethodDef>,
    /// The name of the proto file that declares the service (`route_guide.proto`).
    pub(crate) file_name: String,
    /// The serialized descriptors of that file and of everything it imports, its own first.
    pub(crate) file_descriptors: Vec<Vec<u8>>,
}

/// One method of a [`ServiceDef`].
#[derive(Clone, Debug)]
pub(crate) struct MethodDef {
    /// The method's name in the proto (`GetFeature`).
    pub(crate) proto_name: String,
    /// The request type as a Rust path relative to the module that holds the service
    /// module (`Point`, `super::other::Point`), or absolute (`::prost_types::Empty`, `()`).
    pub(crate) input: String,
    /// The response type, like `input`.
    pub(crate) output: String,
    /// The request type's full proto name (`.routeguide.Point`), for docs.
    pub(crate) input_proto: String,
    /// The response type's full proto name.
    pub(crate) output_proto: String,
    /// Whether the client streams requests.
    pub(crate) client_streaming: bool,
    /// Whether the server streams responses.
    pub(crate) server_streaming: bool,
    /// Doc lines from the proto comments.
    pub(crate) docs: Vec<String>,
    /// `option deprecated = true`.
    pub(crate) deprecated: bool,
    /// The deadline policy from grpcore's options (the service's and the method's).
    pub(crate) deadline: Option<Deadline>,
}

impl ServiceDef {
    /// `package.Service`.
    pub(crate) fn full_name(&self) -> String {
        if self.package.is_empty() {
            self.proto_name.clone()
        } else {
            format!("{}.{}", self.package, self.proto_name)
        }
    }

    /// The name of the module generated for the service: `route_guide_grpc`.
    pub(crate) fn module_name(&self) -> String {
        format!(
            "{}_grpc",
            names::unraw(&names::snake(&self.proto_name)).trim_end_matches('_')
        )
    }
}

/// What to emit for one service.
#[derive(Clone, Debug)]
pub(crate) struct EmitOptions {
    /// The path of the grpcore crate in generated code (`::grpcore`).
    pub(crate) grpcore: String,
    /// The codec type (`::grpcore::ProstCodec`).
    pub(crate) codec: String,
    /// Emit the client.
    pub(crate) client: bool,
    /// Emit the server trait and registration functions.
    pub(crate) server: bool,
    /// Attributes put on the client struct.
    pub(crate) client_attributes: Vec<String>,
    /// Attributes put on the server trait and registration functions.
    pub(crate) server_attributes: Vec<String>,
}

/// Client methods the generated client has besides the RPCs, its derived `clone` included
/// (an inherent `clone(&self, request)` would hide `Clone::clone` from method calls); an RPC
/// with one of these names gets a `_call` suffix.
const CLIENT_HELPERS: &[&str] = &["new", "with_default_options", "channel", "clone"];

/// The method's kind, as the runtime names it.
fn kind(m: &MethodDef) -> Kind {
    match (m.client_streaming, m.server_streaming) {
        (false, false) => Kind::Unary,
        (true, false) => Kind::ClientStreaming,
        (false, true) => Kind::ServerStreaming,
        (true, true) => Kind::Duplex,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unary,
    ClientStreaming,
    ServerStreaming,
    Duplex,
}

impl Kind {
    fn constructor(self) -> &'static str {
        match self {
            Kind::Unary => "unary",
            Kind::ClientStreaming => "client_streaming",
            Kind::ServerStreaming => "server_streaming",
            Kind::Duplex => "duplex",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Unary => "unary",
            Kind::ClientStreaming => "client streaming",
            Kind::ServerStreaming => "server streaming",
            Kind::Duplex => "bidirectional streaming",
        }
    }

    fn builder(self) -> &'static str {
        match self {
            Kind::Unary => "UnaryRequest",
            Kind::ClientStreaming => "ClientStreamingRequest",
            Kind::ServerStreaming => "ServerStreamingRequest",
            Kind::Duplex => "DuplexRequest",
        }
    }

    fn add(self) -> &'static str {
        match self {
            Kind::Unary => "add_unary",
            Kind::ClientStreaming => "add_client_streaming",
            Kind::ServerStreaming => "add_server_streaming",
            Kind::Duplex => "add_duplex",
        }
    }
}

/// `path` as seen from `depth` modules below the module it is relative to.
fn rel(path: &str, depth: usize) -> String {
    if path.starts_with("::") || path.starts_with('(') || path.starts_with("crate::") {
        path.to_string()
    } else {
        format!("{}{path}", "super::".repeat(depth))
    }
}

/// A `#[doc]` attribute per line.
fn doc(out: &mut String, lines: &[String]) {
    for line in lines {
        let text = if line.is_empty() {
            String::new()
        } else {
            format!(" {line}")
        };
        let _ = writeln!(out, "#[doc = {text:?}]");
    }
}

/// Doc lines: `first` (a paragraph of ours), then the proto's comment as its own paragraph.
fn docs_with(first: &[String], proto: &[String]) -> Vec<String> {
    let mut lines = first.to_vec();
    if !proto.is_empty() {
        if !lines.is_empty() {
            lines.push(String::new());
        }
        lines.extend(proto.iter().cloned());
    }
    lines
}

/// The module for `service`, as unformatted Rust source.
pub(crate) fn emit(service: &ServiceDef, opts: &EmitOptions) -> Result<String, Error> {
    let full = service.full_name();
    let g = &opts.grpcore;
    let codec = &opts.codec;
    let base = names::unraw(&names::camel(&service.proto_name))
        .trim_end_matches('_')
        .to_string();
    let trait_name = names::camel(&service.proto_name);
    let client_name = format!("{base}Client");
    let generic = if trait_name == "I" { "Impl" } else { "I" };

    // Rust names per method, checked for clashes.
    let mut fn_names = Vec::new();
    let mut const_names = Vec::new();
    for m in &service.methods {
        let f = names::snake(&m.proto_name);
        let c = names::shouty(&m.proto_name);
        if fn_names.contains(&f) || const_names.contains(&c) {
            return Err(Error::Generate(format!(
                "service {full}: method {} has the same Rust name ({f}, {c}) as another method; rename one of them",
                m.proto_name
            )));
        }
        fn_names.push(f);
        const_names.push(c);
    }

    let mut out = String::new();
    // The module's docs resolve links from the enclosing module: name paths through it.
    let module = service.module_name();
    let mut parts = Vec::new();
    if opts.client {
        parts.push(format!("its client [`{client_name}`]({module}::{client_name})"));
    }
    if opts.server {
        parts.push(format!(
            "the server trait [`{trait_name}`]({module}::{trait_name}) with \
             [`service`]({module}::service) to serve an implementation"
        ));
    }
    parts.push(format!("the method descriptors in [`methods`]({module}::methods)"));
    let last = parts.pop().unwrap_or_default();
    let listed = if parts.is_empty() {
        last
    } else {
        format!("{}, and {last}", parts.join(", "))
    };
    let service_docs = docs_with(
        &[format!("The gRPC service `{full}`: {listed}.")],
        &service.docs,
    );
    doc(&mut out, &service_docs);
    if service.deprecated {
        out.push_str("#[deprecated]\n");
    }
    let _ = writeln!(out, "pub mod {} {{", service.module_name());
    // Most programs use a part of a service (its client only, some of its methods), often
    // from a private module: the parts they leave must not warn. RPC names are the proto's:
    // `New` or `IntoX` become trait methods taking `&self`, as every handler does.
    out.push_str("#![allow(dead_code, clippy::wrong_self_convention)]\n");
    doc(&mut out, &[format!("The service's full name, `{full}`.")]);
    let _ = writeln!(out, "pub const SERVICE_NAME: &str = {full:?};");
    let mut descriptor_docs = vec![
        format!("The serialized `FileDescriptorProto`s of `{}`, which declares the service, and of", service.file_name),
        "every file it imports, directly or not (its own first, without source info): what server".to_string(),
        "reflection needs to describe the service.".to_string(),
    ];
    if opts.server {
        descriptor_docs[2] = "reflection needs to describe the service; [`service`] hands them to the server.".to_string();
    }
    doc(&mut out, &descriptor_docs);
    let literals: Vec<String> = service.file_descriptors.iter().map(|d| descriptors::byte_string(d)).collect();
    let _ = writeln!(out, "pub const FILE_DESCRIPTORS: &[&[u8]] = &[{}];", literals.join(", "));

    // Method descriptors.
    doc(
        &mut out,
        &[
            format!("Descriptors of the methods of `{full}`, for calls and services built by hand"),
            "(`Channel::unary` and the like, `ServiceBuilder`).".to_string(),
        ],
    );
    out.push_str("pub mod methods {\n");
    for (m, c) in service.methods.iter().zip(&const_names) {
        let k = kind(m);
        let mut first = vec![format!(
            "`/{full}/{}`, {}: `{}` → `{}`.",
            m.proto_name,
            k.describe(),
            m.input_proto.trim_start_matches('.'),
            m.output_proto.trim_start_matches('.')
        )];
        if let Some(d) = &m.deadline {
            first.push(String::new());
            first.push(describe_deadline(d));
        }
        let lines = docs_with(&first, &m.docs);
        doc(&mut out, &lines);
        if m.deprecated {
            out.push_str("#[deprecated]\n");
        }
        let policy = m.deadline.as_ref().map_or_else(String::new, |d| policy_expr(d, g));
        let _ = writeln!(
            out,
            "pub const {c}: {g}::Method<{}, {}, {codec}> = {g}::Method::{}({:?}){policy};",
            rel(&m.input, 2),
            rel(&m.output, 2),
            k.constructor(),
            format!("/{full}/{}", m.proto_name)
        );
    }
    out.push_str("}\n");

    if opts.client {
        emit_client(
            &mut out,
            service,
            opts,
            &client_name,
            &fn_names,
            &const_names,
        );
    }
    if opts.server {
        emit_server(
            &mut out,
            service,
            opts,
            &trait_name,
            generic,
            &fn_names,
            &const_names,
        );
    }
    out.push_str("}\n");
    Ok(out)
}

fn emit_client(
    out: &mut String,
    service: &ServiceDef,
    opts: &EmitOptions,
    client_name: &str,
    fn_names: &[String],
    const_names: &[String],
) {
    let full = service.full_name();
    let g = &opts.grpcore;
    let lines = docs_with(
        &[
            format!("A client of `{full}`."),
            String::new(),
            "Each method returns a request builder: set the call's options on it (`timeout`,".to_string(),
            "`deadline`, `metadata`, `wait_for_ready`, `compression`, `parent`), then `.await` it or".to_string(),
            "call `.wait()` to block (unary methods: the response message; `.response()` for its".to_string(),
            "metadata too), poll it as a `Stream` or `.start()` it (server streaming), or `.start()`".to_string(),
            "it (client and bidirectional streaming). Builders own a handle to the channel, so".to_string(),
            "they can be spawned or joined as they are.".to_string(),
            "Cloning a client is cheap: clones share the channel.".to_string(),
        ],
        &service.docs,
    );
    doc(out, &lines);
    for a in &opts.client_attributes {
        let _ = writeln!(out, "{a}");
    }
    let _ = writeln!(
        out,
        "#[derive(Clone, Debug)]\npub struct {client_name} {{ channel: {g}::Channel, options: {g}::CallOptions, }}"
    );
    for a in &opts.client_attributes {
        let _ = writeln!(out, "{a}");
    }
    let _ = writeln!(out, "impl {client_name} {{");
    doc(
        out,
        &["A client whose calls go over `channel`.".to_string()],
    );
    let _ = writeln!(
        out,
        "pub fn new(channel: {g}::Channel) -> Self {{ Self {{ channel, options: {g}::CallOptions::new() }} }}"
    );
    doc(
        out,
        &[
            "The same client with `options` as the options every call starts from (a default"
                .to_string(),
            "timeout, metadata for every call); a call's own setters change them for that call."
                .to_string(),
        ],
    );
    let _ = writeln!(
        out,
        "pub fn with_default_options(mut self, options: {g}::CallOptions) -> Self {{ self.options = options; self }}"
    );
    doc(out, &["The channel the calls go over.".to_string()]);
    let _ = writeln!(
        out,
        "pub fn channel(&self) -> &{g}::Channel {{ &self.channel }}"
    );

    for ((m, f), c) in service.methods.iter().zip(fn_names).zip(const_names) {
        let k = kind(m);
        let name = if CLIENT_HELPERS.contains(&f.as_str()) {
            format!("{f}_call")
        } else {
            f.clone()
        };
        let what = match k {
            Kind::Unary => {
                "`.await` the builder (or `.wait()` for it) for the response message".to_string()
            }
            Kind::ClientStreaming => {
                "`.start()` the builder for the request sink and the response future".to_string()
            }
            Kind::ServerStreaming => {
                "`.start()` the builder for the stream of responses".to_string()
            }
            Kind::Duplex => {
                "`.start()` the builder for the request sink and the response stream".to_string()
            }
        };
        let lines = docs_with(
            &[format!(
                "Calls `{}` ({}): {what}.",
                m.proto_name,
                k.describe()
            )],
            &m.docs,
        );
        doc(out, &lines);
        if m.deprecated {
            out.push_str("#[deprecated]\n#[allow(deprecated)]\n");
        }
        let (input, output) = (rel(&m.input, 1), rel(&m.output, 1));
        let builder = k.builder();
        let takes_request = matches!(k, Kind::Unary | Kind::ServerStreaming);
        let (param, arg) = if takes_request {
            (format!(", request: {input}"), ", request")
        } else {
            (String::new(), "")
        };
        let _ = writeln!(
            out,
            "pub fn {name}(&self{param}) -> {g}::{builder}<{input}, {output}> {{ {g}::{builder}::new(&self.channel, methods::{c}{arg}, self.options.clone()) }}"
        );
    }
    out.push_str("}\n");
}

fn emit_server(
    out: &mut String,
    service: &ServiceDef,
    opts: &EmitOptions,
    trait_name: &str,
    generic: &str,
    fn_names: &[String],
    const_names: &[String],
) {
    let full = service.full_name();
    let g = &opts.grpcore;
    let lines = docs_with(
        &[
            format!(
                "The server side of `{full}`: implement the methods you serve (with `async fn`),"
            ),
            "then register [`service`]`(implementation)` with the server builder. Methods left"
                .to_string(),
            "out answer `UNIMPLEMENTED`.".to_string(),
        ],
        &service.docs,
    );
    doc(out, &lines);
    for a in &opts.server_attributes {
        let _ = writeln!(out, "{a}");
    }
    let _ = writeln!(
        out,
        "pub trait {trait_name}: ::core::marker::Send + ::core::marker::Sync + 'static {{"
    );
    for (m, f) in service.methods.iter().zip(fn_names) {
        let k = kind(m);
        let (input, output) = (rel(&m.input, 1), rel(&m.output, 1));
        let lines = docs_with(
            &[format!(
                "`{}` ({}). By default, answers `UNIMPLEMENTED`.",
                m.proto_name,
                k.describe()
            )],
            &m.docs,
        );
        doc(out, &lines);
        if m.deprecated {
            out.push_str("#[deprecated]\n");
        }
        let (params, names, ok) = match k {
            Kind::Unary => (format!("request: {input}, ctx: {g}::ServerContext"), "request, ctx", output.clone()),
            Kind::ClientStreaming => (
                format!("requests: {g}::RequestStream<{input}>, ctx: {g}::ServerContext"),
                "requests, ctx",
                output.clone(),
            ),
            Kind::ServerStreaming => (
                format!("request: {input}, sink: {g}::ServerSink<{output}>, ctx: {g}::ServerContext"),
                "request, sink, ctx",
                "()".to_string(),
            ),
            Kind::Duplex => (
                format!(
                    "requests: {g}::RequestStream<{input}>, sink: {g}::ServerSink<{output}>, ctx: {g}::ServerContext"
                ),
                "requests, sink, ctx",
                "()".to_string(),
            ),
        };
        let message = format!("{full}/{} is not implemented by this server", m.proto_name);
        let _ = writeln!(
            out,
            "fn {f}(&self, {params}) -> impl ::core::future::Future<Output = ::core::result::Result<{ok}, {g}::Status>> + ::core::marker::Send {{ let _ = ({names}); async {{ ::core::result::Result::Err({g}::Status::unimplemented({message:?})) }} }}"
        );
    }
    out.push_str("}\n");

    let any_deprecated = service.methods.iter().any(|m| m.deprecated);
    doc(
        out,
        &[
            format!("A `Service` serving `{full}` with `implementation`: pass it to"),
            "`ServerBuilder::register_service`.".to_string(),
        ],
    );
    for a in &opts.server_attributes {
        let _ = writeln!(out, "{a}");
    }
    let _ = writeln!(
        out,
        "pub fn service<{generic}: {trait_name}>(implementation: {generic}) -> {g}::Service {{ service_from_arc(::std::sync::Arc::new(implementation)) }}"
    );
    doc(
        out,
        &[
            "Like [`service`], for an implementation shared with other code through an `Arc`."
                .to_string(),
        ],
    );
    for a in &opts.server_attributes {
        let _ = writeln!(out, "{a}");
    }
    if any_deprecated {
        // The glue must name the deprecated methods to serve them.
        out.push_str("#[allow(deprecated)]\n");
    }
    let _ = writeln!(
        out,
        "pub fn service_from_arc<{generic}: {trait_name}>(implementation: ::std::sync::Arc<{generic}>) -> {g}::Service {{"
    );
    let _ = writeln!(out, "let builder = {g}::ServiceBuilder::new(SERVICE_NAME).file_descriptors(FILE_DESCRIPTORS);");
    if service.methods.is_empty() {
        out.push_str("drop(implementation);\n");
    }
    for ((m, f), c) in service.methods.iter().zip(fn_names).zip(const_names) {
        let k = kind(m);
        let names = match k {
            Kind::Unary => "request, ctx",
            Kind::ClientStreaming => "requests, ctx",
            Kind::ServerStreaming => "request, sink, ctx",
            Kind::Duplex => "requests, sink, ctx",
        };
        let _ = writeln!(
            out,
            "let builder = {{ let this = ::std::sync::Arc::clone(&implementation); builder.{}(&methods::{c}, move |{names}| {{ let this = ::std::sync::Arc::clone(&this); async move {{ <{generic} as {trait_name}>::{f}(&*this, {names}).await }} }}) }};",
            k.add()
        );
    }
    out.push_str("builder.build()\n}\n");
}

/// A sentence for a method's docs that says what its deadline policy does.
fn describe_deadline(d: &Deadline) -> String {
    let mut parts = Vec::new();
    if let Some(ms) = d.default_ms {
        parts.push(format!("calls without a deadline get {ms} ms from grpcore clients"));
    }
    parts.push(if d.not_needed {
        "a grpcore server accepts calls without a deadline".to_string()
    } else {
        "a grpcore server refuses calls without a deadline".to_string()
    });
    if let Some(ms) = d.max_ms {
        parts.push(format!("and gives handlers at most {ms} ms"));
    }
    format!("Deadline policy (`grpcore/options.proto`): {}.", parts.join(", "))
}

/// `.with_deadline_policy(...)` for a method descriptor with the policy `d`.
fn policy_expr(d: &Deadline, g: &str) -> String {
    let mut expr = format!("{g}::DeadlinePolicy::new()");
    if let Some(ms) = d.default_ms {
        let _ = write!(expr, ".with_default_timeout(::core::time::Duration::from_millis({ms}))");
    }
    if let Some(ms) = d.max_ms {
        let _ = write!(expr, ".with_max_timeout(::core::time::Duration::from_millis({ms}))");
    }
    if d.not_needed {
        expr.push_str(".with_deadline_required(false)");
    }
    format!(".with_deadline_policy({expr})")
}

/// How generated code turns an enum value into its number and back, per codec.
pub(crate) struct EnumNumbers {
    /// An expression of type `i32` for the value `self`.
    pub(crate) to_number: &'static str,
    /// An expression of type `Option<Self>` for the number `{n}`.
    pub(crate) from_number: &'static str,
}

/// `ApplicationError` and `From<_> for Status` for the error enum `e`, named `path` where
/// the code goes, as unformatted Rust source.
pub(crate) fn emit_error_enum(e: &ErrorEnum, path: &str, g: &str, numbers: &EnumNumbers) -> String {
    let mut code_arms = String::new();
    let mut reason_arms = String::new();
    let mut from_arms = String::new();
    for (name, number, code) in &e.values {
        if let Some(code) = code {
            let _ = write!(code_arms, "{number} => {g}::Code::{},", code_variant(*code));
        }
        let _ = write!(reason_arms, "{number} => {name:?},");
        let _ = write!(from_arms, "{name:?} => {},", numbers.from_number.replace("{n}", &number.to_string()));
    }
    let mut out = String::new();
    doc(
        &mut out,
        &[
            format!("`{}` is an application error: each value maps to the gRPC code its", e.full_name),
            "`(grpcore.code)` option names (`UNKNOWN` without one).".to_string(),
        ],
    );
    let _ = writeln!(
        out,
        "impl {g}::ApplicationError for {path} {{ \
         const DOMAIN: &'static str = {:?}; \
         fn code(self) -> {g}::Code {{ match {} {{ {code_arms} _ => {g}::Code::Unknown }} }} \
         fn reason(self) -> &'static str {{ match {} {{ {reason_arms} _ => \"\" }} }} \
         fn from_reason(reason: &str) -> ::core::option::Option<Self> {{ \
         match reason {{ {from_arms} _ => ::core::option::Option::None }} }} }}",
        e.full_name, numbers.to_number, numbers.to_number
    );
    doc(
        &mut out,
        &["The value's status: its code, its proto name as the message, and an `ErrorInfo` naming it.".to_string()],
    );
    let _ = writeln!(
        out,
        "impl ::core::convert::From<{path}> for {g}::Status {{ fn from(error: {path}) -> Self {{ \
         {g}::ApplicationError::status(error, {g}::ApplicationError::reason(error)) }} }}"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::rel;

    #[test]
    fn relative_paths() {
        assert_eq!(rel("Point", 1), "super::Point");
        assert_eq!(rel("super::a::B", 2), "super::super::super::a::B");
        assert_eq!(rel("::prost_types::Empty", 2), "::prost_types::Empty");
        assert_eq!(rel("()", 1), "()");
    }
}
