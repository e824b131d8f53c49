//! Timers that need no runtime: [`sleep`], [`sleep_until`] and [`timeout`], for handlers on
//! the completion-queue executor (where `tokio::time::sleep` has no reactor) and for any
//! other task or thread.
//!
//! One thread serves every timer of the process: it sleeps until the earliest deadline,
//! wakes the tasks whose time has come, and ends after a second with nothing to wait for
//! (the next timer starts it again). A timer costs one heap entry, never a thread.
//!
//! ```
//! use std::time::Duration;
//! # let env = grpcore::Environment::new(1);
//! let waited = futures_executor::block_on(env.spawn(async {
//!     let start = std::time::Instant::now();
//!     grpcore::timer::sleep(Duration::from_millis(20)).await;
//!     start.elapsed()
//! }))
//! .unwrap();
//! assert!(waited >= Duration::from_millis(20));
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long the timer thread waits with no timer before it ends.
const IDLE: Duration = Duration::from_secs(1);

/// A future that completes at a deadline (see [`sleep`]).
#[must_use = "a timer does nothing unless awaited"]
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    /// Shared with the timer thread once registered.
    entry: Option<Arc<Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    // A duration too long for an `Instant` waits "forever" (about a century).
    let deadline = Instant::now().checked_add(duration).unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));
    sleep_until(deadline)
}

/// Completes at `deadline` (at once if it has passed).
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, entry: None }
}

impl Sleep {
    /// When it completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(entry) = &this.entry {
            if entry.fired.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            let mut waker = lock(&entry.waker);
            // Checked again under the lock the timer thread takes to wake: no wake-up lost.
            if entry.fired.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            match &mut *waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        if Instant::now() >= this.deadline {
            return Poll::Ready(());
        }
        let entry = Arc::new(Entry { fired: AtomicBool::new(false), waker: Mutex::new(Some(cx.waker().clone())) });
        timers().add(this.deadline, &entry);
        this.entry = Some(entry);
        Poll::Pending
    }
}

/// Runs `future` for at most `duration`: its output, or [`Elapsed`] if the time ran out
/// first (the future is then dropped).
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = std::pin::pin!(future);
    let mut timer = sleep(duration);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut timer).poll(cx).map(|()| Err(Elapsed(())))
    })
    .await
}

/// The time given to [`timeout`] ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed(());

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the time ran out")
    }
}

impl std::error::Error for Elapsed {}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The deadlines waited for, earliest first.
struct Timers {
    state: Mutex<Queue>,
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    /// Deadline, sequence number (a total order among equal deadlines), the entry (weak: a
    /// dropped `Sleep` is simply skipped when its time comes).
    heap: BinaryHeap<Reverse<(Instant, u64, WeakEntry)>>,
    next: u64,
    /// A thread is serving the queue.
    running: bool,
}

/// A weak entry, ordered by nothing (the deadline and sequence number order the heap).
struct WeakEntry(Weak<Entry>);

impl PartialEq for WeakEntry {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for WeakEntry {}
impl PartialOrd for WeakEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for WeakEntry {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

fn timers() -> &'static Timers {
    static TIMERS: OnceLock<Timers> = OnceLock::new();
    TIMERS.get_or_init(|| Timers { state: Mutex::new(Queue::default()), changed: Condvar::new() })
}

impl Timers {
    fn add(&'static self, deadline: Instant, entry: &Arc<Entry>) {
        let mut queue = lock(&self.state);
        let earliest = queue.heap.peek().map_or(true, |Reverse((first, _, _))| deadline < *first);
        let seq = queue.next;
        queue.next += 1;
        queue.heap.push(Reverse((deadline, seq, WeakEntry(Arc::downgrade(entry)))));
        if !queue.running {
            queue.running = true;
            let started = std::thread::Builder::new().name("grpcore-timer".into()).spawn(move || self.serve());
            if let Err(e) = started {
                // No thread: the timer cannot fire. Leave `running` false for the next try.
                queue.running = false;
                log::error!("cannot start the timer thread: {e}");
            }
        } else if earliest {
            self.changed.notify_one();
        }
    }

    /// The timer thread: fires what is due, sleeps until the next deadline, ends when idle.
    fn serve(&self) {
        let mut queue = lock(&self.state);
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(Reverse((deadline, _, _))) = queue.heap.peek() {
                if *deadline > now {
                    break;
                }
                let Some(Reverse((_, _, WeakEntry(entry)))) = queue.heap.pop() else { break };
                if let Some(entry) = entry.upgrade() {
                    due.push(entry);
                }
            }
            if !due.is_empty() {
                // Wake outside the queue's lock: a waker may run code that adds a timer.
                drop(queue);
                for entry in due {
                    let waker = {
                        let mut slot = lock(&entry.waker);
                        entry.fired.store(true, Ordering::Release);
                        slot.take()
                    };
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
                queue = lock(&self.state);
                continue;
            }
            let wait = match queue.heap.peek() {
                Some(Reverse((deadline, _, _))) => deadline.saturating_duration_since(now),
                None => IDLE,
            };
            let (next, result) = self.changed.wait_timeout(queue, wait).unwrap_or_else(PoisonError::into_inner);
            queue = next;
            if result.timed_out() && queue.heap.is_empty() {
                queue.running = false;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_complete_in_deadline_order_and_not_before() {
        let start = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = [60u64, 20, 40, 0]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                std::thread::spawn(move || {
                    futures_executor::block_on(sleep(Duration::from_millis(ms)));
                    assert!(start.elapsed() >= Duration::from_millis(ms));
                    lock(&order).push(ms);
                })
            })
            .collect();
        tasks.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*lock(&order), vec![0, 20, 40, 60]);
    }

    #[test]
    fn timeout_gives_the_output_or_elapsed() {
        let quick = futures_executor::block_on(timeout(Duration::from_secs(5), async { 7 }));
        assert_eq!(quick, Ok(7));
        let slow = futures_executor::block_on(timeout(Duration::from_millis(10), std::future::pending::<()>()));
        assert_eq!(slow, Err(Elapsed(())));
    }

    #[test]
    fn a_dropped_sleep_is_skipped_and_the_thread_ends_when_idle() {
        let mut early = sleep(Duration::from_millis(10));
        let waker = futures_util::task::noop_waker();
        assert!(Pin::new(&mut early).poll(&mut Context::from_waker(&waker)).is_pending());
        drop(early);
        futures_executor::block_on(sleep(Duration::from_millis(30)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&timers().state).running {
            assert!(Instant::now() < deadline, "the timer thread did not end when idle");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
