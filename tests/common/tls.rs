//! Test PKI for the TLS tests: a CA, server and client certificates signed by it, and the
//! bad ones (another CA, an expired certificate), generated once per test binary with the
//! `openssl` crate (P-256 keys: fast to make) and written to files for the peers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::{Arc, Mutex};

use grpcore::{
    AuthContext, Certificate, ChannelCredentials, ClientCertificateMode, Environment, Identity, Server, ServerBuilder,
    ServerCredentials, SslSessionCache,
};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Name, X509};

/// The host name the server certificates are issued for (clients override the target's
/// name, 127.0.0.1, with it).
pub const SERVER_NAME: &str = "grpcore.test";
/// The client certificate's subject CN, DNS SAN and URI SAN.
/// The name of the second server identity.
pub const SECOND_NAME: &str = "second.grpcore.test";
pub const CLIENT_CN: &str = "grpcore-test-client";
pub const CLIENT_DNS: &str = "client.grpcore.test";
pub const CLIENT_URI: &str = "spiffe://grpcore.test/ns/test/sa/client";
/// The second client identity's CN and URI SAN (access rules tell the two apart).
pub const CLIENT_B_CN: &str = "grpcore-test-client-b";
pub const CLIENT_B_URI: &str = "spiffe://grpcore.test/ns/test/sa/batch";

/// A certificate and its key, in PEM and on disk.
pub struct KeyCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    cert: X509,
    key: PKey<Private>,
}

impl KeyCert {
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem).unwrap()
    }

    pub fn certificate(&self) -> Certificate {
        Certificate::from_pem(&self.cert_pem).unwrap()
    }

    pub fn path(&self) -> &str {
        self.cert_path.to_str().unwrap()
    }

    pub fn key(&self) -> &str {
        self.key_path.to_str().unwrap()
    }
}

pub struct Pki {
    pub dir: PathBuf,
    pub ca: KeyCert,
    /// The server's certificate (SANs: grpcore.test, localhost, 127.0.0.1).
    pub server: KeyCert,
    /// Another certificate for the same names, with another key and CN (rotation).
    pub server_rotated: KeyCert,
    /// Same names, signed by the CA, but no longer valid.
    pub server_expired: KeyCert,
    /// A second identity for another name, `SECOND_NAME` (for SNI).
    pub server_second: KeyCert,
    pub client: KeyCert,
    /// A second client identity signed by the test CA (`CLIENT_B_CN`, `CLIENT_B_URI`).
    pub client_b: KeyCert,
    /// Another CA nobody trusts, and certificates it signed.
    pub other_ca: KeyCert,
    pub other_server: KeyCert,
    pub other_client: KeyCert,
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

enum San<'a> {
    Dns(&'a str),
    Ip(&'a str),
    Uri(&'a str),
}

struct Spec<'a> {
    cn: &'a str,
    ca: bool,
    sans: &'a [San<'a>],
    /// Validity as (start, end) in seconds relative to now.
    validity: (i64, i64),
}

fn issue(spec: &Spec, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, spec.cn).unwrap();
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "grpcore tests").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(63, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&*name, |(c, _)| c.subject_name())).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(now + spec.validity.0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + spec.validity.1).unwrap()).unwrap();
    if spec.ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
        b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().unwrap()).unwrap();
    } else {
        b.append_extension(BasicConstraints::new().build().unwrap()).unwrap();
        b.append_extension(KeyUsage::new().critical().digital_signature().key_agreement().build().unwrap()).unwrap();
        b.append_extension(ExtendedKeyUsage::new().server_auth().client_auth().build().unwrap()).unwrap();
    }
    if !spec.sans.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for s in spec.sans {
            match s {
                San::Dns(d) => san.dns(d),
                San::Ip(i) => san.ip(i),
                San::Uri(u) => san.uri(u),
            };
        }
        let ctx = b.x509v3_context(issuer.map(|(c, _)| &**c), None);
        let ext = san.build(&ctx).unwrap();
        b.append_extension(ext).unwrap();
    }
    let signer = issuer.map_or(key, |(_, k)| k);
    b.sign(signer, MessageDigest::sha256()).unwrap();
    b.build()
}

fn write(dir: &Path, name: &str, spec: Spec, issuer: Option<&KeyCert>) -> KeyCert {
    let key = new_key();
    let cert = issue(&spec, &key, issuer.map(|i| (&i.cert, &i.key)));
    let cert_pem = String::from_utf8(cert.to_pem().unwrap()).unwrap();
    let key_pem = String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, &key_pem).unwrap();
    KeyCert {
        cert_pem,
        key_pem,
        cert_path,
        key_path,
        cert,
        key,
    }
}

const DAY: i64 = 86_400;
const VALID: (i64, i64) = (-DAY, 30 * DAY);
const SERVER_SANS: &[San] = &[San::Dns(SERVER_NAME), San::Dns("localhost"), San::Ip("127.0.0.1")];

/// The PKI, made on first use (once per test binary).
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pki-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = write(&dir, "ca", Spec { cn: "grpcore test CA", ca: true, sans: &[], validity: (-DAY, 365 * DAY) }, None);
        let server = write(&dir, "server", Spec { cn: "grpcore test server", ca: false, sans: SERVER_SANS, validity: VALID }, Some(&ca));
        let server_rotated = write(
            &dir,
            "server-rotated",
            Spec { cn: "grpcore test server (rotated)", ca: false, sans: SERVER_SANS, validity: VALID },
            Some(&ca),
        );
        let server_expired = write(
            &dir,
            "server-expired",
            Spec { cn: "grpcore test server (expired)", ca: false, sans: SERVER_SANS, validity: (-10 * DAY, -DAY) },
            Some(&ca),
        );
        let server_second = write(
            &dir,
            "server-second",
            Spec { cn: "grpcore second server", ca: false, sans: &[San::Dns(SECOND_NAME)], validity: VALID },
            Some(&ca),
        );
        let client = write(
            &dir,
            "client",
            Spec { cn: CLIENT_CN, ca: false, sans: &[San::Dns(CLIENT_DNS), San::Uri(CLIENT_URI)], validity: VALID },
            Some(&ca),
        );
        let client_b = write(
            &dir,
            "client-b",
            Spec { cn: CLIENT_B_CN, ca: false, sans: &[San::Uri(CLIENT_B_URI)], validity: VALID },
            Some(&ca),
        );
        let other_ca = write(&dir, "other-ca", Spec { cn: "some other CA", ca: true, sans: &[], validity: (-DAY, 365 * DAY) }, None);
        let other_server = write(
            &dir,
            "other-server",
            Spec { cn: "impostor server", ca: false, sans: SERVER_SANS, validity: VALID },
            Some(&other_ca),
        );
        let other_client = write(
            &dir,
            "other-client",
            Spec { cn: "impostor client", ca: false, sans: &[San::Dns(CLIENT_DNS)], validity: VALID },
            Some(&other_ca),
        );
        Pki {
            dir,
            ca,
            server,
            server_rotated,
            server_expired,
            server_second,
            client,
            client_b,
            other_ca,
            other_server,
            other_client,
        }
    })
}

/// TLS server credentials presenting `pki.server`; with `mode` verifying client
/// certificates against the test CA.
pub fn server_credentials(mode: ClientCertificateMode) -> ServerCredentials {
    let p = pki();
    ServerCredentials::tls(p.server.identity())
        .client_ca(p.ca.certificate())
        .client_certificate(mode)
        .build()
        .unwrap()
}

/// Client credentials trusting the test CA, expecting `SERVER_NAME`; with the test client
/// certificate if `mtls`.
pub fn client_credentials(mtls: bool) -> ChannelCredentials {
    client_tls(mtls, None)
}

/// Client credentials trusting the test CA and presenting `identity` (mutual TLS).
pub fn client_credentials_as(identity: &KeyCert) -> ChannelCredentials {
    let p = pki();
    ChannelCredentials::tls()
        .root_certificates(p.ca.certificate())
        .server_name_override(SERVER_NAME)
        .identity(identity.identity())
        .build()
        .unwrap()
}

pub fn client_tls(mtls: bool, cache: Option<&SslSessionCache>) -> ChannelCredentials {
    let p = pki();
    let mut b = ChannelCredentials::tls().root_certificates(p.ca.certificate()).server_name_override(SERVER_NAME);
    if mtls {
        b = b.identity(p.client.identity());
    }
    if let Some(c) = cache {
        b = b.session_cache(c);
    }
    b.build().unwrap()
}

/// The Echo server on 127.0.0.1:0 with `creds`.
pub fn tls_echo_server(env: &Environment, creds: &ServerCredentials) -> Server {
    ServerBuilder::new(env)
        .register_service(super::echo_service())
        .bind_with_credentials("127.0.0.1:0", creds)
        .build()
        .expect("start TLS echo server")
}

/// `127.0.0.1:<port>` of a server.
pub fn target(server: &Server) -> String {
    format!("127.0.0.1:{}", server.port())
}

/// The Echo server on 127.0.0.1:0 with `creds`, whose unary handler records the auth
/// context of each call.
pub fn recording_server(env: &Environment, creds: &ServerCredentials) -> (Server, Arc<Mutex<Vec<AuthContext>>>) {
    use super::{bidi_echo, client_stream_echo, server_stream_echo, unary_echo, EchoRequest, BIDI, CLIENT_STREAM, SERVER_STREAM, SERVICE, UNARY};
    use grpcore::{ServerContext, ServiceBuilder};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, ctx: ServerContext| {
            record.lock().unwrap().push(ctx.auth_context());
            unary_echo(req, ctx)
        })
        .add_client_streaming(&CLIENT_STREAM, client_stream_echo)
        .add_server_streaming(&SERVER_STREAM, server_stream_echo)
        .add_duplex(&BIDI, bidi_echo)
        .build();
    let server = ServerBuilder::new(env)
        .register_service(service)
        .bind_with_credentials("127.0.0.1:0", creds)
        .build()
        .unwrap();
    (server, seen)
}

/// Peer server flags: TLS with the test server certificate; mTLS requires a client
/// certificate signed by the test CA.
pub fn peer_server_args(mtls: bool) -> Vec<String> {
    let p = pki();
    let mut v = vec!["--tls-cert".into(), p.server.path().into(), "--tls-key".into(), p.server.key().into()];
    if mtls {
        v.extend(["--tls-ca".into(), p.ca.path().into(), "--require-client-cert".into()]);
    }
    v
}

/// Peer client flags: trust the test CA, expect `SERVER_NAME`; mTLS presents the test
/// client certificate.
pub fn peer_client_args(mtls: bool) -> Vec<String> {
    let p = pki();
    let mut v = vec!["--tls-ca".into(), p.ca.path().into(), "--server-name-override".into(), SERVER_NAME.into()];
    if mtls {
        v.extend(["--client-cert".into(), p.client.path().into(), "--client-key".into(), p.client.key().into()]);
    }
    v
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
