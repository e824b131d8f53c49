//! `protoc-gen-grpcore`: the protoc plugin. `protoc --grpcore_out=DIR [--grpcore_opt=OPTS]`
//! writes the same files as the build.rs API for the same protos and options.
//!
//! Options, separated by commas: `codec=prost|protobuf`, `client=false`, `server=false`,
//! `client:pkg.Service=BOOL`, `server:pkg.Service=BOOL`, `grpcore_path=PATH`,
//! `include_file=NAME`.

use std::io::{Read, Write};
use std::process::ExitCode;

use prost::Message;
use prost_types::compiler::code_generator_response::File;
use prost_types::compiler::{CodeGeneratorRequest, CodeGeneratorResponse};

fn main() -> ExitCode {
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
    let response = match generate(request) {
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

fn generate(request: CodeGeneratorRequest) -> Result<Vec<File>, grpcore_compiler::Error> {
    let builder = grpcore_compiler::configure().plugin_parameter(request.parameter())?;
    let files = builder.generate(request.proto_file)?;
    Ok(files
        .into_iter()
        .map(|f| File {
            name: Some(f.name),
            content: Some(f.content),
            ..Default::default()
        })
        .collect())
}
