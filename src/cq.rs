//! Completion queues and the tag protocol.
//!
//! # The tag protocol
//!
//! Every operation we start on the core carries a *tag*: a `Box<Tag>` turned into a raw
//! pointer with `Box::into_raw`. The box is owned by the core from the moment the operation
//! is accepted until its event comes out of `grpc_completion_queue_next`, when the CQ thread
//! re-takes it with `Box::from_raw` — exactly once, because the core delivers exactly one
//! event per accepted operation. When the core *refuses* an operation (a call error), no
//! event will come, so the caller re-takes the box on the spot ([`CompletionQueue::start`]).
//! Everything an operation's C side points at (metadata arrays, status slices, byte
//! buffers) is owned by an `Arc` that the tag holds, so it stays alive until the event,
//! whatever the Rust side (a dropped future, say) does meanwhile.
//!
//! # Shutdown
//!
//! Starting an operation on a queue that is shutting down is a fatal assertion in the core,
//! so every start first *borrows* the queue ([`CompletionQueue::borrow`]): a counter with a
//! shutdown bit. After [`CompletionQueue::begin_shutdown`] no new borrow succeeds, and the
//! core's `grpc_completion_queue_shutdown` is called exactly once, by whoever releases the
//! last borrow (or by `begin_shutdown` itself if there is none).

use std::ffi::CString;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use grpcore_sys as ffi;

use crate::call::BatchCompletion;
use crate::server::ServerTag;
use crate::task::Task;

/// What finished. One variant per kind of operation we start.
pub(crate) enum Tag {
    /// A batch of call operations.
    Batch(Arc<dyn BatchCompletion>),
    /// A wake-up: run this task on the queue's thread.
    Kick(Arc<Task>),
    /// A wake-up that only makes the thread drain its run queue.
    Drain,
    /// A server event: a requested call arrived, or shutdown finished.
    Server(ServerTag),
}

impl Tag {
    /// Boxes the tag and hands out the pointer the core carries.
    pub(crate) fn into_raw(self) -> *mut std::os::raw::c_void {
        Box::into_raw(Box::new(self)) as *mut _
    }

    /// Re-takes a tag handed out by [`Tag::into_raw`].
    ///
    /// # Safety
    /// `raw` must come from `Tag::into_raw` and be re-taken only once.
    pub(crate) unsafe fn from_raw(raw: *mut std::os::raw::c_void) -> Box<Tag> {
        // SAFETY: guaranteed by the caller (see the module's tag protocol).
        unsafe { Box::from_raw(raw as *mut Tag) }
    }

    /// Runs on the CQ thread when the tag's event arrives.
    pub(crate) fn complete(self, success: bool) {
        match self {
            Tag::Batch(b) => b.complete(success),
            Tag::Kick(task) => task.run(),
            Tag::Drain => {}
            Tag::Server(s) => s.complete(success),
        }
    }
}

const SHUTDOWN: usize = 1 << (usize::BITS - 1);

/// One core completion queue (NEXT type), plus the dummy call used to post wake-ups.
pub(crate) struct CompletionQueue {
    raw: *mut ffi::grpc_completion_queue,
    /// Borrow count, with [`SHUTDOWN`] set once shutdown has begun.
    state: AtomicUsize,
    /// A never-connecting channel that owns `kick_call`.
    kick_channel: *mut ffi::grpc_channel,
    /// A call bound to this queue that is never started: an empty batch on it posts its tag
    /// at once, which is how another thread wakes this queue's thread (no `grpc_alarm` in
    /// the C API of 1.51).
    kick_call: *mut ffi::grpc_call,
    /// Index among the environment's queues (for naming and round-robin).
    pub(crate) index: usize,
}

// SAFETY: the core's completion queue and call functions are thread-safe; the raw pointers
// are only used under the borrow protocol above, and freed only by `destroy`, after
// shutdown, when no borrow can exist.
unsafe impl Send for CompletionQueue {}
// SAFETY: as above.
unsafe impl Sync for CompletionQueue {}

/// Proof that the queue is not shut down; hold it while starting an operation.
pub(crate) struct CqBorrow<'a> {
    cq: &'a CompletionQueue,
}

impl CqBorrow<'_> {
    /// The queue's raw pointer, valid while the borrow lives.
    pub(crate) fn raw(&self) -> *mut ffi::grpc_completion_queue {
        self.cq.raw
    }
}

impl Drop for CqBorrow<'_> {
    fn drop(&mut self) {
        if self.cq.state.fetch_sub(1, Ordering::AcqRel) == SHUTDOWN | 1 {
            self.cq.shutdown_now();
        }
    }
}

impl CompletionQueue {
    /// Creates a queue and its wake-up call. Needs `grpc_init` to have run.
    pub(crate) fn new(index: usize) -> CompletionQueue {
        let target = CString::new("grpcore.kick").unwrap();
        let msg = CString::new("grpcore wake-up channel").unwrap();
        // SAFETY: plain constructors; the method slice is static and copied by the core.
        unsafe {
            let raw = ffi::grpc_completion_queue_create_for_next(ptr::null_mut());
            let kick_channel = ffi::grpc_lame_client_channel_create(
                target.as_ptr(),
                ffi::GRPC_STATUS_UNAVAILABLE,
                msg.as_ptr(),
            );
            let method = ffi::grpc_slice_from_static_string(c"/grpcore.Kick/Kick".as_ptr());
            let kick_call = ffi::grpc_channel_create_call(
                kick_channel,
                ptr::null_mut(),
                ffi::GRPC_PROPAGATE_DEFAULTS,
                raw,
                method,
                ptr::null(),
                ffi::gpr_inf_future(ffi::GPR_CLOCK_REALTIME),
                ptr::null_mut(),
            );
            CompletionQueue {
                raw,
                state: AtomicUsize::new(0),
                kick_channel,
                kick_call,
                index,
            }
        }
    }

    /// Borrows the queue for starting an operation; `None` once shutdown has begun.
    pub(crate) fn borrow(&self) -> Option<CqBorrow<'_>> {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur & SHUTDOWN != 0 {
                return None;
            }
            match self
                .state
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(CqBorrow { cq: self }),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Stops new operations; the core queue shuts down when the last borrow ends.
    pub(crate) fn begin_shutdown(&self) {
        if self.state.fetch_or(SHUTDOWN, Ordering::AcqRel) == 0 {
            self.shutdown_now();
        }
    }

    fn shutdown_now(&self) {
        // SAFETY: reached exactly once (see the module doc), while `raw` is alive: it is only
        // destroyed after the SHUTDOWN event this call causes.
        unsafe { ffi::grpc_completion_queue_shutdown(self.raw) }
    }

    /// Posts `tag` on this queue at once. On failure (shutting down) the tag is handed back.
    pub(crate) fn post(&self, tag: Tag) -> Result<(), Tag> {
        let Some(_borrow) = self.borrow() else {
            return Err(tag);
        };
        let raw = tag.into_raw();
        // SAFETY: `kick_call` is bound to this queue, which the borrow keeps open; an empty
        // batch is accepted unconditionally and completes at once with `raw` as its tag.
        let rc = unsafe { ffi::grpc_call_start_batch(self.kick_call, ptr::null(), 0, raw, ptr::null_mut()) };
        if rc != ffi::GRPC_CALL_OK {
            // SAFETY: the core refused the batch, so no event will carry `raw`: re-take it here.
            return Err(*unsafe { Tag::from_raw(raw) });
        }
        Ok(())
    }

    /// Blocks for the next event. Only the queue's own thread calls this.
    pub(crate) fn next(&self) -> ffi::grpc_event {
        // SAFETY: `raw` stays valid until `destroy`, which runs on this same thread after the
        // loop calling `next` has seen the shutdown event.
        unsafe {
            ffi::grpc_completion_queue_next(
                self.raw,
                ffi::gpr_inf_future(ffi::GPR_CLOCK_REALTIME),
                ptr::null_mut(),
            )
        }
    }

    /// Frees the core objects once the queue has delivered its shutdown event.
    ///
    /// # Safety
    /// Call once, from the queue's thread, after `next` returned `GRPC_QUEUE_SHUTDOWN`.
    pub(crate) unsafe fn destroy(&self) {
        // SAFETY: by the caller's contract no borrow exists or can exist (shutdown bit set),
        // so nothing else touches these pointers any more.
        unsafe {
            ffi::grpc_call_unref(self.kick_call);
            ffi::grpc_channel_destroy(self.kick_channel);
            ffi::grpc_completion_queue_destroy(self.raw);
        }
    }
}
