//! Client-side credentials: [`ChannelCredentials`] (TLS, mutual TLS, local, insecure,
//! composed with call credentials) and the TLS session cache, [`SslSessionCache`].
//!
//! A `ChannelCredentials` is a recipe, plain Rust data: the core's credentials object is made
//! from it when a channel is created ([`ChannelBuilder::connect_with_credentials`]) and
//! released once the channel holds its own reference. So each channel gets credentials of
//! its own, and a new channel always makes new connections (it never shares the connections
//! of an older channel, whose certificates may be out of date).
//!
//! [`ChannelBuilder::connect_with_credentials`]: crate::ChannelBuilder::connect_with_credentials

use std::ffi::CStr;
use std::fmt;
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

use grpcore_sys as ffi;

use super::call::CallCredentials;
use crate::ffi_guard::{ffi_guard, log_caught};
use super::pem::{Certificate, Identity};
use crate::args::ChannelArgs;
use crate::error::{ConfigErrorKind, Error};

/// Which local connections local credentials accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalConnect {
    /// Unix domain sockets (`unix:` and `unix-abstract:` addresses).
    Unix,
    /// TCP over the loopback interface (127.0.0.0/8, ::1).
    Tcp,
}

impl LocalConnect {
    pub(crate) fn raw(self) -> ffi::grpc_local_connect_type {
        match self {
            LocalConnect::Unix => ffi::UDS,
            LocalConnect::Tcp => ffi::LOCAL_TCP,
        }
    }
}

/// A client-side cache of TLS sessions, shared by every channel whose credentials name it:
/// a new connection to a server that one of them reached before resumes the earlier TLS
/// session (an abbreviated handshake: no certificate exchange, no key agreement from
/// scratch) instead of running a full handshake.
///
/// Sessions are keyed by the server name the client sends (the target's host, or
/// [`TlsChannelCredentials::server_name_override`]). Whether a connection resumed shows on
/// the server in [`AuthContext::ssl_session_reused`](crate::AuthContext::ssl_session_reused).
///
/// ```
/// let cache = grpcore::SslSessionCache::new(64);
/// let creds = grpcore::ChannelCredentials::tls().session_cache(&cache).build().unwrap();
/// # drop(creds);
/// ```
#[derive(Clone)]
pub struct SslSessionCache {
    inner: Arc<RawSessionCache>,
}

/// Owns one reference to a core session cache.
struct RawSessionCache(*mut ffi::grpc_ssl_session_cache);

// SAFETY: the core's session cache is an internally locked LRU, meant to be shared between
// channels on any thread; the pointer is released once, in Drop.
unsafe impl Send for RawSessionCache {}
// SAFETY: as above.
unsafe impl Sync for RawSessionCache {}

impl Drop for RawSessionCache {
    fn drop(&mut self) {
        // SAFETY: releases the reference `grpc_ssl_session_cache_create_lru` gave us; channels
        // that use the cache hold references of their own (through the channel argument).
        unsafe { ffi::grpc_ssl_session_cache_destroy(self.0) }
    }
}

impl SslSessionCache {
    /// A cache remembering the sessions of up to `capacity` servers (least recently used
    /// dropped first). A capacity of 0 is taken as 1.
    pub fn new(capacity: usize) -> SslSessionCache {
        // SAFETY: plain constructor (no grpc_init needed: the cache is plain memory and
        // OpenSSL sessions); the reference it returns is owned by `RawSessionCache`.
        let raw = unsafe { ffi::grpc_ssl_session_cache_create_lru(capacity.max(1)) };
        SslSessionCache {
            inner: Arc::new(RawSessionCache(raw)),
        }
    }

    /// The core's cache pointer, valid while `self` lives.
    pub(crate) fn as_ptr(&self) -> *mut ffi::grpc_ssl_session_cache {
        self.inner.0
    }
}

impl fmt::Debug for SslSessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SslSessionCache").finish_non_exhaustive()
    }
}

/// How a channel secures its connections, and what it adds to every call.
///
/// ```no_run
/// # fn main() -> Result<(), grpcore::Error> {
/// use grpcore::{Certificate, ChannelBuilder, ChannelCredentials, Environment, Identity};
/// let env = Environment::new(1);
/// // TLS trusting one CA, with a client certificate (mutual TLS):
/// let creds = ChannelCredentials::tls()
///     .root_certificates(Certificate::from_pem_file("ca.pem")?)
///     .identity(Identity::from_pem_files("client.pem", "client.key")?)
///     .build()?;
/// let channel = ChannelBuilder::new(&env).connect_with_credentials("example.com:443", &creds)?;
/// # drop(channel); Ok(()) }
/// ```
#[derive(Clone)]
pub struct ChannelCredentials {
    kind: Kind,
    call: Vec<CallCredentials>,
}

#[derive(Clone)]
enum Kind {
    Insecure,
    Local(LocalConnect),
    Tls(TlsChannelCredentials),
    /// Security from the xDS control plane, else the fallback.
    #[cfg(feature = "xds")]
    Xds(Box<ChannelCredentials>),
}

impl fmt::Debug for ChannelCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ChannelCredentials");
        match &self.kind {
            Kind::Insecure => d.field("kind", &"insecure"),
            Kind::Local(l) => d.field("local", l),
            Kind::Tls(t) => d.field("tls", t),
            #[cfg(feature = "xds")]
            Kind::Xds(fallback) => d.field("xds_fallback", fallback),
        };
        d.field("call_credentials", &self.call.len()).finish()
    }
}

impl ChannelCredentials {
    /// No transport security: plaintext HTTP/2 (what [`ChannelBuilder::connect`] uses).
    ///
    /// [`ChannelBuilder::connect`]: crate::ChannelBuilder::connect
    pub fn insecure() -> ChannelCredentials {
        ChannelCredentials {
            kind: Kind::Insecure,
            call: Vec::new(),
        }
    }

    /// Local credentials: no encryption, but the core checks that the connection really is
    /// local (a unix socket for [`LocalConnect::Unix`], loopback TCP for
    /// [`LocalConnect::Tcp`]) and reports it as private, so call credentials may be sent.
    pub fn local(kind: LocalConnect) -> ChannelCredentials {
        ChannelCredentials {
            kind: Kind::Local(kind),
            call: Vec::new(),
        }
    }

    /// Starts TLS credentials: the server is verified against the system's roots unless
    /// [`root_certificates`](TlsChannelCredentials::root_certificates) says otherwise.
    pub fn tls() -> TlsChannelCredentials {
        TlsChannelCredentials::default()
    }

    /// Security from the xDS control plane, for channels to `xds:///name` targets: when the
    /// cluster a call goes to carries a TLS configuration (an `UpstreamTlsContext` naming
    /// certificate provider instances of the [bootstrap](crate::xds::XdsBootstrap), such
    /// as [`file_watcher`](crate::xds::XdsBootstrap::file_watcher)), connections to it
    /// use TLS, or mutual TLS, with those certificates, re-read as the provider refreshes;
    /// the server is checked against the provider's roots and the context's
    /// subject-alternative-name matchers, not against the target's host name. Where the
    /// control plane sends no security configuration, `fallback` is used (typically
    /// [`insecure`](Self::insecure)). On a target that is not `xds:`, this is `fallback`.
    #[cfg(feature = "xds")]
    pub fn xds(fallback: ChannelCredentials) -> ChannelCredentials {
        ChannelCredentials {
            kind: Kind::Xds(Box::new(fallback)),
            call: Vec::new(),
        }
    }

    /// Adds call credentials: their metadata goes with every call on the channel (several
    /// are applied in the order they were added). They need a secure transport (TLS or
    /// local); [`connect_with_credentials`] refuses them on insecure credentials.
    ///
    /// [`connect_with_credentials`]: crate::ChannelBuilder::connect_with_credentials
    pub fn with_call_credentials(mut self, call: CallCredentials) -> ChannelCredentials {
        self.call.push(call);
        self
    }

    /// Adds the channel arguments the credentials need (server-name override, session cache).
    pub(crate) fn apply_args(&self, args: &mut ChannelArgs) -> Result<(), Error> {
        #[cfg(feature = "xds")]
        if let Kind::Xds(fallback) = &self.kind {
            return fallback.apply_args(args);
        }
        if let Kind::Tls(t) = &self.kind {
            if let Some(name) = &t.server_name_override {
                args.set_str("grpc.ssl_target_name_override", name)?;
            }
            if let Some(cache) = &t.session_cache {
                args.set_session_cache(cache);
            }
        }
        Ok(())
    }

    /// Makes the core's credentials object for one channel.
    /// Called while the channel builder's environment keeps the core initialised.
    pub(crate) fn create(&self) -> Result<RawChannelCredentials, Error> {
        let base = match &self.kind {
            Kind::Insecure => {
                if !self.call.is_empty() {
                    return Err(Error::config_kind(ConfigErrorKind::Credentials,
                        "call credentials need a secure channel (TLS or local credentials): the core never \
                         sends them in plaintext",
                    ));
                }
                // SAFETY: plain constructor; the reference is owned by the returned value.
                RawChannelCredentials(unsafe { ffi::grpc_insecure_credentials_create() })
            }
            // SAFETY: as above.
            Kind::Local(kind) => RawChannelCredentials(unsafe { ffi::grpc_local_credentials_create(kind.raw()) }),
            Kind::Tls(t) => t.create()?,
            #[cfg(feature = "xds")]
            Kind::Xds(fallback) => {
                let fallback = fallback.create()?;
                // SAFETY: `fallback` is live; the xDS credentials take a reference of their
                // own to it (XdsCredentials(fallback->Ref()) in 1.51), ours is released when
                // `fallback` drops.
                RawChannelCredentials(unsafe { ffi::grpc_xds_credentials_create(fallback.as_ptr()) })
            }
        };
        if base.0.is_null() {
            return Err(Error::config_kind(ConfigErrorKind::Credentials, "the core could not create the channel credentials (see the grpc_core log)"));
        }
        let Some(call) = CallCredentials::compose_raw(&self.call)? else {
            return Ok(base);
        };
        // SAFETY: both arguments are live; the composite takes references of its own to both,
        // so ours are released by their owners as usual.
        let composite = unsafe { ffi::grpc_composite_channel_credentials_create(base.0, call.as_ptr(), ptr::null_mut()) };
        if composite.is_null() {
            return Err(Error::config_kind(ConfigErrorKind::Credentials, "the core refused to combine these channel and call credentials"));
        }
        Ok(RawChannelCredentials(composite))
    }
}

/// Owns one reference to core channel credentials.
pub(crate) struct RawChannelCredentials(*mut ffi::grpc_channel_credentials);

impl RawChannelCredentials {
    pub(crate) fn as_ptr(&self) -> *mut ffi::grpc_channel_credentials {
        self.0
    }
}

impl Drop for RawChannelCredentials {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: we own one reference; channels made with it hold their own.
            unsafe { ffi::grpc_channel_credentials_release(self.0) }
        }
    }
}

/// TLS settings of a channel; finish with [`build`](Self::build).
#[derive(Clone, Default)]
pub struct TlsChannelCredentials {
    roots: Option<Certificate>,
    identity: Option<Identity>,
    server_name_override: Option<String>,
    session_cache: Option<SslSessionCache>,
    verify: Option<Arc<ServerCheck>>,
}

/// A user check of the server's certificate, run after the core's own checks.
type ServerCheck = dyn Fn(&str, &Certificate) -> Result<(), String> + Send + Sync + 'static;

impl fmt::Debug for TlsChannelCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsChannelCredentials")
            .field("roots", &self.roots.as_ref().map_or(0, Certificate::len))
            .field("identity", &self.identity)
            .field("server_name_override", &self.server_name_override)
            .field("session_cache", &self.session_cache.is_some())
            .field("verify_server", &self.verify.is_some())
            .finish()
    }
}

impl TlsChannelCredentials {
    /// Trust exactly these certificates (PEM roots) to verify the server. Default: the core's
    /// default roots — the file named by `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` if that variable
    /// is set, else the system's trust store.
    pub fn root_certificates(mut self, roots: Certificate) -> TlsChannelCredentials {
        self.roots = Some(roots);
        self
    }

    /// Presents this certificate chain and key when the server asks for a client
    /// certificate (mutual TLS). Default: none.
    pub fn identity(mut self, identity: Identity) -> TlsChannelCredentials {
        self.identity = Some(identity);
        self
    }

    /// Checks the server's certificate against `name` (and sends it as SNI and
    /// `:authority`) instead of the target's host name (`grpc.ssl_target_name_override`).
    /// Meant for tests, where a server on `127.0.0.1` presents a certificate for another
    /// name. Default: the target's host.
    pub fn server_name_override(mut self, name: &str) -> TlsChannelCredentials {
        self.server_name_override = Some(name.to_string());
        self
    }

    /// Resumes TLS sessions from `cache` (see [`SslSessionCache`]). Default: no cache, every
    /// connection runs a full handshake.
    pub fn session_cache(mut self, cache: &SslSessionCache) -> TlsChannelCredentials {
        self.session_cache = Some(cache.clone());
        self
    }

    /// Runs `check` on every handshake, after the core has verified the server's
    /// certificate chain and host name, with the name checked and the server's certificate;
    /// an `Err` (logged with its reason) or a panic fails the handshake, so calls fail with
    /// `UNAVAILABLE` (`Verify peer callback returned a failure`). Use it to pin a
    /// certificate or check more than the host name. It runs on one of the core's threads
    /// while the connection waits: keep it quick.
    pub fn verify_server<F>(mut self, check: F) -> TlsChannelCredentials
    where
        F: Fn(&str, &Certificate) -> Result<(), String> + Send + Sync + 'static,
    {
        self.verify = Some(Arc::new(check));
        self
    }

    /// Checks the settings and returns the credentials.
    pub fn build(self) -> Result<ChannelCredentials, Error> {
        if let Some(name) = &self.server_name_override {
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::config_kind(ConfigErrorKind::Credentials, format!(
                    "TLS server_name_override {name:?} must be a non-empty host name without whitespace"
                )));
            }
        }
        Ok(ChannelCredentials {
            kind: Kind::Tls(self),
            call: Vec::new(),
        })
    }

    fn create(&self) -> Result<RawChannelCredentials, Error> {
        let roots = self.roots.as_ref().map_or(ptr::null(), Certificate::as_c_ptr);
        let mut pair = self.identity.as_ref().map(|id| ffi::grpc_ssl_pem_key_cert_pair {
            private_key: id.key().as_c_ptr(),
            cert_chain: id.cert_chain().as_c_ptr(),
        });
        let pair_ptr = pair.as_mut().map_or(ptr::null_mut(), |p| p as *mut _);
        let verify = self.verify.as_ref().map(|check| ffi::grpc_ssl_verify_peer_options {
            verify_peer_callback: Some(verify_server),
            verify_peer_callback_userdata: Box::into_raw(Box::new(check.clone())) as *mut c_void,
            verify_peer_destruct: Some(drop_server_check),
        });
        let verify_ptr = verify.as_ref().map_or(ptr::null(), |v| v as *const _);
        // SAFETY: the PEM strings are NUL-terminated and live across the call (owned by
        // `self`); the core copies them and the verify options (whose userdata it then owns
        // and frees through `verify_peer_destruct` when the credentials die).
        let raw = unsafe { ffi::grpc_ssl_credentials_create_ex(roots, pair_ptr, verify_ptr, ptr::null_mut()) };
        if raw.is_null() {
            if let Some(v) = verify {
                // SAFETY: the core refused the credentials, so nothing else owns the userdata.
                unsafe { drop_server_check(v.verify_peer_callback_userdata) };
            }
        }
        Ok(RawChannelCredentials(raw))
    }
}

/// The core's verify-peer callback: 0 accepts the server, anything else fails the handshake.
///
/// # Safety
/// Called only by the core, with the boxed check registered with it as `userdata` (alive
/// until `drop_server_check`) and NUL-terminated strings valid during the call.
unsafe extern "C" fn verify_server(target_name: *const c_char, peer_pem: *const c_char, userdata: *mut c_void) -> c_int {
    // Everything, logging included, runs inside `ffi_guard`: no panic reaches the core.
    ffi_guard(1, || {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: `userdata` is the boxed check we gave the core, alive until the destruct
            // callback; the strings are NUL-terminated and valid during this call.
            let (check, name, pem) = unsafe {
                (
                    &*(userdata as *const Arc<ServerCheck>),
                    CStr::from_ptr(target_name).to_string_lossy(),
                    CStr::from_ptr(peer_pem).to_bytes(),
                )
            };
            let cert = Certificate::parse("the server's certificate", pem).map_err(|e| e.to_string())?;
            check(&name, &cert)
        }));
        match outcome {
            Ok(Ok(())) => 0,
            Ok(Err(why)) => {
                log_caught!(warn, "TLS: verify_server rejected the server: {why}");
                1
            }
            Err(panic) => {
                log_caught!(error, "TLS: verify_server panicked: {}", crate::task::panic_message(&*panic));
                1
            }
        }
    })
}

/// Frees the check given to the core (its `verify_peer_destruct`).
///
/// # Safety
/// Called once by the core, with the `userdata` registered with `verify_server` (or null).
unsafe extern "C" fn drop_server_check(userdata: *mut c_void) {
    if userdata.is_null() {
        return;
    }
    // SAFETY: `userdata` came from Box::into_raw in `create`; freed once.
    let check = unsafe { Box::from_raw(userdata as *mut Arc<ServerCheck>) };
    ffi_guard((), move || drop(check));
}
