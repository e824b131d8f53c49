//! TLS and mutual TLS against implementations we did not write, both directions: Python
//! grpcio (its own bundled core and BoringSSL) and @grpc/grpc-js (Node's OpenSSL TLS).

mod common;

use std::time::Duration;

use common::tls::*;
use common::*;
use grpcore::{CallOptions, ChannelBuilder, ClientCertificateMode, Code, Environment};

/// The peer client's cases run over TLS (the streaming ones included).
const CASES: &[&str] = &["unary", "metadata", "status", "client_stream", "server_stream", "bidi"];

/// A grpcore client, TLS or mTLS, runs every call kind against a peer server; under mTLS a
/// client without a certificate is turned away.
fn grpcore_client_against(start: impl Fn(&[&str]) -> Peer, name: &str) {
    let env = Environment::new(1);
    for mtls in [false, true] {
        let peer = start(&strs(&peer_server_args(mtls)));
        let target = format!("127.0.0.1:{}", peer.port);
        let channel = ChannelBuilder::new(&env).connect_with_credentials(&target, &client_credentials(mtls)).unwrap();
        futures::executor::block_on(check_all_call_kinds(channel));
        if mtls {
            let anonymous = ChannelBuilder::new(&env)
                .connect_with_credentials(&target, &client_credentials(false))
                .unwrap();
            let err = anonymous
                .unary(&UNARY, &request("anon", 1), CallOptions::new().timeout(Duration::from_secs(20)))
                .wait()
                .unwrap_err();
            assert_eq!(err.code(), Code::Unavailable, "{name} mTLS without a client certificate: {err}");
        }
    }
}

/// A peer client, TLS or mTLS, runs its cases against a grpcore server; under mTLS the
/// handler sees the client certificate's identity.
fn peer_client_against_grpcore(run: impl Fn(&[&str], &str, &[&str]) -> (bool, String), name: &str) {
    let env = Environment::new(2);
    for mtls in [false, true] {
        let mode = if mtls { ClientCertificateMode::RequireAndVerify } else { ClientCertificateMode::DontRequest };
        let (server, seen) = recording_server(&env, &server_credentials(mode));
        let (ok, output) = run(&strs(&peer_client_args(mtls)), &target(&server), CASES);
        assert!(ok && output.contains(&format!("{} passed, 0 failed", CASES.len())), "{name} (mTLS {mtls}):\n{output}");
        let seen = seen.lock().unwrap();
        assert!(!seen.is_empty(), "{name}: no unary call reached the handler");
        for auth in seen.iter() {
            assert!(auth.is_tls(), "{name}: {auth:?}");
            if mtls {
                assert_eq!(auth.peer_common_name(), Some(CLIENT_CN), "{name}");
                assert_eq!(auth.peer_dns_names(), [CLIENT_DNS], "{name}");
                assert_eq!(auth.peer_uris(), [CLIENT_URI], "{name}");
            } else {
                assert_eq!(auth.peer_common_name(), None, "{name}");
            }
        }
    }
}

#[test]
fn grpcore_client_tls_and_mtls_against_grpcio_server() {
    grpcore_client_against(python_server, "grpcio");
}

#[test]
fn grpcio_client_tls_and_mtls_against_grpcore_server() {
    peer_client_against_grpcore(python_client_with, "grpcio");
}

#[test]
fn grpcore_client_tls_and_mtls_against_grpc_js_server() {
    grpcore_client_against(node_server, "grpc-js");
}

#[test]
fn grpc_js_client_tls_and_mtls_against_grpcore_server() {
    peer_client_against_grpcore(node_client_with, "grpc-js");
}
