//! Streaming client calls: a [`RequestSink`] for requests and a [`ResponseStream`] (or a
//! [`ClientStreamingCall`] future) for responses.
//!
//! Batches per call: the call starts with one batch that sends the request headers (and,
//! for server streaming, the request and the half-close) and receives the response
//! headers; a RECV_STATUS_ON_CLIENT waits for the end. Each message then costs exactly one
//! batch in its direction. Client streaming receives headers, response and status in one
//! batch.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_sink::Sink;

use super::client::{CallOptions, Response, ResponseState, StatusState};
use super::raw::{op, OpList, RecvMessage, RecvMetadata, SendMetadata};
use super::write::{WriteFlags, Writer};
use super::{Batch, Call, OnComplete};
use crate::buffer::ByteBuffer;
use crate::channel::Channel;
use crate::codec::Codec;
use crate::error::Error;
use crate::metadata::Metadata;
use crate::method::{Method, MethodKind};
use crate::status::{Code, Status};

/// The call shared by the two halves of a streaming call.
pub(crate) struct StreamCall {
    call: Call,
    /// Set once the final status has been received (no cancel on drop after that).
    finished: AtomicBool,
    /// The final status, once the receiving half has seen it (for the sender's errors).
    status: OnceLock<Status>,
}

impl StreamCall {
    fn new(call: Call) -> Arc<StreamCall> {
        Arc::new(StreamCall {
            call,
            finished: AtomicBool::new(false),
            status: OnceLock::new(),
        })
    }

    fn ended_error(&self) -> Error {
        match self.status.get() {
            Some(s) if s.code() != Code::Ok => Error::Rpc(s.clone()),
            Some(_) => Error::Rpc(Status::new(Code::FailedPrecondition, "the call already finished successfully")),
            None => Error::Rpc(Status::new(
                Code::Unavailable,
                "the call has ended (the server finished it or it was cancelled); the response carries its status",
            )),
        }
    }
}

fn check_kind<A, B, C>(method: &Method<A, B, C>, kind: MethodKind) -> Result<(), Error> {
    if method.kind() == kind {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{} is a {:?} method, called as {kind:?}",
            method.path(),
            method.kind()
        )))
    }
}

/// Starts the opening batch: send headers (+ message + half-close), receive headers.
fn start_call(
    channel: &Channel,
    path: &str,
    static_path: Option<&'static str>,
    opts: &CallOptions,
    request: Option<ByteBuffer>,
    recv_headers: bool,
) -> Result<(Arc<StreamCall>, Arc<Batch<HeadersState>>), Error> {
    let call = channel.create_call(path, static_path, opts)?;
    let batch = Batch::new(HeadersState {
        send_md: opts.send_metadata(),
        message: request,
        recv_initial: RecvMetadata::new(),
    });
    // SAFETY: the batch has not started; the ops point into its state, kept alive by the tag.
    unsafe {
        let s = &mut *batch.state_ptr();
        let mut ops = OpList::<4>::new();
        ops.push(op::send_initial_metadata(&mut s.send_md, opts.initial_metadata_flags()));
        if let Some(m) = &s.message {
            ops.push(op::send_message(m, 0));
            ops.push(op::send_close_from_client());
        }
        if recv_headers {
            ops.push(op::recv_initial_metadata(&mut s.recv_initial));
        }
        call.start_batch(ops.as_slice(), batch.tag())?;
    }
    Ok((StreamCall::new(call), batch))
}

fn start_status(call: &StreamCall) -> Result<Arc<Batch<StatusState>>, Error> {
    let batch = Batch::new(StatusState::new());
    // SAFETY: as above.
    unsafe {
        let op = (*batch.state_ptr()).op();
        call.call.start_batch(&[op], batch.tag())?;
    }
    Ok(batch)
}

/// Opening batch buffers.
pub(crate) struct HeadersState {
    send_md: SendMetadata,
    message: Option<ByteBuffer>,
    recv_initial: RecvMetadata,
}

impl OnComplete for HeadersState {}

impl OnComplete for RecvMessage {}

impl Channel {
    /// Starts a client-streaming call: send requests into the [`RequestSink`], then await
    /// the [`ClientStreamingCall`] for the one response.
    pub fn client_streaming<Req, Resp, C>(
        &self,
        method: &Method<Req, Resp, C>,
        opts: CallOptions,
    ) -> (RequestSink<Req, C>, ClientStreamingCall<Resp, C>)
    where
        C: Codec<Req> + Codec<Resp>,
    {
        let started = check_kind(method, MethodKind::ClientStreaming).and_then(|()| {
            let (call, _headers) = start_call(self, method.path(), method.static_path(), &opts, None, false)?;
            let response = Batch::new(ResponseState::new());
            // SAFETY: the batch has not started; the ops point into its state.
            unsafe {
                let ops = (*response.state_ptr()).ops();
                call.call.start_batch(&ops, response.tag())?;
            }
            Ok((call, response))
        });
        match started {
            Ok((call, response)) => (
                RequestSink::new(Ok(call.clone())),
                ClientStreamingCall {
                    state: Ok((call, response)),
                    _types: PhantomData,
                },
            ),
            Err(e) => (
                RequestSink::new(Err(e.clone())),
                ClientStreamingCall {
                    state: Err(Some(e)),
                    _types: PhantomData,
                },
            ),
        }
    }

    /// Starts a server-streaming call: one request, a [`ResponseStream`] of responses.
    pub fn server_streaming<Req, Resp, C>(
        &self,
        method: &Method<Req, Resp, C>,
        request: &Req,
        opts: CallOptions,
    ) -> ResponseStream<Resp, C>
    where
        C: Codec<Req> + Codec<Resp>,
    {
        let started = check_kind(method, MethodKind::ServerStreaming).and_then(|()| {
            let buf = ByteBuffer::encode::<Req, C>(request)
                .map_err(|e| Error::Codec(format!("failed to encode the request to {}: {e}", method.path())))?;
            let (call, headers) = start_call(self, method.path(), method.static_path(), &opts, Some(buf), true)?;
            let status = start_status(&call)?;
            Ok((call, headers, status))
        });
        ResponseStream::new(started)
    }

    /// Starts a bidirectional-streaming call: requests go into the [`RequestSink`],
    /// responses come out of the [`ResponseStream`], independently.
    pub fn duplex<Req, Resp, C>(
        &self,
        method: &Method<Req, Resp, C>,
        opts: CallOptions,
    ) -> (RequestSink<Req, C>, ResponseStream<Resp, C>)
    where
        C: Codec<Req> + Codec<Resp>,
    {
        let started = check_kind(method, MethodKind::Duplex).and_then(|()| {
            let (call, headers) = start_call(self, method.path(), method.static_path(), &opts, None, true)?;
            let status = start_status(&call)?;
            Ok((call, headers, status))
        });
        let sink = RequestSink::new(started.as_ref().map(|(c, _, _)| c.clone()).map_err(Clone::clone));
        (sink, ResponseStream::new(started))
    }
}

/// Sends a streaming call's requests. A [`Sink`]; also has inherent `send`/`close` methods
/// and blocking variants.
///
/// At most one message is in flight: the sink is not ready until the core has taken the
/// previous one, so memory stays bounded however slow the peer. Closing half-closes the
/// call (the server sees the end of its request stream); dropping an unclosed sink
/// half-closes too. Once the call has ended, sends fail with an error carrying its status
/// when known.
#[must_use = "a request sink does nothing unless messages are sent into it"]
pub struct RequestSink<Req, C> {
    call: Result<Arc<StreamCall>, Option<Error>>,
    writer: Writer,
    flags: WriteFlags,
    closing: Option<Arc<Batch<()>>>,
    closed: bool,
    _types: PhantomData<fn(Req, C)>,
}

impl<Req, C: Codec<Req>> RequestSink<Req, C> {
    fn new(call: Result<Arc<StreamCall>, Error>) -> Self {
        RequestSink {
            call: call.map_err(Some),
            writer: Writer::default(),
            flags: WriteFlags::default(),
            closing: None,
            closed: false,
            _types: PhantomData,
        }
    }

    /// Flags used for the following messages (until changed).
    pub fn set_write_flags(&mut self, flags: WriteFlags) {
        self.flags = flags;
    }

    /// Cancels the whole call: the server sees `CANCELLED`, and the response half ends
    /// with `CANCELLED`.
    pub fn cancel(&self) {
        if let Ok(call) = &self.call {
            call.call.cancel();
        }
    }

    fn call(&mut self) -> Result<&Arc<StreamCall>, Error> {
        match &mut self.call {
            Ok(c) => Ok(c),
            Err(e) => Err(e.clone().unwrap_or_else(|| Error::Internal("the call could not start".into()))),
        }
    }

    fn poll_writer(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let call = self.call()?.clone();
        match self.writer.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(())) => Poll::Ready(Err(call.ended_error())),
        }
    }

    fn write(&mut self, item: &Req, flags: WriteFlags) -> Result<(), Error> {
        if self.closed || self.closing.is_some() {
            return Err(Error::Internal("send after the request stream was closed".into()));
        }
        let call = self.call()?.clone();
        let buf = ByteBuffer::encode::<Req, C>(item).map_err(|e| Error::Codec(format!("failed to encode a request: {e}")))?;
        self.writer.start(&call.call, None, buf, flags)
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

impl<Req, C> Unpin for RequestSink<Req, C> {}

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
        if this.closing.is_none() {
            match this.poll_writer(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.closed = true;
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(())) => {}
            }
            let call = this.call()?.clone();
            let batch = Batch::new(());
            // SAFETY: the op points to nothing; the tag holds the batch.
            unsafe { call.call.start_batch(&[op::send_close_from_client()], batch.tag())? };
            this.closing = Some(batch);
        }
        let batch = this.closing.as_ref().unwrap();
        match batch.poll_done(cx) {
            None => Poll::Pending,
            Some(ok) => {
                this.closed = true;
                this.closing = None;
                if ok {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(this.call()?.ended_error()))
                }
            }
        }
    }
}

impl<Req, C> Drop for RequestSink<Req, C> {
    fn drop(&mut self) {
        if self.closed || self.closing.is_some() {
            return;
        }
        if let Ok(call) = &self.call {
            // Half-close; the transport sends it after any write still in flight.
            let batch = Batch::new(());
            // SAFETY: the op points to nothing; the tag holds the batch.
            let _ = unsafe { call.call.start_batch(&[op::send_close_from_client()], batch.tag()) };
        }
    }
}

/// A started client-streaming call and its one receiving batch.
type ResponseHalf = (Arc<StreamCall>, Arc<Batch<ResponseState>>);

/// A started streaming call with its opening and status batches.
type StartedStream = (Arc<StreamCall>, Arc<Batch<HeadersState>>, Arc<Batch<StatusState>>);

/// The response of a client-streaming call. Dropping it before it resolves cancels the call.
#[must_use = "a client-streaming call is cancelled when its response future is dropped"]
pub struct ClientStreamingCall<Resp, C> {
    state: Result<ResponseHalf, Option<Error>>,
    _types: PhantomData<fn() -> (Resp, C)>,
}

impl<Resp, C> Unpin for ClientStreamingCall<Resp, C> {}

impl<Resp, C: Codec<Resp>> ClientStreamingCall<Resp, C> {
    /// Cancels the call; awaiting it then gives `CANCELLED` (unless it had already ended).
    pub fn cancel(&self) {
        if let Ok((call, _)) = &self.state {
            call.call.cancel();
        }
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
        match &mut this.state {
            Err(e) => Poll::Ready(Err(e.take().unwrap_or_else(|| Error::Internal("polled after completion".into())))),
            Ok((call, batch)) => {
                if batch.poll_done(cx).is_none() {
                    return Poll::Pending;
                }
                // SAFETY: done, and this future is the batch's only Rust owner; the call is
                // alive (held in `call`).
                let result = unsafe { batch.state_mut().finish::<Resp, C>() };
                call.finished.store(true, Ordering::Release);
                let _ = call.status.set(match &result {
                    Ok(_) => Status::ok(),
                    Err(e) => e.status(),
                });
                Poll::Ready(result)
            }
        }
    }
}

impl<Resp, C> Drop for ClientStreamingCall<Resp, C> {
    fn drop(&mut self) {
        if let Ok((call, batch)) = &self.state {
            if !batch.is_done() {
                call.call.cancel();
            }
        }
    }
}

/// The responses of a server-streaming or bidirectional call: a [`Stream`] of messages
/// ending with `None` after an OK status, or with one `Err` carrying a non-OK status.
///
/// Dropping it before the end cancels the call.
#[must_use = "streams do nothing unless polled"]
pub struct ResponseStream<Resp, C> {
    state: Result<StreamState, Option<Error>>,
    _types: PhantomData<fn() -> (Resp, C)>,
}

struct StreamState {
    call: Arc<StreamCall>,
    headers: Arc<Batch<HeadersState>>,
    status: Arc<Batch<StatusState>>,
    recv: Option<Arc<Batch<RecvMessage>>>,
    /// The last finished receive's batch, whose allocation the next receive reuses.
    spare: Option<Arc<Batch<RecvMessage>>>,
    initial_metadata: Option<Metadata>,
    trailing_metadata: Option<Metadata>,
    done: bool,
}

impl<Resp, C> Unpin for ResponseStream<Resp, C> {}

impl<Resp, C: Codec<Resp>> ResponseStream<Resp, C> {
    fn new(started: Result<StartedStream, Error>) -> Self {
        ResponseStream {
            state: match started {
                Ok((call, headers, status)) => Ok(StreamState {
                    call,
                    headers,
                    status,
                    recv: None,
                    spare: None,
                    initial_metadata: None,
                    trailing_metadata: None,
                    done: false,
                }),
                Err(e) => Err(Some(e)),
            },
            _types: PhantomData,
        }
    }

    /// The server's initial metadata (response headers), waiting for them if needed.
    pub async fn initial_metadata(&mut self) -> Result<&Metadata, Error> {
        let s = match &mut self.state {
            Ok(s) => s,
            Err(e) => return Err(e.clone().unwrap_or_else(|| Error::Internal("the call could not start".into()))),
        };
        if s.initial_metadata.is_none() {
            let ok = std::future::poll_fn(|cx| match s.headers.poll_done(cx) {
                Some(ok) => Poll::Ready(ok),
                None => Poll::Pending,
            })
            .await;
            // SAFETY: the batch is done and we are its only Rust reader; the call is alive.
            let md = if ok { unsafe { s.headers.state_mut().recv_initial.to_metadata() } } else { Metadata::new() };
            s.initial_metadata = Some(md);
        }
        Ok(s.initial_metadata.as_ref().unwrap())
    }

    /// Cancels the call; the stream then ends with `CANCELLED` (unless it had already
    /// ended), and the server sees the cancellation.
    pub fn cancel(&self) {
        if let Ok(s) = &self.state {
            s.call.call.cancel();
        }
    }

    /// The trailing metadata, once the stream has ended.
    pub fn trailing_metadata(&self) -> Option<&Metadata> {
        self.state.as_ref().ok().and_then(|s| s.trailing_metadata.as_ref())
    }

    /// A blocking iterator over the responses.
    ///
    /// Each `next` fails with an error item when called on a completion-queue thread.
    pub fn into_blocking_iter(self) -> BlockingIter<Resp, C> {
        BlockingIter { stream: Some(self) }
    }
}

impl<Resp, C: Codec<Resp>> Stream for ResponseStream<Resp, C> {
    type Item = Result<Resp, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let s = match &mut this.state {
            Ok(s) => s,
            Err(e) => return Poll::Ready(e.take().map(Err)),
        };
        if s.done {
            return Poll::Ready(None);
        }
        loop {
            match &s.recv {
                None => {
                    let batch = Batch::reuse_or_new(s.spare.take(), RecvMessage::new());
                    // SAFETY: the op points into the batch state, kept alive by the tag.
                    let started = unsafe {
                        let op = op::recv_message(&mut *batch.state_ptr());
                        s.call.call.start_batch(&[op], batch.tag())
                    };
                    if let Err(e) = started {
                        s.done = true;
                        s.call.call.cancel();
                        return Poll::Ready(Some(Err(e)));
                    }
                    s.recv = Some(batch);
                }
                Some(batch) => {
                    let Some(ok) = batch.poll_done(cx) else {
                        return Poll::Pending;
                    };
                    // SAFETY: done; we are the batch's only Rust reader.
                    let message = if ok { unsafe { batch.state_mut().take() } } else { None };
                    match message {
                        Some(buf) => {
                            s.spare = s.recv.take();
                            let item = C::decode(&mut buf.reader())
                                .map_err(|e| Error::Codec(format!("failed to decode a response: {e}")));
                            if item.is_err() {
                                s.call.call.cancel_with_status(Code::Internal, "the client could not decode a response");
                            }
                            return Poll::Ready(Some(item));
                        }
                        None => {
                            // End of the responses: the status tells how the call ended.
                            let Some(_) = s.status.poll_done(cx) else {
                                return Poll::Pending;
                            };
                            s.done = true;
                            s.call.finished.store(true, Ordering::Release);
                            // SAFETY: done; only reader; the call is alive.
                            let (status, trailers) = unsafe { s.status.state_mut().finish() };
                            s.trailing_metadata = Some(trailers);
                            let _ = s.call.status.set(status.clone());
                            return Poll::Ready((status.code() != Code::Ok).then_some(Err(Error::Rpc(status))));
                        }
                    }
                }
            }
        }
    }
}

impl<Resp, C> Drop for ResponseStream<Resp, C> {
    fn drop(&mut self) {
        if let Ok(s) = &self.state {
            if !s.call.finished.load(Ordering::Acquire) && !s.status.is_done() {
                s.call.call.cancel();
            }
        }
    }
}

/// Blocking iterator over a [`ResponseStream`].
pub struct BlockingIter<Resp, C> {
    stream: Option<ResponseStream<Resp, C>>,
}

impl<Resp, C: Codec<Resp>> Iterator for BlockingIter<Resp, C> {
    type Item = Result<Resp, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let stream = self.stream.as_mut()?;
        let next = crate::blocking::block_on(futures_util::StreamExt::next(stream));
        match next {
            Ok(item) => {
                if item.is_none() {
                    self.stream = None;
                }
                item
            }
            Err(e) => Some(Err(e)),
        }
    }
}
