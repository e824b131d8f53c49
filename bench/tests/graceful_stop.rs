//! bench_server stops gracefully on SIGTERM and SIGINT: a call in flight (a ping-pong stream)
//! keeps working within the grace period and ends OK, then the server exits with status 0
//! (issue #12: every server binary).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grpcore::{CallOptions, ChannelBuilder, Environment};
use grpcore_bench::{request, STREAMING_CALL};

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench_server"))
        .args(["--port", "0", "--cq-threads", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn bench_server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("bench_server did not announce its port: {line:?}")
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

fn exit_within(server: &mut Server, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < limit,
            "bench_server still running {limit:?} after the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_lets_a_stream_in_flight_finish_then_exits_0() {
    let mut server = start();
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env)
        .connect(&format!("127.0.0.1:{}", server.port))
        .unwrap();
    let (mut sink, stream) = channel.duplex(
        &STREAMING_CALL,
        CallOptions::new().timeout(Duration::from_secs(20)),
    );
    let mut responses = stream.into_blocking_iter();
    sink.send_blocking(request(10, 10)).unwrap();
    assert!(responses.next().unwrap().is_ok());
    signal(&server, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    // Still served: the grace period lets the stream go on.
    sink.send_blocking(request(10, 10)).unwrap();
    assert!(responses.next().unwrap().is_ok());
    sink.close_blocking().unwrap();
    assert!(
        responses.next().is_none(),
        "the stream ends OK after the half-close"
    );
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
