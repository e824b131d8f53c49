//! Stopping a server binary gracefully on SIGTERM and SIGINT, without a runtime or a signal
//! crate (grpcore itself never touches signals).
//!
//! [`StopSignals::block`] blocks SIGTERM and SIGINT in the calling thread. Called first thing
//! in `main`, before any other thread exists, it makes every later thread (the
//! environment's completion-queue threads, the core's own) inherit the mask, so either
//! signal stays pending for the process instead of killing it. [`StopSignals::wait`] then
//! takes it with `sigwait` on the main thread: no handler runs, so nothing has to be
//! async-signal-safe. Once one arrived the main thread unblocks them again, so a second
//! Ctrl-C during the grace period stops the process at once.

use std::io;
use std::sync::OnceLock;

/// Why [`StopSignals::request_stop`] asked for a stop, for [`StopSignals::wait`] to report.
static REQUESTED: OnceLock<&'static str> = OnceLock::new();

/// SIGTERM and SIGINT, blocked for the process's threads (see the module docs).
#[derive(Debug)]
pub struct StopSignals {
    set: libc::sigset_t,
}

impl StopSignals {
    /// Blocks SIGTERM and SIGINT in this thread and in every thread it starts from now on.
    pub fn block() -> io::Result<StopSignals> {
        // SAFETY: sigemptyset/sigaddset fill a sigset_t we own; pthread_sigmask reads it and
        // changes only this thread's mask (old mask not wanted: null).
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(StopSignals { set })
        }
    }

    /// Waits for SIGTERM or SIGINT and returns its name (or the reason given to
    /// [`request_stop`](Self::request_stop)); afterwards a second one acts as usual
    /// (terminates the process).
    pub fn wait(&self) -> io::Result<&'static str> {
        let mut signal: libc::c_int = 0;
        // SAFETY: `set` was filled in `block`; sigwait writes the signal number to `signal`.
        let rc = unsafe { libc::sigwait(&self.set, &mut signal) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: as in `block`; unblocks in this thread only.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &self.set, std::ptr::null_mut()) };
        Ok(match (signal, REQUESTED.get()) {
            (libc::SIGINT, _) => "SIGINT",
            (_, Some(why)) => why,
            _ => "SIGTERM",
        })
    }

    /// Makes [`wait`](Self::wait) return `why` (for another way to ask for a stop, e.g.
    /// "standard input closed"), through the same SIGTERM.
    pub fn request_stop(why: &'static str) {
        let _ = REQUESTED.set(why);
        // SAFETY: sends SIGTERM to this process; it is blocked in every thread but taken by
        // `wait`, so it cannot kill the process before the graceful shutdown.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    }
}
