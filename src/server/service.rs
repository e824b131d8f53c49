//! Services: named sets of method handlers, built by hand or by generated code.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use super::context::ServerContext;
use super::handler::{Handler, UnaryHandler};
use super::streaming::{ClientStreamingHandler, DuplexHandler, ServerStreamingHandler};
use crate::codec::Codec;
use crate::deadline::DeadlinePolicy;
use crate::error::{ConfigErrorKind, Error};
use crate::interceptor::{DynServerInterceptor, ServerInterceptor};
use crate::method::{Method, MethodKind};
use crate::status::Status;

/// One method of a service.
pub(crate) struct MethodEntry {
    pub(crate) path: Arc<str>,
    pub(crate) kind: MethodKind,
    pub(crate) handler: Arc<dyn Handler>,
    /// The policy of the method descriptor it was registered with.
    pub(crate) deadline: Option<DeadlinePolicy>,
}

/// A set of method handlers, ready to add to a [`ServerBuilder`](crate::ServerBuilder).
pub struct Service {
    pub(crate) name: String,
    pub(crate) methods: Vec<MethodEntry>,
    /// The service's interceptors, outermost first (after the server's).
    pub(crate) interceptors: Vec<Arc<dyn DynServerInterceptor>>,
    pub(crate) error: Option<Error>,
    /// Serialized `FileDescriptorProto`s describing the service (generated services carry
    /// them; reflection serves them).
    pub(crate) file_descriptors: Vec<bytes::Bytes>,
    /// Run when a server serving this service starts to shut down (see [`Service::on_shutdown`]).
    pub(crate) shutdown_hooks: Vec<ShutdownHook>,
    /// Run once its server refuses new calls (see [`Service::on_refusing_calls`]).
    pub(crate) refusing_hooks: Vec<RefusingHook>,
    /// The status that refuses a call without a deadline (`None`: `INVALID_ARGUMENT`).
    pub(crate) missing_deadline: Option<Status>,
}

/// A hook of [`Service::on_shutdown`]; its argument is the time by which the server stops
/// waiting for it.
pub(crate) type ShutdownHook = Box<dyn FnOnce(Instant) + Send>;

/// A hook of [`Service::on_refusing_calls`].
pub(crate) type RefusingHook = Box<dyn FnOnce() + Send>;

impl Service {
    /// The status this service's methods refuse a call with when it comes without a
    /// deadline and the method's [`DeadlinePolicy`] requires one (default:
    /// `INVALID_ARGUMENT`, with a message naming the method). Works on generated services:
    /// `greeter_grpc::service(imp).missing_deadline_status(..)`.
    ///
    /// ```
    /// use grpcore::{Code, ServiceBuilder, Status};
    /// let service = ServiceBuilder::new("demo.Echo")
    ///     .build()
    ///     .missing_deadline_status(Status::new(Code::FailedPrecondition, "set a timeout"));
    /// ```
    pub fn missing_deadline_status(mut self, status: Status) -> Service {
        self.missing_deadline = Some(status);
        self
    }

    /// Adds an interceptor that sees every call of this service, after the server's
    /// interceptors and this service's earlier ones (see [`interceptor`](crate::interceptor)).
    /// Works on generated services too: `greeter_grpc::service(imp).intercept(..)`.
    pub fn intercept(mut self, interceptor: impl ServerInterceptor) -> Service {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// Runs `hook` once, when a server serving this service begins to shut down, before it
    /// stops accepting calls: the lame-duck phase, in which a service can tell the world it
    /// is going away while its server still answers (the [health service](crate::health)
    /// turns every status `NOT_SERVING` here).
    ///
    /// On [`Server::shutdown`](crate::Server::shutdown) the hooks of every service run one
    /// after another on the server's shutdown thread, never on a completion-queue thread,
    /// so a hook may block; each gets the instant by which the server stops waiting for
    /// the hooks (the shutdown's grace period from its start) and should return by then.
    /// When a [`Server`](crate::Server) is dropped without `shutdown`, the hooks run on the
    /// dropping thread with a deadline already past: they should do their work and not
    /// wait. A panicking hook is logged and the shutdown goes on.
    pub fn on_shutdown(mut self, hook: impl FnOnce(Instant) + Send + 'static) -> Service {
        self.shutdown_hooks.push(Box::new(hook));
        self
    }

    /// Runs `hook` once, when a server serving this service has stopped accepting calls (its
    /// listeners are closed, after the [lame-duck phase](Self::on_shutdown)) while its calls
    /// in flight still have their grace period: a service whose calls never end by
    /// themselves (subscriptions, the health service's `Watch`) ends them here, so that a
    /// graceful shutdown need not wait its whole grace period for them. Runs on the
    /// thread that shuts the server down; it must not block. A panicking hook is logged.
    pub fn on_refusing_calls(mut self, hook: impl FnOnce() + Send + 'static) -> Service {
        self.refusing_hooks.push(Box::new(hook));
        self
    }
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
                interceptors: Vec::new(),
                error: None,
                file_descriptors: Vec::new(),
                shutdown_hooks: Vec::new(),
                refusing_hooks: Vec::new(),
                missing_deadline: None,
            },
        }
    }

    /// Serves a unary method with an async handler.
    ///
    /// Here and in the other `add_` methods, a method descriptor with a [`DeadlinePolicy`]
    /// makes the server check each call's deadline against it before the handler runs.
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
        F: Fn(crate::RequestStream<Req>, ServerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    {
        let h = ClientStreamingHandler::<Req, Resp, C, F> {
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
        F: Fn(Req, crate::ServerSink<Resp>, ServerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Status>> + Send + 'static,
    {
        let h = ServerStreamingHandler::<Req, Resp, C, F> {
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
        F: Fn(crate::RequestStream<Req>, crate::ServerSink<Resp>, ServerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Status>> + Send + 'static,
    {
        let h = DuplexHandler::<Req, Resp, C, F> {
            f: handler,
            _types: PhantomData,
        };
        self.add_kind(method, MethodKind::Duplex, Arc::new(h))
    }

    fn add_kind<Req, Resp, C>(mut self, method: &Method<Req, Resp, C>, kind: MethodKind, handler: Arc<dyn Handler>) -> ServiceBuilder {
        if method.kind() != kind {
            self.service.error.get_or_insert(Error::config_kind(ConfigErrorKind::Method, format!(
                "{} is a {:?} method, registered as {kind:?}",
                method.path(),
                method.kind()
            )));
            return self;
        }
        self.add(method.path(), kind, handler, method.deadline_policy().copied())
    }

    fn add(mut self, path: &str, kind: MethodKind, handler: Arc<dyn Handler>, deadline: Option<DeadlinePolicy>) -> ServiceBuilder {
        let expected_prefix = format!("/{}/", self.service.name);
        if !path.starts_with(&expected_prefix) || path.len() == expected_prefix.len() {
            self.service.error.get_or_insert(Error::config_kind(ConfigErrorKind::Method, format!(
                "method path {path:?} is not of the form /{}/Method",
                self.service.name
            )));
        }
        self.service.methods.push(MethodEntry {
            path: path.into(),
            kind,
            handler,
            deadline,
        });
        self
    }

    /// Adds an interceptor for every call of this service (see [`Service::intercept`]).
    pub fn intercept(mut self, interceptor: impl ServerInterceptor) -> ServiceBuilder {
        self.service = self.service.intercept(interceptor);
        self
    }

    /// The serialized `FileDescriptorProto`s that describe the service: the file declaring
    /// it and every file that one imports (server reflection serves them). Generated
    /// services call this with their module's `FILE_DESCRIPTORS`; a service built by hand
    /// has none unless given here. Calling it again adds to the list.
    pub fn file_descriptors(mut self, files: &'static [&'static [u8]]) -> ServiceBuilder {
        self.service.file_descriptors.extend(files.iter().map(|f| bytes::Bytes::from_static(f)));
        self
    }

    /// Runs `hook` when a server serving this service begins to shut down (see
    /// [`Service::on_shutdown`]).
    pub fn on_shutdown(mut self, hook: impl FnOnce(Instant) + Send + 'static) -> ServiceBuilder {
        self.service = self.service.on_shutdown(hook);
        self
    }

    /// Runs `hook` when a server serving this service has stopped accepting calls (see
    /// [`Service::on_refusing_calls`]).
    pub fn on_refusing_calls(mut self, hook: impl FnOnce() + Send + 'static) -> ServiceBuilder {
        self.service = self.service.on_refusing_calls(hook);
        self
    }

    /// The finished service.
    pub fn build(self) -> Service {
        self.service
    }
}

