// Generates the tonic server and client (and the prost messages both peers use) from the
// same .proto file as grpcore-bench.
fn main() {
    // Read at run time: a build script compiled for another checkout of this package (one
    // shared target directory) must still find this checkout's proto.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = format!("{manifest}/../proto");
    let dir = dir.as_str();
    println!("cargo:rerun-if-changed={dir}/benchmark_service.proto");
    tonic_prost_build::configure()
        // Every `bytes` field as `bytes::Bytes`, as grpcore-bench's messages have them (fairness:
        // tonic decodes them without the copy into a Vec too).
        .bytes(".")
        .compile_protos(
            &[format!("{dir}/benchmark_service.proto")],
            &[dir.to_string()],
        )
        .expect("protoc must be installed (Debian: protobuf-compiler)");
}
