//! The completion-queue executor: spawned futures, cross-thread wake-ups (kicks).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use grpcore::{EnvBuilder, Environment};

/// A future that records the thread of every poll and finishes after `wakes` external wake-ups.
struct Recorder {
    polls: Arc<Mutex<Vec<String>>>,
    waker: Arc<Mutex<Option<Waker>>>,
    remaining: usize,
}

impl Future for Recorder {
    type Output = usize;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        self.polls.lock().unwrap().push(name);
        if self.remaining == 0 {
            return Poll::Ready(self.polls.lock().unwrap().len());
        }
        self.remaining -= 1;
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[test]
fn a_future_woken_from_a_plain_thread_is_polled_again_on_its_cq_thread() {
    let env = EnvBuilder::new().cq_count(2).name_prefix("kick-test").build();
    let polls = Arc::new(Mutex::new(Vec::new()));
    let waker = Arc::new(Mutex::new(None::<Waker>));
    let handle = env.spawn(Recorder {
        polls: polls.clone(),
        waker: waker.clone(),
        remaining: 50,
    });
    let w = waker.clone();
    let p = polls.clone();
    let kicker = std::thread::Builder::new()
        .name("plain-thread".into())
        .spawn(move || {
            let mut woken = 0;
            // Also stop once the task has finished (51 polls), whatever the wakes.
            while woken < 50 && p.lock().unwrap().len() <= 50 {
                let seen = p.lock().unwrap().len();
                if seen > woken {
                    // The task parked again after poll number `seen`: wake it from here.
                    if let Some(waker) = w.lock().unwrap().take() {
                        waker.wake();
                        woken += 1;
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
        .unwrap();
    let seen = polls.clone();
    let total = wait_bounded(handle, Duration::from_secs(60), move || {
        format!("a lost wake-up after {} polls", seen.lock().unwrap().len())
    })
    .unwrap();
    kicker.join().unwrap();
    assert_eq!(total, 51);
    let polls = polls.lock().unwrap();
    let first = &polls[0];
    assert!(first.starts_with("kick-test-"), "first poll ran on {first}");
    assert!(polls.iter().all(|t| t == first), "every poll ran on the task's own CQ thread: {polls:?}");
}

/// What [`Counted`] and the threads that wake it share.
#[derive(Default)]
struct Shared {
    /// The waker of the latest `Pending` poll, until one thread takes it to wake it.
    slot: Mutex<Option<Waker>>,
    /// Set (before the wake) by the thread that took the waker, cleared by the next poll.
    woken: AtomicBool,
    wakes: AtomicUsize,
    polls: AtomicUsize,
    /// Polls that no wake asked for (a duplicate poll).
    unasked: AtomicUsize,
}

/// A future that parks until woken `target` times, each wake taken by exactly one thread.
struct Counted {
    shared: Arc<Shared>,
    target: usize,
}

impl Future for Counted {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let s = &self.shared;
        let n = s.polls.fetch_add(1, Ordering::SeqCst) + 1;
        if n > 1 && !s.woken.swap(false, Ordering::SeqCst) {
            s.unasked.fetch_add(1, Ordering::SeqCst);
        }
        if s.wakes.load(Ordering::SeqCst) >= self.target {
            return Poll::Ready(());
        }
        *s.slot.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Waits for `handle`, failing (instead of hanging) when it has not finished within `limit`.
fn wait_bounded<T: Send + 'static>(
    handle: impl Future<Output = T> + Send + 'static,
    limit: Duration,
    what: impl FnOnce() -> String,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(futures::executor::block_on(handle));
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("not finished after {limit:?}: {}", what()))
}

#[test]
fn wakes_from_many_threads_at_once_neither_lose_nor_duplicate_polls() {
    // Four plain threads race to take the parked task's waker; whichever takes it wakes
    // it (a kick). Each wake must lead to exactly one more poll: a lost wake-up leaves
    // the task parked (caught by the time bound), a duplicate shows as a poll no wake
    // asked for.
    const WAKES: usize = 10_000;
    let env = Environment::new(2);
    let shared = Arc::new(Shared::default());
    let handle = env.spawn(Counted { shared: shared.clone(), target: WAKES });
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = shared.clone();
            std::thread::spawn(move || {
                while s.wakes.load(Ordering::SeqCst) < WAKES {
                    let taken = s.slot.lock().unwrap().take();
                    match taken {
                        Some(waker) => {
                            s.woken.store(true, Ordering::SeqCst);
                            s.wakes.fetch_add(1, Ordering::SeqCst);
                            waker.wake();
                        }
                        None => std::thread::yield_now(),
                    }
                }
            })
        })
        .collect();
    let s = shared.clone();
    let counts = move || {
        format!("{} wakes, {} polls", s.wakes.load(Ordering::SeqCst), s.polls.load(Ordering::SeqCst))
    };
    let c = counts.clone();
    wait_bounded(handle, Duration::from_secs(60), move || format!("a lost wake-up: {}", c()))
        .unwrap_or_else(|e| panic!("the task ended unfinished (lost wake-up?): {e}; {}", counts()));
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(shared.wakes.load(Ordering::SeqCst), WAKES);
    assert_eq!(shared.unasked.load(Ordering::SeqCst), 0, "polls that no wake asked for");
    assert_eq!(shared.polls.load(Ordering::SeqCst), WAKES + 1, "one poll per wake, plus the first");
}

#[test]
fn spawned_futures_complete_under_tokio_and_block_on() {
    let env = Environment::new(1);
    assert_eq!(futures::executor::block_on(env.spawn(async { 1 + 1 })).unwrap(), 2);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(rt.block_on(env.spawn(async { "tokio" })).unwrap(), "tokio");
}

#[test]
fn a_panicking_task_reports_internal_and_the_queue_keeps_running() {
    let env = Environment::new(1);
    let err = futures::executor::block_on(env.spawn(async { panic!("boom") })).unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
    assert_eq!(futures::executor::block_on(env.spawn(async { 5 })).unwrap(), 5);
}

#[test]
fn tasks_spawned_on_the_queue_thread_run_in_order_past_the_drain_budget() {
    // 1,000 tasks spawned from a task on the queue's own thread all go to its local run
    // queue (more than one drain's budget of 256): each runs exactly once, in spawn order.
    let env = Environment::new(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let (env2, order2) = (env.clone(), order.clone());
    let joins = futures::executor::block_on(env.spawn(async move {
        (0..1000)
            .map(|i| {
                let order = order2.clone();
                env2.spawn(async move { order.lock().unwrap().push(i) })
            })
            .collect::<Vec<_>>()
    }))
    .unwrap();
    for j in joins {
        futures::executor::block_on(j).unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..1000).collect::<Vec<_>>());
}

/// A future that never completes and whose `Drop` panics (defect 7 of issue #12). It counts
/// its drops and, on its first poll, hands its waker to `waker_out` when it has one.
struct PendingPanicsOnDrop {
    dropped: Arc<std::sync::atomic::AtomicUsize>,
    waker_out: Option<std::sync::mpsc::Sender<Waker>>,
}

impl Future for PendingPanicsOnDrop {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(out) = self.waker_out.take() {
            out.send(cx.waker().clone()).unwrap();
        }
        Poll::Pending
    }
}

impl Drop for PendingPanicsOnDrop {
    fn drop(&mut self) {
        self.dropped
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        panic!("PendingPanicsOnDrop dropped");
    }
}

#[test]
fn waking_a_task_after_shutdown_drops_its_future_without_unwinding_into_the_waker() {
    // The task parks with its waker held here; once the environment is gone, the wake-up
    // cannot be posted, so the executor cancels the task and drops its future, whose Drop
    // panics. That panic must stay inside the executor, not unwind out of `wake`.
    let env = Environment::new(1);
    let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (waker_tx, waker_rx) = std::sync::mpsc::channel();
    let handle = env.spawn(PendingPanicsOnDrop {
        dropped: dropped.clone(),
        waker_out: Some(waker_tx),
    });
    let waker = waker_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    drop(env); // the last handle: joins the queue thread
    let woke = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake_by_ref()));
    assert!(
        woke.is_ok(),
        "the future's Drop panic unwound out of Waker::wake"
    );
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 1);
    let err = futures::executor::block_on(handle).unwrap_err();
    assert!(err.to_string().contains("shut down"), "{err}");
    waker.wake(); // the task is done: later wake-ups are ignored
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Set in the child process of the test below.
const SHUTDOWN_CHILD: &str = "GRPCORE_TEST_SHUTDOWN_PANICKING_DROPS_CHILD";

#[test]
fn pending_futures_whose_drop_panics_neither_abort_nor_kill_the_queue_thread_at_shutdown() {
    // Runs in a child process: on failure the process aborts, which would take the other
    // tests of this binary with it.
    if std::env::var_os(SHUTDOWN_CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pending_futures_whose_drop_panics_neither_abort_nor_kill_the_queue_thread_at_shutdown",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SHUTDOWN_CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "child failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
        assert!(
            stdout.contains("1 passed"),
            "the child ran no test:\n{stdout}"
        );
        return;
    }
    // 300 of these dropped (one drain's budget is 256): silence 300 panic messages.
    std::panic::set_hook(Box::new(|_| {}));
    const TASKS: usize = 300;
    let env = EnvBuilder::new()
        .cq_count(1)
        .name_prefix("defect7-cq")
        .build();
    let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (go_tx, go_rx) = futures::channel::oneshot::channel::<()>();
    let (env2, dropped2) = (env.clone(), dropped.clone());
    // On the queue thread, once the main thread has dropped its handle: spawn the pending
    // tasks onto the local run queue, then drop the last environment handle, which begins
    // the shutdown. The drain that follows polls 256 of them (each is dropped right after
    // its poll: nobody keeps its waker); the 44 left are cancelled when the queue's
    // shutdown event arrives.
    let spawner = env.spawn(async move {
        go_rx.await.unwrap();
        let handles: Vec<_> = (0..TASKS)
            .map(|_| {
                env2.spawn(PendingPanicsOnDrop {
                    dropped: dropped2.clone(),
                    waker_out: None,
                })
            })
            .collect();
        drop(env2);
        handles
    });
    drop(env);
    go_tx.send(()).unwrap();
    let handles = futures::executor::block_on(spawner).unwrap();
    for h in handles {
        let err = futures::executor::block_on(h).unwrap_err();
        assert!(err.to_string().contains("shut down"), "{err}");
    }
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), TASKS);
    // The queue thread and the thread that finishes the environment's drop both end (seen
    // through /proc: Linux only).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cfg!(target_os = "linux") {
        let names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim().to_string())
            .filter(|n| n.starts_with("defect7-cq") || n.starts_with("grpcore-env-dr"))
            .collect();
        if names.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "threads still running: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A future that counts its polls, hands its first waker to `waker_out` when it has one,
/// and finishes on its first poll when `finish`, else stays pending.
struct Probe {
    polls: Arc<AtomicUsize>,
    waker_out: Option<Arc<Mutex<Option<Waker>>>>,
    finish: bool,
}

impl Future for Probe {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        if let Some(out) = self.waker_out.take() {
            *out.lock().unwrap() = Some(cx.waker().clone());
        }
        if self.finish { Poll::Ready(()) } else { Poll::Pending }
    }
}

/// Pending once (waking itself), then ready: lets the tasks queued before it run.
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

#[test]
fn a_waker_kept_past_its_task_never_polls_the_next_task_of_the_same_type() {
    // A queue thread reuses a finished task's memory for the next task of the same future
    // type (issue #18 target 5), but only when nothing references the finished task. Here
    // a waker of the finished task is kept and woken after the next task of its type has
    // started: that must not poll the new task (it would, were the memory reused).
    let env = Environment::new(1);
    let (a_polls, b_polls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stale = Arc::new(Mutex::new(None::<Waker>));
    let (env2, a2, b2, stale2) = (env.clone(), a_polls.clone(), b_polls.clone(), stale.clone());
    let outer = env.spawn(async move {
        env2.spawn(Probe { polls: a2, waker_out: Some(stale2.clone()), finish: true }).await.unwrap();
        let _b = env2.spawn(Probe { polls: b2.clone(), waker_out: None, finish: false });
        yield_now().await; // the new task's first poll
        assert_eq!(b2.load(Ordering::SeqCst), 1, "the new task ran once");
        stale2.lock().unwrap().take().expect("the first task's waker").wake();
        for _ in 0..4 {
            yield_now().await;
        }
        b2.load(Ordering::SeqCst)
    });
    let b_after = wait_bounded(outer, Duration::from_secs(10), || "the probes".into()).unwrap();
    assert_eq!(a_polls.load(Ordering::SeqCst), 1);
    assert_eq!(b_after, 1, "the stale waker of a finished task polled the next task of its type");
}
