//! Client calls: options, responses, and the unary call future.

use std::cell::RefCell;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use grpcore_sys as ffi;

use super::raw::{op, ErrorString, OwnedSlice, RecvMessage, RecvMetadata, SendMetadata};
use super::write::{Compression, ENCODING_REQUEST_KEY};
use super::core::{CallCore, ParentCall};
use super::pending::{OwnedStart, StartFuture};
use super::{Batch, Call, OnComplete};
use crate::buffer::{ByteBuffer, MessageReader};
use crate::codec::Coder;
use crate::error::{CodecErrorKind, Error, InternalErrorKind};
use crate::metadata::Metadata;
use crate::status::{Code, Status, DETAILS_KEY};

/// When a call must finish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Deadline {
    #[default]
    Never,
    After(Duration),
    At(Instant),
}

/// Per-call options: deadline, request metadata, wait-for-ready, compression, parent call.
///
/// ```
/// use std::time::Duration;
/// let mut md = grpcore::Metadata::new();
/// md.append("x-request-id", "42").unwrap();
/// let opts = grpcore::CallOptions::new()
///     .timeout(Duration::from_millis(500))
///     .metadata(md)
///     .wait_for_ready(true);
/// ```
#[derive(Clone, Default)]
pub struct CallOptions {
    deadline: Deadline,
    /// The timeout for a call with no deadline of its own and none to inherit.
    default_timeout: Option<Duration>,
    metadata: Metadata,
    wait_for_ready: bool,
    compression: Option<Compression>,
    parent: Option<ParentCall>,
}

impl std::fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallOptions")
            .field("deadline", &self.deadline)
            .field("default_timeout", &self.default_timeout)
            .field("metadata", &self.metadata)
            .field("wait_for_ready", &self.wait_for_ready)
            .field("compression", &self.compression)
            .field("has_parent", &self.parent.is_some())
            .finish()
    }
}

impl CallOptions {
    /// No deadline, no metadata, fail fast.
    pub fn new() -> CallOptions {
        CallOptions::default()
    }

    /// The call fails with `DEADLINE_EXCEEDED` if not finished `timeout` after it starts.
    pub fn timeout(mut self, timeout: Duration) -> CallOptions {
        self.deadline = Deadline::After(timeout);
        self
    }

    /// The call fails with `DEADLINE_EXCEEDED` if not finished at `deadline`.
    pub fn deadline(mut self, deadline: Instant) -> CallOptions {
        self.deadline = Deadline::At(deadline);
        self
    }

    /// Request metadata (headers) to send.
    pub fn metadata(mut self, metadata: Metadata) -> CallOptions {
        self.metadata = metadata;
        self
    }

    /// Wait for the channel to become ready instead of failing at once with `UNAVAILABLE`
    /// while it is connecting or in transient failure (the deadline still applies).
    pub fn wait_for_ready(mut self, wait: bool) -> CallOptions {
        self.wait_for_ready = wait;
        self
    }

    /// Compresses this call's request messages with `algorithm`, overriding the channel's
    /// default (messages sent with [`WriteFlags::no_compress`](crate::WriteFlags) stay plain).
    pub fn compression(mut self, algorithm: Compression) -> CallOptions {
        self.compression = Some(algorithm);
        self
    }

    /// Makes this call a child of the server call `parent`: it inherits the parent's
    /// deadline (the earlier of the two applies) and is cancelled when the parent is
    /// cancelled. Use it for the outgoing calls a handler makes on behalf of its client.
    ///
    /// `parent` is usually `&ctx`, the handler's [`ServerContext`](crate::ServerContext).
    pub fn parent(mut self, parent: impl Into<ParentCall>) -> CallOptions {
        self.parent = Some(parent.into());
        self
    }

    /// The timeout the call gets when it has no deadline: none set with
    /// [`timeout`](Self::timeout) or [`deadline`](Self::deadline), and none inherited from a
    /// [`parent`](Self::parent) that has one. Calls made with a method descriptor that
    /// carries a [`DeadlinePolicy`](crate::DeadlinePolicy) default (generated clients, for
    /// methods with a `(grpcore.deadline)` option) use that one when this is not set.
    pub fn default_timeout(mut self, timeout: Duration) -> CallOptions {
        self.default_timeout = Some(timeout);
        self
    }

    /// Whether the call has a deadline of its own: one set with [`timeout`](Self::timeout)
    /// or [`deadline`](Self::deadline), or one it inherits from a [`parent`](Self::parent)
    /// call that has a deadline. A default timeout does not count: it applies only when
    /// this is `false`.
    pub fn has_deadline(&self) -> bool {
        self.deadline != Deadline::Never || self.parent.as_ref().is_some_and(|p| p.deadline.is_some())
    }

    /// Gives the call `timeout` as its default unless the caller chose a default already
    /// (a method's policy default).
    pub(crate) fn default_timeout_if_unset(&mut self, timeout: Option<Duration>) {
        if self.default_timeout.is_none() {
            self.default_timeout = timeout;
        }
    }

    /// The deadline the call goes out with: its own (or, with none and no parent deadline
    /// to inherit, the default timeout), never later than the parent's deadline as its
    /// handler sees it (which a server's maximum may have brought in; the core, which also
    /// propagates the parent's deadline, only knows the client's).
    fn resolved(&self) -> Deadline {
        let parent = self.parent.as_ref().and_then(|p| p.deadline);
        let own = match (self.deadline, parent, self.default_timeout) {
            (Deadline::Never, None, Some(timeout)) => Deadline::After(timeout),
            (own, _, _) => own,
        };
        let Some(parent) = parent else { return own };
        match own {
            Deadline::Never => Deadline::At(parent),
            Deadline::At(at) => Deadline::At(at.min(parent)),
            Deadline::After(timeout) => Deadline::At(Instant::now().checked_add(timeout).map_or(parent, |at| at.min(parent))),
        }
    }

    pub(crate) fn parent_link(&self) -> Option<&ParentCall> {
        self.parent.as_ref()
    }

    pub(crate) fn parent_call(&self) -> Option<&Call> {
        self.parent.as_ref().map(ParentCall::call)
    }

    /// The request metadata as the core takes it (with the compression request, if any).
    pub(crate) fn send_metadata(&self) -> SendMetadata {
        let encoding = self.compression.map(|c| (ENCODING_REQUEST_KEY, c.name().as_bytes()));
        SendMetadata::new(&self.metadata, encoding)
    }

    /// The deadline as an instant (`None`: no deadline).
    pub(crate) fn deadline_instant(&self) -> Option<Instant> {
        match self.resolved() {
            Deadline::Never => None,
            Deadline::After(d) => Instant::now().checked_add(d),
            Deadline::At(i) => Some(i),
        }
    }

    /// Fixes a relative deadline to the instant it stands for now (a call whose start waits
    /// for its interceptors counts its timeout from when it was made).
    pub(crate) fn set_deadline_at(&mut self, deadline: Instant) {
        self.deadline = Deadline::At(deadline);
    }

    /// Takes the request metadata out (for interceptors, which give it back changed).
    pub(crate) fn take_metadata(&mut self) -> Metadata {
        std::mem::take(&mut self.metadata)
    }

    /// Sets the request metadata.
    pub(crate) fn set_metadata(&mut self, metadata: Metadata) {
        self.metadata = metadata;
    }

    /// True when the deadline has already passed: such a call is not sent (the core would
    /// race its deadline timer against a fast reply).
    pub(crate) fn expired(&self) -> bool {
        match self.resolved() {
            Deadline::Never => false,
            Deadline::After(d) => d.is_zero(),
            Deadline::At(i) => Instant::now() >= i,
        }
    }

    pub(crate) fn raw_deadline(&self) -> ffi::gpr_timespec {
        match self.resolved() {
            Deadline::Never => crate::time::infinite_future(),
            Deadline::After(d) => crate::time::from_timeout(d),
            Deadline::At(i) => crate::time::from_instant(i),
        }
    }

    pub(crate) fn initial_metadata_flags(&self) -> u32 {
        if self.wait_for_ready {
            ffi::GRPC_INITIAL_METADATA_WAIT_FOR_READY | ffi::GRPC_INITIAL_METADATA_WAIT_FOR_READY_EXPLICITLY_SET
        } else {
            0
        }
    }

}

/// A successful unary response: the message, the metadata around it, and who sent it.
pub struct Response<T> {
    message: T,
    initial_metadata: Metadata,
    trailing_metadata: Metadata,
    peer: Peer,
}

/// Where a response's [`Response::peer`] comes from: the finished call, read when asked (no
/// cost for callers that never ask), or a copy.
enum Peer {
    Call(CallCore),
    Shared(Arc<CallCore>),
    Known(String),
}

impl Peer {
    fn get(&self) -> String {
        match self {
            Peer::Call(core) => core.peer(),
            Peer::Shared(core) => core.peer(),
            Peer::Known(peer) => peer.clone(),
        }
    }
}

impl<T: Clone> Clone for Response<T> {
    fn clone(&self) -> Self {
        Response {
            message: self.message.clone(),
            initial_metadata: self.initial_metadata.clone(),
            trailing_metadata: self.trailing_metadata.clone(),
            peer: Peer::Known(self.peer.get()),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Response<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("message", &self.message)
            .field("initial_metadata", &self.initial_metadata)
            .field("trailing_metadata", &self.trailing_metadata)
            .field("peer", &self.peer.get())
            .finish()
    }
}

impl<T> Response<T> {
    /// The server's address as the core names it, e.g. `ipv4:127.0.0.1:50051` (empty if the
    /// core does not know it).
    pub fn peer(&self) -> String {
        self.peer.get()
    }

    pub(crate) fn with_peer_of(mut self, core: &Arc<CallCore>) -> Self {
        self.peer = Peer::Shared(core.clone());
        self
    }

    /// The response message.
    pub fn message(&self) -> &T {
        &self.message
    }

    /// Consumes the response, keeping the message.
    pub fn into_message(self) -> T {
        self.message
    }

    /// The server's initial metadata (response headers).
    pub fn initial_metadata(&self) -> &Metadata {
        &self.initial_metadata
    }

    /// The server's trailing metadata.
    pub fn trailing_metadata(&self) -> &Metadata {
        &self.trailing_metadata
    }

    /// Message, initial metadata and trailing metadata.
    pub fn into_parts(self) -> (T, Metadata, Metadata) {
        (self.message, self.initial_metadata, self.trailing_metadata)
    }
}

/// The receiving half of a call that ends with one response: initial metadata, the
/// message and the status, all in one batch.
pub(crate) struct ResponseState {
    recv_initial: RecvMetadata,
    recv_msg: RecvMessage,
    status: StatusState,
}

impl ResponseState {
    pub(crate) fn new() -> ResponseState {
        ResponseState {
            recv_initial: RecvMetadata::new(),
            recv_msg: RecvMessage::new(),
            status: StatusState::new(),
        }
    }

    /// Makes a finished state ready for another call, keeping the metadata arrays' storage
    /// (the core then appends to them without reallocating).
    fn reset(&mut self) {
        self.recv_initial.clear();
        drop(self.recv_msg.take());
        self.status.reset();
    }

    /// The three receive ops, pointing into `self`.
    pub(crate) fn ops(&mut self) -> [ffi::grpc_op; 3] {
        [
            op::recv_initial_metadata(&mut self.recv_initial),
            op::recv_message(&mut self.recv_msg),
            self.status.op(),
        ]
    }

    /// The response, once the batch is done.
    ///
    /// # Safety
    /// The call must still be alive (received metadata belongs to it).
    pub(crate) unsafe fn finish<Resp>(&mut self, decode: Decode<Resp>) -> Result<Response<Resp>, Error> {
        if self.status.code != ffi::GRPC_STATUS_OK {
            // SAFETY: guaranteed by the caller.
            let (status, _) = unsafe { self.status.finish() };
            return Err(Error::Rpc(status));
        }
        // Success: no `Status` to build (its message and details would be dropped unread).
        // SAFETY: guaranteed by the caller.
        let trailers = unsafe { self.status.ok_trailers() };
        // SAFETY: as above.
        let initial = unsafe { self.recv_initial.to_metadata() };
        match self.recv_msg.take() {
            None => Err(Error::Rpc(Status::internal(
                "the server finished the call with OK but sent no response message",
            ))),
            Some(buf) => decode(&mut buf.reader())
                .map_err(|e| Error::codec_kind(CodecErrorKind::Decode, format!("failed to decode the response: {e}")).with_source(e))
                .map(|message| Response {
                    message,
                    initial_metadata: initial,
                    trailing_metadata: trailers,
                    peer: Peer::Known(String::new()),
                }),
        }
    }
}

impl OnComplete for ResponseState {}

/// RECV_STATUS_ON_CLIENT's buffers.
pub(crate) struct StatusState {
    trailers: RecvMetadata,
    code: ffi::grpc_status_code,
    details: OwnedSlice,
    error: ErrorString,
}

impl OnComplete for StatusState {}

impl StatusState {
    pub(crate) fn new() -> StatusState {
        StatusState {
            trailers: RecvMetadata::new(),
            code: ffi::GRPC_STATUS_UNKNOWN,
            details: OwnedSlice::empty(),
            error: ErrorString::new(),
        }
    }

    /// Makes a finished state ready for another call (see [`ResponseState::reset`]).
    fn reset(&mut self) {
        self.trailers.clear();
        self.code = ffi::GRPC_STATUS_UNKNOWN;
        self.details = OwnedSlice::empty();
        self.error = ErrorString::new();
    }

    /// The op, pointing into `self`.
    pub(crate) fn op(&mut self) -> ffi::grpc_op {
        op::recv_status_on_client(&mut self.trailers, &mut self.code, &mut self.details, &mut self.error)
    }

    /// The status and trailers, once the op is done.
    ///
    /// # Safety
    /// The call must still be alive (the trailers' elements belong to it).
    pub(crate) unsafe fn finish(&self) -> (Status, Metadata) {
        // SAFETY: guaranteed by the caller.
        unsafe { client_status(self.code, &self.details, &self.error, &self.trailers) }
    }

    /// The trailers of a call that ended with `OK`, as [`finish`](Self::finish) would return
    /// them, without building the status.
    ///
    /// # Safety
    /// As for [`finish`](Self::finish).
    pub(crate) unsafe fn ok_trailers(&self) -> Metadata {
        debug_assert_eq!(self.code, ffi::GRPC_STATUS_OK);
        // SAFETY: guaranteed by the caller.
        let mut md = unsafe { self.trailers.to_metadata() };
        if !md.is_empty() {
            md.take_raw(DETAILS_KEY);
        }
        md
    }
}

/// Everything a unary client batch needs on the C side.
pub(crate) struct UnaryClientState {
    send_md: SendMetadata,
    /// The request (kept, emptied, while the batch waits in [`SPARE_BATCHES`]).
    send_msg: ByteBuffer,
    response: ResponseState,
}

impl OnComplete for UnaryClientState {}

pub(crate) type UnaryBatch = Arc<Batch<UnaryClientState>>;

/// How many finished unary batches a thread keeps for its next calls.
const SPARE_MAX: usize = 16;

thread_local! {
    /// Finished unary batches, emptied, whose allocation the thread's next unary calls reuse.
    /// With many calls in flight the allocator's per-thread caches miss, and an allocation
    /// that lives across a call costs several hundred instructions; a spare costs a few.
    static SPARE_BATCHES: RefCell<Vec<UnaryBatch>> = const { RefCell::new(Vec::new()) };
}

/// A batch for a unary call carrying `request`: a spare one if the thread has one (whose
/// request buffer is then refilled).
pub(crate) fn unary_batch<Req>(request: &Req, coder: Coder<Req>) -> Result<UnaryBatch, Error> {
    let spare = SPARE_BATCHES.try_with(|s| s.borrow_mut().pop()).ok().flatten();
    if let Some(mut batch) = spare {
        if let Some(state) = Batch::reusable(&mut batch) {
            // SAFETY: a reusable batch is referenced by nobody else: no tag holds it, so no
            // batch using its buffers is in flight.
            return match unsafe { (coder.refill)(&mut state.send_msg, request) } {
                Ok(()) => Ok(batch),
                Err(e) => {
                    recycle_unary_batch(batch);
                    Err(e)
                }
            };
        }
    }
    Ok(Batch::new(UnaryClientState {
        send_md: SendMetadata::empty(),
        send_msg: (coder.encode)(request)?,
        response: ResponseState::new(),
    }))
}

/// Empties a finished batch (releasing what the call left in it) and keeps it as a spare if
/// nothing else references it and the thread has room.
fn recycle_unary_batch(mut batch: UnaryBatch) {
    let Some(state) = Batch::reusable(&mut batch) else {
        return;
    };
    // The request buffer stays for the next call to refill (see `ByteBuffer::refill`).
    // SAFETY: a reusable batch is referenced by nobody else: no tag holds it, so no batch
    // using its buffers is in flight.
    unsafe { state.send_msg.clear() };
    state.send_md = SendMetadata::empty();
    state.response.reset();
    let _ = SPARE_BATCHES.try_with(|s| {
        let mut spares = s.borrow_mut();
        if spares.len() < SPARE_MAX {
            spares.push(batch);
        }
    });
}

/// A response decoder: a codec's [`Codec::decode`](crate::Codec::decode) for one type.
pub(crate) type Decode<T> = fn(&mut MessageReader<'_>) -> Result<T, Error>;

/// The status a finished client call reported, with its trailers (details extracted).
///
/// # Safety
/// The call must still be alive (the trailers' elements belong to it).
pub(crate) unsafe fn client_status(
    code: ffi::grpc_status_code,
    details: &OwnedSlice,
    error: &ErrorString,
    trailers: &RecvMetadata,
) -> (Status, Metadata) {
    // SAFETY: guaranteed by the caller.
    let mut md = unsafe { trailers.to_metadata() };
    let status_details = md.take_raw(DETAILS_KEY).unwrap_or_default();
    let code = Code::from_i32(code);
    if code != Code::Ok {
        if let Some(e) = error.get() {
            log::debug!("call failed with {code}: {e}");
        }
    }
    let mut status = Status::with_details(code, details.to_string_lossy(), status_details);
    if code != Code::Ok {
        // Errors carry their trailers; a success hands them to the response instead.
        status.set_metadata(md.clone());
    }
    (status, md)
}

/// A unary call in flight. Resolves to the [`Response`] or an [`Error`].
///
/// The call starts when it is created; awaiting only waits for it. Dropping the future
/// before it resolves cancels the call (the server sees `CANCELLED`).
#[must_use = "a unary call is cancelled when dropped"]
pub struct UnaryCall<Resp> {
    state: UnaryState,
    decode: Decode<Resp>,
}

pub(crate) enum UnaryState {
    Failed(Option<Error>),
    /// Waiting for the channel's interceptors (see `call/pending.rs`).
    Starting(OwnedStart<UnaryState>),
    Running { core: CallCore, batch: Arc<Batch<UnaryClientState>> },
    Finished,
}

impl UnaryState {
    /// Starts the one batch of a unary call on `call`, with a batch from [`unary_batch`].
    pub(crate) fn start(core: CallCore, opts: &CallOptions, batch: UnaryBatch) -> UnaryState {
        // SAFETY: the batch has not started, so we are the only user of its state; the ops
        // point into that state (or into the request buffer it owns), which the tag keeps
        // alive until the event.
        let result = unsafe {
            let s = &mut *batch.state_ptr();
            s.send_md = opts.send_metadata();
            let [a, b, c] = s.response.ops();
            let ops = [
                op::send_initial_metadata(&mut s.send_md, opts.initial_metadata_flags()),
                op::send_message(&s.send_msg, 0),
                op::send_close_from_client(),
                a,
                b,
                c,
            ];
            core.call.start_batch(&ops, batch.tag())
        };
        if let (true, Some(o)) = (result.is_ok(), core.observer()) {
            o.message_sent();
        }
        match result {
            Ok(()) => UnaryState::Running { core, batch },
            Err(e) => UnaryState::Failed(Some(e)),
        }
    }
}

impl<Resp> UnaryCall<Resp> {
    pub(crate) fn from_state(state: UnaryState, decode: Decode<Resp>) -> Self {
        UnaryCall { state, decode }
    }

    pub(crate) fn failed(err: Error, decode: Decode<Resp>) -> Self {
        Self::from_state(UnaryState::Failed(Some(err)), decode)
    }

    /// A call that starts when `start` (the rest of its interceptors) resolves.
    pub(crate) fn starting(start: StartFuture<UnaryState>, decode: Decode<Resp>) -> Self {
        Self::from_state(UnaryState::Starting(OwnedStart::new(start)), decode)
    }

    /// Blocks the calling thread until the call finishes.
    ///
    /// Fails at once when called on a completion-queue thread (it would wait for itself).
    pub fn wait(self) -> Result<Response<Resp>, Error> {
        crate::blocking::block_on(self)?
    }

    /// The server's address as the core names it, e.g. `ipv4:127.0.0.1:50051`; empty before
    /// the call is connected, or when it failed to start.
    pub fn peer(&self) -> String {
        match &self.state {
            UnaryState::Running { core, .. } => core.peer(),
            _ => String::new(),
        }
    }
}

impl<Resp> Future for UnaryCall<Resp> {
    type Output = Result<Response<Resp>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let UnaryState::Starting(start) = &mut this.state {
            match start.poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(state) => this.state = state,
            }
        }
        let result = match &mut this.state {
            UnaryState::Starting(_) => unreachable!("a start resolves to a started or failed call"),
            UnaryState::Failed(e) => Err(e.take().unwrap_or_else(|| Error::internal_kind(InternalErrorKind::Misuse, "polled after completion"))),
            UnaryState::Finished => Err(Error::internal_kind(InternalErrorKind::Misuse, "unary call polled after completion")),
            UnaryState::Running { batch, .. } => {
                if batch.poll_done(cx).is_none() {
                    return Poll::Pending;
                }
                // SAFETY: the batch is done and this future is its only Rust owner; the call is
                // still alive (held in `state`) while we read the metadata it owns.
                let result = unsafe { batch.state_mut().response.finish(this.decode) };
                if let UnaryState::Running { core, .. } = &this.state {
                    if let Some(o) = core.observer() {
                        match &result {
                            Ok(_) => {
                                o.message_received();
                                core.observe_end(Code::Ok, "");
                            }
                            Err(e) => {
                                let status = e.status();
                                core.observe_end(status.code(), status.message());
                            }
                        }
                    }
                }
                if let UnaryState::Running { core, batch } = std::mem::replace(&mut this.state, UnaryState::Finished) {
                    // Empty the batch while the call that owns its metadata is still alive.
                    recycle_unary_batch(batch);
                    // The response keeps the finished call for its `peer()`.
                    return Poll::Ready(result.map(|mut r| {
                        r.peer = Peer::Call(core);
                        r
                    }));
                }
                return Poll::Ready(result);
            }
        };
        this.state = UnaryState::Finished;
        Poll::Ready(result)
    }
}

impl<Resp> Drop for UnaryCall<Resp> {
    fn drop(&mut self) {
        if let UnaryState::Running { core, batch } = &self.state {
            if !batch.is_done() {
                core.call.cancel();
            }
        }
    }
}

impl<Resp> UnaryCall<Resp> {
    /// The same future, boxed (handy for storing calls of different types).
    pub fn boxed(self) -> Pin<Box<dyn Future<Output = Result<Response<Resp>, Error>> + Send>>
    where
        Resp: Send + 'static,
    {
        Box::pin(self.into_future())
    }
}
