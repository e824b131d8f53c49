//! Every way a client call starts: `Channel::unary`, `client_streaming`, `server_streaming`
//! and `duplex`, and the core call they all create.
//!
//! Batches per call: a unary call is one batch of six ops. A streaming call starts with one
//! batch that sends the request headers (and, for server streaming, the request and the
//! half-close) and receives the response headers; its final op, RECV_STATUS_ON_CLIENT,
//! waits for the end from the start. Each message then costs one batch in its direction.
//! Client streaming receives headers, response and status in one batch.

use std::borrow::Cow;
use std::future::Future;
use std::ptr;
use std::sync::Arc;
use std::task::{Context, Poll};

use grpcore_sys as ffi;

use super::client::{unary_batch, CallOptions, ResponseState, StatusState, UnaryBatch, UnaryCall, UnaryState};
use super::core::{CallCore, CallObserver};
use super::pending::{SharedStart, StartFuture};
use crate::interceptor::{run_client_chain, ChainObserver, ClientCallInfo, Extensions};
use super::raw::{op, OpList, RecvMetadata, SendMetadata};
use super::streaming::{ClientStreamingCall, RequestSink, ResponseStream};
use super::{Batch, Call, OnComplete};
use crate::buffer::ByteBuffer;
use crate::channel::Channel;
use crate::codec::Codec;
use crate::error::{CodecErrorKind, ConfigErrorKind, Error, InternalErrorKind, ShutdownErrorKind};
use crate::method::{ErasedMethod, Method, MethodKind};
use crate::status::{Code, Status};

/// A started streaming call: its core, opening batch and status batch.
pub(crate) type StartedStream = (Arc<CallCore>, Arc<Batch<HeadersState>>, Arc<Batch<StatusState>>);

/// The opening batch's buffers.
pub(crate) struct HeadersState {
    send_md: SendMetadata,
    message: Option<ByteBuffer>,
    pub(crate) recv_initial: RecvMetadata,
}

impl OnComplete for HeadersState {}

impl Channel {
    /// Creates a call to `path` bound to one of the environment's queues. The call keeps
    /// this channel alive.
    pub(crate) fn create_call(&self, path: &str, static_path: Option<&'static str>, opts: &CallOptions) -> Result<Call, Error> {
        if opts.expired() {
            return Err(Error::Rpc(Status::new(Code::DeadlineExceeded, "the deadline had passed before the call started")));
        }
        let registered = static_path.and_then(|p| self.registered(p));
        let cq = self.inner.env.pick_cq().clone();
        let Some(borrow) = cq.borrow() else {
            return Err(Error::shutdown(ShutdownErrorKind::Environment, "the environment is shutting down"));
        };
        // SAFETY: the channel and the borrowed queue are live; a registration handle belongs
        // to this channel; a method slice is released after the core took its own reference;
        // the new call's single reference becomes the `Call`'s.
        unsafe {
            let parent = opts.parent_call().map_or(ptr::null_mut(), |c| c.as_ptr());
            let raw = match registered {
                Some(m) => ffi::grpc_channel_create_registered_call(
                    self.inner.raw,
                    parent,
                    ffi::GRPC_PROPAGATE_DEFAULTS,
                    borrow.raw(),
                    m.0,
                    opts.raw_deadline(),
                    ptr::null_mut(),
                ),
                None => {
                    let method = ffi::grpc_slice_from_copied_buffer(path.as_ptr() as *const _, path.len());
                    let raw = ffi::grpc_channel_create_call(
                        self.inner.raw,
                        parent,
                        ffi::GRPC_PROPAGATE_DEFAULTS,
                        borrow.raw(),
                        method,
                        ptr::null(),
                        opts.raw_deadline(),
                        ptr::null_mut(),
                    );
                    ffi::grpc_slice_unref(method);
                    raw
                }
            };
            drop(borrow);
            if raw.is_null() {
                return Err(Error::internal_kind(InternalErrorKind::Core, format!("the core could not create a call to {path}")));
            }
            Ok(Call::from_raw_on(raw, cq, self))
        }
    }

    /// Starts a unary call. The returned future resolves to the whole [`Response`]
    /// (message, initial and trailing metadata), as a request builder's
    /// [`response`](crate::UnaryRequest::response) does.
    ///
    /// The request is encoded and the call started right away (or, when one of the
    /// channel's interceptors waits, when the future is first polled); the future only
    /// waits. Use [`UnaryCall::wait`] to block instead of awaiting.
    ///
    /// [`Response`]: crate::Response
    pub fn unary<Req, Resp, C>(&self, method: &Method<Req, Resp, C>, request: &Req, opts: CallOptions) -> UnaryCall<Resp>
    where
        C: Codec<Req> + Codec<Resp>,
    {
        self.unary_erased(&method.erase(), request, opts)
    }

    /// [`Channel::unary`] with the codec as functions.
    pub(crate) fn unary_erased<Req, Resp>(&self, method: &ErasedMethod<Req, Resp>, request: &Req, mut opts: CallOptions) -> UnaryCall<Resp> {
        let decode = method.response.decode;
        if let Err(e) = check_kind(method, MethodKind::Unary) {
            return UnaryCall::failed(e, decode);
        }
        if let Some(policy) = &method.deadline {
            opts.default_timeout_if_unset(policy.default_timeout());
        }
        let observer = match self.intercept(&method.path, MethodKind::Unary, &mut opts) {
            Ok(Intercepted::Now(observer)) => observer,
            Ok(Intercepted::Later(chain)) => {
                let batch = unary_batch(request, method.request).map_err(|e| encode_error(&method.path, e));
                let (channel, path) = (self.clone(), Path(method.path.clone()));
                return UnaryCall::starting(
                    Box::pin(async move {
                        match chain.await {
                            Ok((opts, observer)) => channel.start_unary(&path, &opts, Some(observer), batch),
                            Err(e) => UnaryState::Failed(Some(e)),
                        }
                    }),
                    decode,
                );
            }
            Err(e) => return UnaryCall::failed(e, decode),
        };
        let batch = unary_batch(request, method.request).map_err(|e| encode_error(&method.path, e));
        UnaryCall::from_state(self.start_unary(&Path(method.path.clone()), &opts, observer, batch), decode)
    }

    /// Creates a unary call and starts its one batch.
    fn start_unary(
        &self,
        path: &Path,
        opts: &CallOptions,
        observer: Option<Box<dyn CallObserver>>,
        batch: Result<UnaryBatch, Error>,
    ) -> UnaryState {
        let started = batch.and_then(|batch| Ok((self.create_call(path, path.static_str(), opts)?, batch)));
        match started {
            Ok((call, batch)) => UnaryState::start(CallCore::client(call, observer), opts, batch),
            Err(e) => UnaryState::Failed(Some(ended_before_start(&observer, e))),
        }
    }

    /// Runs the channel's interceptors, if any, on a call about to start. When they finish
    /// at once, `opts` gets the metadata as they left it, and the call the observer that
    /// reports its end to them; when one of them waits, the options move into the future
    /// that finishes the chain. A refusal fails the call with the interceptor's status,
    /// before anything is sent.
    fn intercept(&self, path: &str, kind: MethodKind, opts: &mut CallOptions) -> Result<Intercepted, Error> {
        let Some(chain) = &self.inner.interceptors else {
            return Ok(Intercepted::Now(None));
        };
        let deadline = opts.deadline_instant();
        let info = ClientCallInfo {
            method: path.into(),
            kind,
            target: self.inner.target.clone(),
            deadline,
            metadata: opts.take_metadata(),
            extensions: Extensions::default(),
            parent: opts.parent_link().map(|p| p.server().clone()),
        };
        let observer = ChainObserver::client(chain.clone(), info.method.clone(), kind, deadline);
        let mut run = Box::pin(run_client_chain(chain.clone(), info));
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        if let Poll::Ready((info, result)) = run.as_mut().poll(&mut cx) {
            return chain_done(opts, observer, info, result).map(|o| Intercepted::Now(Some(o)));
        }
        // An interceptor waits. The deadline still counts from now.
        if let Some(deadline) = deadline {
            opts.set_deadline_at(deadline);
        }
        let mut opts = std::mem::take(opts);
        let mut observer = Unstarted(Some(observer));
        Ok(Intercepted::Later(Box::pin(async move {
            let (info, result) = run.await;
            let observer = observer.0.take().expect("the observer is taken once");
            chain_done(&mut opts, observer, info, result).map(|o| (opts, o))
        })))
    }

    /// Starts a client-streaming call: send requests into the [`RequestSink`], then await
    /// the [`ClientStreamingCall`] for the one response.
    pub fn client_streaming<Req, Resp, C>(&self, method: &Method<Req, Resp, C>, opts: CallOptions) -> (RequestSink<Req>, ClientStreamingCall<Resp>)
    where
        C: Codec<Req> + Codec<Resp>,
    {
        self.client_streaming_erased(&method.erase(), opts)
    }

    /// [`Channel::client_streaming`] with the codec as functions.
    pub(crate) fn client_streaming_erased<Req, Resp>(
        &self,
        method: &ErasedMethod<Req, Resp>,
        mut opts: CallOptions,
    ) -> (RequestSink<Req>, ClientStreamingCall<Resp>) {
        let start = |channel: &Channel, path: &Path, opts: &CallOptions, observer| {
            let (core, _headers) = channel.start_stream(path, opts, observer, None, false)?;
            let response = Batch::new(ResponseState::new());
            // The response batch carries the final op (RECV_STATUS_ON_CLIENT).
            // SAFETY: the batch has not started; the ops point into its state.
            unsafe {
                let ops = (*response.state_ptr()).ops();
                core.call.start_batch(&ops, response.tag())?;
            }
            Ok(Started::Response(core, response))
        };
        let (encode, decode) = (method.request, method.response.decode);
        match self.start_with(method, MethodKind::ClientStreaming, &mut opts, start) {
            Begin::Now(Ok(Started::Response(core, response))) => (
                RequestSink::new(Ok(core.clone()), encode),
                ClientStreamingCall::new(Ok((core, response)), decode),
            ),
            Begin::Now(Ok(Started::Stream(..))) => unreachable!("a client-streaming start gives a response batch"),
            Begin::Now(Err(e)) => (RequestSink::new(Err(e.clone()), encode), ClientStreamingCall::new(Err(e), decode)),
            Begin::Later(start) => (RequestSink::starting(start.clone(), encode), ClientStreamingCall::starting(start, decode)),
        }
    }

    /// Starts a server-streaming call: one request, a [`ResponseStream`] of responses.
    pub fn server_streaming<Req, Resp, C>(&self, method: &Method<Req, Resp, C>, request: &Req, opts: CallOptions) -> ResponseStream<Resp>
    where
        C: Codec<Req> + Codec<Resp>,
    {
        self.server_streaming_erased(&method.erase(), request, opts)
    }

    /// [`Channel::server_streaming`] with the codec as functions.
    pub(crate) fn server_streaming_erased<Req, Resp>(
        &self,
        method: &ErasedMethod<Req, Resp>,
        request: &Req,
        mut opts: CallOptions,
    ) -> ResponseStream<Resp> {
        let buf = (method.request.encode)(request).map_err(|e| encode_error(&method.path, e));
        let mut buf = Some(buf);
        let start = move |channel: &Channel, path: &Path, opts: &CallOptions, observer| {
            let buf = buf.take().expect("a call starts once");
            let buf = buf.map_err(|e| ended_before_start(&observer, e))?;
            let (core, headers) = channel.start_stream(path, opts, observer, Some(buf), true)?;
            let status = start_status(&core)?;
            Ok(Started::Stream(core, headers, status))
        };
        let decode = method.response.decode;
        match self.start_with(method, MethodKind::ServerStreaming, &mut opts, start) {
            Begin::Now(started) => ResponseStream::new(started.map(Started::into_stream), decode),
            Begin::Later(start) => ResponseStream::starting(start, decode),
        }
    }

    /// Starts a bidirectional-streaming call: requests go into the [`RequestSink`],
    /// responses come out of the [`ResponseStream`], independently.
    pub fn duplex<Req, Resp, C>(&self, method: &Method<Req, Resp, C>, opts: CallOptions) -> (RequestSink<Req>, ResponseStream<Resp>)
    where
        C: Codec<Req> + Codec<Resp>,
    {
        self.duplex_erased(&method.erase(), opts)
    }

    /// [`Channel::duplex`] with the codec as functions.
    pub(crate) fn duplex_erased<Req, Resp>(&self, method: &ErasedMethod<Req, Resp>, mut opts: CallOptions) -> (RequestSink<Req>, ResponseStream<Resp>) {
        let start = |channel: &Channel, path: &Path, opts: &CallOptions, observer| {
            let (core, headers) = channel.start_stream(path, opts, observer, None, true)?;
            let status = start_status(&core)?;
            Ok(Started::Stream(core, headers, status))
        };
        let (encode, decode) = (method.request, method.response.decode);
        match self.start_with(method, MethodKind::Duplex, &mut opts, start) {
            Begin::Now(started) => {
                let started = started.map(Started::into_stream);
                let sink = RequestSink::new(started.as_ref().map(|(c, _, _)| c.clone()).map_err(Clone::clone), encode);
                (sink, ResponseStream::new(started, decode))
            }
            Begin::Later(start) => (RequestSink::starting(start.clone(), encode), ResponseStream::starting(start, decode)),
        }
    }

    /// Checks the kind, runs the interceptors and then `start`: at once, or, when an
    /// interceptor waits, in a start shared by the call's handles.
    fn start_with<A, B, F>(&self, method: &ErasedMethod<A, B>, kind: MethodKind, opts: &mut CallOptions, mut start: F) -> Begin
    where
        F: FnMut(&Channel, &Path, &CallOptions, Option<Box<dyn CallObserver>>) -> Result<Started, Error> + Send + 'static,
    {
        if let Some(policy) = &method.deadline {
            opts.default_timeout_if_unset(policy.default_timeout());
        }
        let intercepted = check_kind(method, kind).and_then(|()| self.intercept(&method.path, kind, opts));
        match intercepted {
            Err(e) => Begin::Now(Err(e)),
            Ok(Intercepted::Now(observer)) => Begin::Now(start(self, &Path(method.path.clone()), opts, observer)),
            Ok(Intercepted::Later(chain)) => {
                let (channel, path) = (self.clone(), Path(method.path.clone()));
                Begin::Later(SharedStart::new(Box::pin(async move {
                    let (opts, observer) = chain.await?;
                    start(&channel, &path, &opts, Some(observer))
                })))
            }
        }
    }

    /// Creates a streaming call and starts its opening batch: send headers (+ message +
    /// half-close), receive headers.
    fn start_stream(
        &self,
        path: &Path,
        opts: &CallOptions,
        observer: Option<Box<dyn CallObserver>>,
        request: Option<ByteBuffer>,
        recv_headers: bool,
    ) -> Result<(Arc<CallCore>, Arc<Batch<HeadersState>>), Error> {
        let call = self.create_call(path, path.static_str(), opts).map_err(|e| ended_before_start(&observer, e))?;
        let core = Arc::new(CallCore::client(call, observer));
        if let (true, Some(o)) = (request.is_some(), core.observer()) {
            o.message_sent();
        }
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
            core.call.start_batch(ops.as_slice(), batch.tag())?;
        }
        Ok((core, batch))
    }
}

/// What a channel's interceptors made of a call about to start.
enum Intercepted {
    /// They finished (or there are none): start now, with this observer.
    Now(Option<Box<dyn CallObserver>>),
    /// One of them waits: this finishes the chain and gives the options and observer to
    /// start with.
    Later(StartFuture<Proceed>),
}

/// What a finished chain gives the call to start with: the options as the hooks left them
/// and the observer; or the refusal.
type Proceed = Result<(CallOptions, Box<dyn CallObserver>), Error>;

/// A streaming call, started (or failed) now or later.
enum Begin {
    Now(Result<Started, Error>),
    Later(Arc<PendingStream>),
}

/// A streaming call whose interceptors have not yet let it start.
pub(crate) type PendingStream = SharedStart<Result<Started, Error>>;

/// A started streaming call, as its handles take it.
#[derive(Clone)]
pub(crate) enum Started {
    /// Server streaming or duplex: the opening batch and the status batch.
    Stream(Arc<CallCore>, Arc<Batch<HeadersState>>, Arc<Batch<StatusState>>),
    /// Client streaming: the one batch receiving the response and the status.
    Response(Arc<CallCore>, Arc<Batch<ResponseState>>),
}

impl Started {
    pub(crate) fn core(&self) -> &Arc<CallCore> {
        match self {
            Started::Stream(core, ..) | Started::Response(core, _) => core,
        }
    }

    pub(crate) fn into_stream(self) -> StartedStream {
        match self {
            Started::Stream(core, headers, status) => (core, headers, status),
            Started::Response(..) => unreachable!("only streaming responses are asked for their stream"),
        }
    }

    pub(crate) fn into_response(self) -> (Arc<CallCore>, Arc<Batch<ResponseState>>) {
        match self {
            Started::Response(core, response) => (core, response),
            Started::Stream(..) => unreachable!("only client-streaming calls are asked for their response"),
        }
    }
}

impl PendingStream {
    /// Cancels a streaming call whose start may still be waiting: if it is, it never
    /// starts, and its handles end with `CANCELLED`; if it has started, the call is
    /// cancelled as a started one is.
    pub(crate) fn cancel_call(&self) {
        let cancelled = Err(Error::Rpc(Status::new(Code::Cancelled, "the call was cancelled before it started")));
        self.cancel(cancelled, |started| {
            if let Ok(started) = started {
                started.core().call.cancel();
            }
        });
    }
}

/// The observer of a call whose start waits on its interceptors: when the start is dropped
/// first (its handles dropped or cancelled), the interceptors see the call end as
/// `CANCELLED`.
struct Unstarted(Option<ChainObserver>);

impl Drop for Unstarted {
    fn drop(&mut self) {
        if let Some(observer) = self.0.take() {
            observer.status(Code::Cancelled, "the call was cancelled before it started");
            observer.end();
        }
    }
}

/// Hands what the start hooks left to the call: `opts` gets the metadata, the observer the
/// extensions. A refusal ends the call there.
fn chain_done(
    opts: &mut CallOptions,
    observer: ChainObserver,
    info: ClientCallInfo,
    result: Result<(), Status>,
) -> Result<Box<dyn CallObserver>, Error> {
    opts.set_metadata(info.metadata);
    observer.set_extensions(info.extensions);
    match result {
        Ok(()) => Ok(Box::new(observer)),
        Err(status) => {
            observer.status(status.code(), status.message());
            observer.end();
            Err(Error::Rpc(status))
        }
    }
}

/// A method's path as a call takes it: borrowed when it is `'static`.
struct Path(Cow<'static, str>);

impl Path {
    /// The path as a `'static` string when it is one (a registered method needs no copy).
    fn static_str(&self) -> Option<&'static str> {
        match self.0 {
            Cow::Borrowed(p) => Some(p),
            Cow::Owned(_) => None,
        }
    }
}

impl std::ops::Deref for Path {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

fn encode_error(path: &str, e: Error) -> Error {
    Error::codec_kind(CodecErrorKind::Encode, format!("failed to encode the request to {path}: {e}")).with_source(e)
}

/// Starts a streaming call's final op: RECV_STATUS_ON_CLIENT.
///
/// On a client the final op is a receive that starts with the call, once, here (or in the
/// client-streaming response batch); the state word's final bit is the server's status.
fn start_status(core: &CallCore) -> Result<Arc<Batch<StatusState>>, Error> {
    let batch = Batch::new(StatusState::new());
    // SAFETY: the batch has not started; the op points into its state, kept alive by the tag.
    unsafe {
        let op = (*batch.state_ptr()).op();
        core.call.start_batch(&[op], batch.tag())?;
    }
    Ok(batch)
}

/// A call that failed before it started: its observer (if any) sees it end with `e`.
fn ended_before_start(observer: &Option<Box<dyn CallObserver>>, e: Error) -> Error {
    if let Some(o) = observer {
        let status = e.status();
        o.status(status.code(), status.message());
        o.end();
    }
    e
}

fn check_kind<A, B>(method: &ErasedMethod<A, B>, kind: MethodKind) -> Result<(), Error> {
    if method.kind == kind {
        Ok(())
    } else {
        Err(Error::config_kind(ConfigErrorKind::Method, format!("{} is a {:?} method, called as {kind:?}", method.path, method.kind)))
    }
}
