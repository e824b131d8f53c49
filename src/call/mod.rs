//! Calls: the owner of a core `grpc_call`, batches of operations, and the C-side buffers
//! those operations read and write.
//!
//! A batch's C-visible state lives in a [`Batch`] behind an `Arc` shared by the tag (see
//! the tag protocol in `cq`) and by the Rust side waiting for it, so a dropped future never
//! frees memory the core still writes to.

pub(crate) mod client;
pub(crate) mod core;
mod pending;
pub(crate) mod raw;
mod start;
pub(crate) mod state;
pub(crate) mod streaming;
pub(crate) mod write;

use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Context;

use futures_util::task::AtomicWaker;
use grpcore_sys as ffi;

use crate::channel::Channel;
use crate::cq::{ArcTag, CompletionQueue, Tag, TagHeader};
use crate::env::Environment;
use crate::error::{Error, InternalErrorKind, ShutdownErrorKind};
use crate::status::Code;

/// Owns one reference to a core call, bound to one completion queue.
///
/// A call keeps its environment alive: the environment's threads must outlive every call
/// whose events they deliver, and dropping the last handle to an environment then never
/// waits for a call nobody can cancel any more. A client call also keeps its channel: the
/// core fails every call of a destroyed channel ("Channel Destroyed"), so a call waiting
/// for a connection or streaming must not depend on the user keeping a `Channel`.
pub(crate) struct Call {
    raw: *mut ffi::grpc_call,
    cq: Arc<CompletionQueue>,
    /// Dropped after the call's reference is released (fields drop after `Drop::drop`).
    _keeps: Keeps,
}

/// What a call keeps alive: a client call its channel (which holds the environment), a
/// server call the environment.
enum Keeps {
    Env { _env: Environment },
    Channel { _channel: Channel },
    /// A server call counted among its server's live calls until it is released (the
    /// counter also holds the environment: one reference per call keeps both).
    Counted { _live: LiveCall },
}

/// A server's environment and the number of its calls handed to handlers and not yet
/// released (for its shutdown report), shared by the server and each of those calls.
pub(crate) struct LiveCalls {
    _env: Environment,
    count: AtomicUsize,
}

impl LiveCalls {
    pub(crate) fn new(env: Environment) -> Arc<LiveCalls> {
        Arc::new(LiveCalls {
            _env: env,
            count: AtomicUsize::new(0),
        })
    }

    /// How many calls are live now.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

/// One live call in a server's [`LiveCalls`]: counts from creation to drop, and keeps the
/// environment alive meanwhile.
pub(crate) struct LiveCall(Arc<LiveCalls>);

impl LiveCall {
    pub(crate) fn new(calls: &Arc<LiveCalls>) -> LiveCall {
        calls.count.fetch_add(1, Ordering::Relaxed);
        LiveCall(calls.clone())
    }
}

impl Drop for LiveCall {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
    }
}

// SAFETY: the core's call functions are thread-safe (batches of different kinds may be
// started from different threads, and the call core's state word keeps one batch of each
// kind in flight); the pointer is released exactly once, in Drop.
unsafe impl Send for Call {}
// SAFETY: as above.
unsafe impl Sync for Call {}

impl Call {
    /// Takes ownership of one reference to `raw`.
    ///
    /// # Safety
    /// `raw` must be a live call bound to `cq` (one of `env`'s queues), whose reference
    /// nobody else releases.
    pub(crate) unsafe fn from_raw(raw: *mut ffi::grpc_call, cq: Arc<CompletionQueue>, env: Environment) -> Call {
        Call::counted(raw, cq, Keeps::Env { _env: env })
    }

    /// [`Call::from_raw`] for a server call counted in `live` while it exists (which also
    /// keeps the environment alive).
    ///
    /// # Safety
    /// As for [`Call::from_raw`], with `live`'s environment as `env`.
    pub(crate) unsafe fn from_raw_counted(raw: *mut ffi::grpc_call, cq: Arc<CompletionQueue>, live: LiveCall) -> Call {
        Call::counted(raw, cq, Keeps::Counted { _live: live })
    }

    /// Takes ownership of one reference to `raw`, a call created on `channel`, and keeps
    /// the channel alive as long as the call.
    ///
    /// # Safety
    /// As for [`Call::from_raw`], with `channel` the channel the call was created on.
    pub(crate) unsafe fn from_raw_on(raw: *mut ffi::grpc_call, cq: Arc<CompletionQueue>, channel: &Channel) -> Call {
        Call::counted(raw, cq, Keeps::Channel { _channel: channel.clone() })
    }

    /// Every constructor's end: with write sharing, the call is counted on its queue until
    /// dropped.
    fn counted(raw: *mut ffi::grpc_call, cq: Arc<CompletionQueue>, keeps: Keeps) -> Call {
        #[cfg(shared_writes)]
        cq.call_opened();
        Call { raw, cq, _keeps: keeps }
    }

    /// The raw pointer, still owned by `self` (for parent-call propagation).
    pub(crate) fn as_ptr(&self) -> *mut ffi::grpc_call {
        self.raw
    }

    /// Starts `ops` as one batch that completes with `tag`.
    ///
    /// # Safety
    /// Every pointer inside `ops` must stay valid until the tag's event arrives; the tag
    /// must own (through an `Arc`) whatever they point into.
    ///
    /// With write sharing (`cfg(shared_writes)`: `vendored`, or feature `shared-writes`), a batch started on the call's queue thread while it
    /// handles events waits in that thread's outbox and starts, with the others of the same
    /// round, inside one core execution context (`cq::outbox`); its event comes as usual.
    pub(crate) unsafe fn start_batch(&self, ops: &[ffi::grpc_op], tag: Tag) -> Result<(), Error> {
        #[cfg(shared_writes)]
        if crate::cq::outbox::wants(&self.cq, ops) {
            let Some(borrow) = self.cq.borrow_owned() else {
                return Err(Error::shutdown(ShutdownErrorKind::Environment, "the environment is shutting down"));
            };
            // SAFETY: the call is live (we hold a reference) and bound to `self.cq`, which
            // `wants` checked; the caller guarantees the ops' pointers outlive the batch.
            unsafe { crate::cq::outbox::defer(self.raw, ops, tag, borrow) };
            return Ok(());
        }
        let Some(_borrow) = self.cq.borrow() else {
            return Err(Error::shutdown(ShutdownErrorKind::Environment, "the environment is shutting down"));
        };
        let raw_tag = tag.into_raw();
        // SAFETY: the call is live, its queue is borrowed (not shutting down), and the
        // caller guarantees the ops' pointers outlive the batch.
        let rc = unsafe { ffi::grpc_call_start_batch(self.raw, ops.as_ptr(), ops.len(), raw_tag, ptr::null_mut()) };
        if rc != ffi::GRPC_CALL_OK {
            // SAFETY: the core refused the batch; no event will carry the tag, re-take it now.
            drop(unsafe { Tag::from_raw(raw_tag) });
            return Err(Error::internal_kind(InternalErrorKind::Core, format!(
                "the core refused a batch of {} operations: {}",
                ops.len(),
                call_error_name(rc)
            )));
        }
        Ok(())
    }

    /// After a receive found no message: true if that was because the call failed
    /// (cancelled, deadline, connection lost) rather than a graceful end of stream.
    pub(crate) fn failed_before_recv_message(&self) -> bool {
        // SAFETY: the call is live; this only reads a flag.
        unsafe { ffi::grpc_call_failed_before_recv_message(self.raw) != 0 }
    }

    /// Cancels the call (a no-op if it already finished).
    pub(crate) fn cancel(&self) {
        // SAFETY: the call is live; cancellation is thread-safe and idempotent.
        unsafe { ffi::grpc_call_cancel(self.raw, ptr::null_mut()) };
    }

    /// Cancels the call with a status the peer (and our side) will see.
    pub(crate) fn cancel_with_status(&self, code: Code, message: &str) {
        let msg = std::ffi::CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the call is live; the core copies the description.
        unsafe {
            ffi::grpc_call_cancel_with_status(self.raw, code.as_i32() as ffi::grpc_status_code, msg.as_ptr(), ptr::null_mut())
        };
    }

    /// The peer's address as the core names it (e.g. `ipv4:127.0.0.1:5000`).
    pub(crate) fn peer(&self) -> String {
        // SAFETY: the call is live; the returned string is ours to free with gpr_free.
        unsafe {
            let p = ffi::grpc_call_get_peer(self.raw);
            if p.is_null() {
                return String::new();
            }
            let s = CStr::from_ptr(p).to_string_lossy().into_owned();
            ffi::gpr_free(p as *mut _);
            s
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // SAFETY: we own one reference (see `from_raw`). Unreferencing a call that has not
        // finished cancels it; batches in flight keep their own references in the core.
        unsafe { ffi::grpc_call_unref(self.raw) };
        #[cfg(shared_writes)]
        self.cq.call_closed();
    }
}

pub(crate) fn call_error_name(rc: ffi::grpc_call_error) -> &'static str {
    match rc {
        ffi::GRPC_CALL_ERROR => "GRPC_CALL_ERROR",
        ffi::GRPC_CALL_ERROR_NOT_ON_SERVER => "NOT_ON_SERVER",
        ffi::GRPC_CALL_ERROR_NOT_ON_CLIENT => "NOT_ON_CLIENT",
        ffi::GRPC_CALL_ERROR_ALREADY_INVOKED => "ALREADY_INVOKED",
        ffi::GRPC_CALL_ERROR_NOT_INVOKED => "NOT_INVOKED",
        ffi::GRPC_CALL_ERROR_ALREADY_FINISHED => "ALREADY_FINISHED",
        ffi::GRPC_CALL_ERROR_TOO_MANY_OPERATIONS => "TOO_MANY_OPERATIONS",
        ffi::GRPC_CALL_ERROR_INVALID_FLAGS => "INVALID_FLAGS",
        ffi::GRPC_CALL_ERROR_INVALID_METADATA => "INVALID_METADATA",
        ffi::GRPC_CALL_ERROR_INVALID_MESSAGE => "INVALID_MESSAGE",
        ffi::GRPC_CALL_ERROR_NOT_SERVER_COMPLETION_QUEUE => "NOT_SERVER_COMPLETION_QUEUE",
        ffi::GRPC_CALL_ERROR_BATCH_TOO_BIG => "BATCH_TOO_BIG",
        ffi::GRPC_CALL_ERROR_PAYLOAD_TYPE_MISMATCH => "PAYLOAD_TYPE_MISMATCH",
        ffi::GRPC_CALL_ERROR_COMPLETION_QUEUE_SHUTDOWN => "COMPLETION_QUEUE_SHUTDOWN",
        _ => "unknown call error",
    }
}

/// The shared state of one batch: its C-visible buffers plus a completion flag and waker.
/// It is its own tag (see the tag protocol in `cq`).
///
/// A batch has one waiter, or two when its state says so
/// ([`OnComplete::second_waiter`]): a joint send-and-receive batch of a stream is waited for
/// by the call's sending half ([`Batch::poll_done`]) and by its receiving half
/// ([`Batch::poll_done_second`]), which may be polled by different tasks.
#[repr(C)]
pub(crate) struct Batch<S> {
    header: TagHeader,
    done: AtomicBool,
    success: AtomicBool,
    waker: AtomicWaker,
    second_waker: AtomicWaker,
    state: UnsafeCell<S>,
}

// SAFETY: `state` is accessed by the core while the batch runs and by the Rust owner only
// after `done` is observed (Acquire, paired with the Release in `complete`), never both.
unsafe impl<S: Send> Send for Batch<S> {}
// SAFETY: as above.
unsafe impl<S: Send> Sync for Batch<S> {}

/// A batch state's hook, run on the CQ thread when the batch completes, before anyone
/// else may read the state.
pub(crate) trait OnComplete {
    /// Called once with the batch's outcome.
    fn on_complete(&mut self, _success: bool) {}

    /// True if the batch may have a second waiter to wake (read once, after `on_complete`).
    fn second_waiter(&self) -> bool {
        false
    }
}

impl OnComplete for () {}

impl<S: OnComplete + Send + 'static> Batch<S> {
    pub(crate) fn new(state: S) -> Arc<Batch<S>> {
        Arc::new(Batch {
            header: TagHeader::for_arc::<Batch<S>>(),
            done: AtomicBool::new(false),
            success: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            second_waker: AtomicWaker::new(),
            state: UnsafeCell::new(state),
        })
    }

    /// The state of a batch that only `this` references (so the core is done with it and
    /// no one else can read it), with the completion flag and waker reset so the allocation
    /// can carry another batch; `None` if another reference exists.
    pub(crate) fn reusable(this: &mut Arc<Self>) -> Option<&mut S> {
        let b = Arc::get_mut(this)?;
        *b.done.get_mut() = false;
        *b.success.get_mut() = false;
        b.waker = AtomicWaker::new();
        b.second_waker = AtomicWaker::new();
        Some(b.state.get_mut())
    }

    /// A batch carrying `state`: `spare`'s allocation if nothing else references it (its old
    /// state is dropped), else a new one.
    pub(crate) fn reuse_or_new(spare: Option<Arc<Self>>, state: S) -> Arc<Self> {
        match spare {
            Some(mut batch) => match Batch::reusable(&mut batch) {
                Some(old) => {
                    *old = state;
                    batch
                }
                None => Batch::new(state),
            },
            None => Batch::new(state),
        }
    }

    /// Pointer to the state, for filling in ops before the batch starts.
    pub(crate) fn state_ptr(&self) -> *mut S {
        self.state.get()
    }

    /// The tag that completes this batch.
    pub(crate) fn tag(self: &Arc<Self>) -> Tag {
        Tag::from_arc(self)
    }

    /// `Some(success)` once the batch has completed; otherwise registers the waker.
    pub(crate) fn poll_done(&self, cx: &mut Context<'_>) -> Option<bool> {
        if self.done.load(Ordering::Acquire) {
            return Some(self.success.load(Ordering::Relaxed));
        }
        self.waker.register(cx.waker());
        self.done
            .load(Ordering::Acquire)
            .then(|| self.success.load(Ordering::Relaxed))
    }

    /// [`Batch::poll_done`] for the batch's second waiter (see [`OnComplete::second_waiter`]).
    pub(crate) fn poll_done_second(&self, cx: &mut Context<'_>) -> Option<bool> {
        if self.done.load(Ordering::Acquire) {
            return Some(self.success.load(Ordering::Relaxed));
        }
        self.second_waker.register(cx.waker());
        self.done
            .load(Ordering::Acquire)
            .then(|| self.success.load(Ordering::Relaxed))
    }

    /// True once the batch has completed.
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The state, after completion.
    ///
    /// # Safety
    /// The batch must be done (`poll_done` returned `Some`) and the caller must be the only
    /// one reading the state (the one Rust owner of the batch).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn state_mut(&self) -> &mut S {
        debug_assert!(self.is_done());
        // SAFETY: guaranteed by the caller.
        unsafe { &mut *self.state.get() }
    }
}

impl<S: OnComplete + Send + 'static> Batch<S> {
    /// Records the outcome and wakes whoever waits.
    pub(crate) fn complete(&self, success: bool) {
        // SAFETY: the core is done with the state and no Rust reader may touch it before
        // `done` is set below, so this is the only access.
        let second = unsafe {
            let s = &mut *self.state.get();
            s.on_complete(success);
            s.second_waiter()
        };
        self.success.store(success, Ordering::Relaxed);
        self.done.store(true, Ordering::Release);
        self.waker.wake();
        if second {
            self.second_waker.wake();
        }
    }
}

// SAFETY: `Batch` is `#[repr(C)]` with the header made by `for_arc::<Batch<S>>` first.
unsafe impl<S: OnComplete + Send + 'static> ArcTag for Batch<S> {
    fn on_event(self: Arc<Self>, success: bool) {
        self.complete(success);
    }
}
