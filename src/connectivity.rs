//! Channel connectivity: the state of a channel's connections, and futures that watch it.
//!
//! A watch is one core operation (`grpc_channel_watch_connectivity_state`) that completes on
//! one of the environment's queues like a batch does: its tag is a [`Batch`] whose state
//! holds the channel, so the channel (and with it the environment and its queues) outlives
//! the watch whatever happens to the future. This module never changes connectivity itself
//! beyond asking the channel to connect.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use grpcore_sys as ffi;

use crate::call::{Batch, OnComplete};
use crate::channel::{Channel, ChannelInner};
use crate::error::{Error, ShutdownErrorKind};
use crate::status::{Code, Status};

/// The state of a channel's connections, as the core reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectivityState {
    /// No connection and none being made: the channel connects when a call (or
    /// [`Channel::state`]`(true)`) asks it to. Where every channel starts.
    Idle,
    /// Resolving the target or connecting.
    Connecting,
    /// Connected: calls go out at once.
    Ready,
    /// The last attempt failed; the channel retries after a backoff. Calls without
    /// wait-for-ready fail with `UNAVAILABLE` meanwhile.
    TransientFailure,
    /// The channel is shut down; it never leaves this state.
    Shutdown,
}

impl ConnectivityState {
    /// The state for the core's `grpc_connectivity_state` number. The core reports only the
    /// five values above; anything else (a newer core, say) reads as `TransientFailure`:
    /// "not usable now", the least that can be promised.
    pub(crate) fn from_raw(raw: ffi::grpc_connectivity_state) -> ConnectivityState {
        match raw {
            ffi::GRPC_CHANNEL_IDLE => ConnectivityState::Idle,
            ffi::GRPC_CHANNEL_CONNECTING => ConnectivityState::Connecting,
            ffi::GRPC_CHANNEL_READY => ConnectivityState::Ready,
            ffi::GRPC_CHANNEL_TRANSIENT_FAILURE => ConnectivityState::TransientFailure,
            ffi::GRPC_CHANNEL_SHUTDOWN => ConnectivityState::Shutdown,
            other => {
                log::debug!("unknown connectivity state {other} from the core, read as TransientFailure");
                ConnectivityState::TransientFailure
            }
        }
    }

    fn into_raw(self) -> ffi::grpc_connectivity_state {
        match self {
            ConnectivityState::Idle => ffi::GRPC_CHANNEL_IDLE,
            ConnectivityState::Connecting => ffi::GRPC_CHANNEL_CONNECTING,
            ConnectivityState::Ready => ffi::GRPC_CHANNEL_READY,
            ConnectivityState::TransientFailure => ffi::GRPC_CHANNEL_TRANSIENT_FAILURE,
            ConnectivityState::Shutdown => ffi::GRPC_CHANNEL_SHUTDOWN,
        }
    }
}

impl ChannelInner {
    /// The channel's current state; `try_to_connect` starts connecting an idle channel.
    pub(crate) fn state(&self, try_to_connect: bool) -> ConnectivityState {
        if self.direct {
            // No client channel to ask (see `ChannelInner::direct`).
            return ConnectivityState::Ready;
        }
        // SAFETY: the channel is alive while `self` is; the call is thread-safe.
        let raw = unsafe { ffi::grpc_channel_check_connectivity_state(self.raw, try_to_connect as i32) };
        ConnectivityState::from_raw(raw)
    }
}

/// What a watch's tag owns until its event arrives.
struct Watch {
    /// The channel, not kept alive by the watch: destroying it completes the watch (the
    /// core's watcher holds its own reference and reports the shutdown).
    channel: std::sync::Weak<ChannelInner>,
    /// Keeps the queue the event arrives on (and its thread) alive while the core watches.
    env: Option<crate::env::Environment>,
    /// The state read right after a change was reported (`None` on timeout).
    changed_to: Option<ConnectivityState>,
}

impl OnComplete for Watch {
    fn on_complete(&mut self, success: bool) {
        // `success` is the core's "the state changed"; false means the deadline passed.
        if success {
            self.changed_to = Some(match self.channel.upgrade() {
                Some(channel) => channel.state(false),
                None => ConnectivityState::Shutdown,
            });
        }
        self.env = None;
    }
}

/// Resolves to `Some(new_state)` when a channel's state differs from the one it was
/// given, or `None` at the deadline. See [`Channel::state_changed`].
///
/// Dropping it does not cancel the watch: the core still completes it, at the latest at the
/// deadline or when the channel is dropped.
#[must_use = "futures do nothing unless polled"]
pub struct StateChanged {
    watch: Result<Arc<Batch<Watch>>, Option<ConnectivityState>>,
    /// For a channel whose state never changes (over a socket): ends the watch with `None`.
    deadline: Option<crate::timer::Sleep>,
}

impl std::fmt::Debug for StateChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateChanged").finish_non_exhaustive()
    }
}

impl Future for StateChanged {
    type Output = Option<ConnectivityState>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ConnectivityState>> {
        if let Some(sleep) = &mut self.deadline {
            return Pin::new(sleep).poll(cx).map(|()| None);
        }
        match &self.watch {
            Err(immediate) => Poll::Ready(*immediate),
            Ok(batch) => match batch.poll_done(cx) {
                None => Poll::Pending,
                // SAFETY: the batch is done, and this future is the only Rust reader of its
                // state (the tag that shared it has been consumed by the queue's thread).
                Some(_) => Poll::Ready(unsafe { batch.state_mut() }.changed_to),
            },
        }
    }
}

impl Channel {
    /// The channel's connectivity state now. With `try_to_connect`, an
    /// [`Idle`](ConnectivityState::Idle) channel starts connecting (the state returned is
    /// still the one before that).
    pub fn state(&self, try_to_connect: bool) -> ConnectivityState {
        self.inner.state(try_to_connect)
    }

    /// Resolves to `Some(state)` as soon as the channel's state differs from
    /// `last_observed`, or to `None` once `deadline` passes first. The state is read right
    /// after the core reports the change (it may have moved on again since).
    ///
    /// The watch does not keep the channel alive: dropping the channel ends it with
    /// `Some(Shutdown)`.
    pub fn state_changed(&self, last_observed: ConnectivityState, deadline: Instant) -> StateChanged {
        let inner = &self.inner;
        if inner.direct {
            // Nothing to watch: the state of a channel over a socket never changes, so the
            // watch ends at its deadline.
            return StateChanged { watch: Err(None), deadline: Some(crate::timer::sleep_until(deadline)) };
        }
        let cq = inner.env.pick_cq();
        let Some(borrow) = cq.borrow() else {
            // Unreachable while this channel holds its environment; answer as a channel
            // whose environment is gone would.
            return StateChanged {
                watch: Err(Some(ConnectivityState::Shutdown)),
                deadline: None,
            };
        };
        let batch = Batch::new(Watch {
            channel: Arc::downgrade(inner),
            env: Some(inner.env.clone()),
            changed_to: None,
        });
        let tag = batch.tag().into_raw();
        // SAFETY: the channel is alive (`inner`) and the queue is borrowed, so not shutting
        // down: the core asserts it can begin an operation on it. The function cannot
        // refuse, so the core now owns `tag` and delivers it exactly once (on a change, at
        // the deadline, or when the channel is destroyed: its watcher holds its own channel
        // reference); the batch it points to holds the environment, so the queue lives.
        unsafe {
            ffi::grpc_channel_watch_connectivity_state(
                inner.raw,
                last_observed.into_raw(),
                crate::time::from_instant(deadline),
                borrow.raw(),
                tag,
            )
        };
        drop(borrow);
        StateChanged { watch: Ok(batch), deadline: None }
    }

    /// Connects the channel if it is idle and waits until it is
    /// [`Ready`](ConnectivityState::Ready), through any number of failed attempts, until
    /// `deadline`.
    ///
    /// Fails with `DEADLINE_EXCEEDED` (an [`Error::Rpc`]) naming the last state seen if the
    /// deadline passes first, and with [`Error::Shutdown`] if the channel shuts down.
    ///
    /// ```no_run
    /// # use std::time::{Duration, Instant};
    /// let env = grpcore::Environment::new(1);
    /// let channel = grpcore::ChannelBuilder::new(&env).connect("127.0.0.1:50051").unwrap();
    /// futures_executor::block_on(channel.wait_for_connected(Instant::now() + Duration::from_secs(5)))
    ///     .expect("server up within 5 s");
    /// ```
    pub async fn wait_for_connected(&self, deadline: Instant) -> Result<(), Error> {
        let mut state = self.state(true);
        loop {
            match state {
                ConnectivityState::Ready => return Ok(()),
                ConnectivityState::Shutdown => {
                    return Err(Error::shutdown(ShutdownErrorKind::Channel, format!("the channel to {} is shut down", self.target())))
                }
                // A channel that went idle again (connection closed, idle timeout) needs a
                // new nudge to reconnect.
                ConnectivityState::Idle => {
                    self.state(true);
                }
                _ => {}
            }
            match self.state_changed(state, deadline).await {
                Some(next) => state = next,
                None => {
                    return Err(Error::Rpc(Status::new(
                        Code::DeadlineExceeded,
                        format!(
                            "the channel to {} was not ready by the deadline (last state: {state:?})",
                            self.target()
                        ),
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectivityState;
    use grpcore_sys as ffi;

    #[test]
    fn core_states_map_both_ways_and_unknown_is_transient_failure() {
        for s in [
            ConnectivityState::Idle,
            ConnectivityState::Connecting,
            ConnectivityState::Ready,
            ConnectivityState::TransientFailure,
            ConnectivityState::Shutdown,
        ] {
            assert_eq!(ConnectivityState::from_raw(s.into_raw()), s);
        }
        assert_eq!(ConnectivityState::from_raw(ffi::GRPC_CHANNEL_READY), ConnectivityState::Ready);
        for unknown in [5, 42, u32::MAX] {
            assert_eq!(ConnectivityState::from_raw(unknown), ConnectivityState::TransientFailure);
        }
    }
}
