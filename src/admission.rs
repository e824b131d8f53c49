//! Admission control: a queue bounded in length and in time between a call's arrival and
//! its handler, with a limit on how many handlers run at once.
//!
//! [`Admission`] is a [`ServerInterceptor`]. While fewer than `concurrency` handlers run,
//! a call is admitted at once (one compare-and-swap on an atomic word: no lock, no queue).
//! Beyond that it waits in a queue, and is answered without running (with
//! `RESOURCE_EXHAUSTED` by default, or the code given to [`AdmissionBuilder::refuse_with`],
//! and a message that says which of these happened) when:
//!
//! - **the queue is full**: with [`Order::Lifo`] (the default) the *oldest* waiter is
//!   refused to make room for the newcomer; with [`Order::Fifo`] the newcomer is refused;
//! - **it has waited longer than the queue timeout** (shorter while [CoDel](AdmissionBuilder::codel)
//!   judges the queue overloaded);
//! - **its remaining deadline is shorter than the method's typical latency** (a moving
//!   average of its recent handler times), checked on arrival and while it waits: such a
//!   call would most likely fail with `DEADLINE_EXCEEDED` after using a handler slot.
//!
//! The queue is one per server (every method the interceptor sees shares the limit and
//! the queue, the default) or one per method ([`AdmissionBuilder::per_method`]). Add it
//! first, so it is the outermost interceptor: calls it refuses cost the others nothing.
//!
//! # Why LIFO
//!
//! Under sustained overload a FIFO queue serves every call after it has waited the longest
//! time the queue allows: everyone is slow, and many clients have given up by the time
//! their call runs. Serving the newest waiter first keeps the admitted calls fast (they
//! wait about as long as a handler slot takes to free up) while the old ones, whose
//! clients are the most likely to have timed out already, are the ones refused, either by
//! the queue timeout or, when the queue is full, to make room. When the server is not
//! overloaded the queue is nearly always empty and the order does not matter.
//!
//! # Timing
//!
//! Expired waiters are refused on every arrival and every release that finds waiters, and
//! by a small thread (one per `Admission`, started when a call first has to wait) that
//! sleeps until the earliest expiry: without it, when arrivals stop and handlers are slow,
//! a waiter could sit past its timeout until the next handler ends. grpcore's executor has
//! no timers yet; when it has, this thread can go.
//!
//! # Cost
//!
//! Measured with callgrind (`benches/compare --callgrind-only --servers-only`, server,
//! 100-byte unary calls, 100 in flight, 2026-12-04): 52.3k instructions per call with no
//! interceptor, 54.2k with one that does nothing, 56.0k with an `Admission` whose limit is
//! never reached (variant `grpcore-admission`). Of its 1.8k over the empty interceptor,
//! about 0.35k is admission's own work (the method's state by index, one compare-and-swap
//! to admit, one to release, the moving average); the rest is the call's record in its
//! [`Extensions`](crate::Extensions) (a small table allocated and freed per call), which
//! carries the handler slot to the call's end so that it is released however the call ends.
//!
//! # What it cannot see
//!
//! A waiting call whose client cancels stays in the queue until it is admitted (its
//! handler then sees the cancellation at once) or expires: the queue timeout bounds it. The
//! concurrency limit counts handlers, so a long stream holds its slot for as long as it
//! runs; the deadline check applies to unary methods only.
//!
//! ```
//! use std::time::Duration;
//! use grpcore::admission::{Admission, Order};
//! use grpcore::{BytesCodec, CallOptions, ChannelBuilder, Code, Environment, Method};
//! use grpcore::{ServerBuilder, ServiceBuilder, Status};
//!
//! const ECHO: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/demo.Echo/Echo");
//!
//! let env = Environment::new(1);
//! let admission = Admission::builder(8) // 8 handlers at once
//!     .queue_len(32)
//!     .queue_timeout(Duration::from_millis(50))
//!     .order(Order::Lifo)
//!     .refuse_with(Code::Unavailable)
//!     .build();
//! let service = ServiceBuilder::new("demo.Echo")
//!     .add_unary(&ECHO, |req: Vec<u8>, _ctx| async move { Ok::<_, Status>(req) })
//!     .build();
//! let server = ServerBuilder::new(&env)
//!     .intercept(admission.clone()) // first: the outermost interceptor
//!     .register_service(service)
//!     .bind("127.0.0.1:0")
//!     .build()
//!     .unwrap();
//! let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
//! let reply = channel.unary(&ECHO, &b"hi".to_vec(), CallOptions::new()).wait().unwrap();
//! assert_eq!(reply.message(), b"hi");
//! assert_eq!(admission.stats().refused(), 0);
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::interceptor::{CallEnd, ServerCallInfo, ServerInterceptor};
use crate::method::MethodKind;
use crate::status::{Code, Status};

/// Which waiting call a freed handler slot goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    /// The newest waiter first; a full queue refuses its oldest waiter to make room (the
    /// default: see the [module docs](self#why-lifo)).
    #[default]
    Lifo,
    /// The oldest waiter first; a full queue refuses the newcomer.
    Fifo,
}

/// Why a call was answered without running (counted in [`AdmissionStats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// The queue was full (with [`Order::Lifo`], the call was the oldest waiter and made
    /// room for a newer one).
    QueueFull,
    /// The call waited longer than the queue timeout.
    WaitedTooLong,
    /// The call's remaining deadline was shorter than its method's typical latency.
    DeadlineTooShort,
}

/// Counts of what an [`Admission`] did, summed over its queues ([`Admission::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionStats {
    /// Handlers running now.
    pub running: u64,
    /// Calls waiting now.
    pub waiting: u64,
    /// Calls admitted after waiting in the queue (calls admitted at once are not counted:
    /// that path touches one atomic word only).
    pub admitted_after_waiting: u64,
    /// Calls refused because the queue was full.
    pub queue_full: u64,
    /// Calls refused because they waited longer than the queue timeout.
    pub waited_too_long: u64,
    /// Calls refused because their deadline was too short.
    pub deadline_too_short: u64,
}

impl AdmissionStats {
    /// Every refusal, whatever its reason.
    pub fn refused(&self) -> u64 {
        self.queue_full + self.waited_too_long + self.deadline_too_short
    }
}

/// Configures an [`Admission`] (see [`Admission::builder`]).
#[derive(Clone, Debug)]
pub struct AdmissionBuilder {
    concurrency: u32,
    queue_len: usize,
    queue_timeout: Duration,
    order: Order,
    codel: Option<(Duration, Duration)>,
    per_method: bool,
    code: Code,
    deadline_check: bool,
}

impl AdmissionBuilder {
    /// How many calls may wait (default: 4 × the concurrency limit). 0: no queue, a call
    /// beyond the limit is refused at once.
    pub fn queue_len(mut self, len: usize) -> AdmissionBuilder {
        self.queue_len = len;
        self
    }

    /// The longest a call may wait for a handler slot (default 100 ms).
    pub fn queue_timeout(mut self, timeout: Duration) -> AdmissionBuilder {
        self.queue_timeout = timeout;
        self
    }

    /// Which waiter a freed slot goes to (default [`Order::Lifo`]).
    pub fn order(mut self, order: Order) -> AdmissionBuilder {
        self.order = order;
        self
    }

    /// Adaptive queue timeout (CoDel, "controlled delay", as Facebook's servers apply it
    /// to request queues): every `interval`, if the shortest wait of the calls admitted
    /// from the queue during that interval was above `target` (the queue never drained),
    /// the queue is judged overloaded and, until an interval shows otherwise, a call may
    /// wait at most `2 × target` (or the queue timeout, if shorter). A standing queue is
    /// then cut short quickly while bursts that drain still get the full timeout. Typical
    /// values: `target` 5 ms, `interval` 100 ms.
    pub fn codel(mut self, target: Duration, interval: Duration) -> AdmissionBuilder {
        self.codel = Some((target, interval));
        self
    }

    /// One limit and one queue per method, instead of one shared by every method this
    /// interceptor sees.
    pub fn per_method(mut self) -> AdmissionBuilder {
        self.per_method = true;
        self
    }

    /// The status code of a refusal: `RESOURCE_EXHAUSTED` (default) or `UNAVAILABLE`
    /// (which clients with a retry policy retry, and load balancers may treat as a sign to
    /// go elsewhere).
    pub fn refuse_with(mut self, code: Code) -> AdmissionBuilder {
        self.code = code;
        self
    }

    /// Whether a unary call whose remaining deadline is shorter than its method's typical
    /// latency is refused (default true).
    pub fn deadline_check(mut self, check: bool) -> AdmissionBuilder {
        self.deadline_check = check;
        self
    }

    /// The interceptor. Add it to one server ([`ServerBuilder::intercept`](crate::ServerBuilder::intercept))
    /// or to some of its services; keep a clone to read its [`stats`](Admission::stats).
    pub fn build(self) -> Admission {
        let timer = Arc::new(Timer::default());
        let shared = (!self.per_method).then(|| Gate::new(&self, &timer));
        Admission {
            inner: Arc::new(Inner {
                config: self,
                methods: Table::default(),
                shared,
                timer,
            }),
        }
    }
}

/// The admission-control interceptor (see the [module docs](self)). Clones share their
/// state: keep one to read [`stats`](Admission::stats), and add one to a single server.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Admission {
    /// A builder admitting at most `concurrency` running handlers at once (per server, or
    /// per method with [`per_method`](AdmissionBuilder::per_method)).
    ///
    /// # Panics
    /// If `concurrency` is 0 (no call could ever run).
    pub fn builder(concurrency: u32) -> AdmissionBuilder {
        assert!(concurrency > 0, "Admission::builder: the concurrency limit must be at least 1");
        AdmissionBuilder {
            concurrency,
            queue_len: (concurrency as usize).saturating_mul(4),
            queue_timeout: Duration::from_millis(100),
            order: Order::Lifo,
            codel: None,
            per_method: false,
            code: Code::ResourceExhausted,
            deadline_check: true,
        }
    }

    /// What the queues hold now and what they did so far.
    pub fn stats(&self) -> AdmissionStats {
        let mut stats = AdmissionStats::default();
        for gate in self.inner.timer.gates() {
            let word = gate.word.load(Ordering::Relaxed);
            stats.running += word & RUNNING_MASK;
            stats.waiting += word >> 32;
            let c = &gate.counters;
            stats.admitted_after_waiting += c.admitted_after_waiting.load(Ordering::Relaxed);
            stats.queue_full += c.refused[0].load(Ordering::Relaxed);
            stats.waited_too_long += c.refused[1].load(Ordering::Relaxed);
            stats.deadline_too_short += c.refused[2].load(Ordering::Relaxed);
        }
        stats
    }

    /// The typical (moving average) handler time of the method at `index`, as the deadline
    /// check uses it; `None` before its first call ended, or for a method this interceptor
    /// does not see.
    pub fn typical_latency(&self, index: usize) -> Option<Duration> {
        let method = self.inner.methods.get(index)?;
        let typical = method.typical();
        (typical > Duration::ZERO).then_some(typical)
    }

    fn status(&self, refused: Refused) -> Status {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let message = match refused.reason {
            Refusal::QueueFull if refused.waited > Duration::ZERO => format!(
                "server overloaded: the admission queue is full ({} calls may wait) and newer calls go first; \
                 the call was not run (it waited {:.1} ms)",
                self.inner.config.queue_len,
                ms(refused.waited)
            ),
            Refusal::QueueFull => format!(
                "server overloaded: the admission queue is full ({} calls may wait, {} run at once); \
                 the call was not run",
                self.inner.config.queue_len, self.inner.config.concurrency
            ),
            Refusal::WaitedTooLong => format!(
                "server overloaded: the call waited {:.1} ms in the admission queue, longer than its timeout \
                 ({:.1} ms); it was not run",
                ms(refused.waited),
                ms(refused.limit)
            ),
            Refusal::DeadlineTooShort => format!(
                "the call's remaining deadline ({:.1} ms) is shorter than this method's typical latency \
                 ({:.1} ms); it was not run",
                ms(refused.remaining),
                ms(refused.limit)
            ),
        };
        Status::new(self.inner.config.code, message)
    }
}

impl ServerInterceptor for Admission {
    fn on_register(&self, index: usize, _method: &str, kind: MethodKind) {
        let inner = &self.inner;
        let gate = match &inner.shared {
            Some(gate) => gate.clone(),
            None => Gate::new(&inner.config, &inner.timer),
        };
        inner.methods.set(
            index,
            Arc::new(MethodState {
                gate,
                typical_ns: AtomicU64::new(0),
                check_deadline: inner.config.deadline_check && kind == MethodKind::Unary,
                owner: Arc::as_ptr(inner) as usize,
            }),
        );
    }

    async fn on_start(&self, call: &mut ServerCallInfo) -> Result<(), Status> {
        let Some(method) = self.inner.methods.get(call.method_index()) else {
            return Ok(());
        };
        let method = method.clone();
        let gate = &method.gate;
        // The deadline check needs the clock only for calls that have a deadline, of a
        // method whose typical latency is known.
        let mut deadline = None;
        let typical = method.typical();
        if method.check_deadline && typical > Duration::ZERO {
            if let Some(d) = call.deadline() {
                let remaining = d.saturating_duration_since(Instant::now());
                if remaining < typical {
                    gate.counters.refused[Refusal::DeadlineTooShort as usize].fetch_add(1, Ordering::Relaxed);
                    return Err(self.status(Refused {
                        reason: Refusal::DeadlineTooShort,
                        waited: Duration::ZERO,
                        limit: typical,
                        remaining,
                    }));
                }
                deadline = Some(d);
            }
        }
        let waited = if gate.try_admit() {
            Duration::ZERO
        } else {
            match gate.admit_or_queue(deadline, typical) {
                Queued::Admitted => Duration::ZERO,
                Queued::Refused(refused) => return Err(self.status(refused)),
                Queued::Waiting(ticket) => Wait { gate: gate.clone(), ticket: Some(ticket) }
                    .await
                    .map_err(|refused| self.status(refused))?,
            }
        };
        let permit = Permit { method, waited };
        // The slot is released when the call's extensions are dropped, after every
        // `on_end`: however the call ends (a later interceptor's refusal included).
        match call.extensions_mut().get_mut::<Permits>() {
            Some(permits) => permits.more.push(permit),
            None => {
                call.extensions_mut().insert(Permits { first: permit, more: Vec::new() });
            }
        }
        Ok(())
    }

    fn on_end(&self, end: &CallEnd) {
        let Some(permits) = end.extensions().get::<Permits>() else {
            return;
        };
        let me = Arc::as_ptr(&self.inner) as usize;
        let mine = std::iter::once(&permits.first).chain(&permits.more).find(|p| p.method.owner == me);
        if let Some(permit) = mine {
            if end.code() != Code::Cancelled {
                permit.method.observe(end.elapsed().saturating_sub(permit.waited));
            }
        }
    }
}

struct Inner {
    config: AdmissionBuilder,
    methods: Table,
    /// The queue every method shares (unless `per_method`).
    shared: Option<Arc<Gate>>,
    timer: Arc<Timer>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.timer.stop();
    }
}

/// One method as this interceptor sees it.
struct MethodState {
    gate: Arc<Gate>,
    /// Moving average of the handler time, in nanoseconds; 0 before the first sample.
    typical_ns: AtomicU64,
    check_deadline: bool,
    /// Which `Admission` made it (two of them can see the same call).
    owner: usize,
}

impl MethodState {
    fn typical(&self) -> Duration {
        Duration::from_nanos(self.typical_ns.load(Ordering::Relaxed))
    }

    /// Folds one handler time into the moving average (weight 1/8). Concurrent updates
    /// may lose a sample; the average does not need them all.
    fn observe(&self, sample: Duration) {
        let sample = sample.as_nanos().min(u64::MAX as u128) as u64;
        let old = self.typical_ns.load(Ordering::Relaxed);
        let new = if old == 0 { sample } else { old - old / 8 + sample / 8 };
        self.typical_ns.store(new.max(1), Ordering::Relaxed);
    }
}

/// The handler slots a call holds, one per `Admission` that admitted it (usually one).
struct Permits {
    first: Permit,
    more: Vec<Permit>,
}

/// A handler slot, released when dropped.
struct Permit {
    method: Arc<MethodState>,
    /// How long the call waited for it.
    waited: Duration,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.method.gate.release();
    }
}

/// Per-method state found by the method's index without a lock: chunks of 16, 32, 64...
/// slots, each allocated when a method of its range registers.
struct Table {
    chunks: [OnceLock<Chunk>; 27],
}

/// One chunk of [`Table`]: a slot per method index of its range.
type Chunk = Box<[OnceLock<Arc<MethodState>>]>;

impl Default for Table {
    fn default() -> Table {
        Table {
            chunks: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

impl Table {
    const FIRST: usize = 16;

    /// Chunk and offset of index `i`: chunk `c` holds indices `16·(2^c − 1) ..16·(2^(c+1) − 1)`.
    fn locate(i: usize) -> (usize, usize) {
        let j = i.saturating_add(Self::FIRST);
        let chunk = (usize::BITS - 1 - j.leading_zeros()) as usize - 4;
        (chunk, j - (Self::FIRST << chunk))
    }

    fn get(&self, index: usize) -> Option<&Arc<MethodState>> {
        let (chunk, offset) = Self::locate(index);
        self.chunks.get(chunk)?.get()?.get(offset)?.get()
    }

    fn set(&self, index: usize, method: Arc<MethodState>) {
        let (chunk, offset) = Self::locate(index);
        let Some(chunk_slot) = self.chunks.get(chunk) else {
            log::error!("admission: method index {index} is out of range; its calls are not limited");
            return;
        };
        let slots = chunk_slot.get_or_init(|| (0..Self::FIRST << chunk).map(|_| OnceLock::new()).collect());
        if slots[offset].set(method).is_err() {
            log::warn!(
                "admission: method index {index} registered twice (one Admission added to two servers?); \
                 the first registration is kept"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// The queue policy, free of threads and clocks: every operation takes the time it runs at,
// so tests drive it with made-up instants.

/// What happened to a call offered to a full or open queue.
#[derive(Debug, PartialEq, Eq)]
enum Pushed<T> {
    /// It waits.
    Queued,
    /// It waits, and this older waiter was refused to make room (LIFO).
    Evicted(T, Duration),
    /// It was refused (FIFO, or no queue at all).
    Refused(T),
}

struct Waiter<T> {
    item: T,
    arrived: Instant,
    /// When its remaining deadline becomes shorter than the typical latency.
    cutoff: Option<Instant>,
}

/// Controlled delay: judges the queue overloaded when, over a whole interval, no call left
/// it faster than `target`.
#[derive(Debug)]
struct Codel {
    target: Duration,
    interval: Duration,
    window_end: Option<Instant>,
    /// Shortest wait seen in the current interval (0 once the queue drained in it).
    window_min: Option<Duration>,
    overloaded: bool,
}

impl Codel {
    /// Ends the interval if its time has come and judges it.
    fn roll(&mut self, now: Instant, queue_empty: bool) {
        match self.window_end {
            None => self.window_end = Some(now + self.interval),
            Some(end) if now >= end => {
                self.overloaded = match self.window_min {
                    Some(min) => min > self.target,
                    // Nothing left the queue during the interval: still overloaded if calls
                    // wait, not if the queue is empty.
                    None => self.overloaded && !queue_empty,
                };
                self.window_min = None;
                self.window_end = Some(now + self.interval);
            }
            Some(_) => {}
        }
    }

    fn sample(&mut self, wait: Duration) {
        self.window_min = Some(self.window_min.map_or(wait, |m| m.min(wait)));
    }
}

struct Queue<T> {
    waiting: VecDeque<Waiter<T>>,
    capacity: usize,
    timeout: Duration,
    order: Order,
    codel: Option<Codel>,
    /// The earliest `cutoff` of the waiters, or earlier (never later): a scan for deadline
    /// refusals happens only once it has passed.
    earliest_cutoff: Option<Instant>,
}

impl<T> Queue<T> {
    fn new(capacity: usize, timeout: Duration, order: Order, codel: Option<(Duration, Duration)>) -> Queue<T> {
        Queue {
            waiting: VecDeque::new(),
            capacity,
            timeout,
            order,
            codel: codel.map(|(target, interval)| Codel {
                target,
                interval,
                window_end: None,
                window_min: None,
                overloaded: false,
            }),
            earliest_cutoff: None,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.len()
    }

    /// The longest a call may wait now.
    fn timeout(&self) -> Duration {
        match &self.codel {
            Some(c) if c.overloaded => self.timeout.min(c.target.saturating_mul(2)),
            _ => self.timeout,
        }
    }

    fn overloaded(&self) -> bool {
        self.codel.as_ref().is_some_and(|c| c.overloaded)
    }

    fn roll(&mut self, now: Instant) {
        let empty = self.waiting.is_empty();
        if let Some(c) = &mut self.codel {
            c.roll(now, empty);
        }
    }

    /// Offers a call that found every handler slot taken.
    fn push(&mut self, now: Instant, item: T, cutoff: Option<Instant>) -> Pushed<T> {
        self.roll(now);
        if self.capacity == 0 {
            return Pushed::Refused(item);
        }
        let mut outcome = Pushed::Queued;
        if self.waiting.len() >= self.capacity {
            match self.order {
                Order::Fifo => return Pushed::Refused(item),
                Order::Lifo => {
                    let oldest = self.waiting.pop_front().expect("a full queue has a front");
                    outcome = Pushed::Evicted(oldest.item, now.saturating_duration_since(oldest.arrived));
                }
            }
        }
        if let Some(c) = cutoff {
            self.earliest_cutoff = Some(self.earliest_cutoff.map_or(c, |e| e.min(c)));
        }
        self.waiting.push_back(Waiter { item, arrived: now, cutoff });
        outcome
    }

    /// The waiter a freed slot goes to, and how long it waited.
    fn pop(&mut self, now: Instant) -> Option<(T, Duration)> {
        let waiter = match self.order {
            Order::Lifo => self.waiting.pop_back(),
            Order::Fifo => self.waiting.pop_front(),
        }?;
        let waited = now.saturating_duration_since(waiter.arrived);
        self.roll(now);
        let drained = self.waiting.is_empty();
        if let Some(c) = &mut self.codel {
            c.sample(if drained { Duration::ZERO } else { waited });
        }
        Some((waiter.item, waited))
    }

    /// Removes the waiters that must be refused at `now`, oldest first, handing each to
    /// `refuse` with its reason and wait; returns how many.
    fn expire(&mut self, now: Instant, mut refuse: impl FnMut(T, Refusal, Duration)) -> usize {
        self.roll(now);
        let timeout = self.timeout();
        let mut n = 0;
        // Arrival order is queue order (both orders push at the back), so the waiters past
        // the timeout are a prefix.
        while let Some(front) = self.waiting.front() {
            let waited = now.saturating_duration_since(front.arrived);
            if waited < timeout {
                break;
            }
            let waiter = self.waiting.pop_front().expect("front exists");
            refuse(waiter.item, Refusal::WaitedTooLong, waited);
            n += 1;
        }
        if self.earliest_cutoff.is_some_and(|c| c <= now) {
            let mut earliest: Option<Instant> = None;
            let mut i = 0;
            while i < self.waiting.len() {
                match self.waiting[i].cutoff {
                    Some(c) if c <= now => {
                        let waiter = self.waiting.remove(i).expect("index in range");
                        refuse(waiter.item, Refusal::DeadlineTooShort, now.saturating_duration_since(waiter.arrived));
                        n += 1;
                    }
                    cutoff => {
                        if let Some(c) = cutoff {
                            earliest = Some(earliest.map_or(c, |e| e.min(c)));
                        }
                        i += 1;
                    }
                }
            }
            self.earliest_cutoff = earliest;
        }
        n
    }

    /// When [`expire`](Queue::expire) will next have something to do (or CoDel an
    /// interval to judge); `None` when nothing waits.
    fn next_expiry(&self) -> Option<Instant> {
        let front = self.waiting.front()?;
        let mut next = front.arrived + self.timeout();
        if let Some(c) = self.earliest_cutoff {
            next = next.min(c);
        }
        if let Some(end) = self.codel.as_ref().and_then(|c| c.window_end) {
            next = next.min(end);
        }
        Some(next)
    }

    /// Takes a waiter out (its call went away).
    fn remove(&mut self, mut which: impl FnMut(&T) -> bool) -> Option<T> {
        let i = self.waiting.iter().position(|w| which(&w.item))?;
        self.waiting.remove(i).map(|w| w.item)
    }
}

// ---------------------------------------------------------------------------------------
// The gate: the atomic fast path and the queue behind a lock.

/// The word's low half counts running handlers, its high half waiting calls. Invariant:
/// calls wait only while every slot is taken (`waiting > 0` implies `running == limit`), so
/// a call that sees a free slot may take it without looking at the queue, and a release
/// that sees no waiter may give its slot back without the lock.
const RUNNING_MASK: u64 = u32::MAX as u64;
const WAITING_ONE: u64 = 1 << 32;

#[derive(Default)]
struct Counters {
    admitted_after_waiting: AtomicU64,
    /// Indexed by `Refusal as usize`.
    refused: [AtomicU64; 3],
}

struct Gate {
    word: AtomicU64,
    limit: u64,
    queue: Mutex<Queue<Arc<Ticket>>>,
    counters: Counters,
    timer: Arc<Timer>,
}

/// A refusal with what its message reports.
#[derive(Clone, Copy, Debug)]
struct Refused {
    reason: Refusal,
    waited: Duration,
    /// The timeout (waited too long) or the typical latency (deadline too short).
    limit: Duration,
    remaining: Duration,
}

/// One waiting call, shared by the queue and the call's future.
struct Ticket {
    deadline: Option<Instant>,
    typical: Duration,
    state: Mutex<TicketState>,
}

#[derive(Default)]
struct TicketState {
    /// Set once, under the gate's lock: admitted (after waiting so long) or refused.
    outcome: Option<Result<Duration, Refused>>,
    waker: Option<Waker>,
}

enum Queued {
    Admitted,
    Waiting(Arc<Ticket>),
    Refused(Refused),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gate {
    fn new(config: &AdmissionBuilder, timer: &Arc<Timer>) -> Arc<Gate> {
        let gate = Arc::new(Gate {
            word: AtomicU64::new(0),
            limit: u64::from(config.concurrency),
            queue: Mutex::new(Queue::new(config.queue_len, config.queue_timeout, config.order, config.codel)),
            counters: Counters::default(),
            timer: timer.clone(),
        });
        timer.add(&gate);
        gate
    }

    /// Takes a free slot if there is one: the path of every call when not overloaded.
    fn try_admit(&self) -> bool {
        let mut word = self.word.load(Ordering::Relaxed);
        while word & RUNNING_MASK < self.limit {
            match self.word.compare_exchange_weak(word, word + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => word = now,
            }
        }
        false
    }

    /// Gives a slot back, or hands it to a waiter.
    fn release(&self) {
        let mut word = self.word.load(Ordering::Relaxed);
        while word >> 32 == 0 {
            match self.word.compare_exchange_weak(word, word - 1, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => word = now,
            }
        }
        self.release_slow();
    }

    fn release_slow(&self) {
        let mut wake = Vec::new();
        let mut queue = lock(&self.queue);
        let now = Instant::now();
        self.expire_locked(&mut queue, now, &mut wake);
        match queue.pop(now) {
            Some((ticket, waited)) => {
                // The slot passes to the waiter: `running` stays, `waiting` drops.
                self.word.fetch_sub(WAITING_ONE, Ordering::AcqRel);
                self.counters.admitted_after_waiting.fetch_add(1, Ordering::Relaxed);
                wake.extend(ticket.settle(Ok(waited)));
            }
            None => {
                self.word.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let next = queue.next_expiry();
        drop(queue);
        self.after(wake, next);
    }

    /// The slow path of an arrival: under the lock, a slot freed since `try_admit` is
    /// taken, else the call waits (or is refused).
    fn admit_or_queue(&self, deadline: Option<Instant>, typical: Duration) -> Queued {
        let mut wake = Vec::new();
        let mut queue = lock(&self.queue);
        let now = Instant::now();
        self.expire_locked(&mut queue, now, &mut wake);
        let mut word = self.word.load(Ordering::Relaxed);
        let admitted = loop {
            let (next, admitted) = if word & RUNNING_MASK < self.limit {
                (word + 1, true)
            } else {
                (word + WAITING_ONE, false)
            };
            match self.word.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break admitted,
                Err(now) => word = now,
            }
        };
        if admitted {
            drop(queue);
            self.after(wake, None);
            return Queued::Admitted;
        }
        let ticket = Arc::new(Ticket {
            deadline,
            typical,
            state: Mutex::new(TicketState::default()),
        });
        let cutoff = deadline.map(|d| d.checked_sub(typical).unwrap_or(now));
        let outcome = match queue.push(now, ticket.clone(), cutoff) {
            Pushed::Queued => Queued::Waiting(ticket),
            Pushed::Evicted(oldest, waited) => {
                // One in, one out.
                self.word.fetch_sub(WAITING_ONE, Ordering::AcqRel);
                self.counters.refused[Refusal::QueueFull as usize].fetch_add(1, Ordering::Relaxed);
                wake.extend(oldest.settle(Err(Refused {
                    reason: Refusal::QueueFull,
                    waited,
                    limit: Duration::ZERO,
                    remaining: Duration::ZERO,
                })));
                Queued::Waiting(ticket)
            }
            Pushed::Refused(_) => {
                self.word.fetch_sub(WAITING_ONE, Ordering::AcqRel);
                self.counters.refused[Refusal::QueueFull as usize].fetch_add(1, Ordering::Relaxed);
                Queued::Refused(Refused {
                    reason: Refusal::QueueFull,
                    waited: Duration::ZERO,
                    limit: Duration::ZERO,
                    remaining: Duration::ZERO,
                })
            }
        };
        let next = queue.next_expiry();
        drop(queue);
        self.after(wake, next);
        outcome
    }

    /// Refuses the waiters due at `now` (the queue's lock held).
    fn expire_locked(&self, queue: &mut Queue<Arc<Ticket>>, now: Instant, wake: &mut Vec<Waker>) {
        let timeout = queue.timeout();
        let expired = queue.expire(now, |ticket, reason, waited| {
            self.counters.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
            let remaining = ticket.deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
            let limit = if reason == Refusal::DeadlineTooShort { ticket.typical } else { timeout };
            wake.extend(ticket.settle(Err(Refused { reason, waited, limit, remaining })));
        });
        if expired > 0 {
            self.word.fetch_sub(expired as u64 * WAITING_ONE, Ordering::AcqRel);
        }
    }

    /// Refuses the waiters due now (the timer thread's visit); returns the next expiry.
    fn expire_now(&self) -> Option<Instant> {
        let mut wake = Vec::new();
        let mut queue = lock(&self.queue);
        self.expire_locked(&mut queue, Instant::now(), &mut wake);
        let next = queue.next_expiry();
        drop(queue);
        wake.into_iter().for_each(Waker::wake);
        next
    }

    /// Outside the lock: wakes the settled calls, and tells the timer when the queue's
    /// next expiry is.
    fn after(&self, wake: Vec<Waker>, next: Option<Instant>) {
        wake.into_iter().for_each(Waker::wake);
        if let Some(at) = next {
            self.timer.schedule(at);
        }
    }

    /// A waiting call went away (its future was dropped): out of the queue, or, if a slot
    /// was handed to it meanwhile, the slot back.
    fn abandon(&self, ticket: &Arc<Ticket>) {
        let mut queue = lock(&self.queue);
        if queue.remove(|t| Arc::ptr_eq(t, ticket)).is_some() {
            self.word.fetch_sub(WAITING_ONE, Ordering::AcqRel);
            return;
        }
        // Not queued: settled under the lock we hold, so the outcome is there.
        let admitted = matches!(lock(&ticket.state).outcome, Some(Ok(_)));
        drop(queue);
        if admitted {
            self.release();
        }
    }

    fn is_overloaded(&self) -> bool {
        lock(&self.queue).overloaded()
    }
}

impl Ticket {
    /// Records the outcome; returns the waker to wake (after the gate's lock is released).
    fn settle(&self, outcome: Result<Duration, Refused>) -> Option<Waker> {
        let mut state = lock(&self.state);
        state.outcome = Some(outcome);
        state.waker.take()
    }
}

/// A call waiting for a slot.
struct Wait {
    gate: Arc<Gate>,
    /// `None` once the outcome was taken.
    ticket: Option<Arc<Ticket>>,
}

impl Future for Wait {
    type Output = Result<Duration, Refused>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(ticket) = &self.ticket else {
            return Poll::Pending;
        };
        let mut state = lock(&ticket.state);
        match state.outcome {
            Some(outcome) => {
                drop(state);
                self.ticket = None;
                Poll::Ready(outcome)
            }
            None => {
                match &mut state.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.gate.abandon(&ticket);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The timer: one thread per `Admission`, started when a call first waits, sleeping until
// the earliest expiry of its queues.

#[derive(Default)]
struct Timer {
    state: Mutex<TimerState>,
    changed: Condvar,
}

#[derive(Default)]
struct TimerState {
    next: Option<Instant>,
    stop: bool,
    thread: Option<std::thread::JoinHandle<()>>,
    gates: Vec<Weak<Gate>>,
}

impl Timer {
    fn add(&self, gate: &Arc<Gate>) {
        lock(&self.state).gates.push(Arc::downgrade(gate));
    }

    fn gates(&self) -> Vec<Arc<Gate>> {
        lock(&self.state).gates.iter().filter_map(Weak::upgrade).collect()
    }

    /// Makes sure the thread wakes by `at`.
    fn schedule(self: &Arc<Self>, at: Instant) {
        let mut state = lock(&self.state);
        if state.stop || state.next.is_some_and(|n| n <= at) {
            return;
        }
        state.next = Some(at);
        if state.thread.is_none() {
            let timer = self.clone();
            match std::thread::Builder::new()
                .name("grpcore-admission".into())
                .spawn(move || timer.run())
            {
                Ok(handle) => state.thread = Some(handle),
                Err(e) => log::error!(
                    "admission: could not start the queue timer thread ({e}); waiters expire only when \
                     calls arrive or end"
                ),
            }
        }
        drop(state);
        self.changed.notify_one();
    }

    fn run(&self) {
        loop {
            let mut state = lock(&self.state);
            loop {
                if state.stop {
                    return;
                }
                match state.next {
                    None => state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner()),
                    Some(at) => {
                        let now = Instant::now();
                        if now >= at {
                            state.next = None;
                            break;
                        }
                        state = self.changed.wait_timeout(state, at - now).unwrap_or_else(|e| e.into_inner()).0;
                    }
                }
            }
            let gates: Vec<Arc<Gate>> = state.gates.iter().filter_map(Weak::upgrade).collect();
            drop(state);
            let next = gates.iter().filter_map(|g| g.expire_now()).min();
            drop(gates);
            if let Some(at) = next {
                let mut state = lock(&self.state);
                if state.next.map_or(true, |n| at < n) {
                    state.next = Some(at);
                }
            }
        }
    }

    fn stop(&self) {
        let thread = {
            let mut state = lock(&self.state);
            state.stop = true;
            state.thread.take()
        };
        self.changed.notify_one();
        if let Some(thread) = thread {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl Admission {
    /// Whether CoDel judges any of the queues overloaded now (always false without
    /// [`codel`](AdmissionBuilder::codel)).
    pub fn overloaded(&self) -> bool {
        self.inner.timer.gates().iter().any(|g| g.is_overloaded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn drain<T>(q: &mut Queue<T>, now: Instant) -> Vec<T> {
        std::iter::from_fn(|| q.pop(now).map(|(t, _)| t)).collect()
    }

    #[test]
    fn lifo_serves_the_newest_first() {
        let t0 = Instant::now();
        let mut q = Queue::new(10, 100 * MS, Order::Lifo, None);
        for i in 0..4 {
            assert_eq!(q.push(t0 + i * MS, i, None), Pushed::Queued);
        }
        assert_eq!(drain(&mut q, t0 + 5 * MS), vec![3, 2, 1, 0]);
    }

    #[test]
    fn fifo_serves_the_oldest_first() {
        let t0 = Instant::now();
        let mut q = Queue::new(10, 100 * MS, Order::Fifo, None);
        for i in 0..4 {
            assert_eq!(q.push(t0 + i * MS, i, None), Pushed::Queued);
        }
        assert_eq!(drain(&mut q, t0 + 5 * MS), vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_full_lifo_queue_refuses_its_oldest_waiter() {
        let t0 = Instant::now();
        let mut q = Queue::new(2, 100 * MS, Order::Lifo, None);
        q.push(t0, 0, None);
        q.push(t0 + MS, 1, None);
        assert_eq!(q.push(t0 + 3 * MS, 2, None), Pushed::Evicted(0, 3 * MS));
        assert_eq!(q.len(), 2);
        assert_eq!(drain(&mut q, t0 + 4 * MS), vec![2, 1]);
    }

    #[test]
    fn a_full_fifo_queue_refuses_the_newcomer() {
        let t0 = Instant::now();
        let mut q = Queue::new(2, 100 * MS, Order::Fifo, None);
        q.push(t0, 0, None);
        q.push(t0, 1, None);
        assert_eq!(q.push(t0, 2, None), Pushed::Refused(2));
        assert_eq!(drain(&mut q, t0), vec![0, 1]);
        let mut none = Queue::new(0, 100 * MS, Order::Lifo, None);
        assert_eq!(none.push(t0, 7, None), Pushed::Refused(7));
    }

    #[test]
    fn waiters_expire_at_the_timeout_and_not_before() {
        let t0 = Instant::now();
        for order in [Order::Lifo, Order::Fifo] {
            let mut q = Queue::new(10, 10 * MS, order, None);
            q.push(t0, 0, None);
            q.push(t0 + 4 * MS, 1, None);
            q.push(t0 + 8 * MS, 2, None);
            assert_eq!(q.next_expiry(), Some(t0 + 10 * MS));
            let mut refused = Vec::new();
            assert_eq!(q.expire(t0 + 10 * MS - Duration::from_nanos(1), |t, r, w| refused.push((t, r, w))), 0);
            assert_eq!(q.expire(t0 + 14 * MS, |t, r, w| refused.push((t, r, w))), 2);
            assert_eq!(
                refused,
                vec![(0, Refusal::WaitedTooLong, 14 * MS), (1, Refusal::WaitedTooLong, 10 * MS)]
            );
            assert_eq!(q.next_expiry(), Some(t0 + 18 * MS));
            assert_eq!(drain(&mut q, t0 + 15 * MS), vec![2]);
            assert_eq!(q.next_expiry(), None);
        }
    }

    #[test]
    fn waiters_whose_deadline_gets_too_short_are_refused() {
        let t0 = Instant::now();
        let mut q = Queue::new(10, 100 * MS, Order::Lifo, None);
        q.push(t0, 0, Some(t0 + 50 * MS));
        q.push(t0, 1, None);
        q.push(t0, 2, Some(t0 + 20 * MS));
        assert_eq!(q.next_expiry(), Some(t0 + 20 * MS));
        let mut refused = Vec::new();
        assert_eq!(q.expire(t0 + 19 * MS, |t, r, _| refused.push((t, r))), 0);
        assert_eq!(q.expire(t0 + 20 * MS, |t, r, _| refused.push((t, r))), 1);
        assert_eq!(refused, vec![(2, Refusal::DeadlineTooShort)]);
        assert_eq!(q.next_expiry(), Some(t0 + 50 * MS));
        assert_eq!(drain(&mut q, t0 + 21 * MS), vec![1, 0]);
    }

    #[test]
    fn codel_shortens_the_timeout_while_the_queue_stands_and_restores_it_when_it_drains() {
        let t0 = Instant::now();
        let (target, interval) = (5 * MS, 100 * MS);
        let mut q = Queue::new(100, 500 * MS, Order::Fifo, Some((target, interval)));
        assert_eq!(q.timeout(), 500 * MS);
        // A standing queue: every call waits 20 ms, the queue never drains.
        let mut t = t0;
        let mut seq = 0;
        for _ in 0..3 {
            q.push(t, seq, None);
            seq += 1;
        }
        while t < t0 + 250 * MS {
            t += 10 * MS;
            q.push(t, seq, None);
            seq += 1;
            let (_, waited) = q.pop(t).unwrap();
            assert!(waited > target);
        }
        assert!(q.overloaded(), "a queue that never went below the target for an interval is overloaded");
        assert_eq!(q.timeout(), 2 * target);
        // Expiry now uses the short timeout.
        let mut refused = 0;
        q.expire(t, |_, r, _| {
            assert_eq!(r, Refusal::WaitedTooLong);
            refused += 1;
        });
        assert!(refused > 0);
        // The queue drains: after the next whole interval the full timeout is back.
        while q.pop(t).is_some() {}
        t += interval;
        q.push(t, seq, None);
        q.pop(t);
        t += interval;
        q.push(t, seq + 1, None);
        assert!(!q.overloaded());
        assert_eq!(q.timeout(), 500 * MS);
    }

    #[test]
    fn codel_keeps_the_full_timeout_for_a_burst_that_drains() {
        let t0 = Instant::now();
        let mut q = Queue::new(100, 500 * MS, Order::Fifo, Some((5 * MS, 100 * MS)));
        // Bursts of waits up to 50 ms, but the queue empties within every interval.
        for burst in 0..5u32 {
            let start = t0 + burst * 100 * MS;
            for i in 0..5u32 {
                q.push(start + i * MS, i, None);
            }
            for i in 0..5u32 {
                q.pop(start + (10 + 10 * i) * MS);
            }
        }
        assert!(!q.overloaded());
        assert_eq!(q.timeout(), 500 * MS);
    }

    #[test]
    fn table_finds_methods_by_index() {
        for (i, want) in [(0, (0, 0)), (15, (0, 15)), (16, (1, 0)), (47, (1, 31)), (48, (2, 0))] {
            assert_eq!(Table::locate(i), want, "index {i}");
        }
        let admission = Admission::builder(1).per_method().build();
        for i in [0, 3, 16, 100, 5000] {
            admission.on_register(i, "/a.B/C", MethodKind::Unary);
        }
        for i in [0, 3, 16, 100, 5000] {
            assert!(admission.inner.methods.get(i).is_some(), "{i}");
        }
        for i in [1, 17, 99, 4999, usize::MAX] {
            assert!(admission.inner.methods.get(i).is_none(), "{i}");
        }
    }

    fn gate(concurrency: u32, queue_len: usize, timeout: Duration, order: Order) -> (Admission, Arc<Gate>) {
        let admission = Admission::builder(concurrency).queue_len(queue_len).queue_timeout(timeout).order(order).build();
        let gate = admission.inner.shared.clone().unwrap();
        (admission, gate)
    }

    /// Polls a waiting call once, with a waker that counts its wake-ups.
    fn poll(wait: &mut Wait, woken: &Arc<AtomicU64>) -> Poll<Result<Duration, Refused>> {
        struct Count(Arc<AtomicU64>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let waker = Waker::from(Arc::new(Count(woken.clone())));
        Pin::new(wait).poll(&mut Context::from_waker(&waker))
    }

    fn wait_for(gate: &Arc<Gate>) -> Wait {
        match gate.admit_or_queue(None, Duration::ZERO) {
            Queued::Waiting(ticket) => Wait { gate: gate.clone(), ticket: Some(ticket) },
            _ => panic!("expected to wait"),
        }
    }

    #[test]
    fn gate_admits_up_to_the_limit_then_queues_and_hands_slots_over() {
        let (admission, gate) = gate(2, 10, Duration::from_secs(10), Order::Lifo);
        assert!(gate.try_admit());
        assert!(gate.try_admit());
        assert!(!gate.try_admit());
        let woken = Arc::new(AtomicU64::new(0));
        let mut first = wait_for(&gate);
        let mut second = wait_for(&gate);
        assert!(poll(&mut first, &woken).is_pending());
        assert!(poll(&mut second, &woken).is_pending());
        assert_eq!((admission.stats().running, admission.stats().waiting), (2, 2));
        gate.release();
        // LIFO: the second (newer) waiter gets the slot.
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert!(matches!(poll(&mut second, &woken), Poll::Ready(Ok(_))));
        assert!(poll(&mut first, &woken).is_pending());
        assert_eq!((admission.stats().running, admission.stats().waiting), (2, 1));
        // A waiter that goes away leaves the queue; a release then frees the slot.
        drop(first);
        assert_eq!(admission.stats().waiting, 0);
        gate.release();
        gate.release();
        assert_eq!(admission.stats().running, 0);
        assert!(gate.try_admit());
        gate.release();
        assert_eq!(admission.stats().admitted_after_waiting, 1);
    }

    #[test]
    fn a_slot_freed_between_the_fast_path_and_the_lock_is_taken() {
        let (admission, gate) = gate(1, 10, Duration::from_secs(10), Order::Lifo);
        assert!(gate.try_admit());
        assert!(!gate.try_admit());
        gate.release(); // the handler ends just before the arrival takes the queue's lock
        assert!(matches!(gate.admit_or_queue(None, Duration::ZERO), Queued::Admitted));
        assert_eq!((admission.stats().running, admission.stats().waiting), (1, 0));
        gate.release();
    }

    #[test]
    fn a_full_gate_refuses_its_oldest_waiter_and_keeps_count() {
        let (admission, gate) = gate(1, 2, Duration::from_secs(10), Order::Lifo);
        assert!(gate.try_admit());
        let woken = Arc::new(AtomicU64::new(0));
        let mut waiters: Vec<Wait> = (0..4).map(|_| wait_for(&gate)).collect();
        // The two oldest made room for the two newest.
        let refused: Vec<bool> = waiters
            .iter_mut()
            .map(|w| matches!(poll(w, &woken), Poll::Ready(Err(Refused { reason: Refusal::QueueFull, .. }))))
            .collect();
        assert_eq!(refused, [true, true, false, false]);
        let stats = admission.stats();
        assert_eq!((stats.running, stats.waiting, stats.queue_full), (1, 2, 2));
        gate.release();
        assert!(matches!(poll(&mut waiters[3], &woken), Poll::Ready(Ok(_))));
        gate.release();
        assert!(matches!(poll(&mut waiters[2], &woken), Poll::Ready(Ok(_))));
        gate.release();
        assert_eq!((admission.stats().running, admission.stats().waiting), (0, 0));
    }

    #[test]
    fn a_slot_handed_to_a_waiter_that_went_away_is_given_back() {
        let (admission, gate) = gate(1, 10, Duration::from_secs(10), Order::Fifo);
        assert!(gate.try_admit());
        let woken = Arc::new(AtomicU64::new(0));
        let mut waiter = wait_for(&gate);
        let mut next = wait_for(&gate);
        assert!(poll(&mut waiter, &woken).is_pending());
        assert!(poll(&mut next, &woken).is_pending());
        gate.release();
        drop(waiter); // admitted but never polled again: its slot goes to the next waiter
        assert!(matches!(poll(&mut next, &woken), Poll::Ready(Ok(_))));
        assert_eq!((admission.stats().running, admission.stats().waiting), (1, 0));
        let mut last = wait_for(&gate);
        assert!(poll(&mut last, &woken).is_pending());
        gate.release();
        drop(last);
        assert_eq!((admission.stats().running, admission.stats().waiting), (0, 0));
    }

    #[test]
    fn the_timer_refuses_a_waiter_when_nothing_else_happens() {
        let timeout = 20 * MS;
        let (admission, gate) = gate(1, 10, timeout, Order::Lifo);
        assert!(gate.try_admit());
        let woken = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut waiter = wait_for(&gate);
        assert!(poll(&mut waiter, &woken).is_pending());
        // No arrival, no release: only the timer thread can refuse it.
        while woken.load(Ordering::SeqCst) == 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_micros(200));
        }
        let late = start.elapsed().saturating_sub(timeout);
        match poll(&mut waiter, &woken) {
            Poll::Ready(Err(r)) => assert_eq!(r.reason, Refusal::WaitedTooLong),
            other => panic!("not refused: {:?}", other.map(|r| r.map_err(|r| r.reason))),
        }
        assert!(late < 10 * MS, "refused {late:?} after its timeout");
        assert_eq!(admission.stats().waited_too_long, 1);
        gate.release();
    }

    #[test]
    fn arrivals_and_releases_expire_waiters_too() {
        let timeout = 5 * MS;
        let (admission, gate) = gate(1, 10, timeout, Order::Fifo);
        admission.inner.timer.stop(); // no timer: only the lazy expiry
        assert!(gate.try_admit());
        let woken = Arc::new(AtomicU64::new(0));
        let mut old = wait_for(&gate);
        assert!(poll(&mut old, &woken).is_pending());
        std::thread::sleep(2 * timeout);
        let mut new = wait_for(&gate); // this arrival refuses the expired waiter
        assert!(matches!(poll(&mut old, &woken), Poll::Ready(Err(Refused { reason: Refusal::WaitedTooLong, .. }))));
        std::thread::sleep(2 * timeout);
        gate.release(); // this release finds the new waiter expired: the slot is freed
        assert!(matches!(poll(&mut new, &woken), Poll::Ready(Err(Refused { reason: Refusal::WaitedTooLong, .. }))));
        assert_eq!((admission.stats().running, admission.stats().waiting), (0, 0));
    }

    #[test]
    fn many_threads_never_exceed_the_limit_and_every_slot_comes_back() {
        let (admission, gate) = gate(3, 1000, Duration::from_secs(10), Order::Lifo);
        let running = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gate, running) = (gate.clone(), running.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        let admitted = gate.try_admit()
                            || match gate.admit_or_queue(None, Duration::ZERO) {
                                Queued::Admitted => true,
                                Queued::Waiting(ticket) => {
                                    let wait = Wait { gate: gate.clone(), ticket: Some(ticket) };
                                    futures_executor::block_on(wait).is_ok()
                                }
                                Queued::Refused(_) => false,
                            };
                        if admitted {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 3, "{now} handlers at once");
                            running.fetch_sub(1, Ordering::SeqCst);
                            gate.release();
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let stats = admission.stats();
        assert_eq!((stats.running, stats.waiting, stats.refused()), (0, 0, 0));
    }

    #[test]
    fn the_typical_latency_is_a_moving_average() {
        let admission = Admission::builder(1).build();
        admission.on_register(0, "/a.B/C", MethodKind::Unary);
        assert_eq!(admission.typical_latency(0), None);
        let method = admission.inner.methods.get(0).unwrap();
        method.observe(80 * MS);
        assert_eq!(admission.typical_latency(0), Some(80 * MS));
        method.observe(Duration::ZERO);
        assert_eq!(admission.typical_latency(0), Some(70 * MS));
    }
}
