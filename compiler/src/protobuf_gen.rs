//! Messages by rust-protobuf 3.x (`protobuf-codegen`), services by us: one module per proto
//! file (rust-protobuf's layout), with the service modules of `x.proto` in `x.grpcore.rs`
//! beside them.
//!
//! rust-protobuf does not expose the Rust paths it gives messages, so [`rust_path`]
//! follows its naming rules: types keep their proto name (first letter upper-cased),
//! nested types live in a module named after their parent in snake case, other files are
//! sibling modules named after the file, and keywords get a `_` suffix.

use std::collections::HashMap;

use prost::Message as _;
use prost_types::{DescriptorProto, FileDescriptorProto};
use protobuf::reflect::{EnumDescriptor, MessageDescriptor};
use protobuf::Message as _;
use protobuf_codegen::{Customize, CustomizeCallback};

use crate::options::{self, ProtoOptions};
use crate::service::{self, EnumNumbers};
use crate::{layout, Error, GeneratedFile, Settings};

/// Files whose messages the `protobuf` crate already has.
fn provided_by_runtime(name: &str) -> bool {
    matches!(
        name,
        options::FILE_NAME |
        "google/protobuf/any.proto"
            | "google/protobuf/api.proto"
            | "google/protobuf/duration.proto"
            | "google/protobuf/empty.proto"
            | "google/protobuf/field_mask.proto"
            | "google/protobuf/source_context.proto"
            | "google/protobuf/struct.proto"
            | "google/protobuf/timestamp.proto"
            | "google/protobuf/type.proto"
            | "google/protobuf/wrappers.proto"
            | "google/protobuf/descriptor.proto"
            | "rustproto.proto"
    )
}

/// rust-protobuf enums implement `protobuf::Enum`.
const PROTOBUF_NUMBERS: EnumNumbers = EnumNumbers {
    to_number: "::protobuf::Enum::value(&self)",
    from_number: "<Self as ::protobuf::Enum>::from_i32({n})",
};

/// rust-protobuf's escaping: keywords get a `_` suffix.
fn escape(ident: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "_", "as", "async", "await", "break", "crate", "dyn", "else", "enum", "extern", "false",
        "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
        "ref", "return", "static", "self", "Self", "struct", "super", "true", "trait", "type",
        "unsafe", "use", "while", "continue", "box", "const", "where", "virtual", "proc",
        "alignof", "become", "offsetof", "priv", "pure", "sizeof", "typeof", "unsized", "yield",
        "do", "abstract", "final", "override", "macro",
    ];
    if KEYWORDS.contains(&ident) {
        format!("{ident}_")
    } else {
        ident.to_string()
    }
}

/// The module rust-protobuf writes for the proto file `name`.
fn file_module(name: &str) -> String {
    protobuf_codegen::proto_name_to_rs(name)
        .trim_end_matches(".rs")
        .to_string()
}

fn capitalize(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Where each message is: its file and its chain of names (outer first).
fn index(files: &[FileDescriptorProto]) -> HashMap<String, (String, Vec<String>)> {
    fn walk(
        map: &mut HashMap<String, (String, Vec<String>)>,
        file: &str,
        prefix: &str,
        chain: &[String],
        messages: &[DescriptorProto],
    ) {
        for m in messages {
            let full = format!("{prefix}.{}", m.name());
            let mut names = chain.to_vec();
            names.push(m.name().to_string());
            walk(map, file, &full, &names, &m.nested_type);
            map.insert(full, (file.to_string(), names));
        }
    }
    let mut map = HashMap::new();
    for f in files {
        let prefix = if f.package().is_empty() {
            String::new()
        } else {
            format!(".{}", f.package())
        };
        walk(&mut map, f.name(), &prefix, &[], &f.message_type);
    }
    map
}

/// The Rust path of the message `full` (`.pkg.Outer.Inner`) relative to the root module.
fn rust_path(index: &HashMap<String, (String, Vec<String>)>, full: &str) -> Result<String, Error> {
    let (file, chain) = index
        .get(full)
        .ok_or_else(|| Error::Generate(format!("message {full} is not in the descriptors")))?;
    let (last, outer) = chain.split_last().expect("a message has a name");
    let mut parts: Vec<String> = outer
        .iter()
        .map(|n| escape(&protobuf_parse::snake_case(n)))
        .collect();
    parts.push(escape(&capitalize(last)));
    let inner = parts.join("::");
    Ok(if file == "google/protobuf/descriptor.proto" {
        format!("::protobuf::descriptor::{inner}")
    } else if provided_by_runtime(file) {
        let stem = file.trim_start_matches("google/protobuf/");
        format!(
            "::protobuf::well_known_types::{}::{inner}",
            file_module(stem)
        )
    } else {
        format!("{}::{inner}", file_module(file))
    })
}

/// Puts the configured attributes on messages and enums.
struct Attributes(Vec<(String, String)>);

impl Attributes {
    fn for_name(&self, full: &str) -> Customize {
        let attrs: Vec<&str> = self
            .0
            .iter()
            .filter(|(p, _)| crate::covers(p, full))
            .map(|(_, a)| a.as_str())
            .collect();
        if attrs.is_empty() {
            Customize::default()
        } else {
            Customize::default().before(&attrs.join("\n"))
        }
    }
}

impl CustomizeCallback for Attributes {
    fn message(&self, message: &MessageDescriptor) -> Customize {
        self.for_name(message.full_name())
    }

    fn enumeration(&self, enum_type: &EnumDescriptor) -> Customize {
        self.for_name(enum_type.full_name())
    }
}

/// Generates the message files, the service files and the include file.
pub(crate) fn generate(
    settings: &Settings,
    files: &[FileDescriptorProto],
    options: &ProtoOptions,
) -> Result<Vec<GeneratedFile>, Error> {
    let converted = files
        .iter()
        .map(|f| protobuf::descriptor::FileDescriptorProto::parse_from_bytes(&options::without_options_import(f).encode_to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::Generate(format!("re-reading the descriptors for rust-protobuf: {e}"))
        })?;
    let wanted: Vec<&FileDescriptorProto> = files
        .iter()
        .filter(|f| !provided_by_runtime(f.name()))
        .collect();
    let to_generate = wanted
        .iter()
        .map(|f| protobuf_parse::ProtoPathBuf::new(f.name().to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::Generate(format!(
                "a proto file name rust-protobuf does not accept: {e}"
            ))
        })?;

    let dir = tempfile::tempdir()
        .map_err(|e| Error::Io(format!("creating a temporary directory: {e}")))?;
    protobuf_codegen::gen_and_write::gen_and_write(
        &converted,
        "protoc",
        &to_generate,
        dir.path(),
        &Customize::default().gen_mod_rs(false),
        &Attributes(settings.message_attributes.clone()),
    )
    .map_err(|e| Error::Generate(format!("protobuf-codegen: {e:#}")))?;

    let index = index(files);
    let mut out = Vec::new();
    let mut modules = Vec::new();
    let mut service_files = Vec::new();
    for file in &wanted {
        let module = file_module(file.name());
        let name = format!("{module}.rs");
        let path = dir.path().join(&name);
        let content = std::fs::read_to_string(&path)
            .map_err(|e| Error::Io(format!("reading rust-protobuf's {}: {e}", path.display())))?;
        out.push(GeneratedFile { name, content });
        modules.push((module.clone(), file.name().to_string()));

        let services = crate::services_of(file, files, options, |_, input, output| {
            Ok((rust_path(&index, input)?, rust_path(&index, output)?))
        })?;
        let mut code = String::new();
        let mut impls = String::new();
        for e in options.error_enums(file.name()) {
            let mut path = vec![module.clone()];
            path.extend(e.parents.iter().map(|p| escape(&protobuf_parse::snake_case(p))));
            path.push(escape(&capitalize(&e.name)));
            impls.push_str(&service::emit_error_enum(e, &path.join("::"), &settings.grpcore_path, &PROTOBUF_NUMBERS));
        }
        if !impls.is_empty() {
            code.push_str(&format!("// The application errors of `{}`.\n", file.name()));
            code.push_str(&layout::format(&impls)?);
        }
        for def in &services {
            if let Some(module_code) = settings.emit(def, "ProtobufCodec")? {
                code.push_str(&format!("// The gRPC service `{}`.\n", def.full_name()));
                code.push_str(&module_code);
            }
        }
        if !code.is_empty() {
            let name = format!("{module}.grpcore.rs");
            let header = format!(
                "// This file is @generated by grpcore-compiler from {}.\n",
                file.name()
            );
            out.push(GeneratedFile {
                name: name.clone(),
                content: header + &code,
            });
            service_files.push(name);
        }
    }
    let include = layout::flat_include_file(&modules, &service_files)?;
    if out.iter().any(|f| f.name == settings.include_file) {
        return Err(Error::Config(format!(
            "the include file {} has the name of a generated file: choose another with include_file()",
            settings.include_file
        )));
    }
    out.push(GeneratedFile {
        name: settings.include_file.clone(),
        content: include,
    });
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rust_protobuf() {
        assert_eq!(file_module("a/b/route_guide.proto"), "route_guide");
        assert_eq!(file_module("async.proto"), "async_");
        assert_eq!(escape("Self"), "Self_");
        assert_eq!(capitalize("point"), "Point");
    }
}
