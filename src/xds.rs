//! xDS: channels whose routes, clusters and endpoints come from a control plane.
//!
//! The C core does the work (its `xds` resolver, load-balancing policies and xDS client);
//! this module owns the *bootstrap*, the JSON that tells the core's xDS client which
//! control plane to ask and who it is, and the checks that make a missing or bad
//! bootstrap an error when a channel to an `xds:///name` target is created, instead of a
//! channel whose calls all fail. It never speaks xDS itself.
//!
//! # Where the core finds its bootstrap (1.51)
//!
//! - **Per channel**: [`ChannelBuilder::xds_bootstrap`](crate::ChannelBuilder::xds_bootstrap) puts the JSON in the channel
//!   argument `grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config`. The core then
//!   makes an xDS client *for that channel alone* (one ADS stream to the control plane per
//!   channel, and the channel is not in the process's CSDS dump). The core's header calls
//!   this "useful in tests", not "the intended way": it is the only way to give two channels
//!   of one process different control planes, and the only way that needs no environment.
//! - **Per process**: the variable `GRPC_XDS_BOOTSTRAP` (a file's path) or, when it is not
//!   set, `GRPC_XDS_BOOTSTRAP_CONFIG` (the JSON itself). The core reads them when it
//!   creates its process-wide xDS client: when the first `xds:` channel starts resolving
//!   (on its first call or connect), and again only after every channel using that client
//!   is gone. Set them before the program starts threads (setting the environment of a
//!   running multi-threaded process races with the core reading it); changing them later
//!   does not affect a client that exists. [`XdsBootstrap::to_json`] makes the JSON for
//!   either variable.
//!
//! In both cases [`ChannelBuilder::connect`](crate::ChannelBuilder::connect) checks the bootstrap the core will read (the
//! argument, else the file, else the variable) and returns [`Error::Config`] when there is
//! none (kind [`ConfigErrorKind::Setting`]), when the file cannot be read
//! ([`ConfigErrorKind::File`], the I/O error as source) or when it is not a bootstrap the
//! 1.51 core accepts ([`ConfigErrorKind::Setting`], naming the field).
//!
//! ```no_run
//! # fn main() -> Result<(), grpcore::Error> {
//! use grpcore::xds::XdsBootstrap;
//! let env = grpcore::Environment::new(1);
//! let bootstrap = XdsBootstrap::new().server("127.0.0.1:18000").node_id("client-1");
//! let channel = grpcore::ChannelBuilder::new(&env)
//!     .xds_bootstrap(&bootstrap)
//!     .connect("xds:///echo")?;
//! # drop(channel); Ok(()) }
//! ```
//!
//! Security from the control plane: [`ChannelCredentials::xds`](crate::ChannelCredentials::xds)
//! and [`ServerCredentials::xds`](crate::ServerCredentials::xds). Servers configured by
//! it: [`ServerBuilder::xds`](crate::ServerBuilder::xds). What the client's xDS client holds:
//! [`client_config`] (binary), [`client_config_json`] (JSON) and the CSDS service
//! [`csds_service`].
//!
//! Without a bootstrap check, the 1.51 core fails each call on an `xds:` channel with
//! `UNAVAILABLE` ("Failed to create XdsClient: Environment variables GRPC_XDS_BOOTSTRAP or
//! GRPC_XDS_BOOTSTRAP_CONFIG not defined"), and a `wait_for_ready` call waits out its
//! deadline.
//!
//! What the control plane must send for `xds:///echo` (checked against this core): a
//! `Listener` named `echo` whose `ApiListener` is an `HttpConnectionManager` (with the
//! router, `envoy.extensions.filters.http.router.v3.Router`, as its last HTTP filter), a
//! `RouteConfiguration`, EDS `Cluster`s and their `ClusterLoadAssignment`s (each locality
//! with a `load_balancing_weight`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::codec::BytesCodec;
use crate::ffi_guard::log_caught;
use crate::env::Environment;
use crate::error::{ConfigError, ConfigErrorKind, Error};
use crate::method::Method;
use crate::server::service::{Service, ServiceBuilder};
use crate::Status;

/// The channel argument carrying a per-channel bootstrap in the 1.51 core.
pub(crate) const BOOTSTRAP_ARG: &str = "grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config";

/// Channel-credential types the 1.51 core knows for talking to a control plane.
const KNOWN_CREDS: &[&str] = &["insecure", "google_default", "fake"];

/// How the xDS client authenticates to its control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum XdsChannelCreds {
    /// Plaintext (`"insecure"`).
    Insecure,
    /// Google default credentials (`"google_default"`: TLS plus the credentials the
    /// environment provides, as on Google Cloud).
    GoogleDefault,
}

impl XdsChannelCreds {
    fn name(&self) -> &'static str {
        match self {
            XdsChannelCreds::Insecure => "insecure",
            XdsChannelCreds::GoogleDefault => "google_default",
        }
    }
}

/// A control-plane server of a bootstrap.
#[derive(Clone, Debug, PartialEq, Eq)]
struct XdsServer {
    uri: String,
    creds: XdsChannelCreds,
}

/// The `file_watcher` certificate provider: PEM files the core re-reads every
/// `refresh_interval`, named in the bootstrap and referred to by the control plane's
/// security configuration. A rotated file is picked up at the next refresh.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileWatcher {
    certificate: Option<PathBuf>,
    private_key: Option<PathBuf>,
    ca_certificate: Option<PathBuf>,
    refresh_interval: Option<Duration>,
}

impl FileWatcher {
    /// A provider with no files yet: give an identity, roots, or both.
    pub fn new() -> FileWatcher {
        FileWatcher::default()
    }

    /// The identity: certificate chain and private key (PEM). Both or neither.
    pub fn identity(mut self, certificate: impl AsRef<Path>, private_key: impl AsRef<Path>) -> FileWatcher {
        self.certificate = Some(certificate.as_ref().to_path_buf());
        self.private_key = Some(private_key.as_ref().to_path_buf());
        self
    }

    /// The roots that verify the peer (PEM).
    pub fn ca_certificate(mut self, path: impl AsRef<Path>) -> FileWatcher {
        self.ca_certificate = Some(path.as_ref().to_path_buf());
        self
    }

    /// How often the files are re-read (whole seconds or milliseconds). Default, the
    /// core's: 10 minutes.
    pub fn refresh_interval(mut self, interval: Duration) -> FileWatcher {
        self.refresh_interval = Some(interval);
        self
    }

    fn to_json(&self, name: &str) -> Result<Value, Error> {
        let mut config = Map::new();
        if self.certificate.is_none() && self.ca_certificate.is_none() {
            return Err(bad(format!(
                "certificate provider {name:?}: a file_watcher needs an identity, a CA certificate or both"
            )));
        }
        for (key, path) in [
            ("certificate_file", &self.certificate),
            ("private_key_file", &self.private_key),
            ("ca_certificate_file", &self.ca_certificate),
        ] {
            if let Some(path) = path {
                let text = path.to_str().ok_or_else(|| {
                    bad(format!("certificate provider {name:?}: {key} {path:?} is not UTF-8 (the bootstrap is JSON)"))
                })?;
                config.insert(key.into(), Value::String(text.into()));
            }
        }
        if let Some(interval) = self.refresh_interval {
            if interval.is_zero() {
                return Err(bad(format!("certificate provider {name:?}: refresh_interval must be greater than zero")));
            }
            config.insert("refresh_interval".into(), Value::String(duration_json(interval)));
        }
        Ok(json!({"plugin_name": "file_watcher", "config": config}))
    }
}

/// A typed xDS bootstrap: which control plane(s) to ask, who this node is, and the
/// certificate providers the control plane's security configuration may name.
///
/// Give it to one channel with [`ChannelBuilder::xds_bootstrap`](crate::ChannelBuilder::xds_bootstrap),
/// or serialize it with [`to_json`](Self::to_json) for `GRPC_XDS_BOOTSTRAP_CONFIG` or a
/// file named by `GRPC_XDS_BOOTSTRAP` (see the [module](self) for the difference).
///
/// ```
/// use grpcore::xds::{FileWatcher, XdsBootstrap};
/// let json = XdsBootstrap::new()
///     .server("127.0.0.1:18000")
///     .node_id("frontend-7")
///     .node_cluster("frontend")
///     .file_watcher("mesh", FileWatcher::new()
///         .identity("/etc/mesh/cert.pem", "/etc/mesh/key.pem")
///         .ca_certificate("/etc/mesh/ca.pem"))
///     .to_json()?;
/// assert!(json.contains(r#""server_uri":"127.0.0.1:18000""#));
/// # Ok::<(), grpcore::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XdsBootstrap {
    servers: Vec<XdsServer>,
    node_id: Option<String>,
    node_cluster: Option<String>,
    locality: Option<[String; 3]>,
    metadata: Vec<(String, String)>,
    providers: Vec<(String, FileWatcher)>,
    server_listener_template: Option<String>,
}

impl XdsBootstrap {
    /// An empty bootstrap: add at least one [`server`](Self::server).
    pub fn new() -> XdsBootstrap {
        XdsBootstrap::default()
    }

    /// A control plane reached in plaintext at `uri` (a gRPC target: `host:port`,
    /// `dns:///host:port`, ...). The core uses the first server; more are for fallback in
    /// later cores.
    pub fn server(self, uri: &str) -> XdsBootstrap {
        self.server_with_creds(uri, XdsChannelCreds::Insecure)
    }

    /// A control plane at `uri`, reached with `creds`.
    pub fn server_with_creds(mut self, uri: &str, creds: XdsChannelCreds) -> XdsBootstrap {
        self.servers.push(XdsServer { uri: uri.to_string(), creds });
        self
    }

    /// The node id the client sends to the control plane (`node.id`).
    pub fn node_id(mut self, id: &str) -> XdsBootstrap {
        self.node_id = Some(id.to_string());
        self
    }

    /// The node's cluster (`node.cluster`).
    pub fn node_cluster(mut self, cluster: &str) -> XdsBootstrap {
        self.node_cluster = Some(cluster.to_string());
        self
    }

    /// The node's locality (`node.locality`: region, zone, sub-zone; empty strings for
    /// parts you leave out). Without it, a bootstrap with a node gets an empty
    /// `"locality": {}`: the C core does not need one, but `@grpc/grpc-js-xds` 1.14 refuses
    /// a node without it, and the same JSON may configure both (`GRPC_XDS_BOOTSTRAP_CONFIG`).
    pub fn node_locality(mut self, region: &str, zone: &str, sub_zone: &str) -> XdsBootstrap {
        self.locality = Some([region.to_string(), zone.to_string(), sub_zone.to_string()]);
        self
    }

    /// A string entry of the node's metadata (`node.metadata`), sent to the control plane.
    pub fn node_metadata(mut self, key: &str, value: &str) -> XdsBootstrap {
        self.metadata.push((key.to_string(), value.to_string()));
        self
    }

    /// A `file_watcher` certificate provider instance called `name`, for the control
    /// plane's security configuration to refer to.
    pub fn file_watcher(mut self, name: &str, provider: FileWatcher) -> XdsBootstrap {
        self.providers.push((name.to_string(), provider));
        self
    }

    /// For xDS servers: the template of the Listener resource name, `%s` standing for the
    /// listening address (`server_listener_resource_name_template`).
    pub fn server_listener_resource_name_template(mut self, template: &str) -> XdsBootstrap {
        self.server_listener_template = Some(template.to_string());
        self
    }

    /// The bootstrap as the JSON the core reads, checked as [`check_json`] checks any.
    pub fn to_json(&self) -> Result<String, Error> {
        let mut root = Map::new();
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|s| json!({"server_uri": s.uri, "channel_creds": [{"type": s.creds.name()}], "server_features": ["xds_v3"]}))
            .collect();
        root.insert("xds_servers".into(), Value::Array(servers));
        let mut node = Map::new();
        if let Some(id) = &self.node_id {
            node.insert("id".into(), json!(id));
        }
        if let Some(cluster) = &self.node_cluster {
            node.insert("cluster".into(), json!(cluster));
        }
        if let Some([region, zone, sub_zone]) = &self.locality {
            node.insert("locality".into(), json!({"region": region, "zone": zone, "sub_zone": sub_zone}));
        }
        if !self.metadata.is_empty() {
            let metadata: Map<String, Value> =
                self.metadata.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            node.insert("metadata".into(), Value::Object(metadata));
        }
        if !node.is_empty() {
            // The same JSON also configures other xDS clients (GRPC_XDS_BOOTSTRAP_CONFIG):
            // @grpc/grpc-js-xds 1.14 rejects a node without "locality" ("locality field
            // missing in node element"), which the C core treats as optional.
            node.entry("locality").or_insert_with(|| json!({}));
            root.insert("node".into(), Value::Object(node));
        }
        if !self.providers.is_empty() {
            let mut providers = Map::new();
            for (name, provider) in &self.providers {
                if providers.insert(name.clone(), provider.to_json(name)?).is_some() {
                    return Err(bad(format!("certificate provider {name:?} is given twice")));
                }
            }
            root.insert("certificate_providers".into(), Value::Object(providers));
        }
        if let Some(template) = &self.server_listener_template {
            root.insert("server_listener_resource_name_template".into(), json!(template));
        }
        let text = Value::Object(root).to_string();
        check_json(&text)?;
        Ok(text)
    }
}

fn bad(message: String) -> Error {
    Error::config_kind(ConfigErrorKind::Setting, format!("xDS bootstrap: {message}"))
}

fn duration_json(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
    }
}

/// Checks that `json` is a bootstrap the 1.51 core accepts, as far as a client channel
/// needs it: a JSON object with a non-empty `xds_servers` array, each server with a
/// non-empty `server_uri` and a `channel_creds` array naming at least one type the core
/// knows (`insecure`, `google_default`); an optional `node` object whose `id`, `cluster`
/// are strings; optional `certificate_providers`, each an object with a `plugin_name`
/// (a `file_watcher` needs a certificate and key together, or a CA certificate).
/// The error ([`ConfigErrorKind::Setting`]) names the field at fault.
pub fn check_json(json: &str) -> Result<(), Error> {
    let root: Value = serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let root = root.as_object().ok_or_else(|| bad("the bootstrap must be a JSON object".into()))?;
    let servers = match root.get("xds_servers") {
        None => return Err(bad("field \"xds_servers\" is missing".into())),
        Some(Value::Array(servers)) if servers.is_empty() => {
            return Err(bad("\"xds_servers\" is empty: name at least one control plane".into()))
        }
        Some(Value::Array(servers)) => servers,
        Some(_) => return Err(bad("\"xds_servers\" must be an array".into())),
    };
    for (i, server) in servers.iter().enumerate() {
        let at = format!("xds_servers[{i}]");
        let server = server.as_object().ok_or_else(|| bad(format!("{at} must be an object")))?;
        match server.get("server_uri") {
            Some(Value::String(uri)) if !uri.is_empty() => {}
            Some(Value::String(_)) => return Err(bad(format!("{at}.server_uri is empty"))),
            Some(_) => return Err(bad(format!("{at}.server_uri must be a string"))),
            None => return Err(bad(format!("{at}.server_uri is missing"))),
        }
        let creds = match server.get("channel_creds") {
            Some(Value::Array(creds)) => creds,
            Some(_) => return Err(bad(format!("{at}.channel_creds must be an array"))),
            None => return Err(bad(format!("{at}.channel_creds is missing"))),
        };
        let mut known = false;
        for (j, c) in creds.iter().enumerate() {
            match c.get("type") {
                Some(Value::String(t)) => known |= KNOWN_CREDS.contains(&t.as_str()),
                _ => return Err(bad(format!("{at}.channel_creds[{j}].type is missing or not a string"))),
            }
        }
        if !known {
            return Err(bad(format!(
                "{at}.channel_creds names no credential type the core supports (insecure, google_default)"
            )));
        }
    }
    if let Some(node) = root.get("node") {
        let node = node.as_object().ok_or_else(|| bad("\"node\" must be an object".into()))?;
        for key in ["id", "cluster"] {
            if node.get(key).is_some_and(|v| !v.is_string()) {
                return Err(bad(format!("node.{key} must be a string")));
            }
        }
    }
    if let Some(providers) = root.get("certificate_providers") {
        let providers =
            providers.as_object().ok_or_else(|| bad("\"certificate_providers\" must be an object".into()))?;
        for (name, p) in providers {
            let at = format!("certificate_providers.{name}");
            let plugin = p.get("plugin_name").and_then(Value::as_str);
            let Some(plugin) = plugin else { return Err(bad(format!("{at}.plugin_name is missing"))) };
            if plugin == "file_watcher" {
                let config = p.get("config").and_then(Value::as_object);
                let has = |k: &str| config.is_some_and(|c| c.get(k).is_some_and(Value::is_string));
                if has("certificate_file") != has("private_key_file") {
                    return Err(bad(format!("{at}: certificate_file and private_key_file go together")));
                }
                if !has("certificate_file") && !has("ca_certificate_file") {
                    return Err(bad(format!("{at}: a file_watcher needs certificate_file or ca_certificate_file")));
                }
            }
        }
    }
    Ok(())
}

/// Reads a bootstrap file now and checks it ([`ConfigErrorKind::File`] when unreadable).
pub(crate) fn read_file(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Config(
            ConfigError::new(ConfigErrorKind::File, format!("xDS bootstrap: cannot read {path:?}: {e}")).with_source(e),
        )
    })?;
    check_json(&text).map_err(|e| bad(format!("in {path:?}: {}", strip(&e))))?;
    Ok(text)
}

/// The process-wide xDS client's view of its resources (CSDS): a serialized
/// `envoy.service.status.v3.ClientConfig` (the node, and per resource its type, name,
/// version, the resource itself and `ACKED`/`NACKED`/`REQUESTED`/`DOES_NOT_EXIST`), as
/// `grpc_dump_xds_configs` gives it. Decode it with the envoy protos (`xds-protos` in
/// Python, or any generated `envoy.service.status.v3` types).
///
/// Empty when the process has no bootstrap in its environment. The core's dump covers
/// only its process-wide client: channels given a bootstrap of their own with
/// [`ChannelBuilder::xds_bootstrap`](crate::ChannelBuilder::xds_bootstrap) are not in it.
/// When no channel holds the process-wide client, the 1.51 core creates one from the
/// environment for the dump (no resources subscribed) and drops it again.
///
/// `env` only proves the core is initialized.
pub fn client_config(env: &Environment) -> Vec<u8> {
    let _ = env;
    // SAFETY: the core is initialized while an Environment lives; the call returns a slice
    // we own, read once here and released with grpc_slice_unref.
    unsafe {
        let slice = crate::ffi::grpc_dump_xds_configs();
        let bytes = crate::buffer::slice_bytes(&slice).to_vec();
        crate::ffi::grpc_slice_unref(slice);
        bytes
    }
}

mod csds_json;

/// The process-wide xDS client's view of its resources, [`client_config`], as JSON: what
/// to print, log or serve to a person (CSDS in text, as `grpc_dump_xds_configs` gives it
/// in binary). See [`client_config_to_json`] for its shape. `{}` when the process has no
/// bootstrap in its environment.
///
/// ```no_run
/// let env = grpcore::Environment::new(1);
/// // ... channels to xds:/// targets, with GRPC_XDS_BOOTSTRAP set ...
/// println!("{}", grpcore::xds::client_config_json(&env)?);
/// # Ok::<(), grpcore::Error>(())
/// ```
pub fn client_config_json(env: &Environment) -> Result<String, Error> {
    client_config_to_json(&client_config(env))
}

/// A serialized `envoy.service.status.v3.ClientConfig` (from [`client_config`], or from
/// any CSDS response) as JSON shaped as proto3's JSON mapping would print it: field
/// names in lowerCamelCase, fields with their default value left out, enums by name
/// (`"clientStatus": "ACKED"`; a number this decoder does not know stays a number),
/// timestamps in RFC 3339 UTC (`"2026-12-05T09:12:59.123Z"`, 0, 3, 6 or 9 fractional
/// digits).
///
/// What is decoded: the node (`id`, `cluster`, `metadata`, `locality`, `userAgentName`,
/// `userAgentVersion`, `clientFeatures`) and, for each resource in `genericXdsConfigs`,
/// `typeUrl`, `name`, `versionInfo`, `lastUpdated`, `configStatus`, `clientStatus`,
/// `isStaticResource` and `errorState` (`details`, `versionInfo`, `lastUpdateAttempt`:
/// what a NACK said and when).
///
/// What is not: the resources themselves. `xdsConfig` (and `errorState.failedConfiguration`)
/// are `google.protobuf.Any`s of envoy types this crate does not carry; each is shown as
/// `{"@type": type URL, "name": ..., "value": base64}`: the type, the resource's name
/// (field 1 of a Listener, RouteConfiguration or Cluster as `name`, of a
/// ClusterLoadAssignment as `clusterName`; nothing for other types), and the resource's
/// serialized bytes in standard base64, to decode with the envoy protos. Proto3 JSON
/// would inline every field of the resource instead; `value` is not that. Also not
/// decoded: the node's `dynamicParameters`, `userAgentBuildVersion`, `extensions` and
/// `listeningAddresses`, and the deprecated per-type `xdsConfig` list of `ClientConfig`
/// (the 1.51 core fills none of them).
///
/// What the 1.51 core puts in the dump: a resource sent again unchanged keeps its
/// version and `lastUpdated` (the core ignores an identical resource); a NACKed one keeps
/// its last accepted version, with the rejected version in `errorState`; and each dump
/// converts the update times to wall-clock time anew, so their last digits differ from
/// one dump to the next.
///
/// Errors: [`Error::Codec`] of kind [`CodecErrorKind::Decode`](crate::CodecErrorKind::Decode)
/// when `config` is not a ClientConfig.
pub fn client_config_to_json(config: &[u8]) -> Result<String, Error> {
    csds_json::render(config).map(|v| v.to_string())
}

/// Called with each serving-status change of an xDS server's listening address.
pub(crate) type ServingCallback = dyn Fn(&str, Result<(), Status>) + Send + Sync + 'static;

/// What an xDS-enabled server needs at `build`: its bootstrap (else the environment's)
/// and the application's serving-status callback.
#[derive(Clone, Default)]
pub(crate) struct XdsServerSettings {
    pub(crate) on_status: Option<std::sync::Arc<ServingCallback>>,
}

/// Owns the notifier's user data for as long as the server (and its config fetcher) lives.
pub(crate) struct ServingNotifier(Box<Option<std::sync::Arc<ServingCallback>>>);

impl ServingNotifier {
    pub(crate) fn new(settings: &XdsServerSettings) -> ServingNotifier {
        ServingNotifier(Box::new(settings.on_status.clone()))
    }

    /// Creates the core's xDS config fetcher for a server with `args`; the notifier must
    /// outlive the server the fetcher is given to.
    ///
    /// # Safety
    /// `args` is null or valid for the call.
    pub(crate) unsafe fn fetcher(
        &self,
        args: *const crate::ffi::grpc_channel_args,
    ) -> Result<*mut crate::ffi::grpc_server_config_fetcher, Error> {
        let notifier = crate::ffi::grpc_server_xds_status_notifier {
            on_serving_status_update: Some(on_serving_status),
            user_data: &*self.0 as *const Option<std::sync::Arc<ServingCallback>> as *mut std::ffi::c_void,
        };
        // SAFETY: per this function's contract; the core copies what it keeps of `args`,
        // and `user_data` stays valid while `self` lives (a heap box that never moves).
        let (fetcher, core_errors) =
            crate::log_bridge::capture_errors(|| unsafe { crate::ffi::grpc_server_config_fetcher_xds_create(notifier, args) });
        if fetcher.is_null() {
            let why = if core_errors.is_empty() { "see the grpc_core log".to_string() } else { core_errors.join("; ") };
            return Err(bad(format!("the core could not start the server's xDS configuration: {why}")));
        }
        Ok(fetcher)
    }
}

/// The core's serving-status notification; runs on a core thread.
///
/// # Safety
/// Called by the core only, with the `user_data` given in `ServingNotifier::fetcher` (the
/// notifier's boxed callback, alive as long as the server) and strings valid for the call.
unsafe extern "C" fn on_serving_status(
    user_data: *mut std::ffi::c_void,
    uri: *const std::os::raw::c_char,
    update: crate::ffi::grpc_serving_status_update,
) {
    // Everything, logging and the user's callback included, runs inside `ffi_guard`: no
    // panic reaches the core.
    crate::ffi_guard::ffi_guard((), || {
        // SAFETY: `user_data` is the boxed callback of a `ServingNotifier`, which lives as
        // long as the server whose fetcher calls this; `uri` and the message are
        // NUL-terminated strings valid for this call (or null).
        let (callback, uri, message) = unsafe {
            let callback = &*(user_data as *const Option<std::sync::Arc<ServingCallback>>);
            let text = |p: *const std::os::raw::c_char| {
                if p.is_null() {
                    String::new()
                } else {
                    std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
                }
            };
            (callback, text(uri), text(update.error_message))
        };
        let status = if update.code == 0 {
            Ok(())
        } else {
            Err(Status::new(crate::Code::from_i32(update.code), message))
        };
        match &status {
            Ok(()) => log_caught!(info, "xDS server {uri}: serving"),
            Err(e) => log_caught!(warn, "xDS server {uri}: not serving: {e}"),
        }
        if let Some(callback) = callback {
            let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(&uri, status)));
            if let Err(panic) = called {
                log_caught!(error, "the xDS serving-status callback panicked (ignored): {}", crate::task::panic_message(&*panic));
            }
        }
    })
}

/// The CSDS method `FetchClientStatus`: requests and responses as raw protobuf bytes.
const FETCH_CLIENT_STATUS: Method<Vec<u8>, Vec<u8>, BytesCodec> =
    Method::unary("/envoy.service.status.v3.ClientStatusDiscoveryService/FetchClientStatus");

/// The client status discovery service (`envoy.service.status.v3.ClientStatusDiscoveryService`,
/// method `FetchClientStatus`) over [`client_config`]: what `grpcdebug`, or any CSDS
/// client, asks a process about its xDS configuration. The request's node matchers are
/// ignored, as by gRPC's own CSDS services; the response holds one `ClientConfig`, or none
/// when the process has no xDS bootstrap. [`Admin`](crate::admin::Admin) serves it when
/// both features are on.
pub fn csds_service(env: &Environment) -> Service {
    let env = env.clone();
    ServiceBuilder::new("envoy.service.status.v3.ClientStatusDiscoveryService")
        .add_unary(&FETCH_CLIENT_STATUS, move |_request: Vec<u8>, _ctx| {
            let config = client_config(&env);
            async move { Ok::<_, Status>(client_status_response(&config)) }
        })
        .build()
}

/// `ClientStatusResponse { repeated ClientConfig config = 1; }` holding `config`, if any.
fn client_status_response(config: &[u8]) -> Vec<u8> {
    if config.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(config.len() + 11);
    out.push(0x0a); // field 1, length-delimited
    let mut n = config.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(config);
    out
}

/// Checks the bootstrap the core would read from the process environment, exactly in the
/// core's order: the file named by `GRPC_XDS_BOOTSTRAP` if that is set, else the JSON in
/// `GRPC_XDS_BOOTSTRAP_CONFIG`.
pub(crate) fn check_environment() -> Result<(), Error> {
    check_sources(std::env::var_os("GRPC_XDS_BOOTSTRAP").map(PathBuf::from), std::env::var("GRPC_XDS_BOOTSTRAP_CONFIG").ok())
}

fn check_sources(path: Option<PathBuf>, config: Option<String>) -> Result<(), Error> {
    if let Some(path) = path {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Config(
                ConfigError::new(
                    ConfigErrorKind::File,
                    format!("xDS bootstrap: cannot read {path:?}, the file GRPC_XDS_BOOTSTRAP names: {e}"),
                )
                .with_source(e),
            )
        })?;
        return check_json(&text).map_err(|e| bad(format!("in {path:?} (GRPC_XDS_BOOTSTRAP): {}", strip(&e))));
    }
    if let Some(config) = config {
        return check_json(&config).map_err(|e| bad(format!("in GRPC_XDS_BOOTSTRAP_CONFIG: {}", strip(&e))));
    }
    Err(bad(
        "an xds: target needs a bootstrap, and there is none: give one with ChannelBuilder::xds_bootstrap, or set \
         GRPC_XDS_BOOTSTRAP (a file) or GRPC_XDS_BOOTSTRAP_CONFIG (the JSON) before the program starts"
            .into(),
    ))
}

/// The message of a bootstrap error without its `xDS bootstrap: ` prefix.
fn strip(e: &Error) -> String {
    let text = match e {
        Error::Config(c) => c.message().to_string(),
        other => other.to_string(),
    };
    text.strip_prefix("xDS bootstrap: ").map(str::to_string).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(r: Result<(), Error>) -> (ConfigErrorKind, String) {
        match r {
            Err(Error::Config(c)) => (c.kind(), c.message().to_string()),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn client_status_response_wraps_the_config() {
        assert!(client_status_response(&[]).is_empty());
        assert_eq!(client_status_response(&[1, 2]), [0x0a, 2, 1, 2]);
        let big = vec![7u8; 300];
        let r = client_status_response(&big);
        assert_eq!(&r[..3], &[0x0a, 0xac, 0x02]);
        assert_eq!(&r[3..], &big[..]);
    }

    #[test]
    fn built_bootstrap_is_the_json_the_core_reads() {
        let json = XdsBootstrap::new()
            .server("127.0.0.1:1")
            .node_id("n")
            .node_cluster("c")
            .node_locality("r", "z", "")
            .node_metadata("k", "v")
            .file_watcher("p", FileWatcher::new().ca_certificate("/ca.pem").refresh_interval(Duration::from_millis(1500)))
            .to_json()
            .unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["xds_servers"][0]["server_uri"], "127.0.0.1:1");
        assert_eq!(v["xds_servers"][0]["channel_creds"][0]["type"], "insecure");
        assert_eq!(v["node"]["id"], "n");
        assert_eq!(v["node"]["locality"]["zone"], "z");
        assert_eq!(v["node"]["metadata"]["k"], "v");
        assert_eq!(v["certificate_providers"]["p"]["plugin_name"], "file_watcher");
        assert_eq!(v["certificate_providers"]["p"]["config"]["ca_certificate_file"], "/ca.pem");
        assert_eq!(v["certificate_providers"]["p"]["config"]["refresh_interval"], "1.500000000s");
        // A node without a locality still gets one (grpc-js-xds requires the field);
        // no node, no locality.
        let v: Value = serde_json::from_str(&XdsBootstrap::new().server("a:1").node_id("n").to_json().unwrap()).unwrap();
        assert_eq!(v["node"]["locality"], json!({}));
        let v: Value = serde_json::from_str(&XdsBootstrap::new().server("a:1").to_json().unwrap()).unwrap();
        assert!(v.get("node").is_none(), "{v}");
    }

    #[test]
    fn builder_refuses_what_the_core_would() {
        let (k, m) = kind(XdsBootstrap::new().to_json().map(drop));
        assert_eq!(k, ConfigErrorKind::Setting);
        assert!(m.contains("xds_servers"), "{m}");
        let (_, m) = kind(XdsBootstrap::new().server("").to_json().map(drop));
        assert!(m.contains("server_uri is empty"), "{m}");
        let (_, m) = kind(XdsBootstrap::new().server("a:1").file_watcher("p", FileWatcher::new()).to_json().map(drop));
        assert!(m.contains("\"p\""), "{m}");
    }

    #[test]
    fn check_json_names_the_field() {
        for (json, needle) in [
            ("not json", "not valid JSON"),
            ("[]", "JSON object"),
            ("{}", "\"xds_servers\" is missing"),
            (r#"{"xds_servers": {}}"#, "must be an array"),
            (r#"{"xds_servers": [{"channel_creds": [{"type": "insecure"}]}]}"#, "xds_servers[0].server_uri is missing"),
            (r#"{"xds_servers": [{"server_uri": "a:1"}]}"#, "channel_creds is missing"),
            (r#"{"xds_servers": [{"server_uri": "a:1", "channel_creds": [{"type": "tls"}]}]}"#, "no credential type"),
            (r#"{"xds_servers": [{"server_uri": "a:1", "channel_creds": [{"type": "insecure"}]}], "node": {"id": 3}}"#, "node.id"),
        ] {
            let (k, m) = kind(check_json(json));
            assert_eq!(k, ConfigErrorKind::Setting);
            assert!(m.contains(needle), "{json}: {m}");
        }
        check_json(r#"{"xds_servers": [{"server_uri": "a:1", "channel_creds": [{"type": "tls"}, {"type": "insecure"}]}]}"#)
            .unwrap();
    }

    #[test]
    fn environment_sources_in_the_cores_order() {
        let (k, m) = kind(check_sources(None, None));
        assert_eq!(k, ConfigErrorKind::Setting);
        assert!(m.contains("GRPC_XDS_BOOTSTRAP"), "{m}");
        let missing = PathBuf::from("/nonexistent/grpcore-bootstrap.json");
        // The file wins over the variable, as in the core: a good config does not hide a bad path.
        let good = XdsBootstrap::new().server("a:1").to_json().unwrap();
        let (k, m) = kind(check_sources(Some(missing), Some(good.clone())));
        assert_eq!(k, ConfigErrorKind::File);
        assert!(m.contains("cannot read") && m.contains("grpcore-bootstrap.json"), "{m}");
        check_sources(None, Some(good.clone())).unwrap();
        let (_, m) = kind(check_sources(None, Some("{}".into())));
        assert!(m.contains("GRPC_XDS_BOOTSTRAP_CONFIG") && m.contains("xds_servers"), "{m}");
        let dir = std::env::temp_dir().join(format!("grpcore-xds-{}", std::process::id()));
        std::fs::write(&dir, "{\"xds_servers\": []}").unwrap();
        let (_, m) = kind(check_sources(Some(dir.clone()), None));
        std::fs::write(&dir, &good).unwrap();
        let ok = check_sources(Some(dir.clone()), None);
        std::fs::remove_file(&dir).unwrap();
        assert!(m.contains("empty"), "{m}");
        ok.unwrap();
    }
}
