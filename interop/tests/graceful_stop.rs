//! interop_server stops gracefully on SIGTERM and SIGINT: it lets a call in flight finish
//! within the grace period, then exits with status 0 (issue #12: every server binary).

use std::time::Duration;

use futures::StreamExt;
use grpcore::{CallOptions, ChannelBuilder, Environment, Method};
use grpcore_interop::paths;
use grpcore_interop::proto::{
    ResponseParameters, StreamingOutputCallRequest, StreamingOutputCallResponse,
};
use grpcore_interop::wire::Wire;

#[path = "../../tests/support/server_process.rs"]
mod server_process;
use server_process::ServerProcess;

const STREAMING_OUTPUT_CALL: Method<StreamingOutputCallRequest, StreamingOutputCallResponse, Wire> =
    Method::server_streaming(paths::STREAMING_OUTPUT_CALL);

fn start() -> ServerProcess {
    ServerProcess::start(env!("CARGO_BIN_EXE_interop_server"), &["--port=0"], "PORT ")
}

#[test]
fn sigterm_lets_a_call_in_flight_finish_then_exits_0() {
    let mut server = start();
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env).connect(&server.target()).unwrap();
    // Three responses 400 ms apart: the call is in flight for about 1.2 s.
    let req = StreamingOutputCallRequest {
        response_parameters: (0..3)
            .map(|_| ResponseParameters {
                size: 10,
                interval_us: 400_000,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut stream = channel.server_streaming(
        &STREAMING_OUTPUT_CALL,
        &req,
        CallOptions::new().timeout(Duration::from_secs(20)),
    );
    let first = futures::executor::block_on(stream.next())
        .expect("a first response")
        .expect("the first response");
    assert_eq!(first.payload.map(|p| p.body.len()), Some(10));
    server.signal(libc::SIGTERM);
    let rest: Vec<_> = futures::executor::block_on(stream.collect::<Vec<_>>());
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert!(rest.iter().all(|r| r.is_ok()), "{rest:?}");
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
