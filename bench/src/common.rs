//! What every Rust benchmark binary shares, grpcore's and the peers' alike (the peers
//! include this file with `#[path]`), so that all of them parse the same flags, measure
//! the same way and print the same JSON: command-line flags, the warm-up / measure / stop
//! phases of a closed-loop run, latency samples into an HDR histogram, process CPU time
//! and peak RSS from `getrusage`, and the report.
//!
//! Needs only `std`, `hdrhistogram` and `libc`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// `n` zero bytes for a response body, allocated and then filled, as the C server's
/// `encode_with_payload` does (`grpc_slice_malloc`, then `memset`). Not `vec![0; n]`:
/// that is `calloc`, which in glibc skips the per-thread cache that `malloc` serves small
/// blocks from and costs ~200 more instructions per call (benches/README.md, issue #18
/// target 5). Every Rust server's handler makes its response body with this.
#[allow(clippy::slow_vector_initialization)] // deliberately not calloc: see above
pub fn zeroed_body(n: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(n);
    body.resize(n, 0);
    body
}

/// `--name value` flags, parsed once; every getter removes what it read so that
/// [`Flags::finish`] can reject flags nobody asked for (typos fail loudly).
pub struct Flags {
    program: String,
    values: HashMap<String, String>,
}

impl Flags {
    /// The process's own arguments.
    pub fn from_env() -> Flags {
        let mut args = std::env::args();
        let program = args.next().unwrap_or_default();
        Flags::parse(program, args)
    }

    /// Parses `--name value` and `--name=value` pairs; exits with a message on anything else.
    pub fn parse(program: String, args: impl Iterator<Item = String>) -> Flags {
        let mut values = HashMap::new();
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                die(
                    &program,
                    &format!("unexpected argument {arg:?} (flags are --name value)"),
                );
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => match args.next() {
                    Some(v) => (name.to_string(), v),
                    None => die(&program, &format!("--{name} needs a value")),
                },
            };
            values.insert(name, value);
        }
        Flags { program, values }
    }

    /// The value of `--name`, or `default` when absent.
    pub fn get<T: FromStr>(&mut self, name: &str, default: T) -> T
    where
        T::Err: std::fmt::Display,
    {
        self.opt(name).unwrap_or(default)
    }

    /// The value of `--name`, if given.
    pub fn opt<T: FromStr>(&mut self, name: &str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.values.remove(name)?;
        match raw.parse() {
            Ok(v) => Some(v),
            Err(e) => die(&self.program, &format!("--{name} {raw:?}: {e}")),
        }
    }

    /// Fails on flags that no getter read.
    pub fn finish(self) {
        if let Some(name) = self.values.keys().next() {
            die(&self.program, &format!("unknown flag --{name}"));
        }
    }
}

fn die(program: &str, message: &str) -> ! {
    eprintln!("{program}: {message}");
    std::process::exit(2)
}

/// Which benchmark method a client drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    /// `UnaryCall`: one call per request.
    Unary,
    /// `StreamingCall` ping-pong: one long-lived stream per outstanding slot, one request
    /// then one response, in turn.
    Streaming,
    /// `StreamingFromServer`: one request, then the server streams; a "call" is a message.
    ServerStreaming,
}

impl Rpc {
    /// The name used on the command line and in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::Unary => "unary",
            Rpc::Streaming => "streaming",
            Rpc::ServerStreaming => "server-streaming",
        }
    }
}

impl FromStr for Rpc {
    type Err = String;
    fn from_str(s: &str) -> Result<Rpc, String> {
        match s {
            "unary" => Ok(Rpc::Unary),
            "streaming" | "ping-pong" => Ok(Rpc::Streaming),
            "server-streaming" | "from-server" => Ok(Rpc::ServerStreaming),
            _ => Err("expected unary, streaming or server-streaming".into()),
        }
    }
}

/// The load a client generates: the same flags for every client implementation.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `--target host:port` (default 127.0.0.1:50051).
    pub target: String,
    /// `--rpc unary|streaming|server-streaming` (default unary).
    pub rpc: Rpc,
    /// `--channels C`: separate channels, each with its own connection (default 1).
    pub channels: usize,
    /// `--outstanding M`: calls (or streams) kept in flight per channel (default 1).
    pub outstanding: usize,
    /// `--req-size B`: request payload bytes (default 100).
    pub req_size: usize,
    /// `--resp-size B`: response payload bytes the server is asked for (default 100).
    pub resp_size: usize,
    /// `--warmup-secs S`: calls made before measuring starts (default 1).
    pub warmup_secs: f64,
    /// `--secs S`: how long to measure (default 5), unless `--count` is given.
    pub secs: f64,
    /// `--count N`: measure exactly N calls instead of a duration.
    pub count: Option<u64>,
    /// `--threads T`: completion-queue or runtime threads of the client (default 1).
    pub threads: usize,
}

impl ClientConfig {
    /// Reads the client flags (the caller may read its own before [`Flags::finish`]).
    pub fn from_flags(flags: &mut Flags) -> ClientConfig {
        ClientConfig {
            target: flags.get("target", "127.0.0.1:50051".to_string()),
            rpc: flags.get("rpc", Rpc::Unary),
            channels: flags.get("channels", 1usize).max(1),
            outstanding: flags.get("outstanding", 1usize).max(1),
            req_size: flags.get("req-size", 100usize),
            resp_size: flags.get("resp-size", 100usize),
            warmup_secs: flags.get("warmup-secs", 1.0f64),
            secs: flags.get("secs", 5.0f64),
            count: flags.opt("count"),
            threads: flags.get("threads", 1usize).max(1),
        }
    }
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// The phases of a closed-loop run, shared by all workers. Each worker asks
/// [`Control::next`] before starting a call: `Some(true)` means "start one and record
/// it", `Some(false)` "start one, it is warm-up", `None` "stop".
pub struct Control {
    phase: AtomicU8,
    remaining: AtomicI64,
    counted: bool,
}

impl Control {
    /// A run measuring `count` calls, or a duration when `None`.
    pub fn new(count: Option<u64>) -> Control {
        Control {
            phase: AtomicU8::new(WARMUP),
            remaining: AtomicI64::new(count.map_or(i64::MAX, |c| c.min(i64::MAX as u64) as i64)),
            counted: count.is_some(),
        }
    }

    /// Whether to start another call, and whether it is measured.
    pub fn next(&self) -> Option<bool> {
        match self.phase.load(Ordering::Relaxed) {
            WARMUP => Some(false),
            MEASURE => {
                if self.remaining.fetch_sub(1, Ordering::Relaxed) > 0 {
                    Some(true)
                } else {
                    self.phase.store(STOP, Ordering::Relaxed);
                    None
                }
            }
            _ => None,
        }
    }

    /// Ends the warm-up.
    pub fn start_measuring(&self) {
        self.phase.store(MEASURE, Ordering::Relaxed);
    }

    /// Tells every worker to stop after its current call.
    pub fn stop(&self) {
        self.phase.store(STOP, Ordering::Relaxed);
    }

    /// Whether the run is over (a worker in the middle of a stream checks this).
    pub fn stopped(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == STOP
    }

    /// Whether this run stops after a number of calls (rather than a duration).
    pub fn is_counted(&self) -> bool {
        self.counted
    }
}

/// Drives the phases from the main thread: sleeps through the warm-up, marks the start,
/// and for a timed run stops the workers at the end. Returns the measurement's start time
/// and CPU time at that moment; `wait_workers` must return once every worker has finished.
pub fn run_phases(cfg: &ClientConfig, control: &Control, wait_workers: impl FnOnce()) -> Measured {
    if cfg.warmup_secs > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(cfg.warmup_secs));
    }
    let cpu0 = Usage::now();
    let t0 = Instant::now();
    control.start_measuring();
    if !control.is_counted() {
        std::thread::sleep(Duration::from_secs_f64(cfg.secs));
        control.stop();
    }
    wait_workers();
    let elapsed = t0.elapsed();
    let cpu = Usage::now().cpu_secs - cpu0.cpu_secs;
    Measured {
        elapsed,
        cpu_secs: cpu,
    }
}

/// Wall time and process CPU time of the measured phase.
pub struct Measured {
    /// From the end of warm-up to the last measured call's completion.
    pub elapsed: Duration,
    /// User + system CPU seconds of the whole process over the same span.
    pub cpu_secs: f64,
}

/// Latencies of one worker, in nanoseconds; merged into the histogram at the end so that
/// recording costs one push, not a lock.
#[derive(Default)]
pub struct Samples {
    /// Latency of each measured call.
    pub nanos: Vec<u64>,
    /// Measured calls that failed.
    pub errors: u64,
}

impl Samples {
    /// Records one measured call that took `d`.
    #[inline]
    pub fn record(&mut self, d: Duration) {
        self.nanos.push(d.as_nanos().min(u64::MAX as u128) as u64);
    }
}

/// Process resource usage from `getrusage(RUSAGE_SELF)`.
pub struct Usage {
    /// User + system CPU seconds so far.
    pub cpu_secs: f64,
    /// Peak resident set size in KiB.
    pub max_rss_kib: u64,
}

impl Usage {
    /// The current values.
    pub fn now() -> Usage {
        // SAFETY: getrusage only writes the struct we pass; zeroed is a valid rusage.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut ru);
            ru
        };
        let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        // VmHWM, not ru_maxrss: the latter survives execve, so a client started by a big
        // parent (the compare script's Python) would report the parent's peak.
        let hwm = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            });
        Usage {
            cpu_secs: secs(ru.ru_utime) + secs(ru.ru_stime),
            max_rss_kib: hwm.unwrap_or(ru.ru_maxrss.max(0) as u64),
        }
    }
}

/// Builds the one-line JSON report every client prints on stdout, and a human summary
/// for stderr.
pub fn report(
    implementation: &str,
    cfg: &ClientConfig,
    samples: Vec<Samples>,
    measured: &Measured,
) -> (String, String) {
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1_000, 3_600_000_000_000, 3)
        .expect("histogram bounds are valid");
    let mut calls = 0u64;
    let mut errors = 0u64;
    for s in samples {
        errors += s.errors;
        calls += s.nanos.len() as u64;
        for n in s.nanos {
            hist.saturating_record(n.max(1_000));
        }
    }
    let secs = measured.elapsed.as_secs_f64();
    let qps = if secs > 0.0 { calls as f64 / secs } else { 0.0 };
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    let per_1k = if calls > 0 {
        measured.cpu_secs * 1000.0 / calls as f64
    } else {
        0.0
    };
    let usage = Usage::now();
    let mut json = String::new();
    let _ = write!(
        json,
        "{{\"impl\":\"{implementation}\",\"rpc\":\"{}\",\"target\":\"{}\",\"channels\":{},\"outstanding\":{},\
         \"req_size\":{},\"resp_size\":{},\"threads\":{},\"calls\":{calls},\"errors\":{errors},\"secs\":{secs:.6},\
         \"qps\":{qps:.1},\"latency_us\":{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"p999\":{:.1},\"max\":{:.1}}},\
         \"cpu_secs\":{:.6},\"cpu_secs_per_1k\":{per_1k:.6},\"max_rss_kib\":{}}}",
        cfg.rpc.name(),
        cfg.target,
        cfg.channels,
        cfg.outstanding,
        cfg.req_size,
        cfg.resp_size,
        cfg.threads,
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1e3,
        measured.cpu_secs,
        usage.max_rss_kib,
    );
    let human = format!(
        "{implementation} {} c={} m={} {}B/{}B: {calls} calls in {secs:.2}s = {qps:.0}/s, p50 {:.0}us p99 {:.0}us \
         p99.9 {:.0}us, {per_1k:.4} CPU s per 1k, {errors} errors",
        cfg.rpc.name(),
        cfg.channels,
        cfg.outstanding,
        cfg.req_size,
        cfg.resp_size,
        us(0.5),
        us(0.99),
        us(0.999),
    );
    (json, human)
}

/// Prints the report (JSON on stdout, summary on stderr) and exits non-zero when any
/// measured call failed or none succeeded, so scripts notice a broken peer.
pub fn finish(
    implementation: &str,
    cfg: &ClientConfig,
    samples: Vec<Samples>,
    measured: &Measured,
) -> ! {
    let errors: u64 = samples.iter().map(|s| s.errors).sum();
    let calls: usize = samples.iter().map(|s| s.nanos.len()).sum();
    let (json, human) = report(implementation, cfg, samples, measured);
    println!("{json}");
    eprintln!("{human}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(if errors > 0 || calls == 0 { 1 } else { 0 })
}

/// Servers print this line (and flush) once they accept calls; scripts wait for it.
pub fn announce_port(port: u16) {
    use std::io::Write;
    println!("listening on {port}");
    let _ = std::io::stdout().flush();
}
