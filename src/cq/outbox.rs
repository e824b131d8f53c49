//! The outbox of a completion-queue thread (write sharing, `cfg(shared_writes)`: every
//! `vendored` build, or feature `shared-writes`): batches started while
//! the thread handles events are held, then started together inside ONE core execution
//! context, so the transport writes the frames of several calls on one connection at once.
//!
//! # Why
//!
//! The public `grpc_call_start_batch` opens and flushes an execution context of its own, so
//! each batch that sends (a unary reply) is its own `sendmsg`. Started inside one context
//! (the `batch-scope` shim of `grpcore-sys`), the replies of one drain round are queued on
//! each transport's combiner first and written once per connection when the context flushes
//! (benches/README.md, "Issue #18, target 1").
//!
//! # Protocol
//!
//! - [`wants`]: only a batch started on its own queue's thread *while that thread handles an
//!   event* (the task module's dispatching flag) is deferred; every other start goes
//!   straight to the core as before. That makes the owner of every entry the one thread
//!   that will flush it.
//! - [`defer`] copies the ops (they are plain values; what they point at is owned by the tag,
//!   as for any batch), takes one reference to the call (`grpc_call_ref`: the call outlives
//!   the entry even if every Rust owner drops it meanwhile) and a borrow of the queue (so the
//!   queue cannot begin its core shutdown before the batch has started and so registered its
//!   pending operation).
//! - The queue thread's loop (`env::poll_queue`, through [`Flusher`]) polls with a zero
//!   timeout while the outbox holds anything, and flushes when the queue has nothing more
//!   ready, or after [`FLUSH_EVERY`] events, so a busy queue cannot delay a reply
//!   unboundedly. At one call in flight there is nothing to share a write with: the policy
//!   then lets batches start directly for most rounds (no deferral at all, see [`Flusher`]).
//! - [`flush`] starts every entry through the shim inside one scope. Each completion then
//!   comes out of the queue as an ordinary event with the batch's own tag, so the tag
//!   protocol (module `cq`) is unchanged; a batch the core refuses still completes, with
//!   `success = false`. An entry dropped without being started (a panic inside the scope,
//!   the thread's exit) starts its batch through the public API instead: no tag is lost,
//!   no reference kept.
//! - A call cancelled (or dropped) before the flush gets its batch started on the cancelled
//!   call, which the core completes with the failure, as if the cancellation had raced with
//!   an ordinary start.

use std::cell::{Cell, RefCell};
use std::os::raw::c_void;
use std::ptr;

use grpcore_sys as ffi;

use super::{OwnedCqBorrow, Tag};
use crate::ffi_guard::{ffi_guard, log_caught};

/// The most ops one batch can hold (the core has six kinds and refuses repeats).
const MAX_OPS: usize = 6;

/// Events a queue thread handles, at most, while batches wait in its outbox.
const FLUSH_EVERY: usize = 256;

/// In direct mode, every this many rounds defers and polls instead, to notice load.
const PROBE_EVERY: u32 = 16;

/// When a queue thread defers batches and when it flushes them.
///
/// *Polling* mode: batches started during a round are deferred; while the outbox holds
/// any, the loop asks the queue for the next event without blocking (a zero-timeout
/// `grpc_completion_queue_next`) and flushes when none is ready, or after [`FLUSH_EVERY`]
/// events. When the calls take turns (one in flight at a time) that buys nothing and costs
/// a second pass over the pollset per round plus the deferral itself, so a flush that found
/// the queue idle and held a single batch switches to *direct* mode: batches start through
/// the public API at once, as without sharing, except in every [`PROBE_EVERY`]th round,
/// which defers and polls to notice load (an event ready while batches wait, or more than
/// one batch in the round, switches back to polling). A direct round with at most one call bound to the queue never
/// probes (no other call's reply could share its write: a single ping-pong stream pays
/// nothing for the feature), and the first round after a second call opens probes at once.
/// The open-call count only steers probing: under load, calls live for one round or two
/// (the rest wait in the core, uncounted), so the count says nothing about load.
pub(crate) struct Flusher {
    since_deferral: usize,
    direct: bool,
    rounds: u32,
    /// The last round began with at most one call open on the queue.
    alone: bool,
    /// False: write sharing is turned off for this thread (`EnvBuilder::share_writes`),
    /// every round is direct.
    share: bool,
}

thread_local! {
    /// True while this queue thread handles the events of a round in which batches start
    /// directly (set by its [`Flusher`]; [`wants`] reads it).
    static DIRECT: Cell<bool> = const { Cell::new(false) };
}

impl Flusher {
    /// A policy starting in polling mode, or (`share` false) one that never defers. Made on
    /// the queue thread it serves.
    pub(crate) fn new(share: bool) -> Flusher {
        DIRECT.set(!share);
        Flusher { since_deferral: 0, direct: false, rounds: 0, alone: false, share }
    }

    /// The queue's next event, flushing the outbox on the way as the policy says, and
    /// setting whether the batches of the round it begins are deferred. Only the queue's
    /// own thread calls this, outside event handling.
    pub(crate) fn next_event(&mut self, cq: &super::CompletionQueue) -> ffi::grpc_event {
        if !self.share {
            return cq.next();
        }
        loop {
            if !pending() {
                let event = cq.next();
                self.begin_round(cq);
                return event;
            }
            let event = cq.poll_now();
            self.since_deferral += 1;
            let idle = event.type_ == ffi::GRPC_QUEUE_TIMEOUT;
            if idle || self.since_deferral > FLUSH_EVERY {
                let started = flush();
                self.since_deferral = 0;
                if idle {
                    self.direct = started == 1;
                }
            }
            if !idle {
                self.direct = false;
                self.begin_round(cq);
                return event;
            }
        }
    }

    /// Decides, for the round about to be handled, whether its batches start directly.
    fn begin_round(&mut self, cq: &super::CompletionQueue) {
        let alone = cq.open_calls() <= 1;
        let was_alone = std::mem::replace(&mut self.alone, alone);
        let direct = self.direct
            && (alone || {
                // Probe one round in PROBE_EVERY, and at once when a second call has opened.
                self.rounds = self.rounds.wrapping_add(1);
                !was_alone && self.rounds % PROBE_EVERY != 0
            });
        DIRECT.set(direct);
    }
}

/// One batch waiting for the flush.
struct Deferred {
    /// One reference to the call, ours (taken in [`defer`]).
    call: *mut ffi::grpc_call,
    ops: [ffi::grpc_op; MAX_OPS],
    nops: usize,
    /// The tag handed out by `Tag::into_raw`; null once the batch has started.
    tag: *mut c_void,
    /// Keeps the call's queue from shutting down until the batch has started.
    borrow: OwnedCqBorrow,
}

thread_local! {
    /// This queue thread's deferred batches, oldest first.
    static OUTBOX: RefCell<Vec<Deferred>> = const { RefCell::new(Vec::new()) };
}

/// A message this large is started at once even in a sharing round: its frames fill
/// writes of their own, so waiting buys no shared write, and the held batch keeps the queue
/// thread polling (benches/README.md, "1 MiB messages", with write sharing).
const UNSHARED_MESSAGE: usize = 64 * 1024;

/// True when the batch `ops` on `cq` should wait in this thread's outbox.
pub(crate) fn wants(cq: &super::CompletionQueue, ops: &[ffi::grpc_op]) -> bool {
    (1..=MAX_OPS).contains(&ops.len()) && !DIRECT.get() && crate::task::drained_here(cq) && !sends_large_message(ops)
}

/// True when `ops` send a message of [`UNSHARED_MESSAGE`] bytes or more.
fn sends_large_message(ops: &[ffi::grpc_op]) -> bool {
    ops.iter().any(|op| {
        op.op == ffi::GRPC_OP_SEND_MESSAGE && {
            // SAFETY: a SEND_MESSAGE op's union member is `send_message`, whose byte buffer the
            // batch's tag keeps alive (the caller of `start_batch` guarantees it).
            let buffer = unsafe { op.data.send_message.send_message };
            // SAFETY: a live byte buffer; the call only reads its slices' lengths.
            !buffer.is_null() && unsafe { ffi::grpc_byte_buffer_length(buffer) } >= UNSHARED_MESSAGE
        }
    })
}

/// Holds a batch for the next flush of this thread's outbox.
///
/// # Safety
/// `call` is a live call bound to `borrow`'s queue, of which the caller holds a reference
/// for the duration of this call; [`wants`] said yes for that queue on this thread; every
/// pointer inside `ops` stays valid until `tag`'s event (the tag owns what they point at).
pub(crate) unsafe fn defer(call: *mut ffi::grpc_call, ops: &[ffi::grpc_op], tag: Tag, borrow: OwnedCqBorrow) {
    let mut copy = [ops[0]; MAX_OPS];
    copy[..ops.len()].copy_from_slice(ops);
    // SAFETY: the caller holds a reference, so the call is live; this one is the entry's.
    unsafe { ffi::grpc_call_ref(call) };
    let entry = Deferred {
        call,
        ops: copy,
        nops: ops.len(),
        tag: tag.into_raw(),
        borrow,
    };
    OUTBOX.with(|o| o.borrow_mut().push(entry));
}

/// True when this thread's outbox holds a batch.
pub(crate) fn pending() -> bool {
    OUTBOX.with(|o| !o.borrow().is_empty())
}

/// Starts every batch of this thread's outbox inside one core execution context.
///
/// Call it from the queue thread's loop, outside event handling (so nothing is deferred
/// while the flush runs).
/// Returns how many batches it started.
pub(crate) fn flush() -> usize {
    let mut batch = OUTBOX.with(|o| std::mem::take(&mut *o.borrow_mut()));
    let count = batch.len();
    if count == 0 {
        return 0;
    }
    // SAFETY: `run_scope` gets a pointer to `batch`, which lives across the call and is not
    // touched by anything else meanwhile; it catches every panic, so none unwinds into C.
    unsafe { ffi::grpcore_batch_scope_run(run_scope, &mut batch as *mut Vec<Deferred> as *mut c_void) };
    // Entries not started by `run_scope` (a panic) start through the public API in `Drop`.
    batch.clear();
    // Keep the allocation for the next round.
    OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        if o.is_empty() {
            *o = batch;
        }
    });
    count
}

/// The body of the scope: starts the entries, oldest first.
unsafe extern "C" fn run_scope(arg: *mut c_void) {
    // SAFETY: `flush` passes its own `Vec`, exclusively ours for the duration of the call.
    let batch = unsafe { &mut *(arg as *mut Vec<Deferred>) };
    // No panic may unwind into the shim's frame: the starts and the report of a failure
    // (its logging included) run inside `ffi_guard`.
    ffi_guard((), || {
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for entry in batch.drain(..) {
                entry.start();
            }
        }));
        if let Err(panic) = started {
            log_caught!(error, "starting deferred batches panicked: {}", crate::task::panic_message(&*panic));
        }
    })
}

impl Deferred {
    /// Starts the batch inside the current scope; its completion arrives as a queue event.
    fn start(mut self) {
        let tag = std::mem::replace(&mut self.tag, ptr::null_mut());
        // SAFETY: the entry holds a reference to the call and a borrow of its queue; the ops
        // point into what the tag owns; we are inside `grpcore_batch_scope_run`. The shim
        // delivers the tag's event whatever the call answers, except when the queue refuses
        // to begin an operation (COMPLETION_QUEUE_SHUTDOWN, which the core's StartBatch
        // itself never returns).
        let rc = unsafe { ffi::grpcore_start_batch_deferred(self.call, self.borrow.raw(), self.ops.as_ptr(), self.nops, tag) };
        match rc {
            ffi::GRPC_CALL_OK => {}
            ffi::GRPC_CALL_ERROR_COMPLETION_QUEUE_SHUTDOWN => {
                // SAFETY: nothing was begun, so no event will carry the tag: complete it here.
                unsafe { Tag::from_raw(tag) }.complete(false);
            }
            rc => log::warn!(
                "the core refused a deferred batch of {} operations ({}); it completes as failed",
                self.nops,
                crate::call::call_error_name(rc)
            ),
        }
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if !self.tag.is_null() {
            // Never started (a panic in the scope, or the thread's exit): start it the
            // ordinary way, so its tag is delivered and its memory freed.
            // SAFETY: as in `start`, with the public entry point.
            let rc = unsafe { ffi::grpc_call_start_batch(self.call, self.ops.as_ptr(), self.nops, self.tag, ptr::null_mut()) };
            if rc != ffi::GRPC_CALL_OK {
                // SAFETY: refused, so no event will carry the tag: complete it here.
                unsafe { Tag::from_raw(self.tag) }.complete(false);
            }
        }
        // SAFETY: the entry's own reference, taken in `defer`; the queue borrow is released
        // after this (field drop), once the batch has begun its operation on the queue.
        unsafe { ffi::grpc_call_unref(self.call) };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::CompletionQueue;
    use super::*;
    use crate::call::raw::op;
    use crate::call::Batch;

    /// A client call on `cq` through a lame channel (it never connects), made as the queue's
    /// wake-up call is; returns the channel and the call (one reference each, the test's).
    fn lame_call(cq: &CompletionQueue) -> (*mut ffi::grpc_channel, *mut ffi::grpc_call) {
        let lame = super::super::KickCall::new(cq.raw);
        (lame.channel, lame.call)
    }

    /// Defers a send-only batch (no metadata, close) of `call` on `cq`, as `Call::start_batch`
    /// does on a queue thread in a drain round.
    fn defer_close(cq: &Arc<CompletionQueue>, call: *mut ffi::grpc_call) -> Arc<Batch<()>> {
        let batch = Batch::new(());
        let ops = [op::send_close_from_client()];
        assert!(wants(cq, &ops));
        let borrow = cq.borrow_owned().expect("the queue is open");
        // SAFETY: the test holds a reference to the live call, bound to `cq`; the op points
        // at nothing.
        unsafe { defer(call, &ops, batch.tag(), borrow) };
        batch
    }

    /// Takes the queue's next event (waiting up to 10 s) and hands it to its tag; returns
    /// its type (`GRPC_QUEUE_TIMEOUT` if none came).
    fn deliver(cq: &CompletionQueue) -> ffi::grpc_completion_type {
        // SAFETY: the queue is alive and this is its only poller.
        let event = unsafe {
            let deadline = ffi::gpr_time_add(ffi::gpr_now(ffi::GPR_CLOCK_MONOTONIC), ffi::gpr_time_from_seconds(10, ffi::GPR_TIMESPAN));
            ffi::grpc_completion_queue_next(cq.raw, deadline, ptr::null_mut())
        };
        if event.type_ == ffi::GRPC_OP_COMPLETE {
            // SAFETY: every tag on this queue came from `Tag::into_raw`.
            unsafe { Tag::from_raw(event.tag) }.complete(event.success != 0);
        }
        event.type_
    }

    fn finish(cq: Arc<CompletionQueue>, channel: *mut ffi::grpc_channel) {
        // SAFETY: the queue delivered its shutdown event on this thread; the channel is ours.
        unsafe {
            cq.destroy();
            ffi::grpc_channel_destroy(channel);
            ffi::grpc_shutdown();
        }
    }

    /// Runs `body` on a thread made the queue thread of a new queue, with a call bound to it
    /// through a lame channel (one reference, the body's to release); the body ends with the
    /// queue's shutdown event delivered. Then destroys the queue and the channel.
    fn on_queue_thread(body: impl FnOnce(&Arc<CompletionQueue>, *mut ffi::grpc_call) + Send) {
        crate::env::init_core();
        let cq = Arc::new(CompletionQueue::new(0));
        let (channel, call) = lame_call(&cq);
        // Raw pointers are not `Send`; the queue thread below is the call's only user.
        let call_addr = call as usize;
        let queue = &cq;
        std::thread::scope(|s| {
            s.spawn(move || {
                crate::task::enter_cq_thread(queue);
                body(queue, call_addr as *mut ffi::grpc_call);
                crate::task::leave_cq_thread();
            });
        });
        finish(cq, channel);
    }

    /// A batch of `n` ops (what they are does not matter to [`wants`] unless one sends a
    /// message).
    fn ops(n: usize) -> Vec<ffi::grpc_op> {
        vec![op::send_close_from_client(); n]
    }

    #[test]
    fn deferral_needs_a_queue_thread_in_a_drain_round_and_a_real_batch() {
        crate::env::init_core();
        let cq = Arc::new(CompletionQueue::new(0));
        let other = CompletionQueue::new(1);
        std::thread::scope(|s| {
            s.spawn(|| {
                // Not a queue thread.
                assert!(!wants(&cq, &ops(3)));
                crate::task::enter_cq_thread(&cq);
                // The queue's thread, but inside grpc_completion_queue_next (not dispatching).
                assert!(!wants(&cq, &ops(3)));
                crate::task::set_dispatching(true);
                assert!(wants(&cq, &ops(3)));
                assert!(!wants(&cq, &ops(0)), "an empty batch (a wake-up) is never deferred");
                assert!(!wants(&cq, &ops(MAX_OPS + 1)));
                // Another queue's batch started on this thread goes straight to the core.
                assert!(!wants(&other, &ops(3)));
                // A large message starts at once; a smaller one waits.
                for (len, deferred) in [(100, true), (UNSHARED_MESSAGE - 1, true), (UNSHARED_MESSAGE, false), (1 << 20, false)] {
                    let message = crate::buffer::ByteBuffer::from_vec(vec![7; len]);
                    let batch = [op::send_close_from_client(), op::send_message(&message, 0)];
                    assert_eq!(wants(&cq, &batch), deferred, "a {len}-byte message");
                }
                crate::task::set_dispatching(false);
                crate::task::leave_cq_thread();
            });
        });
        for q in [&*cq, &other] {
            q.begin_shutdown();
            while q.next().type_ != ffi::GRPC_QUEUE_SHUTDOWN {}
            // SAFETY: this thread saw the queue's shutdown event.
            unsafe { q.destroy() };
        }
        // SAFETY: pairs with init_core above.
        unsafe { ffi::grpc_shutdown() };
    }

    /// A batch deferred on a call that is then cancelled and released by its owner, on a
    /// queue whose shutdown begins before the flush: the call stays alive for the flush, the
    /// queue does not shut down under the held batch, and the batch completes (as a failure)
    /// exactly once, before the shutdown event.
    #[test]
    fn held_batch_survives_cancel_drop_and_shutdown_and_completes_once() {
        on_queue_thread(|cq, call| {
            crate::task::set_dispatching(true);
            let batch = defer_close(cq, call);
            crate::task::set_dispatching(false);
            assert!(pending());
            // SAFETY: the test's own reference: cancelled, then released, as a dropped
            // `Call` does.
            unsafe {
                ffi::grpc_call_cancel(call, ptr::null_mut());
                ffi::grpc_call_unref(call);
            }
            // The environment begins shutting down with the batch still held.
            cq.begin_shutdown();
            assert_eq!(cq.poll_now().type_, ffi::GRPC_QUEUE_TIMEOUT, "the queue shut down (or delivered) under a held batch");
            assert!(!batch.is_done());
            flush();
            assert!(!pending());
            assert_eq!(deliver(cq), ffi::GRPC_OP_COMPLETE);
            assert!(batch.is_done());
            let waker = futures_util::task::noop_waker();
            assert_eq!(batch.poll_done(&mut std::task::Context::from_waker(&waker)), Some(false), "a cancelled call's send must fail");
            assert_eq!(Arc::strong_count(&batch), 1, "the tag's reference was not released");
            assert_eq!(deliver(cq), ffi::GRPC_QUEUE_SHUTDOWN);
        });
    }

    /// A batch still held when its thread exits (never flushed) is started the ordinary way
    /// by the entry's destructor: its event comes, nothing leaks, the queue can shut down.
    #[test]
    fn held_batch_of_an_exiting_thread_is_still_started() {
        crate::env::init_core();
        let cq = Arc::new(CompletionQueue::new(0));
        let (channel, call) = lame_call(&cq);
        let call_addr = call as usize;
        let batch = std::thread::scope(|s| {
            s.spawn(|| {
                let call = call_addr as *mut ffi::grpc_call;
                crate::task::enter_cq_thread(&cq);
                crate::task::set_dispatching(true);
                let batch = defer_close(&cq, call);
                crate::task::set_dispatching(false);
                crate::task::leave_cq_thread();
                batch
            })
            .join()
            .unwrap()
        });
        // SAFETY: the test's own reference.
        unsafe { ffi::grpc_call_unref(call) };
        cq.begin_shutdown();
        assert_eq!(deliver(&cq), ffi::GRPC_OP_COMPLETE);
        assert!(batch.is_done());
        assert_eq!(Arc::strong_count(&batch), 1);
        assert_eq!(deliver(&cq), ffi::GRPC_QUEUE_SHUTDOWN);
        finish(cq, channel);
    }

    /// The flush policy: a round that found the queue idle with one batch held switches to
    /// direct starts (no deferral, no poll); every `PROBE_EVERY`th round defers again, unless
    /// at most one call is open, and at once when a second opens; an event ready while
    /// batches wait switches back to polling.
    #[test]
    fn flusher_goes_direct_at_one_in_flight_and_back_under_load() {
        on_queue_thread(|cq, call| {
            // Two calls open (the lame call here is not a `Call`: counted by hand).
            cq.call_opened();
            cq.call_opened();
            let held = |cq: &Arc<CompletionQueue>| {
                crate::task::set_dispatching(true);
                let batch = defer_close(cq, call);
                crate::task::set_dispatching(false);
                batch
            };
            let deferring = |cq: &Arc<CompletionQueue>| {
                crate::task::set_dispatching(true);
                let wanted = wants(cq, &ops(1));
                crate::task::set_dispatching(false);
                wanted
            };
            // The next event of a round that started nothing: a posted wake-up.
            let wake_up_round = |flusher: &mut Flusher| {
                cq.post(Tag::drain()).ok().expect("post a wake-up");
                let event = flusher.next_event(cq);
                assert_eq!(event.type_, ffi::GRPC_OP_COMPLETE);
                // SAFETY: the wake-up's tag (a static drain tag).
                unsafe { Tag::from_raw(event.tag) }.complete(true);
            };
            let mut flusher = Flusher::new(true);
            assert!(deferring(cq), "a new policy defers");
            // One batch, nothing else ready: flushed after a poll; the round of its
            // completion starts batches directly.
            let first = held(cq);
            let event = flusher.next_event(cq);
            assert_eq!(event.type_, ffi::GRPC_OP_COMPLETE);
            // SAFETY: the tag of the flushed batch, delivered once.
            unsafe { Tag::from_raw(event.tag) }.complete(event.success != 0);
            assert!(first.is_done());
            assert!(!deferring(cq), "one batch on an idle queue must switch to direct starts");
            for round in 2..PROBE_EVERY {
                wake_up_round(&mut flusher);
                assert!(!deferring(cq), "round {round} must start directly");
            }
            // The probing round defers its batch for a poll; an event is ready (load),
            // so the policy goes back to polling and hands the event over unflushed.
            wake_up_round(&mut flusher);
            let probe = held(cq);
            assert!(pending(), "the probing round must defer");
            cq.post(Tag::drain()).ok().expect("post a wake-up");
            let event = flusher.next_event(cq);
            assert_eq!(event.type_, ffi::GRPC_OP_COMPLETE);
            assert!(pending() && !probe.is_done());
            // SAFETY: the wake-up's tag (a static drain tag).
            unsafe { Tag::from_raw(event.tag) }.complete(true);
            assert!(deferring(cq), "an event ready while batches wait must switch back to deferring");
            // Two batches in one round, then nothing ready: both go out in one flush,
            // and the policy stays in polling mode.
            let (a, b) = (held(cq), held(cq));
            let mut events = vec![flusher.next_event(cq)];
            assert!(deferring(cq), "a flush of several batches must keep deferring");
            events.push(flusher.next_event(cq));
            events.push(flusher.next_event(cq));
            for event in events {
                assert_eq!(event.type_, ffi::GRPC_OP_COMPLETE);
                // SAFETY: the flushed batches' tags, each delivered once.
                unsafe { Tag::from_raw(event.tag) }.complete(event.success != 0);
            }
            assert!(probe.is_done() && a.is_done() && b.is_done());
            // Direct mode again (one batch on an idle queue), before the calls change.
            let single = held(cq);
            let event = flusher.next_event(cq);
            // SAFETY: the tag of the flushed batch, delivered once.
            unsafe { Tag::from_raw(event.tag) }.complete(event.success != 0);
            assert!(single.is_done() && !deferring(cq));
            // Down to one call: direct in every round, without probes.
            cq.call_closed();
            for round in 0..2 * PROBE_EVERY {
                wake_up_round(&mut flusher);
                assert!(!deferring(cq), "round {round} with one call open must start directly");
            }
            // A second call opens: the next round probes, though by the round count it would
            // not.
            flusher.rounds = 0;
            cq.call_opened();
            wake_up_round(&mut flusher);
            assert!(deferring(cq), "a second call must be probed for at once");
            cq.call_closed();
            cq.call_closed();
            assert_eq!(cq.open_calls(), 0);
            // SAFETY: the test's own reference.
            unsafe { ffi::grpc_call_unref(call) };
            cq.begin_shutdown();
            assert_eq!(deliver(cq), ffi::GRPC_QUEUE_SHUTDOWN);
        });
    }
}
