//! `grpcore::metrics` against a recorder that keeps every value: exact counts on the server
//! and the client for all four kinds of call, successes, handler errors and a refusal by an
//! interceptor before the metrics one (counted, never in flight); and the verified mTLS
//! identity label (SPIFFE ID of the client certificate; empty without a certificate).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::tls::*;
use common::*;
use futures::executor::block_on;
use futures::StreamExt;
use grpcore::metrics::{ClientMetrics, ServerMetrics};
use grpcore::{
    CallOptions, ChannelBuilder, ClientCertificateMode, Code, Environment, Metadata, ServerBuilder,
    ServerCallInfo, ServerInterceptor, Status,
};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata as MetricMetadata, Recorder,
    SharedString, Unit,
};

/// Histogram samples.
#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// Keeps every metric by name and label set.
#[derive(Default)]
struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

/// `name{k=v,...}` with the labels sorted.
fn key_string(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

fn key_of(key: &Key) -> String {
    let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
    key_string(key.name(), &labels)
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &MetricMetadata<'_>) -> Counter {
        Counter::from_arc(
            self.counters
                .lock()
                .unwrap()
                .entry(key_of(key))
                .or_default()
                .clone(),
        )
    }

    fn register_gauge(&self, key: &Key, _: &MetricMetadata<'_>) -> Gauge {
        Gauge::from_arc(
            self.gauges
                .lock()
                .unwrap()
                .entry(key_of(key))
                .or_default()
                .clone(),
        )
    }

    fn register_histogram(&self, key: &Key, _: &MetricMetadata<'_>) -> Histogram {
        Histogram::from_arc(
            self.histograms
                .lock()
                .unwrap()
                .entry(key_of(key))
                .or_default()
                .clone(),
        )
    }
}

/// One test at a time, each starting from an empty recorder: the recorder is global and
/// both tests serve `grpcore.test.Echo`, so they would add to each other's totals.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The process's recorder (installed once, before any server is built).
fn recorder() -> &'static TestRecorder {
    static RECORDER: OnceLock<&'static TestRecorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder: &'static TestRecorder = Box::leak(Box::default());
        metrics::set_global_recorder(recorder).expect("no other recorder");
        recorder
    })
}

impl TestRecorder {
    /// Forgets every series (a test's servers, built after this, register fresh ones).
    fn reset(&self) {
        self.counters.lock().unwrap().clear();
        self.gauges.lock().unwrap().clear();
        self.histograms.lock().unwrap().clear();
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        self.counters
            .lock()
            .unwrap()
            .get(&key_string(name, labels))
            .map(|c| c.load(Ordering::SeqCst))
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.gauges
            .lock()
            .unwrap()
            .get(&key_string(name, labels))
            .map(|g| f64::from_bits(g.load(Ordering::SeqCst)))
    }

    fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> Option<usize> {
        self.histograms
            .lock()
            .unwrap()
            .get(&key_string(name, labels))
            .map(|h| h.0.lock().unwrap().len())
    }

    /// The sum of every series of `name` whose labels include `labels`.
    fn total(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.counters
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('{'))
                    .is_some_and(|rest| {
                        let have: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
                        wanted.iter().all(|w| have.contains(&w.as_str()))
                    })
            })
            .map(|(_, c)| c.load(Ordering::SeqCst))
            .sum()
    }

    /// Waits (bounded) until the server counted `n` handled calls with `labels`.
    fn wait_handled(&self, name: &str, labels: &[(&str, &str)], n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.total(name, labels) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(self.total(name, labels), n, "{name} {labels:?}");
    }
}

/// Refuses calls that carry `x-refuse`, before the metrics interceptor runs.
struct Refuser;

impl ServerInterceptor for Refuser {
    async fn on_start(&self, call: &mut ServerCallInfo) -> Result<(), Status> {
        if call.metadata().get("x-refuse").is_some() {
            return Err(Status::new(Code::PermissionDenied, "refused"));
        }
        Ok(())
    }
}

/// A method's expected server metrics: kind, method, calls by code, messages received and
/// sent.
type Expected = (
    &'static str,
    &'static str,
    &'static [(&'static str, u64)],
    u64,
    u64,
);

fn labels<'a>(kind: &'a str, method: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grpc_type", kind),
        ("grpc_service", SERVICE),
        ("grpc_method", method),
    ]
}

fn with<'a>(
    mut base: Vec<(&'a str, &'a str)>,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    base.extend_from_slice(extra);
    base
}

#[test]
fn server_and_client_count_every_kind_of_call_exactly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rec = recorder();
    rec.reset();
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .intercept(Refuser)
        .intercept(ServerMetrics::new())
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let channel = ChannelBuilder::new(&env)
        .intercept(ClientMetrics::new())
        .connect(&format!("127.0.0.1:{}", server.port()))
        .unwrap();

    // Built with the server: every method's series exists, at zero.
    for (kind, method) in [
        ("unary", "Unary"),
        ("client_stream", "ClientStream"),
        ("server_stream", "ServerStream"),
        ("bidi_stream", "Bidi"),
    ] {
        assert_eq!(
            rec.counter("grpc_server_started_total", &labels(kind, method)),
            Some(0),
            "{method}"
        );
    }

    block_on(async {
        for i in 0..3 {
            channel
                .unary(&UNARY, &request("ok", i), CallOptions::new())
                .await
                .unwrap();
        }
        for _ in 0..2 {
            let failing = common::EchoRequest {
                fail_code: Code::NotFound.as_i32(),
                ..request("no", 0)
            };
            let err = channel
                .unary(&UNARY, &failing, CallOptions::new())
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::NotFound);
        }
        let mut refuse = Metadata::new();
        refuse.append("x-refuse", "1").unwrap();
        let err = channel
            .unary(
                &UNARY,
                &request("r", 0),
                CallOptions::new().metadata(refuse),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);

        let mut stream =
            channel.server_streaming(&SERVER_STREAM, &request("s", 3), CallOptions::new());
        let mut n = 0;
        while let Some(item) = stream.next().await {
            item.unwrap();
            n += 1;
        }
        assert_eq!(n, 3);

        let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, CallOptions::new());
        sink.send(request("a", 0)).await.unwrap();
        sink.send(request("b", 0)).await.unwrap();
        sink.close().await.unwrap();
        response.await.unwrap();

        let (mut sink, mut stream) = channel.duplex(&BIDI, CallOptions::new());
        for word in ["x", "y"] {
            sink.send(request(word, 0)).await.unwrap();
            stream.next().await.unwrap().unwrap();
        }
        sink.close().await.unwrap();
        assert!(stream.next().await.is_none());
    });
    rec.wait_handled("grpc_server_handled_total", &[("grpc_service", SERVICE)], 9);
    rec.wait_handled("grpc_client_handled_total", &[("grpc_service", SERVICE)], 9);

    // (kind, method, [(code, calls)], received, sent) on the server; the client's sent and
    // received are the other way round.
    let expected: [Expected; 4] = [
        (
            "unary",
            "Unary",
            &[("OK", 3), ("NOT_FOUND", 2), ("PERMISSION_DENIED", 1)],
            6,
            3,
        ),
        ("server_stream", "ServerStream", &[("OK", 1)], 1, 3),
        ("client_stream", "ClientStream", &[("OK", 1)], 2, 1),
        ("bidi_stream", "Bidi", &[("OK", 1)], 2, 2),
    ];
    for (side, (kind, method, codes, received, sent)) in ["server", "client"]
        .into_iter()
        .flat_map(|side| expected.iter().map(move |e| (side, *e)))
    {
        let name = |what: &str| format!("grpc_{side}_{what}");
        let base = labels(kind, method);
        let calls: u64 = codes.iter().map(|c| c.1).sum();
        assert_eq!(
            rec.counter(&name("started_total"), &base),
            Some(calls),
            "{side} {method} started"
        );
        for &(code, n) in codes {
            assert_eq!(
                rec.counter(
                    &name("handled_total"),
                    &with(base.clone(), &[("grpc_code", code)])
                ),
                Some(n),
                "{side} {method} {code}"
            );
        }
        assert_eq!(
            rec.total(&name("handled_total"), &base),
            calls,
            "{side} {method}: no other code"
        );
        assert_eq!(
            rec.histogram_count(&name("handling_seconds"), &base),
            Some(calls as usize),
            "{side} {method} latency"
        );
        assert_eq!(
            rec.gauge(&name("in_flight"), &base),
            Some(0.0),
            "{side} {method} in flight"
        );
        // A registered unary method's request arrives with its call: the refused call's
        // request counts as received too.
        let (received, sent) = match side {
            "server" => (received, sent),
            _ => (sent, received),
        };
        assert_eq!(
            rec.counter(&name("msg_received_total"), &base),
            Some(received),
            "{side} {method} received"
        );
        assert_eq!(
            rec.counter(&name("msg_sent_total"), &base),
            Some(sent),
            "{side} {method} sent"
        );
    }
}

#[test]
fn the_identity_label_is_the_verified_client_certificates_spiffe_id() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rec = recorder();
    rec.reset();
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .intercept(ServerMetrics::new().peer_identity(ClientCertificateMode::RequestAndVerify, 10))
        .register_service(echo_service())
        .bind_with_credentials(
            "127.0.0.1:0",
            &server_credentials(ClientCertificateMode::RequestAndVerify),
        )
        .build()
        .unwrap();
    let call = |mtls: bool, n: i64| {
        let channel = ChannelBuilder::new(&env)
            .connect_with_credentials(&target(&server), &client_credentials(mtls))
            .unwrap();
        for i in 0..n {
            channel
                .unary(
                    &UNARY,
                    &request("id", i),
                    CallOptions::new().wait_for_ready(true),
                )
                .wait()
                .unwrap();
        }
    };
    call(true, 2);
    call(false, 1);
    let base = labels("unary", "Unary");
    rec.wait_handled(
        "grpc_server_handled_total",
        &[
            ("grpc_service", SERVICE),
            ("grpc_peer_identity", CLIENT_URI),
        ],
        2,
    );
    rec.wait_handled(
        "grpc_server_handled_total",
        &[("grpc_service", SERVICE), ("grpc_peer_identity", "")],
        1,
    );
    assert_eq!(
        rec.counter(
            "grpc_server_started_total",
            &with(base.clone(), &[("grpc_peer_identity", CLIENT_URI)])
        ),
        Some(2)
    );
    assert_eq!(
        rec.counter(
            "grpc_server_started_total",
            &with(base.clone(), &[("grpc_peer_identity", "")])
        ),
        Some(1)
    );
    assert_eq!(
        rec.gauge(
            "grpc_server_in_flight",
            &with(base, &[("grpc_peer_identity", CLIENT_URI)])
        ),
        Some(0.0)
    );
}
