//! Server-side credentials: [`ServerCredentials`] (TLS with static or reloading
//! certificates, client-certificate modes, local, insecure). Binding a port with them, and
//! probing the socket when that fails, live in `crate::server::bind`.
//!
//! Like [`ChannelCredentials`](crate::ChannelCredentials), a `ServerCredentials` is a recipe:
//! the core's credentials object is made when a port is bound
//! ([`ServerBuilder::bind_with_credentials`](crate::ServerBuilder::bind_with_credentials))
//! and released once the server holds its own reference. One object per port matters for
//! reloading certificates: each port's connector must get the initial certificates from its
//! own first fetch (see `reload`).

use std::fmt;
use std::os::raw::c_void;
use std::ptr;

use grpcore_sys as ffi;

use super::channel::LocalConnect;
use super::pem::{Certificate, Identity};
use super::reload::{fetch_config, free_slot, CertificateConfig, CertificateReloader, FetcherSlot};
use crate::error::{ConfigErrorKind, Error};

/// Whether a TLS server asks clients for a certificate, and what it does with one.
///
/// "Verify" means the core checks the certificate chains to the server's client CA;
/// without it, any certificate is accepted and left to the application (see
/// [`ServerContext::auth_context`](crate::ServerContext::auth_context)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientCertificateMode {
    /// Do not ask for a client certificate (plain TLS). The default.
    #[default]
    DontRequest,
    /// Ask for one; accept clients without one, and any certificate without verifying it.
    Request,
    /// Ask for one; accept clients without one, but verify a certificate that is presented.
    RequestAndVerify,
    /// Require one, without verifying it.
    Require,
    /// Require one and verify it against the client CA (mutual TLS).
    RequireAndVerify,
}

impl ClientCertificateMode {
    fn raw(self) -> ffi::grpc_ssl_client_certificate_request_type {
        match self {
            ClientCertificateMode::DontRequest => ffi::GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            ClientCertificateMode::Request => ffi::GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY,
            ClientCertificateMode::RequestAndVerify => ffi::GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY,
            ClientCertificateMode::Require => ffi::GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY,
            ClientCertificateMode::RequireAndVerify => ffi::GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY,
        }
    }

    fn verifies(self) -> bool {
        matches!(self, ClientCertificateMode::RequestAndVerify | ClientCertificateMode::RequireAndVerify)
    }
}

/// How a server secures the connections it accepts on a port.
///
/// ```no_run
/// # fn main() -> Result<(), grpcore::Error> {
/// use grpcore::{Certificate, ClientCertificateMode, Identity, ServerBuilder, ServerCredentials};
/// # let env = grpcore::Environment::new(1);
/// let creds = ServerCredentials::tls(Identity::from_pem_files("server.pem", "server.key")?)
///     .client_ca(Certificate::from_pem_file("clients-ca.pem")?)
///     .client_certificate(ClientCertificateMode::RequireAndVerify)
///     .build()?;
/// let server = ServerBuilder::new(&env).bind_with_credentials("0.0.0.0:443", &creds).build()?;
/// # drop(server); Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ServerCredentials {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Insecure,
    Local(LocalConnect),
    Tls {
        config: CertificateConfig,
        mode: ClientCertificateMode,
    },
    Reloading {
        reloader: CertificateReloader,
        mode: ClientCertificateMode,
    },
    /// Security from the xDS control plane, else the fallback.
    #[cfg(feature = "xds")]
    Xds(Box<ServerCredentials>),
}

fn needs_ca_error(mode: ClientCertificateMode) -> Error {
    Error::config_kind(ConfigErrorKind::Credentials, format!(
        "client certificate mode {mode:?} verifies client certificates, so it needs the CA that signs them: \
         set client_ca(...)"
    ))
}

impl ServerCredentials {
    /// No transport security (what [`ServerBuilder::bind`](crate::ServerBuilder::bind) uses).
    pub fn insecure() -> ServerCredentials {
        ServerCredentials { kind: Kind::Insecure }
    }

    /// Local credentials: only accepts connections that are really local (a unix socket for
    /// [`LocalConnect::Unix`], loopback TCP for [`LocalConnect::Tcp`]); no encryption.
    pub fn local(kind: LocalConnect) -> ServerCredentials {
        ServerCredentials { kind: Kind::Local(kind) }
    }

    /// Starts TLS credentials presenting `identity`.
    pub fn tls(identity: Identity) -> TlsServerCredentials {
        TlsServerCredentials {
            config: CertificateConfig::new(identity),
            mode: ClientCertificateMode::DontRequest,
        }
    }

    /// TLS credentials whose certificates (and client CA) come from `reloader` and may change
    /// while the server runs. Fails if `mode` verifies client certificates but the
    /// reloader's current configuration has no client CA, or if the TLS library refuses its
    /// current certificates (e.g. a key below its security level).
    pub fn tls_reloading(reloader: &CertificateReloader, mode: ClientCertificateMode) -> Result<ServerCredentials, Error> {
        if mode.verifies() && reloader.current().client_ca_certificates().is_none() {
            return Err(needs_ca_error(mode));
        }
        reloader.current().core_accepts().map_err(|m| Error::config_kind(ConfigErrorKind::Credentials, m))?;
        Ok(ServerCredentials {
            kind: Kind::Reloading {
                reloader: reloader.clone(),
                mode,
            },
        })
    }

    /// Security from the xDS control plane, for the ports of an
    /// [xDS-enabled server](crate::ServerBuilder::xds): where the Listener's filter chain
    /// carries a `DownstreamTlsContext` naming certificate provider instances of the
    /// [bootstrap](crate::xds::XdsBootstrap) (such as a
    /// [`file_watcher`](crate::xds::XdsBootstrap::file_watcher)), connections are TLS with
    /// those certificates (and client certificates verified against the provider's roots
    /// when the context requires them); where there is none, `fallback` is used
    /// (typically [`insecure`](Self::insecure)). On a server that is not xDS-enabled, this
    /// is `fallback`.
    #[cfg(feature = "xds")]
    pub fn xds(fallback: ServerCredentials) -> ServerCredentials {
        ServerCredentials { kind: Kind::Xds(Box::new(fallback)) }
    }

    /// Makes the core's credentials object for one port. The core must be initialised (the
    /// server builder's environment keeps it so).
    pub(crate) fn create(&self) -> Result<RawServerCredentials, Error> {
        let raw = match &self.kind {
            // SAFETY: plain constructor; the reference it returns is owned by the result.
            Kind::Insecure => unsafe { ffi::grpc_insecure_server_credentials_create() },
            // SAFETY: as above.
            Kind::Local(kind) => unsafe { ffi::grpc_local_server_credentials_create(kind.raw()) },
            Kind::Tls { config, mode } => {
                let mut pairs = config.raw_pairs();
                // SAFETY: the PEM strings are NUL-terminated and live across the call (owned
                // by `config`); the core copies them.
                unsafe {
                    ffi::grpc_ssl_server_credentials_create_ex(
                        config.raw_client_ca(),
                        pairs.as_mut_ptr(),
                        pairs.len(),
                        mode.raw(),
                        ptr::null_mut(),
                    )
                }
            }
            Kind::Reloading { reloader, mode } => {
                let slot = Box::into_raw(Box::new(FetcherSlot::new(reloader.clone(), mode.verifies())));
                // SAFETY: `fetch_config` matches the fetcher signature and `slot` stays valid
                // until `free_slot`; the options are consumed (freed) by create_with_options.
                let creds = unsafe {
                    let options = ffi::grpc_ssl_server_credentials_create_options_using_config_fetcher(
                        mode.raw(),
                        Some(fetch_config),
                        slot as *mut c_void,
                    );
                    ffi::grpc_ssl_server_credentials_create_with_options(options)
                };
                if creds.is_null() {
                    // SAFETY: the core refused the options, so nothing else refers to `slot`.
                    drop(unsafe { Box::from_raw(slot) });
                } else {
                    let processor = ffi::grpc_auth_metadata_processor {
                        process: None,
                        destroy: Some(free_slot),
                        state: slot as *mut c_void,
                    };
                    // SAFETY: `creds` is live. With no `process` the server auth filter skips
                    // the processor; its `destroy` runs once, when `creds` is destroyed, and
                    // frees the slot the fetcher uses (see the `reload` module docs).
                    unsafe { ffi::grpc_server_credentials_set_auth_metadata_processor(creds, processor) };
                }
                creds
            }
            #[cfg(feature = "xds")]
            Kind::Xds(fallback) => {
                let fallback = fallback.create()?;
                // SAFETY: `fallback` is live; the xDS credentials take a reference of their
                // own (XdsServerCredentials(fallback->Ref()) in 1.51), ours is released when
                // `fallback` drops.
                unsafe { ffi::grpc_xds_server_credentials_create(fallback.as_ptr()) }
            }
        };
        if raw.is_null() {
            return Err(Error::config_kind(ConfigErrorKind::Credentials, "the core could not create the server credentials (see the grpc_core log)"));
        }
        Ok(RawServerCredentials(raw))
    }
}

/// TLS settings of a server port; finish with [`build`](Self::build).
#[derive(Clone, Debug)]
pub struct TlsServerCredentials {
    config: CertificateConfig,
    mode: ClientCertificateMode,
}

impl TlsServerCredentials {
    /// Presents another identity too (the core chooses by the client's SNI, defaulting to
    /// the first).
    pub fn add_identity(mut self, identity: Identity) -> TlsServerCredentials {
        self.config = self.config.add_identity(identity);
        self
    }

    /// The CA certificates client certificates must chain to.
    pub fn client_ca(mut self, ca: Certificate) -> TlsServerCredentials {
        self.config = self.config.client_ca(ca);
        self
    }

    /// Whether to ask clients for certificates. Default: [`ClientCertificateMode::DontRequest`].
    pub fn client_certificate(mut self, mode: ClientCertificateMode) -> TlsServerCredentials {
        self.mode = mode;
        self
    }

    /// Checks the settings (a verifying mode needs a client CA) and returns the credentials.
    pub fn build(self) -> Result<ServerCredentials, Error> {
        if self.mode.verifies() && self.config.client_ca_certificates().is_none() {
            return Err(needs_ca_error(self.mode));
        }
        Ok(ServerCredentials {
            kind: Kind::Tls {
                config: self.config,
                mode: self.mode,
            },
        })
    }
}

/// Owns one reference to core server credentials.
pub(crate) struct RawServerCredentials(*mut ffi::grpc_server_credentials);

impl Drop for RawServerCredentials {
    fn drop(&mut self) {
        // SAFETY: we own one reference; a server port bound with it holds its own.
        unsafe { ffi::grpc_server_credentials_release(self.0) }
    }
}

impl RawServerCredentials {
    /// The core's pointer, valid while `self` lives.
    pub(crate) fn as_ptr(&self) -> *mut ffi::grpc_server_credentials {
        self.0
    }
}

impl fmt::Debug for RawServerCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawServerCredentials").finish_non_exhaustive()
    }
}
