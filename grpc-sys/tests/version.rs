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

/// What `dladdr(3)` fills in (glibc's `Dl_info`).
#[repr(C)]
struct DlInfo {
    dli_fname: *const std::os::raw::c_char,
    dli_fbase: *mut std::os::raw::c_void,
    dli_sname: *const std::os::raw::c_char,
    dli_saddr: *mut std::os::raw::c_void,
}

extern "C" {
    fn dladdr(addr: *const std::os::raw::c_void, info: *mut DlInfo) -> std::os::raw::c_int;
}

/// The file (executable or shared library) that holds the code of `grpc_version_string`.
fn file_holding_the_core() -> String {
    let mut info = DlInfo {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let addr = grpcore_sys::grpc_version_string as *const std::os::raw::c_void;
    // SAFETY: dladdr only reads `addr` as an address and writes `info`, a valid `Dl_info`.
    let found = unsafe { dladdr(addr, &mut info) };
    assert!(found != 0 && !info.dli_fname.is_null(), "dladdr found no file for grpc_version_string");
    // SAFETY: on success dli_fname is a NUL-terminated path owned by the dynamic loader.
    unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned()
}

#[test]
fn the_linked_core_is_the_vendored_one_exactly_when_the_feature_is_on() {
    // The vendored core is built from the same release as the system one and reports the
    // same version, so the version cannot tell them apart: where its code lives can. The
    // vendored core is linked statically into this test executable; the system one
    // (pkg-config, or GRPCORE_SYS_GRPC_LIB_DIR) is a shared libgrpc unless
    // GRPCORE_SYS_STATIC asked for its archives.
    let file = file_holding_the_core();
    let shared = file.contains("libgrpc.so");
    if cfg!(feature = "vendored") {
        assert!(
            !shared,
            "built with the vendored feature, but the core's code comes from {file}: the system \
             core was linked (is GRPCORE_SYS_GRPC_LIB_DIR set?)"
        );
    } else if option_env!("GRPCORE_SYS_STATIC").is_none() {
        assert!(shared, "built without the vendored feature, but the core's code comes from {file}, not a shared libgrpc");
    }
}
