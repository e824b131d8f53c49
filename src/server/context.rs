//! What a handler knows about its call: [`ServerContext`].

use std::cell::UnsafeCell;
use std::future::Future;
use std::os::raw::c_int;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::buffer::ByteBuffer;
use crate::call::raw::{op, OwnedSlice, RecvMetadata, SendMetadata};
use crate::cq::{ArcTag, TagHeader};
use crate::call::write::{Compression, Writer, ENCODING_REQUEST_KEY};
use crate::call::{Batch, Call, OnComplete};
use crate::credentials::AuthContext;
use crate::metadata::Metadata;
use super::limits::MessageLimits;

/// State shared by a server call's handler, its reply and its cancellation watch. It is
/// also the tag of the call's final batch, whose buffers it holds (no allocation of its own).
#[repr(C)]
pub(crate) struct ServerCallShared {
    header: TagHeader,
    pub(crate) call: Call,
    /// The request metadata as received; its elements belong to `call`.
    request_raw: RecvMetadata,
    request_metadata: OnceLock<Metadata>,
    /// Set by whoever puts RECV_CLOSE_ON_SERVER in a batch (it may be sent only once).
    close_started: AtomicBool,
    /// Written by the core when that op completes: non-zero if the call was cancelled.
    close_raw: UnsafeCell<c_int>,
    close_done: AtomicBool,
    close_cancelled: AtomicBool,
    close_waiters: Mutex<Vec<Waker>>,
    /// Set (SeqCst, before `close_done` is re-read) by a `Cancelled` future about to wait,
    /// so that `finish_close` takes the waiters' lock only when someone may be waiting.
    close_waited: AtomicBool,
    /// What the handler set for the response's metadata (one lock for all of it).
    pub(crate) reply: Mutex<ReplyMetadata>,
    /// Response writes of a streaming handler.
    pub(crate) output: Mutex<Output>,
    /// The C-side buffers of the final batch: written once by `send_final` before the batch
    /// starts (the `finished` flag of `output` makes that caller unique), read by the core
    /// while it runs, dropped when its event arrives.
    pub(crate) final_batch: UnsafeCell<Option<FinalBuffers>>,
    /// The message sizes to check here (lean mode).
    pub(crate) limits: MessageLimits,
}

/// What the final batch of a server call points into.
pub(crate) struct FinalBuffers {
    pub(crate) initial: SendMetadata,
    pub(crate) message: Option<ByteBuffer>,
    pub(crate) trailers: SendMetadata,
    pub(crate) details: OwnedSlice,
    /// The batch carries RECV_CLOSE_ON_SERVER, so its completion ends the close watch.
    pub(crate) carries_close: bool,
}

// SAFETY: `ServerCallShared` is `#[repr(C)]` with the header made by
// `for_arc::<ServerCallShared>` first; only the final batch uses it as its tag.
unsafe impl ArcTag for ServerCallShared {
    fn on_event(self: Arc<Self>, success: bool) {
        // SAFETY: the final batch is done, so the core no longer reads the buffers, and
        // nothing else touches them after `send_final` wrote them.
        let buffers = unsafe { (*self.final_batch.get()).take() };
        if buffers.is_some_and(|b| b.carries_close) {
            self.finish_close(success);
        }
    }
}

/// The metadata a handler chooses for its response.
#[derive(Default)]
pub(crate) struct ReplyMetadata {
    pub(crate) initial: Metadata,
    pub(crate) trailing: Metadata,
    /// The compression chosen for this call's responses, if any (see `set_compression`).
    pub(crate) compression: Option<Compression>,
}

/// The sending side of a server call.
#[derive(Default)]
pub(crate) struct Output {
    pub(crate) writer: Writer,
    /// Initial metadata has gone out (with the first message or on request).
    pub(crate) headers_sent: bool,
    /// The status has been sent: no more writes.
    pub(crate) finished: bool,
}

// SAFETY: `close_raw` is written by the core while the batch carrying RECV_CLOSE_ON_SERVER
// runs, and read only in `finish_close`, called from that batch's completion, after the write;
// `final_batch` follows the protocol on its field.
unsafe impl Send for ServerCallShared {}
// SAFETY: as above; every other field is thread-safe.
unsafe impl Sync for ServerCallShared {}

impl ServerCallShared {
    pub(crate) fn new(call: Call, request_raw: RecvMetadata, limits: MessageLimits) -> Arc<ServerCallShared> {
        Arc::new(ServerCallShared {
            header: TagHeader::for_arc::<ServerCallShared>(),
            call,
            request_raw,
            request_metadata: OnceLock::new(),
            close_started: AtomicBool::new(false),
            close_raw: UnsafeCell::new(0),
            close_done: AtomicBool::new(false),
            close_cancelled: AtomicBool::new(false),
            close_waiters: Mutex::new(Vec::new()),
            close_waited: AtomicBool::new(false),
            reply: Mutex::new(ReplyMetadata::default()),
            output: Mutex::new(Output::default()),
            final_batch: UnsafeCell::new(None),
            limits,
        })
    }

    /// The request metadata, copied out of the core's array on first use.
    fn request_metadata(&self) -> &Metadata {
        self.request_metadata.get_or_init(|| {
            // SAFETY: the call that owns the array's elements is alive (`self.call`).
            unsafe { self.request_raw.to_metadata() }
        })
    }

    /// The initial metadata to send, with the compression request if one was made.
    pub(crate) fn initial_send_metadata(&self) -> SendMetadata {
        let reply = self.reply.lock().unwrap_or_else(|e| e.into_inner());
        Self::initial_of(&reply)
    }

    /// The initial metadata to send from already-locked reply metadata.
    pub(crate) fn initial_of(reply: &ReplyMetadata) -> SendMetadata {
        if reply.initial.is_empty() && reply.compression.is_none() {
            return SendMetadata::empty();
        }
        SendMetadata::new(&reply.initial, reply.compression.map(|c| (ENCODING_REQUEST_KEY, c.name().as_bytes())))
    }

    /// Claims the RECV_CLOSE_ON_SERVER op: `Some(op)` for the first caller only. The op
    /// points into `self`; the batch carrying it must hold this `Arc` and call
    /// [`ServerCallShared::finish_close`] on completion.
    pub(crate) fn claim_close_op(&self) -> Option<grpcore_sys::grpc_op> {
        (!self.close_started.swap(true, Ordering::AcqRel)).then(|| op::recv_close_on_server(self.close_raw.get()))
    }

    /// Records the outcome of RECV_CLOSE_ON_SERVER and wakes cancellation waiters.
    pub(crate) fn finish_close(&self, success: bool) {
        // SAFETY: called once, from the completion of the batch that carried the op, so the
        // core has finished writing `close_raw`.
        let cancelled = !success || unsafe { *self.close_raw.get() } != 0;
        self.close_cancelled.store(cancelled, Ordering::Release);
        // SeqCst pairs with `Cancelled::poll`: either it sees `close_done`, or we see its
        // `close_waited` (and then take its waker under the lock).
        self.close_done.store(true, Ordering::SeqCst);
        if self.close_waited.load(Ordering::SeqCst) {
            let waiters = std::mem::take(&mut *self.close_waiters.lock().unwrap_or_else(|e| e.into_inner()));
            waiters.into_iter().for_each(Waker::wake);
        }
    }

    /// Starts watching for the end of the call if nobody has yet.
    pub(crate) fn watch_close(self: &Arc<Self>) {
        if let Some(close) = self.claim_close_op() {
            let batch = Batch::new(CloseWatch { shared: self.clone() });
            // SAFETY: the op points into `self`, which the batch state (and so the tag) holds.
            if unsafe { self.call.start_batch(&[close], batch.tag()) }.is_err() {
                // Environment shutting down: report the call as cancelled.
                self.finish_close(false);
            }
        }
    }

    /// True once the call is known to have been cancelled.
    pub(crate) fn is_closed_cancelled(&self) -> bool {
        self.close_state() == Some(true)
    }

    /// `Some(cancelled)` once the call has ended.
    fn close_state(&self) -> Option<bool> {
        self.close_done
            .load(Ordering::Acquire)
            .then(|| self.close_cancelled.load(Ordering::Acquire))
    }
}

/// The batch that only watches for the end of the call.
struct CloseWatch {
    shared: Arc<ServerCallShared>,
}

impl OnComplete for CloseWatch {
    fn on_complete(&mut self, success: bool) {
        self.shared.finish_close(success);
    }
}

/// What a handler knows about its call, and how it shapes the response's metadata.
///
/// Passed by value to every handler.
pub struct ServerContext {
    shared: Arc<ServerCallShared>,
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
    pub(crate) fn new(shared: Arc<ServerCallShared>, method: Arc<str>, deadline: grpcore_sys::gpr_timespec) -> Self {
        ServerContext {
            shared,
            method,
            deadline_raw: deadline,
            deadline: OnceLock::new(),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<ServerCallShared> {
        &self.shared
    }

    /// The full method path, `/package.Service/Method`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The client's address as the core names it, e.g. `ipv4:127.0.0.1:43210`.
    pub fn peer(&self) -> String {
        self.shared.call.peer()
    }

    /// How the client's connection is secured and, under TLS with a client certificate,
    /// who the client is: common name, subject alternative names, its certificate in PEM
    /// (see [`AuthContext`]). A snapshot, read from the core on each call of this.
    pub fn auth_context(&self) -> AuthContext {
        AuthContext::of_call(&self.shared.call)
    }

    /// The call's deadline, if the client set one.
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.get_or_init(|| crate::time::to_instant(self.deadline_raw))
    }

    /// Time left until the deadline (zero once passed); `None` without a deadline.
    pub fn time_remaining(&self) -> Option<Duration> {
        self.deadline().map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The request metadata (headers) the client sent.
    pub fn request_metadata(&self) -> &Metadata {
        self.shared.request_metadata()
    }

    /// Sets the initial metadata (response headers) sent with the first response message
    /// (or on [`ServerSink::send_headers`](crate::ServerSink::send_headers)); has no effect
    /// once they have gone out.
    pub fn set_initial_metadata(&self, metadata: Metadata) {
        self.shared.reply.lock().unwrap_or_else(|e| e.into_inner()).initial = metadata;
    }

    /// Compresses this call's responses with `algorithm` (if the client accepts it),
    /// overriding the server's default. Takes effect with the initial metadata, so set it
    /// before the first response goes out.
    pub fn set_compression(&self, algorithm: Compression) {
        self.shared.reply.lock().unwrap_or_else(|e| e.into_inner()).compression = Some(algorithm);
    }

    /// Sets the trailing metadata sent with the status (on success and on error).
    pub fn set_trailing_metadata(&self, metadata: Metadata) {
        self.shared.reply.lock().unwrap_or_else(|e| e.into_inner()).trailing = metadata;
    }

    /// True once the call is known to be cancelled (by the client, its deadline, or a
    /// server shutdown). The first call starts watching; it may return `false` until the
    /// core reports the cancellation.
    pub fn is_cancelled(&self) -> bool {
        self.shared.watch_close();
        self.shared.close_state() == Some(true)
    }

    /// Resolves when the call is cancelled. Never resolves for a call that completes
    /// normally: use it in a `select` with the handler's work.
    pub fn cancelled(&self) -> Cancelled {
        self.shared.watch_close();
        Cancelled {
            shared: self.shared.clone(),
        }
    }
}

/// Future returned by [`ServerContext::cancelled`].
#[must_use = "futures do nothing unless polled"]
pub struct Cancelled {
    shared: Arc<ServerCallShared>,
}

impl std::fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancelled").finish_non_exhaustive()
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.shared.close_state() {
            Some(true) => return Poll::Ready(()),
            Some(false) => return Poll::Pending, // finished normally: never cancelled
            None => {}
        }
        let mut waiters = self.shared.close_waiters.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.close_waited.store(true, Ordering::SeqCst);
        if self.shared.close_done.load(Ordering::SeqCst) {
            // Finished meanwhile (the waker would not be taken): answer now.
            return if self.shared.close_cancelled.load(Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending };
        }
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
