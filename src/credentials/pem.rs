//! Certificates and private keys in PEM, checked in Rust before the core sees them.
//!
//! The core parses PEM itself, but a mistake there surfaces late (when a port is bound or a
//! handshake runs) and as a line in its log. So every PEM is checked here first: the
//! `-----BEGIN/END-----` structure, the base64 between them, that each block is what it
//! should be (a certificate where a certificate belongs, one private key where a key
//! belongs). With the `openssl` feature (on by default; the same system OpenSSL the core
//! links) each block must also parse as what it claims to be, and an identity's key must
//! match its certificate. The core then gets a normalized re-encoding of exactly what was
//! checked.
//!
//! Without the `openssl` feature the structural checks stay (they need no TLS library) and
//! the deeper mistakes — a block that is not really a certificate or key, a key that does
//! not belong to its certificate — are found by the core when a port is bound or a
//! connection is made.
//!
//! Owns: [`Certificate`], [`PrivateKey`], [`Identity`]. Never touches the core.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
#[cfg(feature = "openssl")]
use openssl::pkey::{PKey, Private};
#[cfg(feature = "openssl")]
use openssl::x509::X509;
use zeroize::Zeroizing;

use crate::error::{ConfigErrorKind, Error};

/// One `-----BEGIN label-----` … `-----END label-----` block.
struct PemBlock {
    label: String,
    /// The block's header lines (`Proc-Type: …`), if any.
    headers: Vec<String>,
    /// Wiped when dropped: it may be a private key.
    der: Zeroizing<Vec<u8>>,
    /// 1-based line of the BEGIN line.
    line: usize,
}

fn bad(what: &str, why: impl fmt::Display) -> Error {
    Error::config_kind(ConfigErrorKind::Credentials, format!("{what}: {why}"))
}

/// Strict base64: the standard alphabet, canonical `=` padding at the end only.
fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD.decode(text)
}

/// The length of [`encode_pem`]'s output, to allocate a key's text once (a buffer that grew
/// would leave an unwiped copy behind).
fn encoded_pem_len(label: &str, der_len: usize) -> usize {
    let base64 = der_len.div_ceil(3) * 4;
    let begin = "-----BEGIN -----\n".len() + label.len();
    let end = "-----END -----\n".len() + label.len();
    begin + base64 + base64.div_ceil(64) + end
}

/// `der` as one PEM block labelled `label`, in 64-character lines, as OpenSSL writes it.
fn encode_pem(label: &str, der: &[u8], out: &mut Vec<u8>) {
    let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    out.extend_from_slice(format!("-----BEGIN {label}-----\n").as_bytes());
    for line in text.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("-----END {label}-----\n").as_bytes());
}

/// Splits PEM text into blocks, naming the first structural problem it meets.
fn parse_pem(what: &str, input: &[u8]) -> Result<Vec<PemBlock>, Error> {
    if input.first() == Some(&0x30) {
        return Err(bad(
            what,
            "this is binary DER, not PEM text (convert it, e.g. `openssl x509 -inform der -outform pem`)",
        ));
    }
    let text = std::str::from_utf8(input).map_err(|e| {
        bad(what, format!("not PEM text: byte {} is not UTF-8 (expected lines like -----BEGIN ...-----)", e.valid_up_to()))
    })?;
    let mut blocks = Vec::new();
    // (label, BEGIN line, header lines, base64 text, whether the headers have ended)
    type Open = (String, usize, Vec<String>, Zeroizing<String>, bool);
    let mut open: Option<Open> = None;
    for (i, raw_line) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw_line.trim();
        match &mut open {
            None => {
                if let Some(rest) = line.strip_prefix("-----BEGIN ") {
                    let label = rest
                        .strip_suffix("-----")
                        .ok_or_else(|| bad(what, format!("line {n}: a BEGIN line must end with \"-----\"")))?;
                    // Never grows past the input: no unwiped copy of a key is left behind.
                    let body = Zeroizing::new(String::with_capacity(text.len()));
                    open = Some((label.to_string(), n, Vec::new(), body, false));
                } else if line.starts_with("-----END ") {
                    return Err(bad(what, format!("line {n}: END line without a BEGIN line before it")));
                }
                // Anything else outside a block is commentary (OpenSSL allows it too).
            }
            Some((label, begin, headers, body, headers_done)) => {
                if let Some(rest) = line.strip_prefix("-----END ") {
                    let end = rest.strip_suffix("-----").unwrap_or(rest);
                    if end != label {
                        return Err(bad(
                            what,
                            format!("block {} (BEGIN {label} at line {begin}) ends with END {end} at line {n}", blocks.len() + 1),
                        ));
                    }
                    let der = decode_base64(body).map_err(|why| {
                        bad(what, format!("block {} (BEGIN {label} at line {begin}) has invalid base64: {why}", blocks.len() + 1))
                    })?;
                    if der.is_empty() {
                        return Err(bad(what, format!("block {} (BEGIN {label} at line {begin}) is empty", blocks.len() + 1)));
                    }
                    blocks.push(PemBlock {
                        label: label.clone(),
                        headers: std::mem::take(headers),
                        der: Zeroizing::new(der),
                        line: *begin,
                    });
                    open = None;
                } else if line.starts_with("-----BEGIN ") {
                    return Err(bad(
                        what,
                        format!("block {} (BEGIN {label} at line {begin}) has no END line before the BEGIN at line {n}", blocks.len() + 1),
                    ));
                } else if !*headers_done && body.is_empty() && line.contains(':') {
                    headers.push(line.to_string());
                } else if line.is_empty() {
                    *headers_done = true;
                } else {
                    *headers_done = true;
                    if let Some(c) = line.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))) {
                        return Err(bad(
                            what,
                            format!("line {n} (in BEGIN {label} from line {begin}): {c:?} is not a base64 character"),
                        ));
                    }
                    body.push_str(line);
                }
            }
        }
    }
    if let Some((label, begin, ..)) = open {
        return Err(bad(what, format!("block {} (BEGIN {label} at line {begin}) has no END line", blocks.len() + 1)));
    }
    if blocks.is_empty() {
        return Err(bad(what, "no PEM block found (expected a line like -----BEGIN CERTIFICATE-----)"));
    }
    Ok(blocks)
}

/// The NUL-terminated text handed to the core.
fn c_text(pem: Vec<u8>) -> Arc<[u8]> {
    let mut v = pem;
    v.push(0);
    v.into()
}

/// One or more X.509 certificates in PEM: a certificate chain (leaf first) or a set of
/// trusted roots.
///
/// ```
/// let err = grpcore::Certificate::from_pem("not a certificate").unwrap_err();
/// assert!(err.to_string().contains("no PEM block found"), "{err}");
/// ```
#[derive(Clone)]
pub struct Certificate {
    len: usize,
    #[cfg(feature = "openssl")]
    certs: Vec<X509>,
    /// Normalized PEM with a trailing NUL.
    pem: Arc<[u8]>,
}

impl Certificate {
    /// Parses PEM text holding one or more `CERTIFICATE` blocks, each a valid X.509
    /// certificate (checked with the `openssl` feature). Fails with [`Error::Config`] naming
    /// the block and what is wrong with it.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Certificate, Error> {
        Certificate::parse("certificate PEM", pem.as_ref())
    }

    /// Reads and parses a PEM file (see [`Certificate::from_pem`]).
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Certificate, Error> {
        let path = path.as_ref();
        let bytes = read_file("certificate", path)?;
        Certificate::parse(&format!("certificate file {}", path.display()), &bytes)
    }

    pub(crate) fn parse(what: &str, input: &[u8]) -> Result<Certificate, Error> {
        let blocks = parse_pem(what, input)?;
        #[cfg(feature = "openssl")]
        let mut certs = Vec::with_capacity(blocks.len());
        let mut pem = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            if b.label != "CERTIFICATE" {
                let hint = if b.label.contains("PRIVATE KEY") { " (are the certificate and the key swapped?)" } else { "" };
                return Err(bad(
                    what,
                    format!("block {} (line {}) is a {}, expected a CERTIFICATE{hint}", i + 1, b.line, b.label),
                ));
            }
            #[cfg(feature = "openssl")]
            certs.push(X509::from_der(&b.der).map_err(|e| {
                bad(what, format!("certificate {} (line {}) is not a valid X.509 certificate: {}", i + 1, b.line, one_line(&e)))
            })?);
            encode_pem("CERTIFICATE", &b.der, &mut pem);
        }
        Ok(Certificate {
            len: blocks.len(),
            #[cfg(feature = "openssl")]
            certs,
            pem: c_text(pem),
        })
    }

    /// How many certificates there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a `Certificate` holds at least one certificate.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The subject of each certificate, in order, as `CN=…, O=…` (feature `openssl`).
    #[cfg(feature = "openssl")]
    pub fn subjects(&self) -> Vec<String> {
        self.certs.iter().map(|c| name_text(c.subject_name())).collect()
    }

    /// The normalized PEM text (what the core receives).
    pub fn to_pem(&self) -> String {
        String::from_utf8_lossy(&self.pem[..self.pem.len() - 1]).into_owned()
    }

    /// The text as a C string for the core, valid while `self` lives.
    pub(crate) fn as_c_ptr(&self) -> *const std::os::raw::c_char {
        self.pem.as_ptr() as *const _
    }

    #[cfg(feature = "openssl")]
    pub(crate) fn first(&self) -> &X509 {
        &self.certs[0]
    }

    /// Every certificate, in order.
    #[cfg(feature = "openssl")]
    pub(crate) fn certs(&self) -> &[X509] {
        &self.certs
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Certificate) -> bool {
        self.pem == other.pem
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Certificate");
        #[cfg(feature = "openssl")]
        d.field("subjects", &self.subjects());
        #[cfg(not(feature = "openssl"))]
        d.field("len", &self.len);
        d.finish()
    }
}

/// An unencrypted private key in PEM (PKCS#8 `PRIVATE KEY`, `RSA PRIVATE KEY` or
/// `EC PRIVATE KEY`). Its text is wiped from memory when the last clone is dropped.
#[derive(Clone)]
pub struct PrivateKey {
    #[cfg(feature = "openssl")]
    key: PKey<Private>,
    /// Its label (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`).
    label: &'static str,
    /// The key's PEM text with a trailing NUL, wiped when the last clone is dropped.
    pem: Arc<Zeroizing<Vec<u8>>>,
}

impl PrivateKey {
    /// Parses PEM text holding exactly one unencrypted private key.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<PrivateKey, Error> {
        PrivateKey::parse("private key PEM", pem.as_ref())
    }

    /// Reads and parses a PEM file (see [`PrivateKey::from_pem`]).
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<PrivateKey, Error> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(read_file("private key", path)?);
        PrivateKey::parse(&format!("private key file {}", path.display()), &bytes)
    }

    pub(crate) fn parse(what: &str, input: &[u8]) -> Result<PrivateKey, Error> {
        let blocks = parse_pem(what, input)?;
        if blocks.len() != 1 {
            let labels: Vec<&str> = blocks.iter().map(|b| b.label.as_str()).collect();
            return Err(bad(what, format!("expected exactly one private key, found {} PEM blocks ({})", blocks.len(), labels.join(", "))));
        }
        let b = &blocks[0];
        let encrypted = b.label == "ENCRYPTED PRIVATE KEY" || b.headers.iter().any(|h| h.contains("ENCRYPTED"));
        if encrypted {
            return Err(bad(what, "the private key is encrypted; the gRPC core needs it unencrypted (decrypt it first)"));
        }
        let label = match b.label.as_str() {
            "PRIVATE KEY" => "PRIVATE KEY",
            "RSA PRIVATE KEY" => "RSA PRIVATE KEY",
            "EC PRIVATE KEY" => "EC PRIVATE KEY",
            other => {
                let hint = if other == "CERTIFICATE" { " (are the certificate and the key swapped?)" } else { "" };
                return Err(bad(
                    what,
                    format!("block 1 (line {}) is a {other}, expected a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY{hint}", b.line),
                ));
            }
        };
        #[cfg(feature = "openssl")]
        let key = match label {
            "PRIVATE KEY" => PKey::private_key_from_pkcs8(&b.der),
            "RSA PRIVATE KEY" => openssl::rsa::Rsa::private_key_from_der(&b.der).and_then(PKey::from_rsa),
            _ => openssl::ec::EcKey::private_key_from_der(&b.der).and_then(PKey::from_ec_key),
        }
        .map_err(|e| bad(what, format!("the {label} (line {}) does not parse: {}", b.line, one_line(&e))))?;
        let mut text = Zeroizing::new(Vec::with_capacity(encoded_pem_len(label, b.der.len()) + 1));
        encode_pem(label, &b.der, &mut text);
        text.push(0);
        debug_assert_eq!(text.len(), text.capacity(), "the key text was allocated once");
        Ok(PrivateKey {
            #[cfg(feature = "openssl")]
            key,
            label,
            pem: Arc::new(text),
        })
    }

    pub(crate) fn as_c_ptr(&self) -> *const std::os::raw::c_char {
        self.pem.as_ptr() as *const _
    }

    /// The parsed key.
    #[cfg(feature = "openssl")]
    pub(crate) fn pkey(&self) -> &PKey<Private> {
        &self.key
    }

    #[cfg(feature = "openssl")]
    pub(crate) fn public_matches(&self, cert: &X509) -> Result<bool, Error> {
        let public = cert
            .public_key()
            .map_err(|e| Error::config_kind(ConfigErrorKind::Credentials, format!("cannot read the certificate's public key: {}", one_line(&e))))?;
        Ok(public.public_eq(&self.key))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PrivateKey");
        d.field("label", &self.label);
        #[cfg(feature = "openssl")]
        d.field("type", &self.key.id());
        d.finish_non_exhaustive()
    }
}

/// A certificate chain (leaf first) and the private key of its leaf: what a server (or an
/// mTLS client) presents.
///
/// ```no_run
/// let id = grpcore::Identity::from_pem_files("server.pem", "server.key").unwrap();
/// ```
#[derive(Clone)]
pub struct Identity {
    chain: Certificate,
    key: PrivateKey,
}

impl Identity {
    /// Checks both PEMs and that the key belongs to the chain's first certificate (the
    /// latter with the `openssl` feature; without it the core refuses a mismatched pair when
    /// the port is bound or the connection made).
    ///
    /// Errors name the part that is wrong: `certificate chain: …`, `private key: …`, or
    /// `the private key does not match the certificate …`.
    pub fn from_pem(cert_chain: impl AsRef<[u8]>, private_key: impl AsRef<[u8]>) -> Result<Identity, Error> {
        let chain = Certificate::parse("TLS identity: certificate chain", cert_chain.as_ref())?;
        let key = PrivateKey::parse("TLS identity: private key", private_key.as_ref())?;
        Identity::new(chain, key)
    }

    /// Reads both files and checks them as [`Identity::from_pem`] does.
    pub fn from_pem_files(cert_chain: impl AsRef<Path>, private_key: impl AsRef<Path>) -> Result<Identity, Error> {
        Identity::new(Certificate::from_pem_file(cert_chain)?, PrivateKey::from_pem_file(private_key)?)
    }

    /// Pairs parsed parts, checking that the key belongs to the chain's first certificate
    /// (with the `openssl` feature, as [`Identity::from_pem`] says).
    pub fn new(cert_chain: Certificate, private_key: PrivateKey) -> Result<Identity, Error> {
        #[cfg(feature = "openssl")]
        if !private_key.public_matches(cert_chain.first())? {
            return Err(Error::config_kind(ConfigErrorKind::Credentials, format!(
                "TLS identity: the private key does not match the certificate: its public half differs \
                 from the public key of the chain's first certificate ({}); pass the key that was \
                 used to request that certificate",
                name_text(cert_chain.first().subject_name())
            )));
        }
        Ok(Identity { chain: cert_chain, key: private_key })
    }

    /// The certificate chain.
    pub fn cert_chain(&self) -> &Certificate {
        &self.chain
    }

    pub(crate) fn key(&self) -> &PrivateKey {
        &self.key
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("cert_chain", &self.chain).finish_non_exhaustive()
    }
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::config_kind(ConfigErrorKind::File, format!("cannot read {what} file {}: {e}", path.display())).with_source(e))
}

/// `CN=…, O=…` from an X.509 name.
#[cfg(feature = "openssl")]
pub(crate) fn name_text(name: &openssl::x509::X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = String::from_utf8_lossy(e.data().as_slice());
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(feature = "openssl")]
fn one_line(e: &openssl::error::ErrorStack) -> String {
    let parts: Vec<String> = e.errors().iter().map(|e| e.reason().unwrap_or("unknown error").to_string()).collect();
    if parts.is_empty() {
        "OpenSSL gave no reason".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_strict() {
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("aGk").is_err());
        assert!(decode_base64("a=Gk").is_err());
        assert!(decode_base64("aG*=").is_err());
        assert!(decode_base64("aGl=").is_err(), "non-zero bits after the last byte");
    }

    #[test]
    fn normalized_pem_has_64_character_lines() {
        let mut out = Vec::new();
        encode_pem("CERTIFICATE", &[7u8; 100], &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!((lines[0], lines[4]), ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"));
        assert_eq!((lines[1].len(), lines[2].len(), lines[3].len()), (64, 64, 8));
        assert_eq!(decode_base64(&lines[1..4].concat()).unwrap(), [7u8; 100]);
        for n in [0, 1, 2, 3, 47, 48, 49, 1190, 2350, 4700] {
            let mut out = Vec::new();
            encode_pem("RSA PRIVATE KEY", &vec![1u8; n], &mut out);
            assert_eq!(out.len(), encoded_pem_len("RSA PRIVATE KEY", n), "{n} bytes");
        }
    }

    #[test]
    fn keys_keep_their_label_and_bytes() {
        let pem = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        #[cfg(not(feature = "openssl"))]
        {
            let key = PrivateKey::from_pem(pem).unwrap();
            assert_eq!(key.label, "EC PRIVATE KEY");
            assert_eq!(&key.pem[..], format!("{pem}\0").as_bytes());
        }
        #[cfg(feature = "openssl")]
        {
            let err = PrivateKey::from_pem(pem).unwrap_err().to_string();
            assert!(err.contains("the EC PRIVATE KEY (line 1) does not parse"), "{err}");
        }
    }

    #[test]
    fn structure_errors_are_named() {
        let cases: &[(&str, &str)] = &[
            ("", "no PEM block found"),
            ("hello", "no PEM block found"),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n", "has no END line"),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n", "ends with END PRIVATE KEY"),
            ("-----END CERTIFICATE-----\n", "END line without a BEGIN"),
            ("-----BEGIN CERTIFICATE-----\nAA$A\n-----END CERTIFICATE-----\n", "'$' is not a base64 character"),
            ("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n", "invalid base64"),
            #[cfg(feature = "openssl")]
            ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a valid X.509 certificate"),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "expected a CERTIFICATE (are the certificate and the key swapped?)"),
        ];
        for (pem, want) in cases {
            let err = Certificate::from_pem(pem).unwrap_err().to_string();
            assert!(err.contains(want), "{pem:?}: {err}");
        }
        let err = Certificate::from_pem([0x30u8, 0x82, 1, 2]).unwrap_err().to_string();
        assert!(err.contains("binary DER"), "{err}");
        let err = PrivateKey::from_pem("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("encrypted"), "{err}");
    }
}
