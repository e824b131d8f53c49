//! The tricky proto set (compiler/tests/protos/tricky) through both codecs: prost into
//! OUT_DIR/prost, rust-protobuf into OUT_DIR/protobuf; the policy set (grpcore's own proto
//! options, compiler/tests/protos/policy) likewise into OUT_DIR/policy-prost and
//! OUT_DIR/policy-protobuf. Extra attributes go on a message
//! and on a client and a server (tests/run.rs checks they reached their items, and only those).
use std::path::PathBuf;

use grpcore_compiler::Codec;

fn main() -> Result<(), grpcore_compiler::Error> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("run by Cargo"));
    let protos = [
        "../tests/protos/tricky/grpcore/tricky/services.proto",
        "../tests/protos/tricky/grpcore/tricky/common.proto",
    ];
    let includes = ["../tests/protos/tricky"];
    // (rust-protobuf's enum fields are not Hash; prost-build 0.14 derives Eq and Hash itself
    // where the fields allow, so the prost side adds an ordering, which it never derives.)
    let with_attributes = |codec, derive| {
        grpcore_compiler::configure()
            .codec(codec)
            .message_attribute(".grpcore.tricky.common.Point.Label", derive)
            .client_attribute(".grpcore.tricky.async.Result", "#[cfg(all())]")
            .server_attribute(".grpcore.tricky.async.Result", "#[doc(alias = \"Stepper\")]")
    };
    with_attributes(Codec::Prost, "#[derive(PartialOrd)]")
        .out_dir(out.join("prost"))
        .compile(&protos, &includes)?;
    with_attributes(Codec::Protobuf, "#[derive(Eq)]")
        .out_dir(out.join("protobuf"))
        .compile(&protos, &includes)?;
    // grpcore/options.proto is found without an include path of ours.
    let policy = ["../tests/protos/policy/grpcore/policy/library.proto"];
    let includes = ["../tests/protos/policy"];
    for (codec, dir) in [(Codec::Prost, "policy-prost"), (Codec::Protobuf, "policy-protobuf")] {
        grpcore_compiler::configure().codec(codec).out_dir(out.join(dir)).compile(&policy, &includes)?;
    }
    // A program that uses a part of a service (tests in lib.rs: `partial_use`).
    grpcore_compiler::configure()
        .out_dir(out.join("partial"))
        .compile(&["../tests/protos/golden/greeter.proto"], &["../tests/protos/golden"])?;
    Ok(())
}
