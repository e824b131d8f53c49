//! Certificates and private keys in PEM, checked in Rust before the core sees them.
//!
//! The core parses PEM itself, but a mistake there surfaces late (when a port is bound or a
//! handshake runs) and as a line in its log. So every PEM is checked here first: the
//! `-----BEGIN/END-----` structure, the base64 between them, that each block is what it
//! should be (a certificate where a certificate belongs, one private key where a key belongs)
//! and parses as such, and that an identity's key matches its certificate. The core then gets
//! a normalized re-encoding of exactly what was checked.
//!
//! Owns: [`Certificate`], [`PrivateKey`], [`Identity`]. Never touches the core.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use crate::error::{ConfigErrorKind, Error};

/// One `-----BEGIN label-----` … `-----END label-----` block.
struct PemBlock {
    label: String,
    /// The block's header lines (`Proc-Type: …`), if any.
    headers: Vec<String>,
    der: Vec<u8>,
    /// 1-based line of the BEGIN line.
    line: usize,
}

fn bad(what: &str, why: impl fmt::Display) -> Error {
    Error::config_kind(ConfigErrorKind::Credentials, format!("{what}: {why}"))
}

/// Strict base64 (standard alphabet, `=` padding only at the end).
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some((c - b'A') as u32),
            b'a'..=b'z' => Some((c - b'a') as u32 + 26),
            b'0'..=b'9' => Some((c - b'0') as u32 + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return Err(format!("its length ({} characters) is not a multiple of 4", bytes.len()));
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = (i + 1) * 4 == bytes.len();
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err("'=' padding appears before the end".into());
        }
        let mut acc = 0u32;
        for &c in &chunk[..4 - pad] {
            let v = value(c).ok_or_else(|| format!("{:?} is not a base64 character", c as char))?;
            acc = (acc << 6) | v;
        }
        acc <<= 6 * pad as u32;
        let three = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    Ok(out)
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
    let mut open: Option<(String, usize, Vec<String>, String, bool)> = None;
    for (i, raw_line) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw_line.trim();
        match &mut open {
            None => {
                if let Some(rest) = line.strip_prefix("-----BEGIN ") {
                    let label = rest
                        .strip_suffix("-----")
                        .ok_or_else(|| bad(what, format!("line {n}: a BEGIN line must end with \"-----\"")))?;
                    open = Some((label.to_string(), n, Vec::new(), String::new(), false));
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
                        der,
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
    certs: Vec<X509>,
    /// Normalized PEM with a trailing NUL.
    pem: Arc<[u8]>,
}

impl Certificate {
    /// Parses PEM text holding one or more `CERTIFICATE` blocks, each a valid X.509
    /// certificate. Fails with [`Error::Config`] naming the block and what is wrong with it.
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
            let cert = X509::from_der(&b.der).map_err(|e| {
                bad(what, format!("certificate {} (line {}) is not a valid X.509 certificate: {}", i + 1, b.line, one_line(&e)))
            })?;
            pem.extend(cert.to_pem().map_err(|e| bad(what, one_line(&e)))?);
            certs.push(cert);
        }
        Ok(Certificate { certs, pem: c_text(pem) })
    }

    /// How many certificates there are.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Always false: a `Certificate` holds at least one certificate.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The subject of each certificate, in order, as `CN=…, O=…`.
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

    pub(crate) fn first(&self) -> &X509 {
        &self.certs[0]
    }

    /// Every certificate, in order.
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
        f.debug_struct("Certificate").field("subjects", &self.subjects()).finish()
    }
}

/// An unencrypted private key in PEM (PKCS#8 `PRIVATE KEY`, `RSA PRIVATE KEY` or
/// `EC PRIVATE KEY`). Its text is wiped from memory when the last clone is dropped.
#[derive(Clone)]
pub struct PrivateKey {
    key: PKey<Private>,
    pem: Arc<SecretText>,
}

/// Key text that is overwritten with zeros when dropped.
struct SecretText(Box<[u8]>);

impl Drop for SecretText {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, exclusive reference into our own buffer; the volatile
            // write keeps the compiler from dropping the wipe as a dead store.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl PrivateKey {
    /// Parses PEM text holding exactly one unencrypted private key.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<PrivateKey, Error> {
        PrivateKey::parse("private key PEM", pem.as_ref())
    }

    /// Reads and parses a PEM file (see [`PrivateKey::from_pem`]).
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<PrivateKey, Error> {
        let path = path.as_ref();
        let bytes = zeroizing(read_file("private key", path)?);
        PrivateKey::parse(&format!("private key file {}", path.display()), &bytes.0)
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
        let key = match b.label.as_str() {
            "PRIVATE KEY" => PKey::private_key_from_pkcs8(&b.der),
            "RSA PRIVATE KEY" => openssl::rsa::Rsa::private_key_from_der(&b.der).and_then(PKey::from_rsa),
            "EC PRIVATE KEY" => openssl::ec::EcKey::private_key_from_der(&b.der).and_then(PKey::from_ec_key),
            other => {
                let hint = if other == "CERTIFICATE" { " (are the certificate and the key swapped?)" } else { "" };
                return Err(bad(
                    what,
                    format!("block 1 (line {}) is a {other}, expected a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY{hint}", b.line),
                ));
            }
        }
        .map_err(|e| bad(what, format!("the {} (line {}) does not parse: {}", b.label, b.line, one_line(&e))))?;
        let pem = key.private_key_to_pem_pkcs8().map_err(|e| bad(what, one_line(&e)))?;
        let pem = zeroizing(pem); // wipes OpenSSL's copy when dropped
        let mut text = Vec::with_capacity(pem.0.len() + 1);
        text.extend_from_slice(&pem.0);
        text.push(0);
        Ok(PrivateKey {
            key,
            pem: Arc::new(SecretText(text.into_boxed_slice())),
        })
    }

    pub(crate) fn as_c_ptr(&self) -> *const std::os::raw::c_char {
        self.pem.0.as_ptr() as *const _
    }

    /// The parsed key.
    pub(crate) fn pkey(&self) -> &PKey<Private> {
        &self.key
    }

    pub(crate) fn public_matches(&self, cert: &X509) -> Result<bool, Error> {
        let public = cert
            .public_key()
            .map_err(|e| Error::config_kind(ConfigErrorKind::Credentials, format!("cannot read the certificate's public key: {}", one_line(&e))))?;
        Ok(public.public_eq(&self.key))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey").field("type", &self.key.id()).finish_non_exhaustive()
    }
}

fn zeroizing(v: Vec<u8>) -> SecretText {
    SecretText(v.into_boxed_slice())
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
    /// Checks both PEMs and that the key belongs to the chain's first certificate.
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

    /// Pairs parsed parts, checking that the key belongs to the chain's first certificate.
    pub fn new(cert_chain: Certificate, private_key: PrivateKey) -> Result<Identity, Error> {
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
