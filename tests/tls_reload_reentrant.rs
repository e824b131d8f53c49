//! Certificate reload without a lock held across I/O or user code, and a generation counted
//! only once the core can use it (issue #12, defect 9).
//!
//! - A reload callback runs on the core's handshake thread; one that reads or sets its own
//!   reloader must not deadlock (the old reloader held its lock across the callback).
//! - Certificates the core refuses (here a 1024-bit RSA key, below OpenSSL's default
//!   security level) must not become the reloader's current generation: the certificates in
//!   use stay, the failure is counted, a later good configuration is taken, and a new port
//!   bound with the same reloader still starts.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::tls::*;
use common::*;
use grpcore::{
    CallOptions, CertificateConfig, CertificateReloader, Channel, ChannelBuilder,
    ChannelCredentials, ClientCertificateMode, Environment, Identity, Server, ServerCredentials,
};

const ORIGINAL: &str = "grpcore test server";
const ROTATED: &str = "grpcore test server (rotated)";

fn ready() -> CallOptions {
    CallOptions::new()
        .timeout(Duration::from_secs(10))
        .wait_for_ready(true)
}

fn cn(cert: &grpcore::Certificate) -> String {
    let subject = &cert.subjects()[0];
    subject
        .split(", ")
        .find_map(|p| p.strip_prefix("CN="))
        .unwrap_or_default()
        .to_string()
}

/// A new channel (so a new handshake) that records the CN of the certificate the server
/// presented; one call through it.
fn cn_for_new_connection(env: &Environment, server: &Server) -> String {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let creds = ChannelCredentials::tls()
        .root_certificates(pki().ca.certificate())
        .server_name_override(SERVER_NAME)
        .verify_server(move |_name, cert| {
            record.lock().unwrap().push(cn(cert));
            Ok(())
        })
        .build()
        .unwrap();
    let channel: Channel = ChannelBuilder::new(env)
        .connect_with_credentials(&target(server), &creds)
        .unwrap();
    let reply = channel
        .unary(&UNARY, &request("reload", 7), ready())
        .wait()
        .unwrap();
    assert_eq!(reply.message().seq, 7);
    let seen = seen.lock().unwrap();
    assert!(
        !seen.is_empty() && seen.iter().all(|c| *c == seen[0]),
        "{seen:?}"
    );
    seen[0].clone()
}

/// Runs `f` on a thread of its own and fails the test if it has not finished in `limit`
/// (a deadlocked thread is left behind; the test binary still exits).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what} did not finish within {limit:?} (deadlock?)"),
    }
}

#[test]
fn a_callback_that_uses_its_own_reloader_does_not_deadlock() {
    within(
        Duration::from_secs(30),
        "a TLS handshake with a re-entrant reload callback",
        || {
            let env = Environment::new(1);
            let p = pki();
            // The callback's handle on its own reloader (a cycle, broken at the end).
            let me: Arc<Mutex<Option<CertificateReloader>>> = Arc::default();
            let me_in_callback = me.clone();
            let calls = Arc::new(Mutex::new(0u32));
            let counted = calls.clone();
            let reloader = CertificateReloader::from_fn(
                CertificateConfig::new(p.server.identity()),
                move || {
                    let mut n = counted.lock().unwrap();
                    *n += 1;
                    let Some(me) = me_in_callback.lock().unwrap().clone() else {
                        return Ok(None);
                    };
                    // Reads its own reloader every time, and on the second check (the first
                    // handshake after the server started) replaces the certificates through it.
                    let _ = (
                        me.generation(),
                        me.current(),
                        me.failures(),
                        me.last_error(),
                    );
                    if *n == 2 {
                        me.set(CertificateConfig::new(pki().server_rotated.identity()));
                    }
                    Ok(None)
                },
            )
            .check_interval(Duration::ZERO);
            *me.lock().unwrap() = Some(reloader.clone());
            let creds =
                ServerCredentials::tls_reloading(&reloader, ClientCertificateMode::DontRequest)
                    .unwrap();
            let server = tls_echo_server(&env, &creds);
            assert_eq!(cn_for_new_connection(&env, &server), ROTATED);
            assert_eq!(reloader.generation(), 2);
            assert!(*calls.lock().unwrap() >= 2);
            me.lock().unwrap().take();
        },
    );
}

/// A self-signed certificate for the server's names with a 1024-bit RSA key: it parses and
/// its key matches, but OpenSSL (at Debian's default security level 2) refuses to use it.
fn weak_identity() -> Identity {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509Name, X509};
    let key = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, "weak server")
        .unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .dns(SERVER_NAME)
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    Identity::from_pem(
        cert.to_pem().unwrap(),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap()
}

#[test]
fn certificates_the_core_refuses_do_not_become_a_generation_and_good_ones_follow() {
    within(
        Duration::from_secs(60),
        "the bad-then-good reload sequence",
        || {
            let env = Environment::new(1);
            let p = pki();
            let next: Arc<Mutex<Option<CertificateConfig>>> = Arc::default();
            let source = next.clone();
            let reloader = CertificateReloader::from_fn(
                CertificateConfig::new(p.server.identity()),
                move || Ok(source.lock().unwrap().take()),
            )
            .check_interval(Duration::ZERO);
            let creds =
                ServerCredentials::tls_reloading(&reloader, ClientCertificateMode::DontRequest)
                    .unwrap();
            let server = tls_echo_server(&env, &creds);
            assert_eq!(cn_for_new_connection(&env, &server), ORIGINAL);

            // Bad: the core cannot use it. The certificates in use stay, and the reloader says so.
            *next.lock().unwrap() = Some(CertificateConfig::new(weak_identity()));
            assert_eq!(cn_for_new_connection(&env, &server), ORIGINAL);
            assert_eq!(
                reloader.generation(),
                1,
                "a configuration the core refuses is not a generation"
            );
            assert_eq!(reloader.failures(), 1);
            assert!(reloader.last_error().is_some());
            assert_eq!(
                cn(&reloader.current().identities()[0].cert_chain().clone()),
                ORIGINAL
            );

            // A new port with the same reloader starts with the certificates in use.
            let second = grpcore::ServerBuilder::new(&env)
                .register_service(echo_service())
                .bind_with_credentials("127.0.0.1:0", &creds)
                .build()
                .expect("a second port bound with the same reloader");
            assert_eq!(cn_for_new_connection(&env, &second), ORIGINAL);

            // set() refuses it too.
            reloader.set(CertificateConfig::new(weak_identity()));
            assert_eq!(reloader.generation(), 1);
            assert_eq!(reloader.failures(), 2);

            // Good: taken from the next handshake on, on both ports.
            *next.lock().unwrap() = Some(CertificateConfig::new(p.server_rotated.identity()));
            assert_eq!(cn_for_new_connection(&env, &server), ROTATED);
            assert_eq!(cn_for_new_connection(&env, &second), ROTATED);
            assert_eq!(reloader.generation(), 2);
        },
    );
}

#[test]
fn a_port_that_refuses_a_generation_takes_it_once_it_is_fixed() {
    // A verifying port needs a client CA in every configuration. A generation without one
    // is refused by that port (not marked delivered), and a later one with a CA is taken.
    within(
        Duration::from_secs(60),
        "the refused-generation sequence",
        || {
            let env = Environment::new(1);
            let p = pki();
            let with_ca = |id: Identity| CertificateConfig::new(id).client_ca(p.ca.certificate());
            let reloader = CertificateReloader::manual(with_ca(p.server.identity()))
                .check_interval(Duration::ZERO);
            let creds = ServerCredentials::tls_reloading(
                &reloader,
                ClientCertificateMode::RequireAndVerify,
            )
            .unwrap();
            let server = tls_echo_server(&env, &creds);
            let mtls_cn = |server: &Server| {
                let seen: Arc<Mutex<Vec<String>>> = Arc::default();
                let record = seen.clone();
                let creds = ChannelCredentials::tls()
                    .root_certificates(p.ca.certificate())
                    .server_name_override(SERVER_NAME)
                    .identity(p.client.identity())
                    .verify_server(move |_n, cert| {
                        record.lock().unwrap().push(cn(cert));
                        Ok(())
                    })
                    .build()
                    .unwrap();
                let channel = ChannelBuilder::new(&env)
                    .connect_with_credentials(&target(server), &creds)
                    .unwrap();
                channel
                    .unary(&UNARY, &request("mtls", 1), ready())
                    .wait()
                    .unwrap();
                let seen = seen.lock().unwrap();
                seen[0].clone()
            };
            assert_eq!(mtls_cn(&server), ORIGINAL);
            reloader.set(CertificateConfig::new(p.server_rotated.identity())); // no client CA
            assert_eq!(mtls_cn(&server), ORIGINAL);
            assert_eq!(mtls_cn(&server), ORIGINAL);
            reloader.set(with_ca(p.server_rotated.identity()));
            assert_eq!(mtls_cn(&server), ROTATED);
        },
    );
}
