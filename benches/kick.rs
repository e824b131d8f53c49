//! Cost of a cross-thread wake-up ("kick") of a task on the completion-queue executor:
//! a plain thread and a CQ task play ping-pong through channels, so every round trip is one
//! kick (empty batch on the queue's dummy call) plus one ordinary thread wake-up. The same
//! ping-pong against a plain thread instead of the CQ task is measured in the same run, so
//! the difference is the price of the kick.
//!
//! `cargo bench --bench kick`: 100,000 round trips; under `cargo test`: 1,000.

use std::sync::mpsc;
use std::time::Instant;

use futures::StreamExt;

fn main() {
    let n: usize = if std::env::args().any(|a| a == "--bench") { 100_000 } else { 1_000 };
    let env = grpcore::Environment::new(1);

    // Ping-pong with a CQ task.
    let (to_task, mut task_rx) = futures::channel::mpsc::unbounded::<u32>();
    let (to_main, main_rx) = mpsc::channel::<u32>();
    let handle = env.spawn(async move {
        while let Some(x) = task_rx.next().await {
            to_main.send(x).unwrap();
        }
    });
    let start = Instant::now();
    for i in 0..n as u32 {
        to_task.unbounded_send(i).unwrap();
        assert_eq!(main_rx.recv().unwrap(), i);
    }
    let cq_ns = start.elapsed().as_nanos() as f64 / n as f64;
    drop(to_task);
    futures::executor::block_on(handle).unwrap();

    // The same ping-pong with a plain thread blocking on the channel.
    let (to_thread, mut thread_rx) = futures::channel::mpsc::unbounded::<u32>();
    let (to_main, main_rx) = mpsc::channel::<u32>();
    let t = std::thread::spawn(move || {
        futures::executor::block_on(async {
            while let Some(x) = thread_rx.next().await {
                to_main.send(x).unwrap();
            }
        })
    });
    let start = Instant::now();
    for i in 0..n as u32 {
        to_thread.unbounded_send(i).unwrap();
        assert_eq!(main_rx.recv().unwrap(), i);
    }
    let thread_ns = start.elapsed().as_nanos() as f64 / n as f64;
    drop(to_thread);
    t.join().unwrap();
    println!(
        "kick round trip: CQ task {cq_ns:.0} ns, plain thread (park/unpark) {thread_ns:.0} ns, ratio {:.2}",
        cq_ns / thread_ns
    );
}
