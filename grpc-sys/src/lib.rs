//! Raw FFI bindings to the gRPC C core, release 1.51.1 (core version 29).
//!
//! This crate finds the installed core with pkg-config (Debian/Ubuntu `libgrpc-dev`) or,
//! with the `vendored` feature, builds the pinned release from source. It holds no policy:
//! the safe API lives in the `grpcore` crate, which re-exports this one as `grpcore::ffi`.
//!
//! C enums are bound as integer constants, never as Rust enums, so a value these bindings
//! did not know can never be undefined behaviour.
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals, missing_docs)]
#![allow(clippy::all)]
// The only unsafe blocks here are bindgen's generated bitfield accessors.
#![allow(clippy::undocumented_unsafe_blocks)]

#[cfg(not(feature = "bindgen"))]
include!("bindings.rs");

#[cfg(feature = "bindgen")]
include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// The gRPC release these bindings were generated from (e.g. `1.51.1`).
pub const GRPC_RELEASE: &str = env!("GRPCORE_SYS_GRPC_RELEASE");

/// The core version the linked library must report from `grpc_version_string()` (e.g. `29.0.0`).
pub const CORE_VERSION: &str = env!("GRPCORE_SYS_CORE_VERSION");

/// `GRPC_PROPAGATE_DEFAULTS` from `propagation_bits.h` (a cast macro bindgen cannot translate).
pub const GRPC_PROPAGATE_DEFAULTS: u32 = 0xffff;
/// `GRPC_PROPAGATE_DEADLINE` from `propagation_bits.h`.
pub const GRPC_PROPAGATE_DEADLINE: u32 = 1;
/// `GRPC_PROPAGATE_CANCELLATION` from `propagation_bits.h`.
pub const GRPC_PROPAGATE_CANCELLATION: u32 = 8;

/// Starting several batches inside one core execution context (feature `batch-scope`, and
/// every `vendored` build: `cfg(batch_scope)`).
///
/// These two functions come from `shim/batch_scope.cc`, compiled against the internal headers
/// of exactly the core release that is linked (see the crate's README): batches started
/// with [`grpcore_start_batch_deferred`] inside one [`grpcore_batch_scope_run`] are flushed
/// together when the scope closes, so the transport can put the frames of several calls on a
/// connection into one write.
#[cfg(batch_scope)]
mod batch_scope {
    use super::{grpc_call, grpc_call_error, grpc_completion_queue, grpc_op};
    use std::os::raw::c_void;

    extern "C" {
        /// Runs `f(arg)` inside one `ApplicationCallbackExecCtx` + `ExecCtx`; what `f` starts
        /// on the core is flushed once, when `f` has returned. `f` must not unwind.
        pub fn grpcore_batch_scope_run(f: unsafe extern "C" fn(*mut c_void), arg: *mut c_void);

        /// Starts `ops` on `call` (bound to `cq`) without flushing, so that it completes as an
        /// ordinary event with `tag` on `cq`. Returns the call's error code; even on an error
        /// the event comes, with `success == 0`: the tag is always delivered exactly once.
        /// The caller keeps `cq` from shutting down and holds a reference to `call` during the
        /// call, and keeps what `ops` point at alive until the event.
        pub fn grpcore_start_batch_deferred(
            call: *mut grpc_call,
            cq: *mut grpc_completion_queue,
            ops: *const grpc_op,
            nops: usize,
            tag: *mut c_void,
        ) -> grpc_call_error;
    }
}
#[cfg(batch_scope)]
pub use batch_scope::*;
