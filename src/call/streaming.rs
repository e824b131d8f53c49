//! Streaming client calls: a [`RequestSink`] for requests and a [`ResponseStream`] (or a
//! [`ClientStreamingCall`] future) for responses, thin handles over one [`CallCore`]
//! (`call/core.rs`). The calls start in `call/start.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_sink::Sink;

use super::client::{Decode, Response, ResponseState, StatusState};
use super::core::{CallCore, RecvSlot, SendError, SendKind, SendSlot};
use super::start::{HeadersState, PendingStream, Started, StartedStream};
use super::state::SendRefused;
use super::write::WriteFlags;
use super::Batch;
use crate::buffer::ByteBuffer;
use crate::codec::Coder;
use crate::error::{CodecErrorKind, Error, InternalErrorKind};
use crate::metadata::Metadata;
use crate::status::{Code, Status};

/// Sends a streaming call's requests. A [`Sink`]; also has inherent `send`/`close` methods
/// and blocking variants.
///
/// At most one message is in flight: the sink is not ready until the core has taken the
/// previous one, so memory stays bounded however slow the peer. Closing half-closes the
/// call (the server sees the end of its request stream). Dropping a sink that was not
/// closed cancels the call, so an error path in a sender never passes a truncated upload
/// off as complete. Once the call has ended, sends fail with an error carrying its status
/// when known.
#[must_use = "a request sink does nothing unless messages are sent into it"]
pub struct RequestSink<Req> {
    core: Result<Arc<CallCore>, Option<Error>>,
    /// The call's start, while the channel's interceptors have not let it start.
    starting: Option<Arc<PendingStream>>,
    slot: SendSlot,
    flags: WriteFlags,
    /// The half-close has been started (it is in `slot` until done).
    closing: bool,
    closed: bool,
    coder: Coder<Req>,
}

impl<Req> RequestSink<Req> {
    pub(crate) fn new(core: Result<Arc<CallCore>, Error>, coder: Coder<Req>) -> Self {
        RequestSink {
            core: core.map_err(Some),
            starting: None,
            slot: SendSlot::default(),
            flags: WriteFlags::default(),
            closing: false,
            closed: false,
            coder,
        }
    }

    /// A sink whose call starts when `start` resolves.
    pub(crate) fn starting(start: Arc<PendingStream>, coder: Coder<Req>) -> Self {
        let mut sink = Self::new(Err(Error::internal_kind(InternalErrorKind::Misuse, "the call has not started")), coder);
        sink.starting = Some(start);
        sink
    }

    /// Waits for a call whose start waits for its interceptors.
    fn poll_start(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(start) = &self.starting {
            let started = std::task::ready!(start.poll(cx));
            self.core = started.map(|s| s.core().clone()).map_err(Some);
            self.starting = None;
        }
        Poll::Ready(())
    }

    /// Flags used for the following messages (until changed).
    pub fn set_write_flags(&mut self, flags: WriteFlags) {
        self.flags = flags;
    }

    /// The server's address as the core names it, e.g. `ipv4:127.0.0.1:50051`; empty before
    /// the call is connected, or when it failed to start.
    pub fn peer(&self) -> String {
        self.core.as_ref().map(|c| c.peer()).unwrap_or_default()
    }

    fn core(&self) -> Result<&Arc<CallCore>, Error> {
        match &self.core {
            Ok(c) => Ok(c),
            Err(e) => Err(e
                .clone()
                .unwrap_or_else(|| Error::internal_kind(InternalErrorKind::Misuse, "the call could not start"))),
        }
    }

    fn poll_writer(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        std::task::ready!(self.poll_start(cx));
        let ready = self.slot.poll_ready(cx);
        let core = self.core()?;
        ready.map(|r| r.map_err(|()| core.ended_error()))
    }

    /// Encodes `item`.
    fn encode(&mut self, item: &Req) -> Result<ByteBuffer, Error> {
        self.slot
            .encode(self.coder, item)
            .map_err(|e| Error::codec_kind(CodecErrorKind::Encode, format!("failed to encode a request: {e}")).with_source(e))
    }

    fn write(&mut self, item: &Req, flags: WriteFlags) -> Result<(), Error> {
        self.check_writable()?;
        let buf = self.encode(item);
        self.start_message(buf, flags)
    }

    /// Refuses a write after the half-close or before the sink is ready.
    fn check_writable(&self) -> Result<(), Error> {
        if self.closed || self.closing {
            return Err(Error::internal_kind(InternalErrorKind::Misuse, "send after the request stream was closed"));
        }
        if self.starting.is_some() {
            return Err(Error::internal_kind(InternalErrorKind::Misuse, "a message was sent before the sink was ready"));
        }
        Ok(())
    }

    fn write_encoded(&mut self, buf: Result<ByteBuffer, Error>, flags: WriteFlags) -> Result<(), Error> {
        self.check_writable()?;
        self.start_message(buf, flags)
    }

    fn start_message(&mut self, buf: Result<ByteBuffer, Error>, flags: WriteFlags) -> Result<(), Error> {
        let core = self.core()?.clone();
        let buf = buf?;
        self.slot
            .start_client(&core, SendKind::Message(buf, flags))
            .map_err(|e| send_error(&core, e))
    }

    /// Sends one message with explicit flags, waiting until the core has taken it. `item`
    /// is encoded when this is called (see [`send_and_receive`](Self::send_and_receive)).
    #[inline(always)]
    pub fn send_with(&mut self, item: Req, flags: WriteFlags) -> impl Future<Output = Result<(), Error>> + '_ {
        let buf = self.encode(&item);
        drop(item);
        self.send_encoded(buf, flags)
    }

    async fn send_encoded(&mut self, buf: Result<ByteBuffer, Error>, flags: WriteFlags) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.poll_writer(cx)).await?;
        self.write_encoded(buf, flags)?;
        std::future::poll_fn(|cx| self.poll_writer(cx)).await
    }

    /// Sends one message, waiting until the core has taken it. `item` is encoded when this
    /// is called.
    #[inline(always)]
    pub fn send(&mut self, item: Req) -> impl Future<Output = Result<(), Error>> + '_ {
        let flags = self.flags;
        self.send_with(item, flags)
    }

    /// Sends `item` and receives the next response in one batch of the core (one completion
    /// instead of two): the request/response pattern of a bidirectional call, at the cost
    /// of a C core client that does the same. Returns the next response, `None` once the
    /// call has ended with OK, or an error: the call's status when it ended otherwise, a
    /// failed send, or a response that cannot be decoded.
    ///
    /// It mixes freely with [`send`](Self::send) and [`ResponseStream::message`]. When the
    /// two halves cannot share a batch (`responses` belongs to another call, has ended, or
    /// has a receive in flight from an abandoned `next`), it sends, then receives.
    ///
    /// The send completes with the receive: until the next response (or the call's end)
    /// arrives, the sink is busy. So if this future is dropped before it completes (a
    /// timeout around it), the request has gone out, the stream's next item yields the
    /// response still received for it, and the sink's next send or close waits for that
    /// response or the call's end. Cancel the call rather than close it in that case if the
    /// server may wait for the half-close before it answers.
    ///
    /// `item` is encoded when this is called; everything else (the send, the receive)
    /// happens when the future is polled.
    ///
    /// ```no_run
    /// # use grpcore::{BytesCodec, CallOptions, Method};
    /// # const CHAT: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::duplex("/demo.Echo/Chat");
    /// # async fn f(channel: grpcore::Channel) -> grpcore::Result<()> {
    /// let (mut requests, mut responses) = channel.duplex(&CHAT, CallOptions::new());
    /// for ping in [b"one".to_vec(), b"two".to_vec()] {
    ///     let pong = requests.send_and_receive(ping, &mut responses).await?;
    ///     println!("{pong:?}");
    /// }
    /// requests.close().await?;
    /// while let Some(extra) = responses.message().await? {
    ///     println!("after the half-close: {extra:?}");
    /// }
    /// # Ok(()) }
    /// ```
    #[inline(always)]
    pub fn send_and_receive<'a, Resp>(
        &'a mut self,
        item: Req,
        responses: &'a mut ResponseStream<Resp>,
    ) -> impl Future<Output = Result<Option<Resp>, Error>> + 'a {
        // Encoded here, inlined into the caller, so that the request is read where the caller
        // built it instead of being moved into the future and again into its state (as in
        // `ServerSink::send_and_receive`).
        let buf = self.encode(&item);
        drop(item);
        self.send_and_receive_encoded(buf, responses)
    }

    async fn send_and_receive_encoded<Resp>(
        &mut self,
        buf: Result<ByteBuffer, Error>,
        responses: &mut ResponseStream<Resp>,
    ) -> Result<Option<Resp>, Error> {
        std::future::poll_fn(|cx| self.poll_writer(cx)).await?;
        std::future::poll_fn(|cx| responses.poll_start(cx)).await;
        let joinable = |s: &StreamState| !s.messages_ended && !s.done && s.recv.is_idle();
        let core = match (&self.core, &mut responses.state) {
            (Ok(core), Ok(s)) if Arc::ptr_eq(core, &s.core) && joinable(s) && !self.closing && !self.closed => {
                let core = core.clone();
                let buf = buf?;
                self.slot
                    .start_client_joint(&core, &mut s.recv, buf, self.flags)
                    .map_err(|e| send_error(&core, e))?;
                core
            }
            _ => {
                // Nothing to join: the same, in two batches.
                let flags = self.flags;
                self.send_encoded(buf, flags).await?;
                return responses.message().await;
            }
        };
        // Both halves end with the batch: the receive gives the response, the send its outcome.
        let next = responses.message().await;
        let sent = std::future::poll_fn(|cx| self.slot.poll_ready(cx)).await;
        match (next, sent) {
            (Err(e), _) => Err(e),
            (_, Err(())) => Err(core.ended_error()),
            (Ok(next), Ok(())) => Ok(next),
        }
    }

    /// Half-closes: no more requests. Waits for pending writes first.
    pub async fn close(&mut self) -> Result<(), Error> {
        std::future::poll_fn(|cx| Sink::<Req>::poll_close(Pin::new(&mut *self), cx)).await
    }

    /// Blocking [`RequestSink::send`].
    pub fn send_blocking(&mut self, item: Req) -> Result<(), Error> {
        crate::blocking::block_on(self.send(item))?
    }

    /// Blocking [`RequestSink::close`].
    pub fn close_blocking(&mut self) -> Result<(), Error> {
        crate::blocking::block_on(self.close())?
    }
}

/// The error a refused client send reports.
fn send_error(core: &CallCore, e: SendError) -> Error {
    match e {
        SendError::Refused(SendRefused::Closed) => core.ended_error(),
        SendError::Refused(SendRefused::Busy) => Error::internal_kind(InternalErrorKind::Misuse, "a send started while another was in flight"),
        SendError::Core(e) => e,
    }
}

impl<Req> Unpin for RequestSink<Req> {}

impl<Req> RequestSink<Req> {
    /// Cancels the whole call: the server sees `CANCELLED`, and the response half ends
    /// with `CANCELLED`.
    pub fn cancel(&self) {
        match (&self.starting, &self.core) {
            (Some(start), _) => start.cancel_call(),
            (None, Ok(core)) => core.call.cancel(),
            (None, Err(_)) => {}
        }
    }
}

impl<Req> Sink<Req> for RequestSink<Req> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_writer(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Req) -> Result<(), Error> {
        let this = self.get_mut();
        let flags = this.flags;
        this.write(&item, flags)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_writer(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Ok(()));
        }
        let result = match this.poll_writer(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        if this.closing || result.is_err() {
            // The half-close finished (or a write failed: the call is over either way).
            this.closed = true;
            return Poll::Ready(result);
        }
        let core = this.core()?.clone();
        if let Err(e) = this.slot.start_client(&core, SendKind::Close) {
            this.closed = true;
            return Poll::Ready(Err(send_error(&core, e)));
        }
        this.closing = true;
        match this.poll_writer(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                this.closed = true;
                Poll::Ready(r)
            }
        }
    }
}

impl<Req> Drop for RequestSink<Req> {
    fn drop(&mut self) {
        if self.closed || self.closing {
            return;
        }
        // Not closed: whatever the sender meant to send is incomplete, so the call must not
        // end as if it were (a half-close here would commit a truncated upload).
        self.cancel();
    }
}

/// A started client-streaming call and its one receiving batch.
type ResponseHalf = (Arc<CallCore>, Arc<Batch<ResponseState>>);

/// The response of a client-streaming call. Dropping it before it resolves cancels the call.
#[must_use = "a client-streaming call is cancelled when its response future is dropped"]
pub struct ClientStreamingCall<Resp> {
    state: Result<ResponseHalf, Option<Error>>,
    /// The call's start, while the channel's interceptors have not let it start.
    starting: Option<Arc<PendingStream>>,
    decode: Decode<Resp>,
}

impl<Resp> Unpin for ClientStreamingCall<Resp> {}

impl<Resp> ClientStreamingCall<Resp> {
    pub(crate) fn new(state: Result<ResponseHalf, Error>, decode: Decode<Resp>) -> Self {
        ClientStreamingCall {
            state: state.map_err(Some),
            starting: None,
            decode,
        }
    }

    /// A response whose call starts when `start` resolves.
    pub(crate) fn starting(start: Arc<PendingStream>, decode: Decode<Resp>) -> Self {
        let mut call = Self::new(Err(Error::internal_kind(InternalErrorKind::Misuse, "the call has not started")), decode);
        call.starting = Some(start);
        call
    }

    /// Cancels the call; awaiting it then gives `CANCELLED` (unless it had already ended).
    pub fn cancel(&self) {
        match (&self.starting, &self.state) {
            (Some(start), _) => start.cancel_call(),
            (None, Ok((core, _))) => core.call.cancel(),
            (None, Err(_)) => {}
        }
    }

    /// The server's address as the core names it, e.g. `ipv4:127.0.0.1:50051`; empty before
    /// the call is connected, or when it failed to start.
    pub fn peer(&self) -> String {
        self.state.as_ref().map(|(c, _)| c.peer()).unwrap_or_default()
    }

    /// Blocks until the response message arrives.
    ///
    /// Fails at once when called on a completion-queue thread (in a handler, `.await`).
    pub fn wait(self) -> Result<Resp, Error> {
        crate::blocking::block_on(self)?
    }

    /// The whole [`Response`] instead of the message alone: its initial and trailing
    /// metadata too. The same spelling as a unary call's
    /// [`UnaryRequest::response`](crate::UnaryRequest::response).
    ///
    /// ```no_run
    /// # use grpcore::{BytesCodec, CallOptions, ChannelBuilder, Environment, Method};
    /// # const UPLOAD: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::client_streaming("/demo.Up/Load");
    /// # async fn f(channel: grpcore::Channel) -> grpcore::Result<()> {
    /// let (mut sink, call) = channel.client_streaming(&UPLOAD, CallOptions::new());
    /// sink.send(b"part".to_vec()).await?;
    /// sink.close().await?;
    /// let response = call.response().await?;
    /// println!("{:?} {:?}", response.initial_metadata().get("x-server"), response.message());
    /// # Ok(()) }
    /// ```
    pub fn response(self) -> ClientStreamingResponse<Resp> {
        ClientStreamingResponse { call: self }
    }

    fn poll_response(&mut self, cx: &mut Context<'_>) -> Poll<Result<Response<Resp>, Error>> {
        let this = self;
        if let Some(start) = &this.starting {
            let started = std::task::ready!(start.poll(cx));
            this.state = started.map(Started::into_response).map_err(Some);
            this.starting = None;
        }
        match &mut this.state {
            Err(e) => Poll::Ready(Err(e
                .take()
                .unwrap_or_else(|| Error::internal_kind(InternalErrorKind::Misuse, "polled after completion")))),
            Ok((core, batch)) => {
                if batch.poll_done(cx).is_none() {
                    return Poll::Pending;
                }
                // SAFETY: done, and this future is the batch's only Rust owner; the call is
                // alive (held in `core`).
                let result = unsafe { batch.state_mut().finish(this.decode) };
                let status = match &result {
                    Ok(_) => Status::ok(),
                    Err(e) => e.status(),
                };
                if let (Ok(_), Some(o)) = (&result, core.observer()) {
                    o.message_received();
                }
                core.observe_end(status.code(), status.message());
                core.set_status(status);
                Poll::Ready(result.map(|r| r.with_peer_of(core)))
            }
        }
    }
}

/// Awaiting a client-streaming call gives the response message, as awaiting a unary
/// request does; [`response`](ClientStreamingCall::response) gives the metadata too.
impl<Resp> Future for ClientStreamingCall<Resp> {
    type Output = Result<Resp, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_response(cx).map(|r| r.map(Response::into_message))
    }
}

/// A client-streaming call resolving to its whole [`Response`] (message, initial and
/// trailing metadata): [`ClientStreamingCall::response`]. Dropping it before it resolves
/// cancels the call.
#[must_use = "a client-streaming call is cancelled when its response future is dropped"]
pub struct ClientStreamingResponse<Resp> {
    call: ClientStreamingCall<Resp>,
}

impl<Resp> ClientStreamingResponse<Resp> {
    /// Blocks until the response arrives.
    ///
    /// Fails at once when called on a completion-queue thread (in a handler, `.await`).
    pub fn wait(self) -> Result<Response<Resp>, Error> {
        crate::blocking::block_on(self)?
    }
}

impl<Resp> Future for ClientStreamingResponse<Resp> {
    type Output = Result<Response<Resp>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().call.poll_response(cx)
    }
}

impl<Resp> Drop for ClientStreamingCall<Resp> {
    fn drop(&mut self) {
        if let Some(start) = &self.starting {
            start.cancel_call();
        } else if let Ok((core, batch)) = &self.state {
            if !batch.is_done() {
                core.call.cancel();
            }
        }
    }
}

/// The responses of a server-streaming or bidirectional call: a [`Stream`] of messages
/// ending with `None` after an OK status, or with one `Err` carrying a non-OK status (or
/// the failure to decode a response, which cancels the call).
///
/// Dropping it before the end cancels the call.
#[must_use = "streams do nothing unless polled"]
pub struct ResponseStream<Resp> {
    state: Result<StreamState, Option<Error>>,
    /// The call's start, while the channel's interceptors have not let it start.
    starting: Option<Arc<PendingStream>>,
    decode: Decode<Resp>,
}

struct StreamState {
    core: Arc<CallCore>,
    headers: Arc<Batch<HeadersState>>,
    status: Arc<Batch<StatusState>>,
    recv: RecvSlot,
    initial_metadata: Option<Metadata>,
    trailing_metadata: Option<Metadata>,
    /// No more messages will come (the status is next).
    messages_ended: bool,
    /// The stream has yielded its last item.
    done: bool,
}

impl<Resp> Unpin for ResponseStream<Resp> {}

/// A stream's state for a started (or failed) call.
fn stream_state(started: Result<StartedStream, Error>) -> Result<StreamState, Option<Error>> {
    match started {
        Ok((core, headers, status)) => Ok(StreamState {
            core,
            headers,
            status,
            recv: RecvSlot::default(),
            initial_metadata: None,
            trailing_metadata: None,
            messages_ended: false,
            done: false,
        }),
        Err(e) => Err(Some(e)),
    }
}

impl<Resp> ResponseStream<Resp> {
    pub(crate) fn new(started: Result<StartedStream, Error>, decode: Decode<Resp>) -> Self {
        ResponseStream {
            state: stream_state(started),
            starting: None,
            decode,
        }
    }

    /// A stream whose call starts when `start` resolves.
    pub(crate) fn starting(start: Arc<PendingStream>, decode: Decode<Resp>) -> Self {
        let mut stream = Self::new(Err(Error::internal_kind(InternalErrorKind::Misuse, "the call has not started")), decode);
        stream.starting = Some(start);
        stream
    }

    /// Waits for a call whose start waits for its interceptors.
    fn poll_start(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(start) = &self.starting {
            let started = std::task::ready!(start.poll(cx));
            self.state = stream_state(started.map(Started::into_stream));
            self.starting = None;
        }
        Poll::Ready(())
    }

    /// The next response; `None` once the call has ended with OK. A call that ends with
    /// another status gives that as the error (once). The same as the server's
    /// [`RequestStream::message`](crate::RequestStream::message), without `StreamExt`.
    ///
    /// ```no_run
    /// # use grpcore::{BytesCodec, CallOptions, Method};
    /// # const WATCH: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::server_streaming("/demo.W/Watch");
    /// # async fn f(channel: grpcore::Channel) -> grpcore::Result<()> {
    /// let mut updates = channel.server_streaming(&WATCH, &b"all".to_vec(), CallOptions::new());
    /// while let Some(update) = updates.message().await? {
    ///     println!("{} bytes", update.len());
    /// }
    /// println!("trailers: {:?}", updates.trailing_metadata());
    /// # Ok(()) }
    /// ```
    pub async fn message(&mut self) -> Result<Option<Resp>, Error> {
        futures_util::StreamExt::next(self).await.transpose()
    }

    /// The server's initial metadata (response headers), waiting for them if needed.
    pub async fn initial_metadata(&mut self) -> Result<&Metadata, Error> {
        std::future::poll_fn(|cx| self.poll_start(cx)).await;
        let s = match &mut self.state {
            Ok(s) => s,
            Err(e) => {
                return Err(e
                    .clone()
                    .unwrap_or_else(|| Error::internal_kind(InternalErrorKind::Misuse, "the call could not start")))
            }
        };
        if s.initial_metadata.is_none() {
            let ok = std::future::poll_fn(|cx| match s.headers.poll_done(cx) {
                Some(ok) => Poll::Ready(ok),
                None => Poll::Pending,
            })
            .await;
            let md = if ok {
                // SAFETY: the batch is done and we are its only Rust reader; the call is alive.
                unsafe { s.headers.state_mut().recv_initial.to_metadata() }
            } else {
                Metadata::new()
            };
            s.initial_metadata = Some(md);
        }
        Ok(s.initial_metadata.as_ref().unwrap())
    }

    /// Cancels the call; the stream then ends with `CANCELLED` (unless it had already
    /// ended), and the server sees the cancellation.
    pub fn cancel(&self) {
        match (&self.starting, &self.state) {
            (Some(start), _) => start.cancel_call(),
            (None, Ok(s)) => s.core.call.cancel(),
            (None, Err(_)) => {}
        }
    }

    /// The server's address as the core names it, e.g. `ipv4:127.0.0.1:50051`; empty before
    /// the call is connected, or when it failed to start.
    pub fn peer(&self) -> String {
        self.state.as_ref().map(|s| s.core.peer()).unwrap_or_default()
    }

    /// The trailing metadata, once the stream has ended.
    pub fn trailing_metadata(&self) -> Option<&Metadata> {
        self.state.as_ref().ok().and_then(|s| s.trailing_metadata.as_ref())
    }

    /// A blocking iterator over the responses.
    ///
    /// Each `next` fails with an error item when called on a completion-queue thread.
    pub fn into_blocking_iter(self) -> BlockingIter<Resp> {
        BlockingIter { stream: self, done: false }
    }
}

impl<Resp> Stream for ResponseStream<Resp> {
    type Item = Result<Resp, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_start(cx));
        let decode = this.decode;
        let s = match &mut this.state {
            Ok(s) => s,
            Err(e) => return Poll::Ready(e.take().map(Err)),
        };
        if s.done {
            return Poll::Ready(None);
        }
        if !s.messages_ended {
            let message = match s.recv.poll_message(&s.core, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    s.done = true;
                    s.core.call.cancel();
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Ok(message)) => message,
            };
            match message {
                Some(buf) => {
                    let item =
                        decode(&mut buf.reader()).map_err(|e| Error::codec_kind(CodecErrorKind::Decode, format!("failed to decode a response: {e}")).with_source(e));
                    if item.is_err() {
                        // One error, as documented: the call is cancelled and the stream ends
                        // here (its CANCELLED status would only repeat the failure).
                        s.done = true;
                        s.core
                            .call
                            .cancel_with_status(Code::Internal, "the client could not decode a response");
                    }
                    return Poll::Ready(Some(item));
                }
                None => s.messages_ended = true,
            }
        }
        // End of the responses: the status tells how the call ended.
        if s.status.poll_done(cx).is_none() {
            return Poll::Pending;
        }
        s.done = true;
        // SAFETY: done; only reader; the call is alive.
        let (status, trailers) = unsafe { s.status.state_mut().finish() };
        s.trailing_metadata = Some(trailers);
        s.core.observe_end(status.code(), status.message());
        s.core.set_status(status.clone());
        Poll::Ready((status.code() != Code::Ok).then_some(Err(Error::Rpc(status))))
    }
}

impl<Resp> Drop for ResponseStream<Resp> {
    fn drop(&mut self) {
        if let Some(start) = &self.starting {
            start.cancel_call();
        } else if let Ok(s) = &self.state {
            // Once the status has arrived the call is over: nothing to cancel.
            if !s.status.is_done() {
                s.core.call.cancel();
            }
        }
    }
}

/// Blocking iterator over a [`ResponseStream`]. It keeps the stream after the last item, so
/// its headers and trailers stay readable.
pub struct BlockingIter<Resp> {
    stream: ResponseStream<Resp>,
    done: bool,
}

impl<Resp> BlockingIter<Resp> {
    /// The server's initial metadata (response headers), waiting for them if needed. Fails
    /// on a completion-queue thread, like `next`.
    pub fn initial_metadata(&mut self) -> Result<&Metadata, Error> {
        crate::blocking::block_on(self.stream.initial_metadata())?
    }

    /// The trailing metadata, once the iterator has given its last item.
    pub fn trailing_metadata(&self) -> Option<&Metadata> {
        self.stream.trailing_metadata()
    }
}

impl<Resp> Iterator for BlockingIter<Resp> {
    type Item = Result<Resp, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match crate::blocking::block_on(futures_util::StreamExt::next(&mut self.stream)) {
            Ok(item) => {
                self.done = item.is_none();
                item
            }
            Err(e) => Some(Err(e)),
        }
    }
}
