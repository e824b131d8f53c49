//! TLS and mutual TLS between a grpcore client and a grpcore server: all call kinds over
//! TLS, the client's identity seen by the handler, client-certificate modes, and every
//! handshake failure reaching the caller as UNAVAILABLE with the core's reason.

mod common;

use std::time::{Duration, Instant};

use common::tls::*;
use common::*;
use grpcore::{CallOptions, ChannelBuilder, ChannelCredentials, ClientCertificateMode, Code, Environment, Error, ServerCredentials};

/// For calls expected to succeed: a transient connection failure (seen once in hundreds
/// of runs on an overloaded machine) is retried by the channel instead of failing the test.
fn ready() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20)).wait_for_ready(true)
}

/// For calls expected to fail: fail fast instead of waiting for a connection that works.
fn opts() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20))
}

#[test]
fn all_call_kinds_over_tls() {
    let env = Environment::new(2);
    let server = tls_echo_server(&env, &server_credentials(ClientCertificateMode::DontRequest));
    let channel = ChannelBuilder::new(&env)
        .connect_with_credentials(&target(&server), &client_credentials(false))
        .unwrap();
    futures::executor::block_on(check_all_call_kinds(channel));
}

#[test]
fn mutual_tls_all_call_kinds_and_the_handler_sees_the_client_identity() {
    let env = Environment::new(2);
    let (server, seen) = recording_server(&env, &server_credentials(ClientCertificateMode::RequireAndVerify));
    let channel = ChannelBuilder::new(&env)
        .connect_with_credentials(&target(&server), &client_credentials(true))
        .unwrap();
    futures::executor::block_on(check_all_call_kinds(channel.clone()));
    let reply = channel.unary(&UNARY, &request("who", 1), ready()).wait().unwrap();
    assert_eq!(reply.message().message, "who");
    let auth = seen.lock().unwrap().last().cloned().expect("the handler ran");
    assert_eq!(auth.transport_security_type(), Some("ssl"));
    assert!(auth.is_tls());
    assert!(auth.peer_is_authenticated());
    assert_eq!(auth.peer_common_name(), Some(CLIENT_CN));
    assert_eq!(auth.peer_dns_names(), [CLIENT_DNS]);
    assert_eq!(auth.peer_uris(), [CLIENT_URI]);
    assert_eq!(auth.peer_spiffe_id(), Some(CLIENT_URI));
    assert_eq!(auth.peer_identity_property_name(), Some("x509_subject_alternative_name"));
    assert!(auth.peer_identity().contains(&CLIENT_DNS), "{:?}", auth.peer_identity());
    assert!(auth.peer_subject().unwrap().contains(&format!("CN={CLIENT_CN}")), "{:?}", auth.peer_subject());
    let pem = auth.peer_certificate_pem().expect("the peer certificate in PEM");
    assert_eq!(grpcore::Certificate::from_pem(pem).unwrap(), pki().client.certificate());
    assert_eq!(auth.security_level(), Some("TSI_PRIVACY_AND_INTEGRITY"));
}

#[test]
fn plain_tls_handler_sees_no_client_identity_and_insecure_says_so() {
    let env = Environment::new(1);
    let (server, seen) = recording_server(&env, &server_credentials(ClientCertificateMode::DontRequest));
    let channel = ChannelBuilder::new(&env)
        .connect_with_credentials(&target(&server), &client_credentials(true))
        .unwrap();
    channel.unary(&UNARY, &request("anon", 1), ready()).wait().unwrap();
    let auth = seen.lock().unwrap().pop().unwrap();
    assert!(auth.is_tls());
    assert!(!auth.peer_is_authenticated());
    assert_eq!(auth.peer_common_name(), None);
    assert_eq!(auth.peer_certificate_pem(), None);

    let (server, seen) = recording_server(&env, &ServerCredentials::insecure());
    let channel = ChannelBuilder::new(&env).connect(&target(&server)).unwrap();
    channel.unary(&UNARY, &request("plain", 1), ready()).wait().unwrap();
    let auth = seen.lock().unwrap().pop().unwrap();
    assert_eq!(auth.transport_security_type(), Some("insecure"));
    assert!(!auth.is_tls());
}

/// Fail-fast call on a fresh channel; must fail with UNAVAILABLE quickly.
fn handshake_error(env: &Environment, server: &grpcore::Server, creds: &ChannelCredentials) -> Error {
    let channel = ChannelBuilder::new(env).connect_with_credentials(&target(server), creds).unwrap();
    let start = Instant::now();
    let err = channel
        .unary(&UNARY, &request("x", 1), CallOptions::new().timeout(Duration::from_secs(20)))
        .wait()
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}: {err}", start.elapsed());
    err
}

#[test]
fn handshake_failures_are_unavailable_with_the_reason() {
    let env = Environment::new(1);
    let p = pki();
    let server = tls_echo_server(&env, &server_credentials(ClientCertificateMode::DontRequest));

    // The server's certificate is signed by a CA the client does not trust.
    let other = ChannelCredentials::tls()
        .root_certificates(p.other_ca.certificate())
        .server_name_override(SERVER_NAME)
        .build()
        .unwrap();
    let err = handshake_error(&env, &server, &other);
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("Ssl handshake failed") && err.to_string().contains("certificate verify failed"), "{err}");

    // The certificate does not name the host the client expects.
    let wrong_name = ChannelCredentials::tls()
        .root_certificates(p.ca.certificate())
        .server_name_override("wrong.example")
        .build()
        .unwrap();
    let err = handshake_error(&env, &server, &wrong_name);
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("Peer name wrong.example is not in peer certificate"), "{err}");

    // The server's certificate has expired.
    let expired = tls_echo_server(
        &env,
        &ServerCredentials::tls(p.server_expired.identity()).build().unwrap(),
    );
    let err = handshake_error(&env, &expired, &client_credentials(false));
    // The 1.51 core reports OpenSSL's "certificate verify failed", not the reason (expiry).
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("certificate verify failed"), "{err}");

    // The server requires a client certificate and the client has none.
    let mtls = tls_echo_server(&env, &server_credentials(ClientCertificateMode::RequireAndVerify));
    let err = handshake_error(&env, &mtls, &client_credentials(false));
    // Under TLS 1.3 the client's handshake is over before the server checks its
    // certificate, so the client learns only that the server closed the connection.
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert_client_refused(&err);

    // The client's certificate is signed by a CA the server does not trust.
    let impostor = ChannelCredentials::tls()
        .root_certificates(p.ca.certificate())
        .server_name_override(SERVER_NAME)
        .identity(p.other_client.identity())
        .build()
        .unwrap();
    let err = handshake_error(&env, &mtls, &impostor);
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert_client_refused(&err);

    // A plaintext client against a TLS server.
    let err = handshake_error(&env, &server, &ChannelCredentials::insecure());
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("failed to connect to all addresses"), "{err}");
}

/// A server refused the client's certificate: the connection is closed (TLS 1.3) or the
/// handshake fails with the server's alert (TLS 1.2).
fn assert_client_refused(err: &Error) {
    let text = err.to_string();
    assert!(
        text.contains("Socket closed") || text.contains("Ssl handshake failed") || text.contains("Connection reset"),
        "{text}"
    );
}

#[test]
fn client_certificate_modes_decide_who_gets_in() {
    use ClientCertificateMode::*;
    let env = Environment::new(1);
    let p = pki();
    // (mode, no certificate, certificate from the trusted CA, certificate from another CA)
    let table = [
        (DontRequest, true, true, true),
        (Request, true, true, true),
        (RequestAndVerify, true, true, false),
        (Require, false, true, true),
        (RequireAndVerify, false, true, false),
    ];
    for (mode, none_ok, trusted_ok, other_ok) in table {
        let (server, seen) = recording_server(&env, &server_credentials(mode));
        for (identity, want, cn) in [
            (None, none_ok, None),
            (Some(p.client.identity()), trusted_ok, Some(CLIENT_CN)),
            (Some(p.other_client.identity()), other_ok, Some("impostor client")),
        ] {
            let mut b = ChannelCredentials::tls().root_certificates(p.ca.certificate()).server_name_override(SERVER_NAME);
            if let Some(id) = identity {
                b = b.identity(id);
            }
            let channel = ChannelBuilder::new(&env).connect_with_credentials(&target(&server), &b.build().unwrap()).unwrap();
            let result = channel.unary(&UNARY, &request("mode", 1), if want { ready() } else { opts() }).wait();
            assert_eq!(result.is_ok(), want, "{mode:?} with {cn:?}: {:?}", result.err());
            if want {
                let auth = seen.lock().unwrap().pop().unwrap();
                // The server only looks at a certificate it asked for.
                let expect = if mode == DontRequest { None } else { cn };
                assert_eq!(auth.peer_common_name(), expect, "{mode:?}");
            } else {
                assert_eq!(result.unwrap_err().code(), Code::Unavailable);
            }
        }
    }
}

#[test]
fn several_identities_are_chosen_by_the_name_the_client_asks_for() {
    let env = Environment::new(1);
    let p = pki();
    let creds = ServerCredentials::tls(p.server.identity()).add_identity(p.server_second.identity()).build().unwrap();
    let server = tls_echo_server(&env, &creds);
    for (name, want) in [(SERVER_NAME, "CN=grpcore test server"), (SECOND_NAME, "CN=grpcore second server")] {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let creds = ChannelCredentials::tls()
            .root_certificates(p.ca.certificate())
            .server_name_override(name)
            .verify_server(move |_, cert| {
                record.lock().unwrap().push(cert.subjects()[0].clone());
                Ok(())
            })
            .build()
            .unwrap();
        let channel = ChannelBuilder::new(&env).connect_with_credentials(&target(&server), &creds).unwrap();
        channel.unary(&UNARY, &request("sni", 1), ready()).wait().unwrap();
        let seen = seen.lock().unwrap();
        assert!(seen[0].starts_with(want), "{name}: {seen:?}");
    }
}

#[test]
fn default_roots_do_not_trust_a_private_ca_and_verify_server_can_refuse() {
    let env = Environment::new(1);
    let server = tls_echo_server(&env, &server_credentials(ClientCertificateMode::DontRequest));
    // No root_certificates: the core's default roots (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH or
    // the system store), which know nothing of the test CA.
    let system = ChannelCredentials::tls().server_name_override(SERVER_NAME).build().unwrap();
    let err = handshake_error(&env, &server, &system);
    assert!(err.to_string().contains("certificate verify failed"), "{err}");

    // verify_server can refuse a server the core accepted, and a panic in it refuses too.
    let pinned = ChannelCredentials::tls()
        .root_certificates(pki().ca.certificate())
        .server_name_override(SERVER_NAME)
        .verify_server(|_, _| Err("not the pinned certificate".into()))
        .build()
        .unwrap();
    let err = handshake_error(&env, &server, &pinned);
    assert!(err.to_string().contains("Verify peer callback returned a failure"), "{err}");
    let panicking = ChannelCredentials::tls()
        .root_certificates(pki().ca.certificate())
        .server_name_override(SERVER_NAME)
        .verify_server(|_, _| panic!("verifier bug"))
        .build()
        .unwrap();
    let err = handshake_error(&env, &server, &panicking);
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}
