//! Finding protoc and running it for a `FileDescriptorSet`.
//!
//! Order: the `PROTOC` variable, then `protoc` on `PATH`, then (feature `vendored-protoc`)
//! the binary shipped in the `protoc-bin-vendored` crate. Each failure says which file is
//! wrong and what to do.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use prost_types::FileDescriptorSet;

use crate::Error;

/// Where the protoc we run came from (for messages).
#[derive(Clone, Debug)]
pub(crate) struct Protoc {
    pub(crate) path: PathBuf,
    pub(crate) origin: &'static str,
    /// An include directory with the well-known types, when we know one.
    pub(crate) include: Option<PathBuf>,
}

/// Finds protoc.
pub(crate) fn find() -> Result<Protoc, Error> {
    let include = std::env::var_os("PROTOC_INCLUDE").map(PathBuf::from);
    if let Some(path) = std::env::var_os("PROTOC") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(Error::ProtocNotFound(format!(
                "PROTOC is set to {}, which is not a file: point it at a protoc binary, or unset it to use the protoc on PATH",
                path.display()
            )));
        }
        return Ok(Protoc {
            path,
            origin: "the PROTOC variable",
            include,
        });
    }
    if let Some(path) = on_path("protoc") {
        return Ok(Protoc {
            path,
            origin: "PATH",
            include,
        });
    }
    vendored(include)
}

#[cfg(feature = "vendored-protoc")]
fn vendored(include: Option<PathBuf>) -> Result<Protoc, Error> {
    match protoc_bin_vendored::protoc_bin_path() {
        Ok(path) => Ok(Protoc {
            path,
            origin: "the protoc-bin-vendored crate",
            include: include.or_else(|| protoc_bin_vendored::include_path().ok()),
        }),
        Err(e) => Err(Error::ProtocNotFound(format!(
            "PROTOC is not set, there is no protoc on PATH, and the vendored protoc is not available for this platform ({e})"
        ))),
    }
}

#[cfg(not(feature = "vendored-protoc"))]
fn vendored(_include: Option<PathBuf>) -> Result<Protoc, Error> {
    Err(Error::ProtocNotFound(
        "PROTOC is not set and there is no protoc on PATH".to_string(),
    ))
}

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs protoc on `protos` with `includes` and returns the descriptors of the protos and
/// everything they import, with source info (comments), decoded and as protoc wrote them
/// (prost's types drop the custom options that [`crate::options`] reads from the bytes).
/// `grpcore/options.proto` is found on an include path of its own, after the caller's.
pub(crate) fn descriptors(
    protoc: &Protoc,
    protos: &[PathBuf],
    includes: &[PathBuf],
    extra_args: &[OsString],
) -> Result<(FileDescriptorSet, Vec<u8>), Error> {
    if protos.is_empty() {
        return Err(Error::Config(
            "no .proto files to compile: pass at least one to compile()".into(),
        ));
    }
    for proto in protos {
        if !proto.is_file() {
            return Err(Error::Config(format!(
                "{}: no such file (paths are relative to the package root when run from build.rs)",
                proto.display()
            )));
        }
    }
    let dir = tempfile::tempdir()
        .map_err(|e| Error::Io(format!("creating a temporary directory: {e}")))?;
    let out = dir.path().join("descriptors.bin");
    let mut cmd = Command::new(&protoc.path);
    cmd.arg("--include_imports")
        .arg("--include_source_info")
        .arg("-o")
        .arg(&out);
    for include in includes {
        cmd.arg("-I").arg(include);
    }
    if let Some(include) = &protoc.include {
        cmd.arg("-I").arg(include);
    }
    let shipped = crate::options::write_options_proto(dir.path().join("include"))?;
    cmd.arg("-I").arg(shipped);
    cmd.args(extra_args);
    cmd.args(protos);
    let output = cmd.output().map_err(|e| {
        Error::ProtocNotFound(format!(
            "{} (found through {}) could not be run: {e}",
            protoc.path.display(),
            protoc.origin
        ))
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(Error::Protoc {
            message: stderr.clone(),
            hint: hint(&stderr, includes, protoc),
        });
    }
    let bytes = std::fs::read(&out)
        .map_err(|e| Error::Io(format!("reading protoc's output {}: {e}", out.display())))?;
    let set = FileDescriptorSet::decode(bytes.as_slice())
        .map_err(|e| Error::Io(format!("protoc wrote descriptors that do not decode: {e}")))?;
    Ok((set, bytes))
}

/// What to do about a protoc error, from its message.
fn hint(stderr: &str, includes: &[PathBuf], protoc: &Protoc) -> String {
    let list = if includes.is_empty() {
        "none".to_string()
    } else {
        includes
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if stderr.contains("was not found or had errors") || stderr.contains("File not found") {
        if stderr.contains("google/protobuf/") {
            format!(
                "the well-known types (google/protobuf/*.proto) were not found by {} (from {}): install them \
                 (Debian/Ubuntu: apt-get install libprotobuf-dev) or set PROTOC_INCLUDE to the directory that holds google/protobuf/",
                protoc.path.display(),
                protoc.origin
            )
        } else {
            format!(
                "an imported file is not under any include path (include paths: {list}); add the directory it is \
                 imported relative to, or fix the import"
            )
        }
    } else if stderr.contains("does not reside within any path specified using --proto_path") {
        format!(
            "every .proto file must be inside one of the include paths ({list}); add its directory"
        )
    } else {
        "fix the .proto file at the line and column protoc names above".to_string()
    }
}

/// The real path of a file protoc named `name`, found under `includes` (for rerun-if-changed).
pub(crate) fn locate(name: &str, includes: &[PathBuf]) -> Option<PathBuf> {
    includes
        .iter()
        .map(|dir| dir.join(name))
        .find(|p| Path::new(p).is_file())
}
