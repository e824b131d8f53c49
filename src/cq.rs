//! Completion queues and the tag protocol.
//!
//! # The tag protocol
//!
//! Every operation we start on the core carries a *tag*: a pointer to a heap object that
//! begins with a [`TagHeader`] (a `#[repr(C)]` first field naming the object's
//! [`TagVTable`]). A [`Tag`] owns one reference to that object (one `Arc` count, or the
//! `Box` itself). The reference is handed to the core with [`Tag::into_raw`] when the
//! operation is accepted and re-taken with [`Tag::from_raw`] by the CQ thread when its
//! event comes out of `grpc_completion_queue_next` — exactly once, because the core
//! delivers exactly one event per accepted operation. When the core *refuses* an operation
//! (a call error), no event will come, so the caller re-takes the tag on the spot and drops
//! it, which releases the reference ([`CompletionQueue::post`], `Call::start_batch`).
//! Everything an operation's C side points at (metadata arrays, status slices, byte
//! buffers) lives in the tag object, so it stays alive until the event, whatever the Rust
//! side (a dropped future, say) does meanwhile. No allocation is made for the tag itself:
//! the object the operation needs anyway is the tag.
//!
//! # Shutdown
//!
//! Starting an operation on a queue that is shutting down is a fatal assertion in the core,
//! so every start first *borrows* the queue ([`CompletionQueue::borrow`]): a counter with a
//! shutdown bit. After [`CompletionQueue::begin_shutdown`] no new borrow succeeds, and the
//! core's `grpc_completion_queue_shutdown` is called exactly once, by whoever releases the
//! last borrow (or by `begin_shutdown` itself if there is none). The counter is pure logic
//! in `gate.rs` ([`ShutdownGate`]), with no FFI: its loom model checks this.

use std::ffi::CString;
use std::os::raw::c_void;
use std::ptr::{self, NonNull};
use std::sync::{Arc, OnceLock};

use grpcore_sys as ffi;

mod gate;
#[cfg(shared_writes)]
pub(crate) mod outbox;

use gate::ShutdownGate;

/// What to do with a tag object: run its completion, or just release it.
pub(crate) struct TagVTable {
    /// Consumes the tag's reference and handles the event.
    complete: unsafe fn(NonNull<TagHeader>, bool),
    /// Consumes the tag's reference without an event.
    release: unsafe fn(NonNull<TagHeader>),
}

/// The first field of every tag object (which must be `#[repr(C)]`).
#[repr(C)]
pub(crate) struct TagHeader {
    vtable: &'static TagVTable,
}

impl TagHeader {
    /// The header of an object whose `Arc` is used as a tag.
    pub(crate) const fn for_arc<T: ArcTag>() -> TagHeader {
        TagHeader {
            vtable: &TagVTable {
                complete: complete_arc::<T>,
                release: release_arc::<T>,
            },
        }
    }

    /// The header of an object whose `Box` is used as a tag.
    pub(crate) const fn for_box<T: BoxTag>() -> TagHeader {
        TagHeader {
            vtable: &TagVTable {
                complete: complete_box::<T>,
                release: release_box::<T>,
            },
        }
    }
}

/// An object shared through an `Arc` that can serve as a tag.
///
/// # Safety
/// The type must be `#[repr(C)]` with a [`TagHeader`] made by [`TagHeader::for_arc`]
/// for this very type as its first field.
pub(crate) unsafe trait ArcTag: Send + Sync + Sized + 'static {
    /// Handles the event (on the CQ thread).
    fn on_event(self: Arc<Self>, success: bool);
}

/// An object owned through a `Box` that can serve as a tag.
///
/// # Safety
/// As for [`ArcTag`], with [`TagHeader::for_box`].
pub(crate) unsafe trait BoxTag: Send + Sized + 'static {
    /// Handles the event (on the CQ thread).
    fn on_event(self: Box<Self>, success: bool);
}

unsafe fn complete_arc<T: ArcTag>(p: NonNull<TagHeader>, success: bool) {
    // SAFETY: `p` came from `Arc::into_raw` of an `Arc<T>` (see `Tag::from_arc`); the header
    // is at offset 0 of `T`, so the pointers are the same.
    let arc = unsafe { Arc::from_raw(p.as_ptr() as *const T) };
    arc.on_event(success);
}

unsafe fn release_arc<T: ArcTag>(p: NonNull<TagHeader>) {
    // SAFETY: as in `complete_arc`.
    drop(unsafe { Arc::from_raw(p.as_ptr() as *const T) });
}

unsafe fn complete_box<T: BoxTag>(p: NonNull<TagHeader>, success: bool) {
    // SAFETY: `p` came from `Box::into_raw` of a `Box<T>` (see `Tag::from_box`).
    let boxed = unsafe { Box::from_raw(p.as_ptr() as *mut T) };
    boxed.on_event(success);
}

unsafe fn release_box<T: BoxTag>(p: NonNull<TagHeader>) {
    // SAFETY: as in `complete_box`.
    drop(unsafe { Box::from_raw(p.as_ptr() as *mut T) });
}

/// One owned reference to a tag object. Dropping it releases the reference.
pub(crate) struct Tag {
    raw: NonNull<TagHeader>,
}

// SAFETY: tag objects are `Send` (and `Sync` when shared through an `Arc`), as the traits
// above require; a `Tag` is just one owned reference to one.
unsafe impl Send for Tag {}

static DRAIN_VTABLE: TagVTable = TagVTable {
    complete: |_, _| {},
    release: |_| {},
};
static DRAIN: TagHeader = TagHeader { vtable: &DRAIN_VTABLE };

impl Tag {
    /// A tag holding one more reference to `this`.
    pub(crate) fn from_arc<T: ArcTag>(this: &Arc<T>) -> Tag {
        let raw = Arc::into_raw(this.clone()) as *mut TagHeader;
        // SAFETY: `Arc::into_raw` never returns null.
        Tag { raw: unsafe { NonNull::new_unchecked(raw) } }
    }

    /// A tag owning `this`.
    pub(crate) fn from_box<T: BoxTag>(this: Box<T>) -> Tag {
        let raw = Box::into_raw(this) as *mut TagHeader;
        // SAFETY: `Box::into_raw` never returns null.
        Tag { raw: unsafe { NonNull::new_unchecked(raw) } }
    }

    /// A tag whose event only makes the queue's thread drain its run queue.
    pub(crate) fn drain() -> Tag {
        Tag { raw: NonNull::from(&DRAIN) }
    }

    /// Hands the reference to the core as the `void*` it carries.
    pub(crate) fn into_raw(self) -> *mut c_void {
        let raw = self.raw;
        std::mem::forget(self);
        raw.as_ptr() as *mut c_void
    }

    /// Re-takes a reference handed out by [`Tag::into_raw`].
    ///
    /// # Safety
    /// `raw` must come from `Tag::into_raw` and be re-taken only once.
    pub(crate) unsafe fn from_raw(raw: *mut c_void) -> Tag {
        // SAFETY: guaranteed by the caller; `into_raw` never hands out null.
        Tag { raw: unsafe { NonNull::new_unchecked(raw as *mut TagHeader) } }
    }

    /// Runs on the CQ thread when the tag's event arrives; consumes the reference.
    pub(crate) fn complete(self, success: bool) {
        let raw = self.raw;
        std::mem::forget(self);
        // SAFETY: `raw` points to a live tag object (we own a reference) whose header names
        // its vtable; `complete` consumes exactly that reference.
        unsafe { (raw.as_ref().vtable.complete)(raw, success) }
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        // SAFETY: as in `complete`, for `release`.
        unsafe { (self.raw.as_ref().vtable.release)(self.raw) }
    }
}

/// One core completion queue (NEXT type), plus the dummy call used to post wake-ups.
pub(crate) struct CompletionQueue {
    raw: *mut ffi::grpc_completion_queue,
    /// Borrow count, with a shutdown bit.
    gate: ShutdownGate,
    /// The wake-up call, made by the first [`post`](Self::post): an idle server whose
    /// tasks are never woken from another thread never runs the core's client-call code
    /// (one 64 KiB window of libgrpc's text fewer resident, benches/README.md, issue #18
    /// target 4).
    kick: OnceLock<KickCall>,
    /// Index among the environment's queues (for naming and round-robin).
    pub(crate) index: usize,
    /// Calls bound to this queue whose [`Call`](crate::call::Call) exists. With one or none
    /// there is no other call's write to share, so the outbox's policy, once direct, does
    /// not probe for load.
    #[cfg(shared_writes)]
    calls: std::sync::atomic::AtomicUsize,
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
        self.cq.release_borrow();
    }
}

/// A borrow that holds its queue alive too, for an operation started later (the outbox of
/// write sharing, `cfg(shared_writes)`).
#[cfg(shared_writes)]
pub(crate) struct OwnedCqBorrow {
    cq: Arc<CompletionQueue>,
}

#[cfg(shared_writes)]
impl OwnedCqBorrow {
    /// The queue's raw pointer, valid while the borrow lives.
    pub(crate) fn raw(&self) -> *mut ffi::grpc_completion_queue {
        self.cq.raw
    }
}

#[cfg(shared_writes)]
impl Drop for OwnedCqBorrow {
    fn drop(&mut self) {
        self.cq.release_borrow();
    }
}

/// The target of each queue's wake-up channel (channelz leaves these channels out).
pub(crate) const KICK_TARGET: &str = "grpcore.kick";

impl CompletionQueue {
    /// Creates a queue (its wake-up call comes with the first `post`). Needs `grpc_init` to
    /// have run.
    pub(crate) fn new(index: usize) -> CompletionQueue {
        // SAFETY: a plain constructor.
        let raw = unsafe { ffi::grpc_completion_queue_create_for_next(ptr::null_mut()) };
        CompletionQueue {
            raw,
            gate: ShutdownGate::new(),
            kick: OnceLock::new(),
            index,
            #[cfg(shared_writes)]
            calls: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Counts a call bound to this queue (its `Call` was made).
    #[cfg(shared_writes)]
    pub(crate) fn call_opened(&self) {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Uncounts a call bound to this queue (its `Call` was dropped).
    #[cfg(shared_writes)]
    pub(crate) fn call_closed(&self) {
        self.calls.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many calls bound to this queue exist (a hint: calls are made and dropped on any
    /// thread).
    #[cfg(shared_writes)]
    pub(crate) fn open_calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Borrows the queue for starting an operation; `None` once shutdown has begun.
    pub(crate) fn borrow(&self) -> Option<CqBorrow<'_>> {
        self.gate.try_borrow().then_some(CqBorrow { cq: self })
    }

    /// As [`CompletionQueue::borrow`], for a borrow that outlives the caller's reference.
    #[cfg(shared_writes)]
    pub(crate) fn borrow_owned(self: &Arc<Self>) -> Option<OwnedCqBorrow> {
        self.gate.try_borrow().then(|| OwnedCqBorrow { cq: self.clone() })
    }

    /// Ends one borrow; the last one after `begin_shutdown` shuts the core queue down.
    fn release_borrow(&self) {
        if self.gate.release() {
            self.shutdown_now();
        }
    }

    /// Stops new operations; the core queue shuts down when the last borrow ends.
    pub(crate) fn begin_shutdown(&self) {
        if self.gate.begin_shutdown() {
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
        let kick = self.kick.get_or_init(|| KickCall::new(self.raw)).call;
        let raw = tag.into_raw();
        // SAFETY: `kick` is bound to this queue, which the borrow keeps open; an empty
        // batch is accepted unconditionally and completes at once with `raw` as its tag.
        let rc = unsafe { ffi::grpc_call_start_batch(kick, ptr::null(), 0, raw, ptr::null_mut()) };
        if rc != ffi::GRPC_CALL_OK {
            // SAFETY: the core refused the batch, so no event will carry `raw`: re-take it here.
            return Err(unsafe { Tag::from_raw(raw) });
        }
        Ok(())
    }

    /// Whether the wake-up call exists yet (it is made by the first `post`).
    #[cfg(test)]
    pub(crate) fn has_kick_call(&self) -> bool {
        self.kick.get().is_some()
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

    /// The next event if one is ready now, else `GRPC_QUEUE_TIMEOUT` at once. Only the
    /// queue's own thread calls this.
    #[cfg(shared_writes)]
    pub(crate) fn poll_now(&self) -> ffi::grpc_event {
        // SAFETY: as in `next`.
        unsafe {
            ffi::grpc_completion_queue_next(self.raw, ffi::gpr_inf_past(ffi::GPR_CLOCK_MONOTONIC), ptr::null_mut())
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
            if let Some(kick) = self.kick.get() {
                ffi::grpc_call_unref(kick.call);
                ffi::grpc_channel_destroy(kick.channel);
            }
            ffi::grpc_completion_queue_destroy(self.raw);
        }
    }
}

/// A call bound to one queue that is never started: an empty batch on it posts its tag at
/// once, which is how another thread wakes the queue's thread (no `grpc_alarm` in the C API
/// of 1.51). Freed by [`CompletionQueue::destroy`], which owns it.
struct KickCall {
    /// A never-connecting channel that owns `call`.
    channel: *mut ffi::grpc_channel,
    call: *mut ffi::grpc_call,
}

impl KickCall {
    /// Makes the channel and the call on `cq`, which must be open (the caller holds a borrow).
    fn new(cq: *mut ffi::grpc_completion_queue) -> KickCall {
        let target = CString::new(KICK_TARGET).unwrap();
        let msg = CString::new("grpcore wake-up channel").unwrap();
        // SAFETY: plain constructors; `cq` is open (the caller's borrow), the method slice is
        // static and copied by the core.
        unsafe {
            let channel = ffi::grpc_lame_client_channel_create(target.as_ptr(), ffi::GRPC_STATUS_UNAVAILABLE, msg.as_ptr());
            let method = ffi::grpc_slice_from_static_string(c"/grpcore.Kick/Kick".as_ptr());
            let call = ffi::grpc_channel_create_call(
                channel,
                ptr::null_mut(),
                ffi::GRPC_PROPAGATE_DEFAULTS,
                cq,
                method,
                ptr::null(),
                ffi::gpr_inf_future(ffi::GPR_CLOCK_REALTIME),
                ptr::null_mut(),
            );
            KickCall { channel, call }
        }
    }
}
