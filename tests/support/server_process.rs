//! Testing a server binary from outside, as a separate process: start it and read the port
//! it announces, signal it, wait (with a bound) for it to exit, and make hand-framed unary
//! calls to it with the Python `h2` package (tests/peers/python/h2_unary_frame.py).
//!
//! One file for every test that starts a server binary. It is no test target (cargo makes
//! targets only of the files directly in tests/); each test includes it by path, as the
//! benchmark peers and the examples include bench/src/signals.rs:
//!
//! ```ignore
//! #[path = "../../tests/support/server_process.rs"]
//! mod server_process;
//! ```
//!
//! Included by bench/tests/{graceful_stop,compressed_flag,smoke}.rs,
//! examples/tests/{graceful_stop,compressed_flag,reflection}.rs and
//! interop/tests/{graceful_stop,compressed_flag}.rs. Paths are taken from the including
//! crate's `CARGO_MANIFEST_DIR`, one directory below the repository root for all of them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A server binary running as a child process; killed if a test leaves it running.
pub struct ServerProcess {
    child: Child,
    /// The binary's file name, for messages.
    name: String,
    port: u16,
}

impl ServerProcess {
    /// Spawns `binary` with `args` in the including crate's directory and reads its first
    /// line of stdout, which must be `announce` followed by the port it serves on, as `PORT`
    /// or `127.0.0.1:PORT`: bench_server prints `listening on PORT`, helloworld_server and
    /// route_guide_server `listening on 127.0.0.1:PORT`, interop_server `PORT PORT`. Panics,
    /// after killing the child, on any other line.
    ///
    /// The child's stdin is a pipe that stays open as long as the process is ours (the
    /// example servers stop when their stdin ends); its stderr is the test's.
    pub fn start(binary: &str, args: &[&str], announce: &str) -> ServerProcess {
        let name = std::path::Path::new(binary)
            .file_name()
            .map_or_else(|| binary.to_string(), |n| n.to_string_lossy().into_owned());
        let mut child = Command::new(binary)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let port = line
            .trim()
            .strip_prefix(announce)
            .map(|rest| rest.strip_prefix("127.0.0.1:").unwrap_or(rest))
            .and_then(|p| p.parse().ok());
        match (read, port) {
            (Ok(_), Some(port)) => ServerProcess { child, name, port },
            (read, _) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} did not announce its port: {line:?} ({read:?})")
            }
        }
    }

    /// The port the server announced.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`: where a channel reaches the server.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends `sig` to the server; asserts that it was delivered.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: sends a signal to our own child, which has not been reaped (only
        // exit_within and Drop reap it, and exit_within only once it has exited).
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0);
    }

    /// Waits up to `limit` until the server refuses new TCP connections on its port: the
    /// sign that a stop has begun (a gRPC server closes its listeners when its shutdown
    /// starts, before the grace period for calls in flight), to wait on after
    /// [`signal`](Self::signal) instead of sleeping for a guessed while. Fails the test if
    /// the port still accepts connections then.
    pub fn stops_accepting_within(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            match std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                _ => {}
            }
            assert!(
                start.elapsed() < limit,
                "{} still accepts connections on port {} {limit:?} after the signal",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `limit` for the server to exit and returns how it ended; fails the test
    /// if it is still running then.
    pub fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "{} still running {limit:?} after the signal",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The grpc-status of one unary call to `127.0.0.1:port` made of a hand-made frame (`None`:
/// no status came within 10 s): the message frame's compressed-flag byte is `flag` and its
/// bytes `body_hex` (hex), whatever they hold; `encoding` is the `grpc-encoding` header's
/// value, `-` for none. Runs tests/peers/python/h2_unary_frame.py with `$PYTHON` (default
/// `python3`).
pub fn h2_unary_frame_status(
    port: u16,
    path: &str,
    flag: u8,
    encoding: &str,
    body_hex: &str,
) -> Option<i64> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/peers/python/h2_unary_frame.py"
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            script,
            &port.to_string(),
            path,
            &flag.to_string(),
            encoding,
            body_hex,
            "10",
        ])
        .output()
        .expect("run h2_unary_frame.py (scripts/setup.sh installs h2)");
    grpc_status(&String::from_utf8_lossy(&out.stdout))
}

/// The `grpc_status` field of h2_unary_frame.py's JSON line (null: `None`).
fn grpc_status(line: &str) -> Option<i64> {
    let rest = line
        .split("\"grpc_status\": ")
        .nth(1)
        .unwrap_or_else(|| panic!("no grpc_status in {line:?}"));
    let field: String = rest
        .chars()
        .take_while(|c| *c != ',' && *c != '}')
        .collect();
    field.trim().parse().ok()
}

/// gzip of an empty message (mtime 0): what a client compressing with gzip sends for it.
pub const GZIP_OF_EMPTY: &str = "1f8b080000000000020303000000000000000000";

/// The server at `port` (`what`, for messages) answers unary calls to `path` whose
/// compressed flag the headers do not explain (no `grpc-encoding`, an unknown one) and two
/// controls (gzip declared, plain) as the `reference` server on the library's defaults
/// does, with an empty message (issue #12, defect 11). For servers whose request messages
/// may be empty; interop/tests/compressed_flag.rs has its own cases.
pub fn same_statuses(what: &str, port: u16, reference: u16, path: &str) {
    let cases = [
        ("compressed flag, no grpc-encoding", 1, "-", GZIP_OF_EMPTY),
        (
            "compressed flag, unknown grpc-encoding",
            1,
            "snappy",
            GZIP_OF_EMPTY,
        ),
        ("gzip, declared", 1, "gzip", GZIP_OF_EMPTY),
        ("plain", 0, "-", ""),
    ];
    for (case, flag, encoding, body) in cases {
        let expected = h2_unary_frame_status(reference, path, flag, encoding, body);
        let got = h2_unary_frame_status(port, path, flag, encoding, body);
        assert_eq!(got, expected, "{what}, {case}");
        assert!(
            expected.is_some(),
            "{what}, {case}: no status from the reference"
        );
    }
}
