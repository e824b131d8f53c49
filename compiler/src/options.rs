//! grpcore's own proto options (`proto/grpcore/options.proto`): deadline policies on
//! services and methods, and gRPC codes on the values of application error enums.
//!
//! The options are extensions, and prost's descriptor types drop the fields they do not
//! know, extensions included. So they are read from the descriptors' bytes, as protoc wrote
//! them, through mirrors of `descriptor.proto` that hold only the path to the options (prost
//! skips every other field).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;
use prost_types::FileDescriptorProto;

use crate::Error;

/// The name protoc knows the options file by (`import "grpcore/options.proto";`).
pub(crate) const FILE_NAME: &str = "grpcore/options.proto";

/// The text of `grpcore/options.proto`, as the compiler ships it.
pub const OPTIONS_PROTO: &str = include_str!("../proto/grpcore/options.proto");

/// Writes `grpcore/options.proto` under `dir` (creating `dir/grpcore/`), so that `dir` can
/// be given to protoc as an include path (`-I dir`). The build.rs API does this itself; the
/// plugin's `--include-dir` uses it. Returns `dir`.
pub fn write_options_proto(dir: impl AsRef<Path>) -> Result<PathBuf, Error> {
    let dir = dir.as_ref();
    let path = dir.join(FILE_NAME);
    let parent = path.parent().expect("the file name has a directory");
    std::fs::create_dir_all(parent).map_err(|e| Error::Io(format!("creating {}: {e}", parent.display())))?;
    // An unchanged file is left alone (a watcher, or make, would see it change).
    if std::fs::read_to_string(&path).ok().as_deref() != Some(OPTIONS_PROTO) {
        std::fs::write(&path, OPTIONS_PROTO).map_err(|e| Error::Io(format!("writing {}: {e}", path.display())))?;
    }
    Ok(dir.to_path_buf())
}

/// `file` without its import of `grpcore/options.proto`. Descriptors re-encoded from prost's
/// types have lost the option values that needed the import, so it is dead weight: the
/// descriptors a service embeds for reflection would carry options.proto and
/// descriptor.proto (tens of kilobytes) for nothing, and rust-protobuf would name the file
/// in the descriptor it embeds, as a module nobody generated.
pub(crate) fn without_options_import(file: &FileDescriptorProto) -> FileDescriptorProto {
    let Some(at) = file.dependency.iter().position(|d| d == FILE_NAME) else {
        return file.clone();
    };
    let mut file = file.clone();
    file.dependency.remove(at);
    let at = at as i32;
    let shift = |list: &mut Vec<i32>| {
        list.retain(|&i| i != at);
        list.iter_mut().filter(|i| **i > at).for_each(|i| *i -= 1);
    };
    shift(&mut file.public_dependency);
    shift(&mut file.weak_dependency);
    file
}

/// A method's deadline policy with the service's merged in (milliseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Deadline {
    pub(crate) default_ms: Option<u64>,
    pub(crate) max_ms: Option<u64>,
    pub(crate) not_needed: bool,
}

/// An enum with `(grpcore.code)` on some of its values.
#[derive(Clone, Debug)]
pub(crate) struct ErrorEnum {
    /// The enum's full proto name, without the leading dot (`library.v1.LibraryError`).
    pub(crate) full_name: String,
    /// The messages it is nested in, outermost first (empty at the top of its file).
    pub(crate) parents: Vec<String>,
    /// Its name in the proto.
    pub(crate) name: String,
    /// Each value's name, number and code (`None`: no option, `UNKNOWN`), first name of
    /// each number only (aliases share their number's code).
    pub(crate) values: Vec<(String, i32, Option<i32>)>,
}

/// What the options of a set of files say.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProtoOptions {
    /// By `package.Service/Method`, for methods whose service or own options set a policy.
    deadlines: HashMap<String, Deadline>,
    /// By the name of the file that declares them.
    error_enums: HashMap<String, Vec<ErrorEnum>>,
}

impl ProtoOptions {
    /// Reads the options from serialized `FileDescriptorProto`s.
    pub(crate) fn read<'a>(files: impl IntoIterator<Item = &'a [u8]>) -> Result<ProtoOptions, Error> {
        let mut options = ProtoOptions::default();
        for bytes in files {
            let file = RawFile::decode(bytes).map_err(|e| Error::Generate(format!("a file descriptor does not decode: {e}")))?;
            options.add(file)?;
        }
        Ok(options)
    }

    fn add(&mut self, file: RawFile) -> Result<(), Error> {
        let package = file.package.unwrap_or_default();
        let prefix = if package.is_empty() { String::new() } else { format!("{package}.") };
        for service in &file.service {
            let full = format!("{prefix}{}", service.name());
            let from_service = service.options.as_ref().and_then(|o| o.deadline.as_ref());
            for method in &service.method {
                let own = method.options.as_ref().and_then(|o| o.deadline.as_ref());
                if from_service.is_none() && own.is_none() {
                    continue;
                }
                let pick = |f: fn(&RawDeadline) -> Option<u64>| own.and_then(f).or_else(|| from_service.and_then(f));
                let deadline = Deadline {
                    default_ms: pick(|d| d.default_timeout_ms),
                    max_ms: pick(|d| d.max_timeout_ms),
                    not_needed: own
                        .and_then(|d| d.no_deadline_needed)
                        .or_else(|| from_service.and_then(|d| d.no_deadline_needed))
                        .unwrap_or(false),
                };
                if let (Some(default), Some(max)) = (deadline.default_ms, deadline.max_ms) {
                    if default > max {
                        return Err(Error::Config(format!(
                            "{}: {full}/{}: the default timeout ({default} ms) is longer than the maximum ({max} ms), \
                             which a grpcore server would cut every default call down to; lower it or raise the maximum",
                            file.name.as_deref().unwrap_or_default(),
                            method.name()
                        )));
                    }
                }
                self.deadlines.insert(format!("{full}/{}", method.name()), deadline);
            }
        }
        let name = file.name.unwrap_or_default();
        let mut found = Vec::new();
        collect_enums(&mut found, &name, &prefix, &[], &file.enum_type, &file.message_type)?;
        if !found.is_empty() {
            self.error_enums.insert(name, found);
        }
        Ok(())
    }

    /// The policy of `package.Service/Method`, if its options set one.
    pub(crate) fn deadline(&self, full_method: &str) -> Option<Deadline> {
        self.deadlines.get(full_method).copied()
    }

    /// The error enums declared in the file `name`.
    pub(crate) fn error_enums(&self, name: &str) -> &[ErrorEnum] {
        self.error_enums.get(name).map_or(&[], Vec::as_slice)
    }
}

/// Adds the error enums of one scope (a file's top level or a message) and of the messages
/// in it.
fn collect_enums(
    out: &mut Vec<ErrorEnum>,
    file: &str,
    prefix: &str,
    parents: &[String],
    enums: &[RawEnum],
    messages: &[RawMessage],
) -> Result<(), Error> {
    for e in enums {
        if !e.value.iter().any(|v| v.options.as_ref().is_some_and(|o| o.code.is_some())) {
            continue;
        }
        let full_name = format!("{prefix}{}", e.name());
        let mut values: Vec<(String, i32, Option<i32>)> = Vec::new();
        for v in &e.value {
            let code = v.options.as_ref().and_then(|o| o.code);
            if code == Some(0) {
                return Err(Error::Config(format!(
                    "{file}: {full_name}.{} maps to OK: an application error needs an error code",
                    v.name()
                )));
            }
            if !(0..=16).contains(&code.unwrap_or(0)) {
                return Err(Error::Config(format!("{file}: {full_name}.{}: {code:?} is not a gRPC code", v.name())));
            }
            if !values.iter().any(|(_, n, _)| *n == v.number()) {
                values.push((v.name().to_string(), v.number(), code));
            }
        }
        out.push(ErrorEnum { full_name, parents: parents.to_vec(), name: e.name().to_string(), values });
    }
    for m in messages {
        let mut chain = parents.to_vec();
        chain.push(m.name().to_string());
        collect_enums(out, file, &format!("{prefix}{}.", m.name()), &chain, &m.enum_type, &m.nested_type)?;
    }
    Ok(())
}

/// The Rust name of a gRPC code (`NotFound` for 5).
pub(crate) fn code_variant(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "Ok",
        "Cancelled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("Unknown")
}

// Mirrors of descriptor.proto: only the fields on the way to grpcore's options.

#[derive(Clone, PartialEq, Message)]
struct RawFile {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    package: Option<String>,
    #[prost(message, repeated, tag = "4")]
    message_type: Vec<RawMessage>,
    #[prost(message, repeated, tag = "5")]
    enum_type: Vec<RawEnum>,
    #[prost(message, repeated, tag = "6")]
    service: Vec<RawService>,
}

#[derive(Clone, PartialEq, Message)]
struct RawMessage {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, repeated, tag = "3")]
    nested_type: Vec<RawMessage>,
    #[prost(message, repeated, tag = "4")]
    enum_type: Vec<RawEnum>,
}

#[derive(Clone, PartialEq, Message)]
struct RawEnum {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, repeated, tag = "2")]
    value: Vec<RawEnumValue>,
}

#[derive(Clone, PartialEq, Message)]
struct RawEnumValue {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(int32, optional, tag = "2")]
    number: Option<i32>,
    #[prost(message, optional, tag = "3")]
    options: Option<RawEnumValueOptions>,
}

#[derive(Clone, PartialEq, Message)]
struct RawEnumValueOptions {
    /// `(grpcore.code)`.
    #[prost(int32, optional, tag = "51510")]
    code: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
struct RawService {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, repeated, tag = "2")]
    method: Vec<RawMethod>,
    #[prost(message, optional, tag = "3")]
    options: Option<RawServiceOptions>,
}

#[derive(Clone, PartialEq, Message)]
struct RawServiceOptions {
    /// `(grpcore.service_deadline)`.
    #[prost(message, optional, tag = "51510")]
    deadline: Option<RawDeadline>,
}

#[derive(Clone, PartialEq, Message)]
struct RawMethod {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, optional, tag = "4")]
    options: Option<RawMethodOptions>,
}

#[derive(Clone, PartialEq, Message)]
struct RawMethodOptions {
    /// `(grpcore.deadline)`.
    #[prost(message, optional, tag = "51510")]
    deadline: Option<RawDeadline>,
}

/// `grpcore.DeadlineOptions`.
#[derive(Clone, PartialEq, Message)]
struct RawDeadline {
    #[prost(uint64, optional, tag = "1")]
    default_timeout_ms: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    max_timeout_ms: Option<u64>,
    #[prost(bool, optional, tag = "3")]
    no_deadline_needed: Option<bool>,
}

/// The files of a serialized `FileDescriptorSet` (or of a `CodeGeneratorRequest`, whose
/// files are field 15), each as its own bytes.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RawFiles {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub(crate) file: Vec<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The extension number of every option in the file (the mirrors' tags).
    const EXTENSION: u32 = 51510;

    #[test]
    fn the_mirrors_use_the_numbers_of_the_shipped_file() {
        assert!(OPTIONS_PROTO.contains(&format!("service_deadline = {EXTENSION};")));
        assert!(OPTIONS_PROTO.contains(&format!("DeadlineOptions deadline = {EXTENSION};")));
        assert!(OPTIONS_PROTO.contains(&format!("Code code = {EXTENSION};")));
        assert_eq!(code_variant(5), "NotFound");
        assert_eq!(code_variant(16), "Unauthenticated");
    }

    #[test]
    fn method_options_override_the_services_field_by_field() {
        let deadline = |default, max, not_needed| RawDeadline {
            default_timeout_ms: default,
            max_timeout_ms: max,
            no_deadline_needed: not_needed,
        };
        let method = |name: &str, own: Option<RawDeadline>| RawMethod {
            name: Some(name.into()),
            options: own.map(|d| RawMethodOptions { deadline: Some(d) }),
        };
        let file = RawFile {
            name: Some("a.proto".into()),
            package: Some("p".into()),
            service: vec![RawService {
                name: Some("S".into()),
                method: vec![
                    method("Plain", None),
                    method("Longer", Some(deadline(Some(5000), None, None))),
                    method("Free", Some(deadline(None, None, Some(true)))),
                ],
                options: Some(RawServiceOptions { deadline: Some(deadline(Some(100), Some(9000), Some(false))) }),
            }],
            ..Default::default()
        };
        let options = ProtoOptions::read([file.encode_to_vec().as_slice()]).unwrap();
        assert_eq!(options.deadline("p.S/Plain"), Some(Deadline { default_ms: Some(100), max_ms: Some(9000), not_needed: false }));
        assert_eq!(options.deadline("p.S/Longer"), Some(Deadline { default_ms: Some(5000), max_ms: Some(9000), not_needed: false }));
        assert_eq!(options.deadline("p.S/Free"), Some(Deadline { default_ms: Some(100), max_ms: Some(9000), not_needed: true }));
    }
}
