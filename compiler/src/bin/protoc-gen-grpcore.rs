//! `protoc-gen-grpcore`: the protoc plugin. `protoc --grpcore_out=DIR [--grpcore_opt=OPTS]`
//! writes the same files as the build.rs API for the same protos and options.
//!
//! Options, separated by commas: `codec=prost|protobuf`, `client=false`, `server=false`,
//! `client:pkg.Service=BOOL`, `server:pkg.Service=BOOL`, `grpcore_path=PATH`,
//! `include_file=NAME`.
//!
//! `protoc-gen-grpcore --include-dir [DIR]` writes `grpcore/options.proto` (grpcore's proto
//! options) under DIR (default: a directory of this version's own in the system's temporary
//! directory) and prints DIR, for protoc's include path:
//! `protoc -I "$(protoc-gen-grpcore --include-dir)" -I proto --grpcore_out=out proto/x.proto`.

use std::io::{Read, Write};
use std::process::ExitCode;

use prost::Message;
use prost_types::compiler::code_generator_response::File;
use prost_types::compiler::{CodeGeneratorRequest, CodeGeneratorResponse};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--include-dir") {
        return include_dir(args.get(1));
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("protoc-gen-grpcore: reading the request from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let request = match CodeGeneratorRequest::decode(input.as_slice()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "protoc-gen-grpcore: stdin is not a CodeGeneratorRequest ({e}); this program is run by protoc: \
                 protoc --plugin=protoc-gen-grpcore=PATH --grpcore_out=DIR file.proto"
            );
            return ExitCode::FAILURE;
        }
    };
    let response = match generate(request, &input) {
        Ok(files) => CodeGeneratorResponse {
            // FEATURE_PROTO3_OPTIONAL: both codecs handle proto3 `optional`.
            supported_features: Some(1),
            file: files,
            ..Default::default()
        },
        // protoc prints the error with the plugin's name and fails.
        Err(e) => CodeGeneratorResponse {
            error: Some(e.to_string()),
            ..Default::default()
        },
    };
    if let Err(e) = std::io::stdout().write_all(&response.encode_to_vec()) {
        eprintln!("protoc-gen-grpcore: writing the response: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The request's files as their own bytes: prost's descriptor types would drop the custom
/// options (grpcore's included) that the generator reads.
#[derive(Clone, PartialEq, Message)]
struct RequestFiles {
    #[prost(bytes = "vec", repeated, tag = "15")]
    proto_file: Vec<Vec<u8>>,
}

/// The same files as a `FileDescriptorSet` (field 1).
#[derive(Clone, PartialEq, Message)]
struct DescriptorSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

fn generate(request: CodeGeneratorRequest, input: &[u8]) -> Result<Vec<File>, grpcore_compiler::Error> {
    let builder = grpcore_compiler::configure().plugin_parameter(request.parameter())?;
    let files = RequestFiles::decode(input)
        .map_err(|e| grpcore_compiler::Error::Config(format!("the request's files do not decode: {e}")))?;
    let set = DescriptorSet { file: files.proto_file }.encode_to_vec();
    let files = builder.generate_from_descriptor_set(&set)?;
    Ok(files
        .into_iter()
        .map(|f| File {
            name: Some(f.name),
            content: Some(f.content),
            ..Default::default()
        })
        .collect())
}

/// `--include-dir [DIR]`: writes grpcore/options.proto under DIR and prints DIR.
fn include_dir(dir: Option<&String>) -> ExitCode {
    let dir = dir.map_or_else(
        || std::env::temp_dir().join(format!("grpcore-compiler-{}", env!("CARGO_PKG_VERSION"))),
        std::path::PathBuf::from,
    );
    match grpcore_compiler::write_options_proto(&dir) {
        Ok(dir) => {
            println!("{}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("protoc-gen-grpcore: {e}");
            ExitCode::FAILURE
        }
    }
}
