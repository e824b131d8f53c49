//! What a handler knows about its call: [`ServerContext`], a handle over the call's
//! [`ServerCallCore`] (`call/core.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::call::core::{ParentCall, ServerCallCore};
use crate::call::write::Compression;
use crate::credentials::AuthContext;
use crate::metadata::Metadata;

/// What a handler knows about its call, and how it shapes the response's metadata.
///
/// Passed by value to every handler.
pub struct ServerContext {
    server: Arc<ServerCallCore>,
    method: Arc<str>,
    /// The deadline as the core gave it; converted to an `Instant` on first use (clock reads
    /// that most handlers never need).
    deadline_raw: grpcore_sys::gpr_timespec,
    deadline: OnceLock<Option<Instant>>,
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContext")
            .field("method", &self.method)
            .field("deadline", &self.deadline())
            .finish_non_exhaustive()
    }
}

impl ServerContext {
    pub(crate) fn new(server: Arc<ServerCallCore>, method: Arc<str>, deadline: grpcore_sys::gpr_timespec) -> Self {
        ServerContext {
            server,
            method,
            deadline_raw: deadline,
            deadline: OnceLock::new(),
        }
    }

    /// The full method path, `/package.Service/Method`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The client's address as the core names it, e.g. `ipv4:127.0.0.1:43210`. A
    /// connection handed to the server by a [listener](crate::listener) or
    /// [`Server::add_connection`](crate::Server::add_connection) is named the same way,
    /// from the address it was accepted from (`unix:` for unix sockets), where the core
    /// itself would say only `fd:N`.
    pub fn peer(&self) -> String {
        crate::socket::display_peer(self.server.core.peer())
    }

    /// The process credentials (uid, gid, pid) of a client on a unix socket that a
    /// [listener](crate::listener) accepted or that was given to
    /// [`Server::add_connection`](crate::Server::add_connection), as the kernel recorded
    /// them when it connected (`SO_PEERCRED`). `None` for other clients: the core passes
    /// no credentials up for the unix sockets it accepts itself.
    pub fn peer_credentials(&self) -> Option<crate::PeerCredentials> {
        crate::socket::credentials_of(&self.server.core.peer())
    }

    /// How the client's connection is secured and, under TLS with a client certificate,
    /// who the client is: common name, subject alternative names, its certificate in PEM
    /// (see [`AuthContext`]). A snapshot, read from the core on each call of this.
    pub fn auth_context(&self) -> AuthContext {
        AuthContext::of_call(&self.server.core.call)
    }

    /// The call's deadline, if the client set one: the client's own, or, when the method's
    /// [`DeadlinePolicy`](crate::DeadlinePolicy) has a maximum that comes first, that
    /// maximum from the call's arrival.
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.get_or_init(|| crate::time::to_instant(self.deadline_raw))
    }

    /// Time left until the deadline (zero once passed); `None` without a deadline.
    pub fn time_remaining(&self) -> Option<Duration> {
        self.deadline().map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// A copy of the value of type `T` that an interceptor attached to this call
    /// ([`ServerCallInfo::extensions_mut`](crate::ServerCallInfo::extensions_mut)); `None`
    /// when there is none (or the method has no interceptors).
    pub fn extension<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.server.extension::<T>()
    }

    /// The request metadata (headers) the client sent.
    pub fn request_metadata(&self) -> &Metadata {
        self.server.request_metadata()
    }

    /// Sets the initial metadata (response headers) sent with the first response message
    /// (or on [`ServerSink::send_headers`](crate::ServerSink::send_headers)); has no effect
    /// once they have gone out.
    pub fn set_initial_metadata(&self, metadata: Metadata) {
        self.server.reply.lock().unwrap_or_else(|e| e.into_inner()).initial = metadata;
    }

    /// Compresses this call's responses with `algorithm` (if the client accepts it),
    /// overriding the server's default. Takes effect with the initial metadata, so set it
    /// before the first response goes out.
    pub fn set_compression(&self, algorithm: Compression) {
        self.server.reply.lock().unwrap_or_else(|e| e.into_inner()).compression = Some(algorithm);
    }

    /// Sets the trailing metadata sent with the status (on success and on error).
    pub fn set_trailing_metadata(&self, metadata: Metadata) {
        self.server.reply.lock().unwrap_or_else(|e| e.into_inner()).trailing = metadata;
    }

    /// True once the call is known to be cancelled (by the client, its deadline, or a
    /// server shutdown). The first call starts watching; it may return `false` until the
    /// core reports the cancellation.
    pub fn is_cancelled(&self) -> bool {
        self.server.watch_close();
        self.server.is_cancelled()
    }

    /// Resolves when the call is cancelled. Never resolves for a call that completes
    /// normally: use it in a `select` with the handler's work.
    pub fn cancelled(&self) -> Cancelled {
        self.server.watch_close();
        Cancelled {
            server: self.server.clone(),
        }
    }
}

/// Future returned by [`ServerContext::cancelled`].
#[must_use = "futures do nothing unless polled"]
pub struct Cancelled {
    server: Arc<ServerCallCore>,
}

impl std::fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancelled").finish_non_exhaustive()
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.server.poll_cancelled(cx)
    }
}

/// A handler's context is the parent of the calls it makes on its client's behalf
/// ([`CallOptions::parent`](crate::CallOptions::parent)).
impl From<&ServerContext> for ParentCall {
    fn from(ctx: &ServerContext) -> ParentCall {
        ParentCall::new(&ctx.server, ctx.deadline())
    }
}
