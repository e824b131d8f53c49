//! The shutdown gate of a completion queue: a borrow counter with a shutdown bit. Pure logic
//! over one atomic word, no FFI, so the loom model below checks it under every interleaving
//! (see [`crate::sync`]).
//!
//! Starting an operation on a core queue that is shutting down is a fatal assertion in the
//! core, so every start holds a borrow. The guarantees, which the model checks:
//! - no borrow succeeds once shutdown has begun, so no operation starts after the core's
//!   `grpc_completion_queue_shutdown`, and every start happens before it;
//! - exactly one caller is told to shut the core queue down: whoever releases the last
//!   borrow after shutdown began, or [`ShutdownGate::begin_shutdown`] itself if none is out
//!   (calling it again never repeats the order).

use crate::sync::{AtomicUsize, Ordering};

/// Set in the word once shutdown has begun; the bits below count the borrows.
const SHUTDOWN: usize = 1 << (usize::BITS - 1);

/// A borrow counter with a shutdown bit.
pub(crate) struct ShutdownGate(AtomicUsize);

impl ShutdownGate {
    /// An open gate with no borrow out.
    pub(crate) fn new() -> ShutdownGate {
        ShutdownGate(AtomicUsize::new(0))
    }

    /// Takes a borrow; false once shutdown has begun.
    pub(crate) fn try_borrow(&self) -> bool {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            if cur & SHUTDOWN != 0 {
                return false;
            }
            match self
                .0
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Returns a borrow: true when the caller must shut the core queue down now (shutdown
    /// has begun and this was the last borrow).
    pub(crate) fn release(&self) -> bool {
        self.0.fetch_sub(1, Ordering::AcqRel) == SHUTDOWN | 1
    }

    /// Refuses borrows from now on: true when the caller must shut the core queue down now
    /// (no borrow is out, and shutdown had not begun before).
    pub(crate) fn begin_shutdown(&self) -> bool {
        self.0.fetch_or(SHUTDOWN, Ordering::AcqRel) == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_last_release_after_shutdown_shuts_down_once() {
        let g = ShutdownGate::new();
        assert!(g.try_borrow());
        assert!(g.try_borrow());
        assert!(
            !g.begin_shutdown(),
            "borrows are out: the last release shuts down"
        );
        assert!(!g.try_borrow(), "no borrow after shutdown began");
        assert!(!g.release());
        assert!(g.release(), "the last borrow shuts down");
        assert!(!g.begin_shutdown(), "never twice");
        let idle = ShutdownGate::new();
        assert!(idle.begin_shutdown(), "no borrow out: shut down at once");
        assert!(!idle.begin_shutdown());
    }
}

/// loom model: `RUSTFLAGS="--cfg loom -C debug-assertions" cargo test -p grpcore --lib --release loom`.
#[cfg(all(test, loom))]
mod loom_models {
    use super::ShutdownGate;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Arc;

    /// A stand-in for the core queue. Starting a batch reads it, shutting it down writes
    /// it: loom's `UnsafeCell` fails the model unless every start happens before the
    /// shutdown.
    struct Queue {
        gate: ShutdownGate,
        core_shut_down: UnsafeCell<bool>,
        /// How often the core queue was shut down (relaxed: no synchronization of its own).
        shutdowns: AtomicUsize,
    }

    impl Queue {
        /// `CompletionQueue::post`: borrow, start a batch, release.
        fn start_batch(&self) -> bool {
            if !self.gate.try_borrow() {
                return false;
            }
            // SAFETY: loom checks that no shutdown write races this read.
            self.core_shut_down
                .with(|s| assert!(!unsafe { *s }, "a batch started after shutdown"));
            if self.gate.release() {
                self.shut_down_core();
            }
            true
        }

        fn shut_down_core(&self) {
            self.shutdowns.fetch_add(1, Ordering::Relaxed);
            // SAFETY: loom checks that this write is ordered after every batch start.
            self.core_shut_down.with_mut(|s| unsafe { *s = true });
        }
    }

    #[test]
    fn loom_cq_no_batch_after_shutdown_and_shutdown_exactly_once() {
        use std::sync::atomic::{AtomicUsize as Counter, Ordering::Relaxed};
        let runs = std::sync::Arc::new(Counter::new(0));
        let counted = runs.clone();
        loom::model(move || {
            counted.fetch_add(1, Relaxed);
            let q = Arc::new(Queue {
                gate: ShutdownGate::new(),
                core_shut_down: UnsafeCell::new(false),
                shutdowns: AtomicUsize::new(0),
            });
            // Two threads start two batches each while a third shuts the queue down.
            let starters: Vec<_> = (0..2)
                .map(|_| {
                    let q = q.clone();
                    loom::thread::spawn(move || {
                        let first = q.start_batch();
                        let second = q.start_batch();
                        assert!(first || !second, "a borrow succeeded after one was refused");
                    })
                })
                .collect();
            let q2 = q.clone();
            let closer = loom::thread::spawn(move || {
                if q2.gate.begin_shutdown() {
                    q2.shut_down_core();
                }
                assert!(!q2.gate.begin_shutdown(), "shutdown ordered twice");
            });
            for t in starters {
                t.join().unwrap();
            }
            closer.join().unwrap();
            assert_eq!(
                q.shutdowns.load(Ordering::Relaxed),
                1,
                "the core queue must be shut down exactly once"
            );
            assert!(!q.start_batch(), "a batch started after shutdown");
        });
        eprintln!(
            "loom model cq: borrows vs shutdown: {} interleavings",
            runs.load(Relaxed)
        );
    }
}
