//! The lock-free scheduling state of a task: pure logic over one atomic byte, no FFI, so
//! the loom models below check it under every interleaving (see [`crate::sync`]).
//!
//! ```text
//! IDLE --wake--> SCHEDULED --run--> RUNNING --Pending--> IDLE
//!                                      |  \--wake--> NOTIFIED --Pending--> SCHEDULED
//!                                      \--Ready/panic--> DONE
//! ```
//!
//! Whoever moves the state to `SCHEDULED` holds the task's one *schedule entry*: it alone
//! may poll the future (or cancel it). The guarantees, which the models check:
//! - at most one schedule entry exists at a time, so polls never overlap;
//! - a wake-up is always followed by a poll that starts after it (none is lost while the
//!   task runs: `NOTIFIED` makes the end of that poll schedule it again);
//! - nothing is polled after `DONE`: wake-ups are then ignored.
//!
//! The orderings: a transition that hands the entry over (end of a poll to `IDLE`, the
//! wake-up from `IDLE`) is a release by the old holder and an acquire by the new one, so
//! the new holder sees everything the last poll wrote.

use crate::sync::{AtomicU8, Ordering};

const IDLE: u8 = 0;
const SCHEDULED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;
const DONE: u8 = 4;

/// The lock-free scheduling state of a task.
pub(crate) struct TaskState(AtomicU8);

impl TaskState {
    /// A new task, already holding its schedule entry when `initial_scheduled`.
    pub(crate) fn new(initial_scheduled: bool) -> TaskState {
        TaskState(AtomicU8::new(if initial_scheduled {
            SCHEDULED
        } else {
            IDLE
        }))
    }

    /// A wake-up: true when the caller must schedule the task (it was idle).
    ///
    /// Every wake-up of a live task is a read-modify-write, even when the task is already
    /// `SCHEDULED` or `NOTIFIED` and nothing changes: a plain load there could read a state
    /// older than the `RUNNING` that [`start_run`](Self::start_run) has already swapped in,
    /// and that poll, not ordered after the waker's writes, could miss them; the wake-up
    /// would be lost (the loom models found this). RMWs of one atomic are totally ordered,
    /// so the wake-up either comes before the swap (which then acquires it) or sees `RUNNING`.
    pub(crate) fn wake(&self) -> bool {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let next = match cur {
                IDLE => SCHEDULED,
                RUNNING => NOTIFIED,
                DONE => return false,
                same => same, // SCHEDULED or NOTIFIED: written back unchanged
            };
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return cur == IDLE,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The scheduled task is about to be polled.
    pub(crate) fn start_run(&self) {
        let prev = self.0.swap(RUNNING, Ordering::AcqRel);
        debug_assert_eq!(prev, SCHEDULED);
    }

    /// The poll returned `Pending`: true when the task was woken meanwhile and must be
    /// scheduled again (the state is then `SCHEDULED`).
    pub(crate) fn end_run_pending(&self) -> bool {
        match self
            .0
            .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => false,
            Err(_) => {
                // NOTIFIED: only wake-ups touch the state meanwhile, and they leave it
                // NOTIFIED. A swap rather than a store: loom 0.7 can let a plain store slip
                // between a concurrent wake-up's read and write (tokio-rs/loom#254), which
                // no real execution does; the RMW costs the same here and keeps the model exact.
                self.0.swap(SCHEDULED, Ordering::AcqRel);
                true
            }
        }
    }

    /// The future finished (or panicked, or was cancelled); later wake-ups are ignored.
    pub(crate) fn finish(&self) {
        self.0.store(DONE, Ordering::Release);
    }
}

// Plain tests use std's atomics; under `--cfg loom` only the models below run.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wake_while_running_reschedules_once() {
        let s = TaskState::new(true);
        s.start_run();
        assert!(!s.wake(), "a running task is not scheduled twice");
        assert!(!s.wake());
        assert!(s.end_run_pending(), "woken while running: run again");
        assert!(!s.wake(), "already scheduled");
        s.start_run();
        assert!(!s.end_run_pending());
        assert!(s.wake(), "idle task gets scheduled");
        s.start_run();
        s.finish();
        assert!(!s.wake(), "finished task ignores wake-ups");
    }

    #[test]
    fn concurrent_wakes_schedule_exactly_once_per_idle_period() {
        use std::sync::atomic::AtomicUsize;
        for _ in 0..200 {
            let s = Arc::new(TaskState::new(false));
            let scheduled = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (s, n) = (s.clone(), scheduled.clone());
                    std::thread::spawn(move || {
                        for _ in 0..50 {
                            if s.wake() {
                                n.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(scheduled.load(Ordering::SeqCst), 1);
        }
    }
}

/// loom models: `RUSTFLAGS="--cfg loom -C debug-assertions" cargo test -p grpcore --lib --release loom`.
#[cfg(all(test, loom))]
mod loom_models {
    use super::TaskState;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Arc;

    /// What the task's future records. Only the holder of the schedule entry touches it:
    /// loom's `UnsafeCell` fails the model on any access not ordered after the previous
    /// holder's (two overlapping polls, or a hand-over missing its release/acquire).
    #[derive(Default)]
    struct Future {
        polls: usize,
        /// How many wake-ups had been sent when the last poll started.
        seen: usize,
        done: bool,
    }

    struct Task {
        state: TaskState,
        future: UnsafeCell<Future>,
        /// Wake-ups sent: a waker bumps it before waking, like a channel send before its wake.
        sent: AtomicUsize,
        /// Schedule entries in existence (relaxed: it must not add synchronization of its own).
        entries: AtomicUsize,
        /// The poll that sees this many wake-ups returns `Ready`.
        ready_at: usize,
    }

    impl Task {
        fn new(ready_at: usize) -> Task {
            Task {
                state: TaskState::new(true),
                future: UnsafeCell::new(Future::default()),
                sent: AtomicUsize::new(0),
                entries: AtomicUsize::new(1), // the spawner's, for the first poll
                ready_at,
            }
        }

        fn take_entry(&self) {
            let before = self.entries.fetch_add(1, Ordering::Relaxed);
            assert_eq!(before, 0, "a second schedule entry exists");
        }

        fn drop_entry(&self) {
            self.entries.fetch_sub(1, Ordering::Relaxed);
        }

        /// What the holder of the schedule entry does (`Task::run`, rescheduling in place),
        /// until the task parks or finishes.
        fn run(&self) {
            loop {
                self.state.start_run();
                let ready = self.future.with_mut(|f| {
                    // SAFETY: loom checks that this access is exclusive and ordered.
                    let f = unsafe { &mut *f };
                    assert!(!f.done, "polled after DONE");
                    f.polls += 1;
                    f.seen = self.sent.load(Ordering::Acquire);
                    if f.seen >= self.ready_at {
                        f.done = true;
                    }
                    f.done
                });
                // The entry is given up before the transition that lets a waker take it.
                self.drop_entry();
                if ready {
                    self.state.finish();
                    return;
                }
                if !self.state.end_run_pending() {
                    return;
                }
                self.take_entry(); // woken meanwhile: scheduled again, still ours
            }
        }

        fn wake(&self) {
            self.sent.fetch_add(1, Ordering::Release);
            if self.state.wake() {
                self.take_entry();
                self.run();
            }
        }
    }

    /// The interleavings one model explored, printed so the test log shows them.
    fn check(name: &str, f: impl Fn() + Sync + Send + 'static) {
        use std::sync::atomic::{AtomicUsize as Counter, Ordering::Relaxed};
        let runs = std::sync::Arc::new(Counter::new(0));
        let counted = runs.clone();
        loom::model(move || {
            counted.fetch_add(1, Relaxed);
            f();
        });
        eprintln!("loom model {name}: {} interleavings", runs.load(Relaxed));
    }

    /// Spawns `wakers` threads that each wake the task once while the spawner polls it.
    fn wakes_race_the_poll(wakers: usize, ready_at: usize) {
        let task = Arc::new(Task::new(ready_at));
        let threads: Vec<_> = (0..wakers)
            .map(|_| {
                let task = task.clone();
                loom::thread::spawn(move || task.wake())
            })
            .collect();
        task.run();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            task.entries.load(Ordering::Relaxed),
            0,
            "a schedule entry was left over"
        );
        let done = task.future.with(|f| {
            // SAFETY: every thread is joined.
            let f = unsafe { &*f };
            if f.done {
                assert!(f.seen >= ready_at);
            } else {
                assert_eq!(
                    f.seen, wakers,
                    "a wake-up was not followed by a poll that saw it"
                );
            }
            assert!(
                f.polls <= wakers + 1,
                "{} polls for {wakers} wake-ups",
                f.polls
            );
            f.done
        });
        // Idle now, or done: a late wake-up schedules an idle task, never a finished one.
        assert_eq!(task.state.wake(), !done);
    }

    #[test]
    fn loom_task_every_wake_is_followed_by_a_poll() {
        // Never ready: two wake-ups race the first poll and each other.
        check("task: wakes vs poll (never ready)", || {
            wakes_race_the_poll(2, usize::MAX)
        });
    }

    #[test]
    fn loom_task_no_poll_after_done() {
        // Ready once it has seen one wake-up: the other wake-up must not poll it again.
        check("task: wakes vs poll (ready after one)", || {
            wakes_race_the_poll(2, 1)
        });
    }
}
