//! Interceptors: code that sees every call of a server, a service or a channel before it
//! runs and after it ends.
//!
//! A [`ServerInterceptor`] sees an arrived call's method, kind, request metadata, deadline,
//! peer and auth context before the request is decoded and the handler runs; it may change
//! the metadata the handler sees, or refuse the call with a [`Status`] (sent in one batch;
//! the handler never runs). A [`ClientInterceptor`] sees a call before it is sent and may
//! change its request metadata or refuse it (the call then fails without reaching the
//! network). Both observe the end of every call ([`CallEnd`]): its status, how long it took
//! and how many messages went each way, for all four kinds of call, including calls
//! cancelled by the peer and calls whose deadline expired.
//!
//! Order: on a server, the server's interceptors run first (outermost), then the service's,
//! each in the order they were added; [`on_end`](ServerInterceptor::on_end) runs in the
//! reverse order (innermost first). A refusal stops the chain: the interceptors after it do
//! not run, and every interceptor still sees the call's end. The chain of each method is
//! built once, when the server is built; a server or channel with no interceptor takes the
//! same path as before interceptors existed.
//!
//! ```
//! use grpcore::{ServerCallInfo, ServerInterceptor, Status};
//!
//! /// Refuses calls without an `authorization` header.
//! struct RequireAuth;
//!
//! impl ServerInterceptor for RequireAuth {
//!     async fn on_start(&self, call: &mut ServerCallInfo) -> Result<(), Status> {
//!         if call.metadata().get("authorization").is_none() {
//!             return Err(Status::new(grpcore::Code::Unauthenticated, "no credentials"));
//!         }
//!         Ok(())
//!     }
//! }
//! # let env = grpcore::Environment::new(1);
//! let builder = grpcore::ServerBuilder::new(&env).intercept(RequireAuth);
//! ```

use std::any::{Any, TypeId};
use std::cell::OnceCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::call::core::{CallObserver, ServerCallCore};
use crate::credentials::AuthContext;
use crate::metadata::Metadata;
use crate::method::MethodKind;
use crate::status::{Code, Status};

/// Values of any type attached to one call, one per type: what an interceptor keeps from a
/// call's start to its end (a start time, a span), or hands to the handler
/// ([`ServerContext::extension`](crate::ServerContext::extension)) and to the calls the
/// handler makes on its client's behalf ([`ClientCallInfo::parent_extension`]).
#[derive(Default)]
pub struct Extensions {
    /// Allocated with the first value: most calls attach none.
    map: Option<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

/// No values (what `CallEnd::extensions` lends when the interceptors attached none).
static NO_EXTENSIONS: Extensions = Extensions { map: None };

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extensions({} values)", self.len())
    }
}

impl Extensions {
    /// Attaches `value`, returning the value of the same type it replaces.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        self.map
            .get_or_insert_with(HashMap::new)
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast().ok().map(|b| *b))
    }

    /// The value of type `T`, if one is attached.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.map.as_ref()?.get(&TypeId::of::<T>()).and_then(|b| b.downcast_ref())
    }

    /// The value of type `T`, mutably.
    pub fn get_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        self.map.as_mut()?.get_mut(&TypeId::of::<T>()).and_then(|b| b.downcast_mut())
    }

    /// Detaches the value of type `T`.
    pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        self.map.as_mut()?.remove(&TypeId::of::<T>()).and_then(|b| b.downcast().ok().map(|b| *b))
    }

    /// How many values are attached.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, HashMap::len)
    }

    /// True when no value is attached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A server-side interceptor. Implement either method, or both (see the [module
/// docs](self)).
pub trait ServerInterceptor: Send + Sync + 'static {
    /// Runs once per method when the server is built, before any call: `index` is the
    /// method's number in this server (the same as [`ServerCallInfo::method_index`] and
    /// [`CallEnd::method_index`] of its calls), so per-method state (metric handles, label
    /// sets, span names) is made here and found by index per call, not by name.
    fn on_register(&self, index: usize, method: &str, kind: MethodKind) {
        let _ = (index, method, kind);
    }

    /// Runs before the handler (and before the request is decoded). `Err` refuses the call
    /// with that status.
    fn on_start(&self, call: &mut ServerCallInfo) -> impl Future<Output = Result<(), Status>> + Send {
        let _ = call;
        std::future::ready(Ok(()))
    }

    /// Runs once when the call has ended, however it ended.
    fn on_end(&self, end: &CallEnd) {
        let _ = end;
    }
}

/// A client-side interceptor. Implement either method, or both.
///
/// The start hook is asynchronous, like the server's: it may await a token, a rate
/// limiter or a lookup before the call goes out. The hooks run when the call is made, in
/// the thread that makes it. When they all finish without waiting (the usual case) the
/// call starts there and then; when one waits, the rest of the chain, and then the call's
/// start, run when the call's handle (the [`UnaryCall`](crate::UnaryCall) future, the sink
/// or the stream of a streaming call) is polled, in the task that polls it: a hook may
/// await whatever that task's runtime offers (make the call inside that runtime, so the
/// hook's first steps run there too). Dropping or cancelling the call while a hook waits
/// drops the hook's future and sends nothing. The call's deadline counts from when the
/// call was made, not from when the hooks finished.
///
/// ```
/// use grpcore::{ClientCallInfo, ClientInterceptor, Status};
///
/// /// Adds a bearer token, fetched (here: made up) before each call.
/// struct Bearer;
///
/// impl ClientInterceptor for Bearer {
///     async fn on_start(&self, call: &mut ClientCallInfo) -> Result<(), Status> {
///         let token = async { "secret".to_string() }.await;
///         call.metadata_mut()
///             .insert("authorization", &format!("Bearer {token}"))
///             .map_err(|e| Status::internal(e.to_string()))?;
///         Ok(())
///     }
/// }
/// # let env = grpcore::Environment::new(1);
/// let channel = grpcore::ChannelBuilder::new(&env).intercept(Bearer).connect("127.0.0.1:50051");
/// ```
pub trait ClientInterceptor: Send + Sync + 'static {
    /// Runs before the call is sent. `Err` fails the call with that status without sending
    /// anything.
    fn on_start(&self, call: &mut ClientCallInfo) -> impl Future<Output = Result<(), Status>> + Send {
        let _ = call;
        std::future::ready(Ok(()))
    }

    /// Runs once when the call has ended, however it ended.
    fn on_end(&self, end: &CallEnd) {
        let _ = end;
    }
}

/// An arrived call as a [`ServerInterceptor`] sees it.
pub struct ServerCallInfo {
    server: Arc<ServerCallCore>,
    method: Arc<str>,
    index: usize,
    kind: MethodKind,
    deadline: Option<Instant>,
    /// Copied out of the core's array when an interceptor first looks.
    metadata: OnceCell<Metadata>,
    extensions: Extensions,
}

impl std::fmt::Debug for ServerCallInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCallInfo")
            .field("method", &self.method)
            .field("kind", &self.kind)
            .field("deadline", &self.deadline)
            .field("metadata", &self.metadata.get())
            .finish_non_exhaustive()
    }
}

impl ServerCallInfo {
    /// The full method path, `/package.Service/Method`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The method's number in this server (see [`ServerInterceptor::on_register`]).
    pub fn method_index(&self) -> usize {
        self.index
    }

    /// The kind of the method.
    pub fn kind(&self) -> MethodKind {
        self.kind
    }

    /// The request metadata (headers) the client sent.
    pub fn metadata(&self) -> &Metadata {
        self.metadata.get_or_init(|| self.server.request_metadata_copy())
    }

    /// The request metadata, to change what the handler (and the next interceptors) see.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        self.metadata();
        self.metadata.get_mut().expect("initialised above")
    }

    /// The call's deadline, if the client set one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The client's address as the core names it, e.g. `ipv4:127.0.0.1:43210` (see
    /// [`ServerContext::peer`](crate::ServerContext::peer) for connections grpcore accepted).
    pub fn peer(&self) -> String {
        crate::socket::display_peer(self.server.core.peer())
    }

    /// The credentials of a client on a unix socket grpcore accepted (see
    /// [`ServerContext::peer_credentials`](crate::ServerContext::peer_credentials)).
    pub fn peer_credentials(&self) -> Option<crate::PeerCredentials> {
        crate::socket::credentials_of(&self.server.core.peer())
    }

    /// How the connection is secured and who the client is (see [`AuthContext`]).
    pub fn auth_context(&self) -> AuthContext {
        AuthContext::of_call(&self.server.core.call)
    }

    /// Values attached to this call: the handler reads them with
    /// [`ServerContext::extension`](crate::ServerContext::extension), `on_end` with
    /// [`CallEnd::extensions`].
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Values attached to this call, to attach more.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }
}

/// A call about to be sent, as a [`ClientInterceptor`] sees it.
pub struct ClientCallInfo {
    pub(crate) method: Arc<str>,
    pub(crate) kind: MethodKind,
    pub(crate) target: Arc<str>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) metadata: Metadata,
    pub(crate) extensions: Extensions,
    /// The server call this call is a child of ([`CallOptions::parent`](crate::CallOptions::parent)).
    pub(crate) parent: Option<Arc<ServerCallCore>>,
}

impl std::fmt::Debug for ClientCallInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCallInfo")
            .field("method", &self.method)
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("deadline", &self.deadline)
            .field("metadata", &self.metadata)
            .field("has_parent", &self.parent.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientCallInfo {
    /// The full method path, `/package.Service/Method`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The kind of the method.
    pub fn kind(&self) -> MethodKind {
        self.kind
    }

    /// The channel's target.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The call's deadline, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The request metadata the call will send.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The request metadata, to add or change entries.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// Values attached to this call, read back in `on_end` ([`CallEnd::extensions`]).
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    /// A copy of the value of type `T` that the server interceptors of this call's parent
    /// attached to it (when the call was made with
    /// [`CallOptions::parent`](crate::CallOptions::parent)): how a trace crosses from a
    /// handler's call to the calls it makes.
    pub fn parent_extension<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.parent.as_ref().and_then(|p| p.extension::<T>())
    }
}

/// How a call ended, as the interceptors' `on_end` sees it.
#[derive(Clone, Debug)]
pub struct CallEnd {
    method: Arc<str>,
    /// The method's number in its server (`usize::MAX` on a client).
    index: usize,
    kind: MethodKind,
    code: Code,
    message: String,
    elapsed: Duration,
    sent: u64,
    received: u64,
    /// `None` when the interceptors attached nothing (no allocation per call).
    extensions: Option<Arc<Extensions>>,
}

impl CallEnd {
    /// The full method path.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// On a server, the method's number in it (see [`ServerInterceptor::on_register`]);
    /// `None` on a client.
    pub fn method_index(&self) -> Option<usize> {
        (self.index != usize::MAX).then_some(self.index)
    }

    /// The kind of the method.
    pub fn kind(&self) -> MethodKind {
        self.kind
    }

    /// The call's status code: the one sent (server) or received (client); `CANCELLED` for
    /// a call cancelled by the peer or dropped unfinished, `DEADLINE_EXCEEDED` for one whose
    /// deadline expired first (on a server, a cancellation arriving within 10 ms of the
    /// deadline counts as its expiry: a client whose deadline fires cancels at that moment).
    pub fn code(&self) -> Code {
        self.code
    }

    /// The status message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Time from the call's arrival (server) or start (client) to its end.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Messages this side sent (responses on a server, requests on a client).
    pub fn messages_sent(&self) -> u64 {
        self.sent
    }

    /// Messages this side received.
    pub fn messages_received(&self) -> u64 {
        self.received
    }

    /// The values the interceptors attached to the call.
    pub fn extensions(&self) -> &Extensions {
        self.extensions.as_deref().unwrap_or(&NO_EXTENSIONS)
    }
}

/// A server interceptor behind a pointer: the boxed-future form of [`ServerInterceptor`].
pub(crate) trait DynServerInterceptor: Send + Sync + 'static {
    fn register(&self, index: usize, method: &str, kind: MethodKind);
    fn start<'a>(&'a self, call: &'a mut ServerCallInfo) -> Pin<Box<dyn Future<Output = Result<(), Status>> + Send + 'a>>;
    fn end(&self, end: &CallEnd);
}

impl<T: ServerInterceptor> DynServerInterceptor for T {
    fn register(&self, index: usize, method: &str, kind: MethodKind) {
        self.on_register(index, method, kind)
    }

    fn start<'a>(&'a self, call: &'a mut ServerCallInfo) -> Pin<Box<dyn Future<Output = Result<(), Status>> + Send + 'a>> {
        Box::pin(self.on_start(call))
    }

    fn end(&self, end: &CallEnd) {
        self.on_end(end)
    }
}

/// A client interceptor behind a pointer: the boxed-future form of [`ClientInterceptor`].
pub(crate) trait DynClientInterceptor: Send + Sync + 'static {
    fn start<'a>(&'a self, call: &'a mut ClientCallInfo) -> Pin<Box<dyn Future<Output = Result<(), Status>> + Send + 'a>>;
    fn end(&self, end: &CallEnd);
}

impl<T: ClientInterceptor> DynClientInterceptor for T {
    fn start<'a>(&'a self, call: &'a mut ClientCallInfo) -> Pin<Box<dyn Future<Output = Result<(), Status>> + Send + 'a>> {
        Box::pin(self.on_start(call))
    }

    fn end(&self, end: &CallEnd) {
        self.on_end(end)
    }
}

/// The interceptors of one server method, outermost first.
pub(crate) type ServerChain = Arc<[Arc<dyn DynServerInterceptor>]>;
/// The interceptors of one channel, outermost first.
pub(crate) type ClientChain = Arc<[Arc<dyn DynClientInterceptor>]>;

/// Whose `on_end` an observer calls.
enum Chain {
    Server(ServerChain),
    Client(ClientChain),
}

/// Counts a call's messages, keeps its status, and tells the chain when it ends (once).
pub(crate) struct ChainObserver {
    chain: Chain,
    method: Arc<str>,
    index: usize,
    kind: MethodKind,
    started: Instant,
    deadline: Option<Instant>,
    /// A server call's deadline as the core gave it: expiry is judged on the core's clock.
    core_deadline: Option<grpcore_sys::gpr_timespec>,
    sent: AtomicU64,
    received: AtomicU64,
    status: Mutex<Option<(Code, String)>>,
    cancelled: AtomicBool,
    ended: AtomicBool,
    /// Values attached by the start hooks (moved here when the chain has run).
    extensions: Mutex<Extensions>,
}

impl ChainObserver {
    fn new(chain: Chain, method: Arc<str>, index: usize, kind: MethodKind, deadline: Option<Instant>) -> ChainObserver {
        ChainObserver {
            chain,
            method,
            index,
            kind,
            started: Instant::now(),
            deadline,
            core_deadline: None,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            status: Mutex::new(None),
            cancelled: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            extensions: Mutex::new(Extensions::default()),
        }
    }

    /// Keeps the values the start hooks attached, for the handler and the end.
    pub(crate) fn set_extensions(&self, extensions: Extensions) {
        *self.extensions.lock().unwrap_or_else(|e| e.into_inner()) = extensions;
    }

    pub(crate) fn server(
        chain: ServerChain,
        method: Arc<str>,
        index: usize,
        kind: MethodKind,
        deadline: Option<Instant>,
        core_deadline: grpcore_sys::gpr_timespec,
    ) -> ChainObserver {
        ChainObserver {
            core_deadline: Some(core_deadline),
            ..ChainObserver::new(Chain::Server(chain), method, index, kind, deadline)
        }
    }

    pub(crate) fn client(chain: ClientChain, method: Arc<str>, kind: MethodKind, deadline: Option<Instant>) -> ChainObserver {
        ChainObserver::new(Chain::Client(chain), method, usize::MAX, kind, deadline)
    }

    /// The call's code and message as they stand.
    fn outcome(&self) -> (Code, String) {
        if self.cancelled.load(Ordering::Acquire) {
            // A client whose own deadline fired cancels the call (RST_STREAM) at about the
            // moment the server's deadline does; a cancellation that close to the deadline
            // is reported as its expiry.
            const SLACK: Duration = Duration::from_millis(10);
            let expired = match self.core_deadline {
                Some(raw) => crate::time::has_passed(raw, SLACK),
                None => self.deadline.is_some_and(|d| Instant::now() >= d),
            };
            if expired {
                return (Code::DeadlineExceeded, "the deadline expired".into());
            }
            return (Code::Cancelled, "the call was cancelled".into());
        }
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| (Code::Cancelled, "the call ended without a status".into()))
    }
}

impl CallObserver for ChainObserver {
    fn message_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    fn message_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    fn status(&self, code: Code, message: &str) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if status.is_none() {
            *status = Some((code, message.to_owned()));
        }
    }

    fn cancelled(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    fn extension(&self, read: &mut dyn FnMut(&Extensions)) {
        read(&self.extensions.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn set_extensions(&self, extensions: Extensions) {
        ChainObserver::set_extensions(self, extensions)
    }

    fn end(&self) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        let (code, message) = self.outcome();
        let end = CallEnd {
            method: self.method.clone(),
            index: self.index,
            kind: self.kind,
            code,
            message,
            elapsed: self.started.elapsed(),
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            extensions: {
                let extensions = std::mem::take(&mut *self.extensions.lock().unwrap_or_else(|e| e.into_inner()));
                (!extensions.is_empty()).then(|| Arc::new(extensions))
            },
        };
        // Innermost first, like a stack unwinding; a panicking observer does not keep the
        // others from seeing the end, nor unwind into the completion queue.
        let run = |f: &dyn Fn()| {
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                log::error!("an interceptor's on_end panicked: {}", crate::task::panic_message(&*panic));
            }
        };
        match &self.chain {
            Chain::Server(chain) => chain.iter().rev().for_each(|i| run(&|| i.end(&end))),
            Chain::Client(chain) => chain.iter().rev().for_each(|i| run(&|| i.end(&end))),
        }
    }
}

impl ServerCallInfo {
    pub(crate) fn new(server: Arc<ServerCallCore>, method: Arc<str>, index: usize, kind: MethodKind, deadline: Option<Instant>) -> Self {
        ServerCallInfo {
            server,
            method,
            index,
            kind,
            deadline,
            metadata: OnceCell::new(),
            extensions: Extensions::default(),
        }
    }

    /// The metadata (if an interceptor looked at it) and extensions as the interceptors left
    /// them.
    pub(crate) fn into_parts(self) -> (Option<Metadata>, Extensions) {
        (self.metadata.into_inner(), self.extensions)
    }
}

/// Runs a chain's start hooks in order, each behind `catch_unwind`; the first refusal stops
/// it. A panicking interceptor refuses with `INTERNAL`.
async fn run_chain<'a, I: ?Sized + 'a, S: 'a>(
    chain: impl Iterator<Item = &'a Arc<I>>,
    side: &str,
    call: &mut S,
    start: impl for<'b> Fn(&'b I, &'b mut S) -> Pin<Box<dyn Future<Output = Result<(), Status>> + Send + 'b>>,
) -> Result<(), Status> {
    use futures_util::FutureExt;
    for interceptor in chain {
        match std::panic::AssertUnwindSafe(start(interceptor, &mut *call)).catch_unwind().await {
            Ok(Ok(())) => {}
            Ok(Err(status)) => return Err(status),
            Err(panic) => {
                let msg = crate::task::panic_message(&*panic);
                log::error!("a {side} interceptor panicked: {msg}");
                return Err(Status::internal(format!("an interceptor panicked: {msg}")));
            }
        }
    }
    Ok(())
}

/// Runs a server chain's start hooks (see [`run_chain`]).
pub(crate) async fn run_server_chain(chain: &ServerChain, info: &mut ServerCallInfo) -> Result<(), Status> {
    run_chain(chain.iter(), "server", info, |i, call| i.start(call)).await
}

/// Runs a client chain's start hooks (see [`run_chain`]); the future owns what it needs, so
/// a call whose hooks wait can keep it until its handle is polled.
pub(crate) async fn run_client_chain(chain: ClientChain, mut info: ClientCallInfo) -> (ClientCallInfo, Result<(), Status>) {
    let result = run_chain(chain.iter(), "client", &mut info, |i, call| i.start(call)).await;
    (info, result)
}
