//! A server whose second address cannot be bound, after a first one was: `build()` must
//! return an error naming that address, not abort the process (issue #12, defect 1). The
//! core asserts when a server with a listening port is destroyed without
//! `grpc_server_shutdown_and_notify`, so on a broken build this test binary dies with
//! SIGABRT.

use grpcore::{Environment, Error, ServerBuilder};

#[test]
fn second_bind_in_use_is_an_error_not_an_abort() {
    let env = Environment::new(1);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = format!("127.0.0.1:{}", taken.local_addr().unwrap().port());
    let result = ServerBuilder::new(&env)
        .bind("127.0.0.1:0")
        .bind(busy.as_str())
        .build();
    match result {
        Err(Error::Config(msg)) => {
            assert_eq!(msg.kind(), grpcore::ConfigErrorKind::Bind, "{msg}");
            assert!(msg.message().contains(&busy), "the error should name {busy}: {msg}")
        }
        other => panic!("expected a configuration error naming {busy}, got {other:?}"),
    }
    // The first address was released: the environment still serves a new server on it.
    let again = ServerBuilder::new(&env)
        .bind("127.0.0.1:0")
        .build()
        .expect("a later server builds");
    assert_ne!(again.port(), 0);
}

#[test]
fn unix_then_bad_unix_is_an_error() {
    let env = Environment::new(1);
    let dir = std::env::temp_dir().join(format!("grpcore-bind-failure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = format!("unix:{}", dir.join("ok.sock").display());
    let bad = "unix:/nonexistent-grpcore-dir/x.sock";
    let result = ServerBuilder::new(&env)
        .bind(good.as_str())
        .bind(bad)
        .build();
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Err(Error::Config(msg)) => {
            assert_eq!(msg.kind(), grpcore::ConfigErrorKind::Bind, "{msg}");
            assert!(msg.message().contains(bad), "the error should name {bad}: {msg}")
        }
        other => panic!("expected a configuration error naming {bad}, got {other:?}"),
    }
}
