//! The file descriptors a service module carries, so that a server built from generated
//! services can describe them (server reflection) with no step of the user's.
//!
//! A service module embeds the serialized `FileDescriptorProto` of the file that declares
//! the service and of every file that file imports, directly or not (well-known types
//! included): the closure a reflection client needs to build the service's types. Source
//! info (comments and positions) is dropped, as protoc-gen-go does for the descriptors it
//! embeds: it is most of a descriptor's size and no reflection client needs it.

use std::collections::HashSet;
use std::fmt::Write as _;

use prost::Message as _;
use prost_types::FileDescriptorProto;

use crate::options::{self, without_options_import};
use crate::Error;

/// The serialized descriptors of `file` (first) and of its transitive imports, found in
/// `files` by name, each once, in the order a breadth-first walk of the imports meets them.
///
/// `grpcore/options.proto` is left out, and the imports of it dropped (see
/// [`without_options_import`]).
pub(crate) fn closure(file: &FileDescriptorProto, files: &[FileDescriptorProto]) -> Result<Vec<Vec<u8>>, Error> {
    let mut seen: HashSet<&str> = HashSet::from([file.name(), options::FILE_NAME]);
    let mut order = vec![file];
    let mut next = 0;
    while next < order.len() {
        let current = order[next];
        next += 1;
        for dependency in &current.dependency {
            if !seen.insert(dependency.as_str()) {
                continue;
            }
            let found = files.iter().find(|f| f.name() == dependency).ok_or_else(|| {
                Error::Generate(format!(
                    "{} imports {dependency}, whose descriptor protoc did not pass on (run protoc with \
                     --include_imports, as compile() does)",
                    current.name()
                ))
            })?;
            order.push(found);
        }
    }
    Ok(order
        .into_iter()
        .map(|f| {
            let mut stripped = without_options_import(f);
            stripped.source_code_info = None;
            stripped.encode_to_vec()
        })
        .collect())
}

/// `bytes` as a Rust byte string literal (`b"\n\x05a.pro..."`).
pub(crate) fn byte_string(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2 + 3);
    out.push_str("b\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, imports: &[&str]) -> FileDescriptorProto {
        FileDescriptorProto {
            name: Some(name.to_string()),
            dependency: imports.iter().map(|s| s.to_string()).collect(),
            source_code_info: Some(Default::default()),
            ..Default::default()
        }
    }

    #[test]
    fn closure_walks_imports_once_each_without_source_info() {
        let files = [
            file("wkt.proto", &[]),
            file("common.proto", &["wkt.proto"]),
            file("unrelated.proto", &[]),
            file("svc.proto", &["common.proto", "wkt.proto"]),
        ];
        let got: Vec<FileDescriptorProto> = closure(&files[3], &files)
            .unwrap()
            .iter()
            .map(|b| FileDescriptorProto::decode(b.as_slice()).unwrap())
            .collect();
        let names: Vec<&str> = got.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["svc.proto", "common.proto", "wkt.proto"]);
        assert!(got.iter().all(|f| f.source_code_info.is_none()));
    }

    #[test]
    fn a_missing_import_is_an_error() {
        let files = [file("svc.proto", &["gone.proto"])];
        let err = closure(&files[0], &files).unwrap_err().to_string();
        assert!(err.contains("gone.proto"), "{err}");
    }

    #[test]
    fn byte_strings_parse_back() {
        let bytes: Vec<u8> = (0..=255).collect();
        let literal = byte_string(&bytes);
        let parsed: syn::LitByteStr = syn::parse_str(&literal).unwrap();
        assert_eq!(parsed.value(), bytes);
    }
}
