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
