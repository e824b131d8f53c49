//! Certificate reload on a running TLS server: rotated files or a callback's new
//! certificates reach new handshakes while connections already open keep working; bad files
//! and failing or panicking callbacks leave the certificates in use and are logged.
//!
//! Which certificate a server presented is observed on the client with
//! `TlsChannelCredentials::verify_server`, which runs once per handshake.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::tls::*;
use common::*;
use futures::StreamExt;
use grpcore::{
    CallOptions, CertificateConfig, CertificateFiles, CertificateReloader, Channel, ChannelBuilder, ChannelCredentials,
    ClientCertificateMode, Code, Environment, ServerCredentials,
};

/// Collects log records so the tests can check what was logged.
struct Capture;

static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            LOGS.lock().unwrap().push(format!("{} {}: {}", r.level(), r.target(), r.args()));
        }
    }
    fn flush(&self) {}
}

fn capture_logs() {
    let _ = log::set_logger(&Capture);
    log::set_max_level(log::LevelFilter::Warn);
}

fn logged(needle: &str) -> bool {
    LOGS.lock().unwrap().iter().any(|l| l.contains(needle))
}

/// The CN of a certificate's subject.
fn cn(cert: &grpcore::Certificate) -> String {
    let subject = &cert.subjects()[0];
    subject.split(", ").find_map(|p| p.strip_prefix("CN=")).unwrap_or_default().to_string()
}

type Seen = Arc<Mutex<Vec<String>>>;

/// A new channel whose credentials record the CN of each server certificate they see.
fn observed_channel(env: &Environment, server: &grpcore::Server) -> (Channel, Seen) {
    observed_channel_with(env, server, |b| b)
}

fn observed_channel_with(
    env: &Environment,
    server: &grpcore::Server,
    f: impl FnOnce(grpcore::TlsChannelCredentials) -> grpcore::TlsChannelCredentials,
) -> (Channel, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let creds = ChannelCredentials::tls()
        .root_certificates(pki().ca.certificate())
        .server_name_override(SERVER_NAME)
        .verify_server(move |name, cert| {
            assert_eq!(name, SERVER_NAME);
            record.lock().unwrap().push(cn(cert));
            Ok(())
        });
    let creds = f(creds).build().unwrap();
    let channel = ChannelBuilder::new(env).connect_with_credentials(&target(server), &creds).unwrap();
    (channel, seen)
}

/// For calls expected to succeed: a transient connection failure (seen once in hundreds
/// of runs on an overloaded machine) is retried by the channel instead of failing the test.
fn ready() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20)).wait_for_ready(true)
}

/// For calls expected to fail: fail fast instead of waiting for a connection that works.
fn opts() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20))
}

fn call(channel: &Channel, seq: i64) {
    let reply = channel.unary(&UNARY, &request("reload", seq), ready()).wait().unwrap();
    assert_eq!(reply.message().seq, seq);
}

/// What a new connection's handshake sees now.
fn cn_for_new_connection(env: &Environment, server: &grpcore::Server) -> String {
    let (channel, seen) = observed_channel(env, server);
    call(&channel, 0);
    let seen = seen.lock().unwrap();
    // One handshake, or more if a connection failed and was retried: all with one certificate.
    assert!(!seen.is_empty() && seen.iter().all(|cn| *cn == seen[0]), "{seen:?}");
    seen[0].clone()
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = pki().dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Replaces `path` atomically (write beside it, then rename), as certificate tools do.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

const ORIGINAL: &str = "grpcore test server";
const ROTATED: &str = "grpcore test server (rotated)";

#[test]
fn rotated_files_reach_new_connections_and_open_ones_keep_working() {
    let env = Environment::new(2);
    let p = pki();
    let dir = scratch_dir("rotate");
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    replace(&crt, &p.server.cert_pem);
    replace(&key, &p.server.key_pem);
    let reloader = CertificateReloader::watch_files(CertificateFiles::new(&crt, &key))
        .unwrap()
        .check_interval(Duration::ZERO);
    let creds = ServerCredentials::tls_reloading(&reloader, ClientCertificateMode::DontRequest).unwrap();
    let server = tls_echo_server(&env, &creds);

    // A client connects, and keeps a streaming call open across the rotation.
    let (held, held_seen) = observed_channel(&env, &server);
    call(&held, 1);
    let (mut sink, mut stream) = held.duplex(&BIDI, ready());
    futures::executor::block_on(async {
        sink.send(request("before", 1)).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().message, "before");
    });
    assert_eq!(*held_seen.lock().unwrap(), [ORIGINAL]);

    replace(&crt, &p.server_rotated.cert_pem);
    replace(&key, &p.server_rotated.key_pem);

    // A new channel's handshake gets the new certificate.
    assert_eq!(cn_for_new_connection(&env, &server), ROTATED);
    assert_eq!(reloader.generation(), 2);
    assert_eq!(reloader.failures(), 0);

    // The old connection is undisturbed: its open stream goes on, new calls on it work, and
    // it never shook hands again.
    futures::executor::block_on(async {
        sink.send(request("after", 2)).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().message, "after");
        sink.close().await.unwrap();
        assert!(stream.next().await.is_none());
    });
    call(&held, 2);
    assert_eq!(*held_seen.lock().unwrap(), [ORIGINAL]);
}

#[test]
fn bad_files_keep_the_certificates_in_use_and_are_logged() {
    capture_logs();
    let env = Environment::new(1);
    let p = pki();
    let dir = scratch_dir("bad-files");
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    replace(&crt, &p.server.cert_pem);
    replace(&key, &p.server.key_pem);
    let reloader = CertificateReloader::watch_files(CertificateFiles::new(&crt, &key))
        .unwrap()
        .check_interval(Duration::ZERO);
    let server = tls_echo_server(
        &env,
        &ServerCredentials::tls_reloading(&reloader, ClientCertificateMode::DontRequest).unwrap(),
    );
    assert_eq!(cn_for_new_connection(&env, &server), ORIGINAL);

    // Garbage in the certificate file.
    replace(&crt, "this is not a certificate\n");
    assert_eq!(cn_for_new_connection(&env, &server), ORIGINAL);
    assert_eq!(reloader.failures(), 1);
    let why = reloader.last_error().unwrap();
    assert!(why.contains("tls.crt") && why.contains("no PEM block found"), "{why}");
    assert!(logged("TLS certificate reload failed, keeping the certificates in use"), "{:?}", LOGS.lock().unwrap());

    // A certificate whose key is not the one in the key file.
    replace(&crt, &p.server_rotated.cert_pem);
    assert_eq!(cn_for_new_connection(&env, &server), ORIGINAL);
    assert_eq!(reloader.failures(), 2);
    let why = reloader.last_error().unwrap();
    assert!(why.contains("does not match"), "{why}");

    // A missing file.
    std::fs::remove_file(&key).unwrap();
    assert_eq!(cn_for_new_connection(&env, &server), ORIGINAL);
    assert!(reloader.last_error().unwrap().contains("cannot read"), "{:?}", reloader.last_error());

    // Fixed: the matching key arrives, and new connections get the new certificate.
    replace(&key, &p.server_rotated.key_pem);
    assert_eq!(cn_for_new_connection(&env, &server), ROTATED);
    assert_eq!(reloader.generation(), 2);
    assert_eq!(reloader.last_error(), None);
}

#[test]
fn a_callback_supplies_certificates_and_its_failures_and_panics_keep_the_old_ones() {
    capture_logs();
    let env = Environment::new(1);
    let p = pki();
    enum Next {
        Config(CertificateConfig),
        Fail(&'static str),
        Panic,
    }
    let next: Arc<Mutex<Option<Next>>> = Arc::default();
    let source = next.clone();
    let reloader = CertificateReloader::from_fn(CertificateConfig::new(p.server.identity()), move || {
        let next = source.lock().unwrap().take();
        match next {
            None => Ok(None),
            Some(Next::Config(c)) => Ok(Some(c)),
            Some(Next::Fail(why)) => Err(why.into()),
            Some(Next::Panic) => panic!("the certificate store exploded"),
        }
    })
    .check_interval(Duration::ZERO);
    let server = tls_echo_server(
        &env,
        &ServerCredentials::tls_reloading(&reloader, ClientCertificateMode::DontRequest).unwrap(),
    );
    assert_eq!(cn_for_new_connection(&env, &server), ORIGINAL);

    *next.lock().unwrap() = Some(Next::Fail("vault is sealed"));
    assert_eq!(cn_for_new_connection(&env, &server), ORIGINAL);
    assert_eq!(reloader.failures(), 1);
    assert!(reloader.last_error().unwrap().contains("vault is sealed"));
    assert!(logged("vault is sealed"), "{:?}", LOGS.lock().unwrap());

    *next.lock().unwrap() = Some(Next::Panic);
    assert_eq!(cn_for_new_connection(&env, &server), ORIGINAL);
    assert_eq!(reloader.failures(), 2);
    assert!(reloader.last_error().unwrap().contains("panicked: the certificate store exploded"));
    assert!(logged("the certificate store exploded"), "{:?}", LOGS.lock().unwrap());

    *next.lock().unwrap() = Some(Next::Config(CertificateConfig::new(p.server_rotated.identity())));
    assert_eq!(cn_for_new_connection(&env, &server), ROTATED);

    // set() installs certificates directly.
    reloader.set(CertificateConfig::new(p.server.identity()));
    assert_eq!(cn_for_new_connection(&env, &server), ORIGINAL);
    assert_eq!(reloader.generation(), 3);
}

#[test]
fn reloading_the_client_ca_changes_who_may_connect() {
    capture_logs();
    let env = Environment::new(1);
    let p = pki();
    let reloader = CertificateReloader::manual(CertificateConfig::new(p.server.identity()).client_ca(p.ca.certificate()));
    let server = tls_echo_server(
        &env,
        &ServerCredentials::tls_reloading(&reloader, ClientCertificateMode::RequireAndVerify).unwrap(),
    );
    let (ours, _) = observed_channel_with(&env, &server, |b| b.identity(p.client.identity()));
    call(&ours, 1);

    // Trust the other CA instead: new clients with our CA's certificate are refused, clients
    // of the other CA get in, and the connection already open stays.
    reloader.set(CertificateConfig::new(p.server.identity()).client_ca(p.other_ca.certificate()));
    let (refused, _) = observed_channel_with(&env, &server, |b| b.identity(p.client.identity()));
    let err = refused.unary(&UNARY, &request("x", 1), opts()).wait().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    let (other, _) = observed_channel_with(&env, &server, |b| b.identity(p.other_client.identity()));
    call(&other, 2);
    call(&ours, 3);

    // A configuration without a client CA cannot serve a verifying mode: refused, logged,
    // and the server keeps the one it has.
    reloader.set(CertificateConfig::new(p.server.identity()));
    let (other_again, _) = observed_channel_with(&env, &server, |b| b.identity(p.other_client.identity()));
    call(&other_again, 4);
    assert!(logged("has no client CA"), "{:?}", LOGS.lock().unwrap());
}
