//! The call core: one per call, client and server alike. Every public call type is a thin
//! handle over it, and every batch of a call starts here.
//!
//! - [`CallCore`] owns the core's `grpc_call` (which holds its channel on the client) and
//!   the call's [`CallState`] word, the one place where the C API's rules are kept: one
//!   send batch in flight, one receive batch in flight, the final op once and after the
//!   last send.
//! - [`SendSlot`] is the send side: the one write in flight and the finished batch its
//!   next write reuses. Its completion tells the state word, on the queue thread, so a
//!   server's status can follow a write whose sink is already gone.
//! - [`RecvSlot`] is the receive side: the one receive in flight and its spare batch.
//! - [`ServerCallCore`] adds a server call's final batch (initial metadata, message,
//!   status and close, in one batch, with the core itself as the tag), the status a
//!   streaming handler left for its last sink, the response metadata, and the
//!   cancellation watch.
//!
//! Handles: the client's `UnaryCall` holds a `CallCore` by value (it is the call's only
//! handle); `RequestSink`, `ResponseStream` and `ClientStreamingCall` share an
//! `Arc<CallCore>`; `ServerContext`, `RequestStream`, `ServerSink` and `Cancelled` share an
//! `Arc<ServerCallCore>`. Dropping the last handle of an unfinished call cancels it (the
//! `grpc_call_unref` in `Call`'s drop does), and a client's request sink dropped before
//! `close` cancels the call, so an error path never commits a truncated upload.
//!
//! Each side of a call has exactly one handle that uses it (the sink sends, the stream
//! receives), so that handle carries the side's slot and its batches' memory and is the
//! slot's one waiter; the state word in the core decides whether the slot may start a
//! batch, and the send slot's completion reports back to it. The state machine itself is in
//! `call/state.rs`, free of FFI so loom can check it.

use std::cell::{Cell, UnsafeCell};
use std::mem::ManuallyDrop;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use grpcore_sys as ffi;

use super::raw::{op, OpList, OwnedSlice, RecvMessage, RecvMetadata, SendMetadata};
use super::state::{CallState, FinalGrant, SendRefused};
use super::write::{Compression, WriteFlags, ENCODING_REQUEST_KEY};
use super::{Batch, Call, OnComplete};
use crate::buffer::ByteBuffer;
use crate::codec::Coder;
use crate::cq::{ArcTag, Tag, TagHeader};
use crate::error::{Error, InternalErrorKind};
use crate::metadata::Metadata;
use crate::status::{Code, Status, DETAILS_KEY};

/// What interceptors learn of a call as it runs (see `crate::interceptor`). Installed only
/// on calls whose server method or channel has interceptors.
pub(crate) trait CallObserver: Send + Sync + 'static {
    /// A message went out.
    fn message_sent(&self);
    /// A message came in.
    fn message_received(&self);
    /// The status the call ends with, unless it is cancelled (the first report wins).
    fn status(&self, code: Code, message: &str);
    /// The call was cancelled (by the peer, its deadline, or a shutdown).
    fn cancelled(&self);
    /// The call is over: report it (only the first of these does anything).
    fn end(&self);
    /// Lends the values the interceptors attached to the call.
    fn extension(&self, read: &mut dyn FnMut(&crate::interceptor::Extensions));
    /// Keeps the values the start hooks attached.
    fn set_extensions(&self, extensions: crate::interceptor::Extensions);
}

/// One call: the core's call and its state word.
pub(crate) struct CallCore {
    pub(crate) call: Call,
    pub(crate) state: CallState,
    /// The interceptors' observer, if any.
    observer: Option<Box<dyn CallObserver>>,
    /// A client call's final status, once its receiving half has seen it (for the errors of
    /// its sending half). Boxed: most calls never set it, and a unary call moves its core.
    status: OnceLock<Box<Status>>,
}

impl Drop for CallCore {
    fn drop(&mut self) {
        // A call dropped before its end was reported (cancelled by dropping it, or never
        // finished) ends here.
        if let Some(o) = &self.observer {
            o.end();
        }
    }
}

impl CallCore {
    /// A client call (no send handle counts toward a server status).
    pub(crate) fn client(call: Call, observer: Option<Box<dyn CallObserver>>) -> CallCore {
        CallCore {
            call,
            state: CallState::new(0),
            observer,
            status: OnceLock::new(),
        }
    }

    /// The interceptors' observer, if the call has one.
    pub(crate) fn observer(&self) -> Option<&dyn CallObserver> {
        self.observer.as_deref()
    }

    /// A client call ended with `status` (received, or made up by the client): tells the
    /// observer, if any.
    pub(crate) fn observe_end(&self, code: Code, message: &str) {
        if let Some(o) = &self.observer {
            o.status(code, message);
            o.end();
        }
    }

    /// Records the final status of a client call (the first record wins).
    pub(crate) fn set_status(&self, status: Status) {
        let _ = self.status.set(Box::new(status));
    }

    /// The error a client's send reports once the call is over: its status when the
    /// receiving half has seen it.
    pub(crate) fn ended_error(&self) -> Error {
        match self.status.get() {
            Some(s) if s.code() != Code::Ok => Error::Rpc(Status::clone(s)),
            Some(_) => Error::Rpc(Status::new(Code::FailedPrecondition, "the call already finished successfully")),
            None => Error::Rpc(Status::new(
                Code::Unavailable,
                "the call has ended (the server finished it or it was cancelled); the response carries its status",
            )),
        }
    }

    /// The peer's address as the core names it, e.g. `ipv4:127.0.0.1:50051`.
    pub(crate) fn peer(&self) -> String {
        self.call.peer()
    }
}

/// Who is told when a send batch ends.
enum SendOwner {
    Client(Arc<CallCore>),
    Server(Arc<ServerCallCore>),
}

impl SendOwner {
    fn state(&self) -> &CallState {
        match self {
            SendOwner::Client(c) => &c.state,
            SendOwner::Server(s) => &s.core.state,
        }
    }

    /// The send ended: free the send side, and start a server's final op if this was the
    /// last thing it waited for.
    fn send_ended(&self) {
        if let Some(grant) = self.state().end_send() {
            if let SendOwner::Server(s) = self {
                s.start_pending_final(grant);
            }
        }
    }
}

/// C-side buffers of one send batch, and of the receive a joint batch carries.
pub(crate) struct SendState {
    owner: SendOwner,
    initial: Option<SendMetadata>,
    message: Option<ByteBuffer>,
    /// A joint batch's receive (see [`SendSlot::start_client_joint`]); unused otherwise.
    recv: RecvMessage,
    /// The batch carries a receive, so the receiving half waits for it too.
    joint: bool,
}

impl OnComplete for SendState {
    fn on_complete(&mut self, _success: bool) {
        self.owner.send_ended();
    }

    fn second_waiter(&self) -> bool {
        self.joint
    }
}

/// What a send batch carries besides (or instead of) a message.
pub(crate) enum SendKind {
    /// A message with write flags.
    Message(ByteBuffer, WriteFlags),
    /// Initial metadata only (a server's early headers).
    Headers,
    /// The client's half-close.
    Close,
}

/// The send side of a call: at most one batch in flight (the backpressure of a stream).
#[derive(Default)]
pub(crate) struct SendSlot {
    in_flight: Option<Arc<Batch<SendState>>>,
    /// The last finished batch, whose allocation the next send reuses.
    spare: Option<Arc<Batch<SendState>>>,
    failed: bool,
}

impl SendSlot {
    /// Ready when no send is in flight; `Err(())` once a send failed (the call is over).
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        if let Some(batch) = &self.in_flight {
            let Some(ok) = batch.poll_done(cx) else {
                return Poll::Pending;
            };
            self.failed |= !ok;
            self.spare = self.in_flight.take();
        }
        Poll::Ready(if self.failed { Err(()) } else { Ok(()) })
    }

    /// Encodes `item` for this slot's next send: into the buffer of its last finished send
    /// when there is one (a send's buffer outlives its batch; refilling it saves creating a
    /// buffer and destroying the old one, ~600 instructions per message on the 1.51 core),
    /// else into a new buffer.
    pub(crate) fn encode<T>(&mut self, coder: Coder<T>, item: &T) -> Result<ByteBuffer, Error> {
        let spent = self.spare.as_mut().and_then(Batch::reusable).and_then(|state| state.message.take());
        match spent {
            // SAFETY: the spare batch has completed (it became the spare once `poll_ready` saw
            // it done) and nothing else references it (`reusable` checked that the `Arc` is
            // unique: a joint batch's receiving half lets go of it when it yields its message),
            // so no operation uses its buffer.
            Some(mut buf) => unsafe { (coder.refill)(&mut buf, item) }.map(|()| buf),
            None => (coder.encode)(item),
        }
    }

    /// Starts one send batch on a client call.
    pub(crate) fn start_client(&mut self, core: &Arc<CallCore>, kind: SendKind) -> Result<(), SendError> {
        // A client's headers went out with its opening batch: the grant only lets the send start.
        let _grant = match kind {
            SendKind::Close => core.state.begin_close(),
            _ => core.state.begin_send(),
        }?;
        self.start(&core.call, core.observer(), SendOwner::Client(core.clone()), None, kind, None)
    }

    /// Starts one send batch on a server call; the first carries the response headers.
    pub(crate) fn start_server(&mut self, server: &Arc<ServerCallCore>, kind: SendKind) -> Result<(), SendError> {
        let grant = server.core.state.begin_send()?;
        let initial = grant.carries_headers.then(|| server.initial_send_metadata());
        let owner = SendOwner::Server(server.clone());
        self.start(&server.core.call, server.core.observer(), owner, initial, kind, None)
    }

    /// Starts one joint batch on a client call: `message` goes out and the next response
    /// comes in, as one batch and one completion (SEND_MESSAGE + RECV_MESSAGE). Both halves
    /// are busy until it completes: `self` (the next send waits for it) and `recv` (which
    /// yields the message it receives). `recv` must be idle.
    pub(crate) fn start_client_joint(
        &mut self,
        core: &Arc<CallCore>,
        recv: &mut RecvSlot,
        message: ByteBuffer,
        flags: WriteFlags,
    ) -> Result<(), SendError> {
        // A client's headers went out with its opening batch: the grant only lets the send start.
        let _grant = claim_joint(&core.state)?;
        let owner = SendOwner::Client(core.clone());
        self.start(&core.call, core.observer(), owner, None, SendKind::Message(message, flags), Some(recv))
    }

    /// [`SendSlot::start_client_joint`] on a server call: a response goes out and the next
    /// request comes in. The first send carries the response headers.
    pub(crate) fn start_server_joint(
        &mut self,
        server: &Arc<ServerCallCore>,
        recv: &mut RecvSlot,
        message: ByteBuffer,
        flags: WriteFlags,
    ) -> Result<(), SendError> {
        let grant = claim_joint(&server.core.state)?;
        let initial = grant.carries_headers.then(|| server.initial_send_metadata());
        let owner = SendOwner::Server(server.clone());
        let kind = SendKind::Message(message, flags);
        self.start(&server.core.call, server.core.observer(), owner, initial, kind, Some(recv))
    }

    /// Starts the batch the state word granted; a message counts as sent for `observer`.
    /// With `recv`, the batch also receives the next message for it (the state word granted
    /// the receive too).
    fn start(
        &mut self,
        call: &Call,
        observer: Option<&dyn CallObserver>,
        owner: SendOwner,
        initial: Option<SendMetadata>,
        kind: SendKind,
        recv: Option<&mut RecvSlot>,
    ) -> Result<(), SendError> {
        debug_assert!(self.in_flight.is_none());
        let message_sent = matches!(kind, SendKind::Message(..));
        let (message, flags, close) = match kind {
            SendKind::Message(m, flags) => (Some(m), flags.bits(), false),
            SendKind::Headers => (None, 0, false),
            SendKind::Close => (None, 0, true),
        };
        // Replacing the previous send's state releases its buffers.
        let joint = recv.is_some();
        let state = SendState {
            owner,
            initial,
            message,
            recv: RecvMessage::new(),
            joint,
        };
        let batch = Batch::reuse_or_new(self.spare.take(), state);
        // SAFETY: the batch has not started; its ops point into its own state, which the tag
        // keeps alive until the event.
        let started = unsafe {
            let s = &mut *batch.state_ptr();
            let mut ops = OpList::<4>::new();
            if let Some(md) = s.initial.as_mut() {
                ops.push(op::send_initial_metadata(md, 0));
            }
            if let Some(m) = &s.message {
                ops.push(op::send_message(m, flags));
            }
            if close {
                ops.push(op::send_close_from_client());
            }
            if joint {
                ops.push(op::recv_message(&mut s.recv));
            }
            call.start_batch(ops.as_slice(), batch.tag())
        };
        match started {
            Ok(()) => {
                if let Some(recv) = recv {
                    debug_assert!(recv.is_idle());
                    recv.joint = Some(batch.clone());
                }
                self.in_flight = Some(batch);
                if let (Some(o), true) = (observer, message_sent) {
                    o.message_sent();
                }
                Ok(())
            }
            Err(e) => {
                // No event will come: free both sides ourselves.
                // SAFETY: the core refused the batch, so nobody else reads its state.
                let owner = unsafe { &(*batch.state_ptr()).owner };
                if joint {
                    owner.state().end_recv();
                }
                owner.send_ended();
                self.failed = true;
                Err(SendError::Core(e))
            }
        }
    }
}

/// Claims both halves of a call for one joint batch: the receive first (a stream that has
/// one in flight cannot join; the caller checked), then the send.
fn claim_joint(state: &CallState) -> Result<super::state::SendGrant, SendError> {
    if !state.begin_recv() {
        return Err(SendError::Refused(SendRefused::Busy));
    }
    state.begin_send().map_err(|e| {
        state.end_recv();
        SendError::Refused(e)
    })
}

/// Why a send did not start.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The state word refused it.
    Refused(SendRefused),
    /// The core refused the batch (e.g. the environment is shutting down).
    Core(Error),
}

impl From<SendRefused> for SendError {
    fn from(r: SendRefused) -> SendError {
        SendError::Refused(r)
    }
}

impl OnComplete for RecvMessage {}

/// The receive side of a call: at most one receive in flight, alone or in a joint batch
/// with a send.
#[derive(Default)]
pub(crate) struct RecvSlot {
    in_flight: Option<Arc<Batch<RecvMessage>>>,
    /// The last finished receive's batch, whose allocation the next receive reuses.
    spare: Option<Arc<Batch<RecvMessage>>>,
    /// A joint batch carrying this side's receive ([`SendSlot::start_client_joint`]); the
    /// send slot holds it too, and this side waits as its second waiter.
    joint: Option<Arc<Batch<SendState>>>,
}

impl RecvSlot {
    /// No receive in flight, alone or joint: a joint batch may carry the next one.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.is_none() && self.joint.is_none()
    }

    /// Polls for the next message: starts a receive if none is in flight. `Ok(None)` when
    /// the stream ended (or the call failed: see `Call::failed_before_recv_message`).
    ///
    /// Inlined for the joint receive (a streaming handler's every message on the joint API),
    /// with the receive of its own batch out of line.
    #[inline]
    pub(crate) fn poll_message(&mut self, core: &CallCore, cx: &mut Context<'_>) -> Poll<Result<Option<ByteBuffer>, Error>> {
        if let Some(batch) = &self.joint {
            let Some(ok) = batch.poll_done_second(cx) else {
                return Poll::Pending;
            };
            core.state.end_recv();
            // SAFETY: done; the send slot that shares the batch never reads its state (it only
            // reuses the allocation once it holds the last reference), so this side is its
            // only Rust reader.
            let message = if ok { unsafe { batch.state_mut().recv.take() } } else { None };
            self.joint = None;
            if let (Some(_), Some(o)) = (&message, core.observer()) {
                o.message_received();
            }
            return Poll::Ready(Ok(message));
        }
        self.poll_own(core, cx)
    }

    /// [`RecvSlot::poll_message`] without a joint batch: a receive batch of its own.
    #[inline(never)]
    fn poll_own(&mut self, core: &CallCore, cx: &mut Context<'_>) -> Poll<Result<Option<ByteBuffer>, Error>> {
        if self.in_flight.is_none() {
            if !core.state.begin_recv() {
                return Poll::Ready(Err(Error::internal_kind(InternalErrorKind::Misuse, "a second receive on one call")));
            }
            let batch = Batch::reuse_or_new(self.spare.take(), RecvMessage::new());
            // SAFETY: the op points into the batch state, kept alive by the tag.
            let started = unsafe {
                let op = op::recv_message(&mut *batch.state_ptr());
                core.call.start_batch(&[op], batch.tag())
            };
            if let Err(e) = started {
                core.state.end_recv();
                return Poll::Ready(Err(e));
            }
            self.in_flight = Some(batch);
        }
        let batch = self.in_flight.as_ref().expect("a receive is in flight");
        let Some(ok) = batch.poll_done(cx) else {
            return Poll::Pending;
        };
        core.state.end_recv();
        // SAFETY: done; this slot is the batch's only Rust reader.
        let message = if ok { unsafe { batch.state_mut().take() } } else { None };
        self.spare = self.in_flight.take();
        if let (Some(_), Some(o)) = (&message, core.observer()) {
            o.message_received();
        }
        Poll::Ready(Ok(message))
    }
}

/// A client call's parent, for deadline and cancellation propagation: a server call.
/// Made from a handler's context (`CallOptions::parent(&ctx)`).
#[derive(Clone)]
pub struct ParentCall {
    server: Arc<ServerCallCore>,
    /// The parent's deadline as its handler sees it (a server's maximum may have brought
    /// it in from the client's).
    pub(crate) deadline: Option<Instant>,
}

impl std::fmt::Debug for ParentCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParentCall").finish_non_exhaustive()
    }
}

impl ParentCall {
    /// Links `server` as a parent: the core notices a client's cancellation only through a
    /// pending close op on the server call, so one is started (only then can it reach
    /// the child).
    pub(crate) fn new(server: &Arc<ServerCallCore>, deadline: Option<Instant>) -> ParentCall {
        server.watch_close();
        ParentCall { server: server.clone(), deadline }
    }

    pub(crate) fn call(&self) -> &Call {
        &self.server.core.call
    }

    pub(crate) fn server(&self) -> &Arc<ServerCallCore> {
        &self.server
    }
}

/// The metadata a handler chooses for its response.
#[derive(Default)]
pub(crate) struct ReplyMetadata {
    pub(crate) initial: Metadata,
    pub(crate) trailing: Metadata,
    /// The compression chosen for this call's responses, if any.
    pub(crate) compression: Option<Compression>,
}

/// What the final batch of a server call points into.
struct FinalBuffers {
    initial: SendMetadata,
    message: Option<ByteBuffer>,
    trailers: SendMetadata,
    details: OwnedSlice,
    /// The batch carries RECV_CLOSE_ON_SERVER, so its completion ends the close watch.
    carries_close: bool,
}

/// A server call: the call core plus its final batch, the response metadata and the
/// cancellation watch. It is the tag of its final batch, whose buffers it holds (no
/// allocation of their own).
#[repr(C)]
pub(crate) struct ServerCallCore {
    header: TagHeader,
    pub(crate) core: CallCore,
    /// The request metadata as received; its elements belong to the call.
    request_raw: RecvMetadata,
    request_metadata: OnceLock<Metadata>,
    /// What the handler set for the response's metadata (one lock for all of it).
    pub(crate) reply: Mutex<ReplyMetadata>,
    /// A streaming handler's outcome, left for whoever starts the final op (the handler's
    /// end, the last sink's drop, or the last write's completion: see `call/state.rs`).
    pending: Mutex<Option<(Option<ByteBuffer>, Status)>>,
    /// The C-side buffers of the final batch: written once by the holder of the
    /// [`FinalGrant`] before the batch starts, read by the core while it runs, dropped when
    /// its event arrives.
    final_batch: UnsafeCell<Option<FinalBuffers>>,
    close: CloseWatch,
}

/// RECV_CLOSE_ON_SERVER: how a server learns that its call was cancelled.
struct CloseWatch {
    /// Set by whoever puts the op in a batch (it may be sent only once).
    started: AtomicBool,
    /// Written by the core when the op completes: non-zero if the call was cancelled.
    raw: UnsafeCell<c_int>,
    done: AtomicBool,
    cancelled: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
    /// Set (SeqCst, before `done` is re-read) by a waiter about to wait, so that
    /// `finish_close` takes the waiters' lock only when someone may be waiting.
    waited: AtomicBool,
}

// SAFETY: `request_raw` is only read (under `request_metadata`'s once-initialisation) while
// the call that owns its elements is alive; `close.raw` is written by the core while the batch carrying RECV_CLOSE_ON_SERVER
// runs and read only in `finish_close`, called from that batch's completion, after the
// write; `final_batch` is written only by the one holder of the final grant (the state word
// hands it out once) before the batch starts, and read back only by the batch's
// completion. Every other field is thread-safe. The call's C API rules (one send, one
// receive in flight) are kept by the state word in `core`.
unsafe impl Send for ServerCallCore {}
// SAFETY: as above.
unsafe impl Sync for ServerCallCore {}

// SAFETY: `ServerCallCore` is `#[repr(C)]` with the header made by
// `for_arc::<ServerCallCore>` first; only the final batch uses it as its tag.
unsafe impl ArcTag for ServerCallCore {
    fn on_event(self: Arc<Self>, success: bool) {
        // SAFETY: the final batch is done, so the core no longer reads the buffers, and
        // nothing else touches them after the grant holder wrote them.
        let buffers = unsafe { (*self.final_batch.get()).take() };
        if buffers.is_some_and(|b| b.carries_close) {
            self.finish_close(success);
        }
        if let Some(o) = self.core.observer() {
            if self.is_cancelled() || !success {
                o.cancelled();
            }
            o.end();
        }
        // Usually the last reference (a unary call's handler is done by now).
        recycle(self);
    }
}

/// How many finished server call cores a thread keeps for reuse.
const SPARE_CORES: usize = 64;

/// The allocations of server call cores that ended on this thread, their values already
/// dropped, for the next calls' cores (see [`recycle`]).
struct SpareCores {
    cores: [Cell<*mut ServerCallCore>; SPARE_CORES],
    len: Cell<usize>,
}

thread_local! {
    static SPARE_CORES_OF_THREAD: SpareCores = const {
        SpareCores { cores: [const { Cell::new(std::ptr::null_mut()) }; SPARE_CORES], len: Cell::new(0) }
    };
}

impl Drop for SpareCores {
    fn drop(&mut self) {
        for core in &self.cores[..self.len.get()] {
            // SAFETY: each kept pointer came from `Arc::into_raw` of a unique
            // `Arc<ServerCallCore>` whose value was dropped in place (`recycle`): freeing it
            // as a `ManuallyDrop` (same size and alignment) releases the memory without
            // dropping the value again. Each is released once, here.
            drop(unsafe { Arc::from_raw(core.get() as *const ManuallyDrop<ServerCallCore>) });
        }
    }
}

/// Drops `server`: if this was its last reference, its value is dropped now, exactly as
/// dropping the `Arc` would (same thread, same moment), but the memory is kept for the next
/// call's core on this thread. A server answers every unary call with one core; reusing
/// their memory spares a `malloc` and a `free` of ~480 bytes per call, which under many
/// calls in flight glibc serves from its slower bins (benches/README.md, issue #18 target 5).
fn recycle(mut server: Arc<ServerCallCore>) {
    if Arc::get_mut(&mut server).is_none() {
        return; // someone else still holds it: freed with their reference
    }
    let _ = SPARE_CORES_OF_THREAD.try_with(|spare| {
        let len = spare.len.get();
        if len == SPARE_CORES {
            return;
        }
        let raw = Arc::into_raw(server) as *mut ServerCallCore;
        // Kept before its value is dropped: if that drop panics, the memory is not lost
        // and is never read as a value (only freed or overwritten).
        spare.cores[len].set(raw);
        spare.len.set(len + 1);
        // SAFETY: the `Arc` was unique (`get_mut`), so nobody else can reach the value; it
        // is dropped once, in place, and the allocation stays ours (in `spare`), to be
        // written with a new value (`ServerCallCore::new`) or freed without a drop.
        unsafe { std::ptr::drop_in_place(raw) };
    });
}

/// Puts `server` in a recycled allocation if this thread kept one, else in a new one.
#[inline(always)] // one copy of the value into its place, not two (a by-value argument, then the write)
fn allocate_core(server: ServerCallCore) -> Arc<ServerCallCore> {
    let spare = SPARE_CORES_OF_THREAD
        .try_with(|spare| {
            let len = spare.len.get();
            (len > 0).then(|| {
                spare.len.set(len - 1);
                spare.cores[len - 1].get()
            })
        })
        .ok()
        .flatten();
    // A new allocation is made uninitialised too (`Arc::new_uninit` is newer than our MSRV),
    // so that the value is copied once either way.
    let raw = spare.unwrap_or_else(|| {
        Arc::into_raw(Arc::new(std::mem::MaybeUninit::<ServerCallCore>::uninit())) as *mut ServerCallCore
    });
    // SAFETY: `raw` is either a fresh, unique, uninitialised `Arc` allocation
    // (`MaybeUninit<T>` has `T`'s size and alignment), or came from `Arc::into_raw` of a unique
    // `Arc<ServerCallCore>` whose value was dropped (`recycle`) and is out of the spare list.
    // Writing a value there and taking the `Arc` back gives a unique, valid `Arc` (its counts
    // are one strong reference and the implicit weak one).
    unsafe {
        std::ptr::write(raw, server);
        Arc::from_raw(raw)
    }
}

/// The batch that only watches for the end of a server call.
struct CloseBatch {
    server: Arc<ServerCallCore>,
}

impl OnComplete for CloseBatch {
    fn on_complete(&mut self, success: bool) {
        self.server.finish_close(success);
    }
}

impl ServerCallCore {
    /// A server call with its request metadata and `senders` send handles (sinks) that the
    /// status waits for.
    pub(crate) fn new(
        call: Call,
        request: RecvMetadata,
        senders: u32,
        observer: Option<Box<dyn CallObserver>>,
    ) -> Arc<ServerCallCore> {
        allocate_core(ServerCallCore {
            header: TagHeader::for_arc::<ServerCallCore>(),
            core: CallCore {
                call,
                state: CallState::new(senders),
                observer,
                status: OnceLock::new(),
            },
            request_raw: request,
            request_metadata: OnceLock::new(),
            reply: Mutex::new(ReplyMetadata::default()),
            pending: Mutex::new(None),
            final_batch: UnsafeCell::new(None),
            close: CloseWatch {
                started: AtomicBool::new(false),
                raw: UnsafeCell::new(0),
                done: AtomicBool::new(false),
                cancelled: AtomicBool::new(false),
                waiters: Mutex::new(Vec::new()),
                waited: AtomicBool::new(false),
            },
        })
    }

    /// A copy of the request metadata as received (for interceptors, which may change it
    /// before the handler reads it).
    pub(crate) fn request_metadata_copy(&self) -> Metadata {
        // SAFETY: the call that owns the array's elements is alive (`self.core.call`).
        unsafe { self.request_raw.to_metadata() }
    }

    /// Sets the request metadata the handler will see (before it runs).
    pub(crate) fn set_request_metadata(&self, metadata: Metadata) {
        let _ = self.request_metadata.set(metadata);
    }

    /// A streaming handler is about to get `senders` sinks (a call whose core was made
    /// before its handler, for interceptors).
    pub(crate) fn add_senders(&self, senders: u32) {
        self.core.state.add_senders(senders);
    }

    /// A copy of the value of type `T` the interceptors attached to this call.
    pub(crate) fn extension<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        let mut found = None;
        if let Some(o) = self.core.observer() {
            o.extension(&mut |ext| found = ext.get::<T>().cloned());
        }
        found
    }

    /// The request metadata, copied out of the core's array on first use.
    pub(crate) fn request_metadata(&self) -> &Metadata {
        self.request_metadata.get_or_init(|| {
            // SAFETY: the call that owns the array's elements is alive (`self.core.call`).
            unsafe { self.request_raw.to_metadata() }
        })
    }

    /// The initial metadata to send, with the compression request if one was made.
    fn initial_send_metadata(&self) -> SendMetadata {
        let reply = self.reply.lock().unwrap_or_else(|e| e.into_inner());
        initial_of(&reply)
    }

    /// Ends the call now with `message` (if any) and `status`: a unary reply, or a refusal
    /// before any handler ran. Ignored (logged) if the call's end had already started.
    pub(crate) fn send_final(self: &Arc<Self>, message: Option<ByteBuffer>, status: &Status) {
        match self.core.state.begin_final() {
            Some(grant) => self.start_final(grant, message, status),
            None => log::debug!("a second final batch for one call was ignored"),
        }
    }

    /// A streaming handler returned with `status`: the call ends now if no sink is left and
    /// no write in flight, else when the last of them is done.
    pub(crate) fn handler_done(self: &Arc<Self>, status: Status) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some((None, status));
        if let Some(grant) = self.core.state.handler_done() {
            self.start_pending_final(grant);
        }
    }

    /// A sink is finished (closed or dropped).
    pub(crate) fn sender_done(self: &Arc<Self>) {
        if let Some(grant) = self.core.state.drop_sender() {
            self.start_pending_final(grant);
        }
    }

    /// Starts the final op with the outcome the handler left.
    fn start_pending_final(self: &Arc<Self>, grant: FinalGrant) {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (message, status) = pending.unwrap_or_else(|| (None, Status::internal("the handler left no status")));
        self.start_final(grant, message, &status);
    }

    /// Sends the end of a server call in one batch: initial metadata (unless already sent),
    /// the message (if any), the status with trailers, and the close. Fire and forget: the
    /// tag (this core) keeps everything alive until the core is done.
    fn start_final(self: &Arc<Self>, grant: FinalGrant, message: Option<ByteBuffer>, status: &Status) {
        let (initial, trailers) = {
            let mut reply = self.reply.lock().unwrap_or_else(|e| e.into_inner());
            let initial = if grant.carries_headers { initial_of(&reply) } else { SendMetadata::empty() };
            (initial, std::mem::take(&mut reply.trailing))
        };
        let details = status.details();
        let close = self.claim_close_op();
        let carries_close = close.is_some();
        let code = status.code();
        if let Some(o) = self.core.observer() {
            o.status(code, status.message());
            if message.is_some() {
                o.message_sent();
            }
        }
        let buffers = FinalBuffers {
            initial,
            message,
            trailers: if trailers.is_empty() && details.is_empty() {
                SendMetadata::empty()
            } else {
                SendMetadata::new(&trailers, (!details.is_empty()).then_some((DETAILS_KEY, details)))
            },
            details: OwnedSlice::copy_of(status.message().as_bytes()),
            carries_close,
        };
        // SAFETY: the state word handed the final grant out once, to us, so this is the only
        // writer of `final_batch`, and no batch using it has started yet. The ops point into
        // the buffers (or into `self`), which the tag (one reference to `self`) keeps alive
        // until the event, when `on_event` drops them.
        let result = unsafe {
            let slot = &mut *self.final_batch.get();
            let s = slot.insert(buffers);
            let mut ops = OpList::<4>::new();
            if grant.carries_headers {
                ops.push(op::send_initial_metadata(&mut s.initial, 0));
            }
            if let Some(m) = &s.message {
                ops.push(op::send_message(m, 0));
            }
            ops.push(op::send_status_from_server(&mut s.trailers, code.as_i32() as ffi::grpc_status_code, &mut s.details));
            if let Some(close) = close {
                ops.push(close);
            }
            self.core.call.start_batch(ops.as_slice(), Tag::from_arc(self))
        };
        if let Err(e) = result {
            log::debug!("could not send the reply: {e}");
            self.core.call.cancel_with_status(Code::Internal, "the server could not send its reply");
            if carries_close {
                self.finish_close(false);
            }
        }
    }

    /// Claims the RECV_CLOSE_ON_SERVER op: `Some(op)` for the first caller only. The op
    /// points into `self`; the batch carrying it must hold this `Arc` and call
    /// [`ServerCallCore::finish_close`] on completion.
    fn claim_close_op(&self) -> Option<ffi::grpc_op> {
        (!self.close.started.swap(true, Ordering::AcqRel)).then(|| op::recv_close_on_server(self.close.raw.get()))
    }

    /// Records the outcome of RECV_CLOSE_ON_SERVER and wakes cancellation waiters.
    fn finish_close(&self, success: bool) {
        // SAFETY: called once, from the completion of the batch that carried the op, so the
        // core has finished writing `close.raw`.
        let cancelled = !success || unsafe { *self.close.raw.get() } != 0;
        self.close.cancelled.store(cancelled, Ordering::Release);
        if let Some(o) = self.core.observer() {
            if cancelled {
                o.cancelled();
            }
            // After a normal close the status is known (it was sent before the close
            // completed); after a cancellation nothing more will come.
            o.end();
        }
        // SeqCst pairs with `poll_cancelled`: either it sees `done`, or we see its `waited`
        // (and then take its waker under the lock).
        self.close.done.store(true, Ordering::SeqCst);
        if self.close.waited.load(Ordering::SeqCst) {
            let waiters = std::mem::take(&mut *self.close.waiters.lock().unwrap_or_else(|e| e.into_inner()));
            waiters.into_iter().for_each(Waker::wake);
        }
    }

    /// Starts watching for the end of the call if nobody has yet.
    pub(crate) fn watch_close(self: &Arc<Self>) {
        if let Some(close) = self.claim_close_op() {
            let batch = Batch::new(CloseBatch { server: self.clone() });
            // SAFETY: the op points into `self`, which the batch state (and so the tag) holds.
            if unsafe { self.core.call.start_batch(&[close], batch.tag()) }.is_err() {
                // Environment shutting down: report the call as cancelled.
                self.finish_close(false);
            }
        }
    }

    /// `Some(cancelled)` once the call has ended.
    pub(crate) fn close_state(&self) -> Option<bool> {
        self.close
            .done
            .load(Ordering::Acquire)
            .then(|| self.close.cancelled.load(Ordering::Acquire))
    }

    /// True once the call is known to have been cancelled.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.close_state() == Some(true)
    }

    /// Ready when the call is cancelled; pending forever for a call that ends normally.
    pub(crate) fn poll_cancelled(&self, cx: &mut Context<'_>) -> Poll<()> {
        match self.close_state() {
            Some(true) => return Poll::Ready(()),
            Some(false) => return Poll::Pending, // finished normally: never cancelled
            None => {}
        }
        let mut waiters = self.close.waiters.lock().unwrap_or_else(|e| e.into_inner());
        self.close.waited.store(true, Ordering::SeqCst);
        if self.close.done.load(Ordering::SeqCst) {
            // Finished meanwhile (the waker would not be taken): answer now.
            return if self.close.cancelled.load(Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending };
        }
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The initial metadata to send from already-locked reply metadata.
fn initial_of(reply: &ReplyMetadata) -> SendMetadata {
    if reply.initial.is_empty() && reply.compression.is_none() {
        return SendMetadata::empty();
    }
    SendMetadata::new(&reply.initial, reply.compression.map(|c| (ENCODING_REQUEST_KEY, c.name().as_bytes())))
}
