//! Streaming client calls: a [`RequestSink`] for requests and a [`ResponseStream`] (or a
//! [`ClientStreamingCall`] future) for responses, thin handles over one [`CallCore`]
//! (`call/core.rs`). The calls start in `call/start.rs`.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_sink::Sink;

use super::client::{Response, ResponseState, StatusState};
use super::core::{CallCore, RecvSlot, SendError, SendKind, SendSlot};
use super::start::{HeadersState, PendingStream, Started, StartedStream};
use super::state::SendRefused;
use super::write::WriteFlags;
use super::Batch;
use crate::buffer::ByteBuffer;
use crate::codec::Codec;
use crate::error::Error;
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
pub struct RequestSink<Req, C> {
    core: Result<Arc<CallCore>, Option<Error>>,
    /// The call's start, while the channel's interceptors have not let it start.
    starting: Option<Arc<PendingStream>>,
    slot: SendSlot,
    flags: WriteFlags,
    /// The half-close has been started (it is in `slot` until done).
    closing: bool,
    closed: bool,
    _types: PhantomData<fn(Req, C)>,
}

impl<Req, C: Codec<Req>> RequestSink<Req, C> {
    pub(crate) fn new(core: Result<Arc<CallCore>, Error>) -> Self {
        RequestSink {
            core: core.map_err(Some),
            starting: None,
            slot: SendSlot::default(),
            flags: WriteFlags::default(),
            closing: false,
            closed: false,
            _types: PhantomData,
        }
    }

    /// A sink whose call starts when `start` resolves.
    pub(crate) fn starting(start: Arc<PendingStream>) -> Self {
        let mut sink = Self::new(Err(Error::Internal("the call has not started".into())));
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
                .unwrap_or_else(|| Error::Internal("the call could not start".into()))),
        }
    }

    fn poll_writer(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        std::task::ready!(self.poll_start(cx));
        let ready = self.slot.poll_ready(cx);
        let core = self.core()?;
        ready.map(|r| r.map_err(|()| core.ended_error()))
    }

    fn write(&mut self, item: &Req, flags: WriteFlags) -> Result<(), Error> {
        if self.closed || self.closing {
            return Err(Error::Internal("send after the request stream was closed".into()));
        }
        if self.starting.is_some() {
            return Err(Error::Internal("a message was sent before the sink was ready".into()));
        }
        let core = self.core()?.clone();
        let buf = ByteBuffer::encode::<Req, C>(item).map_err(|e| Error::Codec(format!("failed to encode a request: {e}")))?;
        self.slot
            .start_client(&core, SendKind::Message(buf, flags))
            .map_err(|e| send_error(&core, e))
    }

    /// Sends one message with explicit flags, waiting until the core has taken it.
    pub async fn send_with(&mut self, item: Req, flags: WriteFlags) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.poll_writer(cx)).await?;
        self.write(&item, flags)?;
        std::future::poll_fn(|cx| self.poll_writer(cx)).await
    }

    /// Sends one message, waiting until the core has taken it.
    pub async fn send(&mut self, item: Req) -> Result<(), Error> {
        let flags = self.flags;
        self.send_with(item, flags).await
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
        SendError::Refused(SendRefused::Busy) => Error::Internal("a send started while another was in flight".into()),
        SendError::Core(e) => e,
    }
}

impl<Req, C> Unpin for RequestSink<Req, C> {}

impl<Req, C> RequestSink<Req, C> {
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

impl<Req, C: Codec<Req>> Sink<Req> for RequestSink<Req, C> {
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

impl<Req, C> Drop for RequestSink<Req, C> {
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
pub struct ClientStreamingCall<Resp, C> {
    state: Result<ResponseHalf, Option<Error>>,
    /// The call's start, while the channel's interceptors have not let it start.
    starting: Option<Arc<PendingStream>>,
    _types: PhantomData<fn() -> (Resp, C)>,
}

impl<Resp, C> Unpin for ClientStreamingCall<Resp, C> {}

impl<Resp, C: Codec<Resp>> ClientStreamingCall<Resp, C> {
    pub(crate) fn new(state: Result<ResponseHalf, Error>) -> Self {
        ClientStreamingCall {
            state: state.map_err(Some),
            starting: None,
            _types: PhantomData,
        }
    }

    /// A response whose call starts when `start` resolves.
    pub(crate) fn starting(start: Arc<PendingStream>) -> Self {
        let mut call = Self::new(Err(Error::Internal("the call has not started".into())));
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

    /// Blocks until the response arrives.
    pub fn wait(self) -> Result<Response<Resp>, Error> {
        crate::blocking::block_on(self)?
    }
}

impl<Resp, C: Codec<Resp>> Future for ClientStreamingCall<Resp, C> {
    type Output = Result<Response<Resp>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(start) = &this.starting {
            let started = std::task::ready!(start.poll(cx));
            this.state = started.map(Started::into_response).map_err(Some);
            this.starting = None;
        }
        match &mut this.state {
            Err(e) => Poll::Ready(Err(e
                .take()
                .unwrap_or_else(|| Error::Internal("polled after completion".into())))),
            Ok((core, batch)) => {
                if batch.poll_done(cx).is_none() {
                    return Poll::Pending;
                }
                // SAFETY: done, and this future is the batch's only Rust owner; the call is
                // alive (held in `core`).
                let result = unsafe { batch.state_mut().finish::<Resp, C>() };
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

impl<Resp, C> Drop for ClientStreamingCall<Resp, C> {
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
pub struct ResponseStream<Resp, C> {
    state: Result<StreamState, Option<Error>>,
    /// The call's start, while the channel's interceptors have not let it start.
    starting: Option<Arc<PendingStream>>,
    _types: PhantomData<fn() -> (Resp, C)>,
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

impl<Resp, C> Unpin for ResponseStream<Resp, C> {}

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

impl<Resp, C: Codec<Resp>> ResponseStream<Resp, C> {
    pub(crate) fn new(started: Result<StartedStream, Error>) -> Self {
        ResponseStream {
            state: stream_state(started),
            starting: None,
            _types: PhantomData,
        }
    }

    /// A stream whose call starts when `start` resolves.
    pub(crate) fn starting(start: Arc<PendingStream>) -> Self {
        let mut stream = Self::new(Err(Error::Internal("the call has not started".into())));
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

    /// The server's initial metadata (response headers), waiting for them if needed.
    pub async fn initial_metadata(&mut self) -> Result<&Metadata, Error> {
        std::future::poll_fn(|cx| self.poll_start(cx)).await;
        let s = match &mut self.state {
            Ok(s) => s,
            Err(e) => {
                return Err(e
                    .clone()
                    .unwrap_or_else(|| Error::Internal("the call could not start".into())))
            }
        };
        if s.initial_metadata.is_none() {
            let ok = std::future::poll_fn(|cx| match s.headers.poll_done(cx) {
                Some(ok) => Poll::Ready(ok),
                None => Poll::Pending,
            })
            .await;
            // SAFETY: the batch is done and we are its only Rust reader; the call is alive.
            let md = if ok {
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
    pub fn into_blocking_iter(self) -> BlockingIter<Resp, C> {
        BlockingIter { stream: self, done: false }
    }
}

impl<Resp, C: Codec<Resp>> Stream for ResponseStream<Resp, C> {
    type Item = Result<Resp, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_start(cx));
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
                        C::decode(&mut buf.reader()).map_err(|e| Error::Codec(format!("failed to decode a response: {e}")));
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

impl<Resp, C> Drop for ResponseStream<Resp, C> {
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
pub struct BlockingIter<Resp, C> {
    stream: ResponseStream<Resp, C>,
    done: bool,
}

impl<Resp, C: Codec<Resp>> BlockingIter<Resp, C> {
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

impl<Resp, C: Codec<Resp>> Iterator for BlockingIter<Resp, C> {
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
