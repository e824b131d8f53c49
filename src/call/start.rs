//! Every way a client call starts: `Channel::unary`, `client_streaming`, `server_streaming`
//! and `duplex`, and the core call they all create.
//!
//! Batches per call: a unary call is one batch of six ops. A streaming call starts with one
//! batch that sends the request headers (and, for server streaming, the request and the
//! half-close) and receives the response headers; its final op, RECV_STATUS_ON_CLIENT,
//! waits for the end from the start. Each message then costs one batch in its direction.
//! Client streaming receives headers, response and status in one batch.

use std::ptr;
use std::sync::Arc;

use grpcore_sys as ffi;

use super::client::{unary_batch, CallOptions, ResponseState, StatusState, UnaryCall};
use super::core::{CallCore, CallObserver};
use crate::interceptor::{run_client_chain, ChainObserver, ClientCallInfo, Extensions};
use super::raw::{op, OpList, RecvMetadata, SendMetadata};
use super::streaming::{ClientStreamingCall, RequestSink, ResponseStream};
use super::{Batch, Call, OnComplete};
use crate::buffer::ByteBuffer;
use crate::channel::Channel;
use crate::codec::Codec;
use crate::error::Error;
use crate::method::{Method, MethodKind};

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
        let registered = static_path.and_then(|p| self.registered(p));
        let cq = self.inner.env.pick_cq().clone();
        let Some(borrow) = cq.borrow() else {
            return Err(Error::Shutdown("the environment is shutting down".into()));
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
                return Err(Error::Internal(format!("the core could not create a call to {path}")));
            }
            Ok(Call::from_raw_on(raw, cq, self))
        }
    }

    /// Starts a unary call. The returned future resolves to the response.
    ///
    /// The request is encoded and the call started right away; the future only waits.
    /// Use [`UnaryCall::wait`] to block instead of awaiting.
    pub fn unary<Req, Resp, C>(&self, method: &Method<Req, Resp, C>, request: &Req, mut opts: CallOptions) -> UnaryCall<Resp, C>
    where
        C: Codec<Req> + Codec<Resp>,
    {
        if let Err(e) = check_kind(method, MethodKind::Unary) {
            return UnaryCall::failed(e);
        }
        let observer = match self.intercept(method.path(), MethodKind::Unary, &mut opts) {
            Ok(observer) => observer,
            Err(e) => return UnaryCall::failed(e),
        };
        let batch = match unary_batch::<Req, C>(request) {
            Ok(batch) => batch,
            Err(e) => {
                let e = Error::Codec(format!("failed to encode the request to {}: {e}", method.path()));
                return UnaryCall::failed(ended_before_start(observer, e));
            }
        };
        match self.create_call(method.path(), method.static_path(), &opts) {
            Ok(call) => UnaryCall::start(CallCore::client(call, observer), &opts, batch),
            Err(e) => UnaryCall::failed(ended_before_start(observer, e)),
        }
    }

    /// Runs the channel's interceptors, if any, on a call about to start: `opts` gets the
    /// metadata as they left it, and the call the observer that reports its end to them.
    /// A refusal fails the call with the interceptor's status, before anything is sent.
    fn intercept(&self, path: &str, kind: MethodKind, opts: &mut CallOptions) -> Result<Option<Box<dyn CallObserver>>, Error> {
        let Some(chain) = &self.inner.interceptors else {
            return Ok(None);
        };
        let deadline = opts.deadline_instant();
        let mut info = ClientCallInfo {
            method: path.into(),
            kind,
            target: self.inner.target.clone(),
            deadline,
            metadata: opts.take_metadata(),
            extensions: Extensions::default(),
            parent: opts.parent_link().map(|p| p.server().clone()),
        };
        let observer = ChainObserver::client(chain.clone(), info.method.clone(), kind, deadline);
        let result = run_client_chain(chain, &mut info);
        opts.set_metadata(info.metadata);
        observer.set_extensions(info.extensions);
        match result {
            Ok(()) => Ok(Some(Box::new(observer))),
            Err(status) => {
                observer.status(status.code(), status.message());
                observer.end();
                Err(Error::Rpc(status))
            }
        }
    }

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
            let (core, _headers) = self.start_stream(method, &opts, None, false)?;
            let response = Batch::new(ResponseState::new());
            // The response batch carries the final op (RECV_STATUS_ON_CLIENT).
            // SAFETY: the batch has not started; the ops point into its state.
            unsafe {
                let ops = (*response.state_ptr()).ops();
                core.call.start_batch(&ops, response.tag())?;
            }
            Ok((core, response))
        });
        match started {
            Ok((core, response)) => (RequestSink::new(Ok(core.clone())), ClientStreamingCall::new(Ok((core, response)))),
            Err(e) => (RequestSink::new(Err(e.clone())), ClientStreamingCall::new(Err(e))),
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
            let (core, headers) = self.start_stream(method, &opts, Some(buf), true)?;
            let status = start_status(&core)?;
            Ok((core, headers, status))
        });
        ResponseStream::new(started)
    }

    /// Starts a bidirectional-streaming call: requests go into the [`RequestSink`],
    /// responses come out of the [`ResponseStream`], independently.
    pub fn duplex<Req, Resp, C>(&self, method: &Method<Req, Resp, C>, opts: CallOptions) -> (RequestSink<Req, C>, ResponseStream<Resp, C>)
    where
        C: Codec<Req> + Codec<Resp>,
    {
        let started = check_kind(method, MethodKind::Duplex).and_then(|()| {
            let (core, headers) = self.start_stream(method, &opts, None, true)?;
            let status = start_status(&core)?;
            Ok((core, headers, status))
        });
        let sink = RequestSink::new(started.as_ref().map(|(c, _, _)| c.clone()).map_err(Clone::clone));
        (sink, ResponseStream::new(started))
    }

    /// Creates a streaming call and starts its opening batch: send headers (+ message +
    /// half-close), receive headers.
    fn start_stream<A, B, C>(
        &self,
        method: &Method<A, B, C>,
        opts: &CallOptions,
        request: Option<ByteBuffer>,
        recv_headers: bool,
    ) -> Result<(Arc<CallCore>, Arc<Batch<HeadersState>>), Error> {
        // Interceptors may change the metadata: only then are the options copied.
        let mut intercepted;
        let (opts, observer) = match self.inner.interceptors {
            None => (opts, None),
            Some(_) => {
                intercepted = opts.clone();
                let observer = self.intercept(method.path(), method.kind(), &mut intercepted)?;
                (&intercepted, observer)
            }
        };
        let call = match self.create_call(method.path(), method.static_path(), opts) {
            Ok(call) => call,
            Err(e) => return Err(ended_before_start(observer, e)),
        };
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
fn ended_before_start(observer: Option<Box<dyn CallObserver>>, e: Error) -> Error {
    if let Some(o) = observer {
        let status = e.status();
        o.status(status.code(), status.message());
        o.end();
    }
    e
}

fn check_kind<A, B, C>(method: &Method<A, B, C>, kind: MethodKind) -> Result<(), Error> {
    if method.kind() == kind {
        Ok(())
    } else {
        Err(Error::Config(format!("{} is a {:?} method, called as {kind:?}", method.path(), method.kind())))
    }
}
