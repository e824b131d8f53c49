//! TLS session resumption: with an `SslSessionCache`, a client's second connection to a
//! server resumes the first one's TLS session (the server's auth context says
//! `ssl_session_reused = true`); without the cache, it runs a full handshake again.

mod common;

use std::time::Duration;

use common::tls::*;
use common::*;
use grpcore::{CallOptions, ChannelBuilder, ClientCertificateMode, Environment, SslSessionCache};

/// Makes `connections` channels one after the other (each a new connection), one call
/// each, and returns what the server saw of each connection's TLS session.
fn sessions(cache: Option<&SslSessionCache>, connections: usize) -> Vec<(Option<bool>, Option<String>)> {
    let env = Environment::new(1);
    let (server, seen) = recording_server(&env, &server_credentials(ClientCertificateMode::RequireAndVerify));
    // Through a proxy that counts TCP connections: each channel must have made its own
    // (channels may share a subchannel, and then a connection, unless kept apart).
    let proxy = ByteProxy::start(server.port());
    for i in 0..connections {
        let channel = ChannelBuilder::new(&env)
            .connect_with_credentials(&format!("127.0.0.1:{}", proxy.port), &client_tls(true, cache))
            .unwrap();
        let reply = channel
            .unary(&UNARY, &request("again", i as i64), CallOptions::new().timeout(Duration::from_secs(20)).wait_for_ready(true))
            .wait()
            .unwrap();
        assert_eq!(reply.message().seq, i as i64);
        assert_eq!(proxy.connections(), i + 1, "channel {i} did not open a connection of its own");
    }
    let seen = seen.lock().unwrap();
    seen.iter()
        .map(|a| (a.ssl_session_reused(), a.peer_common_name().map(str::to_string)))
        .collect()
}

#[test]
fn second_connection_resumes_the_session_from_the_cache() {
    let cache = SslSessionCache::new(8);
    let seen = sessions(Some(&cache), 3);
    let cn = Some(CLIENT_CN.to_string());
    assert_eq!(seen, [(Some(false), cn.clone()), (Some(true), cn.clone()), (Some(true), cn)]);
}

#[test]
fn without_the_cache_every_connection_runs_a_full_handshake() {
    let seen = sessions(None, 3);
    let cn = Some(CLIENT_CN.to_string());
    assert_eq!(seen, [(Some(false), cn.clone()), (Some(false), cn.clone()), (Some(false), cn)]);
}
