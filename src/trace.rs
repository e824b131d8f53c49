//! Tracing (feature `tracing`): a [`tracing`](https://docs.rs/tracing) span per call on both
//! sides, and W3C Trace Context (`traceparent`, `tracestate`) carried across services.
//!
//! [`ServerTracing`] reads the `traceparent` a call arrived with, opens a `grpc.server` span
//! that continues that trace (or starts a new one), and attaches the span's
//! [`TraceContext`] to the call: the handler reads it with
//! [`ServerContext::extension`](crate::ServerContext::extension). [`ClientTracing`] opens a
//! `grpc.client` span for each outgoing call and sends its `traceparent`; a call made with
//! [`CallOptions::parent`](crate::CallOptions::parent) continues its parent's trace, so one
//! trace crosses every service a request touches.
//!
//! Span fields follow the OpenTelemetry semantic conventions for RPC: `otel.kind`
//! (`server`/`client`), `rpc.system` (`grpc`), `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code` (recorded at the end), plus `trace_id`, `span_id` and
//! `parent_span_id` in W3C hex, which an OpenTelemetry bridge or a log search can join on.
//!
//! ```
//! # let env = grpcore::Environment::new(1);
//! use grpcore::trace::{ClientTracing, ServerTracing};
//! let server = grpcore::ServerBuilder::new(&env).intercept(ServerTracing::new());
//! let channel = grpcore::ChannelBuilder::new(&env).intercept(ClientTracing::new());
//! # let _ = (server, channel);
//! ```

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use tracing::field::Empty;
use tracing::Span;

use crate::interceptor::{CallEnd, ClientCallInfo, ClientInterceptor, ServerCallInfo, ServerInterceptor};
use crate::method::MethodKind;
use crate::status::Status;

/// The request metadata key of W3C Trace Context.
pub const TRACEPARENT: &str = "traceparent";
/// The vendor-specific companion of `traceparent`, passed on unchanged.
pub const TRACESTATE: &str = "tracestate";

/// Where a call sits in a trace (W3C Trace Context): the trace, this call's span, and the
/// span it continues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    flags: u8,
    state: Option<String>,
}

impl TraceContext {
    /// Parses a `traceparent` value (version `00`, or a later version read as `00`, as the
    /// specification asks). `None` for anything malformed, an all-zero trace or span id, or
    /// version `ff`.
    pub fn from_traceparent(value: &str) -> Option<TraceContext> {
        let value = value.trim();
        let mut parts = value.split('-');
        let version = parts.next()?;
        let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        u8::from_str_radix(version, 16).ok()?;
        let trace_id: [u8; 16] = hex_bytes(trace)?;
        let span_id: [u8; 8] = hex_bytes(span)?;
        let [flags] = hex_bytes::<1>(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            parent_span_id: None,
            flags,
            state: None,
        })
    }

    /// A new trace with one root span, sampled.
    pub fn new_root() -> TraceContext {
        let mut trace_id = [0; 16];
        trace_id[..8].copy_from_slice(&random_id());
        trace_id[8..].copy_from_slice(&random_id());
        TraceContext {
            trace_id,
            span_id: random_id(),
            parent_span_id: None,
            flags: 1,
            state: None,
        }
    }

    /// A new span in this trace, whose parent is this context's span.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            span_id: random_id(),
            parent_span_id: Some(self.span_id),
            flags: self.flags,
            state: self.state.clone(),
        }
    }

    /// The `traceparent` value for this span (version `00`).
    pub fn to_traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), self.flags)
    }

    /// The trace id in hex (32 digits).
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// This span's id in hex (16 digits).
    pub fn span_id(&self) -> String {
        hex(&self.span_id)
    }

    /// The parent span's id in hex, if this span continues one.
    pub fn parent_span_id(&self) -> Option<String> {
        self.parent_span_id.as_ref().map(|id| hex(id))
    }

    /// Whether the trace is sampled (flag `01`).
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The `tracestate` that came with the trace, passed on unchanged.
    pub fn trace_state(&self) -> Option<&str> {
        self.state.as_deref()
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_traceparent())
    }
}

fn hex(bytes: &[u8]) -> String {
    Hex(bytes).to_string()
}

/// Bytes shown as lowercase hex without an allocation (span fields are recorded through
/// `Display`).
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// `N` bytes from exactly `2N` lowercase hex digits (the specification forbids upper case).
fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    let mut out = [0; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A non-zero 8-byte id: the std hasher's per-process random keys over a counter (ids must
/// be unique and unpredictable enough to not collide, not secret).
fn random_id() -> [u8; 8] {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    static KEYS: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    loop {
        let mut h = KEYS.get_or_init(RandomState::new).build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let id = h.finish();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// `(rpc.service, rpc.method)` of a path `/package.Service/Method`.
fn service_and_method(path: &str) -> (String, String) {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    match trimmed.split_once('/') {
        Some((service, method)) => (service.to_string(), method.to_string()),
        None => (String::new(), trimmed.to_string()),
    }
}

/// What a tracing interceptor keeps for one call: its span and its place in the trace.
struct CallSpan(Span);

/// A call's span: `tracing` needs the name and the fields spelled out at the call site.
macro_rules! call_span {
    ($name:literal, $kind:literal, $service:expr, $method:expr, $context:expr) => {
        tracing::info_span!(
            $name,
            otel.kind = $kind,
            rpc.system = "grpc",
            rpc.service = $service,
            rpc.method = $method,
            trace_id = %Hex(&$context.trace_id),
            span_id = %Hex(&$context.span_id),
            parent_span_id = %Hex($context.parent_span_id.as_ref().map_or(&[][..], |id| &id[..])),
            rpc.grpc.status_code = Empty,
        )
    };
}

/// Records the status a call ended with on its span.
fn record_status(end: &CallEnd) {
    if let Some(CallSpan(span)) = end.extensions().get::<CallSpan>() {
        span.record("rpc.grpc.status_code", end.code() as i32);
    }
}

/// Opens a `grpc.server` span per call, continuing the caller's trace (see the [module
/// docs](self)).
#[derive(Debug, Default)]
pub struct ServerTracing {
    /// `(rpc.service, rpc.method)` per registered method, by index (built once).
    methods: RwLock<Vec<(String, String)>>,
}

impl ServerTracing {
    /// A server tracing interceptor.
    pub fn new() -> ServerTracing {
        ServerTracing::default()
    }
}

impl ServerInterceptor for ServerTracing {
    fn on_register(&self, index: usize, method: &str, _kind: MethodKind) {
        let mut methods = self.methods.write().unwrap_or_else(|e| e.into_inner());
        if methods.len() <= index {
            methods.resize(index + 1, (String::new(), String::new()));
        }
        methods[index] = service_and_method(method);
    }

    fn on_start(&self, call: &mut ServerCallInfo) -> impl std::future::Future<Output = Result<(), Status>> + Send {
        let incoming = call.metadata().get(TRACEPARENT).and_then(TraceContext::from_traceparent);
        let context = match incoming {
            Some(mut parent) => {
                parent.state = call.metadata().get(TRACESTATE).map(str::to_string);
                parent.child()
            }
            None => TraceContext::new_root(),
        };
        let span = {
            let methods = self.methods.read().unwrap_or_else(|e| e.into_inner());
            let fallback;
            let (service, method) = match methods.get(call.method_index()) {
                Some(names) => (names.0.as_str(), names.1.as_str()),
                None => {
                    fallback = service_and_method(call.method());
                    (fallback.0.as_str(), fallback.1.as_str())
                }
            };
            call_span!("grpc.server", "server", service, method, context)
        };
        call.extensions_mut().insert(CallSpan(span));
        call.extensions_mut().insert(context);
        std::future::ready(Ok(()))
    }

    fn on_end(&self, end: &CallEnd) {
        record_status(end);
    }
}

/// Opens a `grpc.client` span per call and sends its `traceparent` (see the [module
/// docs](self)). A call made with [`CallOptions::parent`](crate::CallOptions::parent)
/// continues the parent call's trace; any other call starts a new trace.
#[derive(Debug, Default)]
pub struct ClientTracing {
    _private: (),
}

impl ClientTracing {
    /// A client tracing interceptor.
    pub fn new() -> ClientTracing {
        ClientTracing::default()
    }

    /// The start hook's work, which never waits.
    fn start(&self, call: &mut ClientCallInfo) -> Result<(), Status> {
        let context = match call.parent_extension::<TraceContext>() {
            Some(parent) => parent.child(),
            None => TraceContext::new_root(),
        };
        call.metadata_mut()
            .insert(TRACEPARENT, &context.to_traceparent())
            .map_err(|e| Status::internal(format!("cannot send traceparent: {e}")))?;
        if let Some(state) = context.trace_state() {
            // A tracestate that is not a valid header value is dropped, as the
            // specification allows.
            let _ = call.metadata_mut().insert(TRACESTATE, state);
        }
        let (service, method) = service_and_method(call.method());
        let span = call_span!("grpc.client", "client", service.as_str(), method.as_str(), context);
        call.extensions_mut().insert(CallSpan(span));
        call.extensions_mut().insert(context);
        Ok(())
    }
}

impl ClientInterceptor for ClientTracing {
    fn on_start(&self, call: &mut ClientCallInfo) -> impl std::future::Future<Output = Result<(), Status>> + Send {
        std::future::ready(self.start(call))
    }

    fn on_end(&self, end: &CallEnd) {
        record_status(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::from_traceparent(tp).unwrap();
        assert_eq!(ctx.to_traceparent(), tp);
        assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(ctx.is_sampled());
        let child = ctx.child();
        assert_eq!(child.trace_id(), ctx.trace_id());
        assert_eq!(child.parent_span_id(), Some(ctx.span_id()));
        assert_ne!(child.span_id(), ctx.span_id());
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::from_traceparent(bad), None, "{bad:?}");
        }
        // A later version with more fields is read as version 00.
        assert!(TraceContext::from_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz").is_some());
    }

    #[test]
    fn ids_are_fresh() {
        let a = TraceContext::new_root();
        let b = TraceContext::new_root();
        assert_ne!(a.trace_id(), b.trace_id());
        assert_ne!(a.span_id(), b.span_id());
    }
}
