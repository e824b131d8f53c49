//! A `log` backend that panics must never unwind into the C core (issue #12, defect 6).
//!
//! The core calls Rust from C for call-credentials plugins, TLS `verify_server` checks,
//! certificate reload fetches and xDS serving-status notifications; each logs. A panic that escapes an
//! `extern "C"` function aborts the process, so every piece of Rust in those callbacks,
//! logging included, must run inside `catch_unwind`. This binary installs a logger (global,
//! hence a binary of its own) that panics on every record from `grpcore::credentials`, then
//! drives each callback down its failing path: the process must survive and the call must
//! end the way it would with a well-behaved logger.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;

use common::tls::*;
use common::*;
use grpcore::{
    CallCredentials, CallOptions, CertificateConfig, CertificateReloader, ChannelBuilder,
    ChannelCredentials, ClientCertificateMode, Code, Environment, Metadata, ServerCredentials,
    Status,
};

/// How many records the panicking logger was asked to write (each time it panicked).
static PANICS: AtomicUsize = AtomicUsize::new(0);

struct PanickingLogger;

impl log::Log for PanickingLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("grpcore::credentials") || m.target().starts_with("grpcore::xds")
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            PANICS.fetch_add(1, Ordering::SeqCst);
            panic!("the logger broke while writing: {}", r.args());
        }
    }
    fn flush(&self) {}
}

/// Installs the logger; the returned guard keeps the tests of this binary from running at
/// once (they share the logger's counter).
fn install_panicking_logger() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&PanickingLogger).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
    serial
}

fn opts() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20))
}

fn ready() -> CallOptions {
    CallOptions::new()
        .timeout(Duration::from_secs(20))
        .wait_for_ready(true)
}

#[test]
fn call_credentials_plugin_that_panics_logs_through_a_panicking_logger() {
    let _serial = install_panicking_logger();
    let env = Environment::new(1);
    let server = tls_echo_server(
        &env,
        &server_credentials(ClientCertificateMode::DontRequest),
    );
    // Panicking before it returns a future: the plugin answers the core synchronously and
    // logs the failure.
    let source = CallCredentials::from_async(
        &env,
        |_ctx| -> std::future::Ready<Result<Metadata, Status>> { panic!("no token today") },
    );
    let creds = client_credentials(false).with_call_credentials(source);
    let channel = ChannelBuilder::new(&env)
        .connect_with_credentials(&target(&server), &creds)
        .unwrap();
    let before = PANICS.load(Ordering::SeqCst);
    let err = channel
        .unary(&UNARY, &request("x", 1), opts())
        .wait()
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("no token today"), "{err}");
    assert!(
        PANICS.load(Ordering::SeqCst) > before,
        "the failure path did not log"
    );
}

#[test]
fn verify_server_that_rejects_or_panics_logs_through_a_panicking_logger() {
    let _serial = install_panicking_logger();
    let env = Environment::new(1);
    let server = tls_echo_server(
        &env,
        &server_credentials(ClientCertificateMode::DontRequest),
    );
    for panics in [false, true] {
        let creds = ChannelCredentials::tls()
            .root_certificates(pki().ca.certificate())
            .server_name_override(SERVER_NAME)
            .verify_server(move |_name, _cert| {
                if panics {
                    panic!("the verifier broke");
                }
                Err("not the server we expected".to_string())
            })
            .build()
            .unwrap();
        let channel = ChannelBuilder::new(&env)
            .connect_with_credentials(&target(&server), &creds)
            .unwrap();
        let before = PANICS.load(Ordering::SeqCst);
        let err = channel
            .unary(&UNARY, &request("x", 2), opts())
            .wait()
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "panics={panics}: {err}");
        assert!(
            PANICS.load(Ordering::SeqCst) > before,
            "panics={panics}: the failure path did not log"
        );
    }
}

#[test]
fn reload_callback_that_fails_or_panics_logs_through_a_panicking_logger() {
    let _serial = install_panicking_logger();
    let env = Environment::new(1);
    let p = pki();
    for panics in [false, true] {
        let reloader =
            CertificateReloader::from_fn(CertificateConfig::new(p.server.identity()), move || {
                if panics {
                    panic!("the certificate store exploded");
                }
                Err("vault is sealed".into())
            })
            .check_interval(Duration::ZERO);
        // The first fetch, when the port is bound, already runs the callback and logs.
        let before = PANICS.load(Ordering::SeqCst);
        let creds = ServerCredentials::tls_reloading(&reloader, ClientCertificateMode::DontRequest)
            .unwrap();
        let server = tls_echo_server(&env, &creds);
        let channel = ChannelBuilder::new(&env)
            .connect_with_credentials(&target(&server), &client_credentials(false))
            .unwrap();
        // The failed reload keeps the certificates in use, so the call itself succeeds.
        let reply = channel
            .unary(&UNARY, &request("reload", 3), ready())
            .wait()
            .unwrap();
        assert_eq!(reply.message().seq, 3);
        assert!(reloader.failures() >= 1, "panics={panics}");
        assert!(
            PANICS.load(Ordering::SeqCst) > before,
            "panics={panics}: the failure path did not log"
        );
    }
}

/// The xDS server's serving-status notification runs on a core thread and logs every
/// change; here the user's callback panics too. The process survives, the server serves,
/// and both the log line and the report of the callback's panic went through the logger.
#[cfg(feature = "xds")]
#[test]
fn xds_serving_status_logs_through_a_panicking_logger() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Instant;
    let _serial = install_panicking_logger();
    let env = Environment::new(1);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let template = "grpc/server?xds.resource.listening_address=%s";
    let name = template.replace("%s", &format!("127.0.0.1:{port}"));
    let config = format!(r#"{{"services": {{}}, "clusters": {{}}, "server_listeners": {{"{name}": "127.0.0.1:{port}"}}}}"#);
    let plane = python_peer_server("xds_control_plane.py", &[&config]);
    let bootstrap = grpcore::xds::XdsBootstrap::new()
        .server(&format!("127.0.0.1:{}", plane.port))
        .node_id("grpcore-test")
        .server_listener_resource_name_template(template);
    let notified = Arc::new(AtomicBool::new(false));
    let flag = notified.clone();
    let before = PANICS.load(Ordering::SeqCst);
    let _server = grpcore::ServerBuilder::new(&env)
        .xds_bootstrap(&bootstrap)
        .on_xds_serving_status(move |_, status| {
            flag.store(status.is_ok(), Ordering::SeqCst);
            panic!("the status callback broke");
        })
        .register_service(echo_service())
        .bind(format!("127.0.0.1:{port}"))
        .build()
        .unwrap();
    let start = Instant::now();
    while !notified.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(notified.load(Ordering::SeqCst), "the server was never told it serves");
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{port}")).unwrap();
    let reply = channel.unary(&UNARY, &request("xds", 4), ready()).wait().unwrap();
    assert_eq!(reply.message().seq, 4);
    // "serving", then the callback's panic: two records, each a panic of the logger.
    assert!(PANICS.load(Ordering::SeqCst) >= before + 2, "the notification did not log twice");
}
