//! A `log` backend that panics must never unwind into the C core (issue #12, defect 6).
//!
//! The core calls Rust from C for call-credentials plugins, TLS `verify_server` checks and
//! certificate reload fetches; each logs when something fails. A panic that escapes an
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
        m.target().starts_with("grpcore::credentials")
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
