//! Bad certificates and keys are rejected when credentials are built, with a message that
//! names the part that is wrong; nothing malformed ever reaches the core. (Without the
//! `openssl` feature only the PEM structure is checked there, and the core refuses the rest.)
#![cfg_attr(not(feature = "openssl"), allow(unused_imports, dead_code))]

mod common;

use std::time::Duration;

use common::tls::*;
use grpcore::{
    CertificateFiles, CertificateReloader, Certificate, ChannelCredentials, ClientCertificateMode, Identity, PrivateKey,
    ServerCredentials, CertificateConfig,
};

fn err_of<T: std::fmt::Debug>(r: Result<T, grpcore::Error>) -> String {
    let e = r.unwrap_err();
    assert!(matches!(e, grpcore::Error::Config(_)), "{e:?}");
    e.to_string()
}

fn assert_has(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "expected {p:?} in: {text}");
    }
}

#[cfg(feature = "openssl")]
#[test]
fn malformed_certificate_pems_are_named() {
    let p = pki();
    let key = &p.server.key_pem;
    let cert = &p.server.cert_pem;
    // Not PEM at all.
    assert_has(&err_of(Identity::from_pem("hello", key)), &["certificate chain", "no PEM block found"]);
    // Truncated: the END line is missing.
    let truncated: String = cert.lines().take(5).map(|l| format!("{l}\n")).collect();
    assert_has(&err_of(Identity::from_pem(&truncated, key)), &["certificate chain", "has no END line"]);
    // Corrupted base64 inside the block.
    let corrupted: String = cert
        .lines()
        .enumerate()
        .map(|(i, l)| if i == 2 { format!("*{}\n", &l[1..]) } else { format!("{l}\n") })
        .collect();
    assert_has(&err_of(Identity::from_pem(&corrupted, key)), &["certificate chain", "line 3", "'*' is not a base64 character"]);
    // Valid base64 of bytes that are not a certificate.
    let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQh\n-----END CERTIFICATE-----\n";
    assert_has(&err_of(Identity::from_pem(junk, key)), &["certificate 1 (line 1) is not a valid X.509 certificate"]);
    // BEGIN and END disagree.
    let mismatched = cert.replace("-----END CERTIFICATE-----", "-----END PRIVATE KEY-----");
    assert_has(&err_of(Identity::from_pem(&mismatched, key)), &["ends with END PRIVATE KEY"]);
    // Binary DER instead of PEM.
    let der = openssl::x509::X509::from_pem(cert.as_bytes()).unwrap().to_der().unwrap();
    assert_has(&err_of(Certificate::from_pem(der)), &["binary DER, not PEM"]);
    // Roots that are a key.
    assert_has(&err_of(Certificate::from_pem(key)), &["is a PRIVATE KEY, expected a CERTIFICATE"]);
}

#[cfg(feature = "openssl")]
#[test]
fn malformed_or_mismatched_keys_are_named() {
    let p = pki();
    let cert = &p.server.cert_pem;
    // Certificate and key swapped.
    assert_has(
        &err_of(Identity::from_pem(&p.server.key_pem, cert)),
        &["certificate chain", "are the certificate and the key swapped?"],
    );
    // A key that is not the certificate's.
    assert_has(
        &err_of(Identity::from_pem(cert, &p.client.key_pem)),
        &["private key does not match the certificate", "CN=grpcore test server"],
    );
    // A key file with two keys, or none.
    let two = format!("{}{}", p.server.key_pem, p.client.key_pem);
    assert_has(&err_of(Identity::from_pem(cert, &two)), &["private key", "expected exactly one private key, found 2"]);
    assert_has(&err_of(PrivateKey::from_pem("")), &["no PEM block found"]);
    // An encrypted key.
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert_has(&err_of(Identity::from_pem(cert, encrypted)), &["private key is encrypted"]);
    // A key whose bytes are damaged.
    let junk_key = "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQh\n-----END PRIVATE KEY-----\n";
    assert_has(&err_of(Identity::from_pem(cert, junk_key)), &["private key", "the PRIVATE KEY (line 1) does not parse"]);
}

#[cfg(feature = "openssl")]
#[test]
fn files_and_settings_are_checked_too() {
    let p = pki();
    let missing = p.dir.join("no-such-file.pem");
    assert_has(&err_of(Identity::from_pem_files(&missing, p.server.key())), &["cannot read certificate file", "no-such-file.pem"]);
    assert_has(
        &err_of(Identity::from_pem_files(p.server.path(), p.client.key())),
        &["private key does not match the certificate"],
    );
    assert_has(
        &err_of(CertificateReloader::watch_files(CertificateFiles::new(p.server.path(), p.client.key()))),
        &["server.pem and", "client.key", "does not match"],
    );
    assert_has(
        &err_of(CertificateReloader::watch_files(CertificateFiles::new(p.server.path(), &missing))),
        &["cannot read", "no-such-file.pem"],
    );
    // A verifying client-certificate mode needs the CA to verify with.
    assert_has(
        &err_of(ServerCredentials::tls(p.server.identity()).client_certificate(ClientCertificateMode::RequireAndVerify).build()),
        &["RequireAndVerify", "client_ca"],
    );
    let reloader = CertificateReloader::manual(CertificateConfig::new(p.server.identity())).check_interval(Duration::ZERO);
    assert_has(
        &err_of(ServerCredentials::tls_reloading(&reloader, ClientCertificateMode::RequestAndVerify)),
        &["RequestAndVerify", "client_ca"],
    );
    assert_has(&err_of(ChannelCredentials::tls().server_name_override("two words").build()), &["server_name_override"]);
}

/// Without the `openssl` feature a key that is not the certificate's reaches the core,
/// which refuses it when the port is bound.
#[cfg(not(feature = "openssl"))]
#[test]
fn without_openssl_a_mismatched_key_fails_the_bind() {
    let p = pki();
    let identity = Identity::from_pem(&p.server.cert_pem, &p.client.key_pem).expect("only the structure is checked");
    let env = grpcore::Environment::new(1);
    let err = grpcore::ServerBuilder::new(&env)
        .bind_with_credentials("127.0.0.1:0", &ServerCredentials::tls(identity).build().unwrap())
        .build()
        .unwrap_err();
    assert_has(&err.to_string(), &["failed to listen on \"127.0.0.1:0\""]);
}
