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
