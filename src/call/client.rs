//! Client calls: options, responses, and the unary call future.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use grpcore_sys as ffi;

use super::raw::{op, ErrorString, OwnedSlice, RecvMessage, RecvMetadata, SendMetadata};
use super::{Batch, Call, OnComplete};
use crate::buffer::ByteBuffer;
use crate::codec::Codec;
use crate::error::Error;
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

/// Per-call options: deadline, request metadata, wait-for-ready.
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
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    deadline: Deadline,
    metadata: Metadata,
    wait_for_ready: bool,
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

    pub(crate) fn raw_deadline(&self) -> ffi::gpr_timespec {
        match self.deadline {
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

    pub(crate) fn request_metadata(&self) -> &Metadata {
        &self.metadata
    }
}

/// A successful unary response: the message and the metadata around it.
#[derive(Clone, Debug)]
pub struct Response<T> {
    message: T,
    initial_metadata: Metadata,
    trailing_metadata: Metadata,
}

impl<T> Response<T> {
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

/// Everything a unary client batch needs on the C side.
pub(crate) struct UnaryClientState {
    send_md: SendMetadata,
    send_msg: ByteBuffer,
    recv_initial: RecvMetadata,
    recv_msg: RecvMessage,
    trailers: RecvMetadata,
    status: ffi::grpc_status_code,
    details: OwnedSlice,
    error: ErrorString,
}

impl OnComplete for UnaryClientState {}

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
    status.set_metadata(md.clone());
    (status, md)
}

/// A unary call in flight. Resolves to the [`Response`] or an [`Error`].
///
/// The call starts when it is created; awaiting only waits for it. Dropping the future
/// before it resolves cancels the call (the server sees `CANCELLED`).
#[must_use = "a unary call is cancelled when dropped"]
pub struct UnaryCall<Resp, C> {
    state: UnaryState,
    _types: PhantomData<fn() -> (Resp, C)>,
}

enum UnaryState {
    Failed(Option<Error>),
    Running { call: Call, batch: Arc<Batch<UnaryClientState>> },
    Finished,
}

impl<Resp, C: Codec<Resp>> UnaryCall<Resp, C> {
    pub(crate) fn failed(err: Error) -> Self {
        UnaryCall {
            state: UnaryState::Failed(Some(err)),
            _types: PhantomData,
        }
    }

    /// Starts the one batch of a unary call on `call`.
    pub(crate) fn start(call: Call, opts: &CallOptions, request: ByteBuffer) -> Self {
        let batch = Batch::new(UnaryClientState {
            send_md: SendMetadata::new(opts.request_metadata(), None),
            send_msg: request,
            recv_initial: RecvMetadata::new(),
            recv_msg: RecvMessage::new(),
            trailers: RecvMetadata::new(),
            status: ffi::GRPC_STATUS_UNKNOWN,
            details: OwnedSlice::empty(),
            error: ErrorString::new(),
        });
        // SAFETY: the batch has not started, so we are the only user of its state; the ops
        // point into that state, which the tag keeps alive until the event.
        let result = unsafe {
            let s = &mut *batch.state_ptr();
            let ops = [
                op::send_initial_metadata(&mut s.send_md, opts.initial_metadata_flags()),
                op::send_message(&s.send_msg, 0),
                op::send_close_from_client(),
                op::recv_initial_metadata(&mut s.recv_initial),
                op::recv_message(&mut s.recv_msg),
                op::recv_status_on_client(&mut s.trailers, &mut s.status, &mut s.details, &mut s.error),
            ];
            call.start_batch(&ops, batch.tag())
        };
        match result {
            Ok(()) => UnaryCall {
                state: UnaryState::Running { call, batch },
                _types: PhantomData,
            },
            Err(e) => Self::failed(e),
        }
    }

    /// Blocks the calling thread until the call finishes.
    ///
    /// Fails at once when called on a completion-queue thread (it would wait for itself).
    pub fn wait(self) -> Result<Response<Resp>, Error> {
        crate::blocking::block_on(self)?
    }
}

impl<Resp, C: Codec<Resp>> Future for UnaryCall<Resp, C> {
    type Output = Result<Response<Resp>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let result = match &mut this.state {
            UnaryState::Failed(e) => Err(e.take().unwrap_or_else(|| Error::Internal("polled after completion".into()))),
            UnaryState::Finished => Err(Error::Internal("unary call polled after completion".into())),
            UnaryState::Running { batch, .. } => {
                if batch.poll_done(cx).is_none() {
                    return Poll::Pending;
                }
                // SAFETY: the batch is done and this future is its only Rust owner; the call is
                // still alive (held in `state`) while we read the metadata it owns.
                let s = unsafe { batch.state_mut() };
                // SAFETY: as above.
                let (status, trailers) = unsafe { client_status(s.status, &s.details, &s.error, &s.trailers) };
                if status.code() != Code::Ok {
                    Err(Error::Rpc(status))
                } else {
                    // SAFETY: as above.
                    let initial = unsafe { s.recv_initial.to_metadata() };
                    match s.recv_msg.take() {
                        None => Err(Error::Rpc(Status::internal(
                            "the server finished the unary call with OK but sent no response message",
                        ))),
                        Some(buf) => C::decode(&mut buf.reader())
                            .map_err(|e| Error::Codec(format!("failed to decode the response: {e}")))
                            .map(|message| Response {
                                message,
                                initial_metadata: initial,
                                trailing_metadata: trailers,
                            }),
                    }
                }
            }
        };
        this.state = UnaryState::Finished;
        Poll::Ready(result)
    }
}

impl<Resp, C> Drop for UnaryCall<Resp, C> {
    fn drop(&mut self) {
        if let UnaryState::Running { call, batch } = &self.state {
            if !batch.is_done() {
                call.cancel();
            }
        }
    }
}

/// A unary call is also usable through `IntoFuture`-style APIs.
impl<Resp, C: Codec<Resp>> UnaryCall<Resp, C> {
    /// The same future, boxed (handy for storing calls of different types).
    pub fn boxed(self) -> Pin<Box<dyn Future<Output = Result<Response<Resp>, Error>> + Send>>
    where
        Resp: Send + 'static,
        C: 'static,
    {
        Box::pin(self.into_future())
    }
}
