//! xDS: channels to `xds:///name` targets configured by a control plane
//! (tests/peers/python/xds_control_plane.py, itself checked with grpcio's xDS client here),
//! and the bootstrap errors `connect` reports instead of failing every call.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use grpcore::xds::XdsBootstrap;
use grpcore::{CallOptions, ChannelBuilder, ConfigErrorKind, Environment, Error, Server, ServerBuilder, ServiceBuilder, Status};

/// A server whose Unary method answers with its own name.
fn named_server(env: &Environment, name: &str) -> Server {
    let name = name.to_string();
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, _ctx| {
            let name = name.clone();
            async move { Ok::<_, Status>(EchoResponse { message: name, seq: req.seq, payload: Vec::new() }) }
        })
        .build();
    ServerBuilder::new(env).register_service(service).bind("127.0.0.1:0").build().unwrap()
}

/// The control plane's configuration: service `echo` split over clusters by weight, each
/// cluster's endpoints.
fn config(split: &[(&str, u32)], clusters: &[(&str, &[&Server])]) -> String {
    let split: Vec<String> = split.iter().map(|(c, w)| format!("\"{c}\": {w}")).collect();
    let clusters: Vec<String> = clusters
        .iter()
        .map(|(c, servers)| {
            let eps: Vec<String> = servers.iter().map(|s| format!("\"127.0.0.1:{}\"", s.port())).collect();
            format!("\"{c}\": [{}]", eps.join(","))
        })
        .collect();
    format!(r#"{{"services": {{"echo": {{{}}}}}, "clusters": {{{}}}}}"#, split.join(","), clusters.join(","))
}

fn control_plane(config: &str) -> Peer {
    python_peer_server("xds_control_plane.py", &[config])
}

fn bootstrap(plane: &Peer) -> XdsBootstrap {
    XdsBootstrap::new().server(&format!("127.0.0.1:{}", plane.port)).node_id("grpcore-test")
}

/// Makes `n` calls, one after another, and counts the answers per server name.
fn spread(channel: &grpcore::Channel, n: i64) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let opts = CallOptions::new().wait_for_ready(true).timeout(Duration::from_secs(10));
        let reply = channel.unary(&UNARY, &request("who", i), opts).wait().unwrap();
        *counts.entry(reply.into_message().message).or_default() += 1;
    }
    counts
}

/// Asserts an 80/20 split of `n` calls within 3 percentage points, and prints it.
fn assert_80_20(who: &str, counts: &BTreeMap<String, usize>, n: usize) {
    let a = counts.get("a").copied().unwrap_or(0);
    let b = counts.get("b").copied().unwrap_or(0);
    assert_eq!(a + b, n, "{who}: answers from unexpected servers: {counts:?}");
    let pa = 100.0 * a as f64 / n as f64;
    let pb = 100.0 * b as f64 / n as f64;
    eprintln!("{who}: 80/20 split over {n} calls: a {a} ({pa:.2}%), b {b} ({pb:.2}%)");
    assert!((pa - 80.0).abs() <= 3.0 && (pb - 20.0).abs() <= 3.0, "{who}: {counts:?} is not 80/20 within 3 points");
}

#[test]
fn weighted_clusters_split_grpcore_calls_80_20() {
    let env = Environment::new(2);
    let (a, b) = (named_server(&env, "a"), named_server(&env, "b"));
    let plane = control_plane(&config(&[("echo-a", 80), ("echo-b", 20)], &[("echo-a", &[&a]), ("echo-b", &[&b])]));
    let channel = ChannelBuilder::new(&env).xds_bootstrap(&bootstrap(&plane)).connect("xds:///echo").unwrap();
    let counts = spread(&channel, 2000);
    assert_80_20("grpcore", &counts, 2000);
}

/// The same control plane and backends with grpcio's xDS client: checks the fixture, so a
/// failure of the test above points at grpcore.
#[test]
fn weighted_clusters_split_grpcio_calls_80_20() {
    let env = Environment::new(1);
    let (a, b) = (named_server(&env, "a"), named_server(&env, "b"));
    let plane = control_plane(&config(&[("echo-a", 80), ("echo-b", 20)], &[("echo-a", &[&a]), ("echo-b", &[&b])]));
    let json = bootstrap(&plane).to_json().unwrap();
    let out = python_script("xds_client.py")
        .args(["xds:///echo", "2000"])
        .env("GRPC_XDS_BOOTSTRAP_CONFIG", &json)
        .env_remove("GRPC_XDS_BOOTSTRAP")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "grpcio xDS client failed: {stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let counts: BTreeMap<String, usize> = report["counts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap() as usize))
        .collect();
    assert_80_20("grpcio", &counts, 2000);
}

fn config_error(r: Result<grpcore::Channel, Error>) -> (ConfigErrorKind, String) {
    match r {
        Err(Error::Config(c)) => (c.kind(), c.message().to_string()),
        Err(e) => panic!("expected a config error, got {e}"),
        Ok(_) => panic!("expected a config error, got a channel"),
    }
}

#[test]
fn no_bootstrap_anywhere_is_an_error_at_connect() {
    if std::env::var_os("GRPC_XDS_BOOTSTRAP").is_some() || std::env::var_os("GRPC_XDS_BOOTSTRAP_CONFIG").is_some() {
        eprintln!("skipped: this process has an xDS bootstrap in its environment");
        return;
    }
    let env = Environment::new(1);
    let (kind, message) = config_error(ChannelBuilder::new(&env).connect("xds:///echo"));
    assert_eq!(kind, ConfigErrorKind::Setting);
    assert!(message.contains("GRPC_XDS_BOOTSTRAP") && message.contains("xds_bootstrap"), "{message}");
    // Other targets do not need one.
    ChannelBuilder::new(&env).connect("127.0.0.1:1").unwrap();
}

#[test]
fn unreadable_or_invalid_bootstrap_is_an_error_at_connect() {
    let env = Environment::new(1);
    let (kind, message) =
        config_error(ChannelBuilder::new(&env).xds_bootstrap_file("/nonexistent/bootstrap.json").connect("xds:///echo"));
    assert_eq!(kind, ConfigErrorKind::File);
    assert!(message.contains("/nonexistent/bootstrap.json"), "{message}");

    let path = std::env::temp_dir().join(format!("grpcore-xds-test-{}.json", std::process::id()));
    std::fs::File::create(&path).unwrap().write_all(br#"{"xds_servers": [{"server_uri": "127.0.0.1:1"}]}"#).unwrap();
    let r = ChannelBuilder::new(&env).xds_bootstrap_file(&path).connect("xds:///echo");
    std::fs::remove_file(&path).unwrap();
    let (kind, message) = config_error(r);
    assert_eq!(kind, ConfigErrorKind::Setting);
    assert!(message.contains("channel_creds"), "{message}");

    let (kind, message) = config_error(ChannelBuilder::new(&env).xds_bootstrap_json("{\"xds_servers\": 3").connect("xds:///echo"));
    assert_eq!(kind, ConfigErrorKind::Setting);
    assert!(message.contains("not valid JSON"), "{message}");

    let (kind, message) = config_error(ChannelBuilder::new(&env).xds_bootstrap(&XdsBootstrap::new()).connect("xds:///echo"));
    assert_eq!(kind, ConfigErrorKind::Setting);
    assert!(message.contains("xds_servers"), "{message}");
}

/// A valid bootstrap whose control plane never answers: calls end at their deadline with
/// the core's status, they never hang.
#[test]
fn unreachable_control_plane_fails_calls_at_their_deadline() {
    let env = Environment::new(1);
    // A port nobody listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bootstrap = XdsBootstrap::new().server(&format!("127.0.0.1:{port}"));
    let channel = ChannelBuilder::new(&env).xds_bootstrap(&bootstrap).connect("xds:///echo").unwrap();
    let start = Instant::now();
    let opts = CallOptions::new().wait_for_ready(true).timeout(Duration::from_millis(500));
    let err = channel.unary(&UNARY, &request("who", 0), opts).wait().unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.status().code(), grpcore::Code::DeadlineExceeded, "{err}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}
