//! The state word of one call: the C API's ordering rules as one atomic `u32`.
//!
//! The core accepts at most one batch with a send op and one with a receive op in flight per
//! call, and the final op (the server's status, the client's RECV_STATUS) once. Every handle
//! of a call (a sink, a stream, the handler's runner) asks this word before it starts a
//! batch, and tells it when one ends, so those rules live here and nowhere else.
//!
//! ```text
//! bit  0  SEND_BUSY      a batch with a send op is in flight (message, headers, half-close)
//! bit  1  RECV_BUSY      a receive batch is in flight
//! bit  2  FINAL_STARTED  a server's final op (its status) has started: no send after it
//! bit  3  HEADERS_SENT   initial metadata went out (the first send or the final carries it)
//! bit  4  SEND_CLOSED    the client half-closed: no more sends
//! bit  5  HANDLER_DONE   a server handler returned; its status waits for the senders
//! bits 6+ SENDERS        live handles that may still send (a server's sinks)
//! ```
//!
//! A server call ends (its final op starts) exactly once, when all of these hold: the
//! handler returned, no sender is left, and no send is in flight. Whichever of the three
//! events comes last — the handler's return ([`CallState::handler_done`]), the last sink's
//! drop ([`CallState::drop_sender`]) or the last write's completion
//! ([`CallState::end_send`]) — is told so and starts it. No task waits for another: the
//! status goes out after the last write even when a sink was moved into another task.
//!
//! A client's final op, RECV_STATUS_ON_CLIENT, is a receive that starts with the call, once
//! (`call/start.rs`); it does not close the send side, so it has no bit here.
//!
//! This file has no FFI, so `loom` can check it under every interleaving (its atomics come
//! from `crate::sync`; `scripts/test.sh` runs the models).

use crate::sync::{AtomicU32, Ordering};

const SEND_BUSY: u32 = 1 << 0;
const RECV_BUSY: u32 = 1 << 1;
const FINAL_STARTED: u32 = 1 << 2;
const HEADERS_SENT: u32 = 1 << 3;
const SEND_CLOSED: u32 = 1 << 4;
const HANDLER_DONE: u32 = 1 << 5;
const SENDER: u32 = 1 << 6;
const SENDERS: u32 = !(SENDER - 1);

/// Why a send may not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendRefused {
    /// Another send is in flight (a handle broke the one-write-in-flight rule: a bug).
    Busy,
    /// The call's final op started, or the client half-closed: no more sends.
    Closed,
}

/// A send that may start; the caller must start its batch (or call
/// [`CallState::end_send`] if starting fails).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a granted send must start a batch or be ended"]
pub(crate) struct SendGrant {
    /// This send is the first: it carries the initial metadata.
    pub(crate) carries_headers: bool,
}

/// The final op may start now, and the caller is the one that must start it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a granted final op must be started"]
pub(crate) struct FinalGrant {
    /// The initial metadata has not gone out yet: the final batch must carry it.
    pub(crate) carries_headers: bool,
}

/// The state word of one call (see the module docs).
pub(crate) struct CallState(AtomicU32);

impl std::fmt::Debug for CallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallState({:#x})", self.0.load(Ordering::Relaxed))
    }
}

impl CallState {
    /// A call with nothing in flight and `senders` live send handles.
    pub(crate) fn new(senders: u32) -> CallState {
        CallState(AtomicU32::new(senders * SENDER))
    }

    /// Applies `f` to the word until it sticks; `f` returns the new word and a result, or
    /// `None` to leave the word alone.
    fn update<T>(&self, mut f: impl FnMut(u32) -> Result<(u32, T), T>) -> T {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            match f(cur) {
                Err(answer) => return answer,
                Ok((next, answer)) => match self.0.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return answer,
                    Err(actual) => cur = actual,
                },
            }
        }
    }

    /// Adds `senders` send handles (before any of them exists elsewhere).
    pub(crate) fn add_senders(&self, senders: u32) {
        self.0.fetch_add(senders * SENDER, Ordering::AcqRel);
    }

    /// Claims the send side for one batch (a message, early headers).
    pub(crate) fn begin_send(&self) -> Result<SendGrant, SendRefused> {
        self.update(|cur| {
            if cur & SEND_BUSY != 0 {
                return Err(Err(SendRefused::Busy));
            }
            if cur & (FINAL_STARTED | SEND_CLOSED) != 0 {
                return Err(Err(SendRefused::Closed));
            }
            let grant = SendGrant {
                carries_headers: cur & HEADERS_SENT == 0,
            };
            Ok((cur | SEND_BUSY | HEADERS_SENT, Ok(grant)))
        })
    }

    /// Claims the send side for the client's half-close: like [`begin_send`](Self::begin_send),
    /// and no send may follow.
    pub(crate) fn begin_close(&self) -> Result<SendGrant, SendRefused> {
        let grant = self.begin_send()?;
        self.0.fetch_or(SEND_CLOSED, Ordering::AcqRel);
        Ok(grant)
    }

    /// A send batch ended (or failed to start). On a server, if the handler has returned and
    /// no sender is left, the caller must now start the final op.
    pub(crate) fn end_send(&self) -> Option<FinalGrant> {
        self.update(|cur| {
            debug_assert!(cur & SEND_BUSY != 0, "end_send without a send in flight");
            let cleared = cur & !SEND_BUSY;
            // A send went out before, with the headers: the final never carries them here.
            match Self::final_due(cleared) {
                Some(next) => Ok((next, Some(FinalGrant { carries_headers: false }))),
                None => Ok((cleared, None)),
            }
        })
    }

    /// Claims the receive side for one batch; `false` if a receive is already in flight.
    pub(crate) fn begin_recv(&self) -> bool {
        self.0.fetch_or(RECV_BUSY, Ordering::AcqRel) & RECV_BUSY == 0
    }

    /// The receive batch ended.
    pub(crate) fn end_recv(&self) {
        self.0.fetch_and(!RECV_BUSY, Ordering::AcqRel);
    }

    /// Starts the final op now if it has not started yet (a unary reply, a refusal before
    /// the handler ran, a client's RECV_STATUS). `None` if it had started already or a send
    /// is in flight (then the send's end starts it, see [`handler_done`](Self::handler_done)).
    pub(crate) fn begin_final(&self) -> Option<FinalGrant> {
        self.update(|cur| {
            if cur & (FINAL_STARTED | SEND_BUSY) != 0 {
                return Err(None);
            }
            let grant = FinalGrant {
                carries_headers: cur & HEADERS_SENT == 0,
            };
            Ok((cur | FINAL_STARTED | HEADERS_SENT, Some(grant)))
        })
    }

    /// The server handler returned. If no sender is left and no send is in flight, the
    /// caller must now start the final op; otherwise the last of them will.
    pub(crate) fn handler_done(&self) -> Option<FinalGrant> {
        self.update(|cur| {
            let done = cur | HANDLER_DONE;
            match Self::final_due(done) {
                Some(next) => Ok((
                    next,
                    Some(FinalGrant {
                        carries_headers: cur & HEADERS_SENT == 0,
                    }),
                )),
                None => Ok((done, None)),
            }
        })
    }

    /// A send handle is gone (dropped or closed). If it was the last one, the handler has
    /// returned and no send is in flight, the caller must now start the final op.
    pub(crate) fn drop_sender(&self) -> Option<FinalGrant> {
        self.update(|cur| {
            debug_assert!(cur & SENDERS != 0, "drop_sender without a sender");
            let fewer = cur - SENDER;
            match Self::final_due(fewer) {
                Some(next) => Ok((
                    next,
                    Some(FinalGrant {
                        carries_headers: cur & HEADERS_SENT == 0,
                    }),
                )),
                None => Ok((fewer, None)),
            }
        })
    }

    /// The word with the final op started, if `word` makes it due: handler done, no sender,
    /// no send in flight, final not yet started.
    fn final_due(word: u32) -> Option<u32> {
        (word & HANDLER_DONE != 0 && word & (SENDERS | SEND_BUSY | FINAL_STARTED) == 0)
            .then_some(word | FINAL_STARTED | HEADERS_SENT)
    }

    /// True once the final op has started.
    #[cfg(test)]
    pub(crate) fn final_started(&self) -> bool {
        self.0.load(Ordering::Acquire) & FINAL_STARTED != 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn one_send_at_a_time_and_none_after_the_final() {
        let s = CallState::new(1);
        let first = s.begin_send().unwrap();
        assert!(first.carries_headers);
        assert_eq!(s.begin_send(), Err(SendRefused::Busy));
        assert_eq!(s.end_send(), None);
        assert!(!s.begin_send().unwrap().carries_headers);
        assert_eq!(s.begin_final(), None, "the final waits for the send in flight");
        assert_eq!(s.end_send(), None);
        assert_eq!(s.begin_final(), Some(FinalGrant { carries_headers: false }));
        assert_eq!(s.begin_final(), None, "the final starts once");
        assert_eq!(s.begin_send(), Err(SendRefused::Closed));
    }

    #[test]
    fn the_status_goes_out_after_the_last_write_of_a_moved_sink() {
        // The handler returns while its sink (moved into another task) still writes.
        let s = CallState::new(1);
        let _ = s.begin_send().unwrap();
        assert_eq!(s.handler_done(), None, "a sender is left");
        assert_eq!(s.drop_sender(), None, "a write is still in flight");
        assert_eq!(s.end_send(), Some(FinalGrant { carries_headers: false }));
        assert!(s.final_started());
    }

    #[test]
    fn whichever_event_comes_last_starts_the_final() {
        let s = CallState::new(1);
        assert_eq!(s.drop_sender(), None);
        assert_eq!(s.handler_done(), Some(FinalGrant { carries_headers: true }));
        let s = CallState::new(1);
        assert_eq!(s.handler_done(), None);
        assert_eq!(s.drop_sender(), Some(FinalGrant { carries_headers: true }));
        let s = CallState::new(0);
        assert_eq!(s.handler_done(), Some(FinalGrant { carries_headers: true }));
        assert_eq!(s.handler_done(), None);
    }

    #[test]
    fn a_half_close_ends_the_sends() {
        let s = CallState::new(0);
        assert!(s.begin_close().unwrap().carries_headers);
        assert_eq!(s.end_send(), None, "a client never starts a final from a send");
        assert_eq!(s.begin_send(), Err(SendRefused::Closed));
    }

    #[test]
    fn one_receive_at_a_time() {
        let s = CallState::new(0);
        assert!(s.begin_recv());
        assert!(!s.begin_recv());
        s.end_recv();
        assert!(s.begin_recv());
    }
}

/// The call state under every interleaving `loom` can find (run with `--cfg loom`).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;
    use loom::thread;

    /// Counts the interleavings each model ran, printed at the end of the model.
    fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = runs.clone();
        loom::model(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f()
        });
        println!("loom: {name}: {} interleavings", runs.load(std::sync::atomic::Ordering::Relaxed));
    }

    /// A server streaming call: the handler returns, its sink (in another task) writes once
    /// and is dropped, and the write completes on a queue thread. The final op starts
    /// exactly once, after the write ended.
    #[test]
    fn final_starts_once_after_the_last_write() {
        model("final_starts_once_after_the_last_write", || {
            let s = Arc::new(CallState::new(1));
            let finals = Arc::new(AtomicUsize::new(0));
            let write_ended = Arc::new(loom::sync::atomic::AtomicBool::new(false));
            let _ = s.begin_send().unwrap();

            let (s2, f2, w2) = (s.clone(), finals.clone(), write_ended.clone());
            let completion = thread::spawn(move || {
                w2.store(true, Ordering::SeqCst);
                if s2.end_send().is_some() {
                    f2.fetch_add(1, Ordering::SeqCst);
                }
            });
            let (s3, f3, w3) = (s.clone(), finals.clone(), write_ended.clone());
            let sink_drop = thread::spawn(move || {
                if let Some(_grant) = s3.drop_sender() {
                    assert!(w3.load(Ordering::SeqCst), "final before the write ended");
                    f3.fetch_add(1, Ordering::SeqCst);
                }
            });
            // The handler returns on this thread.
            if let Some(_grant) = s.handler_done() {
                assert!(write_ended.load(Ordering::SeqCst), "final before the write ended");
                finals.fetch_add(1, Ordering::SeqCst);
            }
            completion.join().unwrap();
            sink_drop.join().unwrap();
            assert_eq!(finals.load(Ordering::SeqCst), 1);
            assert!(s.final_started());
        });
    }

    /// A sink racing the handler's return: a send either starts before the final (and the
    /// final waits for it) or is refused; never both in flight.
    #[test]
    fn no_send_starts_after_the_final() {
        model("no_send_starts_after_the_final", || {
            let s = Arc::new(CallState::new(1));
            let s1 = s.clone();
            let sink = thread::spawn(move || {
                let sent = s1.begin_send().is_ok();
                let fin = if sent { s1.end_send() } else { None };
                let fin2 = s1.drop_sender();
                (sent, fin.is_some() as usize + fin2.is_some() as usize)
            });
            let s2 = s.clone();
            let handler = thread::spawn(move || s2.handler_done().is_some() as usize);
            let (_sent, a) = sink.join().unwrap();
            let b = handler.join().unwrap();
            assert_eq!(a + b, 1, "the final starts exactly once");
            assert_eq!(s.begin_send(), Err(SendRefused::Closed));
        });
    }

    /// Two receivers racing for the receive side: exactly one wins.
    #[test]
    fn one_receive_in_flight() {
        model("one_receive_in_flight", || {
            let s = Arc::new(CallState::new(0));
            let s1 = s.clone();
            let t = thread::spawn(move || s1.begin_recv() as usize);
            let mine = s.begin_recv() as usize;
            assert_eq!(mine + t.join().unwrap(), 1);
        });
    }
}
