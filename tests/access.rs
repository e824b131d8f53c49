//! Access rules and rate limits by mTLS identity (`grpcore::access`): two client identities,
//! one a Python grpcio client and one grpcore, allowed and refused per method as the rules
//! file says; the file changed while calls run; per-identity rate limits.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tls::*;
use common::*;
use grpcore::access::AccessControl;
use grpcore::{CallOptions, Channel, ChannelBuilder, ClientCertificateMode, Code, Environment, ServerBuilder};

/// Unary: client A only. ServerStream: client B only. ClientStream: any authenticated
/// client, 20 calls a second each, no burst.
const RULES: &str = r#"{"rules": [
    {"methods": ["/grpcore.test.Echo/Unary"], "allow": ["spiffe://grpcore.test/ns/test/sa/client"]},
    {"methods": ["grpcore.test.Echo/ServerStream"], "allow": ["cn:grpcore-test-client-b"]},
    {"methods": ["grpcore.test.Echo/ClientStream"], "allow": ["authenticated"], "rate_limit": {"per_second": 20, "burst": 1}}
]}"#;

/// After the change: Unary and ServerStream for both.
const RULES_CHANGED: &str = r#"{"rules": [
    {"methods": ["grpcore.test.Echo/Unary", "grpcore.test.Echo/ServerStream"],
     "allow": ["spiffe://grpcore.test/ns/test/sa/client", "spiffe://grpcore.test/ns/test/sa/batch"]}
]}"#;

/// Replaces the file in one step (a reader never sees half of it).
fn write_rules(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn rules_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("access-{name}-{}.json", std::process::id()));
    write_rules(&path, text);
    path
}

fn unary(channel: &Channel) -> Code {
    match channel.unary(&UNARY, &request("u", 1), CallOptions::new().timeout(Duration::from_secs(20))).wait() {
        Ok(_) => Code::Ok,
        Err(e) => e.code(),
    }
}

fn server_stream(channel: &Channel) -> Code {
    let items = channel.server_streaming(&SERVER_STREAM, &request("s", 1), CallOptions::new().timeout(Duration::from_secs(20)));
    items.into_blocking_iter().find_map(Result::err).map_or(Code::Ok, |e| e.code())
}

fn client_stream(channel: &Channel) -> Code {
    let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, CallOptions::new().timeout(Duration::from_secs(20)));
    let _ = sink.send_blocking(request("c", 1)).and_then(|()| sink.close_blocking());
    match response.wait() {
        Ok(_) => Code::Ok,
        Err(e) => e.code(),
    }
}

/// One call from Python grpcio presenting client B's certificate; its status code.
fn python_call_as_b(port: u16, kind: &str, path: &str) -> i32 {
    let p = pki();
    let out = Command::new(python())
        .arg("tests/peers/python/raw_call.py")
        .args(["--tls-ca", p.ca.path(), "--server-name-override", SERVER_NAME])
        .args(["--client-cert", p.client_b.path(), "--client-key", p.client_b.key()])
        .args([&format!("127.0.0.1:{port}"), kind, path])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("raw_call said {line:?}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn mtls_server(env: &Environment, access: AccessControl) -> grpcore::Server {
    ServerBuilder::new(env)
        .intercept(access)
        .register_service(echo_service())
        .bind_with_credentials("127.0.0.1:0", &server_credentials(ClientCertificateMode::RequireAndVerify))
        .build()
        .unwrap()
}

fn channel_as(env: &Environment, server: &grpcore::Server, identity: &KeyCert) -> Channel {
    ChannelBuilder::new(env).connect_with_credentials(&format!("127.0.0.1:{}", server.port()), &client_credentials_as(identity)).unwrap()
}

#[test]
fn identities_are_allowed_and_refused_per_method_and_a_changed_file_applies_within_a_second() {
    let env = Environment::new(2);
    let path = rules_file("rules", RULES);
    let server = mtls_server(&env, AccessControl::watch(&path).unwrap());
    let a = channel_as(&env, &server, &pki().client);

    assert_eq!(unary(&a), Code::Ok);
    assert_eq!(server_stream(&a), Code::PermissionDenied);
    assert_eq!(python_call_as_b(server.port(), "unary", "/grpcore.test.Echo/Unary"), Code::PermissionDenied as i32);
    assert_eq!(python_call_as_b(server.port(), "server_stream", "/grpcore.test.Echo/ServerStream"), 0);
    // A method no rule names is refused.
    assert_eq!(python_call_as_b(server.port(), "bidi", "/grpcore.test.Echo/Bidi"), Code::PermissionDenied as i32);

    // Calls allowed before and after the change run throughout; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (made, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let busy = {
        let (a, stop, made, failed) = (a.clone(), stop.clone(), made.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if unary(&a) != Code::Ok {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                made.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    write_rules(&path, RULES_CHANGED);
    let changed = Instant::now();
    while server_stream(&a) != Code::Ok {
        assert!(changed.elapsed() < Duration::from_secs(5), "the new rules never applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = changed.elapsed();
    assert!(took < Duration::from_secs(1), "the new rules applied after {took:?}");
    assert_eq!(python_call_as_b(server.port(), "unary", "/grpcore.test.Echo/Unary"), 0);

    // A broken file is ignored: the rules in force stay.
    write_rules(&path, "{ not json");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(server_stream(&a), Code::Ok);
    assert_eq!(client_stream(&a), Code::PermissionDenied, "ClientStream is not in the changed rules");

    stop.store(true, Ordering::SeqCst);
    busy.join().unwrap();
    assert!(made.load(Ordering::SeqCst) > 10, "the busy client made calls through the reloads");
    assert_eq!(failed.load(Ordering::SeqCst), 0, "a call failed during a reload");
}

#[test]
fn a_rate_limit_refuses_one_identity_over_its_rate_and_not_another() {
    let env = Environment::new(2);
    let server = mtls_server(&env, AccessControl::watch(rules_file("rate", RULES)).unwrap());
    let (a, b) = (channel_as(&env, &server, &pki().client), channel_as(&env, &server, &pki().client_b));
    assert_eq!(client_stream(&a), Code::Ok, "connected");
    assert_eq!(client_stream(&b), Code::Ok, "connected");
    std::thread::sleep(Duration::from_millis(100));

    // B calls at 10 a second, under its limit, while A calls as fast as it can.
    let b_codes = std::thread::spawn(move || {
        (0..15)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(100));
                client_stream(&b)
            })
            .collect::<Vec<_>>()
    });
    let window = Duration::from_secs(2);
    let start = Instant::now();
    let (mut allowed, mut refused) = (0u32, 0u32);
    while start.elapsed() < window {
        match client_stream(&a) {
            Code::Ok => allowed += 1,
            Code::ResourceExhausted => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // 20 a second (the bucket had refilled its one token before the window).
    let expected = 20.0 * elapsed + 1.0;
    assert!((f64::from(allowed) - expected).abs() <= 0.1 * expected, "{allowed} allowed in {elapsed:.2} s, expected about {expected:.0}");
    assert!(refused > allowed, "A called far over its rate: {refused} refused, {allowed} allowed");
    assert!(b_codes.join().unwrap().iter().all(|c| *c == Code::Ok), "B was held back by A's limit");
}
