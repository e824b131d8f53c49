//! Services: named sets of method handlers, built by hand or by generated code.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use grpcore_sys as ffi;

use super::context::{FinalBuffers, ServerCallShared, ServerContext};
use super::limits::MessageLimits;
use crate::buffer::ByteBuffer;
use crate::call::raw::{op, OpList, OwnedSlice, RecvMetadata, SendMetadata};
use crate::call::Call;
use crate::cq::Tag;
use crate::codec::Codec;
use crate::error::Error;
use crate::method::{Method, MethodKind};
use crate::status::{Code, Status, DETAILS_KEY};
use crate::task::panic_message;

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A call that arrived for a registered method.
pub(crate) struct IncomingCall {
    pub(crate) call: Call,
    pub(crate) method: Arc<str>,
    pub(crate) deadline: grpcore_sys::gpr_timespec,
    /// The request metadata as the core received it (converted on first use).
    pub(crate) metadata: RecvMetadata,
    pub(crate) payload: Option<ByteBuffer>,
    /// The message sizes to check here (lean mode).
    pub(crate) limits: MessageLimits,
}

impl IncomingCall {
    /// The request read with the call (unary and server-streaming methods), size-checked
    /// and decoded.
    pub(crate) fn decode_payload<Req, C: Codec<Req>>(&mut self) -> Result<Req, Status> {
        match self.payload.take() {
            None => Err(Status::internal("the client sent no request message")),
            Some(buf) => self.limits.decode::<Req, C>(&buf, "the request", &self.method),
        }
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

/// One method of a service.
pub(crate) struct MethodEntry {
    pub(crate) path: Arc<str>,
    pub(crate) kind: MethodKind,
    pub(crate) handler: Arc<dyn Handler>,
}

/// A set of method handlers, ready to add to a [`ServerBuilder`](crate::ServerBuilder).
pub struct Service {
    pub(crate) name: String,
    pub(crate) methods: Vec<MethodEntry>,
    pub(crate) error: Option<Error>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("methods", &self.methods.iter().map(|m| &*m.path).collect::<Vec<_>>())
            .finish()
    }
}

/// Builds a [`Service`] from handlers.
///
/// ```
/// use grpcore::{BytesCodec, Method, ServiceBuilder, Status};
/// const ECHO: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/demo.Echo/Echo");
/// let service = ServiceBuilder::new("demo.Echo")
///     .add_unary(&ECHO, |request: Vec<u8>, _ctx| async move { Ok::<_, Status>(request) })
///     .build();
/// ```
pub struct ServiceBuilder {
    service: Service,
}

impl ServiceBuilder {
    /// A service named `name` (`package.Service`).
    pub fn new(name: impl Into<String>) -> ServiceBuilder {
        ServiceBuilder {
            service: Service {
                name: name.into(),
                methods: Vec::new(),
                error: None,
            },
        }
    }

    /// Serves a unary method with an async handler.
    ///
    /// The handler gets the decoded request and the call's [`ServerContext`] and returns the
    /// response or a [`Status`]. A handler that panics answers `INTERNAL`; the server keeps
    /// serving.
    pub fn add_unary<Req, Resp, C, F, Fut>(self, method: &Method<Req, Resp, C>, handler: F) -> ServiceBuilder
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        C: Codec<Req> + Codec<Resp>,
        F: Fn(Req, ServerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    {
        let handler = UnaryHandler::<Req, Resp, C, F> {
            f: handler,
            _types: PhantomData,
        };
        self.add_kind(method, MethodKind::Unary, Arc::new(handler))
    }

    /// Serves a client-streaming method: the handler reads a [`RequestStream`] and returns
    /// one response or a [`Status`].
    ///
    /// [`RequestStream`]: crate::RequestStream
    pub fn add_client_streaming<Req, Resp, C, F, Fut>(self, method: &Method<Req, Resp, C>, handler: F) -> ServiceBuilder
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        C: Codec<Req> + Codec<Resp>,
        F: Fn(crate::RequestStream<Req, C>, ServerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    {
        let h = super::streaming::ClientStreamingHandler::<Req, Resp, C, F> {
            f: handler,
            _types: PhantomData,
        };
        self.add_kind(method, MethodKind::ClientStreaming, Arc::new(h))
    }

    /// Serves a server-streaming method: the handler gets the request and a [`ServerSink`]
    /// to send responses into; the status goes out when it returns.
    ///
    /// [`ServerSink`]: crate::ServerSink
    pub fn add_server_streaming<Req, Resp, C, F, Fut>(self, method: &Method<Req, Resp, C>, handler: F) -> ServiceBuilder
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        C: Codec<Req> + Codec<Resp>,
        F: Fn(Req, crate::ServerSink<Resp, C>, ServerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Status>> + Send + 'static,
    {
        let h = super::streaming::ServerStreamingHandler::<Req, Resp, C, F> {
            f: handler,
            _types: PhantomData,
        };
        self.add_kind(method, MethodKind::ServerStreaming, Arc::new(h))
    }

    /// Serves a bidirectional-streaming method: requests from a [`RequestStream`],
    /// responses into a [`ServerSink`], independently; the status goes out when it returns.
    ///
    /// [`RequestStream`]: crate::RequestStream
    /// [`ServerSink`]: crate::ServerSink
    pub fn add_duplex<Req, Resp, C, F, Fut>(self, method: &Method<Req, Resp, C>, handler: F) -> ServiceBuilder
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        C: Codec<Req> + Codec<Resp>,
        F: Fn(crate::RequestStream<Req, C>, crate::ServerSink<Resp, C>, ServerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Status>> + Send + 'static,
    {
        let h = super::streaming::DuplexHandler::<Req, Resp, C, F> {
            f: handler,
            _types: PhantomData,
        };
        self.add_kind(method, MethodKind::Duplex, Arc::new(h))
    }

    fn add_kind<Req, Resp, C>(mut self, method: &Method<Req, Resp, C>, kind: MethodKind, handler: Arc<dyn Handler>) -> ServiceBuilder {
        if method.kind() != kind {
            self.service.error.get_or_insert(Error::Config(format!(
                "{} is a {:?} method, registered as {kind:?}",
                method.path(),
                method.kind()
            )));
            return self;
        }
        self.add(method.path(), kind, handler)
    }

    fn add(mut self, path: &str, kind: MethodKind, handler: Arc<dyn Handler>) -> ServiceBuilder {
        let expected_prefix = format!("/{}/", self.service.name);
        if !path.starts_with(&expected_prefix) || path.len() == expected_prefix.len() {
            self.service.error.get_or_insert(Error::Config(format!(
                "method path {path:?} is not of the form /{}/Method",
                self.service.name
            )));
        }
        self.service.methods.push(MethodEntry {
            path: path.into(),
            kind,
            handler,
        });
        self
    }

    /// The finished service.
    pub fn build(self) -> Service {
        self.service
    }
}

struct UnaryHandler<Req, Resp, C, F> {
    f: F,
    _types: PhantomData<fn(Req, C) -> Resp>,
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
        let shared = ServerCallShared::new(incoming.call, incoming.metadata, incoming.limits);
        let request = match request {
            Ok(r) => r,
            Err(status) => {
                send_final(&shared, None, &status);
                return;
            }
        };
        let ctx = ServerContext::new(shared.clone(), incoming.method, incoming.deadline);
        serve_response::<Resp, C, _>(shared, spawn, || (self.f)(request, ctx))
    }
}

/// Runs a handler that answers with one message (unary, client streaming): `call` invokes
/// the user's function; a panic there or in the future it returns answers `INTERNAL`.
pub(crate) fn serve_response<Resp, C, Fut>(shared: Arc<ServerCallShared>, spawn: Spawn<'_>, call: impl FnOnce() -> Fut)
where
    Resp: Send + 'static,
    C: Codec<Resp>,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(future) => spawn.spawn(async move {
            let outcome = AssertUnwindSafe(future).catch_unwind().await;
            send_response::<Resp, C>(&shared, outcome);
        }),
        Err(panic) => send_final(&shared, None, &panic_status(&*panic)),
    }
}

/// The status a panicking handler answers with.
pub(crate) fn panic_status(payload: &(dyn std::any::Any + Send)) -> Status {
    let msg = panic_message(payload);
    log::error!("a gRPC handler panicked: {msg}");
    Status::internal(format!("the handler panicked: {msg}"))
}

/// Sends the outcome of a handler that answers with one message (unary, client streaming).
pub(crate) fn send_response<Resp, C: Codec<Resp>>(
    shared: &Arc<ServerCallShared>,
    outcome: std::thread::Result<Result<Resp, Status>>,
) {
    match outcome {
        Ok(Ok(resp)) => {
            match ByteBuffer::encode::<Resp, C>(&resp) {
                Ok(buf) => match shared.limits.check_send_buffer(&buf) {
                    Ok(()) => send_final(shared, Some(buf), &crate::status::OK),
                    Err(status) => send_final(shared, None, &status),
                },
                Err(e) => send_final(shared, None, &Status::internal(format!("failed to encode the response: {e}"))),
            }
        }
        Ok(Err(status)) => send_final(shared, None, &status),
        Err(panic) => send_final(shared, None, &panic_status(&*panic)),
    }
}

/// Sends the end of a server call in one batch: initial metadata (unless already sent),
/// the message (if any), the status with trailers, and the close. Fire and forget: the
/// batch's tag keeps everything alive until the core is done. A streaming handler's
/// writes must be complete first.
pub(crate) fn send_final(shared: &Arc<ServerCallShared>, message: Option<ByteBuffer>, status: &Status) {
    let headers_sent = {
        let mut out = shared.output.lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::replace(&mut out.finished, true) {
            log::debug!("a second final batch for one call was ignored");
            return;
        }
        std::mem::replace(&mut out.headers_sent, true)
    };
    let (initial, trailers) = {
        let mut reply = shared.reply.lock().unwrap_or_else(|e| e.into_inner());
        let initial = if headers_sent { SendMetadata::empty() } else { ServerCallShared::initial_of(&reply) };
        (initial, std::mem::take(&mut reply.trailing))
    };
    let details = status.details();
    let close = shared.claim_close_op();
    let carries_close = close.is_some();
    let code = status.code();
    let buffers = FinalBuffers {
        initial,
        message,
        trailers: if trailers.is_empty() && details.is_empty() {
            SendMetadata::empty()
        } else {
            SendMetadata::new(&trailers, (!details.is_empty()).then_some((DETAILS_KEY, details)))
        },
        details: OwnedSlice::copy_of(status.message().as_bytes()),
        carries_close,
    };
    // SAFETY: we just moved `finished` from false to true under the lock, so this is the only
    // writer of `final_batch`, and no batch using it has started yet. The ops point into the
    // buffers (or into `shared`), which the tag (one reference to `shared`) keeps alive until
    // the event, when `ServerCallShared::on_event` drops them.
    let result = unsafe {
        let slot = &mut *shared.final_batch.get();
        let s = slot.insert(buffers);
        let mut ops = OpList::<4>::new();
        if !headers_sent {
            ops.push(op::send_initial_metadata(&mut s.initial, 0));
        }
        if let Some(m) = &s.message {
            ops.push(op::send_message(m, 0));
        }
        ops.push(op::send_status_from_server(&mut s.trailers, code.as_i32() as ffi::grpc_status_code, &mut s.details));
        if let Some(close) = close {
            ops.push(close);
        }
        shared.call.start_batch(ops.as_slice(), Tag::from_arc(shared))
    };
    if let Err(e) = result {
        log::debug!("could not send the reply: {e}");
        shared.call.cancel_with_status(Code::Internal, "the server could not send its reply");
        if carries_close {
            shared.finish_close(false);
        }
    }
}
