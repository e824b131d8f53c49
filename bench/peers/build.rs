// Generates the tonic server and client (and the prost messages both peers use) from the
// same .proto file as grpcore-bench.
fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    println!("cargo:rerun-if-changed={dir}/benchmark_service.proto");
    tonic_prost_build::configure()
        .compile_protos(
            &[format!("{dir}/benchmark_service.proto")],
            &[dir.to_string()],
        )
        .expect("protoc must be installed (Debian: protobuf-compiler)");
}
