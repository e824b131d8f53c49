//! Unix domain sockets: servers and clients on a path and on an abstract name, insecure or
//! with local credentials (which the core checks and reports as private enough for call
//! credentials), and clear errors for a missing directory, a forbidden place, a path taken by
//! something else, and a client pointed at nothing.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::tls::target;
use common::*;
use grpcore::{
    CallCredentials, CallOptions, ChannelBuilder, ChannelCredentials, Code, Environment, LocalConnect, ServerBuilder,
    ServerCredentials,
};

/// For calls expected to succeed: a transient connection failure (seen once in hundreds
/// of runs on an overloaded machine) is retried by the channel instead of failing the test.
fn ready() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20)).wait_for_ready(true)
}

/// For calls expected to fail: fail fast instead of waiting for a connection that works.
fn opts() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20))
}

/// A fresh directory for sockets (paths must stay under 108 bytes).
fn socket_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("grpcore-uds-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn round_trip_on_a_socket_path() {
    let env = Environment::new(1);
    let path = socket_dir("path").join("echo.sock");
    let addr = format!("unix:{}", path.display());
    let server = ServerBuilder::new(&env).register_service(echo_service()).bind(&addr).build().unwrap();
    assert!(std::fs::metadata(&path).unwrap().file_type().is_socket(), "the socket file exists");
    let channel = ChannelBuilder::new(&env).connect(&addr).unwrap();
    futures::executor::block_on(check_all_call_kinds(channel.clone()));
    // unix:///absolute/path names the same socket.
    let channel = ChannelBuilder::new(&env).connect(&format!("unix://{}", path.display())).unwrap();
    assert_eq!(channel.unary(&UNARY, &request("abs", 2), ready()).wait().unwrap().message().seq, 2);
    drop(server);
}

#[test]
fn round_trip_on_an_abstract_name() {
    let env = Environment::new(1);
    let addr = format!("unix-abstract:grpcore-test-{}", std::process::id());
    let _server = ServerBuilder::new(&env).register_service(echo_service()).bind(&addr).build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&addr).unwrap();
    assert_eq!(channel.unary(&UNARY, &request("abstract", 3), ready()).wait().unwrap().message().seq, 3);
    // The name is taken while the server lives.
    let err = ServerBuilder::new(&env).register_service(echo_service()).bind(&addr).build().unwrap_err();
    assert!(err.to_string().contains("Address already in use"), "{err}");
}

/// What the server saw of each call: its auth context and its `authorization` token.
type Seen = Arc<Mutex<Vec<(grpcore::AuthContext, Option<String>)>>>;

/// The echo service's unary method, recording what the server saw of each call.
fn recording_echo() -> (grpcore::Service, Seen) {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let service = grpcore::ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, ctx: grpcore::ServerContext| {
            let token = ctx.request_metadata().get("authorization").map(str::to_string);
            record.lock().unwrap().push((ctx.auth_context(), token));
            unary_echo(req, ctx)
        })
        .build();
    (service, seen)
}

#[test]
fn local_credentials_on_a_unix_socket_carry_call_credentials() {
    let env = Environment::new(1);
    let path = socket_dir("local").join("local.sock");
    let addr = format!("unix:{}", path.display());
    let (service, seen) = recording_echo();
    let server = ServerBuilder::new(&env)
        .register_service(service)
        .bind_with_credentials(&addr, &ServerCredentials::local(LocalConnect::Unix))
        .build()
        .unwrap();
    let creds = ChannelCredentials::local(LocalConnect::Unix).with_call_credentials(CallCredentials::bearer_token("local-token").unwrap());
    let channel = ChannelBuilder::new(&env).connect_with_credentials(&addr, &creds).unwrap();
    channel.unary(&UNARY, &request("local", 4), ready()).wait().unwrap();
    let (auth, token) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(auth.transport_security_type(), Some("local"));
    assert_eq!(token.as_deref(), Some("Bearer local-token"));

    // A TCP client cannot pass for a local unix one: local (unix) server credentials on a
    // TCP port refuse it.
    let tcp = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind_with_credentials("127.0.0.1:0", &ServerCredentials::local(LocalConnect::Unix))
        .build()
        .unwrap();
    let channel = ChannelBuilder::new(&env)
        .connect_with_credentials(&target(&tcp), &ChannelCredentials::local(LocalConnect::Tcp))
        .unwrap();
    let err = channel.unary(&UNARY, &request("tcp", 5), opts()).wait().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    drop(server);
}

#[test]
fn bind_errors_say_what_is_wrong_with_the_path() {
    let env = Environment::new(1);
    let bind = |addr: &str| {
        ServerBuilder::new(&env)
            .register_service(echo_service())
            .bind(addr)
            .build()
            .unwrap_err()
            .to_string()
    };
    // The directory does not exist.
    let missing = socket_dir("missing").join("no/such/dir/echo.sock");
    let err = bind(&format!("unix:{}", missing.display()));
    assert!(
        err.contains("No such file or directory") && err.contains(&format!("does the directory {} exist?", missing.parent().unwrap().display())),
        "{err}"
    );
    // A place this process may not create files in. Root may write anywhere except in
    // kernel file systems, so try /sys as root and a read-only directory otherwise.
    let forbidden = if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
        PathBuf::from("/sys/grpcore-test.sock")
    } else {
        let dir = socket_dir("forbidden");
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
        dir.join("echo.sock")
    };
    let err = bind(&format!("unix:{}", forbidden.display()));
    assert!(err.contains(&format!("cannot create unix socket {}", forbidden.display())), "{err}");
    assert!(
        err.contains("not permitted") || err.contains("Permission denied") || err.contains("Read-only file system"),
        "{err}"
    );
    // Something that is not a socket is in the way (the core only replaces old sockets).
    let taken = socket_dir("taken").join("file.sock");
    std::fs::write(&taken, "not a socket").unwrap();
    let err = bind(&format!("unix:{}", taken.display()));
    assert!(err.contains("Address already in use") && err.contains("something else exists at that path"), "{err}");
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "not a socket", "the file is left alone");
}

#[test]
fn a_client_pointed_at_no_socket_fails_with_the_reason() {
    let env = Environment::new(1);
    let nowhere = socket_dir("nowhere").join("absent.sock");
    let channel = ChannelBuilder::new(&env).connect(&format!("unix:{}", nowhere.display())).unwrap();
    let err = channel.unary(&UNARY, &request("x", 1), opts()).wait().unwrap_err();
    println!("{err}");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("absent.sock"), "{err}");
    assert!(err.to_string().contains("No such file or directory"), "{err}");
}

#[test]
fn local_tcp_credentials_on_loopback() {
    let env = Environment::new(1);
    let (service, seen) = recording_echo();
    let server = ServerBuilder::new(&env)
        .register_service(service)
        .bind_with_credentials("127.0.0.1:0", &ServerCredentials::local(LocalConnect::Tcp))
        .build()
        .unwrap();
    let creds = ChannelCredentials::local(LocalConnect::Tcp).with_call_credentials(CallCredentials::bearer_token("loopback").unwrap());
    let channel = ChannelBuilder::new(&env).connect_with_credentials(&target(&server), &creds).unwrap();
    assert_eq!(channel.unary(&UNARY, &request("loopback", 6), ready()).wait().unwrap().message().seq, 6);
    // The server saw a local (not insecure) connection, and the token.
    let (auth, token) = seen.lock().unwrap().pop().expect("the handler ran");
    assert_eq!(auth.transport_security_type(), Some("local"));
    assert_eq!(token.as_deref(), Some("Bearer loopback"));
}
