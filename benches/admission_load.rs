//! Overload with and without admission control (issue #15): a server whose handlers can
//! serve `WORKERS` calls at once, each taking `HANDLER` (a worker pool: a call waits for
//! a free worker, then sleeps), is offered 10x its capacity from 16 grpcore connections
//! (open loop: calls are started at a fixed rate whatever the replies do), then the load
//! stops and a client probes how soon the server answers normally again.
//!
//! Two runs, each against a fresh server process (so its peak RSS is its own):
//!
//! - **admission**: `grpcore::admission` in front, concurrency = workers, LIFO, a queue
//!   of 4 calls and a 50 ms queue timeout;
//! - **none**: no admission control: every call waits for a worker, however long.
//!
//! Every call has a 5 s deadline (1 s in the smoke test). Prints per run: calls offered, admitted (OK) with p50
//! and p99 latency, refused with p50/p99/max latency and their status codes, deadline
//! failures, the latency of the calls started in each second (the "none" run's grows with
//! its queue), the server's peak RSS (VmHWM), and the recovery time (load stopped → first
//! probe served within handler time + 10 ms).
//!
//! `cargo bench --bench admission_load` runs 20 s per run; under `cargo test` it runs 0.5 s
//! per run as a smoke test (about 5 s in all); `--secs N` picks the length (`cargo test --release --bench
//! admission_load -- --secs 20` avoids a second optimised build of the workspace when
//! one exists).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grpcore::admission::Admission;
use grpcore::{BytesCodec, CallOptions, Channel, ChannelBuilder, Code, Environment, Method, ServerBuilder, ServiceBuilder, Status};

const WORK: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/bench.Load/Work");
const WORKERS: usize = 4;
const HANDLER: Duration = Duration::from_millis(20);
/// Calls per second the workers can serve.
const CAPACITY: u32 = (WORKERS as u32 * 1000) / 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        return serve(args[i + 1] == "admission");
    }
    let secs: f64 = match args.iter().position(|a| a == "--secs") {
        Some(i) => args[i + 1].parse().expect("--secs N"),
        None if args.iter().any(|a| a == "--bench") => 20.0,
        None => 0.5,
    };
    let deadline = Duration::from_secs(if secs >= 5.0 { 5 } else { 1 });
    println!(
        "capacity {CAPACITY} calls/s ({WORKERS} workers x {} ms); offering {} calls/s for {secs} s per run, \
         deadline {deadline:?}",
        HANDLER.as_millis(),
        CAPACITY * 10
    );
    for mode in ["admission", "none"] {
        drive(mode, Duration::from_secs_f64(secs), deadline);
    }
}

/// The server process: serves until its stdin closes, then prints its peak RSS.
fn serve(admission: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let timers = rt.handle().clone();
    let workers = Arc::new(tokio::sync::Semaphore::new(WORKERS));
    let service = ServiceBuilder::new("bench.Load")
        .add_unary(&WORK, move |req: Vec<u8>, ctx| {
            let (timers, workers) = (timers.clone(), workers.clone());
            async move {
                ctx.is_cancelled(); // starts watching for the client's cancellation
                let _worker = workers.acquire_owned().await.unwrap();
                // A call whose client gave up while it waited is not worked on.
                if ctx.is_cancelled() || ctx.time_remaining() == Some(Duration::ZERO) {
                    return Err(Status::new(Code::Cancelled, "gone"));
                }
                let _ = timers.spawn(async { tokio::time::sleep(HANDLER).await }).await;
                Ok::<_, Status>(req)
            }
        })
        .build();
    let env = Environment::new(2);
    let mut builder = ServerBuilder::new(&env);
    let control = Admission::builder(WORKERS as u32).queue_len(4).queue_timeout(Duration::from_millis(50)).build();
    if admission {
        builder = builder.intercept(control.clone());
    }
    let server = builder.register_service(service).bind("127.0.0.1:0").build().unwrap();
    println!("PORT {}", server.port());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).map(|n| n > 0).unwrap_or(false) {}
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string()
    };
    println!("HWM {} RSS {} STATS {:?}", field("VmHWM:"), field("VmRSS:"), admission.then(|| control.stats()));
    std::io::stdout().flush().unwrap();
    drop(server);
}

struct Outcome {
    started: Duration,
    code: Code,
    latency: Duration,
}

async fn call(channel: Channel, deadline: Duration) -> (Code, Duration) {
    let start = Instant::now();
    let result = channel.unary(&WORK, &vec![0u8; 100], CallOptions::new().timeout(deadline)).await;
    (result.map_or_else(|e| e.code(), |_| Code::Ok), start.elapsed())
}

fn pct(sorted: &[Duration], p: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    format!("{:.1}", sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3)
}

fn drive(mode: &str, duration: Duration, deadline: Duration) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve", mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line.trim().strip_prefix("PORT ").expect("PORT line").parse().unwrap();

    let env = Environment::new(2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let channels: Vec<Channel> = (0..16)
        .map(|_| {
            ChannelBuilder::new(&env)
                .raw_int_arg("grpc.use_local_subchannel_pool", 1)
                .connect(&format!("127.0.0.1:{port}"))
                .unwrap()
        })
        .collect();
    rt.block_on(async {
        for c in &channels {
            assert_eq!(call(c.clone(), deadline).await.0, Code::Ok, "warm-up");
        }
    });

    let rate = CAPACITY * 10;
    let n = (duration.as_secs_f64() * rate as f64) as usize;
    let (outcomes, recovery, probes) = rt.block_on(async {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut calls = Vec::with_capacity(n);
        for i in 0..n {
            tick.tick().await;
            let channel = channels[i % channels.len()].clone();
            let started = start.elapsed();
            calls.push(tokio::spawn(async move {
                let (code, latency) = call(channel, deadline).await;
                Outcome { started, code, latency }
            }));
        }
        // The load stops: probe until a call is served at handler speed (bounded).
        let stopped = Instant::now();
        let mut probes = 0;
        let recovery = loop {
            probes += 1;
            let (code, latency) = call(channels[0].clone(), Duration::from_secs(1)).await;
            if code == Code::Ok && latency < HANDLER + Duration::from_millis(10) {
                break Some(stopped.elapsed());
            }
            if stopped.elapsed() > Duration::from_secs(30) {
                break None;
            }
            if code != Code::Ok {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let mut outcomes = Vec::with_capacity(n);
        for c in calls {
            outcomes.push(c.await.unwrap());
        }
        (outcomes, recovery, probes)
    });
    drop(child.stdin.take());
    line.clear();
    out.read_line(&mut line).unwrap();
    let _ = child.wait();

    let mut ok: Vec<Duration> = outcomes.iter().filter(|o| o.code == Code::Ok).map(|o| o.latency).collect();
    ok.sort();
    let mut refused: Vec<Duration> = outcomes
        .iter()
        .filter(|o| matches!(o.code, Code::ResourceExhausted | Code::Unavailable))
        .map(|o| o.latency)
        .collect();
    refused.sort();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        *codes.entry(format!("{:?}", o.code)).or_default() += 1;
    }
    println!("== {mode}: {} calls offered; codes {codes:?}", outcomes.len());
    println!("   admitted {}: p50 {} ms, p99 {} ms, max {} ms", ok.len(), pct(&ok, 0.5), pct(&ok, 0.99), pct(&ok, 1.0));
    let fast = refused.iter().filter(|l| **l < Duration::from_millis(5)).count();
    println!(
        "   refused {}: p50 {} ms, p99 {} ms, max {} ms; {:.2}% under 5 ms",
        refused.len(),
        pct(&refused, 0.5),
        pct(&refused, 0.99),
        pct(&refused, 1.0),
        100.0 * fast as f64 / refused.len().max(1) as f64
    );
    // Latency of the calls started in each second (every outcome), to see it grow.
    let mut by_second: BTreeMap<u64, Vec<Duration>> = BTreeMap::new();
    for o in &outcomes {
        by_second.entry(o.started.as_secs()).or_default().push(o.latency);
    }
    let row: Vec<String> = by_second
        .iter_mut()
        .map(|(s, l)| {
            l.sort();
            format!("{s}s:{}", pct(l, 0.5))
        })
        .collect();
    println!("   p50 latency (ms) of the calls started in each second: {}", row.join(" "));
    let mut first: BTreeMap<u128, Vec<Duration>> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.started < Duration::from_secs(1)) {
        first.entry(o.started.as_millis() / 100).or_default().push(o.latency);
    }
    let row: Vec<String> = first
        .iter_mut()
        .map(|(tenth, l)| {
            l.sort();
            format!("{}ms:{}", tenth * 100, pct(l, 0.5))
        })
        .collect();
    println!("   ... in each 100 ms of the first second: {}", row.join(" "));
    match recovery {
        Some(r) => println!("   recovery: first probe served within handler time + 10 ms {:.1} ms after the load stopped ({probes} probes)", r.as_secs_f64() * 1e3),
        None => println!("   recovery: not within 30 s ({probes} probes)"),
    }
    println!("   server: {}", line.trim());
}
