//! Sets `cfg(shared_writes)` when grpcore-sys compiled its batch-scope shim (every `vendored`
//! build, and feature `shared-writes`): the completion-queue threads then start the batches
//! of a round of events together (module `cq::outbox`).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_GRPC_BATCH_SCOPE");
    println!("cargo:rustc-check-cfg=cfg(shared_writes)");
    if std::env::var_os("DEP_GRPC_BATCH_SCOPE").is_some() {
        println!("cargo:rustc-cfg=shared_writes");
    }
}
