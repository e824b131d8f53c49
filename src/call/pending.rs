//! Client calls whose start waits for an asynchronous interceptor.
//!
//! A channel's interceptors run when a call is made. When they all finish without waiting
//! (the usual case) the call starts there and then, and nothing here is used. When one of
//! them waits (for a token, a rate limiter), the rest of the start becomes a future that
//! the call's handles drive when they are polled: in the caller's task and runtime, so an
//! interceptor may await anything its caller could. A unary call has one handle, which owns
//! its start ([`OwnedStart`]); a streaming call's two handles share theirs
//! ([`SharedStart`]), and whichever is polled drives it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// The rest of a call's start: resolves once the interceptors have run and the call has
/// been created (or failed).
pub(crate) type StartFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A start driven by the one handle that owns it.
pub(crate) struct OwnedStart<T> {
    /// Behind a mutex only so the handle stays `Sync`: it is reached through `&mut`, never
    /// locked.
    future: Mutex<StartFuture<T>>,
}

impl<T> OwnedStart<T> {
    pub(crate) fn new(future: StartFuture<T>) -> Self {
        OwnedStart { future: Mutex::new(future) }
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        self.future.get_mut().unwrap_or_else(PoisonError::into_inner).as_mut().poll(cx)
    }
}

/// A start shared by a streaming call's two handles.
pub(crate) struct SharedStart<T> {
    state: Mutex<Shared<T>>,
    /// The tasks of the handles waiting for the start; the future is polled with a waker
    /// that wakes them all, whichever handle polled it last.
    waiting: Arc<Waiting>,
}

enum Shared<T> {
    Running(StartFuture<T>),
    Done(T),
}

impl<T: Clone> SharedStart<T> {
    pub(crate) fn new(future: StartFuture<T>) -> Arc<Self> {
        Arc::new(SharedStart {
            state: Mutex::new(Shared::Running(future)),
            waiting: Arc::new(Waiting::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drives the start; once it has finished, every handle gets its outcome.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = self.lock();
        let Shared::Running(future) = &mut *state else {
            let Shared::Done(outcome) = &*state else { unreachable!() };
            return Poll::Ready(outcome.clone());
        };
        self.waiting.add(cx.waker());
        let waker = Waker::from(self.waiting.clone());
        match future.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(outcome) => {
                *state = Shared::Done(outcome.clone());
                drop(state);
                // The other handle may be waiting too.
                self.waiting.wake_all();
                Poll::Ready(outcome)
            }
        }
    }

    /// Cancels the call: a start still running is abandoned and both handles get
    /// `cancelled`; a call already started is handed to `cancel_started`.
    pub(crate) fn cancel(&self, cancelled: T, cancel_started: impl FnOnce(&T)) {
        let mut state = self.lock();
        match &*state {
            Shared::Done(outcome) => cancel_started(outcome),
            Shared::Running(_) => {
                let abandoned = std::mem::replace(&mut *state, Shared::Done(cancelled));
                drop(state);
                // Dropped outside the lock: the interceptors' futures and the end of the
                // call they observe run user code.
                drop(abandoned);
                self.waiting.wake_all();
            }
        }
    }
}

/// The wakers of the handles waiting for a shared start.
#[derive(Default)]
struct Waiting(Mutex<Vec<Waker>>);

impl Waiting {
    fn add(&self, waker: &Waker) {
        let mut wakers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }

    fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Wake for Waiting {
    fn wake(self: Arc<Self>) {
        self.wake_all();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_all();
    }
}
