//! Streaming on the server: a [`RequestStream`] of requests, a [`ServerSink`] for responses,
//! and the handlers of the three streaming kinds.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_sink::Sink;
use futures_util::FutureExt;

use super::context::{ServerCallShared, ServerContext};
use super::service::{panic_status, send_final, serve_response, Handler, IncomingCall, Spawn};
use crate::buffer::ByteBuffer;
use crate::call::raw::{op, RecvMessage, SendMetadata};
use crate::call::write::WriteFlags;
use crate::call::Batch;
use crate::codec::Codec;
use crate::error::Error;
use crate::status::{Code, Status};

/// The requests of a client-streaming or bidirectional call, as a [`Stream`].
///
/// Ends with `None` when the client half-closes; yields one `Err` if the call is cancelled
/// (by the client, its deadline, or server shutdown) or a request cannot be decoded.
pub struct RequestStream<Req, C> {
    shared: Arc<ServerCallShared>,
    method: Arc<str>,
    recv: Option<Arc<Batch<RecvMessage>>>,
    /// The last finished receive's batch, whose allocation the next receive reuses.
    spare: Option<Arc<Batch<RecvMessage>>>,
    done: bool,
    _types: PhantomData<fn() -> (Req, C)>,
}

impl<Req, C> Unpin for RequestStream<Req, C> {}

impl<Req, C> std::fmt::Debug for RequestStream<Req, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestStream").field("method", &self.method).field("done", &self.done).finish()
    }
}

impl<Req, C: Codec<Req>> RequestStream<Req, C> {
    fn new(shared: Arc<ServerCallShared>, method: Arc<str>) -> Self {
        RequestStream {
            shared,
            method,
            recv: None,
            spare: None,
            done: false,
            _types: PhantomData,
        }
    }

    /// The next request; `None` once the client has half-closed.
    pub async fn message(&mut self) -> Result<Option<Req>, Status> {
        futures_util::StreamExt::next(self).await.transpose()
    }
}

impl<Req, C: Codec<Req>> Stream for RequestStream<Req, C> {
    type Item = Result<Req, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let batch = match &this.recv {
            Some(b) => b.clone(),
            None => {
                let batch = Batch::reuse_or_new(this.spare.take(), RecvMessage::new());
                // SAFETY: the op points into the batch state, which the tag keeps alive.
                let started = unsafe {
                    let op = op::recv_message(&mut *batch.state_ptr());
                    this.shared.call.start_batch(&[op], batch.tag())
                };
                if let Err(e) = started {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.status())));
                }
                this.recv = Some(batch.clone());
                batch
            }
        };
        let Some(ok) = batch.poll_done(cx) else {
            return Poll::Pending;
        };
        this.recv = None;
        if !ok || this.shared.call.failed_before_recv_message() {
            this.done = true;
            return Poll::Ready(Some(Err(Status::new(
                Code::Cancelled,
                "the call was cancelled (by the client, its deadline, or server shutdown)",
            ))));
        }
        // SAFETY: done; this stream is the batch's only Rust reader.
        let message = unsafe { batch.state_mut().take() };
        this.spare = Some(batch);
        match message {
            None => {
                this.done = true;
                Poll::Ready(None)
            }
            Some(buf) => {
                let item = this.shared.limits.decode::<Req, C>(&buf, "a request", &this.method);
                if let Err(status) = &item {
                    this.done = true;
                    if status.code() == Code::ResourceExhausted {
                        // As the core's size filter does: the call ends with this status
                        // whatever the handler does next.
                        this.shared.call.cancel_with_status(status.code(), status.message());
                    }
                }
                Poll::Ready(Some(item))
            }
        }
    }
}

/// Sends a streaming call's responses. A [`Sink`]; also has inherent `send` methods.
///
/// At most one message is in flight: the sink is not ready until the core has taken the
/// previous one, so a slow client slows the handler instead of growing memory. The first
/// message carries the initial metadata set on the [`ServerContext`]. The status goes out
/// when the handler returns; a send after that, or after the call was cancelled, fails.
pub struct ServerSink<Resp, C> {
    shared: Arc<ServerCallShared>,
    flags: WriteFlags,
    _types: PhantomData<fn(Resp, C)>,
}

impl<Resp, C> Unpin for ServerSink<Resp, C> {}

impl<Resp, C> std::fmt::Debug for ServerSink<Resp, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSink").field("flags", &self.flags).finish()
    }
}

fn ended() -> Error {
    Error::Rpc(Status::new(Code::Cancelled, "the call has ended or was cancelled; no more responses can be sent"))
}

impl<Resp, C: Codec<Resp>> ServerSink<Resp, C> {
    fn new(shared: Arc<ServerCallShared>) -> Self {
        ServerSink {
            shared,
            flags: WriteFlags::default(),
            _types: PhantomData,
        }
    }

    /// Flags used for the following messages (until changed).
    pub fn set_write_flags(&mut self, flags: WriteFlags) {
        self.flags = flags;
    }

    fn poll_idle(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut out = self.shared.output.lock().unwrap_or_else(|e| e.into_inner());
        if out.finished || self.shared.is_closed_cancelled() {
            return Poll::Ready(Err(ended()));
        }
        out.writer.poll_ready(cx).map(|r| r.map_err(|()| ended()))
    }

    fn write(&self, item: &Resp, flags: WriteFlags) -> Result<(), Error> {
        let buf = ByteBuffer::encode::<Resp, C>(item)
            .map_err(|e| Error::Codec(format!("failed to encode a response: {e}")))?;
        if let Err(status) = self.shared.limits.check_send_buffer(&buf) {
            // As the core's size filter does: the call ends with this status.
            self.shared.call.cancel_with_status(status.code(), status.message());
            return Err(Error::Rpc(status));
        }
        let mut out = self.shared.output.lock().unwrap_or_else(|e| e.into_inner());
        if out.finished || self.shared.is_closed_cancelled() {
            return Err(ended());
        }
        let initial = (!std::mem::replace(&mut out.headers_sent, true)).then(|| self.shared.initial_send_metadata());
        out.writer.start(&self.shared.call, initial, buf, flags)
    }

    /// Sends one message with explicit flags, waiting until the core has taken it.
    pub async fn send_with(&mut self, item: Resp, flags: WriteFlags) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.poll_idle(cx)).await?;
        self.write(&item, flags)?;
        std::future::poll_fn(|cx| self.poll_idle(cx)).await
    }

    /// Sends one message, waiting until the core has taken it.
    pub async fn send(&mut self, item: Resp) -> Result<(), Error> {
        let flags = self.flags;
        self.send_with(item, flags).await
    }

    /// Sends the initial metadata now, before any message (early headers).
    pub async fn send_headers(&mut self) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.poll_idle(cx)).await?;
        let sent = {
            let mut out = self.shared.output.lock().unwrap_or_else(|e| e.into_inner());
            if out.finished {
                return Err(ended());
            }
            std::mem::replace(&mut out.headers_sent, true)
        };
        if sent {
            return Ok(());
        }
        let batch = Batch::new(self.shared.initial_send_metadata());
        // SAFETY: the op points into the batch state, which the tag keeps alive.
        unsafe {
            let op = op::send_initial_metadata(&mut *batch.state_ptr(), 0);
            self.shared.call.start_batch(&[op], batch.tag())?;
        }
        let ok = std::future::poll_fn(|cx| match batch.poll_done(cx) {
            Some(ok) => Poll::Ready(ok),
            None => Poll::Pending,
        })
        .await;
        if ok {
            Ok(())
        } else {
            Err(ended())
        }
    }
}

impl crate::call::OnComplete for SendMetadata {}

impl<Resp, C: Codec<Resp>> Sink<Resp> for ServerSink<Resp, C> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_idle(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Resp) -> Result<(), Error> {
        self.write(&item, self.flags)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_idle(cx)
    }

    /// Waits for the last write; the status itself goes out when the handler returns.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_idle(cx)
    }
}

/// Runs a handler that streams its responses: `call` invokes the user's function; a panic
/// there or in the future it returns ends the call with `INTERNAL`.
fn serve_stream<Fut>(shared: Arc<ServerCallShared>, spawn: Spawn<'_>, call: impl FnOnce() -> Fut)
where
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(future) => spawn.spawn(async move {
            let outcome = AssertUnwindSafe(future).catch_unwind().await;
            finish_stream(shared, outcome).await;
        }),
        Err(panic) => send_final(&shared, None, &panic_status(&*panic)),
    }
}

/// Waits for the last write of a streaming handler, then sends its status.
async fn finish_stream(shared: Arc<ServerCallShared>, outcome: std::thread::Result<Result<(), Status>>) {
    std::future::poll_fn(|cx| {
        let mut out = shared.output.lock().unwrap_or_else(|e| e.into_inner());
        out.writer.poll_ready(cx).map(|_| ())
    })
    .await;
    let status = match outcome {
        Ok(Ok(())) => Status::ok(),
        Ok(Err(status)) => status,
        Err(panic) => panic_status(&*panic),
    };
    send_final(&shared, None, &status);
}

/// The shared state and context of a streaming call. Streaming calls watch for their end
/// from the start: the core learns of a client's cancellation only through a pending
/// close op, and a streaming handler must see it promptly (its sends fail, its request
/// stream ends with CANCELLED) rather than at its next flow-control stall.
fn context(incoming: IncomingCall) -> (Arc<ServerCallShared>, ServerContext) {
    let shared = ServerCallShared::new(incoming.call, incoming.metadata, incoming.limits);
    shared.watch_close();
    let ctx = ServerContext::new(shared.clone(), incoming.method, incoming.deadline);
    (shared, ctx)
}

pub(crate) struct ClientStreamingHandler<Req, Resp, C, F> {
    pub(crate) f: F,
    pub(crate) _types: PhantomData<fn(Req, C) -> Resp>,
}

impl<Req, Resp, C, F, Fut> Handler for ClientStreamingHandler<Req, Resp, C, F>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    C: Codec<Req> + Codec<Resp>,
    F: Fn(RequestStream<Req, C>, ServerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    fn handle(&self, incoming: IncomingCall, spawn: Spawn<'_>) {
        let method = incoming.method.clone();
        let (shared, ctx) = context(incoming);
        let requests = RequestStream::new(shared.clone(), method);
        serve_response::<Resp, C, _>(shared, spawn, || (self.f)(requests, ctx))
    }
}

pub(crate) struct ServerStreamingHandler<Req, Resp, C, F> {
    pub(crate) f: F,
    pub(crate) _types: PhantomData<fn(Req, C) -> Resp>,
}

impl<Req, Resp, C, F, Fut> Handler for ServerStreamingHandler<Req, Resp, C, F>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    C: Codec<Req> + Codec<Resp>,
    F: Fn(Req, ServerSink<Resp, C>, ServerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    fn handle(&self, mut incoming: IncomingCall, spawn: Spawn<'_>) {
        let request = incoming.decode_payload::<Req, C>();
        let (shared, ctx) = context(incoming);
        let request = match request {
            Ok(r) => r,
            Err(status) => {
                send_final(&shared, None, &status);
                return;
            }
        };
        let sink = ServerSink::new(shared.clone());
        serve_stream(shared, spawn, || (self.f)(request, sink, ctx))
    }
}

pub(crate) struct DuplexHandler<Req, Resp, C, F> {
    pub(crate) f: F,
    pub(crate) _types: PhantomData<fn(Req, C) -> Resp>,
}

impl<Req, Resp, C, F, Fut> Handler for DuplexHandler<Req, Resp, C, F>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    C: Codec<Req> + Codec<Resp>,
    F: Fn(RequestStream<Req, C>, ServerSink<Resp, C>, ServerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    fn handle(&self, incoming: IncomingCall, spawn: Spawn<'_>) {
        let method = incoming.method.clone();
        let (shared, ctx) = context(incoming);
        let requests = RequestStream::new(shared.clone(), method);
        let sink = ServerSink::new(shared.clone());
        serve_stream(shared, spawn, || (self.f)(requests, sink, ctx))
    }
}
