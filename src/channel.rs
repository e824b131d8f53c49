//! Client channels: a connection (pool) to a target, and the calls made on it.

use std::ffi::CString;
use std::os::raw::c_void;
use std::ptr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use grpcore_sys as ffi;

use crate::args::{size_limit, ChannelArgs};
use crate::call::write::Compression;
use crate::env::Environment;
use crate::credentials::ChannelCredentials;
use crate::socket::Socket;
use crate::error::{ConfigErrorKind, Error};
use crate::interceptor::{ClientChain, ClientInterceptor, DynClientInterceptor};
use crate::quota::ResourceQuota;
use crate::settings::{self, keys, Zero};

/// Configures and creates a [`Channel`] (insecure; TLS comes with credentials).
///
/// ```no_run
/// let env = grpcore::Environment::new(1);
/// let channel = grpcore::ChannelBuilder::new(&env)
///     .max_receive_message_len(16 << 20)
///     .connect("127.0.0.1:50051")
///     .unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct ChannelBuilder {
    env: Environment,
    args: ChannelArgs,
    error: Option<Error>,
    /// Whether `service_config` was called (to explain a channel the core rejects).
    has_service_config: bool,
    /// The JSON given to `service_config`, merged with `health_check` at connect.
    service_config: Option<String>,
    /// The service name of `health_check`.
    health_check: Option<String>,
    interceptors: Interceptors,
    /// Whether a per-channel xDS bootstrap was given (else `xds:` targets need one in the
    /// environment).
    #[cfg(feature = "xds")]
    xds_bootstrap: bool,
}

/// A channel's client interceptors, outermost first.
#[derive(Clone, Default)]
struct Interceptors(Vec<Arc<dyn DynClientInterceptor>>);

impl std::fmt::Debug for Interceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} interceptor(s)", self.0.len())
    }
}

impl ChannelBuilder {
    /// A builder whose calls run on `env`'s completion queues.
    pub fn new(env: &Environment) -> ChannelBuilder {
        ChannelBuilder {
            env: env.clone(),
            args: ChannelArgs::default(),
            error: None,
            has_service_config: false,
            service_config: None,
            health_check: None,
            interceptors: Interceptors::default(),
            #[cfg(feature = "xds")]
            xds_bootstrap: false,
        }
    }

    /// Adds an interceptor that sees every call made on the channel before it is sent, and
    /// its end (see [`interceptor`](crate::interceptor)); interceptors run in the order they
    /// were added. A channel with none pays nothing for the feature.
    pub fn intercept(mut self, interceptor: impl ClientInterceptor) -> ChannelBuilder {
        self.interceptors.0.push(Arc::new(interceptor));
        self
    }

    fn record(mut self, r: Result<(), Error>) -> ChannelBuilder {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
        self
    }

    /// Largest message this channel accepts, in bytes; `None` for no limit.
    /// Default: 4 MiB. A larger response fails the call with `RESOURCE_EXHAUSTED`.
    pub fn max_receive_message_len(self, bytes: impl Into<Option<usize>>) -> ChannelBuilder {
        let r = size_limit("max_receive_message_len", bytes.into()).and_then(|v| {
            let mut args = self.args.clone();
            args.set_int("grpc.max_receive_message_length", v).map(|()| args)
        });
        self.apply(r)
    }

    /// Largest message this channel sends, in bytes; `None` (the default) for no limit.
    /// A larger request fails the call with `RESOURCE_EXHAUSTED` before it is sent.
    pub fn max_send_message_len(self, bytes: impl Into<Option<usize>>) -> ChannelBuilder {
        let r = size_limit("max_send_message_len", bytes.into()).and_then(|v| {
            let mut args = self.args.clone();
            args.set_int("grpc.max_send_message_length", v).map(|()| args)
        });
        self.apply(r)
    }

    /// Prepended to the `user-agent` header (the core appends its own). Default: none.
    pub fn user_agent(self, agent: &str) -> ChannelBuilder {
        let mut args = self.args.clone();
        let r = args.set_str("grpc.primary_user_agent", agent).map(|()| args);
        self.apply(r)
    }

    /// Sets an integer argument from a checked value, or records the check's error.
    fn int_setting(mut self, key: &str, value: Result<i32, Error>) -> ChannelBuilder {
        let r = value.and_then(|v| self.args.set_int(key, v));
        self.record(r)
    }

    /// Sets a string argument from a checked value, or records the check's error.
    fn str_setting(mut self, key: &str, value: &str, check: Result<(), Error>) -> ChannelBuilder {
        let r = check.and_then(|()| self.args.set_str(key, value));
        self.record(r)
    }

    /// How long a connection may go without receiving anything before the channel pings the
    /// server to check it is still there (`grpc.keepalive_time_ms`, whole milliseconds,
    /// rounded up). Default: never (keepalive is off on channels). Must be greater than zero.
    ///
    /// The 1.51 core sends at most one ping per second on a connection whatever this says,
    /// and by default no more than two pings without data in between (see
    /// [`http2_max_pings_without_data`](Self::http2_max_pings_without_data)). Servers reject
    /// frequent pings (by default, more than one per 5 minutes while no data flows) by closing
    /// the connection with `GOAWAY too_many_pings`; the core then doubles this interval for
    /// the channel's later connections.
    pub fn keepalive_time(self, interval: Duration) -> ChannelBuilder {
        let v = settings::millis("keepalive_time", interval, Zero::Rejected);
        self.int_setting(keys::KEEPALIVE_TIME_MS, v)
    }

    /// How long to wait for the acknowledgement of a keepalive ping before closing the
    /// connection, failing its calls with `UNAVAILABLE` (`grpc.keepalive_timeout_ms`, whole
    /// milliseconds). Default: 20 s. Must be greater than zero.
    pub fn keepalive_timeout(self, timeout: Duration) -> ChannelBuilder {
        let v = settings::millis("keepalive_timeout", timeout, Zero::Rejected);
        self.int_setting(keys::KEEPALIVE_TIMEOUT_MS, v)
    }

    /// Whether keepalive pings are sent while no call is active
    /// (`grpc.keepalive_permit_without_calls`). Default: false. Servers must allow it too
    /// ([`ServerBuilder::keepalive_permit_without_calls`](crate::ServerBuilder::keepalive_permit_without_calls)).
    pub fn keepalive_permit_without_calls(self, permit: bool) -> ChannelBuilder {
        self.int_setting(keys::KEEPALIVE_PERMIT_WITHOUT_CALLS, Ok(permit as i32))
    }

    /// How many pings (keepalive and bandwidth probes) a connection may send before it has
    /// to send a data or header frame again (`grpc.http2.max_pings_without_data`).
    /// Default: 2. `0` means no limit: keepalive then goes on during a long silent call.
    pub fn http2_max_pings_without_data(self, pings: u32) -> ChannelBuilder {
        let v = settings::count("http2_max_pings_without_data", pings, 0);
        self.int_setting(keys::HTTP2_MAX_PINGS_WITHOUT_DATA, v)
    }

    /// The HTTP/2 initial stream window this side announces, in bytes: how much the server
    /// may send on one call before waiting for a window update
    /// (`grpc.http2.lookahead_bytes`). From 5 to 2^31 - 1. Default: 65,535 (HTTP/2's).
    ///
    /// While [bandwidth probing](Self::http2_bdp_probe) is on (the default) the core resizes
    /// the window from its bandwidth-delay estimate, so this is only where it starts; turn
    /// probing off for a fixed window. The 1.51 core has no separate connection-window
    /// setting: it derives the connection window from the windows of its streams.
    pub fn http2_initial_stream_window_size(self, bytes: u32) -> ChannelBuilder {
        let v = settings::window("http2_initial_stream_window_size", bytes);
        self.int_setting(keys::HTTP2_STREAM_LOOKAHEAD_BYTES, v)
    }

    /// Whether the core probes the bandwidth-delay product with pings and grows its
    /// flow-control windows to match (`grpc.http2.bdp_probe`). Default: true.
    pub fn http2_bdp_probe(self, enable: bool) -> ChannelBuilder {
        self.int_setting(keys::HTTP2_BDP_PROBE, Ok(enable as i32))
    }

    /// After this long without calls the channel closes its connections and goes
    /// [`Idle`](crate::ConnectivityState::Idle); the next call reconnects
    /// (`grpc.client_idle_timeout_ms`, whole milliseconds, rounded up). Default: never (the
    /// 1.51 core's default). Must be greater than zero.
    pub fn idle_timeout(self, timeout: Duration) -> ChannelBuilder {
        let v = settings::millis("idle_timeout", timeout, Zero::Rejected);
        self.int_setting(keys::CLIENT_IDLE_TIMEOUT_MS, v)
    }

    /// The `:authority` sent with every call (and the name TLS would check) instead of the
    /// one derived from the target (`grpc.default_authority`). Default: the target's
    /// `host[:port]`. Must be non-empty, without whitespace.
    pub fn default_authority(self, authority: &str) -> ChannelBuilder {
        let check = settings::token("default_authority", authority);
        self.str_setting(keys::DEFAULT_AUTHORITY, authority, check)
    }

    /// The load-balancing policy across the addresses the target resolves to
    /// (`grpc.lb_policy_name`): `pick_first` (the default: one connection, to the first
    /// address that works) or `round_robin` (a connection to every address, calls spread
    /// across them). A `loadBalancingConfig` in the [service config](Self::service_config)
    /// takes precedence. The 1.51 core falls back to `pick_first`, logging an error, for a
    /// name it does not know. Must be non-empty, without whitespace.
    pub fn load_balancing_policy(self, name: &str) -> ChannelBuilder {
        let check = settings::token("load_balancing_policy", name);
        self.str_setting(keys::LB_POLICY_NAME, name, check)
    }

    /// The service config (JSON) used while the name resolver supplies none — which, in
    /// 1.51, is always for `ipv4:`, `ipv6:` and `unix:` targets and for `dns:` unless TXT
    /// lookups are enabled (`grpc.service_config`). Per-method timeouts, retry and hedging
    /// policies, wait-for-ready, message limits and the LB config live here. Default: `{}`.
    ///
    /// The core parses and checks it when the channel is created: [`connect`](Self::connect)
    /// fails with the core's reason if it rejects it (not JSON, not an object, a bad field).
    ///
    /// The 1.51 core ends per-method `timeout`s 1 to 2 s early (it adds the timeout to the
    /// call's start read on a clock whose epoch is 1–2 s off the deadline clock's), so a
    /// timeout of 1 s or less expires at once: use [`CallOptions::timeout`](crate::CallOptions::timeout) for short
    /// deadlines.
    ///
    /// ```
    /// let env = grpcore::Environment::new(1);
    /// let channel = grpcore::ChannelBuilder::new(&env)
    ///     .service_config(r#"{"methodConfig": [{
    ///         "name": [{"service": "demo.Echo"}],
    ///         "timeout": "2s",
    ///         "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s",
    ///                         "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
    ///     }]}"#)
    ///     .connect("127.0.0.1:50051")
    ///     .unwrap();
    /// # drop(channel);
    /// ```
    pub fn service_config(mut self, json: &str) -> ChannelBuilder {
        self.has_service_config = true;
        self.service_config = Some(json.to_string());
        self.str_setting(keys::SERVICE_CONFIG, json, Ok(()))
    }

    /// Client-side health checking: the channel spreads calls over the target's addresses
    /// with `round_robin`, and on each connection watches the standard health service
    /// (`grpc.health.v1.Health/Watch`) for `service` (`""`: the server as a whole), sending
    /// calls only to backends that report `SERVING`. A backend that turns `NOT_SERVING`
    /// gets no new calls until it reports `SERVING` again; when no backend is serving,
    /// calls fail with `UNAVAILABLE` (or wait, with
    /// [`CallOptions::wait_for_ready`](crate::CallOptions::wait_for_ready)(crate::CallOptions::wait_for_ready)). The C core
    /// does the watching; a grpcore server serves it with
    /// [`HealthReporter::service`](crate::health::HealthReporter::service).
    ///
    /// This puts `"healthCheckConfig": {"serviceName": service}` in the channel's
    /// [service config](Self::service_config) (added to the one given there, if any, which
    /// must then be a JSON object without a `healthCheckConfig` of its own), and sets the
    /// [load-balancing policy](Self::load_balancing_policy) to `round_robin` unless it was
    /// set: `pick_first` does not health-check in the 1.51 core. A policy the service config
    /// names (`loadBalancingConfig`) takes precedence over that setting in the core.
    ///
    /// What the core does, worth knowing:
    /// - a backend whose server does not implement `Watch` (`UNIMPLEMENTED`) is taken as
    ///   healthy; any other failure of the watch makes it unusable until a new watch,
    ///   retried with backoff, reports `SERVING`;
    /// - the channel argument `grpc.inhibit_health_checking` turns all this off, so setting
    ///   it to non-zero with [`raw_int_arg`](Self::raw_int_arg) makes `connect` fail;
    /// - like any default service config, it is replaced by one the name resolver supplies
    ///   (`dns:` with TXT lookups on).
    ///
    /// ```
    /// let env = grpcore::Environment::new(1);
    /// let channel = grpcore::ChannelBuilder::new(&env)
    ///     .health_check("helloworld.Greeter")
    ///     .connect("ipv4:127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053")
    ///     .unwrap();
    /// # drop(channel);
    /// ```
    pub fn health_check(mut self, service: &str) -> ChannelBuilder {
        self.health_check = Some(service.to_string());
        self
    }

    /// The service config with the health check added (`None`: nothing to change).
    fn health_service_config(&self) -> Result<Option<String>, Error> {
        let Some(service) = &self.health_check else { return Ok(None) };
        if self.args.get_int("grpc.inhibit_health_checking").is_some_and(|v| v != 0) {
            return Err(Error::config_kind(ConfigErrorKind::Target,
                "health_check was asked for, but grpc.inhibit_health_checking is set: the core would not check",
            ));
        }
        let check = format!(r#""healthCheckConfig":{{"serviceName":{}}}"#, json_string(service));
        let Some(json) = &self.service_config else { return Ok(Some(format!("{{{check}}}"))) };
        // The core parses the result and says what is wrong with the rest; only what the
        // merge itself needs is checked here.
        let Some(members) = json.trim_start().strip_prefix('{') else {
            return Err(Error::Config("health_check needs the service_config to be a JSON object ({...})".into()));
        };
        if json.contains("\"healthCheckConfig\"") {
            return Err(Error::Config(
                "health_check was asked for, but the service_config has a healthCheckConfig already: use one or the other".into(),
            ));
        }
        let comma = if members.trim_start().starts_with('}') { "" } else { "," };
        Ok(Some(format!("{{{check}{comma}{members}")))
    }

    /// Whether the core retries calls as the service config's retry policies say
    /// (`grpc.enable_retries`). Default: true. Off, every call is one attempt.
    pub fn enable_retries(self, enable: bool) -> ChannelBuilder {
        self.int_setting(keys::ENABLE_RETRIES, Ok(enable as i32))
    }

    /// Compresses every request message with `algorithm` unless the call chooses otherwise
    /// (`grpc.default_compression_algorithm`). Default: [`Compression::None`].
    pub fn default_compression(self, algorithm: Compression) -> ChannelBuilder {
        self.int_setting(keys::DEFAULT_COMPRESSION_ALGORITHM, Ok(algorithm.algorithm()))
    }

    /// Draws the channel's transport and call memory from `quota` (`grpc.resource_quota`).
    /// Default: the core's process-wide quota, which has no limit.
    pub fn resource_quota(mut self, quota: &ResourceQuota) -> ChannelBuilder {
        self.args.set_quota(quota);
        self
    }

    /// The xDS bootstrap for this channel alone (an `xds:///name` target): the core makes
    /// an xDS client for this channel with it, whatever the environment says. See
    /// [`grpcore::xds`](crate::xds) for what that costs and for the process-wide
    /// alternative (`GRPC_XDS_BOOTSTRAP`). An invalid bootstrap makes `connect` fail.
    ///
    /// ```
    /// # let env = grpcore::Environment::new(1);
    /// let bootstrap = grpcore::xds::XdsBootstrap::new().server("127.0.0.1:18000").node_id("n1");
    /// let channel = grpcore::ChannelBuilder::new(&env).xds_bootstrap(&bootstrap).connect("xds:///echo")?;
    /// # drop(channel); Ok::<(), grpcore::Error>(())
    /// ```
    #[cfg(feature = "xds")]
    pub fn xds_bootstrap(self, bootstrap: &crate::xds::XdsBootstrap) -> ChannelBuilder {
        let json = bootstrap.to_json();
        self.xds_bootstrap_checked(json)
    }

    /// The xDS bootstrap for this channel alone, as JSON (the contents of a bootstrap file),
    /// checked with [`xds::check_json`](crate::xds::check_json).
    #[cfg(feature = "xds")]
    pub fn xds_bootstrap_json(self, json: &str) -> ChannelBuilder {
        let json = crate::xds::check_json(json).map(|()| json.to_string());
        self.xds_bootstrap_checked(json)
    }

    /// The xDS bootstrap for this channel alone, read from `path` now (unreadable:
    /// [`ConfigErrorKind::File`] at `connect`; invalid: [`ConfigErrorKind::Setting`]).
    #[cfg(feature = "xds")]
    pub fn xds_bootstrap_file(self, path: impl AsRef<std::path::Path>) -> ChannelBuilder {
        let json = crate::xds::read_file(path.as_ref());
        self.xds_bootstrap_checked(json)
    }

    #[cfg(feature = "xds")]
    fn xds_bootstrap_checked(mut self, json: Result<String, Error>) -> ChannelBuilder {
        self.xds_bootstrap = true;
        let r = json.and_then(|json| self.args.set_str(crate::xds::BOOTSTRAP_ARG, &json));
        self.record(r)
    }

    /// Sets any integer channel argument the core understands (escape hatch).
    pub fn raw_int_arg(self, key: &str, value: i32) -> ChannelBuilder {
        let mut args = self.args.clone();
        let r = args.set_int(key, value).map(|()| args);
        self.apply(r)
    }

    /// Sets any string channel argument the core understands (escape hatch).
    pub fn raw_str_arg(self, key: &str, value: &str) -> ChannelBuilder {
        let mut args = self.args.clone();
        let r = args.set_str(key, value).map(|()| args);
        self.apply(r)
    }

    fn apply(mut self, r: Result<ChannelArgs, Error>) -> ChannelBuilder {
        match r {
            Ok(args) => {
                self.args = args;
                self
            }
            Err(e) => self.record(Err(e)),
        }
    }

    /// Creates an insecure (plaintext) channel to `target`.
    ///
    /// Targets as the core's resolvers accept them: `host:port`,
    /// `dns:[//authority/]host[:port]`, `ipv4:addr:port[,addr:port...]`, `ipv6:[addr]:port`,
    /// `unix:path`, `unix:///absolute/path`, `unix-abstract:name`, `xds:///name`. A port
    /// must be a number from 0 to 65535 (or `http`, `https`): anything else
    /// (`127.0.0.1:99999`, `localhost:abc`, `localhost:`) is an [`Error::Config`], because
    /// the core's DNS resolver would read it as another port (99999 as 34463, `abc` as 0).
    /// The core judges the rest: a target its resolver refuses at once (`ipv4:1.2.3:80`,
    /// an empty target) is an [`Error::Config`] carrying the core's reason; one it takes but
    /// cannot resolve (`:80`, an unknown host) fails each call with `UNAVAILABLE` and the
    /// resolver's reason (`DNS resolution failed for …`).
    ///
    /// The channel connects lazily, on the first call. While no server answers, calls fail
    /// at once with `UNAVAILABLE` unless they set [`CallOptions::wait_for_ready`](crate::CallOptions::wait_for_ready), which
    /// makes them wait (within their deadline) for the server to come up.
    pub fn connect(self, target: &str) -> Result<Channel, Error> {
        self.connect_with_credentials(target, &ChannelCredentials::insecure())
    }

    /// Creates a channel to `target` (as in [`connect`](Self::connect)) whose connections
    /// are secured by `credentials`: TLS, mutual TLS, local, with call credentials.
    ///
    /// Each call of this makes the core's credentials afresh, so the new channel never
    /// shares connections with channels created before it.
    pub fn connect_with_credentials(mut self, target: &str, credentials: &ChannelCredentials) -> Result<Channel, Error> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        // A target refused here costs nothing: checked before any core object is made.
        let c_target = CString::new(target)
            .map_err(|_| Error::config_kind(ConfigErrorKind::Target, format!("invalid channel target {target:?}: it contains a NUL byte")))?;
        crate::address::check_target(target)
            .map_err(|why| Error::config_kind(ConfigErrorKind::Target, format!("invalid channel target {target:?}: {why}")))?;
        if let Some(config) = self.health_service_config()? {
            self.has_service_config = true;
            self.args.set_str(keys::SERVICE_CONFIG, &config)?;
            if !self.args.has(keys::LB_POLICY_NAME) {
                self.args.set_str(keys::LB_POLICY_NAME, "round_robin")?;
            }
        }
        #[cfg(feature = "xds")]
        if !self.xds_bootstrap && is_xds_target(target) && !self.args.has(crate::xds::BOOTSTRAP_ARG) {
            crate::xds::check_environment()?;
        }
        credentials.apply_args(&mut self.args)?;
        let creds = credentials.create()?;
        // The core judges the target itself (its resolvers: dns, ipv4, ipv6, unix, xds, …);
        // a channel it refuses comes back lame, with the reason only in its log, which is
        // captured here to explain the refusal.
        let (raw, core_errors) = crate::log_bridge::capture_errors(|| {
            self.args.with_raw(|args| {
                // SAFETY: the target string, the arguments and the credentials live across the
                // call; the channel takes its own reference to the credentials (ours goes with
                // `creds`).
                unsafe { ffi::grpc_channel_create(c_target.as_ptr(), creds.as_ptr(), args) }
            })
        });
        drop(creds);
        if raw.is_null() {
            return Err(Error::config_kind(ConfigErrorKind::Target, format!("the core could not create a channel to {target:?}")));
        }
        self.finish(raw, target, &core_errors, false)
    }

    /// Creates a channel over a connected socket you made (TCP or unix: a
    /// [`std::net::TcpStream`], a [`std::os::unix::net::UnixStream`] such as one end of
    /// `UnixStream::pair()`, or a checked [`Socket::from_fd`]). The channel owns the socket
    /// and closes it when the channel is dropped.
    ///
    /// Such a channel is one connection for its whole life: it never reconnects, so once
    /// the connection ends its calls fail with `UNAVAILABLE`. It is plaintext: the 1.51
    /// core takes only insecure credentials over a socket it did not open (use
    /// [`connect_with_credentials`](Self::connect_with_credentials) for TLS). Its
    /// `:authority` is [`default_authority`](Self::default_authority) if set, else
    /// `localhost`. Without a client channel in the core it has no service config (so no
    /// [`health_check`](Self::health_check), retry or load-balancing policy: asking for
    /// one is an [`Error::Config`]) and no connectivity state: [`Channel::state`] reports
    /// [`Ready`](crate::ConnectivityState::Ready) (the socket was connected when it was
    /// given) and a lost connection shows as calls failing with `UNAVAILABLE`.
    ///
    /// ```
    /// # let env = grpcore::Environment::new(1);
    /// let server = grpcore::ServerBuilder::new(&env).connections_only().build()?;
    /// let (server_end, client_end) = std::os::unix::net::UnixStream::pair().unwrap();
    /// server.add_connection(server_end)?;
    /// let channel = grpcore::ChannelBuilder::new(&env).connect_socket(client_end)?;
    /// # Ok::<(), grpcore::Error>(())
    /// ```
    pub fn connect_socket(mut self, socket: impl Into<Socket>) -> Result<Channel, Error> {
        let socket = socket.into();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.health_check.is_some() || self.has_service_config {
            return Err(Error::config_kind(
                ConfigErrorKind::Setting,
                "a channel over a socket has no service config, so no health_check, retries or load balancing: \
                 the core makes it a direct channel over that one connection",
            ));
        }
        if !self.args.has(keys::DEFAULT_AUTHORITY) {
            self.args.set_str(keys::DEFAULT_AUTHORITY, "localhost")?;
        }
        let target = match socket.peer() {
            crate::socket::Peer::Tcp(addr) => format!("fd:{addr}"),
            crate::socket::Peer::Unix(_) => "fd:unix".to_string(),
        };
        let c_target = CString::new(target.as_str()).expect("no NUL in a formatted address");
        let fd = socket.into_core_fd()?;
        let creds = ChannelCredentials::insecure().create()?;
        // SAFETY: the target, arguments and credentials live across the call. `fd` is a
        // connected stream socket whose ownership passes to the core here; with insecure
        // credentials (the only kind 1.51 takes) it always builds a channel on it, which
        // closes it when destroyed.
        let raw = self
            .args
            .with_raw(|args| unsafe { ffi::grpc_channel_create_from_fd(c_target.as_ptr(), fd, creds.as_ptr(), args) });
        drop(creds);
        if raw.is_null() {
            return Err(Error::config(format!("the core could not create a channel over socket {fd}")));
        }
        self.finish(raw, &target, &[], true)
    }

    /// Wraps a channel the core made and checks it is not lame (`core_errors`: what the core
    /// logged while making it). `direct` for a channel over one socket.
    fn finish(mut self, raw: *mut ffi::grpc_channel, target: &str, core_errors: &[String], direct: bool) -> Result<Channel, Error> {
        let interceptors = std::mem::take(&mut self.interceptors.0);
        let inner = ChannelInner {
            raw,
            target: target.into(),
            env: self.env,
            registered: RwLock::new(Vec::new()),
            interceptors: (!interceptors.is_empty()).then(|| interceptors.into()),
            direct,
        };
        if direct {
            return Ok(Channel { inner: Arc::new(inner) });
        }
        // A channel the core refused (a target no resolver accepts, a service config it
        // rejects) is "lame": it reports TRANSIENT_FAILURE before anything was tried (a real
        // channel starts IDLE), and its calls fail with a fixed message.
        // SAFETY: the channel is live; without try_to_connect this only reads state.
        let state = unsafe { ffi::grpc_channel_check_connectivity_state(inner.raw, 0) };
        if state == ffi::GRPC_CHANNEL_TRANSIENT_FAILURE || state == ffi::GRPC_CHANNEL_SHUTDOWN {
            let reason = refusal_reason(core_errors);
            return Err(if self.has_service_config {
                Error::config_kind(ConfigErrorKind::Setting, format!("the core refused the channel to target {target:?} with its service_config: {reason}"))
            } else {
                Error::config_kind(ConfigErrorKind::Target, format!("invalid channel target {target:?}: the core refused it: {reason}"))
            });
        }
        Ok(Channel { inner: Arc::new(inner) })
    }
}

/// Why the core refused a channel, from the error lines it logged while creating it: the
/// channel stack's error ("the target uri is not valid: …", "errors validating service
/// config: …") after the lines that led to it ("invalid ipv4 address: '1.2.3'").
fn refusal_reason(core_errors: &[String]) -> String {
    const FAILED: &str = "channel stack builder failed: ";
    let Some(last) = core_errors.iter().rposition(|l| l.contains(FAILED)) else {
        return "the core gave no reason (its log says why unless GRPC_VERBOSITY=NONE)".into();
    };
    let (before, failed) = core_errors[..=last].split_at(last);
    let failed = &failed[0];
    let mut reason = failed[failed.find(FAILED).map_or(0, |i| i + FAILED.len())..].to_string();
    for detail in before.iter().rev().take(3) {
        reason.push_str(" (");
        reason.push_str(detail);
        reason.push(')');
    }
    reason
}

/// `text` as a JSON string literal.
/// Whether the core's `xds` resolver takes `target`.
#[cfg(feature = "xds")]
fn is_xds_target(target: &str) -> bool {
    target.starts_with("xds:")
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) struct ChannelInner {
    pub(crate) raw: *mut ffi::grpc_channel,
    pub(crate) target: Arc<str>,
    /// The client interceptors, outermost first; `None` when there are none.
    pub(crate) interceptors: Option<ClientChain>,
    pub(crate) env: Environment,
    /// Methods registered with the core, by their static path (see [`Channel::registered`]).
    registered: RwLock<Vec<(&'static str, RegisteredMethod)>>,
    /// A channel over one socket (`connect_socket`): the core made it without a client
    /// channel, so it has no connectivity state to read or watch (watching one aborts the
    /// 1.51 core).
    pub(crate) direct: bool,
}

/// A handle from `grpc_channel_register_call`, valid for the channel's whole life (the core
/// frees it with the channel).
#[derive(Clone, Copy)]
pub(crate) struct RegisteredMethod(pub(crate) *mut c_void);

// SAFETY: the handle is an immutable registration record inside the channel; the core reads
// it from any thread when creating a call.
unsafe impl Send for RegisteredMethod {}
// SAFETY: as above.
unsafe impl Sync for RegisteredMethod {}

/// At most this many methods are registered per channel; calls to further methods (only
/// conceivable with leaked, generated paths) are created unregistered.
const MAX_REGISTERED: usize = 256;

// SAFETY: the core's channel is thread-safe; the pointer is destroyed once, in Drop, after
// every call made on it has been released (calls hold the channel through `Channel`).
unsafe impl Send for ChannelInner {}
// SAFETY: as above.
unsafe impl Sync for ChannelInner {}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        // SAFETY: we own the channel; calls keep their own core references to it.
        unsafe { ffi::grpc_channel_destroy(self.raw) }
    }
}

/// A client channel: cheap to clone, safe to share between threads and tasks.
#[derive(Clone)]
pub struct Channel {
    pub(crate) inner: Arc<ChannelInner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("target", &self.inner.target).finish()
    }
}

impl Channel {
    /// The target this channel was created for.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The environment whose queues run this channel's calls.
    pub fn env(&self) -> &Environment {
        &self.inner.env
    }

    /// The core's registration of the method at `path`, registering it on first use.
    ///
    /// A registered call carries its path as a refcounted slice made once. Calls created
    /// from a path slice each time cost more: a static slice is copied by the core whenever
    /// it copies the request headers (once per call), a copied one is an allocation per call.
    pub(crate) fn registered(&self, path: &'static str) -> Option<RegisteredMethod> {
        let find = |methods: &[(&'static str, RegisteredMethod)]| {
            methods
                .iter()
                .find(|(p, _)| ptr::eq(*p, path) || *p == path)
                .map(|&(_, m)| m)
        };
        // A poisoned lock only means a panic elsewhere while it was held; the list is
        // still valid (entries are pushed whole).
        if let Some(m) = find(&self.inner.registered.read().unwrap_or_else(|e| e.into_inner())) {
            return Some(m);
        }
        let mut methods = self.inner.registered.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = find(&methods) {
            return Some(m);
        }
        if methods.len() >= MAX_REGISTERED {
            return None;
        }
        let c_path = CString::new(path).ok()?;
        // SAFETY: the channel is live; the core copies the method string and keeps the
        // registration until the channel is destroyed.
        let handle = unsafe { ffi::grpc_channel_register_call(self.inner.raw, c_path.as_ptr(), ptr::null(), ptr::null_mut()) };
        if handle.is_null() {
            return None;
        }
        methods.push((path, RegisteredMethod(handle)));
        Some(RegisteredMethod(handle))
    }
}

#[cfg(test)]
mod tests {
    use super::{json_string, refusal_reason};

    #[test]
    fn health_check_is_added_to_the_service_config() {
        let env = crate::Environment::new(1);
        let config = |b: super::ChannelBuilder| b.health_service_config().unwrap().unwrap();
        assert_eq!(config(super::ChannelBuilder::new(&env).health_check("a.B")), r#"{"healthCheckConfig":{"serviceName":"a.B"}}"#);
        assert_eq!(
            config(
                super::ChannelBuilder::new(&env)
                    .service_config(r#" {"loadBalancingConfig": [{"weighted": {}}], "methodConfig": []}"#)
                    .health_check("")
            ),
            r#"{"healthCheckConfig":{"serviceName":""},"loadBalancingConfig": [{"weighted": {}}], "methodConfig": []}"#
        );
        assert_eq!(
            config(super::ChannelBuilder::new(&env).service_config("{ }").health_check("q\"x")),
            r#"{"healthCheckConfig":{"serviceName":"q\"x"} }"#
        );
        assert!(super::ChannelBuilder::new(&env).health_service_config().unwrap().is_none());
        for (builder, want) in [
            (super::ChannelBuilder::new(&env).raw_int_arg("grpc.inhibit_health_checking", 1), "grpc.inhibit_health_checking"),
            (super::ChannelBuilder::new(&env).service_config("[]"), "JSON object"),
            (super::ChannelBuilder::new(&env).service_config(r#"{"healthCheckConfig": {}}"#), "healthCheckConfig already"),
        ] {
            let err = builder.health_check("").health_service_config().unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("pkg.Service"), r#""pkg.Service""#);
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
    }

    #[test]
    fn the_core_s_reason_is_found_in_its_log() {
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            refusal_reason(&lines(&[
                "unrelated",
                "invalid ipv4 address: '1.2.3'",
                "channel stack builder failed: UNKNOWN: the target uri is not valid: ipv4:1.2.3:80",
            ])),
            "UNKNOWN: the target uri is not valid: ipv4:1.2.3:80 (invalid ipv4 address: '1.2.3') (unrelated)"
        );
        assert!(refusal_reason(&[]).contains("no reason"));
    }
}
