//! Certificate reload on a running server: [`CertificateReloader`].
//!
//! Built on the core's SSL "certificate config fetcher": before every new handshake, each
//! listening port's security connector asks its fetcher whether the certificates changed.
//! Our fetcher asks the reloader, which (at most once per check interval) re-reads its files
//! or calls the user's callback, checks the result in Rust (PEM structure, key matches
//! certificate, and that the TLS library the core links will use it) and only then hands it
//! to the core. No lock is held while files are read or the callback runs. Whatever goes
//! wrong — unreadable or malformed files, a callback that fails or panics — the core keeps
//! the certificates it has, and the failure is logged and counted. Connections already
//! established are never touched: only new handshakes see new certificates.
//!
//! Why not the core's own file-watcher certificate provider (the `grpc_tls_*` API)? On the
//! 1.51 core its server side throws the working handshaker factory away before building the
//! new one (`TlsServerSecurityConnector::UpdateHandshakerFactoryLocked`), so one bad file
//! leaves the server unable to accept any connection; and it cannot take a user callback.
//!
//! Ownership: the fetcher's `user_data` is a boxed [`FetcherSlot`] per core credentials
//! object. The fetcher API has no destructor, so the slot is freed by the `destroy` hook of
//! an auth-metadata processor (with no `process` function, which the core's server auth
//! filter skips) set on the same credentials: the core calls it exactly once, when the
//! credentials object itself is destroyed, after the last connector using it is gone.

use std::fmt;
use std::os::raw::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grpcore_sys as ffi;

use super::pem::{Certificate, Identity, PrivateKey};
use crate::ffi_guard::{ffi_guard, log_caught};
use crate::error::{ConfigErrorKind, Error};

/// What a TLS server presents and trusts: one or more identities (certificate chain and
/// key; the core picks by the client's SNI, else uses the first) and, optionally, the CA
/// certificates that client certificates must chain to.
#[derive(Clone, Debug)]
pub struct CertificateConfig {
    identities: Vec<Identity>,
    client_ca: Option<Certificate>,
}

impl CertificateConfig {
    /// A configuration presenting `identity`, with no client CA.
    pub fn new(identity: Identity) -> CertificateConfig {
        CertificateConfig {
            identities: vec![identity],
            client_ca: None,
        }
    }

    /// Adds another identity (e.g. an ECDSA and an RSA certificate, or several host names).
    pub fn add_identity(mut self, identity: Identity) -> CertificateConfig {
        self.identities.push(identity);
        self
    }

    /// Trusts `ca` to sign client certificates (needed by the verifying
    /// [`ClientCertificateMode`](crate::ClientCertificateMode)s).
    pub fn client_ca(mut self, ca: Certificate) -> CertificateConfig {
        self.client_ca = Some(ca);
        self
    }

    /// The identities, first one the default.
    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    /// The client CA certificates, if any.
    pub fn client_ca_certificates(&self) -> Option<&Certificate> {
        self.client_ca.as_ref()
    }

    /// The key/certificate pairs as the core takes them; they point into `self`.
    pub(crate) fn raw_pairs(&self) -> Vec<ffi::grpc_ssl_pem_key_cert_pair> {
        self.identities
            .iter()
            .map(|id| ffi::grpc_ssl_pem_key_cert_pair {
                private_key: id.key().as_c_ptr(),
                cert_chain: id.cert_chain().as_c_ptr(),
            })
            .collect()
    }

    pub(crate) fn raw_client_ca(&self) -> *const std::os::raw::c_char {
        self.client_ca.as_ref().map_or(ptr::null(), Certificate::as_c_ptr)
    }

    /// Whether the core will be able to use this configuration: builds, with the OpenSSL the
    /// core links, what the core's `tsi_create_ssl_server_handshaker_factory_ex` builds
    /// from it: each identity's chain and key in a server context (the client-CA roots are
    /// already parsed certificates).
    /// The fetcher cannot learn whether the core took a configuration it handed over (a
    /// refused one is only logged, and the old one kept), so a configuration becomes a
    /// generation only once this check passed: the generation counter, `current()` and a
    /// port bound later then never describe certificates the core refused. It catches
    /// what parsing cannot: a key below OpenSSL's security level ("ee key too small"), a
    /// chain certificate OpenSSL will not add. Without the `openssl` feature nothing is
    /// checked here: a configuration the core refuses is then only logged by the core.
    #[cfg(not(feature = "openssl"))]
    pub(crate) fn core_accepts(&self) -> Result<(), String> {
        Ok(())
    }

    /// See above: the check with the `openssl` feature.
    #[cfg(feature = "openssl")]
    pub(crate) fn core_accepts(&self) -> Result<(), String> {
        use openssl::ssl::{SslContext, SslMethod};
        for (i, id) in self.identities.iter().enumerate() {
            let which = format!("identity {} ({})", i + 1, id.cert_chain().subjects()[0]);
            let fail = |step: &str, e: openssl::error::ErrorStack| {
                format!("the TLS library refuses {which}: {step}: {}", e.to_string().trim())
            };
            let mut ctx = SslContext::builder(SslMethod::tls_server()).map_err(|e| fail("no TLS context", e))?;
            let certs = id.cert_chain().certs();
            ctx.set_certificate(&certs[0]).map_err(|e| fail("certificate", e))?;
            for extra in &certs[1..] {
                ctx.add_extra_chain_cert(extra.clone()).map_err(|e| fail("chain certificate", e))?;
            }
            ctx.set_private_key(id.key().pkey()).map_err(|e| fail("private key", e))?;
            ctx.check_private_key().map_err(|e| fail("key check", e))?;
        }
        Ok(())
    }

    /// A core certificate config (copies of the PEMs), for the fetcher to hand over.
    ///
    /// The core requires client-CA roots in a fetched config even when no client
    /// certificate is requested: Debian's 1.51 build keeps `GPR_DEBUG_ASSERT` live and
    /// aborts on `config->pem_root_certs != nullptr`
    /// (`try_replace_server_handshaker_factory`). Without a client CA we pass the server's
    /// own chain instead: it is only used to verify client certificates (which a mode
    /// without "verify" never does) and to name acceptable CAs in a certificate request.
    fn to_raw(&self) -> *mut ffi::grpc_ssl_server_certificate_config {
        let pairs = self.raw_pairs();
        let roots = match &self.client_ca {
            Some(ca) => ca.as_c_ptr(),
            None => self.identities[0].cert_chain().as_c_ptr(),
        };
        // SAFETY: the PEM strings are NUL-terminated and live across the call (owned by
        // `self`); the core copies them into the new config, which the caller hands to the
        // core (it destroys it).
        unsafe { ffi::grpc_ssl_server_certificate_config_create(roots, pairs.as_ptr(), pairs.len()) }
    }
}

/// The files a [`CertificateReloader`] watches: a certificate chain, its private key and,
/// optionally, the client CA certificates.
#[derive(Clone, Debug)]
pub struct CertificateFiles {
    cert_chain: PathBuf,
    private_key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl CertificateFiles {
    /// The server's certificate chain (leaf first) and private key, in PEM.
    pub fn new(cert_chain: impl Into<PathBuf>, private_key: impl Into<PathBuf>) -> CertificateFiles {
        CertificateFiles {
            cert_chain: cert_chain.into(),
            private_key: private_key.into(),
            client_ca: None,
        }
    }

    /// Also watch a PEM file of CA certificates that client certificates must chain to.
    pub fn client_ca(mut self, path: impl Into<PathBuf>) -> CertificateFiles {
        self.client_ca = Some(path.into());
        self
    }

    fn read(&self) -> Result<FileContents, Error> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| Error::config_kind(ConfigErrorKind::File, format!("cannot read {}: {e}", p.display())).with_source(e));
        Ok(FileContents {
            cert_chain: read(&self.cert_chain)?,
            private_key: read(&self.private_key)?,
            client_ca: self.client_ca.as_deref().map(read).transpose()?,
        })
    }

    fn parse(&self, c: &FileContents) -> Result<CertificateConfig, Error> {
        let chain = Certificate::parse(&format!("certificate file {}", self.cert_chain.display()), &c.cert_chain)?;
        let key = PrivateKey::parse(&format!("private key file {}", self.private_key.display()), &c.private_key)?;
        let identity = Identity::new(chain, key).map_err(|e| {
            Error::config_kind(ConfigErrorKind::Credentials, format!(
                "{} and {}: {}",
                self.cert_chain.display(),
                self.private_key.display(),
                e.to_string().trim_start_matches("invalid configuration: ")
            ))
        })?;
        let mut config = CertificateConfig::new(identity);
        if let (Some(path), Some(bytes)) = (&self.client_ca, &c.client_ca) {
            config = config.client_ca(Certificate::parse(&format!("client CA file {}", path.display()), bytes)?);
        }
        Ok(config)
    }

    /// Reads and checks the files once.
    pub fn load(&self) -> Result<CertificateConfig, Error> {
        self.parse(&self.read()?)
    }
}

#[derive(PartialEq, Eq)]
struct FileContents {
    cert_chain: Vec<u8>,
    private_key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Drop for FileContents {
    fn drop(&mut self) {
        for b in self.private_key.iter_mut() {
            // SAFETY: an exclusive reference into our own buffer; volatile so the wipe stays.
            unsafe { ptr::write_volatile(b, 0) };
        }
    }
}

/// The error type of a reload callback.
pub type ReloadError = Box<dyn std::error::Error + Send + Sync + 'static>;

type Callback = Box<dyn FnMut() -> Result<Option<CertificateConfig>, ReloadError> + Send + 'static>;

enum Source {
    Files { files: CertificateFiles, seen: Option<FileContents> },
    Callback(Callback),
    Manual,
}

struct Inner {
    current: CertificateConfig,
    generation: u64,
    /// Where new certificates come from. Taken out (`None`) while a check reads files or runs
    /// the callback, so that no lock is held across I/O or user code: a callback may use
    /// its own reloader, and a concurrent check meanwhile just reports what is current.
    source: Option<Source>,
    interval: Duration,
    last_check: Option<Instant>,
    failures: u64,
    last_error: Option<String>,
}

/// Certificates a TLS server can swap while running (see
/// [`ServerCredentials::tls_reloading`](crate::ServerCredentials::tls_reloading)).
///
/// Before each new handshake (at most once per [`check_interval`](Self::check_interval),
/// default 1 s) the reloader looks for new certificates — re-reading its files, or calling
/// its callback — and checks what it finds. Good certificates are used from that handshake
/// on; connections already open keep theirs. Bad ones (unreadable or malformed files, a key
/// that does not match, a key or certificate the TLS library refuses, a callback that
/// returns an error or panics) are logged (`log::error!`) and counted in
/// [`failures`](Self::failures), and the certificates in use stay.
///
/// ```no_run
/// # fn main() -> Result<(), grpcore::Error> {
/// use grpcore::{CertificateFiles, CertificateReloader, ClientCertificateMode, ServerCredentials};
/// // Replace the files atomically (write elsewhere, then rename over them).
/// let reloader = CertificateReloader::watch_files(
///     CertificateFiles::new("/etc/svc/tls.crt", "/etc/svc/tls.key").client_ca("/etc/svc/ca.crt"),
/// )?;
/// let creds = ServerCredentials::tls_reloading(&reloader, ClientCertificateMode::RequireAndVerify)?;
/// # drop(creds); Ok(()) }
/// ```
#[derive(Clone)]
pub struct CertificateReloader {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for CertificateReloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("CertificateReloader")
            .field("generation", &inner.generation)
            .field("failures", &inner.failures)
            .field("interval", &inner.interval)
            .finish_non_exhaustive()
    }
}

/// The outcome of one check for new certificates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    Unchanged,
    Failed,
}

impl CertificateReloader {
    fn with(current: CertificateConfig, source: Source) -> CertificateReloader {
        CertificateReloader {
            inner: Arc::new(Mutex::new(Inner {
                current,
                generation: 1,
                source: Some(source),
                interval: Duration::from_secs(1),
                last_check: None,
                failures: 0,
                last_error: None,
            })),
        }
    }

    /// Watches `files`: they are read and checked now (an error here is returned), then
    /// re-read when a check finds their contents changed.
    pub fn watch_files(files: CertificateFiles) -> Result<CertificateReloader, Error> {
        let contents = files.read()?;
        let current = files.parse(&contents)?;
        Ok(CertificateReloader::with(
            current,
            Source::Files {
                files,
                seen: Some(contents),
            },
        ))
    }

    /// Starts with `initial` and calls `fetch` at each check: `Ok(None)` keeps the current
    /// certificates, `Ok(Some(config))` replaces them, `Err(_)` (or a panic) is logged and
    /// keeps them. `fetch` runs on one of the core's threads while a connection waits for
    /// its handshake: keep it quick (e.g. read what another task prepared).
    pub fn from_fn<F>(initial: CertificateConfig, fetch: F) -> CertificateReloader
    where
        F: FnMut() -> Result<Option<CertificateConfig>, ReloadError> + Send + 'static,
    {
        CertificateReloader::with(initial, Source::Callback(Box::new(fetch)))
    }

    /// Starts with `initial`; new certificates come only from [`set`](Self::set).
    pub fn manual(initial: CertificateConfig) -> CertificateReloader {
        CertificateReloader::with(initial, Source::Manual)
    }

    /// Looks for new certificates at most once per `interval` (default 1 s; zero checks
    /// before every handshake).
    pub fn check_interval(self, interval: Duration) -> CertificateReloader {
        self.lock().interval = interval;
        self
    }

    /// Uses `config` from the next handshake on, if the TLS library accepts it (see
    /// [`failures`](Self::failures)); otherwise it is logged and counted as a failed check,
    /// and the certificates in use stay.
    pub fn set(&self, config: CertificateConfig) {
        self.apply(Ok(Some(config)));
    }

    /// The certificates new handshakes use.
    pub fn current(&self) -> CertificateConfig {
        self.lock().current.clone()
    }

    /// How many configurations have been accepted, the first one included.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// How many checks failed (the certificates in use were kept each time).
    pub fn failures(&self) -> u64 {
        self.lock().failures
    }

    /// The reason of the latest failed check, if any.
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks for new certificates if the interval has passed; returns the current generation
    /// and configuration with the check's outcome.
    ///
    /// The lock is held only to read and update the state, never across file I/O or the
    /// user's callback (which runs on the core's handshake thread and may use this reloader).
    fn check(&self) -> (u64, CertificateConfig, Check) {
        let taken = {
            let mut inner = self.lock();
            let now = Instant::now();
            let due = match inner.last_check {
                None => true,
                Some(t) => now.duration_since(t) >= inner.interval,
            };
            if due {
                inner.last_check = Some(now);
                inner.source.take()
            } else {
                None
            }
        };
        let Some(source) = taken else {
            // Not due, or another thread is checking right now: report what is current.
            let inner = self.lock();
            return (inner.generation, inner.current.clone(), Check::Unchanged);
        };
        // Puts the source back however `look` ends (a panic included).
        let mut back = PutBack { reloader: self, source: Some(source) };
        let found = match back.source.as_mut() {
            Some(source) => source.look(),
            None => Ok(None),
        };
        drop(back);
        self.apply(found)
    }

    /// Records the outcome of a look for new certificates (or a `set`): a new configuration
    /// the TLS library accepts becomes the next generation; anything else is a failure,
    /// counted and logged, and the certificates in use stay.
    fn apply(&self, found: Result<Option<CertificateConfig>, String>) -> (u64, CertificateConfig, Check) {
        let found = match found {
            Ok(Some(config)) => config.core_accepts().map(|()| Some(config)),
            other => other,
        };
        let mut inner = self.lock();
        let outcome = match found {
            Ok(None) => Check::Unchanged,
            Ok(Some(config)) => {
                inner.current = config;
                inner.generation += 1;
                inner.last_error = None;
                let generation = inner.generation;
                drop(inner);
                log_caught!(info, "TLS certificates reloaded (generation {generation})");
                inner = self.lock();
                Check::Unchanged
            }
            Err(why) => {
                inner.failures += 1;
                let repeated = inner.last_error.as_deref() == Some(why.as_str());
                inner.last_error = Some(why.clone());
                let generation = inner.generation;
                drop(inner);
                if !repeated {
                    log_caught!(
                        error,
                        "TLS certificate reload failed, keeping the certificates in use (generation {generation}): {why}"
                    );
                }
                inner = self.lock();
                Check::Failed
            }
        };
        (inner.generation, inner.current.clone(), outcome)
    }
}

/// Returns a taken-out [`Source`] to its reloader when dropped.
struct PutBack<'a> {
    reloader: &'a CertificateReloader,
    source: Option<Source>,
}

impl Drop for PutBack<'_> {
    fn drop(&mut self) {
        let mut inner = self.reloader.lock();
        if inner.source.is_none() {
            inner.source = self.source.take();
        }
    }
}

impl Source {
    /// Re-reads the files or calls the callback: `Ok(None)` when nothing changed. Runs with
    /// no lock held.
    fn look(&mut self) -> Result<Option<CertificateConfig>, String> {
        match self {
            Source::Manual => Ok(None),
            Source::Files { files, seen } => match files.read() {
                Err(e) => Err(e.to_string()),
                Ok(contents) if seen.as_ref() == Some(&contents) => Ok(None),
                Ok(contents) => {
                    let parsed = files.parse(&contents);
                    *seen = Some(contents);
                    parsed.map(Some).map_err(|e| e.to_string())
                }
            },
            Source::Callback(fetch) => match catch_unwind(AssertUnwindSafe(fetch)) {
                Ok(Ok(found)) => Ok(found),
                Ok(Err(e)) => Err(format!("the reload callback failed: {e}")),
                Err(panic) => Err(format!("the reload callback panicked: {}", crate::task::panic_message(&*panic))),
            },
        }
    }
}

/// The fetcher state of one core credentials object (one listening port).
pub(crate) struct FetcherSlot {
    reloader: CertificateReloader,
    /// The generation this port's connector has; 0 before its first fetch. Advanced only
    /// when a configuration is handed over (every generation passed the TLS library's check
    /// in `apply`, so the core takes it); a generation this port refuses stays undelivered
    /// and is tried again at the next handshake.
    delivered: AtomicU64,
    /// The last generation this port refused (logged once, not at every handshake).
    refused: AtomicU64,
    /// The client-certificate mode verifies, so every config needs a client CA.
    needs_ca: bool,
}

impl FetcherSlot {
    pub(crate) fn new(reloader: CertificateReloader, needs_ca: bool) -> FetcherSlot {
        FetcherSlot {
            reloader,
            delivered: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            needs_ca,
        }
    }

    fn fetch(&self, out: *mut *mut ffi::grpc_ssl_server_certificate_config) -> ffi::grpc_ssl_certificate_config_reload_status {
        let (generation, config, outcome) = self.reloader.check();
        if self.delivered.load(Ordering::Acquire) != generation {
            if self.needs_ca && config.client_ca.is_none() {
                if self.refused.swap(generation, Ordering::AcqRel) != generation {
                    log_caught!(
                        error,
                        "TLS certificate reload: generation {generation} has no client CA but the client-certificate \
                         mode verifies client certificates; keeping the certificates in use"
                    );
                }
                return ffi::GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
            }
            let raw = config.to_raw();
            if raw.is_null() {
                return ffi::GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
            }
            // SAFETY: `out` is the core's out-pointer for this call; it takes ownership of
            // the config (and destroys it after use).
            unsafe { *out = raw };
            self.delivered.store(generation, Ordering::Release);
            return ffi::GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
        }
        match outcome {
            Check::Unchanged => ffi::GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED,
            Check::Failed => ffi::GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL,
        }
    }
}

/// The core's certificate-config fetcher callback.
///
/// # Safety
/// Called only by the core, with the [`FetcherSlot`] registered with it as `user_data`
/// (alive until `free_slot`) and a valid `config` out-pointer.
pub(crate) unsafe extern "C" fn fetch_config(
    user_data: *mut c_void,
    config: *mut *mut ffi::grpc_ssl_server_certificate_config,
) -> ffi::grpc_ssl_certificate_config_reload_status {
    // Everything, logging included, runs inside `ffi_guard`: no panic reaches the core.
    ffi_guard(ffi::GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL, || {
        // SAFETY: `user_data` is the slot we registered with this callback; it lives until
        // the credentials object (and so every connector that calls us) is destroyed.
        let slot = unsafe { &*(user_data as *const FetcherSlot) };
        match catch_unwind(AssertUnwindSafe(|| slot.fetch(config))) {
            Ok(status) => status,
            Err(panic) => {
                log_caught!(error, "TLS certificate reload panicked: {}", crate::task::panic_message(&*panic));
                ffi::GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL
            }
        }
    })
}

/// Frees a [`FetcherSlot`]: the `destroy` of the processor that carries it.
///
/// # Safety
/// Called once by the core, with the slot registered with `fetch_config` (or null).
pub(crate) unsafe extern "C" fn free_slot(state: *mut c_void) {
    if state.is_null() {
        return;
    }
    // SAFETY: `state` came from Box::into_raw in `ServerCredentials::create`; the core calls
    // destroy once, when the credentials object dies.
    let slot = unsafe { Box::from_raw(state as *mut FetcherSlot) };
    ffi_guard((), move || {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(slot))) {
            log_caught!(error, "dropping a certificate reloader panicked: {}", crate::task::panic_message(&*panic));
        }
    });
}
