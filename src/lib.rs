//! grpcore: safe, async-native Rust bindings over the gRPC C core.
//!
//! The C core (the engine of gRPC C++, Python, Ruby, PHP and C#) does the HTTP/2 transport,
//! name resolution, load balancing, retries and keepalive; grpcore adds Rust ownership,
//! futures that work under any executor, and typed methods.
//!
//! ```no_run
//! use grpcore::{BytesCodec, CallOptions, ChannelBuilder, Environment, Method};
//! const ECHO: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/demo.Echo/Echo");
//!
//! let env = Environment::new(1);
//! let channel = ChannelBuilder::new(&env).connect("127.0.0.1:50051").unwrap();
//! let reply = channel.unary(&ECHO, &b"hi".to_vec(), CallOptions::new()).wait().unwrap();
//! assert_eq!(reply.message(), b"hi");
//! ```
//!
//! # Threads
//! An [`Environment`] owns completion-queue threads. Calls complete on them; server
//! handlers and [`Environment::spawn`]ed futures are polled on them. Client futures are
//! plain `std::future::Future`s: await them on tokio, async-std, `block_on`, or a
//! completion-queue task.
//!
//! # Shared writes (every `vendored` build, or feature `shared-writes`)
//! In a build with write sharing, a batch that a handler (or any task) starts on its call's
//! completion-queue thread while that thread handles events is held in the thread's outbox
//! and started, with the others of the same round, inside one core execution context when
//! the queue has nothing more ready (or after a bounded number of events). The transport then
//! writes the replies of many calls on one connection with one system call instead of one
//! each. At one call in flight (nothing to share a write with) batches start directly, as
//! without the feature, except in one round of 16, which checks for load. Completions, deadlines, cancellation and interceptors behave as without it. The
//! sharing rests on a shim compiled against the core's *internal* headers (`grpcore-sys`'s
//! `batch-scope`), so a build with it is bound to the exact core release it links, checked
//! at build time. A `vendored` build compiles the shim against the very tree its core is
//! built from, so it always shares writes; on the system core the feature `shared-writes`
//! needs `GRPCORE_SYS_GRPC_SOURCE` naming that release's source tree.
//! [`EnvBuilder::share_writes`] turns sharing off for one environment, and
//! [`Environment::shares_writes`] tells whether an environment shares.
#![deny(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]
// Every `unsafe` block and impl states its invariant in a `// SAFETY:` comment.
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod admission;
mod address;
mod args;
#[cfg(feature = "prost")]
mod app_error;
mod blocking;
mod buffer;
mod call;
mod channel;
mod codec;
mod connectivity;
mod cq;
mod credentials;
pub mod deadline;
mod env;
mod error;
mod ffi_guard;
#[cfg(feature = "prost")]
pub mod error_details;
#[cfg(feature = "access")]
pub mod access;
#[cfg(feature = "admin")]
pub mod admin;
#[cfg(feature = "channelz")]
pub mod channelz;
#[cfg(feature = "health")]
pub mod health;
pub mod interceptor;
mod log_bridge;
mod metadata;
#[cfg(feature = "metrics")]
pub mod metrics;
mod method;
mod request;
mod quota;
#[cfg(feature = "reflection")]
pub mod reflection;
mod server;
mod socket;
pub mod listener;
mod settings;
mod status;
mod sync;
mod task;
mod time;
#[cfg(feature = "tracing")]
pub mod trace;
pub mod timer;
#[cfg(feature = "xds")]
pub mod xds;

pub use grpcore_sys as ffi;

pub use buffer::{MessageReader, MessageWriter};
pub use call::client::{CallOptions, Response, UnaryCall};
pub use call::core::ParentCall;
pub use call::streaming::{BlockingIter, ClientStreamingCall, ClientStreamingResponse, RequestSink, ResponseStream};
pub use call::write::{Compression, WriteFlags};
pub use channel::{Channel, ChannelBuilder};
pub use codec::{BytesCodec, Codec};
pub use connectivity::{ConnectivityState, StateChanged};
pub use credentials::{
    AuthContext, AuthMetadataContext, AuthProperty, CallCredentials, Certificate, CertificateConfig, CertificateFiles,
    CertificateReloader, ChannelCredentials, ClientCertificateMode, Identity, LocalConnect, PrivateKey, ReloadError,
    ServerCredentials, SslSessionCache, TlsChannelCredentials, TlsServerCredentials,
};
#[cfg(feature = "prost")]
pub use codec::ProstCodec;
#[cfg(feature = "protobuf")]
pub use codec::ProtobufCodec;
#[cfg(feature = "prost")]
pub use app_error::ApplicationError;
pub use deadline::DeadlinePolicy;
pub use env::{EnvBuilder, Environment, JoinHandle};
pub use error::{
    CodecError, CodecErrorKind, ConfigError, ConfigErrorKind, Error, InternalError, InternalErrorKind, MetadataError,
    Result, ShutdownError, ShutdownErrorKind,
};
pub use interceptor::{CallEnd, ClientCallInfo, ClientInterceptor, Extensions, ServerCallInfo, ServerInterceptor};
pub use metadata::{Metadata, MetadataErrorKind};
pub use method::{Method, MethodKind};
pub use request::{ClientStreamingRequest, DuplexRequest, ServerStreamingRequest, UnaryRequest};
pub use quota::ResourceQuota;
pub use socket::{Peer, PeerCredentials, Socket};
pub use server::context::{Cancelled, ServerContext};
pub use server::service::{Service, ServiceBuilder};
pub use server::streaming::{RequestStream, ServerSink};
pub use server::{Server, ServerBuilder, ShutdownFuture, ShutdownReport};
pub use status::{Code, Status};

/// Includes the code `grpcore-compiler` generated in `build.rs` (into `OUT_DIR`).
///
/// - `include_proto!("helloworld")`: one proto package's messages and services, from
///   `OUT_DIR/helloworld.rs`, in the module where the macro stands (with the rust-protobuf
///   codec, name a proto file's module instead: `include_proto!("route_guide")`). A
///   package that refers to another package's messages needs that package included at
///   the place the generated paths expect (`super::other`); the form below does that.
/// - `include_proto!()`: every package, as the nested modules of the generated include
///   file (`OUT_DIR/mod.rs`; a file renamed with `.include_file(name)` needs
///   `include!(concat!(env!("OUT_DIR"), "/name"))`).
///
/// ```ignore
/// // build.rs: grpcore_compiler::configure().compile(&["helloworld.proto"], &["."])
/// pub mod helloworld {
///     grpcore::include_proto!("helloworld");
/// }
/// use helloworld::greeter_grpc::GreeterClient;
///
/// // or every package at once, as `proto::helloworld`, `proto::routeguide`, ...:
/// pub mod proto {
///     grpcore::include_proto!();
/// }
/// ```
///
/// The examples' `lib.rs` uses the package form; it expands to
/// `include!(concat!(env!("OUT_DIR"), "/helloworld.rs"))`.
#[macro_export]
macro_rules! include_proto {
    () => {
        include!(concat!(env!("OUT_DIR"), "/mod.rs"));
    };
    ($package:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $package, ".rs"));
    };
}

/// The version of the gRPC C core linked at run time (e.g. `29.0.0` for release 1.51.1).
pub fn core_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(ffi::grpc_version_string()) }
        .to_string_lossy()
        .into_owned()
}
