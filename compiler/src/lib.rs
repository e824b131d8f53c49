//! Typed gRPC clients and servers for [grpcore](https://docs.rs/grpcore) from `.proto` files.
//!
//! Messages come from the codec's own generator — [prost-build] (default) or rust-protobuf
//! 3.x's `protobuf-codegen` (feature `protobuf`) — and services from ours. Use it from
//! `build.rs`, or run the `protoc-gen-grpcore` plugin with `protoc --grpcore_out=DIR`: both
//! share one generator and write the same files.
//!
//! # From `build.rs`
//!
//! ```no_run
//! // build.rs; Cargo.toml has `[build-dependencies] grpcore-compiler = "0.1"`
//! fn main() -> Result<(), grpcore_compiler::Error> {
//!     grpcore_compiler::configure().compile(&["proto/route_guide.proto"], &["proto"])
//! }
//! ```
//!
//! and in the crate, where the generated modules should live:
//!
//! ```ignore
//! pub mod proto {
//!     grpcore::include_proto!(); // include!(concat!(env!("OUT_DIR"), "/mod.rs"))
//! }
//! use proto::routeguide::route_guide_grpc::{self, RouteGuide, RouteGuideClient};
//! // or one package: pub mod routeguide { grpcore::include_proto!("routeguide"); }
//! ```
//!
//! # What is generated
//!
//! With prost, one module per proto package (`proto::routeguide`) holds its messages and,
//! per service, a module named after the service (`route_guide_grpc`). With rust-protobuf,
//! one module per proto file holds its messages, and the service modules sit beside it.
//! A service module has:
//!
//! - `SERVICE_NAME` and `methods::GET_FEATURE`…: the `grpcore::Method` descriptors;
//! - `RouteGuideClient`: one method per RPC returning a request builder — set options
//!   (`timeout`, `metadata`, `wait_for_ready`, `compression`…), then `.await` it or
//!   `.wait()` for it (unary), or `.start()` it (streaming);
//! - `trait RouteGuide`: one method per RPC, implemented with `async fn`; methods left out
//!   answer `UNIMPLEMENTED`;
//! - `service(implementation)`: the `grpcore::Service` to register with the server;
//! - `FILE_DESCRIPTORS`: the serialized descriptors of the service's proto file and of
//!   everything it imports, which `service` hands to the server for server reflection.
//!
//! ```ignore
//! struct Guide;
//! impl RouteGuide for Guide {
//!     async fn get_feature(&self, point: Point, _ctx: ServerContext) -> Result<Feature, Status> {
//!         Ok(Feature { location: Some(point), ..Default::default() })
//!     }
//! }
//! let server = ServerBuilder::new(&env).register_service(route_guide_grpc::service(Guide));
//! let client = RouteGuideClient::new(channel);
//! let feature = client.get_feature(point).timeout(Duration::from_secs(1)).await?;
//! ```
//!
//! # grpcore's proto options
//!
//! `import "grpcore/options.proto";` ([`OPTIONS_PROTO`]) needs no include path of yours:
//! [`Builder::compile`] adds the file's directory to protoc's; with the plugin, pass
//! `-I "$(protoc-gen-grpcore --include-dir)"` to protoc. Its options:
//!
//! - `(grpcore.service_deadline)` on a service, `(grpcore.deadline)` on a method (which
//!   overrides the service's field by field): `default_timeout_ms`, `max_timeout_ms`,
//!   `no_deadline_needed`. The method's descriptor in `methods` gets the
//!   `grpcore::DeadlinePolicy` through which generated clients give calls without a deadline
//!   the default, and servers refuse calls without one and bring far deadlines in;
//! - `(grpcore.code)` on the values of an enum: the enum gets `grpcore::ApplicationError`
//!   and `From<Enum> for grpcore::Status` (the mapped code, an `ErrorInfo` naming the value).
//!
//! The options are read from protoc's serialized descriptors (prost's descriptor types drop
//! them): [`Builder::generate`] does not see them, [`Builder::generate_from_descriptor_set`]
//! does.
//!
//! # protoc
//!
//! protoc is found through the `PROTOC` variable, then on `PATH`, then (feature
//! `vendored-protoc`) in the `protoc-bin-vendored` crate. `PROTOC_INCLUDE` names a
//! directory with the well-known types when protoc does not find them itself.
//!
//! [prost-build]: https://docs.rs/prost-build
#![deny(missing_docs)]

mod comments;
mod descriptors;
mod layout;
mod names;
mod options;
mod prost_gen;
#[cfg(feature = "protobuf")]
mod protobuf_gen;
mod protoc;
mod service;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use prost::Message as _;
use prost_types::FileDescriptorProto;

use options::ProtoOptions;
pub use options::{write_options_proto, OPTIONS_PROTO};
use service::{EmitOptions, MethodDef, ServiceDef};

/// Which generator writes the messages, and so which grpcore codec the stubs use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Codec {
    /// prost messages (`prost-build`), `grpcore::ProstCodec`. Needs grpcore's `prost`
    /// feature (on by default) and `prost` (and `prost-types` for well-known types) as
    /// dependencies.
    #[default]
    Prost,
    /// rust-protobuf 3.x messages (`protobuf-codegen`), `grpcore::ProtobufCodec`. Needs this
    /// crate's and grpcore's `protobuf` feature and `protobuf` as a dependency.
    Protobuf,
}

/// A file the generator wrote (or would write): its name relative to the output directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedFile {
    /// The file's name, relative to the output directory.
    pub name: String,
    /// The file's contents.
    pub content: String,
}

/// What went wrong, said so that a build log tells what to do.
#[derive(Clone, PartialEq, Eq)]
pub enum Error {
    /// protoc was not found, or could not be run.
    ProtocNotFound(String),
    /// protoc rejected the input: its message (which names the file, line and column) and
    /// what to do about it.
    Protoc {
        /// protoc's own message.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The configuration or the arguments are wrong.
    Config(String),
    /// Reading or writing a file failed.
    Io(String),
    /// A generator failed.
    Generate(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ProtocNotFound(why) => write!(
                f,
                "grpcore-compiler needs protoc, the Protocol Buffers compiler: {why}. Install it (Debian/Ubuntu: \
                 `apt-get install protobuf-compiler libprotobuf-dev`; macOS: `brew install protobuf`), set PROTOC \
                 to its path, or enable the `vendored-protoc` feature of grpcore-compiler"
            ),
            Error::Protoc { message, hint } => write!(f, "protoc failed:\n{message}\nWhat to do: {hint}"),
            Error::Config(m) => write!(f, "grpcore-compiler: {m}"),
            Error::Io(m) => write!(f, "grpcore-compiler: {m}"),
            Error::Generate(m) => write!(f, "grpcore-compiler: {m}"),
        }
    }
}

// Debug is what `fn main() -> Result<(), Error>` and `unwrap()` print in a build log: make
// it the readable message.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}

/// Settings shared by the build API and the plugin (everything that shapes the output).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) codec: Codec,
    pub(crate) client: bool,
    pub(crate) server: bool,
    pub(crate) client_overrides: Vec<(String, bool)>,
    pub(crate) server_overrides: Vec<(String, bool)>,
    pub(crate) message_attributes: Vec<(String, String)>,
    pub(crate) client_attributes: Vec<(String, String)>,
    pub(crate) server_attributes: Vec<(String, String)>,
    pub(crate) grpcore_path: String,
    pub(crate) include_file: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            codec: Codec::Prost,
            client: true,
            server: true,
            client_overrides: Vec::new(),
            server_overrides: Vec::new(),
            message_attributes: Vec::new(),
            client_attributes: Vec::new(),
            server_attributes: Vec::new(),
            grpcore_path: "::grpcore".to_string(),
            include_file: "mod.rs".to_string(),
        }
    }
}

/// Whether the proto path `pattern` (`.`, `.pkg`, `.pkg.Service`; the leading dot is
/// optional) covers the element named `full` (`pkg.Service`).
fn covers(pattern: &str, full: &str) -> bool {
    let pattern = pattern.trim_start_matches('.');
    pattern.is_empty() || full == pattern || full.starts_with(&format!("{pattern}."))
}

/// The last matching override, else the default.
fn choose(default: bool, overrides: &[(String, bool)], full: &str) -> bool {
    overrides
        .iter()
        .rev()
        .find(|(p, _)| covers(p, full))
        .map_or(default, |(_, b)| *b)
}

impl Settings {
    /// The formatted module for `def`, or `None` when neither client nor server is wanted.
    pub(crate) fn emit(&self, def: &ServiceDef, codec_type: &str) -> Result<Option<String>, Error> {
        let full = def.full_name();
        let client = choose(self.client, &self.client_overrides, &full);
        let server = choose(self.server, &self.server_overrides, &full);
        if !client && !server {
            return Ok(None);
        }
        let attributes = |list: &[(String, String)]| {
            list.iter()
                .filter(|(p, _)| covers(p, &full))
                .map(|(_, a)| a.clone())
                .collect()
        };
        let opts = EmitOptions {
            grpcore: self.grpcore_path.clone(),
            codec: format!("{}::{codec_type}", self.grpcore_path),
            client,
            server,
            client_attributes: attributes(&self.client_attributes),
            server_attributes: attributes(&self.server_attributes),
        };
        let code = service::emit(def, &opts)?;
        layout::format(&code).map(Some)
    }

    /// Applies one plugin option (`key=value`).
    fn apply(&mut self, option: &str) -> Result<(), Error> {
        let (key, value) = option.split_once('=').unwrap_or((option, "true"));
        let flag = |v: &str| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(Error::Config(format!(
                "plugin option {key}={v}: expected true or false"
            ))),
        };
        match key {
            "codec" => {
                self.codec = match value {
                    "prost" => Codec::Prost,
                    "protobuf" => Codec::Protobuf,
                    _ => {
                        return Err(Error::Config(format!(
                            "plugin option codec={value}: expected prost or protobuf"
                        )))
                    }
                }
            }
            "client" => self.client = flag(value)?,
            "server" => self.server = flag(value)?,
            "grpcore_path" => self.grpcore_path = value.to_string(),
            "include_file" => self.include_file = value.to_string(),
            _ => {
                if let Some(service) = key.strip_prefix("client:") {
                    self.client_overrides
                        .push((service.to_string(), flag(value)?));
                } else if let Some(service) = key.strip_prefix("server:") {
                    self.server_overrides
                        .push((service.to_string(), flag(value)?));
                } else {
                    return Err(Error::Config(format!(
                        "unknown plugin option {option:?}; known: codec=prost|protobuf, client=BOOL, server=BOOL, \
                         client:pkg.Service=BOOL, server:pkg.Service=BOOL, grpcore_path=PATH, include_file=NAME"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Builds the [`ServiceDef`]s of `file`, with types resolved by `resolve(full_method,
/// input_proto, output_proto)`; `files` holds the descriptors of everything `file` imports.
pub(crate) fn services_of(
    file: &FileDescriptorProto,
    files: &[FileDescriptorProto],
    options: &ProtoOptions,
    resolve: impl Fn(&str, &str, &str) -> Result<(String, String), Error>,
) -> Result<Vec<ServiceDef>, Error> {
    let mut defs = Vec::new();
    let file_descriptors = if file.service.is_empty() {
        Vec::new()
    } else {
        descriptors::closure(file, files)?
    };
    for (si, svc) in file.service.iter().enumerate() {
        let mut def = ServiceDef {
            package: file.package().to_string(),
            proto_name: svc.name().to_string(),
            docs: comments::doc_lines(file, &[6, si as i32]),
            deprecated: svc.options.as_ref().is_some_and(|o| o.deprecated()),
            methods: Vec::new(),
            file_name: file.name().to_string(),
            file_descriptors: file_descriptors.clone(),
        };
        let full = def.full_name();
        for (mi, m) in svc.method.iter().enumerate() {
            let (input, output) = resolve(
                &format!("{full}/{}", m.name()),
                m.input_type(),
                m.output_type(),
            )?;
            def.methods.push(MethodDef {
                proto_name: m.name().to_string(),
                input,
                output,
                input_proto: m.input_type().to_string(),
                output_proto: m.output_type().to_string(),
                client_streaming: m.client_streaming(),
                server_streaming: m.server_streaming(),
                docs: comments::doc_lines(file, &[6, si as i32, 2, mi as i32]),
                deprecated: m.options.as_ref().is_some_and(|o| o.deprecated()),
                deadline: options.deadline(&format!("{full}/{}", m.name())),
            });
        }
        defs.push(def);
    }
    Ok(defs)
}

/// A hook that adjusts prost-build's configuration.
type ProstHook = Rc<dyn Fn(&mut prost_build::Config)>;

/// Configures code generation; see [`configure`].
#[derive(Clone)]
pub struct Builder {
    settings: Settings,
    out_dir: Option<PathBuf>,
    protoc_args: Vec<OsString>,
    prost_hook: Option<ProstHook>,
    emit_rerun: Option<bool>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("settings", &self.settings)
            .field("out_dir", &self.out_dir)
            .field("protoc_args", &self.protoc_args)
            .field("prost_hook", &self.prost_hook.is_some())
            .finish()
    }
}

/// A [`Builder`] with the defaults: prost messages, client and server for every service,
/// output in `OUT_DIR` with the include file `mod.rs`.
pub fn configure() -> Builder {
    Builder::new()
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// The defaults (see [`configure`]).
    pub fn new() -> Builder {
        Builder {
            settings: Settings::default(),
            out_dir: None,
            protoc_args: Vec::new(),
            prost_hook: None,
            emit_rerun: None,
        }
    }

    /// Which generator writes the messages (default [`Codec::Prost`]).
    pub fn codec(mut self, codec: Codec) -> Builder {
        self.settings.codec = codec;
        self
    }

    /// Whether services get a client (default `true`); [`service_client`](Self::service_client)
    /// decides per service.
    pub fn build_client(mut self, enable: bool) -> Builder {
        self.settings.client = enable;
        self
    }

    /// Whether services get a server trait (default `true`);
    /// [`service_server`](Self::service_server) decides per service.
    pub fn build_server(mut self, enable: bool) -> Builder {
        self.settings.server = enable;
        self
    }

    /// Whether the services under `path` (`.pkg.Service`, or a package `.pkg`) get a
    /// client, overriding [`build_client`](Self::build_client). The last matching call wins.
    pub fn service_client(mut self, path: impl Into<String>, enable: bool) -> Builder {
        self.settings.client_overrides.push((path.into(), enable));
        self
    }

    /// Whether the services under `path` get a server trait, overriding
    /// [`build_server`](Self::build_server). The last matching call wins.
    pub fn service_server(mut self, path: impl Into<String>, enable: bool) -> Builder {
        self.settings.server_overrides.push((path.into(), enable));
        self
    }

    /// Puts `attribute` (`#[derive(Hash)]`) on the messages and enums under `path`
    /// (`.` for all, `.pkg`, `.pkg.Message`).
    pub fn message_attribute(
        mut self,
        path: impl Into<String>,
        attribute: impl Into<String>,
    ) -> Builder {
        self.settings
            .message_attributes
            .push((path.into(), attribute.into()));
        self
    }

    /// Puts `attribute` (`#[cfg(feature = "client")]`) on the client struct and on its impl
    /// block, for the services under `path`: it must suit both (`cfg` does, `must_use` not).
    pub fn client_attribute(
        mut self,
        path: impl Into<String>,
        attribute: impl Into<String>,
    ) -> Builder {
        self.settings
            .client_attributes
            .push((path.into(), attribute.into()));
        self
    }

    /// Puts `attribute` on the server trait and registration functions of the services
    /// under `path`.
    pub fn server_attribute(
        mut self,
        path: impl Into<String>,
        attribute: impl Into<String>,
    ) -> Builder {
        self.settings
            .server_attributes
            .push((path.into(), attribute.into()));
        self
    }

    /// The path generated code names grpcore by (default `::grpcore`), for crates that
    /// re-export it.
    pub fn grpcore_path(mut self, path: impl Into<String>) -> Builder {
        self.settings.grpcore_path = path.into();
        self
    }

    /// Where to write the files (default: `OUT_DIR`).
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Builder {
        self.out_dir = Some(dir.into());
        self
    }

    /// The name of the include file that declares the generated modules (default `mod.rs`).
    pub fn include_file(mut self, name: impl Into<String>) -> Builder {
        self.settings.include_file = name.into();
        self
    }

    /// An extra argument for protoc (for example `--experimental_allow_proto3_optional`).
    pub fn protoc_arg(mut self, arg: impl Into<OsString>) -> Builder {
        self.protoc_args.push(arg.into());
        self
    }

    /// Adjusts prost-build's own configuration (extern paths, `bytes`, `btree_map`…) before
    /// it runs. [`Codec::Prost`] only; the plugin has no equivalent.
    pub fn configure_prost(mut self, hook: impl Fn(&mut prost_build::Config) + 'static) -> Builder {
        self.prost_hook = Some(Rc::new(hook));
        self
    }

    /// Whether to print `cargo:rerun-if-changed` lines for the protos and their imports
    /// (default: when run by Cargo, that is when `OUT_DIR` is set).
    pub fn emit_rerun_if_changed(mut self, enable: bool) -> Builder {
        self.emit_rerun = Some(enable);
        self
    }

    /// Applies the plugin's parameter (`--grpcore_opt=codec=protobuf,client=false`): options
    /// separated by commas, each `key=value`. Used by `protoc-gen-grpcore`.
    pub fn plugin_parameter(mut self, parameter: &str) -> Result<Builder, Error> {
        for option in parameter
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
        {
            self.settings.apply(option)?;
        }
        Ok(self)
    }

    /// Runs protoc on `protos` (searching imports in `includes`), generates messages and
    /// services, and writes them to the output directory.
    pub fn compile(
        self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(), Error> {
        let protos: Vec<PathBuf> = protos.iter().map(|p| p.as_ref().to_path_buf()).collect();
        let includes: Vec<PathBuf> = includes.iter().map(|p| p.as_ref().to_path_buf()).collect();
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR").map(PathBuf::from).ok_or_else(|| {
                Error::Config("OUT_DIR is not set (not run from build.rs?): set the output with out_dir()".into())
            })?,
        };
        let rerun = self
            .emit_rerun
            .unwrap_or_else(|| std::env::var_os("OUT_DIR").is_some());
        if rerun {
            println!("cargo:rerun-if-env-changed=PROTOC");
            println!("cargo:rerun-if-env-changed=PROTOC_INCLUDE");
            for proto in &protos {
                println!("cargo:rerun-if-changed={}", proto.display());
            }
        }
        let protoc = protoc::find().map_err(|e| match e {
            Error::ProtocNotFound(why) => {
                let names: Vec<String> = protos.iter().map(|p| p.display().to_string()).collect();
                Error::ProtocNotFound(format!(
                    "{why}; it is needed to compile {}",
                    names.join(", ")
                ))
            }
            other => other,
        })?;
        let (set, encoded) = protoc::descriptors(&protoc, &protos, &includes, &self.protoc_args)?;
        if rerun {
            for file in &set.file {
                if let Some(path) = protoc::locate(file.name(), &includes) {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
        let raw = options::RawFiles::decode(encoded.as_slice())
            .map_err(|e| Error::Io(format!("protoc wrote descriptors that do not decode: {e}")))?;
        let options = ProtoOptions::read(raw.file.iter().map(Vec::as_slice))?;
        let files = self.generate_with(set.file, &options)?;
        std::fs::create_dir_all(&out_dir).map_err(|e| {
            Error::Io(format!(
                "creating the output directory {}: {e}",
                out_dir.display()
            ))
        })?;
        for file in files {
            let path = out_dir.join(&file.name);
            // Rewriting an unchanged file would make Cargo rebuild what includes it.
            if std::fs::read(&path).ok().as_deref() == Some(file.content.as_bytes()) {
                continue;
            }
            std::fs::write(&path, &file.content)
                .map_err(|e| Error::Io(format!("writing {}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// Generates the files for `files`: descriptors of the protos and of everything they
    /// import, dependencies first, as protoc gives them (`--include_imports`, or a plugin's
    /// request). Files of the well-known types, and `grpcore/options.proto`, are left to
    /// the runtime crates.
    ///
    /// prost's descriptor types drop custom options, so grpcore's own
    /// (`grpcore/options.proto`: deadlines, error codes) are not seen here: use
    /// [`generate_from_descriptor_set`](Self::generate_from_descriptor_set) to have them.
    pub fn generate(&self, files: Vec<FileDescriptorProto>) -> Result<Vec<GeneratedFile>, Error> {
        self.generate_with(files, &ProtoOptions::default())
    }

    /// Like [`generate`](Self::generate), from a serialized `FileDescriptorSet` as protoc
    /// writes it (`protoc --include_imports -o FILE`), reading grpcore's proto options
    /// (`grpcore/options.proto`) too. The plugin uses it.
    pub fn generate_from_descriptor_set(&self, encoded: &[u8]) -> Result<Vec<GeneratedFile>, Error> {
        let bad = |e: prost::DecodeError| Error::Config(format!("the descriptor set does not decode: {e}"));
        let set = prost_types::FileDescriptorSet::decode(encoded).map_err(bad)?;
        let raw = options::RawFiles::decode(encoded).map_err(bad)?;
        let options = ProtoOptions::read(raw.file.iter().map(Vec::as_slice))?;
        self.generate_with(set.file, &options)
    }

    fn generate_with(&self, files: Vec<FileDescriptorProto>, options: &ProtoOptions) -> Result<Vec<GeneratedFile>, Error> {
        match self.settings.codec {
            Codec::Prost => prost_gen::generate(&self.settings, &files, options, self.prost_hook.as_deref()),
            #[cfg(feature = "protobuf")]
            Codec::Protobuf => protobuf_gen::generate(&self.settings, &files, options),
            #[cfg(not(feature = "protobuf"))]
            Codec::Protobuf => Err(Error::Config(
                "Codec::Protobuf needs the `protobuf` feature of grpcore-compiler (in [build-dependencies])".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{choose, covers};

    #[test]
    fn paths_cover_services() {
        assert!(covers(".", "a.B"));
        assert!(covers(".a", "a.B"));
        assert!(covers("a.B", "a.B"));
        assert!(!covers(".a.B", "a.Bc"));
        assert!(!covers(".ab", "a.B"));
        let overrides = vec![(".a".to_string(), false), (".a.B".to_string(), true)];
        assert!(choose(false, &overrides, "a.B"));
        assert!(!choose(true, &overrides, "a.C"));
        assert!(choose(true, &overrides, "b.C"));
    }
}
