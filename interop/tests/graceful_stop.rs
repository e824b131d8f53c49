//! interop_server stops gracefully on SIGTERM and SIGINT: it lets a call in flight finish
//! within the grace period, then exits with status 0 (issue #12: every server binary).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use grpcore::{CallOptions, ChannelBuilder, Environment, Method};
use grpcore_interop::paths;
use grpcore_interop::proto::{
    ResponseParameters, StreamingOutputCallRequest, StreamingOutputCallResponse,
};
use grpcore_interop::wire::Wire;

const STREAMING_OUTPUT_CALL: Method<StreamingOutputCallRequest, StreamingOutputCallResponse, Wire> =
    Method::server_streaming(paths::STREAMING_OUTPUT_CALL);

/// The server process; killed if a test left it running.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_interop_server"))
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn interop_server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("interop_server did not announce its port: {line:?}")
        });
    Server { child, port }
}

fn signal(server: &Server, sig: libc::c_int) {
    // SAFETY: sends a signal to our own child, which has not been reaped (still running).
    assert_eq!(
        unsafe { libc::kill(server.child.id() as libc::pid_t, sig) },
        0
    );
}

/// Waits up to `limit` for the process to exit and returns how it ended.
fn exit_within(server: &mut Server, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < limit,
            "interop_server still running {limit:?} after the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_lets_a_call_in_flight_finish_then_exits_0() {
    let mut server = start();
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env)
        .connect(&format!("127.0.0.1:{}", server.port))
        .unwrap();
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
    signal(&server, libc::SIGTERM);
    let rest: Vec<_> = futures::executor::block_on(stream.collect::<Vec<_>>());
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert!(rest.iter().all(|r| r.is_ok()), "{rest:?}");
    let status = exit_within(&mut server, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn sigint_exits_0() {
    let mut server = start();
    signal(&server, libc::SIGINT);
    let status = exit_within(&mut server, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");
}
