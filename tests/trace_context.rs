//! Tracing across services (feature `tracing`): a grpcio client sends a W3C `traceparent`;
//! the grpcore server's `grpc.server` span continues that trace, and the call its handler
//! makes with `CallOptions::parent` reaches a second grpcio server with the same trace id and
//! a new parent span id (the grpcore client span's).

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::*;
use grpcore::trace::{ClientTracing, ServerTracing, TraceContext};
use grpcore::{CallOptions, ChannelBuilder, Environment, ServerBuilder, ServerContext, ServiceBuilder, Status};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// A span's name and its fields as recorded.
type SpanRecord = (String, HashMap<String, String>);

/// Every span, by id.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<HashMap<u64, SpanRecord>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().insert(id.into_u64(), (attrs.metadata().name().to_string(), fields));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some((_, fields)) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}

impl Spans {
    fn named(&self, name: &str) -> Vec<HashMap<String, String>> {
        self.0.lock().unwrap().values().filter(|(n, _)| n == name).map(|(_, f)| f.clone()).collect()
    }
}

#[test]
fn one_trace_crosses_a_grpcio_client_a_grpcore_server_and_a_grpcio_backend() {
    let spans = Spans::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone())).unwrap();

    let env = Environment::new(2);
    let backend = python_server(&[]);
    let child_channel =
        ChannelBuilder::new(&env).intercept(ClientTracing::new()).connect(&format!("127.0.0.1:{}", backend.port)).unwrap();
    let (seen_tx, seen_rx) = mpsc::channel::<(Option<TraceContext>, String)>();
    let seen_tx = Mutex::new(seen_tx);
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, ctx: ServerContext| {
            let child_channel = child_channel.clone();
            let seen_tx = seen_tx.lock().unwrap().clone();
            async move {
                let child = child_channel.unary(&UNARY, &req, CallOptions::new().parent(&ctx)).await.map_err(|e| e.status())?;
                let arrived = child.initial_metadata().get("x-seen-traceparent").unwrap_or("").to_string();
                let _ = seen_tx.send((ctx.extension::<TraceContext>(), arrived));
                Ok::<_, Status>(EchoResponse::default())
            }
        })
        .build();
    let server =
        ServerBuilder::new(&env).intercept(ServerTracing::new()).register_service(service).bind("127.0.0.1:0").build().unwrap();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("traceparent=00-{trace_id}-{caller_span}-01");
    let out = Command::new(python())
        .arg(format!("{}/tests/peers/python/raw_call.py", env!("CARGO_MANIFEST_DIR")))
        .args([&format!("127.0.0.1:{}", server.port()), "unary", "/grpcore.test.Echo/Unary", &traceparent])
        .output()
        .expect("run the grpcio client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CODE 0 OK"), "{stdout} {}", String::from_utf8_lossy(&out.stderr));

    let (handler_saw, arrived) = seen_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let server_ctx = handler_saw.expect("the handler sees its span's trace context");
    assert_eq!(server_ctx.trace_id(), trace_id, "the server continues the caller's trace");
    assert_eq!(server_ctx.parent_span_id().as_deref(), Some(caller_span));

    // The backend got the same trace, with a new parent: the grpcore client span.
    let child = TraceContext::from_traceparent(&arrived).unwrap_or_else(|| panic!("backend saw {arrived:?}"));
    assert_eq!(child.trace_id(), trace_id);
    assert_ne!(child.span_id(), caller_span);
    assert_ne!(child.span_id(), server_ctx.span_id());

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while spans.named("grpc.server").iter().all(|s| !s.contains_key("rpc.grpc.status_code")) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let server_spans = spans.named("grpc.server");
    assert_eq!(server_spans.len(), 1, "{server_spans:?}");
    let s = &server_spans[0];
    assert_eq!(s["trace_id"], trace_id);
    assert_eq!(s["parent_span_id"], caller_span);
    assert_eq!(s["span_id"], server_ctx.span_id());
    assert_eq!(s["rpc.service"], "grpcore.test.Echo");
    assert_eq!(s["rpc.method"], "Unary");
    assert_eq!(s["rpc.system"], "grpc");
    assert_eq!(s["otel.kind"], "server");
    assert_eq!(s["rpc.grpc.status_code"], "0");

    let client_spans = spans.named("grpc.client");
    assert_eq!(client_spans.len(), 1, "{client_spans:?}");
    let c = &client_spans[0];
    assert_eq!(c["trace_id"], trace_id);
    assert_eq!(c["span_id"], child.span_id(), "the backend's parent is the client span");
    assert_eq!(c["parent_span_id"], server_ctx.span_id(), "the client span's parent is the server span");
    assert_eq!(c["otel.kind"], "client");
}
