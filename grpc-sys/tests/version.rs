//! The linked core is the one the bindings were generated from.

use std::ffi::CStr;

#[test]
fn linked_core_reports_the_bound_version() {
    // SAFETY: grpc_version_string() takes no arguments, needs no grpc_init(), and returns a
    // pointer to a static NUL-terminated string that lives for the whole program.
    let linked = unsafe { CStr::from_ptr(grpcore_sys::grpc_version_string()) };
    let linked = linked.to_str().expect("grpc_version_string() is ASCII");
    assert_eq!(
        linked,
        grpcore_sys::CORE_VERSION,
        "the linked gRPC core reports version {linked} (grpc_version_string()), but grpcore-sys \
         was generated for core version {} (grpcore_sys::CORE_VERSION, gRPC release {})",
        grpcore_sys::CORE_VERSION,
        grpcore_sys::GRPC_RELEASE
    );
}
