//! The tricky proto set (compiler/tests/protos/tricky) through both codecs: prost into
//! OUT_DIR/prost, rust-protobuf into OUT_DIR/protobuf.
use std::path::PathBuf;

use grpcore_compiler::Codec;

fn main() -> Result<(), grpcore_compiler::Error> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("run by Cargo"));
    let protos = [
        "../tests/protos/tricky/grpcore/tricky/services.proto",
        "../tests/protos/tricky/grpcore/tricky/common.proto",
    ];
    let includes = ["../tests/protos/tricky"];
    grpcore_compiler::configure()
        .out_dir(out.join("prost"))
        .compile(&protos, &includes)?;
    grpcore_compiler::configure()
        .codec(Codec::Protobuf)
        .out_dir(out.join("protobuf"))
        .compile(&protos, &includes)
}
