//! The whole core links and starts: `grpc_init()` pulls in nearly every object of the library
//! (transports, resolvers, load balancers, TLS through OpenSSL, abseil), so a dependency missing
//! from the link lines fails this test's link, which a call to `grpc_version_string()` alone
//! would not notice.

use std::ffi::{CStr, CString};
use std::ptr;

#[test]
fn core_initialises_creates_a_channel_and_shuts_down() {
    let target = CString::new("127.0.0.1:1").unwrap();
    // SAFETY: grpc_init() may be called at any time; it is paired with grpc_shutdown() below.
    unsafe { grpcore_sys::grpc_init() };
    // SAFETY: the library is initialised. Every object is created here and released exactly
    // once before grpc_shutdown(); `target` outlives the channel that copies it. Creating a
    // channel does not connect (that waits for the first call), so nothing goes on the network.
    unsafe {
        assert_ne!(
            grpcore_sys::grpc_is_initialized(),
            0,
            "grpc_init() left the core uninitialised"
        );
        let creds = grpcore_sys::grpc_insecure_credentials_create();
        assert!(
            !creds.is_null(),
            "grpc_insecure_credentials_create returned NULL"
        );
        let channel = grpcore_sys::grpc_channel_create(target.as_ptr(), creds, ptr::null());
        assert!(!channel.is_null(), "grpc_channel_create returned NULL");
        grpcore_sys::grpc_channel_credentials_release(creds);
        // The returned string is the caller's, to be freed with gpr_free.
        let got = grpcore_sys::grpc_channel_get_target(channel);
        let got_owned = CStr::from_ptr(got).to_string_lossy().into_owned();
        grpcore_sys::gpr_free(got.cast());
        assert!(
            got_owned.ends_with("127.0.0.1:1"),
            "channel target is {got_owned:?}"
        );
        grpcore_sys::grpc_channel_destroy(channel);
    }
    // SAFETY: pairs the grpc_init() above; nothing created since is still alive.
    unsafe { grpcore_sys::grpc_shutdown() };
}
