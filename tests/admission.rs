//! Admission control (`grpcore::admission`) on real servers: several times a server's
//! capacity offered by many concurrent grpcore clients; admitted calls' latency is bounded
//! by the queue timeout plus the handler time, refusals come fast with the configured
//! status and a message saying why, nothing hangs, and the server serves normally as soon
//! as the load stops. A grpcio client sees the configured status and message too.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use grpcore::admission::{Admission, AdmissionBuilder};
use grpcore::{CallOptions, Channel, ChannelBuilder, Code, Environment, Server, ServerBuilder, ServiceBuilder, Status};

/// Concurrent handlers, and the most seen at once.
#[derive(Default)]
struct Running {
    now: AtomicUsize,
    max: AtomicUsize,
}

/// An Echo server whose unary handler sleeps `sleep_ms` on a tokio timer (so the
/// completion-queue threads stay free) and counts how many handlers run at once.
fn start_server(env: &Environment, rt: &tokio::runtime::Runtime, admission: Admission, running: Arc<Running>) -> Server {
    let timers = rt.handle().clone();
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, _ctx| {
            let (timers, running) = (timers.clone(), running.clone());
            async move {
                let now = running.now.fetch_add(1, Ordering::SeqCst) + 1;
                running.max.fetch_max(now, Ordering::SeqCst);
                let sleep = Duration::from_millis(req.sleep_ms.max(0) as u64);
                let _ = timers.spawn(async move { tokio::time::sleep(sleep).await }).await;
                running.now.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Status>(EchoResponse { message: req.message, seq: req.seq, payload: vec![] })
            }
        })
        .add_server_streaming(&SERVER_STREAM, server_stream_echo)
        .build();
    ServerBuilder::new(env).intercept(admission).register_service(service).bind("127.0.0.1:0").build().unwrap()
}

/// `n` channels, each its own connection (a local subchannel pool).
fn channels(env: &Environment, port: u16, n: usize) -> Vec<Channel> {
    (0..n)
        .map(|_| {
            ChannelBuilder::new(env)
                .raw_int_arg("grpc.use_local_subchannel_pool", 1)
                .connect(&format!("127.0.0.1:{port}"))
                .unwrap()
        })
        .collect()
}

#[derive(Debug)]
struct Outcome {
    code: Code,
    latency: Duration,
    message: String,
}

async fn call(channel: Channel, sleep_ms: i32, timeout: Duration) -> Outcome {
    let req = EchoRequest { sleep_ms, ..request("load", 0) };
    let start = Instant::now();
    let result = channel.unary(&UNARY, &req, CallOptions::new().timeout(timeout)).await;
    let latency = start.elapsed();
    match result {
        Ok(_) => Outcome { code: Code::Ok, latency, message: String::new() },
        Err(e) => {
            let status = e.status();
            Outcome { code: status.code(), latency, message: status.message().to_string() }
        }
    }
}

/// Open-loop load: `rate` calls per second for `duration`, spread over `channels`, each
/// call asking for a `sleep_ms` handler and bounded by a 5 s deadline. Returns every
/// call's outcome once all have ended.
fn offer(rt: &tokio::runtime::Runtime, channels: &[Channel], rate: u32, duration: Duration, sleep_ms: i32) -> Vec<Outcome> {
    let period = Duration::from_secs(1) / rate;
    let n = (duration.as_secs_f64() * rate as f64) as usize;
    rt.block_on(async {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut calls = Vec::with_capacity(n);
        for i in 0..n {
            tick.tick().await;
            calls.push(tokio::spawn(call(channels[i % channels.len()].clone(), sleep_ms, Duration::from_secs(5))));
        }
        let mut outcomes = Vec::with_capacity(n);
        for c in calls {
            outcomes.push(c.await.unwrap());
        }
        outcomes
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn latencies(outcomes: &[&Outcome]) -> Vec<Duration> {
    let mut l: Vec<_> = outcomes.iter().map(|o| o.latency).collect();
    l.sort();
    l
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn limited(concurrency: u32) -> AdmissionBuilder {
    Admission::builder(concurrency)
}

const MS: Duration = Duration::from_millis(1);

const HANDLER_MS: i32 = 20;
const LIMIT: u32 = 4;

#[test]
fn overload_is_refused_fast_admitted_calls_stay_fast_and_the_server_recovers_at_once() {
    // LIFO (the default), a short queue: most refusals make room for newer calls.
    overload(limited(LIMIT).queue_len(8), 40 * MS);
}

#[test]
fn overload_on_a_long_fifo_queue_is_bounded_by_the_queue_timeout() {
    // FIFO with a queue that alone would allow 64 / 200 per second = 320 ms of waiting:
    // the queue timeout is what bounds admitted calls, and most refusals are timeouts.
    let stats = overload(limited(LIMIT).queue_len(64).order(grpcore::admission::Order::Fifo), 40 * MS);
    assert!(stats.waited_too_long > stats.queue_full, "{stats:?}");
}

/// Offers 5x the capacity of a server with `admission` (and queue timeout `timeout`);
/// checks the bounds; returns the admission's counts.
fn overload(admission: AdmissionBuilder, timeout: Duration) -> grpcore::admission::AdmissionStats {
    let handler = HANDLER_MS as u32 * MS;
    let rt = runtime();
    let env = Environment::new(2);
    let admission = admission.queue_timeout(timeout).build();
    let running = Arc::new(Running::default());
    let server = start_server(&env, &rt, admission.clone(), running.clone());
    let channels = channels(&env, server.port(), 8);
    for c in &channels {
        assert_eq!(rt.block_on(call(c.clone(), 0, Duration::from_secs(10))).code, Code::Ok, "warm-up");
    }

    // Capacity: 4 handlers / 20 ms = 200 calls/s. Offer 5x that for 1.5 s.
    let offered = offer(&rt, &channels, 1000, Duration::from_millis(1500), HANDLER_MS);
    let ok: Vec<_> = offered.iter().filter(|o| o.code == Code::Ok).collect();
    let refused: Vec<_> = offered.iter().filter(|o| o.code == Code::ResourceExhausted).collect();
    let other: Vec<_> = offered.iter().filter(|o| o.code != Code::Ok && o.code != Code::ResourceExhausted).collect();
    let (ok_l, refused_l) = (latencies(&ok), latencies(&refused));
    let stats = admission.stats();
    eprintln!(
        "offered {}: {} admitted (p50 {:?}, p99 {:?}, max {:?}), {} refused (p50 {:?}, p99 {:?}, max {:?}); {stats:?}; \
         most handlers at once {}",
        offered.len(),
        ok.len(),
        percentile(&ok_l, 0.5),
        percentile(&ok_l, 0.99),
        percentile(&ok_l, 1.0),
        refused.len(),
        percentile(&refused_l, 0.5),
        percentile(&refused_l, 0.99),
        percentile(&refused_l, 1.0),
        running.max.load(Ordering::SeqCst),
    );
    // Nothing hung, nothing failed otherwise (every call ended well before its 5 s deadline).
    assert!(other.is_empty(), "unexpected outcomes: {:?}", &other[..other.len().min(5)]);
    assert!(percentile(&latencies(&offered.iter().collect::<Vec<_>>()), 1.0) < Duration::from_secs(2));
    assert!(running.max.load(Ordering::SeqCst) <= LIMIT as usize, "the concurrency limit was exceeded");
    // The handlers were kept busy: at least 60% of the 300 calls they could serve.
    assert!(ok.len() >= 180, "only {} calls admitted", ok.len());
    assert!(refused.len() >= offered.len() / 2, "only {} refused", refused.len());
    // Admitted calls waited at most the queue timeout before a handler took them.
    let bound = timeout + handler;
    // The slack covers scheduling on a loaded 2-core machine (CI shares it with builds).
    assert!(percentile(&ok_l, 0.99) <= bound + 50 * MS, "admitted p99 {:?} > {bound:?} + slack", percentile(&ok_l, 0.99));
    // Every refusal says why, and comes no later than the queue timeout (plus slack);
    // "waited too long" never comes before it.
    for r in &refused {
        let full = r.message.contains("admission queue is full");
        let waited = r.message.contains("longer than its timeout");
        assert!(full || waited, "refusal message: {}", r.message);
        assert!(r.latency <= timeout + 30 * MS, "refused after {:?}: {}", r.latency, r.message);
        if waited {
            assert!(r.latency >= timeout, "refused after {:?}, before the timeout: {}", r.latency, r.message);
        }
    }
    assert_eq!(stats.refused() as usize, refused.len());
    assert!(stats.admitted_after_waiting > 0, "no call was admitted from the queue: {stats:?}");

    // The load is gone: the very next calls are served at once, at handler speed.
    for i in 0..10 {
        let o = rt.block_on(call(channels[i % channels.len()].clone(), HANDLER_MS, Duration::from_secs(5)));
        assert_eq!(o.code, Code::Ok, "call {i} after the load: {o:?}");
        assert!(o.latency < handler + 30 * MS, "call {i} after the load took {:?}", o.latency);
    }
    // Every slot comes back (the server's end of the last call may trail its reply a little).
    let start = Instant::now();
    while admission.stats().running != 0 && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(MS);
    }
    let s = admission.stats();
    assert_eq!((s.running, s.waiting), (0, 0), "{s:?}");
    s
}

#[test]
fn a_call_whose_deadline_is_shorter_than_the_typical_latency_is_refused_at_once() {
    let rt = runtime();
    let env = Environment::new(1);
    let admission = limited(4).build();
    let server = start_server(&env, &rt, admission.clone(), Arc::default());
    let channel = channels(&env, server.port(), 1).remove(0);
    for _ in 0..5 {
        assert_eq!(rt.block_on(call(channel.clone(), 50, Duration::from_secs(5))).code, Code::Ok);
    }
    let typical = admission.typical_latency(0).expect("a typical latency after 5 calls");
    assert!(typical >= 45 * MS && typical < 200 * MS, "typical latency {typical:?}");
    // 20 ms left, the method takes ~50: refused on arrival, not run into DEADLINE_EXCEEDED.
    let o = rt.block_on(call(channel.clone(), 50, 20 * MS));
    assert_eq!(o.code, Code::ResourceExhausted, "{o:?}");
    assert!(o.message.contains("shorter than this method's typical latency"), "{}", o.message);
    assert!(o.latency < 15 * MS, "refused after {:?}", o.latency);
    assert_eq!(admission.stats().deadline_too_short, 1);
    // Enough time left: served.
    assert_eq!(rt.block_on(call(channel, 50, Duration::from_secs(1))).code, Code::Ok);
}

#[test]
fn per_method_limits_do_not_share_a_queue() {
    let rt = runtime();
    let env = Environment::new(1);
    let admission = limited(1).queue_len(0).per_method().build();
    let server = start_server(&env, &rt, admission.clone(), Arc::default());
    let channel = channels(&env, server.port(), 1).remove(0);
    rt.block_on(async {
        let busy = tokio::spawn(call(channel.clone(), 300, Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The unary method's single slot is taken: a second call is refused at once...
        let second = call(channel.clone(), 0, Duration::from_secs(5)).await;
        assert_eq!(second.code, Code::ResourceExhausted, "{second:?}");
        assert!(second.message.contains("admission queue is full"), "{}", second.message);
        // ...while the other method has its own slot.
        let mut stream = channel
            .server_streaming(&SERVER_STREAM, &request("s", 2), CallOptions::new().timeout(Duration::from_secs(5)));
        let mut n = 0;
        while let Some(m) = futures::StreamExt::next(&mut stream).await {
            m.unwrap();
            n += 1;
        }
        assert_eq!(n, 2);
        assert_eq!(busy.await.unwrap().code, Code::Ok);
    });
}

#[test]
fn a_grpcio_client_sees_the_configured_status_and_why() {
    let rt = runtime();
    let env = Environment::new(1);
    let admission = limited(1).queue_len(0).refuse_with(Code::Unavailable).build();
    let server = start_server(&env, &rt, admission.clone(), Arc::default());
    let out = std::process::Command::new(python())
        .arg(format!("{}/tests/peers/python/admission_client.py", env!("CARGO_MANIFEST_DIR")))
        .args([format!("127.0.0.1:{}", server.port()), "6".into(), "500".into()])
        .output()
        .expect("run tests/peers/python/admission_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<(&str, f64, &str)> = stdout
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            (parts.next().unwrap(), parts.next().unwrap().parse().unwrap(), parts.next().unwrap_or(""))
        })
        .collect();
    eprintln!("{stdout}");
    assert_eq!(lines.len(), 6, "{stdout}");
    let ok = lines.iter().filter(|l| l.0 == "OK").count();
    let unavailable: Vec<_> = lines.iter().filter(|l| l.0 == "UNAVAILABLE").collect();
    assert!(ok >= 1 && ok + unavailable.len() == 6, "{stdout}");
    assert!(!unavailable.is_empty(), "{stdout}");
    for (_, ms, details) in &unavailable {
        assert!(details.contains("admission queue is full"), "{details}");
        assert!(*ms < 250.0, "refused after {ms} ms (the handler takes 500)");
    }
    assert_eq!(admission.stats().queue_full as usize, unavailable.len());
}
