//! The completion-queue executor: tasks that are polled on their queue's thread.
//!
//! A task is a boxed future bound to one completion queue. It is only ever polled on that
//! queue's thread. Waking it on that thread pushes it onto the thread's run queue (no core
//! round trip); waking it from any other thread posts a *kick* — an empty batch on the
//! queue's dummy call, whose completion event carries the task back to its thread.
//!
//! The state machine (one atomic byte) guarantees that at most one schedule entry exists
//! per task, so the future is polled by one thread at a time without a lock:
//!
//! ```text
//! IDLE --wake--> SCHEDULED --run--> RUNNING --Pending--> IDLE
//!                                      |  \--wake--> NOTIFIED --Pending--> SCHEDULED
//!                                      \--Ready/panic--> DONE
//! ```
//! The pure state logic is in `state.rs` ([`TaskState`]), with no FFI: its loom models
//! check these guarantees under every interleaving.

use std::any::TypeId;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::task::{waker_ref, ArcWake};

use crate::cq::{ArcTag, CompletionQueue, Tag, TagHeader};

mod state;

use state::TaskState;

/// A future bound to one completion queue, stored inline (one allocation per task). It is
/// its own kick tag.
#[repr(C)]
pub(crate) struct Task<F> {
    header: TagHeader,
    state: TaskState,
    cq: Arc<CompletionQueue>,
    future: UnsafeCell<Option<F>>,
}

// SAFETY: the future is `Send`; `future` is only touched by whoever holds the single
// schedule entry (state SCHEDULED → RUNNING), which the state machine makes unique.
unsafe impl<F: Send> Send for Task<F> {}
// SAFETY: as above; all other fields are thread-safe.
unsafe impl<F: Send> Sync for Task<F> {}

/// A task of any future type, as the run queue holds it.
trait Runnable: Send + Sync {
    /// Polls the task once (see `Task::run`).
    fn run(self: Arc<Self>);
    /// Drops the task's future unpolled (see `Task::cancel`).
    fn cancel(&self);
}

thread_local! {
    /// The queue whose thread this is (null on other threads).
    static CURRENT_CQ: Cell<*const CompletionQueue> = const { Cell::new(std::ptr::null()) };
    /// True while this queue thread handles an event (and drains its run queue afterwards);
    /// false while it is inside `grpc_completion_queue_next`, where the core may run its
    /// callbacks (credential plugins, certificate fetchers…) on this very thread.
    static DISPATCHING: Cell<bool> = const { Cell::new(false) };
    /// How many tasks are ready to run on this thread: in `NEXT` and `RUN_QUEUE` together.
    static QUEUED: Cell<usize> = const { Cell::new(0) };
    /// The oldest ready task, when it was queued onto an empty queue: the common case of
    /// one task woken per event never touches `RUN_QUEUE` (whose thread-local needs a
    /// destructor, so every access checks its state). Holds one `Arc` as a raw pointer.
    static NEXT: Cell<Option<NonNull<dyn Runnable>>> = const { Cell::new(None) };
    /// Ready tasks queued behind `NEXT`, oldest first.
    static RUN_QUEUE: RefCell<VecDeque<Arc<dyn Runnable>>> = const { RefCell::new(VecDeque::new()) };
    /// A finished task of this queue thread that nothing else references, kept so that the
    /// next task spawned here with the same future type reuses its allocation (see [`Spare`]).
    static SPARE: Cell<Option<Spare>> = const { Cell::new(None) };
}

/// A finished task kept for reuse: one `Arc<Task<F>>` as a raw pointer, with the `TypeId`
/// of `Task<F>` and the function that drops it.
///
/// A unary handler's task lives for one event: spawned when its call arrives, polled once
/// right after, done. Reusing the last one's memory for the next spares a `malloc` and a
/// `free` per call (benches/README.md, issue #18 target 5). Only a task that nothing else
/// references (no waker, no queued entry: its `Arc` is unique) is kept, so nobody can
/// observe the reuse.
#[derive(Clone, Copy)]
struct Spare {
    task: *const (),
    type_id: TypeId,
    drop: unsafe fn(*const ()),
}

/// Drops a spare task of future type `F`.
///
/// # Safety
/// `task` comes from `Arc::into_raw` of an `Arc<Task<F>>`, and is dropped once.
unsafe fn drop_spare<F>(task: *const ()) {
    // SAFETY: the caller's contract.
    drop(unsafe { Arc::from_raw(task as *const Task<F>) });
}

/// Keeps `task` (finished, its future dropped, its `Arc` unique) for the next spawn on this
/// thread, dropping the spare it replaces.
fn keep_spare<F: Future<Output = ()> + Send + 'static>(task: Arc<Task<F>>) {
    let spare = Spare {
        task: Arc::into_raw(task) as *const (),
        type_id: TypeId::of::<Task<F>>(),
        drop: drop_spare::<F>,
    };
    if let Some(old) = SPARE.replace(Some(spare)) {
        // SAFETY: `old` was stored by `keep_spare` with its own type's drop, and is out of
        // `SPARE` now, so it is dropped once.
        unsafe { (old.drop)(old.task) };
    }
}

/// The spare task, if it is a `Task<F>`.
fn take_spare<F: Future<Output = ()> + Send + 'static>() -> Option<Arc<Task<F>>> {
    let spare = SPARE.get()?;
    if spare.type_id != TypeId::of::<Task<F>>() {
        return None;
    }
    SPARE.set(None);
    // SAFETY: stored by `keep_spare::<F>` (same `TypeId`) from `Arc::into_raw` of an
    // `Arc<Task<F>>`, and taken out of `SPARE` once, here.
    Some(unsafe { Arc::from_raw(spare.task as *const Task<F>) })
}

/// Drops this thread's spare task, if any.
fn drop_spare_task() {
    if let Some(old) = SPARE.take() {
        // SAFETY: as in `keep_spare`: stored with its own drop, taken out once.
        unsafe { (old.drop)(old.task) };
    }
}

/// Queues `task` to run on this thread after the ones already queued.
fn push_ready(task: Arc<dyn Runnable>) {
    let queued = QUEUED.get();
    QUEUED.set(queued + 1);
    if queued == 0 {
        let raw = Arc::into_raw(task) as *mut dyn Runnable;
        // `Arc::into_raw` never returns null.
        NEXT.set(NonNull::new(raw));
    } else {
        RUN_QUEUE.with(|q| q.borrow_mut().push_back(task));
    }
}

/// The oldest task queued on this thread, if any.
fn pop_ready() -> Option<Arc<dyn Runnable>> {
    let queued = QUEUED.get();
    if queued == 0 {
        return None;
    }
    QUEUED.set(queued - 1);
    match NEXT.take() {
        // SAFETY: `NEXT` holds a pointer from `Arc::into_raw` in `push_ready`, taken out
        // exactly once (here or in `leave_cq_thread`).
        Some(raw) => Some(unsafe { Arc::from_raw(raw.as_ptr()) }),
        None => RUN_QUEUE.with(|q| q.borrow_mut().pop_front()),
    }
}

/// How many tasks one drain polls before letting the queue deliver events again.
const DRAIN_BUDGET: usize = 256;

/// True when the calling thread is the thread of `cq`.
pub(crate) fn on_cq_thread(cq: &CompletionQueue) -> bool {
    CURRENT_CQ.with(|c| std::ptr::eq(c.get(), cq))
}

/// True when a task of `cq` woken now would be run by this thread's drain: we are on the
/// queue's thread and handling an event, not inside `grpc_completion_queue_next` (where a
/// queued task would wait for some unrelated event to come out first).
pub(crate) fn drained_here(cq: &CompletionQueue) -> bool {
    on_cq_thread(cq) && DISPATCHING.with(Cell::get)
}

/// Marks the start (`true`) and end (`false`) of handling one event on a queue thread.
pub(crate) fn set_dispatching(on: bool) {
    DISPATCHING.with(|d| d.set(on));
}

/// True when the calling thread is any completion-queue thread.
pub(crate) fn on_any_cq_thread() -> bool {
    CURRENT_CQ.with(|c| !c.get().is_null())
}

/// The queue of the calling thread, if it is a completion-queue thread.
pub(crate) fn current_cq_index() -> Option<usize> {
    CURRENT_CQ.with(|c| {
        let p = c.get();
        // SAFETY: set by `enter_cq_thread` to a queue kept alive by that thread's `Arc`
        // for as long as the pointer is set.
        (!p.is_null()).then(|| unsafe { (*p).index })
    })
}

/// Marks the calling thread as the thread of `cq` (for its whole life).
pub(crate) fn enter_cq_thread(cq: &Arc<CompletionQueue>) {
    CURRENT_CQ.with(|c| c.set(Arc::as_ptr(cq)));
}

/// Clears the marker and drops every task still queued (the queue is gone).
pub(crate) fn leave_cq_thread() {
    while let Some(task) = pop_ready() {
        task.cancel();
    }
    drop_spare_task();
    CURRENT_CQ.with(|c| c.set(std::ptr::null()));
}

/// Polls queued tasks; if the budget runs out, posts a wake-up so the rest run after the
/// events already waiting.
pub(crate) fn drain_run_queue(cq: &CompletionQueue) {
    for _ in 0..DRAIN_BUDGET {
        let Some(task) = pop_ready() else {
            return;
        };
        task.run();
    }
    if QUEUED.get() > 0 {
        let _ = cq.post(Tag::drain());
    }
}

/// Spawns `future` on `cq`: queued to run right after the current event if we are on its
/// thread (never polled re-entrantly inside another task's poll), else kicked over.
pub(crate) fn spawn<F: Future<Output = ()> + Send + 'static>(cq: Arc<CompletionQueue>, future: F) {
    if let Some(mut task) = take_spare::<F>() {
        // Unique when it was kept, and nothing could have cloned it since.
        if let Some(t) = Arc::get_mut(&mut task) {
            t.state = TaskState::new(true);
            t.cq = cq;
            *t.future.get_mut() = Some(future);
            task.schedule();
            return;
        }
    }
    let task = Arc::new(Task {
        header: TagHeader::for_arc::<Task<F>>(),
        state: TaskState::new(true),
        cq,
        future: UnsafeCell::new(Some(future)),
    });
    task.schedule();
}

impl<F: Future<Output = ()> + Send + 'static> Task<F> {

    fn schedule(self: Arc<Self>) {
        if drained_here(&self.cq) {
            push_ready(self);
        } else {
            self.schedule_remote();
        }
    }

    fn schedule_remote(self: Arc<Self>) {
        if self.cq.post(Tag::from_arc(&self)).is_err() {
            // The queue is shutting down: nobody will ever poll the task again.
            self.cancel();
        }
    }

}

impl<F: Future<Output = ()> + Send + 'static> Runnable for Task<F> {
    /// Drops the future without polling it. Only the holder of the schedule entry calls this.
    fn cancel(&self) {
        self.state.finish();
        // SAFETY: we hold the task's only schedule entry, so nobody else touches `future`.
        drop_future(unsafe { &mut *self.future.get() });
    }

    /// Polls the future once. Only the holder of the schedule entry calls this, on the
    /// queue's thread.
    fn run(self: Arc<Self>) {
        self.state.start_run();
        // A waker borrowing our `Arc`: no reference is taken unless the future keeps a clone.
        let waker = waker_ref(&self);
        let mut cx = Context::from_waker(&waker);
        // SAFETY: we hold the task's only schedule entry (state RUNNING), so this is the only
        // access to `future` until the state changes below.
        let slot = unsafe { &mut *self.future.get() };
        let Some(future) = slot.as_mut() else {
            self.state.finish();
            return;
        };
        // SAFETY: the future lives inline in the task's `Arc` allocation and is never moved:
        // it is only ever dropped in place (`drop_future`).
        let future = unsafe { Pin::new_unchecked(future) };
        match catch_unwind(AssertUnwindSafe(|| future.poll(&mut cx))) {
            Ok(Poll::Pending) => {
                if self.state.end_run_pending() {
                    self.clone().schedule();
                }
            }
            Ok(Poll::Ready(())) => {
                self.state.finish();
                drop_future(slot);
                // Nothing else holds the task (no waker, no queued entry): keep its memory
                // for the next task of this type spawned on this thread.
                if Arc::strong_count(&self) == 1 && Arc::weak_count(&self) == 0 && on_cq_thread(&self.cq) {
                    keep_spare(self);
                }
            }
            Err(panic) => {
                self.state.finish();
                drop_future(slot);
                log::error!("a task spawned on the completion queue panicked: {}", panic_message(&*panic));
            }
        }
    }
}

impl<F> Drop for Task<F> {
    /// The last reference went away (a waker dropped anywhere, a released tag) while the
    /// future was still pending: drop it here, never unwinding into whoever let go.
    fn drop(&mut self) {
        drop_future(self.future.get_mut());
    }
}

/// Drops a task's future in place (it is pinned) inside `catch_unwind`. The drop can run on
/// a queue thread (in its drain loop or at its shutdown), inside a waker called from any
/// thread, or in the core's callbacks: a panicking `Drop` is logged, never propagated.
fn drop_future<F>(slot: &mut Option<F>) {
    if slot.is_none() {
        return;
    }
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| *slot = None)) {
        // SAFETY: the old value's drop has run (and panicked); write `None` over whatever is
        // left without dropping it again, so the slot is valid and its future never dropped twice.
        unsafe { std::ptr::write(slot, None) };
        log::error!(
            "dropping a future spawned on the completion queue panicked: {}",
            panic_message(&*panic)
        );
    }
}

// SAFETY: `Task<F>` is `#[repr(C)]` with the header made by `for_arc::<Task<F>>` first.
unsafe impl<F: Future<Output = ()> + Send + 'static> ArcTag for Task<F> {
    fn on_event(self: Arc<Self>, _success: bool) {
        self.run();
    }
}

impl<F: Future<Output = ()> + Send + 'static> ArcWake for Task<F> {
    fn wake(self: Arc<Self>) {
        if self.state.wake() {
            self.schedule();
        }
    }

    fn wake_by_ref(arc_self: &Arc<Self>) {
        if arc_self.state.wake() {
            arc_self.clone().schedule();
        }
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
