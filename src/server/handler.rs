//! Running handlers: an arrived call, where its handler's future runs, and the guarded
//! runners that turn a handler's outcome (or its panic) into the call's end.
//!
//! Every handler runs inside `catch_unwind`, both the call of the user's function and the
//! polls of the future it returns: a panic answers `INTERNAL` and the server keeps serving.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;

use super::context::ServerContext;
use super::limits::MessageLimits;
use crate::buffer::ByteBuffer;
use crate::call::core::ServerCallCore;
use crate::interceptor::{run_server_chain, ChainObserver, ServerCallInfo, ServerChain};
use crate::method::MethodKind;
use crate::call::raw::RecvMetadata;
use crate::call::Call;
use crate::codec::Codec;
use crate::status::Status;
use crate::task::panic_message;

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A call that arrived for a registered method.
pub(crate) struct IncomingCall {
    pub(crate) arrived: Arrived,
    pub(crate) method: Arc<str>,
    pub(crate) deadline: grpcore_sys::gpr_timespec,
    pub(crate) payload: Option<ByteBuffer>,
    /// The message sizes to check here (lean mode).
    pub(crate) limits: MessageLimits,
}

/// How a call reaches its handler: as the core handed it over, or already inside its call
/// core (interceptors ran first, on that core).
pub(crate) enum Arrived {
    /// The call and its request metadata as the core received it (converted on first use).
    Call { call: Call, metadata: RecvMetadata },
    /// The call's core, made before the handler (the handler adds its sinks to it).
    Core(Arc<ServerCallCore>),
}

impl IncomingCall {
    /// The request read with the call (unary and server-streaming methods), size-checked
    /// and decoded.
    pub(crate) fn decode_payload<Req, C: Codec<Req>>(&mut self) -> Result<Req, Status> {
        match self.payload.take() {
            None => Err(Status::internal("the client sent no request message")),
            Some(buf) => self.limits.decode(&buf, C::decode, "the request", &self.method),
        }
    }

    /// The call's core, with `senders` sinks that its status waits for, and the handler's
    /// context over it.
    pub(crate) fn into_core(self, senders: u32) -> (Arc<ServerCallCore>, ServerContext) {
        let server = match self.arrived {
            Arrived::Call { call, metadata } => ServerCallCore::new(call, metadata, senders, None),
            Arrived::Core(server) => {
                server.add_senders(senders);
                server
            }
        };
        let ctx = ServerContext::new(server.clone(), self.method, self.deadline);
        (server, ctx)
    }
}

/// Type-erased handler of one method.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Starts serving an incoming call: the future that serves it goes to `spawn`.
    /// Must not panic.
    fn handle(&self, call: IncomingCall, spawn: Spawn<'_>);
}

/// Where a handler's future runs: the completion-queue thread that received the call, or
/// the executor the user gave the server.
pub(crate) enum Spawn<'a> {
    /// A task on this queue (the future is stored in the task, unboxed).
    Queue(&'a Arc<crate::cq::CompletionQueue>),
    /// The user's spawner, which takes boxed futures.
    User(&'a (dyn Fn(BoxFuture) + Send + Sync)),
}

impl Spawn<'_> {
    /// Runs `future` where this says.
    pub(crate) fn spawn<F: Future<Output = ()> + Send + 'static>(self, future: F) {
        match self {
            Spawn::Queue(cq) => crate::task::spawn(cq.clone(), future),
            Spawn::User(spawn) => {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| spawn(Box::pin(future)))) {
                    log::error!("the handler spawner panicked: {}", panic_message(&*panic));
                }
            }
        }
    }
}

pub(crate) struct UnaryHandler<Req, Resp, C, F> {
    pub(crate) f: F,
    pub(crate) _types: PhantomData<fn(Req, C) -> Resp>,
}

impl<Req, Resp, C, F, Fut> Handler for UnaryHandler<Req, Resp, C, F>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    C: Codec<Req> + Codec<Resp>,
    F: Fn(Req, ServerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    fn handle(&self, mut incoming: IncomingCall, spawn: Spawn<'_>) {
        let request = incoming.decode_payload::<Req, C>();
        let limits = incoming.limits;
        let (server, ctx) = incoming.into_core(0);
        match request {
            Ok(request) => serve_response::<Resp, C, _>(server, limits, spawn, || (self.f)(request, ctx)),
            Err(status) => server.send_final(None, &status),
        }
    }
}

/// Runs a handler that answers with one message (unary, client streaming): `call` invokes
/// the user's function; a panic there or in the future it returns answers `INTERNAL`.
pub(crate) fn serve_response<Resp, C, Fut>(
    server: Arc<ServerCallCore>,
    limits: MessageLimits,
    spawn: Spawn<'_>,
    call: impl FnOnce() -> Fut,
) where
    Resp: Send + 'static,
    C: Codec<Resp>,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(future) => spawn.spawn(async move {
            let outcome = AssertUnwindSafe(future).catch_unwind().await;
            send_response::<Resp, C>(&server, limits, outcome);
        }),
        Err(panic) => server.send_final(None, &panic_status(&*panic)),
    }
}

/// Runs a handler that streams its responses: `call` invokes the user's function; a panic
/// there or in the future it returns ends the call with `INTERNAL`. The status goes out
/// after the last write of the handler's sink, wherever that sink went (`call/state.rs`).
pub(crate) fn serve_stream<Fut>(server: Arc<ServerCallCore>, spawn: Spawn<'_>, call: impl FnOnce() -> Fut)
where
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(future) => spawn.spawn(async move {
            let outcome = AssertUnwindSafe(future).catch_unwind().await;
            server.handler_done(match outcome {
                Ok(Ok(())) => Status::ok(),
                Ok(Err(status)) => status,
                Err(panic) => panic_status(&*panic),
            });
        }),
        Err(panic) => server.handler_done(panic_status(&*panic)),
    }
}

/// The status a panicking handler answers with.
pub(crate) fn panic_status(payload: &(dyn std::any::Any + Send)) -> Status {
    let msg = panic_message(payload);
    log::error!("a gRPC handler panicked: {msg}");
    Status::internal(format!("the handler panicked: {msg}"))
}

/// Sends the outcome of a handler that answers with one message (unary, client streaming).
fn send_response<Resp, C: Codec<Resp>>(
    server: &Arc<ServerCallCore>,
    limits: MessageLimits,
    outcome: std::thread::Result<Result<Resp, Status>>,
) {
    match outcome {
        Ok(Ok(resp)) => match ByteBuffer::encode::<Resp, C>(&resp) {
            Ok(buf) => match limits.check_send_buffer(&buf) {
                Ok(()) => server.send_final(Some(buf), &crate::status::OK),
                Err(status) => server.send_final(None, &status),
            },
            Err(e) => server.send_final(None, &Status::internal(format!("failed to encode the response: {e}"))),
        },
        Ok(Err(status)) => server.send_final(None, &status),
        Err(panic) => server.send_final(None, &panic_status(&*panic)),
    }
}

/// Where an intercepted call's handler will be spawned, owned (the chain runs first, in a
/// task of its own).
#[derive(Clone)]
pub(crate) enum OwnedSpawn {
    Queue(Arc<crate::cq::CompletionQueue>),
    User(Arc<dyn Fn(BoxFuture) + Send + Sync>),
}

impl OwnedSpawn {
    fn as_spawn(&self) -> Spawn<'_> {
        match self {
            OwnedSpawn::Queue(cq) => Spawn::Queue(cq),
            OwnedSpawn::User(f) => Spawn::User(&**f),
        }
    }
}

/// Answers an arrived call with `status` without running its handler: a refusal made
/// before the interceptor chain (the deadline policy). The chain's start hooks do not run,
/// but its end hooks see the call end with `status`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refuse(
    chain: Option<&ServerChain>,
    index: usize,
    kind: MethodKind,
    call: Call,
    metadata: RecvMetadata,
    method: &Arc<str>,
    deadline: grpcore_sys::gpr_timespec,
    status: &Status,
) {
    let observer = chain.map(|chain| {
        let observer = ChainObserver::server(chain.clone(), method.clone(), index, kind, crate::time::to_instant(deadline), deadline);
        Box::new(observer) as Box<dyn crate::call::core::CallObserver>
    });
    ServerCallCore::new(call, metadata, 0, observer).send_final(None, status);
}

/// Serves a call of a method with interceptors: the call's core is made first (with an
/// observer that reports its end to the chain, and a watch that sees a cancellation
/// whenever it comes), the chain's start hooks run, and then the handler, or, if one
/// refused, the refusal is the call's status (the request is never decoded).
pub(crate) fn serve_intercepted(
    chain: &ServerChain,
    index: usize,
    kind: MethodKind,
    handler: Arc<dyn Handler>,
    incoming: IncomingCall,
    spawn: OwnedSpawn,
) {
    let Arrived::Call { call, metadata } = incoming.arrived else {
        return handler.handle(incoming, spawn.as_spawn());
    };
    let deadline = crate::time::to_instant(incoming.deadline);
    let observer = ChainObserver::server(chain.clone(), incoming.method.clone(), index, kind, deadline, incoming.deadline);
    let server = ServerCallCore::new(call, metadata, 0, Some(Box::new(observer)));
    if incoming.payload.is_some() {
        if let Some(o) = server.core.observer() {
            o.message_received();
        }
    }
    let mut info = ServerCallInfo::new(server.clone(), incoming.method.clone(), index, kind, deadline);
    let incoming = IncomingCall {
        arrived: Arrived::Core(server.clone()),
        ..incoming
    };
    let chain = chain.clone();
    let later = spawn.clone();
    let mut run = Box::pin(async move {
        let outcome = run_server_chain(&chain, &mut info).await;
        let (metadata, extensions) = info.into_parts();
        if let Some(o) = server.core.observer() {
            o.set_extensions(extensions);
        }
        match outcome {
            Ok(()) => {
                if let Some(metadata) = metadata {
                    server.set_request_metadata(metadata);
                }
                drop(server);
                handler.handle(incoming, later.as_spawn());
            }
            Err(status) => server.send_final(None, &status),
        }
    });
    // Most chains finish without waiting: run them here, and spawn a task only for one that
    // waits (the task's first poll then registers its real waker).
    let waker = futures_util::task::noop_waker();
    if run.as_mut().poll(&mut std::task::Context::from_waker(&waker)).is_pending() {
        spawn.as_spawn().spawn(run);
    }
}
