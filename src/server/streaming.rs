//! Streaming on the server: a [`RequestStream`] of requests, a [`ServerSink`] for responses
//! (thin handles over the call's `ServerCallCore`, `call/core.rs`), and the handlers of the
//! three streaming kinds.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_sink::Sink;

use super::context::ServerContext;
use super::handler::{serve_response, serve_stream, Handler, IncomingCall, Spawn};
use super::limits::MessageLimits;
use crate::buffer::ByteBuffer;
use crate::call::core::{RecvSlot, SendError, SendKind, SendSlot, ServerCallCore};
use crate::call::state::SendRefused;
use crate::call::write::WriteFlags;
use crate::call::client::Decode;
use crate::codec::{Codec, Coder};
use crate::error::{CodecErrorKind, Error, InternalErrorKind};
use crate::status::{Code, Status};

/// The requests of a client-streaming or bidirectional call, as a [`Stream`].
///
/// Ends with `None` when the client half-closes; yields one `Err` if the call is cancelled
/// (by the client, its deadline, or server shutdown) or a request cannot be decoded.
pub struct RequestStream<Req> {
    server: Arc<ServerCallCore>,
    method: Arc<str>,
    limits: MessageLimits,
    recv: RecvSlot,
    done: bool,
    decode: Decode<Req>,
}

impl<Req> Unpin for RequestStream<Req> {}

impl<Req> std::fmt::Debug for RequestStream<Req> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestStream").field("method", &self.method).field("done", &self.done).finish()
    }
}

impl<Req> RequestStream<Req> {
    fn new(server: Arc<ServerCallCore>, method: Arc<str>, limits: MessageLimits, decode: Decode<Req>) -> Self {
        RequestStream {
            server,
            method,
            limits,
            recv: RecvSlot::default(),
            done: false,
            decode,
        }
    }

    /// The next request; `None` once the client has half-closed.
    pub async fn message(&mut self) -> Result<Option<Req>, Status> {
        futures_util::StreamExt::next(self).await.transpose()
    }
}

fn cancelled() -> Status {
    Status::new(Code::Cancelled, "the call was cancelled (by the client, its deadline, or server shutdown)")
}

impl<Req> Stream for RequestStream<Req> {
    type Item = Result<Req, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let message = match this.recv.poll_message(&this.server.core, cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => {
                this.done = true;
                return Poll::Ready(Some(Err(e.status())));
            }
            Poll::Ready(Ok(message)) => message,
        };
        let Some(buf) = message else {
            this.done = true;
            if this.server.core.call.failed_before_recv_message() {
                return Poll::Ready(Some(Err(cancelled())));
            }
            return Poll::Ready(None);
        };
        let item = this.limits.decode(&buf, this.decode, "a request", &this.method);
        if let Err(status) = &item {
            this.done = true;
            if status.code() == Code::ResourceExhausted {
                // As the core's size filter does: the call ends with this status whatever
                // the handler does next.
                this.server.core.call.cancel_with_status(status.code(), status.message());
            }
        }
        Poll::Ready(Some(item))
    }
}

/// Sends a streaming call's responses. A [`Sink`]; also has inherent `send` methods.
///
/// At most one message is in flight: the sink is not ready until the core has taken the
/// previous one, so a slow client slows the handler instead of growing memory. The first
/// message carries the initial metadata set on the [`ServerContext`].
///
/// The status goes out when the handler has returned and the sink is finished: closed
/// ([`SinkExt::close`](futures_util::SinkExt::close)) or dropped, after its last write.
/// So a handler may move its sink into another task and return at once; the call ends
/// when that task is done with the sink. A send after the call was cancelled fails.
pub struct ServerSink<Resp> {
    server: Arc<ServerCallCore>,
    limits: MessageLimits,
    slot: SendSlot,
    flags: WriteFlags,
    /// Closed: the sink no longer holds the call's status back.
    finished: bool,
    coder: Coder<Resp>,
}

impl<Resp> Unpin for ServerSink<Resp> {}

impl<Resp> std::fmt::Debug for ServerSink<Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSink").field("flags", &self.flags).finish()
    }
}

fn ended() -> Error {
    Error::Rpc(Status::new(Code::Cancelled, "the call has ended or was cancelled; no more responses can be sent"))
}

/// The error a refused server send reports.
fn send_error(e: SendError) -> Error {
    match e {
        SendError::Refused(SendRefused::Closed) => ended(),
        SendError::Refused(SendRefused::Busy) => Error::internal_kind(InternalErrorKind::Misuse, "a send started while another was in flight"),
        SendError::Core(e) => e,
    }
}

impl<Resp> ServerSink<Resp> {
    /// A sink over `server`, which must count it as one of its senders.
    fn new(server: Arc<ServerCallCore>, limits: MessageLimits, coder: Coder<Resp>) -> Self {
        ServerSink {
            server,
            limits,
            slot: SendSlot::default(),
            flags: WriteFlags::default(),
            finished: false,
            coder,
        }
    }

    /// Flags used for the following messages (until changed).
    pub fn set_write_flags(&mut self, flags: WriteFlags) {
        self.flags = flags;
    }

    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.finished || self.server.is_cancelled() {
            return Poll::Ready(Err(ended()));
        }
        self.slot.poll_ready(cx).map(|r| r.map_err(|()| ended()))
    }

    fn start(&mut self, kind: SendKind) -> Result<(), Error> {
        if self.finished || self.server.is_cancelled() {
            return Err(ended());
        }
        self.slot.start_server(&self.server, kind).map_err(send_error)
    }

    /// Encodes `item`: the buffer to send, not yet checked against the size limit.
    fn encode(&mut self, item: &Resp) -> Result<ByteBuffer, Error> {
        self.slot.encode(self.coder, item).map_err(|e| Error::codec_kind(CodecErrorKind::Encode, format!("failed to encode a response: {e}")).with_source(e))
    }

    /// Checks an encoded response against the send limit. Over it, the call ends with
    /// RESOURCE_EXHAUSTED, as the core's size filter would end it.
    #[inline]
    fn checked(&self, buf: Result<ByteBuffer, Error>) -> Result<ByteBuffer, Error> {
        let buf = buf?;
        if let Err(status) = self.limits.check_send_buffer(&buf) {
            return Err(self.too_large(status));
        }
        Ok(buf)
    }

    /// Ends the call with `status`, as the core's size filter does for a response over the limit.
    #[cold]
    #[inline(never)]
    fn too_large(&self, status: Status) -> Error {
        self.server.core.call.cancel_with_status(status.code(), status.message());
        Error::Rpc(status)
    }

    fn write(&mut self, item: &Resp, flags: WriteFlags) -> Result<(), Error> {
        let buf = self.encode(item);
        self.write_encoded(buf, flags)
    }

    fn write_encoded(&mut self, buf: Result<ByteBuffer, Error>, flags: WriteFlags) -> Result<(), Error> {
        let buf = self.checked(buf)?;
        self.start(SendKind::Message(buf, flags))
    }

    /// Sends `item` and receives the next request in one batch of the core (one completion
    /// instead of two): the request/response pattern of a bidirectional handler, at the cost
    /// of a C core server that does the same. Returns the next request, `None` once the
    /// client has half-closed, or an error if the send or the receive failed (a cancelled
    /// call, a request that cannot be decoded).
    ///
    /// It mixes freely with [`send`](Self::send) and [`RequestStream::message`]: a handler
    /// that answers some requests with several responses sends the extra ones with `send`.
    /// When the two halves cannot share a batch (`requests` belongs to another call, has
    /// ended, or has a receive in flight from an abandoned `next`), it sends, then receives.
    ///
    /// The send completes with the receive: until the next request (or the half-close)
    /// arrives, the sink is busy. So if this future is dropped before it completes (a
    /// timeout around it), the response has gone out, the next request is still received
    /// (the stream's next item yields it), and the sink's next send, like the call's status
    /// after the handler returns, waits for that request, the client's half-close or the
    /// call's end (cancellation, deadline).
    ///
    /// `item` is encoded when this is called; everything else (the size check, the send, the
    /// receive) happens when the future is polled.
    ///
    /// ```no_run
    /// # use grpcore::{BytesCodec, Method, ServiceBuilder};
    /// # const ECHO: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::duplex("/demo.Echo/Chat");
    /// let service = ServiceBuilder::new("demo.Echo")
    ///     .add_duplex(&ECHO, |mut requests, mut responses, _ctx| async move {
    ///         let mut next = requests.message().await?;
    ///         while let Some(request) = next {
    ///             next = responses.send_and_receive(request, &mut requests).await?;
    ///         }
    ///         Ok(())
    ///     })
    ///     .build();
    /// ```
    #[inline(always)]
    pub fn send_and_receive<'a, Req>(
        &'a mut self,
        item: Resp,
        requests: &'a mut RequestStream<Req>,
    ) -> impl Future<Output = Result<Option<Req>, Status>> + 'a {
        // Encoded here, inlined into the caller, so that the response is read where the caller
        // built it: an async fn would move it into its future and again into its state when
        // first polled (for a 144-byte message, three calls to memcpy per response). Encoding
        // has no effect on the call; the size check, which may end it, waits for the first
        // poll like everything else.
        let buf = self.encode(&item);
        drop(item);
        self.send_and_receive_encoded(buf, requests)
    }

    async fn send_and_receive_encoded<Req>(
        &mut self,
        buf: Result<ByteBuffer, Error>,
        requests: &mut RequestStream<Req>,
    ) -> Result<Option<Req>, Status> {
        std::future::poll_fn(|cx| self.poll_idle(cx)).await?;
        if requests.done || !requests.recv.is_idle() || !Arc::ptr_eq(&self.server, &requests.server) {
            // Nothing to join: the same, in two batches.
            let flags = self.flags;
            self.write_encoded(buf, flags)?;
            std::future::poll_fn(|cx| self.poll_idle(cx)).await?;
            return requests.message().await;
        }
        if self.finished || self.server.is_cancelled() {
            return Err(ended().into());
        }
        let buf = self.checked(buf)?;
        self.slot
            .start_server_joint(&self.server, &mut requests.recv, buf, self.flags)
            .map_err(send_error)?;
        // Both halves end with the batch: the receive gives the request, the send its outcome.
        let next = requests.message().await;
        let sent = std::future::poll_fn(|cx| self.slot.poll_ready(cx)).await;
        match (next, sent) {
            (Err(status), _) => Err(status),
            (_, Err(())) => Err(ended().into()),
            (Ok(next), Ok(())) => Ok(next),
        }
    }

    /// Sends one message with explicit flags, waiting until the core has taken it. `item`
    /// is encoded when this is called (see [`send_and_receive`](Self::send_and_receive)).
    #[inline(always)]
    pub fn send_with(&mut self, item: Resp, flags: WriteFlags) -> impl Future<Output = Result<(), Error>> + '_ {
        let buf = self.encode(&item);
        drop(item);
        self.send_encoded(buf, flags)
    }

    async fn send_encoded(&mut self, buf: Result<ByteBuffer, Error>, flags: WriteFlags) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.poll_idle(cx)).await?;
        self.write_encoded(buf, flags)?;
        std::future::poll_fn(|cx| self.poll_idle(cx)).await
    }

    /// Sends one message, waiting until the core has taken it. `item` is encoded when this
    /// is called.
    #[inline(always)]
    pub fn send(&mut self, item: Resp) -> impl Future<Output = Result<(), Error>> + '_ {
        let flags = self.flags;
        self.send_with(item, flags)
    }

    /// Sends the initial metadata now, before any message (early headers). Does nothing if
    /// they have gone out already.
    pub async fn send_headers(&mut self) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.poll_idle(cx)).await?;
        self.start(SendKind::Headers)?;
        std::future::poll_fn(|cx| self.poll_idle(cx)).await
    }

    /// Finishes the sink (once): the call's status no longer waits for it.
    fn finish(&mut self) {
        if !std::mem::replace(&mut self.finished, true) {
            self.server.sender_done();
        }
    }
}

impl<Resp> Sink<Resp> for ServerSink<Resp> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_idle(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Resp) -> Result<(), Error> {
        let this = self.get_mut();
        let flags = this.flags;
        this.write(&item, flags)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_idle(cx)
    }

    /// Waits for the last write, then finishes the sink: the status goes out once the
    /// handler has returned too. Sends after this fail.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(Ok(()));
        }
        let result = match this.slot.poll_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r.map_err(|()| ended()),
        };
        this.finish();
        Poll::Ready(result)
    }
}

impl<Resp> Drop for ServerSink<Resp> {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            // A write still in flight ends on its own; the status follows it.
            self.server.sender_done();
        }
    }
}

/// The core and context of a streaming call, with `senders` sinks. Streaming calls watch
/// for their end from the start: the core learns of a client's cancellation only through a
/// pending close op, and a streaming handler must see it promptly (its sends fail, its
/// request stream ends with CANCELLED) rather than at its next flow-control stall.
fn streaming_core(incoming: IncomingCall, senders: u32) -> (Arc<ServerCallCore>, ServerContext) {
    let (server, ctx) = incoming.into_core(senders);
    server.watch_close();
    (server, ctx)
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
    F: Fn(RequestStream<Req>, ServerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    fn handle(&self, incoming: IncomingCall, spawn: Spawn<'_>) {
        let (method, limits) = (incoming.method.clone(), incoming.limits);
        let (server, ctx) = streaming_core(incoming, 0);
        let requests = RequestStream::new(server.clone(), method, limits, <C as Codec<Req>>::decode);
        serve_response::<Resp, C, _>(server, limits, spawn, || (self.f)(requests, ctx))
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
    F: Fn(Req, ServerSink<Resp>, ServerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    fn handle(&self, mut incoming: IncomingCall, spawn: Spawn<'_>) {
        let request = incoming.decode_payload::<Req, C>();
        let limits = incoming.limits;
        match request {
            Ok(request) => {
                let (server, ctx) = streaming_core(incoming, 1);
                let sink = ServerSink::new(server.clone(), limits, Coder::of::<C>());
                serve_stream(server, spawn, || (self.f)(request, sink, ctx))
            }
            Err(status) => incoming.into_core(0).0.send_final(None, &status),
        }
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
    F: Fn(RequestStream<Req>, ServerSink<Resp>, ServerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    fn handle(&self, incoming: IncomingCall, spawn: Spawn<'_>) {
        let (method, limits) = (incoming.method.clone(), incoming.limits);
        let (server, ctx) = streaming_core(incoming, 1);
        let requests = RequestStream::new(server.clone(), method, limits, <C as Codec<Req>>::decode);
        let sink = ServerSink::new(server.clone(), limits, Coder::of::<C>());
        serve_stream(server, spawn, || (self.f)(requests, sink, ctx))
    }
}
