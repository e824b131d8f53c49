//! The example servers stop gracefully on SIGTERM and SIGINT: helloworld_server and
//! route_guide_server exit with status 0, and a RouteChat stream in flight when SIGTERM
//! arrives keeps working within the grace period and ends OK (issue #12: every server
//! binary).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use grpcore::{ChannelBuilder, Environment};
use grpcore_examples::proto::routeguide::route_guide_grpc::RouteGuideClient;
use grpcore_examples::proto::routeguide::{Point, RouteNote};

/// A server process. Its stdin stays open (closing it also asks for a stop); killed if a
/// test left it running.
struct Server {
    child: Child,
    target: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start(binary: &str) -> Server {
    let mut child = Command::new(binary)
        .args(["--port", "0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {binary}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let target = line
        .trim()
        .strip_prefix("listening on ")
        .map(str::to_string)
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("{binary} did not announce its address: {line:?}")
        });
    Server { child, target }
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
            "the server still runs {limit:?} after the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const HELLOWORLD: &str = env!("CARGO_BIN_EXE_helloworld_server");
const ROUTE_GUIDE: &str = env!("CARGO_BIN_EXE_route_guide_server");

#[test]
fn both_servers_exit_0_on_sigterm_and_sigint() {
    for binary in [HELLOWORLD, ROUTE_GUIDE] {
        for sig in [libc::SIGTERM, libc::SIGINT] {
            let mut server = start(binary);
            signal(&server, sig);
            let status = exit_within(&mut server, Duration::from_secs(10));
            assert_eq!(status.code(), Some(0), "{binary}, signal {sig}: {status:?}");
        }
    }
}

#[test]
fn route_chat_in_flight_finishes_after_sigterm() {
    let mut server = start(ROUTE_GUIDE);
    let env = Environment::new(1);
    let client = RouteGuideClient::new(ChannelBuilder::new(&env).connect(&server.target).unwrap());
    let note = |message: &str| RouteNote {
        location: Some(Point {
            latitude: 7,
            longitude: 7,
        }),
        message: message.into(),
    };
    futures::executor::block_on(async {
        let (mut sink, mut stream) = client.route_chat().timeout(Duration::from_secs(20)).start();
        // Two notes at one place: the second brings the first back, so once it is here the
        // server is surely handling the call (a sent note alone says only that the client's
        // core took it).
        sink.send(note("first")).await.unwrap();
        sink.send(note("second")).await.unwrap();
        let echoed = stream
            .next()
            .await
            .expect("a note back")
            .expect("a note back");
        assert_eq!(echoed.message, "first");
        signal(&server, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(200));
        // Still served within the grace period: the earlier notes come back for this one.
        sink.send(note("third")).await.unwrap();
        sink.close().await.unwrap();
        let mut got = Vec::new();
        while let Some(n) = stream.next().await {
            got.push(n.expect("the stream ends OK").message);
        }
        assert_eq!(got, ["first", "second"]);
    });
    let status = exit_within(&mut server, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");
}
