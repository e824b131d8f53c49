//! The completion-queue executor: spawned futures, cross-thread wake-ups (kicks).

use std::future::Future;
use std::pin::Pin;
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
            while woken < 50 {
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
    let total = futures::executor::block_on(handle).unwrap();
    kicker.join().unwrap();
    assert_eq!(total, 51);
    let polls = polls.lock().unwrap();
    let first = &polls[0];
    assert!(first.starts_with("kick-test-"), "first poll ran on {first}");
    assert!(polls.iter().all(|t| t == first), "every poll ran on the task's own CQ thread: {polls:?}");
}

#[test]
fn wakes_from_many_threads_at_once_neither_lose_nor_duplicate_polls() {
    // Each wake-up after the future parks must lead to exactly one more poll.
    let env = Environment::new(2);
    let (tx, rx) = futures::channel::mpsc::unbounded::<u32>();
    let handle = env.spawn(async move {
        use futures::StreamExt;
        rx.fold(0u64, |acc, x| async move { acc + x as u64 }).await
    });
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..2_500u32 {
                    tx.unbounded_send(i).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(tx);
    let sum = futures::executor::block_on(handle).unwrap();
    assert_eq!(sum, 4 * (0..2_500u64).sum::<u64>());
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
