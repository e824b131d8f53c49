//! Generates the grpc.testing messages (proto/grpc/testing/*.proto) with prost into OUT_DIR;
//! src/proto.rs includes them. The service glue is written by hand (src/lib.rs), so only
//! messages are generated. Needs protoc (PROTOC or PATH; scripts/setup.sh installs it).
fn main() -> std::io::Result<()> {
    let protos = ["proto/grpc/testing/empty.proto", "proto/grpc/testing/messages.proto", "proto/grpc/testing/test.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    prost_build::Config::new().compile_protos(&protos, &["proto"])
}
