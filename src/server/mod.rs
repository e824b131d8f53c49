//! Servers: binding ports, registering methods with the core, request slots, shutdown.
//!
//! Every method known when the server is built is registered with the core
//! (`grpc_server_register_method`); unary methods read their request with the call, so a
//! unary request costs one event in and one batch out. For each method and each queue a
//! few request slots are posted and replaced as they are used. Paths nobody registered go
//! to generic slots and are answered `UNIMPLEMENTED`.

pub(crate) mod bind;
pub(crate) mod context;
pub(crate) mod handler;
pub(crate) mod limits;
pub(crate) mod service;
pub(crate) mod streaming;

use std::ffi::CString;
use std::future::Future;
use std::os::raw::c_void;
use std::pin::Pin;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use grpcore_sys as ffi;

use crate::args::{size_limit, ChannelArgs};
use crate::call::write::Compression;
use crate::call::raw::{op, OwnedSlice, RecvMessage, RecvMetadata, SendMetadata};
use crate::call::{Batch, Call, LiveCall, LiveCalls, OnComplete};
use crate::cq::{BoxTag, CompletionQueue, Tag, TagHeader};
use crate::credentials::ServerCredentials;
use crate::env::Environment;
use crate::error::{ConfigErrorKind, Error, ShutdownErrorKind};
use crate::listener::{Listener, ListenerStats, RunningListener};
use crate::socket::Socket;
use crate::metadata::Metadata;
use crate::method::MethodKind;
use crate::quota::ResourceQuota;
use crate::settings::{self, keys, Zero};
use crate::status::Code;

use self::limits::MessageLimits;
use crate::deadline::ServerDeadline;
use self::handler::{Arrived, BoxFuture, IncomingCall, OwnedSpawn, Spawn};
use crate::interceptor::{DynServerInterceptor, ServerChain, ServerInterceptor};
use self::service::{MethodEntry, RefusingHook, Service, ShutdownHook};

/// Default request slots posted per method and per completion queue.
const DEFAULT_SLOTS_PER_METHOD: usize = 32;
/// Generic (unregistered-method) slots per completion queue.
const GENERIC_SLOTS: usize = 2;

/// Configures and starts a [`Server`].
///
/// ```
/// use grpcore::{BytesCodec, Environment, Method, ServerBuilder, ServiceBuilder, Status};
/// const ECHO: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/demo.Echo/Echo");
/// let env = Environment::new(1);
/// let service = ServiceBuilder::new("demo.Echo")
///     .add_unary(&ECHO, |req: Vec<u8>, _ctx| async move { Ok::<_, Status>(req) })
///     .build();
/// let server = ServerBuilder::new(&env)
///     .register_service(service)
///     .bind("127.0.0.1:0")
///     .build()
///     .unwrap();
/// assert_ne!(server.port(), 0);
/// ```
pub struct ServerBuilder {
    env: Environment,
    /// Each address with its credentials (`None`: insecure).
    addrs: Vec<(String, Option<ServerCredentials>)>,
    services: Vec<Service>,
    args: ChannelArgs,
    slots_per_method: usize,
    spawner: Option<Spawner>,
    lean: bool,
    /// How long the server keeps accepting calls after its services' shutdown hooks ran.
    lame_duck: Duration,
    /// The server's interceptors, outermost first.
    interceptors: Vec<Arc<dyn DynServerInterceptor>>,
    error: Option<Error>,
    /// Whether `build` adds the reflection services (`add_reflection`, feature `reflection`).
    #[cfg_attr(not(feature = "reflection"), allow(dead_code))]
    pub(crate) reflection: bool,
    /// Listening sockets grpcore accepts on itself.
    listeners: Vec<Listener>,
    /// Whether a server with no address nor listener is wanted (`connections_only`).
    connections_only: bool,
    /// Listening configuration from xDS (`xds`), when asked for.
    #[cfg(feature = "xds")]
    xds: Option<crate::xds::XdsServerSettings>,
}

/// Runs handler futures somewhere other than the completion-queue threads.
type Spawner = Arc<dyn Fn(BoxFuture) + Send + Sync>;

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("addrs", &self.addrs)
            .field("services", &self.services)
            .finish()
    }
}

impl ServerBuilder {
    /// The environment the server will run on.
    #[cfg(feature = "admin")]
    pub(crate) fn env(&self) -> &Environment {
        &self.env
    }

    /// A server whose calls run on `env`'s completion queues.
    pub fn new(env: &Environment) -> ServerBuilder {
        ServerBuilder {
            env: env.clone(),
            addrs: Vec::new(),
            services: Vec::new(),
            args: ChannelArgs::default(),
            slots_per_method: DEFAULT_SLOTS_PER_METHOD,
            spawner: None,
            lean: false,
            lame_duck: Duration::ZERO,
            interceptors: Vec::new(),
            error: None,
            reflection: false,
            listeners: Vec::new(),
            connections_only: false,
            #[cfg(feature = "xds")]
            xds: None,
        }
        .so_reuseport(false)
    }

    /// Whether several servers may listen on the same port (`SO_REUSEPORT`). Default: off,
    /// so binding a port that is in use fails instead of silently sharing it (the C core's
    /// own default is on).
    pub fn so_reuseport(mut self, enable: bool) -> ServerBuilder {
        let r = self.args.set_int("grpc.so_reuseport", enable as i32);
        self.record(r)
    }

    /// Listens on `addr` (`host:port`, port 0 picks a free one; `unix:path` for a socket),
    /// insecurely. The port is required and must be a number from 0 to 65535 (or `http`,
    /// `https`): [`build`](Self::build) fails on `127.0.0.1:99999` or a bare `localhost`,
    /// which the core would take as port 34463 and port 443.
    pub fn bind(mut self, addr: impl Into<String>) -> ServerBuilder {
        self.addrs.push((addr.into(), None));
        self
    }

    /// Listens on `addr` (as in [`bind`](Self::bind)) with `credentials`: TLS, mutual TLS,
    /// reloading certificates, or local credentials for unix sockets.
    pub fn bind_with_credentials(mut self, addr: impl Into<String>, credentials: &ServerCredentials) -> ServerBuilder {
        self.addrs.push((addr.into(), Some(credentials.clone())));
        self
    }

    /// Accepts connections on a listening socket you own, or one systemd passed
    /// ([`Listener::from_systemd`]), on a thread of the server's own: with connection
    /// limits, and optionally other protocols beside gRPC on the same port (see
    /// [`listener`](crate::listener)). Plaintext only: the 1.51 core takes no TLS on a
    /// socket it did not accept itself. The listener's address is in
    /// [`Server::bound_ports`] after the core's own ports; it closes when the server stops
    /// accepting calls.
    pub fn listener(mut self, listener: Listener) -> ServerBuilder {
        self.listeners.push(listener);
        self
    }

    /// Builds a server with no address and no listener, for connections handed over one
    /// by one with [`Server::add_connection`] (without this, such a server is taken for a
    /// forgotten [`bind`](Self::bind) and refused).
    pub fn connections_only(mut self) -> ServerBuilder {
        self.connections_only = true;
        self
    }

    /// Serves `service`.
    pub fn register_service(mut self, service: Service) -> ServerBuilder {
        self.services.push(service);
        self
    }

    /// Adds an interceptor that sees every call of every service of this server, before
    /// the services' own interceptors (see [`interceptor`](crate::interceptor) for the
    /// order and what each hook sees). A server with none pays nothing for the feature.
    pub fn intercept(mut self, interceptor: impl ServerInterceptor) -> ServerBuilder {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// Largest request accepted, in bytes; `None` for no limit. Default: 4 MiB. A larger
    /// request fails with `RESOURCE_EXHAUSTED` (the call ends with that status).
    pub fn max_receive_message_len(mut self, bytes: impl Into<Option<usize>>) -> ServerBuilder {
        let r = size_limit("max_receive_message_len", bytes.into())
            .and_then(|v| self.args.set_int("grpc.max_receive_message_length", v));
        self.record(r)
    }

    /// Largest response sent, in bytes; `None` (the default) for no limit. A larger
    /// response ends the call with `RESOURCE_EXHAUSTED`.
    pub fn max_send_message_len(mut self, bytes: impl Into<Option<usize>>) -> ServerBuilder {
        let r = size_limit("max_send_message_len", bytes.into())
            .and_then(|v| self.args.set_int("grpc.max_send_message_length", v));
        self.record(r)
    }

    /// Runs handlers on an executor of your choice instead of the completion-queue threads,
    /// e.g. a tokio runtime so handlers can use tokio's timers and I/O:
    ///
    /// ```no_run
    /// # let env = grpcore::Environment::new(1);
    /// let runtime = tokio::runtime::Runtime::new().unwrap();
    /// let handle = runtime.handle().clone();
    /// let builder = grpcore::ServerBuilder::new(&env).spawn_handlers_with(move |handler| {
    ///     handle.spawn(handler);
    /// });
    /// ```
    ///
    /// `spawn` gets one future per call and must run it to completion; the call's events
    /// still complete on the completion-queue threads and wake the future wherever it runs.
    /// By default handlers are polled on the completion-queue thread that received the
    /// call (no thread hop, the fastest option).
    pub fn spawn_handlers_with<F>(mut self, spawn: F) -> ServerBuilder
    where
        F: Fn(std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>) + Send + Sync + 'static,
    {
        self.spawner = Some(Arc::new(spawn));
        self
    }

    /// How long [`Server::shutdown`] keeps the server accepting calls after its services'
    /// [shutdown hooks](Service::on_shutdown) ran (the [health service](crate::health) then
    /// reports every service `NOT_SERVING`), before it closes its listeners and refuses new
    /// calls: time for load balancers that poll health (a Kubernetes readiness probe, an
    /// LB's periodic `Check`) to see the change and route calls elsewhere. Counted from the
    /// start of the shutdown, so hooks that took longer leave less of it. Default: zero
    /// (watchers of the health service have still been sent `NOT_SERVING` first).
    pub fn lame_duck_period(mut self, period: Duration) -> ServerBuilder {
        self.lame_duck = period;
        self
    }

    /// Request slots kept posted per method and completion queue (default 32). Each waiting
    /// slot costs a little on every call, so keep it near the concurrency you serve.
    pub fn request_slots_per_method(mut self, n: usize) -> ServerBuilder {
        self.slots_per_method = n.max(1);
        self
    }

    /// Sets an integer argument from a checked value, or records the check's error.
    fn int_setting(mut self, key: &str, value: Result<i32, Error>) -> ServerBuilder {
        let r = value.and_then(|v| self.args.set_int(key, v));
        self.record(r)
    }

    /// How long a connection may go without receiving anything before the server pings the
    /// client to check it is still there (`grpc.keepalive_time_ms`, whole milliseconds,
    /// rounded up). Default: 2 hours. Must be greater than zero.
    pub fn keepalive_time(self, interval: Duration) -> ServerBuilder {
        let v = settings::millis("keepalive_time", interval, Zero::Rejected);
        self.int_setting(keys::KEEPALIVE_TIME_MS, v)
    }

    /// How long to wait for the acknowledgement of a keepalive ping before closing the
    /// connection (`grpc.keepalive_timeout_ms`, whole milliseconds). Default: 20 s. Must be
    /// greater than zero.
    pub fn keepalive_timeout(self, timeout: Duration) -> ServerBuilder {
        let v = settings::millis("keepalive_timeout", timeout, Zero::Rejected);
        self.int_setting(keys::KEEPALIVE_TIMEOUT_MS, v)
    }

    /// Whether clients may ping while no call is active on their connection, at the rate
    /// [`http2_min_recv_ping_interval_without_data`](Self::http2_min_recv_ping_interval_without_data)
    /// allows (`grpc.keepalive_permit_without_calls`; it also lets this server's own
    /// keepalive ping idle connections). Default: false, which allows an idle connection
    /// one ping per 2 hours.
    pub fn keepalive_permit_without_calls(self, permit: bool) -> ServerBuilder {
        self.int_setting(keys::KEEPALIVE_PERMIT_WITHOUT_CALLS, Ok(permit as i32))
    }

    /// Keepalive enforcement: the shortest interval between two client pings while the
    /// server sends no data (`grpc.http2.min_ping_interval_without_data_ms`, whole
    /// milliseconds, rounded up). Each ping sooner than that is a strike (see
    /// [`http2_max_ping_strikes`](Self::http2_max_ping_strikes)). Default: 5 minutes. Zero
    /// allows any rate.
    pub fn http2_min_recv_ping_interval_without_data(self, interval: Duration) -> ServerBuilder {
        let v = settings::millis("http2_min_recv_ping_interval_without_data", interval, Zero::Allowed);
        self.int_setting(keys::HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, v)
    }

    /// Keepalive enforcement: how many too-early pings a connection may send; the next one
    /// closes it with `GOAWAY` (`ENHANCE_YOUR_CALM`, `too_many_pings`) and its calls fail
    /// with `UNAVAILABLE` (`grpc.http2.max_ping_strikes`). Sending data or headers clears the
    /// count. Default: 2. `0` means no limit: the 1.51 core then never closes a connection
    /// for pinging too often.
    pub fn http2_max_ping_strikes(self, strikes: u32) -> ServerBuilder {
        let v = settings::count("http2_max_ping_strikes", strikes, 0);
        self.int_setting(keys::HTTP2_MAX_PING_STRIKES, v)
    }

    /// The HTTP/2 initial stream window the server announces, in bytes: how much a client
    /// may send on one call before waiting for a window update
    /// (`grpc.http2.lookahead_bytes`). From 5 to 2^31 - 1. Default: 65,535 (HTTP/2's).
    /// With [bandwidth probing](Self::http2_bdp_probe) on (the default) the core resizes it
    /// from its bandwidth-delay estimate; 1.51 has no separate connection-window setting.
    pub fn http2_initial_stream_window_size(self, bytes: u32) -> ServerBuilder {
        let v = settings::window("http2_initial_stream_window_size", bytes);
        self.int_setting(keys::HTTP2_STREAM_LOOKAHEAD_BYTES, v)
    }

    /// Whether the core probes the bandwidth-delay product with pings and grows its
    /// flow-control windows to match (`grpc.http2.bdp_probe`). Default: true.
    pub fn http2_bdp_probe(self, enable: bool) -> ServerBuilder {
        self.int_setting(keys::HTTP2_BDP_PROBE, Ok(enable as i32))
    }

    /// Most calls a client may have open at once on one connection
    /// (`grpc.max_concurrent_streams`, announced in HTTP/2 SETTINGS); the client's core
    /// queues calls beyond it. Default: no limit. At least 1.
    pub fn max_concurrent_streams(self, streams: u32) -> ServerBuilder {
        let v = settings::count("max_concurrent_streams", streams, 1);
        self.int_setting(keys::MAX_CONCURRENT_STREAMS, v)
    }

    /// Closes a connection (with `GOAWAY`) after it has had no call for this long
    /// (`grpc.max_connection_idle_ms`, whole milliseconds, rounded up). Default: never.
    /// Must be greater than zero.
    pub fn max_connection_idle(self, idle: Duration) -> ServerBuilder {
        let v = settings::millis("max_connection_idle", idle, Zero::Rejected);
        self.int_setting(keys::MAX_CONNECTION_IDLE_MS, v)
    }

    /// Closes a connection (with `GOAWAY`, so clients reconnect without failing calls) once
    /// it is this old, give or take 10% of jitter the core adds
    /// (`grpc.max_connection_age_ms`, whole milliseconds, rounded up). Default: never. Must
    /// be greater than zero.
    pub fn max_connection_age(self, age: Duration) -> ServerBuilder {
        let v = settings::millis("max_connection_age", age, Zero::Rejected);
        self.int_setting(keys::MAX_CONNECTION_AGE_MS, v)
    }

    /// After [`max_connection_age`](Self::max_connection_age) closes a connection, how long
    /// its open calls may still run before they are cancelled
    /// (`grpc.max_connection_age_grace_ms`, whole milliseconds, rounded up). Default:
    /// forever. Zero cancels them at once.
    pub fn max_connection_age_grace(self, grace: Duration) -> ServerBuilder {
        let v = settings::millis("max_connection_age_grace", grace, Zero::Allowed);
        self.int_setting(keys::MAX_CONNECTION_AGE_GRACE_MS, v)
    }

    /// Compresses every response message with `algorithm` when the client accepts it,
    /// unless the handler chooses otherwise (`grpc.default_compression_algorithm`).
    /// Default: [`Compression::None`].
    pub fn default_compression(self, algorithm: Compression) -> ServerBuilder {
        self.int_setting(keys::DEFAULT_COMPRESSION_ALGORITHM, Ok(algorithm.algorithm()))
    }

    /// Draws the server's transport and call memory from `quota` (`grpc.resource_quota`).
    /// Default: the core's process-wide quota, which has no limit.
    pub fn resource_quota(mut self, quota: &ResourceQuota) -> ServerBuilder {
        self.args.set_quota(quota);
        self
    }

    /// Lean mode: serves through the core's minimal filter stack (`grpc.minimal_stack`,
    /// channelz off) and does in grpcore what the left-out filters did, for fewer
    /// instructions per call (see `benches/README.md` for the counts). Default: off.
    ///
    /// What stays the same for clients and handlers:
    /// - message-size limits ([`max_receive_message_len`](Self::max_receive_message_len),
    ///   default 4 MiB, and [`max_send_message_len`](Self::max_send_message_len)) are
    ///   enforced by grpcore, with the core's `RESOURCE_EXHAUSTED` statuses, since the
    ///   minimal stack drops the core's message-size filter;
    /// - deadlines are enforced: the core's deadline filter is kept
    ///   (`grpc.enable_deadline_checking`), so a call still ends with `DEADLINE_EXCEEDED` at
    ///   its deadline even if the client never cancels it, and
    ///   [`ServerContext::cancelled`](crate::ServerContext::cancelled) fires then;
    /// - compressed requests are accepted: the core's decompression filter is kept too
    ///   (without it the core would hand compressed requests over unmarked).
    ///
    /// What changes: responses are never compressed
    /// ([`default_compression`](Self::default_compression) and
    /// [`ServerContext::set_compression`](crate::ServerContext::set_compression) have no
    /// effect), and the server does not appear in channelz.
    ///
    /// The core arguments it needs (`grpc.minimal_stack`, `grpc.enable_channelz`,
    /// `grpc.enable_deadline_checking`, `grpc.per_message_decompression`) are set when the
    /// server is built and override the same keys given to [`raw_int_arg`](Self::raw_int_arg).
    pub fn lean(mut self, enable: bool) -> ServerBuilder {
        self.lean = enable;
        self
    }

    /// Sets any integer channel argument of the server (escape hatch).
    pub fn raw_int_arg(mut self, key: &str, value: i32) -> ServerBuilder {
        let r = self.args.set_int(key, value);
        self.record(r)
    }

    /// Sets any string channel argument of the server (escape hatch).
    pub fn raw_str_arg(mut self, key: &str, value: &str) -> ServerBuilder {
        let r = self.args.set_str(key, value);
        self.record(r)
    }

    fn record(mut self, r: Result<(), Error>) -> ServerBuilder {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
        self
    }

    /// Makes this an xDS-enabled server: each address it binds serves only once the
    /// control plane has sent a Listener for it (named by the bootstrap's
    /// [`server_listener_resource_name_template`](crate::xds::XdsBootstrap::server_listener_resource_name_template),
    /// `%s` standing for `host:port`), with the routes and filters that Listener gives;
    /// until then, and whenever the control plane withdraws it, connections are refused.
    /// The bootstrap is the environment's (`GRPC_XDS_BOOTSTRAP`...) unless
    /// [`xds_bootstrap`](Self::xds_bootstrap) gives one. `build` fails when there is none,
    /// or when it has no server listener template.
    #[cfg(feature = "xds")]
    pub fn xds(mut self, enable: bool) -> ServerBuilder {
        self.xds = enable.then(|| self.xds.take().unwrap_or_default());
        self
    }

    /// An xDS-enabled server (as [`xds`](Self::xds)) with a bootstrap of its own.
    #[cfg(feature = "xds")]
    pub fn xds_bootstrap(mut self, bootstrap: &crate::xds::XdsBootstrap) -> ServerBuilder {
        let r = bootstrap.to_json().and_then(|json| self.args.set_str(crate::xds::BOOTSTRAP_ARG, &json));
        self.xds = Some(self.xds.take().unwrap_or_default());
        self.record(r)
    }

    /// Called, on a core thread, each time an address of an xDS-enabled server starts
    /// serving (`Ok`) or stops (`Err` with the reason, e.g. the Listener was removed or
    /// rejected). Keep it short; a panic in it is logged and ignored.
    #[cfg(feature = "xds")]
    pub fn on_xds_serving_status(mut self, callback: impl Fn(&str, Result<(), crate::Status>) + Send + Sync + 'static) -> ServerBuilder {
        let mut settings = self.xds.take().unwrap_or_default();
        settings.on_status = Some(Arc::new(callback));
        self.xds = Some(settings);
        self
    }

    /// Creates the server, binds every address, registers every method, and starts serving.
    pub fn build(mut self) -> Result<Server, Error> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.addrs.is_empty() && self.listeners.is_empty() && !self.connections_only {
            return Err(Error::config_kind(
                ConfigErrorKind::Bind,
                "the server has no address to listen on: call bind() (or listener(), or connections_only() for add_connection)",
            ));
        }
        #[cfg(feature = "reflection")]
        if self.reflection {
            let reflection = crate::reflection::services(&self.services)?;
            self.services.extend(reflection);
        }
        let mut entries: Vec<(MethodEntry, Option<ServerChain>, Option<ServerDeadline>)> = Vec::new();
        let mut hooks = ShutdownHooks::default();
        for service in std::mem::take(&mut self.services) {
            if let Some(e) = service.error {
                return Err(e);
            }
            hooks.before.extend(service.shutdown_hooks);
            hooks.refusing.extend(service.refusing_hooks);
            // Each method's chain is resolved once, here: the server's interceptors, then
            // the service's; `None` keeps the uninterrupted path.
            let chain: Vec<_> = self.interceptors.iter().chain(&service.interceptors).cloned().collect();
            let chain: Option<ServerChain> = (!chain.is_empty()).then(|| chain.into());
            for m in service.methods {
                if entries.iter().any(|(e, _, _)| e.path == m.path) {
                    return Err(Error::config_kind(ConfigErrorKind::Method, format!("method {} is registered twice", m.path)));
                }
                // The deadline check is made here too, once per method; `None` (no policy,
                // or one that asks nothing of a server) costs a call nothing.
                let deadline = m.deadline.as_ref().and_then(|p| ServerDeadline::new(p, &m.path, service.missing_deadline.as_ref()));
                entries.push((m, chain.clone(), deadline));
            }
        }

        let limits = if self.lean {
            // The minimal stack also drops the decompression filter, and without it the core
            // hands compressed requests over as if they were plain (it does not mark the
            // buffer compressed on a server), so that filter stays.
            for (key, value) in [
                ("grpc.minimal_stack", 1),
                ("grpc.enable_channelz", 0),
                ("grpc.enable_deadline_checking", 1),
                ("grpc.per_message_decompression", 1),
            ] {
                self.args.set_int(key, value)?;
            }
            MessageLimits::from_args(
                self.args.get_int("grpc.max_receive_message_length"),
                self.args.get_int("grpc.max_send_message_length"),
            )
        } else {
            MessageLimits::UNCHECKED
        };
        #[cfg(feature = "xds")]
        let xds_notifier = self.xds.as_ref().map(crate::xds::ServingNotifier::new);
        #[cfg(feature = "xds")]
        if self.xds.is_some() && !self.args.has(crate::xds::BOOTSTRAP_ARG) {
            crate::xds::check_environment()?;
        }
        // SAFETY: the arguments live across the call and are copied by the core.
        let raw = self.args.with_raw(|args| unsafe { ffi::grpc_server_create(args, ptr::null_mut()) });
        let guard = UnstartedServer(raw);
        #[cfg(feature = "xds")]
        if let Some(notifier) = &xds_notifier {
            // SAFETY: the arguments live across the call; the notifier outlives the server:
            // it moves into the server's inner state, dropped after grpc_server_destroy, and
            // on an error below it is declared before `guard`, so dropped after it.
            let fetcher = self.args.with_raw(|args| unsafe { notifier.fetcher(args) })?;
            // SAFETY: the server is not started; it takes ownership of the fetcher.
            unsafe { ffi::grpc_server_set_config_fetcher(raw, fetcher) };
        }
        let mut methods = Vec::with_capacity(entries.len());
        for (entry, interceptors, deadline) in entries {
            let path = CString::new(&*entry.path)
                .map_err(|_| Error::config_kind(ConfigErrorKind::Method, format!("method path {:?} contains a NUL byte", entry.path)))?;
            let payload = match entry.kind {
                MethodKind::Unary | MethodKind::ServerStreaming => ffi::GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
                MethodKind::ClientStreaming | MethodKind::Duplex => ffi::GRPC_SRM_PAYLOAD_NONE,
            };
            // SAFETY: the server is live and not started; the core copies the path.
            let handle = unsafe { ffi::grpc_server_register_method(raw, path.as_ptr(), ptr::null(), payload, 0) };
            if handle.is_null() {
                return Err(Error::config_kind(ConfigErrorKind::Method, format!("the core refused to register method {}", entry.path)));
            }
            if let Some(chain) = &interceptors {
                // Per-method state (label sets, span names) is built here, once, and found by
                // index per call.
                for interceptor in chain.iter() {
                    interceptor.register(methods.len(), &entry.path, entry.kind);
                }
            }
            methods.push(RegisteredMethod {
                entry,
                interceptors,
                deadline,
                handle,
                reads_payload: payload == ffi::GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
            });
        }
        let mut ports = Vec::with_capacity(self.addrs.len());
        for (addr, creds) in &self.addrs {
            // SAFETY: the server is live and not started.
            let port = unsafe { bind::add_port(raw, addr, creds.as_ref())? };
            ports.push((addr.clone(), port));
        }
        for cq in self.env.cqs() {
            // SAFETY: the server is not started and the queue is live (the env owns it).
            unsafe { ffi::grpc_server_register_completion_queue(raw, cq_raw(cq)?, ptr::null_mut()) };
        }
        // SAFETY: fully configured; from here on the server must be shut down before destroy,
        // which `ServerInner` guarantees.
        unsafe { ffi::grpc_server_start(raw) };
        std::mem::forget(guard);
        let inner = Arc::new(ServerInner {
            raw,
            env: self.env.clone(),
            methods,
            shutting_down: AtomicBool::new(false),
            spawner: self.spawner.clone(),
            limits,
            hooks: Mutex::new(hooks),
            lame_duck: self.lame_duck,
            accepting_sockets: Mutex::new(true),
            listeners: Mutex::new(Vec::new()),
            live_calls: LiveCalls::new(self.env.clone()),
            #[cfg(feature = "xds")]
            _xds_notifier: xds_notifier,
        });
        for cq in self.env.cqs() {
            for i in 0..inner.methods.len() {
                for _ in 0..self.slots_per_method {
                    request_registered(&inner, i, cq);
                }
            }
            for _ in 0..GENERIC_SLOTS {
                request_generic(&inner, cq);
            }
        }
        let mut running = Vec::with_capacity(self.listeners.len());
        for listener in std::mem::take(&mut self.listeners) {
            // A listener that cannot start leaves the others to the server's drop.
            let listener = listener.start(inner.clone())?;
            ports.push(listener.address());
            running.push(listener);
        }
        *inner.listeners.lock().unwrap_or_else(|e| e.into_inner()) = running;
        Ok(Server {
            inner,
            ports,
            shutdown: None,
        })
    }
}

fn cq_raw(cq: &CompletionQueue) -> Result<*mut ffi::grpc_completion_queue, Error> {
    cq.borrow()
        .map(|b| b.raw())
        .ok_or_else(|| Error::shutdown(ShutdownErrorKind::Environment, "the environment is shutting down"))
}

/// Destroys a server that failed to start (`build` forgets it once the server started).
///
/// A server that added a listening port must be shut down before it is destroyed, started
/// or not: destroying it with listeners trips a core assertion (`Server::Orphan`), which
/// aborts the process. So the guard always calls `grpc_server_shutdown_and_notify` first,
/// on a private pluck queue of its own (the environment's queues are not registered with
/// an unstarted server, and their threads must not see this tag), and waits for it.
struct UnstartedServer(*mut ffi::grpc_server);

/// How long a failed build waits for the core to close the listeners it opened.
const UNSTARTED_SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

impl Drop for UnstartedServer {
    fn drop(&mut self) {
        // The tag only needs to be a unique address: nothing is behind it.
        let mut marker = 0u8;
        let tag = &mut marker as *mut u8 as *mut c_void;
        // SAFETY: plain constructor; the queue is shut down, drained and destroyed below.
        let cq = unsafe { ffi::grpc_completion_queue_create_for_pluck(ptr::null_mut()) };
        // SAFETY: the server is live and was never started; `cq` is live. Shutdown closes the
        // listeners and posts `tag` on `cq` once they are destroyed.
        unsafe { ffi::grpc_server_shutdown_and_notify(self.0, cq, tag) };
        // SAFETY: `cq` is a pluck queue and `tag` was posted on it (once).
        let event = unsafe { ffi::grpc_completion_queue_pluck(cq, tag, crate::time::from_timeout(UNSTARTED_SHUTDOWN_WAIT), ptr::null_mut()) };
        let finished = event.type_ == ffi::GRPC_OP_COMPLETE;
        if finished {
            // SAFETY: shutdown has completed (its notification arrived), so the core allows
            // the destroy and nothing else uses the server.
            unsafe { ffi::grpc_server_destroy(self.0) }
        } else {
            // Destroying now could abort the process; leaking one unstarted server is the
            // lesser harm (it cannot be reached from Rust any more).
            log::error!("a server that failed to start did not shut down within {UNSTARTED_SHUTDOWN_WAIT:?}; leaking it");
        }
        // SAFETY: no more operations will be started on `cq`; after shutdown the queue is
        // drained (the pending notification, if it came late, then the shutdown event)
        // before it is destroyed.
        unsafe {
            ffi::grpc_completion_queue_shutdown(cq);
            if finished {
                while ffi::grpc_completion_queue_pluck(cq, ptr::null_mut(), crate::time::infinite_future(), ptr::null_mut()).type_
                    != ffi::GRPC_QUEUE_SHUTDOWN
                {}
                ffi::grpc_completion_queue_destroy(cq);
            }
        }
    }
}

struct RegisteredMethod {
    entry: MethodEntry,
    /// The method's interceptors, outermost first; `None` when it has none.
    interceptors: Option<ServerChain>,
    /// What the method's deadline policy asks of arriving calls; `None` when nothing.
    deadline: Option<ServerDeadline>,
    handle: *mut c_void,
    reads_payload: bool,
}

pub(crate) struct ServerInner {
    raw: *mut ffi::grpc_server,
    env: Environment,
    methods: Vec<RegisteredMethod>,
    shutting_down: AtomicBool,
    spawner: Option<Spawner>,
    /// The message sizes grpcore checks itself (lean mode only).
    limits: MessageLimits,
    /// The services' shutdown hooks, each taken (and run) once.
    hooks: Mutex<ShutdownHooks>,
    /// See [`ServerBuilder::lame_duck_period`].
    lame_duck: Duration,
    /// The calls handed to handlers and not yet released (for the shutdown report), with
    /// the environment each of them keeps alive.
    live_calls: Arc<LiveCalls>,
    /// The xDS serving-status callback's user data: dropped after the server (and its
    /// config fetcher) is destroyed, since fields drop after `Drop::drop` runs.
    #[cfg(feature = "xds")]
    _xds_notifier: Option<crate::xds::ServingNotifier>,
    /// Whether sockets may still be handed to the core: false from the start of the
    /// shutdown, so no connection is added to a server that is shutting down (the core
    /// would not close it). Held across each hand-over.
    accepting_sockets: Mutex<bool>,
    /// The listeners grpcore accepts on, stopped when the shutdown begins.
    listeners: Mutex<Vec<RunningListener>>,
}

impl ServerInner {
    /// Hands a connected socket to the core, which serves it as a connection of this
    /// server and closes it when it ends. Returns the descriptor the core now owns and its
    /// entry's generation in the peer table.
    pub(crate) fn add_socket(&self, socket: Socket) -> Result<(std::os::fd::RawFd, u64), Error> {
        let open = self.accepting_sockets.lock().unwrap_or_else(|e| e.into_inner());
        if !*open {
            return Err(Error::shutdown(ShutdownErrorKind::Server, "the server is shutting down: it takes no new connection"));
        }
        let peer = socket.peer().clone();
        let fd = socket.into_core_fd()?;
        let generation = crate::socket::remember_peer(fd, peer);
        // SAFETY: plain constructor; released below, after the core took its own reference.
        let creds = unsafe { ffi::grpc_insecure_server_credentials_create() };
        // SAFETY: the server is started and, with `accepting_sockets` true under the lock,
        // not shutting down; `fd` is a connected, non-blocking stream socket whose ownership
        // passes to the core here (it closes it when the connection ends, or at once if it
        // cannot serve it); the credentials are insecure, the only kind 1.51 takes here
        // (any other would leave the fd unowned).
        unsafe {
            ffi::grpc_server_add_channel_from_fd(self.raw, fd, creds);
            ffi::grpc_server_credentials_release(creds);
        }
        drop(open);
        Ok((fd, generation))
    }

    /// Stops the listeners and closes the door to new sockets (the start of a shutdown).
    fn stop_accepting_sockets(&self) {
        let listeners = std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|e| e.into_inner()));
        for mut listener in listeners {
            listener.stop();
        }
        *self.accepting_sockets.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }
}

/// The hooks of the services of a server (`Service::on_shutdown`, `on_refusing_calls`).
#[derive(Default)]
struct ShutdownHooks {
    before: Vec<ShutdownHook>,
    refusing: Vec<RefusingHook>,
}

/// Runs `hook`, logging its panic instead of passing it on.
fn run_hook(hook: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)) {
        log::error!("a service's shutdown hook panicked: {}", crate::task::panic_message(&*panic));
    }
}

impl ServerInner {
    fn hooks(&self) -> std::sync::MutexGuard<'_, ShutdownHooks> {
        self.hooks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the services' lame-duck hooks (once; later calls find none), each given
    /// `deadline`.
    fn run_shutdown_hooks(&self, deadline: Instant) {
        let hooks = std::mem::take(&mut self.hooks().before);
        for hook in hooks {
            run_hook(|| hook(deadline));
        }
    }

    /// Runs the services' hooks for a server that refuses calls (once).
    fn run_refusing_hooks(&self) {
        let hooks = std::mem::take(&mut self.hooks().refusing);
        for hook in hooks {
            run_hook(hook);
        }
    }

    /// Whether a shutdown has work to do before the listeners close.
    fn has_lame_duck_phase(&self) -> bool {
        !self.lame_duck.is_zero() || !self.hooks().before.is_empty()
    }
}

// SAFETY: the core's server is thread-safe; method handles are immutable after start.
unsafe impl Send for ServerInner {}
// SAFETY: as above.
unsafe impl Sync for ServerInner {}

impl Drop for ServerInner {
    fn drop(&mut self) {
        // SAFETY: the last reference is gone only after the shutdown tag (which holds one)
        // completed, so shutdown has finished and nothing else uses the server.
        unsafe { ffi::grpc_server_destroy(self.raw) }
    }
}

/// The tag of `grpc_server_shutdown_and_notify`: keeps the server alive until shutdown is
/// complete (its last reference then destroys it).
#[repr(C)]
struct ShutdownTag {
    header: TagHeader,
    _server: Arc<ServerInner>,
    signal: Arc<ShutdownSignal>,
}

// SAFETY: `#[repr(C)]` with the header made by `for_box::<ShutdownTag>` first.
unsafe impl BoxTag for ShutdownTag {
    fn on_event(self: Box<Self>, _success: bool) {
        self.signal.finish();
    }
}

// SAFETY: `#[repr(C)]` with the header made by `for_box::<RequestSlot>` first.
unsafe impl BoxTag for RequestSlot {
    fn on_event(self: Box<Self>, success: bool) {
        self.complete(success);
    }
}

// SAFETY: `#[repr(C)]` with the header made by `for_box::<GenericSlot>` first.
unsafe impl BoxTag for GenericSlot {
    fn on_event(self: Box<Self>, success: bool) {
        (*self).complete(success);
    }
}

/// One posted request for a registered method. It is its own tag.
#[repr(C)]
pub(crate) struct RequestSlot {
    header: TagHeader,
    server: Arc<ServerInner>,
    method: usize,
    cq: Arc<CompletionQueue>,
    call: *mut ffi::grpc_call,
    deadline: ffi::gpr_timespec,
    metadata: RecvMetadata,
    payload: RecvMessage,
}

// SAFETY: the slot is owned by the core (through its tag) and then by the CQ thread.
unsafe impl Send for RequestSlot {}

fn request_registered(server: &Arc<ServerInner>, method: usize, cq: &Arc<CompletionQueue>) {
    post_slot(server, cq, Box::new(RequestSlot {
        header: TagHeader::for_box::<RequestSlot>(),
        server: server.clone(),
        method,
        cq: cq.clone(),
        call: ptr::null_mut(),
        deadline: crate::time::infinite_future(),
        metadata: RecvMetadata::new(),
        payload: RecvMessage::new(),
    }));
}

/// Posts `slot` (new, or reused after its call was taken out) for its method. `server` and
/// `cq` are the slot's own (borrowed from the caller, which holds them beyond the post: once
/// posted, the slot belongs to the core).
fn post_slot(server: &Arc<ServerInner>, cq: &Arc<CompletionQueue>, mut slot: Box<RequestSlot>) {
    debug_assert!(Arc::ptr_eq(server, &slot.server) && Arc::ptr_eq(cq, &slot.cq));
    if server.shutting_down.load(Ordering::Acquire) {
        return;
    }
    let Some(borrow) = cq.borrow() else { return };
    let m = &server.methods[slot.method];
    let call_p: *mut *mut ffi::grpc_call = &mut slot.call;
    let deadline_p: *mut ffi::gpr_timespec = &mut slot.deadline;
    let md_p: *mut ffi::grpc_metadata_array = &mut slot.metadata.array;
    let payload_p: *mut *mut ffi::grpc_byte_buffer = if m.reads_payload { &mut slot.payload.0 } else { ptr::null_mut() };
    let tag = Tag::from_box(slot).into_raw();
    // SAFETY: the pointers point into the boxed slot, whose heap address the tag keeps stable
    // and alive until the event; the queue is borrowed and registered with the server.
    let rc = unsafe {
        ffi::grpc_server_request_registered_call(
            server.raw, m.handle, call_p, deadline_p, md_p, payload_p, borrow.raw(), borrow.raw(), tag,
        )
    };
    if rc != ffi::GRPC_CALL_OK {
        // SAFETY: refused, so no event will carry the tag.
        drop(unsafe { Tag::from_raw(tag) });
        log::error!("the core refused a request slot for {} (error {rc})", m.entry.path);
    }
}

impl RequestSlot {
    /// Takes the arrived call out of the slot, posts the slot again (so the core always has
    /// one to hand the next call to, without a new allocation), and starts the handler.
    fn complete(mut self: Box<Self>, success: bool) {
        if !success || self.call.is_null() {
            return; // the server is shutting down
        }
        let server = self.server.clone();
        let cq = self.cq.clone();
        let method = self.method;
        let raw_call = std::mem::replace(&mut self.call, ptr::null_mut());
        // The request metadata stays in the core's array until a handler asks for it.
        let metadata = std::mem::replace(&mut self.metadata, RecvMetadata::new());
        let payload = self.payload.take();
        let mut deadline = std::mem::replace(&mut self.deadline, crate::time::infinite_future());
        post_slot(&server, &cq, self);
        // SAFETY: on success the core gave us one reference to a call bound to `cq`, one of
        // the queues of the server's environment (the one `live_calls` holds).
        let call = unsafe { Call::from_raw_counted(raw_call, cq.clone(), LiveCall::new(&server.live_calls)) };
        let m = &server.methods[method];
        // The deadline policy comes before the interceptors (it is the outer layer), but a
        // refusal still reaches their end hooks, as a counted outcome.
        if let Some(policy) = &m.deadline {
            match policy.admit(deadline) {
                Ok(admitted) => deadline = admitted,
                Err(refusal) => {
                    return handler::refuse(m.interceptors.as_ref(), method, m.entry.kind, call, metadata, &m.entry.path, deadline, refusal);
                }
            }
        }
        let incoming = IncomingCall {
            arrived: Arrived::Call { call, metadata },
            method: m.entry.path.clone(),
            deadline,
            payload,
            limits: server.limits,
        };
        if let Some(chain) = &m.interceptors {
            let spawn = match &server.spawner {
                Some(spawner) => OwnedSpawn::User(spawner.clone()),
                None => OwnedSpawn::Queue(cq.clone()),
            };
            return handler::serve_intercepted(chain, method, m.entry.kind, m.entry.handler.clone(), incoming, spawn);
        }
        let spawn = match &server.spawner {
            Some(spawner) => Spawn::User(&**spawner),
            None => Spawn::Queue(&cq),
        };
        m.entry.handler.handle(incoming, spawn);
    }
}

/// One posted request for any path nobody registered. It is its own tag.
#[repr(C)]
pub(crate) struct GenericSlot {
    header: TagHeader,
    server: Arc<ServerInner>,
    cq: Arc<CompletionQueue>,
    call: *mut ffi::grpc_call,
    details: ffi::grpc_call_details,
    metadata: RecvMetadata,
}

// SAFETY: as for `RequestSlot`.
unsafe impl Send for GenericSlot {}

impl Drop for GenericSlot {
    fn drop(&mut self) {
        // SAFETY: the details were initialised in `request_generic`; destroy releases the
        // method and host slices the core filled in (if any).
        unsafe { ffi::grpc_call_details_destroy(&mut self.details) }
    }
}

fn request_generic(server: &Arc<ServerInner>, cq: &Arc<CompletionQueue>) {
    if server.shutting_down.load(Ordering::Acquire) {
        return;
    }
    let Some(borrow) = cq.borrow() else { return };
    let mut slot = Box::new(GenericSlot {
        header: TagHeader::for_box::<GenericSlot>(),
        server: server.clone(),
        cq: cq.clone(),
        call: ptr::null_mut(),
        details: ffi::grpc_call_details::default(),
        metadata: RecvMetadata::new(),
    });
    // SAFETY: initialises the details in place in the boxed slot.
    unsafe { ffi::grpc_call_details_init(&mut slot.details) };
    let call_p: *mut *mut ffi::grpc_call = &mut slot.call;
    let details_p: *mut ffi::grpc_call_details = &mut slot.details;
    let md_p: *mut ffi::grpc_metadata_array = &mut slot.metadata.array;
    let tag = Tag::from_box(slot).into_raw();
    // SAFETY: as in `request_registered`.
    let rc = unsafe { ffi::grpc_server_request_call(server.raw, call_p, details_p, md_p, borrow.raw(), borrow.raw(), tag) };
    if rc != ffi::GRPC_CALL_OK {
        // SAFETY: refused, so no event will carry the tag.
        drop(unsafe { Tag::from_raw(tag) });
    }
}

/// The buffers of an UNIMPLEMENTED answer.
struct UnimplementedReply {
    _call: Call,
    initial: SendMetadata,
    trailers: SendMetadata,
    details: OwnedSlice,
    cancelled: std::os::raw::c_int,
}

impl OnComplete for UnimplementedReply {}

impl GenericSlot {
    fn complete(mut self, success: bool) {
        if !success || self.call.is_null() {
            return;
        }
        request_generic(&self.server, &self.cq);
        // SAFETY: on success the core gave us one reference to a call bound to `cq`.
        let call = unsafe { Call::from_raw(std::mem::replace(&mut self.call, ptr::null_mut()), self.cq.clone(), self.server.env.clone()) };
        // SAFETY: the details' method slice was filled by the core and lives in the slot.
        let method = String::from_utf8_lossy(unsafe { crate::buffer::slice_bytes(&self.details.method) }).into_owned();
        let message = format!("method not found: {method}");
        let batch = Batch::new(UnimplementedReply {
            _call: call,
            initial: SendMetadata::empty(),
            trailers: SendMetadata::new(&Metadata::new(), None),
            details: OwnedSlice::copy_of(message.as_bytes()),
            cancelled: 0,
        });
        // SAFETY: the batch has not started; its ops point into its own state, which the tag
        // keeps alive; the state also holds the call.
        unsafe {
            let s = &mut *batch.state_ptr();
            let ops = [
                op::send_initial_metadata(&mut s.initial, 0),
                op::send_status_from_server(&mut s.trailers, Code::Unimplemented.as_i32() as ffi::grpc_status_code, &mut s.details),
                op::recv_close_on_server(&mut s.cancelled),
            ];
            if let Err(e) = s._call.start_batch(&ops, batch.tag()) {
                log::debug!("could not answer UNIMPLEMENTED for {method}: {e}");
            }
        }
    }
}

/// Completion of `grpc_server_shutdown_and_notify`, awaited by [`ShutdownFuture`] and by the
/// grace-period timer.
pub(crate) struct ShutdownSignal {
    done: Mutex<bool>,
    cond: Condvar,
    batch: Arc<Batch<()>>,
    /// When `Server::shutdown` was called.
    started: Instant,
    /// When the core reported the shutdown done.
    finished: OnceLock<Instant>,
    /// The grace ran out and the calls left were cancelled: how many there were.
    cancelled: OnceLock<usize>,
}

impl ShutdownSignal {
    fn new() -> Arc<ShutdownSignal> {
        Arc::new(ShutdownSignal {
            done: Mutex::new(false),
            cond: Condvar::new(),
            batch: Batch::new(()),
            started: Instant::now(),
            finished: OnceLock::new(),
            cancelled: OnceLock::new(),
        })
    }

    fn finish(&self) {
        let _ = self.finished.set(Instant::now());
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
        self.batch.complete(true);
    }

    /// Cancels every call of `inner` still running (the grace is over), counting them.
    fn cancel_the_rest(&self, inner: &ServerInner) {
        let _ = self.cancelled.set(inner.live_calls.count());
        // SAFETY: shutdown_and_notify was called (begin_shutdown) before any caller gets
        // here, and the server is alive (`inner`).
        unsafe { ffi::grpc_server_cancel_all_calls(inner.raw) };
    }

    fn report(&self) -> ShutdownReport {
        let finished = self.finished.get().copied().unwrap_or_else(Instant::now);
        ShutdownReport {
            grace_expired: self.cancelled.get().is_some(),
            cancelled_calls: self.cancelled.get().copied().unwrap_or(0),
            elapsed: finished.saturating_duration_since(self.started),
        }
    }

    /// Waits up to `timeout`; true if shutdown finished.
    fn wait(&self, timeout: Duration) -> bool {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let (done, _) = self
            .cond
            .wait_timeout_while(done, timeout, |d| !*d)
            .unwrap_or_else(|e| e.into_inner());
        *done
    }
}

/// Starts the core's shutdown: no new calls; `signal` fires when in-flight calls are done.
fn begin_shutdown(inner: &Arc<ServerInner>, signal: &Arc<ShutdownSignal>) {
    inner.stop_accepting_sockets();
    inner.shutting_down.store(true, Ordering::Release);
    let cq = &inner.env.cqs()[0];
    match cq.borrow() {
        Some(borrow) => {
            let tag = Tag::from_box(Box::new(ShutdownTag {
                header: TagHeader::for_box::<ShutdownTag>(),
                _server: inner.clone(),
                signal: signal.clone(),
            }))
            .into_raw();
            // SAFETY: the server is started and the queue registered with it and borrowed;
            // the tag is re-taken by the CQ thread when shutdown completes.
            unsafe { ffi::grpc_server_shutdown_and_notify(inner.raw, borrow.raw(), tag) };
        }
        None => signal.finish(),
    }
}

/// A running server. Dropping it stops it without waiting: in-flight calls are cancelled.
#[derive(Debug)]
pub struct Server {
    inner: Arc<ServerInner>,
    ports: Vec<(String, u16)>,
    shutdown: Option<Arc<ShutdownSignal>>,
}

impl std::fmt::Debug for ServerInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerInner").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownSignal").finish_non_exhaustive()
    }
}

impl Server {
    /// Every address given to [`ServerBuilder::bind`] with the port the core bound.
    pub fn bound_ports(&self) -> &[(String, u16)] {
        &self.ports
    }

    /// The port bound for the first address (handy with `127.0.0.1:0`).
    pub fn port(&self) -> u16 {
        self.ports.first().map_or(0, |p| p.1)
    }

    /// Serves a connection you accepted or made yourself (TCP or unix; a
    /// [`std::net::TcpStream`], a [`std::os::unix::net::UnixStream`], or a checked
    /// [`Socket::from_fd`]): the core owns it from here and closes it when it ends, as if it
    /// had accepted it on one of its ports. The client must speak gRPC over plaintext HTTP/2
    /// (the 1.51 core takes no TLS on such a socket). Fails once the server has begun to
    /// shut down (the socket is closed then).
    ///
    /// ```
    /// # let env = grpcore::Environment::new(1);
    /// let server = grpcore::ServerBuilder::new(&env).connections_only().build()?;
    /// let (server_end, client_end) = std::os::unix::net::UnixStream::pair().unwrap();
    /// server.add_connection(server_end)?;
    /// let channel = grpcore::ChannelBuilder::new(&env).connect_socket(client_end)?;
    /// # Ok::<(), grpcore::Error>(())
    /// ```
    pub fn add_connection(&self, socket: impl Into<Socket>) -> Result<(), Error> {
        self.inner.add_socket(socket.into()).map(drop)
    }

    /// What each [listener](ServerBuilder::listener) did with its connections so far.
    pub fn listener_stats(&self) -> Vec<ListenerStats> {
        self.inner.listeners.lock().unwrap_or_else(|e| e.into_inner()).iter().map(RunningListener::stats).collect()
    }

    /// Stops accepting calls, lets in-flight calls finish for up to `grace`, then cancels
    /// the rest. The future resolves when the server has fully stopped.
    ///
    /// First comes the lame-duck phase, when there is one: the
    /// [shutdown hooks](Service::on_shutdown) of the server's services run (a registered
    /// [health service](crate::health) turns every status `NOT_SERVING` and waits, at most
    /// `grace`, until its watchers have been sent that), and the server keeps accepting
    /// calls until the [lame-duck period](ServerBuilder::lame_duck_period) has passed. This
    /// runs on a thread of its own, so `shutdown` returns at once; the listeners close after
    /// it. A server with neither hooks nor a lame-duck period stops accepting calls before
    /// `shutdown` returns. Once it refuses calls, the services'
    /// [`on_refusing_calls`](Service::on_refusing_calls) hooks run (the health service ends
    /// its `Watch` calls there, so they do not hold the shutdown for the whole grace).
    pub fn shutdown(mut self, grace: Duration) -> ShutdownFuture {
        let signal = ShutdownSignal::new();
        self.shutdown = Some(signal.clone());
        let lame_duck = self.inner.has_lame_duck_phase();
        if !lame_duck {
            begin_shutdown(&self.inner, &signal);
            self.inner.run_refusing_hooks();
        }
        let inner = self.inner.clone();
        let thread_signal = signal.clone();
        let spawned = std::thread::Builder::new()
            .name("grpcore-shutdown".into())
            .spawn(move || {
                if lame_duck {
                    let start = Instant::now();
                    inner.run_shutdown_hooks(start + grace);
                    let rest = inner.lame_duck.saturating_sub(start.elapsed());
                    if !rest.is_zero() {
                        std::thread::sleep(rest);
                    }
                    begin_shutdown(&inner, &thread_signal);
                    inner.run_refusing_hooks();
                }
                if !thread_signal.wait(grace) {
                    thread_signal.cancel_the_rest(&inner);
                }
            });
        if spawned.is_err() {
            // No thread to wait on: the hooks get no time, and the calls no grace.
            if lame_duck {
                self.inner.run_shutdown_hooks(Instant::now());
                begin_shutdown(&self.inner, &signal);
                self.inner.run_refusing_hooks();
            }
            signal.cancel_the_rest(&self.inner);
        }
        ShutdownFuture { signal }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.shutdown.is_none() {
            // Dropped without a shutdown: the hooks still run, but get no time.
            self.inner.run_shutdown_hooks(Instant::now());
            begin_shutdown(&self.inner, &ShutdownSignal::new());
            self.inner.run_refusing_hooks();
            // SAFETY: shutdown_and_notify has been called; the server is alive.
            unsafe { ffi::grpc_server_cancel_all_calls(self.inner.raw) };
        }
    }
}

/// Resolves when a server has stopped (see [`Server::shutdown`]), with a
/// [`ShutdownReport`]: awaiting it and [`wait`](Self::wait)ing for it give the same
/// `Result<ShutdownReport, Error>`.
///
/// ```no_run
/// # let env = grpcore::Environment::new(1);
/// # let server = grpcore::ServerBuilder::new(&env).bind("127.0.0.1:0").build()?;
/// let report = server.shutdown(std::time::Duration::from_secs(5)).wait()?;
/// if report.grace_expired {
///     eprintln!("{} calls were cancelled after {:?}", report.cancelled_calls, report.elapsed);
/// }
/// # Ok::<(), grpcore::Error>(())
/// ```
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct ShutdownFuture {
    signal: Arc<ShutdownSignal>,
}

/// How a server's shutdown went: what [`ShutdownFuture`] resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The grace period ran out before every call had finished: the calls left were
    /// cancelled (their clients saw `CANCELLED`). `false` when every call finished in time.
    pub grace_expired: bool,
    /// How many calls were still running when the grace ran out, and were cancelled (zero
    /// when it did not run out).
    pub cancelled_calls: usize,
    /// From [`Server::shutdown`] to the server having stopped (the lame-duck phase, if
    /// any, included).
    pub elapsed: Duration,
}

impl Future for ShutdownFuture {
    type Output = Result<ShutdownReport, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.signal.batch.poll_done(cx) {
            Some(_) => Poll::Ready(Ok(self.signal.report())),
            None => Poll::Pending,
        }
    }
}

impl ShutdownFuture {
    /// Blocks until the server has stopped.
    ///
    /// Fails at once when called on a completion-queue thread (it would wait for itself).
    pub fn wait(self) -> Result<ShutdownReport, Error> {
        crate::blocking::block_on(self)?
    }
}
