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

/// glibc's `struct dl_phdr_info`, up to the one field read here (more follow; the struct is
/// only ever read through the loader's pointer).
#[cfg(feature = "vendored")]
#[repr(C)]
struct DlPhdrInfo {
    dlpi_addr: usize,
    dlpi_name: *const std::os::raw::c_char,
}

#[cfg(feature = "vendored")]
type PhdrCallback =
    unsafe extern "C" fn(*mut DlPhdrInfo, usize, *mut std::os::raw::c_void) -> std::os::raw::c_int;

#[cfg(feature = "vendored")]
extern "C" {
    fn dl_iterate_phdr(callback: Option<PhdrCallback>, data: *mut std::os::raw::c_void) -> std::os::raw::c_int;
    // zlib's and OpenSSL's own version functions: linked from the archives the vendored
    // build bundles into grpcore-sys (no -lz or -lcrypto anywhere).
    fn zlibVersion() -> *const std::os::raw::c_char;
    fn OpenSSL_version_num() -> std::os::raw::c_ulong;
}

/// The paths of every shared object loaded in this process (the executable's is empty).
#[cfg(feature = "vendored")]
fn loaded_shared_objects() -> Vec<String> {
    unsafe extern "C" fn collect(
        info: *mut DlPhdrInfo,
        _size: usize,
        data: *mut std::os::raw::c_void,
    ) -> std::os::raw::c_int {
        // SAFETY: `data` is the `&mut Vec<String>` passed below, alive for the whole
        // dl_iterate_phdr call; `info` is the loader's valid entry for this callback, whose
        // dlpi_name is null or a NUL-terminated path.
        unsafe {
            let names = &mut *(data as *mut Vec<String>);
            let name = (*info).dlpi_name;
            if !name.is_null() {
                names.push(CStr::from_ptr(name).to_string_lossy().into_owned());
            }
        }
        0
    }
    let mut names: Vec<String> = Vec::new();
    // SAFETY: `collect` matches the callback type glibc calls, and `names` outlives the call.
    unsafe { dl_iterate_phdr(Some(collect), &mut names as *mut Vec<String> as *mut std::os::raw::c_void) };
    names
}

#[cfg(feature = "vendored")]
#[test]
fn vendored_core_loads_no_shared_third_party_library() {
    // The vendored build links the core's libraries statically too: no shared gRPC, abseil,
    // re2, c-ares, zlib or OpenSSL library may be loaded in this process.
    let loaded = loaded_shared_objects();
    assert!(loaded.iter().any(|n| n.contains("libc.so")), "dl_iterate_phdr listed no libc: {loaded:?}");
    let forbidden = ["libgrpc", "libgpr", "libupb", "libaddress_sorting", "libabsl", "libre2", "libcares", "libssl", "libcrypto", "libz."];
    let shared: Vec<&String> = loaded
        .iter()
        .filter(|n| forbidden.iter().any(|f| n.rsplit('/').next().unwrap_or(n).starts_with(f)))
        .collect();
    assert!(shared.is_empty(), "the vendored core's process loaded these shared libraries: {shared:?} (all loaded: {loaded:?})");

    // zlib's and OpenSSL's code is in the test executable, in the releases the source tree
    // holds (Debian bookworm's zlib 1.2.13, OpenSSL 3.0.x).
    // SAFETY: zlibVersion takes no arguments and returns a static NUL-terminated string.
    let zlib = unsafe { CStr::from_ptr(zlibVersion()) }.to_string_lossy().into_owned();
    assert!(zlib.starts_with("1.2."), "zlibVersion() = {zlib}");
    // SAFETY: OpenSSL_version_num takes no arguments and needs no initialisation.
    let openssl = unsafe { OpenSSL_version_num() };
    assert_eq!(openssl >> 28, 3, "OpenSSL_version_num() = {openssl:#x}, not a 3.x release");
    for (what, addr) in [
        ("zlibVersion", zlibVersion as *const std::os::raw::c_void),
        ("OpenSSL_version_num", OpenSSL_version_num as *const std::os::raw::c_void),
    ] {
        let mut info = DlInfo {
            dli_fname: std::ptr::null(),
            dli_fbase: std::ptr::null_mut(),
            dli_sname: std::ptr::null(),
            dli_saddr: std::ptr::null_mut(),
        };
        // SAFETY: dladdr only reads `addr` as an address and writes `info`, a valid `Dl_info`.
        let found = unsafe { dladdr(addr, &mut info) };
        assert!(found != 0 && !info.dli_fname.is_null(), "dladdr found no file for {what}");
        // SAFETY: on success dli_fname is a NUL-terminated path owned by the dynamic loader.
        let file = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
        assert!(!file.contains(".so"), "{what}'s code comes from the shared library {file}");
    }
}
