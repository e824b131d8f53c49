//! The peer's identity as the core's auth context describes it: [`AuthContext`].
//!
//! The core attaches an auth context to every call on a secured connection (and a minimal
//! one, `transport_security_type = "insecure"`, to plaintext ones). We copy its properties
//! into Rust values once and release the core's reference at once, so an [`AuthContext`] is
//! plain data: cheap to keep, `Send + Sync`, no lifetime tied to the call.

use std::ffi::CStr;

use grpcore_sys as ffi;

use crate::call::Call;

/// Property names the 1.51 core sets (`grpc_security_constants.h`).
pub(crate) mod names {
    pub const TRANSPORT_SECURITY_TYPE: &str = "transport_security_type";
    pub const X509_CN: &str = "x509_common_name";
    pub const X509_SUBJECT: &str = "x509_subject";
    pub const X509_SAN: &str = "x509_subject_alternative_name";
    pub const X509_PEM_CERT: &str = "x509_pem_cert";
    pub const X509_PEM_CERT_CHAIN: &str = "x509_pem_cert_chain";
    pub const SSL_SESSION_REUSED: &str = "ssl_session_reused";
    pub const SECURITY_LEVEL: &str = "security_level";
    pub const PEER_DNS: &str = "peer_dns";
    pub const PEER_URI: &str = "peer_uri";
    pub const PEER_EMAIL: &str = "peer_email";
    pub const PEER_IP: &str = "peer_ip";
    pub const PEER_SPIFFE_ID: &str = "peer_spiffe_id";
}

/// One property: a name and a value (text for every property the core defines today).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthProperty {
    name: String,
    value: Vec<u8>,
}

impl std::fmt::Debug for AuthProperty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.value_str() {
            Some(v) => write!(f, "{}={v:?}", self.name),
            None => write!(f, "{}={:?}", self.name, self.value),
        }
    }
}

impl AuthProperty {
    /// The property's name, e.g. `x509_common_name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw value.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The value as text, if it is UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// What the transport knows about the peer of a call: how the connection is secured and,
/// for TLS with a peer certificate, who the peer is.
///
/// On a server handler, [`ServerContext::auth_context`](crate::ServerContext::auth_context)
/// gives the client's side; under mutual TLS its certificate's common name and subject
/// alternative names are the caller's identity.
///
/// ```no_run
/// # async fn handler(ctx: grpcore::ServerContext) -> Result<(), grpcore::Status> {
/// let auth = ctx.auth_context();
/// if auth.peer_common_name() != Some("billing-service") {
///     return Err(grpcore::Status::new(grpcore::Code::PermissionDenied, "who are you?"));
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthContext {
    properties: Vec<AuthProperty>,
    identity_property: Option<String>,
    authenticated: bool,
}

/// Owns one reference to a core auth context.
struct RawAuthContext(*mut ffi::grpc_auth_context);

impl Drop for RawAuthContext {
    fn drop(&mut self) {
        // SAFETY: we own exactly one reference (from grpc_call_auth_context); release it once.
        unsafe { ffi::grpc_auth_context_release(self.0) }
    }
}

/// Copies every property an iterator yields.
///
/// # Safety
/// `it` must come from a live auth context that outlives this call.
unsafe fn collect(mut it: ffi::grpc_auth_property_iterator) -> Vec<AuthProperty> {
    let mut out = Vec::new();
    loop {
        // SAFETY: the iterator points into a live context (caller's contract); each property's
        // name is NUL-terminated and its value has `value_length` readable bytes.
        let p = unsafe { ffi::grpc_auth_property_iterator_next(&mut it) };
        if p.is_null() {
            break;
        }
        // SAFETY: as above.
        let p = unsafe { &*p };
        let name = if p.name.is_null() {
            String::new()
        } else {
            // SAFETY: as above.
            unsafe { CStr::from_ptr(p.name) }.to_string_lossy().into_owned()
        };
        let value = if p.value.is_null() || p.value_length == 0 {
            Vec::new()
        } else {
            // SAFETY: as above.
            unsafe { std::slice::from_raw_parts(p.value as *const u8, p.value_length) }.to_vec()
        };
        out.push(AuthProperty { name, value });
    }
    out
}

impl AuthContext {
    /// Snapshot of the auth context of `call` (empty if the core has none).
    pub(crate) fn of_call(call: &Call) -> AuthContext {
        // SAFETY: the call is live while borrowed; the returned context carries one reference
        // for us (or is null), released by `RawAuthContext`.
        let raw = unsafe { ffi::grpc_call_auth_context(call.as_ptr()) };
        if raw.is_null() {
            return AuthContext::default();
        }
        let owner = RawAuthContext(raw);
        // SAFETY: `owner` keeps the context alive across these reads; the identity property
        // name is NUL-terminated or null.
        unsafe {
            let properties = collect(ffi::grpc_auth_context_property_iterator(owner.0));
            let name = ffi::grpc_auth_context_peer_identity_property_name(owner.0);
            let identity_property = (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned());
            let authenticated = ffi::grpc_auth_context_peer_is_authenticated(owner.0) != 0;
            AuthContext {
                properties,
                identity_property,
                authenticated,
            }
        }
    }

    /// Every property, in the core's order.
    pub fn properties(&self) -> &[AuthProperty] {
        &self.properties
    }

    /// The values of every property called `name`, as text (non-UTF-8 values are skipped).
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.properties
            .iter()
            .filter(|p| p.name == name)
            .filter_map(AuthProperty::value_str)
            .collect()
    }

    /// The first value of the property called `name`, as text.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.properties.iter().find(|p| p.name == name).and_then(AuthProperty::value_str)
    }

    /// How the connection is secured: `"ssl"` (TLS from [`ChannelCredentials::tls`] and
    /// [`ServerCredentials::tls`]), `"tls"` (the core's newer TLS stack), `"local"`
    /// (local credentials), `"insecure"` (plaintext); `None` if the core says nothing.
    ///
    /// [`ChannelCredentials::tls`]: crate::ChannelCredentials::tls
    /// [`ServerCredentials::tls`]: crate::ServerCredentials::tls
    pub fn transport_security_type(&self) -> Option<&str> {
        self.value(names::TRANSPORT_SECURITY_TYPE)
    }

    /// True when the connection runs TLS (either of the core's TLS stacks).
    pub fn is_tls(&self) -> bool {
        matches!(self.transport_security_type(), Some("ssl" | "tls"))
    }

    /// True when the core authenticated the peer: it presented a certificate that was
    /// verified and yielded an identity (a name or SAN).
    pub fn peer_is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// The name of the property that holds the peer's identity (`x509_subject_alternative_name`
    /// if the certificate has SANs, else `x509_common_name`).
    pub fn peer_identity_property_name(&self) -> Option<&str> {
        self.identity_property.as_deref()
    }

    /// The peer's identity values (the values of
    /// [`peer_identity_property_name`](Self::peer_identity_property_name)).
    pub fn peer_identity(&self) -> Vec<&str> {
        self.identity_property.as_deref().map(|n| self.values(n)).unwrap_or_default()
    }

    /// The common name (CN) of the peer certificate's subject.
    pub fn peer_common_name(&self) -> Option<&str> {
        self.value(names::X509_CN)
    }

    /// The peer certificate's whole subject, as the core formats it (e.g.
    /// `CN=client,O=Example`).
    pub fn peer_subject(&self) -> Option<&str> {
        self.value(names::X509_SUBJECT)
    }

    /// Every subject alternative name of the peer certificate (DNS names, URIs, emails and
    /// IP addresses together).
    pub fn peer_subject_alt_names(&self) -> Vec<&str> {
        self.values(names::X509_SAN)
    }

    /// The DNS names among the peer certificate's subject alternative names.
    pub fn peer_dns_names(&self) -> Vec<&str> {
        self.values(names::PEER_DNS)
    }

    /// The URIs among the peer certificate's subject alternative names.
    pub fn peer_uris(&self) -> Vec<&str> {
        self.values(names::PEER_URI)
    }

    /// The email addresses among the peer certificate's subject alternative names.
    pub fn peer_emails(&self) -> Vec<&str> {
        self.values(names::PEER_EMAIL)
    }

    /// The IP addresses among the peer certificate's subject alternative names.
    pub fn peer_ips(&self) -> Vec<&str> {
        self.values(names::PEER_IP)
    }

    /// The peer's SPIFFE ID, when its certificate has exactly one URI SAN and it is one.
    pub fn peer_spiffe_id(&self) -> Option<&str> {
        self.value(names::PEER_SPIFFE_ID)
    }

    /// The peer's certificate in PEM.
    pub fn peer_certificate_pem(&self) -> Option<&str> {
        self.value(names::X509_PEM_CERT)
    }

    /// The peer's certificate chain in PEM as OpenSSL reports it: on a server, without the
    /// leaf; possibly empty on a resumed TLS session.
    pub fn peer_certificate_chain_pem(&self) -> Option<&str> {
        self.value(names::X509_PEM_CERT_CHAIN)
    }

    /// The connection's security level, e.g. `TSI_PRIVACY_AND_INTEGRITY`.
    pub fn security_level(&self) -> Option<&str> {
        self.value(names::SECURITY_LEVEL)
    }

    /// For TLS: whether this connection resumed an earlier TLS session (an abbreviated
    /// handshake) instead of running a full one. `None` when not TLS.
    pub fn ssl_session_reused(&self) -> Option<bool> {
        self.value(names::SSL_SESSION_REUSED).map(|v| v == "true")
    }

    /// Builds a context from properties (for tests of code that consumes one).
    pub fn from_properties<N, V>(properties: impl IntoIterator<Item = (N, V)>, identity_property: Option<&str>) -> AuthContext
    where
        N: Into<String>,
        V: Into<Vec<u8>>,
    {
        let properties: Vec<AuthProperty> = properties
            .into_iter()
            .map(|(n, v)| AuthProperty {
                name: n.into(),
                value: v.into(),
            })
            .collect();
        let authenticated = identity_property.is_some_and(|n| properties.iter().any(|p| p.name == n));
        AuthContext {
            properties,
            identity_property: identity_property.map(str::to_string),
            authenticated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_accessors_read_the_core_names() {
        let ctx = AuthContext::from_properties(
            [
                ("transport_security_type", "ssl"),
                ("x509_common_name", "client"),
                ("x509_subject_alternative_name", "client.test"),
                ("x509_subject_alternative_name", "spiffe://test/client"),
                ("peer_dns", "client.test"),
                ("peer_uri", "spiffe://test/client"),
                ("ssl_session_reused", "false"),
            ],
            Some("x509_subject_alternative_name"),
        );
        assert!(ctx.is_tls());
        assert!(ctx.peer_is_authenticated());
        assert_eq!(ctx.peer_common_name(), Some("client"));
        assert_eq!(ctx.peer_dns_names(), ["client.test"]);
        assert_eq!(ctx.peer_uris(), ["spiffe://test/client"]);
        assert_eq!(ctx.peer_identity(), ["client.test", "spiffe://test/client"]);
        assert_eq!(ctx.ssl_session_reused(), Some(false));
        assert_eq!(AuthContext::default().ssl_session_reused(), None);
    }
}
