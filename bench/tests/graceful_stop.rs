//! bench_server stops gracefully on SIGTERM and SIGINT: a call in flight (a ping-pong stream)
//! keeps working within the grace period and ends OK, then the server exits with status 0
//! (issue #12: every server binary).

use std::time::Duration;

use grpcore::{CallOptions, ChannelBuilder, Environment};
use grpcore_bench::{request, STREAMING_CALL};

#[path = "../../tests/support/server_process.rs"]
mod server_process;
use server_process::ServerProcess;

fn start() -> ServerProcess {
    ServerProcess::start(
        env!("CARGO_BIN_EXE_bench_server"),
        &["--port", "0", "--cq-threads", "1"],
        "listening on ",
    )
}

#[test]
fn sigterm_lets_a_stream_in_flight_finish_then_exits_0() {
    let mut server = start();
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env).connect(&server.target()).unwrap();
    let (mut sink, stream) = channel.duplex(
        &STREAMING_CALL,
        CallOptions::new().timeout(Duration::from_secs(20)),
    );
    let mut responses = stream.into_blocking_iter();
    sink.send_blocking(request(10, 10)).unwrap();
    assert!(responses.next().unwrap().is_ok());
    server.signal(libc::SIGTERM);
    // Once the port refuses connections the server is surely stopping (a fixed sleep here
    // said nothing on a loaded machine, where the signal may not have been handled yet).
    server.stops_accepting_within(Duration::from_secs(10));
    // Still served: the grace period lets the stream go on.
    sink.send_blocking(request(10, 10)).unwrap();
    assert!(responses.next().unwrap().is_ok());
    sink.close_blocking().unwrap();
    assert!(
        responses.next().is_none(),
        "the stream ends OK after the half-close"
    );
    let status = server.exit_within(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn sigint_exits_0() {
    let mut server = start();
    server.signal(libc::SIGINT);
    let status = server.exit_within(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");
}
