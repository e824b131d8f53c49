//! The metrics example (metrics_server): known calls of all four kinds, successes and
//! failures, then `/metrics` parsed with Python `prometheus_client`'s parser
//! (`text_string_to_metric_families`, scripts/setup.sh installs it) and checked for exact
//! counts: started, handled by code, histogram counts, messages each way, nothing left in
//! flight (issue #13); and its tracing subscriber's line for every finished call.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use futures::StreamExt;
use grpcore::{ChannelBuilder, Code, Environment};
use grpcore_examples::proto::echo::echo_grpc::EchoClient;
use grpcore_examples::proto::echo::EchoRequest;

/// The example server; killed if a test left it running.
struct Server {
    child: Child,
    target: String,
    metrics: String,
    /// What the server printed on stderr (its tracing subscriber writes there).
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metrics_server"))
        .args(["--port", "0", "--metrics-port", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn metrics_server");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let kept = stderr.clone();
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| kept.lock().unwrap().push(l)));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = |prefix: &str, suffix: &str| {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line.trim()
            .strip_prefix(prefix)
            .and_then(|l| l.strip_suffix(suffix))
            .unwrap_or_else(|| panic!("metrics_server printed {line:?}, not {prefix}...{suffix}"))
            .to_string()
    };
    let target = line("listening on ", "");
    let metrics = line("metrics on http://", "/metrics");
    Server {
        child,
        target,
        metrics,
        stderr,
    }
}

fn echo(message: &str, repeat: u32) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        repeat,
    }
}

/// `GET /metrics`: the body.
fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// One sample as the parser read it.
#[derive(Debug)]
struct Sample {
    family_type: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses Prometheus text with `prometheus_client.parser.text_string_to_metric_families`.
fn parse(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([family.type, s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("run {python} (scripts/setup.sh installs prometheus-client): {e}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client could not parse:\n{text}"
    );
    let rows: Vec<(String, String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&output.stdout).unwrap();
    rows.into_iter()
        .map(|(family_type, name, labels, value)| Sample {
            family_type,
            name,
            labels,
            value,
        })
        .collect()
}

/// The value of the sample `name` for `method` (plus `extra` labels), if there is one.
fn value(samples: &[Sample], name: &str, method: &str, extra: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && s.labels.get("grpc_service").map(String::as_str) == Some("echo.Echo")
                && s.labels.get("grpc_method").map(String::as_str) == Some(method)
                && extra
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        found.len() <= 1,
        "several samples match {name} {method} {extra:?}: {found:?}"
    );
    found.first().map(|s| s.value)
}

/// Makes the known calls: what each method's metrics must then say is in `expected`.
async fn known_calls(client: &EchoClient) {
    // Say (unary): 5 OK, 3 INVALID_ARGUMENT.
    for i in 0..5 {
        client.say(echo(&format!("hi {i}"), 0)).await.unwrap();
    }
    for _ in 0..3 {
        let err = client.say(echo("", 0)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    }

    // Expand (server streaming): 2 OK with 3 replies each, 1 OUT_OF_RANGE with none.
    for _ in 0..2 {
        let mut stream = client.expand(echo("x", 3)).start();
        let mut n = 0;
        while let Some(item) = stream.next().await {
            item.unwrap();
            n += 1;
        }
        assert_eq!(n, 3);
    }
    let mut stream = client.expand(echo("x", 101)).start();
    let err = stream.next().await.expect("an error").unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err}");

    // Collect (client streaming): 1 OK of 4 messages, 1 INVALID_ARGUMENT at its 2nd message.
    let (mut sink, response) = client.collect().start();
    for word in ["a", "b", "c", "d"] {
        sink.send(echo(word, 0)).await.unwrap();
    }
    sink.close().await.unwrap();
    assert_eq!(response.await.unwrap().message, "a b c d");
    let (mut sink, response) = client.collect().start();
    sink.send(echo("a", 0)).await.unwrap();
    sink.send(echo("", 0)).await.unwrap();
    let _ = sink.close().await;
    let err = response.await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    // Chat (duplex): 1 OK with 2 messages each way, 1 INVALID_ARGUMENT after 1 reply (2
    // requests).
    let (mut sink, mut stream) = client.chat().start();
    for word in ["x", "y"] {
        sink.send(echo(word, 0)).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().message, word);
    }
    sink.close().await.unwrap();
    assert!(stream.next().await.is_none());
    let (mut sink, mut stream) = client.chat().start();
    sink.send(echo("x", 0)).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().message, "x");
    sink.send(echo("", 0)).await.unwrap();
    let err = stream.next().await.expect("an error").unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

/// Per method: grpc_type, then (code, calls) handled, messages received, messages sent.
type Expected = (
    &'static str,
    &'static str,
    &'static [(&'static str, f64)],
    f64,
    f64,
);

const EXPECTED: &[Expected] = &[
    (
        "Say",
        "unary",
        &[("OK", 5.0), ("INVALID_ARGUMENT", 3.0)],
        8.0,
        5.0,
    ),
    (
        "Expand",
        "server_stream",
        &[("OK", 2.0), ("OUT_OF_RANGE", 1.0)],
        3.0,
        6.0,
    ),
    (
        "Collect",
        "client_stream",
        &[("OK", 1.0), ("INVALID_ARGUMENT", 1.0)],
        6.0,
        1.0,
    ),
    (
        "Chat",
        "bidi_stream",
        &[("OK", 1.0), ("INVALID_ARGUMENT", 1.0)],
        4.0,
        3.0,
    ),
];

#[test]
fn the_example_serves_exact_counts_that_prometheus_client_parses() {
    let server = start();
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env).connect(&server.target).unwrap();
    let client = EchoClient::new(channel);

    // Before any call: the methods' series exist (made when the server was built), at 0.
    let samples = parse(&scrape(&server.metrics));
    for (method, ..) in EXPECTED {
        assert_eq!(
            value(&samples, "grpc_server_started_total", method, &[]),
            Some(0.0),
            "{method}"
        );
        assert_eq!(
            value(&samples, "grpc_server_in_flight", method, &[]),
            Some(0.0),
            "{method}"
        );
    }

    block_on(known_calls(&client));

    // A server call ends (and is counted) once its status has gone out, which may be just
    // after the client saw it: wait until every call was counted, then check exact values.
    let total: f64 = EXPECTED.iter().flat_map(|e| e.2.iter().map(|c| c.1)).sum();
    let deadline = Instant::now() + Duration::from_secs(10);
    let samples = loop {
        let samples = parse(&scrape(&server.metrics));
        let handled: f64 = samples
            .iter()
            .filter(|s| s.name == "grpc_server_handled_total")
            .map(|s| s.value)
            .sum();
        if handled >= total || Instant::now() > deadline {
            assert_eq!(handled, total, "calls handled, all methods");
            break samples;
        }
        std::thread::sleep(Duration::from_millis(20));
    };

    let types: BTreeMap<&str, &str> = samples
        .iter()
        .map(|s| (s.name.as_str(), s.family_type.as_str()))
        .collect();
    assert_eq!(types["grpc_server_started_total"], "counter");
    assert_eq!(types["grpc_server_handled_total"], "counter");
    assert_eq!(types["grpc_server_handling_seconds_count"], "histogram");
    assert_eq!(types["grpc_server_msg_received_total"], "counter");
    assert_eq!(types["grpc_server_msg_sent_total"], "counter");
    assert_eq!(types["grpc_server_in_flight"], "gauge");

    for &(method, kind, handled, received, sent) in EXPECTED {
        let calls: f64 = handled.iter().map(|c| c.1).sum();
        let at = |name: &str, extra: &[(&str, &str)]| value(&samples, name, method, extra);
        let typed = [("grpc_type", kind)];
        assert_eq!(
            at("grpc_server_started_total", &typed),
            Some(calls),
            "{method}: started"
        );
        for &(code, n) in handled {
            assert_eq!(
                at(
                    "grpc_server_handled_total",
                    &[("grpc_type", kind), ("grpc_code", code)]
                ),
                Some(n),
                "{method}: {code}"
            );
        }
        let codes = samples
            .iter()
            .filter(|s| s.name == "grpc_server_handled_total" && s.labels["grpc_method"] == method)
            .count();
        assert_eq!(codes, handled.len(), "{method}: no other code");
        assert_eq!(
            at("grpc_server_handling_seconds_count", &typed),
            Some(calls),
            "{method}: histogram count"
        );
        assert_eq!(
            at("grpc_server_handling_seconds_bucket", &[("le", "+Inf")]),
            Some(calls),
            "{method}: +Inf bucket"
        );
        let sum = at("grpc_server_handling_seconds_sum", &typed).unwrap();
        assert!(
            sum > 0.0 && sum < 10.0 * calls,
            "{method}: latency sum {sum}"
        );
        assert_eq!(
            at("grpc_server_msg_received_total", &typed),
            Some(received),
            "{method}: received"
        );
        assert_eq!(
            at("grpc_server_msg_sent_total", &typed),
            Some(sent),
            "{method}: sent"
        );
        assert_eq!(
            at("grpc_server_in_flight", &typed),
            Some(0.0),
            "{method}: in flight"
        );
    }

    // One span line per finished call, with its method and status code (the subscriber
    // prints a span when it closes; the last ones may lag the metrics by a moment).
    let calls: usize = EXPECTED.iter().map(|(_, _, codes, ..)| codes.iter().map(|(_, n)| *n as usize).sum::<usize>()).sum();
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans: Vec<String> = server.stderr.lock().unwrap().iter().filter(|l| l.contains("grpc.server{")).cloned().collect();
        if spans.len() >= calls || Instant::now() > deadline {
            break spans;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(spans.len(), calls, "{spans:#?}");
    assert!(spans.iter().any(|l| l.contains("rpc.method=\"Say\"") && l.contains("rpc.grpc.status_code=3")), "{spans:#?}");
    assert!(spans.iter().all(|l| l.contains("trace_id=") && l.contains("rpc.system=\"grpc\"")), "{spans:#?}");
}
