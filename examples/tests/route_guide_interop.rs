//! The route_guide example against Python grpcio, both ways, all four methods: our client
//! against the grpcio server (tests/peers/python/route_guide_server.py), the grpcio client
//! (route_guide_client.py) against our server, and each against its own kind. Both clients
//! print the same lines for the same answers, so the four transcripts must be identical,
//! and equal to the one the feature database implies (pinned below).
//!
//! Every run gets a fresh server: RouteChat's notes are shared by all of a server's calls.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// What a client prints for the shipped database (examples/route_guide/route_guide_db.json).
const EXPECTED: &str = r#"get_feature 406373610,-741412660: "Beacon Meadow"
get_feature 402988950,-743471710: no feature
get_feature 0,0: no feature
list_features 400000000,-750000000 to 405000000,-745000000:
  "Lantern Rail Depot" at 403509120,-749820270
  "Foxglove Pond" at 400325240,-747871690
  "Cedar Lookout Tower" at 402463240,-746855800
  "Willow Boat Launch" at 404200600,-747796860
  "Copper Overlook" at 403925900,-745673760
  "Willow Overlook" at 403953930,-747604330
  "Heron Stone Wall" at 404259400,-746211050
  "Juniper Lookout Tower" at 403650950,-745397790
  "Cedar Overlook" at 400508100,-749181970
list_features: 9 features
record_route: sent 8 points
record_route: point_count=8 feature_count=4 distance=371637
route_chat: got "First message" at 0,0
route_chat: got "Second message" at 0,1
route_chat: got "First message" at 0,0
route_chat: got "Fourth message" at 0,0
route_chat: done
"#;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn peer(script: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/peers/python")
        .join(script)
}

/// A server process, stopped (stdin closed, then killed if need be) when dropped.
struct Server {
    child: Child,
    target: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` and waits (bounded) for its first line, which `port` turns into a port.
fn start(mut cmd: Command, what: &str, port: fn(&str) -> Option<u16>) -> Server {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("starting the {what}: {e} (python3 with grpcio comes from scripts/setup.sh)")
        });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the {what} printed no port within 60 s"));
    let port = port(line.trim())
        .unwrap_or_else(|| panic!("unexpected first line from the {what}: {line:?}"));
    Server {
        child,
        target: format!("127.0.0.1:{port}"),
    }
}

fn rust_server() -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_route_guide_server"));
    cmd.args(["--port", "0"]);
    start(cmd, "Rust route_guide_server", |l| {
        l.strip_prefix("listening on 127.0.0.1:")?.parse().ok()
    })
}

fn python_server() -> Server {
    let mut cmd = Command::new(python());
    cmd.arg(peer("route_guide_server.py"));
    start(cmd, "Python route_guide_server.py", |l| {
        l.strip_prefix("PORT ")?.parse().ok()
    })
}

/// Runs a client to completion and returns what it printed; fails the test if it failed.
fn run_client(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("starting the {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the {what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn rust_client(server: &Server) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_route_guide_client"));
    cmd.args(["--target", &server.target]);
    run_client(cmd, "Rust route_guide_client")
}

fn python_client(server: &Server) -> String {
    let mut cmd = Command::new(python());
    cmd.arg(peer("route_guide_client.py")).arg(&server.target);
    run_client(cmd, "Python route_guide_client.py")
}

#[test]
fn rust_client_against_python_server() {
    assert_eq!(rust_client(&python_server()), EXPECTED);
}

#[test]
fn python_client_against_rust_server() {
    assert_eq!(python_client(&rust_server()), EXPECTED);
}

#[test]
fn each_against_its_own_kind() {
    // The baselines: if these differ from EXPECTED, the database or a peer changed.
    assert_eq!(rust_client(&rust_server()), EXPECTED);
    assert_eq!(python_client(&python_server()), EXPECTED);
}
