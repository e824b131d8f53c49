//! Security: TLS and mutual TLS on channels and servers, certificate reload, the peer's
//! identity, call credentials, TLS session resumption and local (unix socket) credentials.
//!
//! Everything here wraps what the C core already does (its TLS runs on the system's
//! OpenSSL); this module adds checks in Rust before anything reaches the core, owner types
//! for its objects, and `catch_unwind` around every callback the core makes into Rust.
//!
//! | module | owns |
//! |---|---|
//! | `pem` | [`Certificate`], [`PrivateKey`], [`Identity`]: PEM checked in Rust |
//! | `channel` | [`ChannelCredentials`], [`TlsChannelCredentials`], [`SslSessionCache`], [`LocalConnect`] |
//! | `server` | [`ServerCredentials`], [`TlsServerCredentials`], [`ClientCertificateMode`] (ports are bound, and their sockets probed, in `crate::server::bind`) |
//! | `reload` | [`CertificateReloader`], [`CertificateConfig`], [`CertificateFiles`] |
//! | `call` | [`CallCredentials`], [`AuthMetadataContext`]: the metadata credentials plugin |
//! | `auth_context` | [`AuthContext`], [`AuthProperty`]: a snapshot of the core's auth context |
//!
//! It never touches calls, completion queues or the server's request slots.
//!
//! # A handshake that fails
//! The core reports TLS failures as a connection failure: a call fails at once with
//! `UNAVAILABLE: failed to connect to all addresses; last error: …` carrying the core's
//! reason. What the 1.51 core says, as the tests see it:
//!
//! | failure | reason in the message |
//! |---|---|
//! | server certificate from an unknown CA | `Ssl handshake failed: SSL_ERROR_SSL: error:0A000086:SSL routines::certificate verify failed` |
//! | expired server certificate | the same (OpenSSL's verify reason is not passed on) |
//! | certificate without the expected name | `Peer name <name> is not in peer certificate` |
//! | client certificate missing or untrusted | `Socket closed`: under TLS 1.3 the client's handshake is over before the server checks its certificate |
//! | plaintext client, TLS server | `Socket closed` |
//! | [`TlsChannelCredentials::verify_server`] refused | `Verify peer callback returned a failure (1)` |
//!
//! A call made with [`CallOptions::wait_for_ready`](crate::CallOptions::wait_for_ready)
//! keeps waiting for a connection that works instead, until its deadline.

pub(crate) mod auth_context;
pub(crate) mod call;
pub(crate) mod channel;
pub(crate) mod pem;
pub(crate) mod reload;
pub(crate) mod server;

pub use auth_context::{AuthContext, AuthProperty};
pub use call::{AuthMetadataContext, CallCredentials};
pub use channel::{ChannelCredentials, LocalConnect, SslSessionCache, TlsChannelCredentials};
pub use pem::{Certificate, Identity, PrivateKey};
pub use reload::{CertificateConfig, CertificateFiles, CertificateReloader, ReloadError};
pub use server::{ClientCertificateMode, ServerCredentials, TlsServerCredentials};

