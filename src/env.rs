//! [`Environment`]: the completion-queue threads everything else runs on.
//!
//! Owns the `grpc_init`/`grpc_shutdown` pairing and N threads, each looping on one
//! completion queue. Channels, servers and calls hold the environment (or one of its
//! queues), so it shuts down only when the last of them is gone; dropping it never waits
//! for anything but events already on their way.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle as ThreadHandle;

use futures_channel::oneshot;
use grpcore_sys as ffi;

use crate::cq::{CompletionQueue, Tag};
use crate::error::{ConfigErrorKind, Error, InternalErrorKind, ShutdownErrorKind};
use crate::task::{self, panic_message};

/// Configures an [`Environment`].
///
/// ```
/// let env = grpcore::EnvBuilder::new().cq_count(2).name_prefix("rpc").build();
/// assert_eq!(env.cq_count(), 2);
/// ```
#[derive(Clone)]
pub struct EnvBuilder {
    cq_count: usize,
    name_prefix: String,
    around: Option<Around>,
    share_writes: bool,
}

/// Code each completion-queue thread runs its loop inside (see [`EnvBuilder::around_threads`]).
type Around = Arc<dyn Fn(&mut dyn FnMut()) + Send + Sync>;

impl std::fmt::Debug for EnvBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvBuilder")
            .field("cq_count", &self.cq_count)
            .field("name_prefix", &self.name_prefix)
            .field("around_threads", &self.around.is_some())
            .field("share_writes", &self.share_writes)
            .finish()
    }
}

impl Default for EnvBuilder {
    fn default() -> Self {
        EnvBuilder::new()
    }
}

impl EnvBuilder {
    /// One completion-queue thread per available core, named `grpcore-cq-N`.
    pub fn new() -> EnvBuilder {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        EnvBuilder {
            cq_count: cores,
            name_prefix: "grpcore-cq".to_string(),
            around: None,
            share_writes: true,
        }
    }

    /// Number of completion queues, each with its own thread (at least 1).
    pub fn cq_count(mut self, n: usize) -> EnvBuilder {
        self.cq_count = n.max(1);
        self
    }

    /// Prefix of the threads' names; the queue index is appended (`prefix-0`, …).
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> EnvBuilder {
        self.name_prefix = prefix.into();
        self
    }

    /// Whether the queue threads start the batches of one round of events together, so the
    /// replies to many calls on one connection share a transport write (default: yes).
    ///
    /// Only a build with write sharing has it: every `vendored` build, and the feature
    /// `shared-writes` on the system core ([`Environment::shares_writes`] tells). Elsewhere
    /// this setting changes nothing. Turned off, every batch starts the moment it is made, as
    /// through the core's public API, and each reply is a write of its own.
    ///
    /// ```
    /// let env = grpcore::EnvBuilder::new().cq_count(1).share_writes(false).build();
    /// assert!(!env.shares_writes());
    /// ```
    pub fn share_writes(mut self, on: bool) -> EnvBuilder {
        self.share_writes = on;
        self
    }

    /// Runs each completion-queue thread's loop inside `around`, which must call the `run`
    /// it is given (and does nothing else useful after it returns: the environment is
    /// shutting down). This is how handlers and tasks on the completion-queue executor see a
    /// runtime's context, e.g. tokio's, so `tokio::time::sleep` or `tokio::spawn` work
    /// there. An `around` that returns without calling `run` is logged and the loop runs
    /// anyway.
    ///
    /// ```
    /// let rt = tokio::runtime::Runtime::new().unwrap();
    /// let handle = rt.handle().clone();
    /// let env = grpcore::EnvBuilder::new()
    ///     .cq_count(1)
    ///     .around_threads(move |run| {
    ///         let _entered = handle.enter();
    ///         run()
    ///     })
    ///     .build();
    /// let slept = futures_executor::block_on(env.spawn(async {
    ///     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    /// }));
    /// assert!(slept.is_ok());
    /// ```
    pub fn around_threads(mut self, around: impl Fn(&mut dyn FnMut()) + Send + Sync + 'static) -> EnvBuilder {
        self.around = Some(Arc::new(around));
        self
    }

    /// Starts the threads.
    ///
    /// # Panics
    /// If the gRPC C core linked at run time is not the version grpcore was built for (see
    /// [`try_build`](Self::try_build), which returns that error instead).
    pub fn build(self) -> Environment {
        self.try_build().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the threads, or fails with [`Error::Config`] when the gRPC C core linked at
    /// run time reports a version other than core 29.x (gRPC 1.51.x), the one grpcore's
    /// bindings describe: the core is then never touched.
    pub fn try_build(self) -> Result<Environment, Error> {
        try_init_core()?;
        let cqs: Vec<Arc<CompletionQueue>> =
            (0..self.cq_count).map(|i| Arc::new(CompletionQueue::new(i))).collect();
        let share = shares_writes(self.share_writes);
        let threads = cqs
            .iter()
            .map(|cq| {
                let cq = cq.clone();
                let around = self.around.clone();
                std::thread::Builder::new()
                    .name(format!("{}-{}", self.name_prefix, cq.index))
                    .spawn(move || match around {
                        None => poll_queue(cq, share),
                        Some(around) => {
                            let mut cq = Some(cq);
                            around(&mut || {
                                if let Some(cq) = cq.take() {
                                    poll_queue(cq, share)
                                }
                            });
                            if let Some(cq) = cq {
                                log::error!("EnvBuilder::around_threads returned without running the queue's loop; running it");
                                poll_queue(cq, share);
                            }
                        }
                    })
                    .expect("failed to spawn a completion-queue thread")
            })
            .collect();
        Ok(Environment {
            inner: Arc::new(EnvInner {
                cqs,
                threads: Mutex::new(threads),
                next_cq: AtomicUsize::new(0),
                share_writes: share,
            }),
        })
    }
}

/// Whether queue threads asked to share writes (`asked`) do: only in a build with the
/// batch-scope shim.
fn shares_writes(asked: bool) -> bool {
    asked && cfg!(shared_writes)
}

/// `grpc_init` once per environment (or resource quota), with the core's log routed to the
/// `log` crate first.
///
/// # Panics
/// If the linked core's version is not the one grpcore was built for (see [`try_init_core`]).
pub(crate) fn init_core() {
    try_init_core().unwrap_or_else(|e| panic!("{e}"))
}

/// As [`init_core`], but fails without touching the core when the linked core's version,
/// `grpc_version_string()`, is not a core 29.x: grpcore reads some of the core's structs
/// directly (`grpc_byte_buffer`, `grpc_slice`), so another major version would be read with
/// the wrong layout.
pub(crate) fn try_init_core() -> Result<(), Error> {
    static VERSION: OnceLock<Result<(), String>> = OnceLock::new();
    VERSION.get_or_init(|| check_core_version(&crate::core_version())).clone().map_err(|m| Error::config_kind(ConfigErrorKind::CoreVersion, m))?;
    static LOG: Once = Once::new();
    LOG.call_once(|| {
        crate::log_bridge::install();
        quiet_abseil_deadlock_detection();
    });
    // SAFETY: grpc_init may be called any number of times; each is paired with the
    // grpc_shutdown in `EnvInner::drop` (or the quota's drop).
    unsafe { ffi::grpc_init() };
    Ok(())
}

/// The names of abseil's `absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle)` in the
/// shared abseil builds a 1.51 core links: Debian's (inline namespace `debian3`) and
/// upstream's 20220623 LTS (`lts_20220623`).
const ABSL_SET_DEADLOCK_MODE: [&std::ffi::CStr; 2] = [
    c"_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
    c"_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
];

/// Turns abseil's mutex deadlock detection off, process-wide, unless the environment variable
/// `GRPCORE_ABSL_DEADLOCK_DETECTION` is set to something other than `0`.
///
/// Abseil compiled without `NDEBUG`, as Debian's is, checks the order of every lock the core
/// takes against a graph of all lock orders seen (and aborts the process on an inversion):
/// about 5.6k instructions per streaming ping-pong message and 2.1k per unary call of the
/// core's own work (benches/README.md). A release build of abseil, like the `vendored` one,
/// has it off. The setter is looked up at run time: an abseil without it (or linked
/// statically) is left as it is.
fn quiet_abseil_deadlock_detection() {
    if std::env::var_os("GRPCORE_ABSL_DEADLOCK_DETECTION").is_some_and(|v| v != "0") {
        return;
    }
    for name in ABSL_SET_DEADLOCK_MODE {
        // SAFETY: a lookup by name in the loaded objects; nothing is called.
        let setter = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        if setter.is_null() {
            continue;
        }
        // SAFETY: the symbol is abseil's `void SetMutexDeadlockDetectionMode(OnDeadlockCycle)`,
        // a free function whose one argument, an `enum class` over `int`, is passed as an
        // `int` (the platform's C calling convention); 0 is `kIgnore`. It only stores into a
        // constant-initialized atomic, so it may run at any time, on any thread.
        let set: extern "C" fn(std::os::raw::c_int) = unsafe { std::mem::transmute(setter) };
        set(0);
        log::debug!("abseil's mutex deadlock detection turned off ({})", name.to_string_lossy());
        return;
    }
}

/// The core major version the bindings describe (`grpcore_sys::CORE_VERSION` is `29.0.0`).
const SUPPORTED_CORE_MAJOR: u32 = 29;

/// Accepts a core version string `MAJOR.MINOR[.PATCH]` (digits only) whose major version
/// is the one the bindings describe; otherwise says what was found and what to do.
pub(crate) fn check_core_version(reported: &str) -> Result<(), String> {
    let parts: Vec<&str> = reported.trim().split('.').collect();
    let numeric = (2..=3).contains(&parts.len())
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let major = if numeric { parts[0].parse::<u32>().ok() } else { None };
    match major {
        Some(SUPPORTED_CORE_MAJOR) => Ok(()),
        _ => Err(format!(
            "the gRPC C core linked at run time reports version {reported:?} (grpc_version_string()), \
             but grpcore was built for core {SUPPORTED_CORE_MAJOR}.x (gRPC release {}, core {}), whose struct \
             layouts it relies on; refusing to use it. Run with the libgrpc of gRPC 1.51.x (Debian 12's \
             libgrpc29; check LD_LIBRARY_PATH), or build with the `vendored` feature",
            ffi::GRPC_RELEASE,
            ffi::CORE_VERSION
        )),
    }
}

/// The loop of one completion-queue thread.
///
/// In a build with write sharing and `share` set, batches started while an event is handled
/// wait in the thread's outbox and start together in one core execution context; when, is
/// the [`Flusher`](crate::cq::outbox::Flusher)'s policy.
fn poll_queue(cq: Arc<CompletionQueue>, share: bool) {
    task::enter_cq_thread(&cq);
    crate::buffer::keep_gather_buffers(true);
    #[cfg(shared_writes)]
    let mut flusher = crate::cq::outbox::Flusher::new(share);
    #[cfg(not(shared_writes))]
    let _ = share;
    loop {
        #[cfg(not(shared_writes))]
        let event = cq.next();
        #[cfg(shared_writes)]
        let event = flusher.next_event(&cq);
        task::set_dispatching(true);
        match event.type_ {
            ffi::GRPC_QUEUE_SHUTDOWN => break,
            ffi::GRPC_OP_COMPLETE => {
                // SAFETY: every tag we give the core comes from `Tag::into_raw`, and the core
                // delivers each accepted operation's tag exactly once (cq module docs).
                let tag = unsafe { Tag::from_raw(event.tag) };
                let success = event.success != 0;
                if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tag.complete(success))) {
                    log::error!("completion handler panicked: {}", panic_message(&*panic));
                }
            }
            _ => {} // GRPC_QUEUE_TIMEOUT: only from `poll_now`, handled above.
        }
        task::drain_run_queue(&cq);
        task::set_dispatching(false);
    }
    task::set_dispatching(false);
    // Empty here: entries are only of this queue, and each holds a borrow that keeps the
    // queue from shutting down. Flushed anyway, so nothing could outlive the thread.
    #[cfg(shared_writes)]
    let _ = crate::cq::outbox::flush();
    task::leave_cq_thread();
    crate::buffer::keep_gather_buffers(false);
    // SAFETY: this is the queue's thread and it has just seen the shutdown event.
    unsafe { cq.destroy() };
}

struct EnvInner {
    cqs: Vec<Arc<CompletionQueue>>,
    threads: Mutex<Vec<ThreadHandle<()>>>,
    next_cq: AtomicUsize,
    share_writes: bool,
}

impl Drop for EnvInner {
    fn drop(&mut self) {
        for cq in &self.cqs {
            cq.begin_shutdown();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let finish = move || {
            for t in threads {
                let _ = t.join();
            }
            // SAFETY: pairs with the grpc_init in `init_core`; our threads are gone.
            unsafe { ffi::grpc_shutdown() };
        };
        if task::on_any_cq_thread() {
            // The last reference went away on one of our own threads (inside a completion):
            // it cannot join itself, so a short-lived thread finishes the job.
            let _ = std::thread::Builder::new().name("grpcore-env-drop".into()).spawn(finish);
        } else {
            finish();
        }
    }
}

/// The completion-queue threads that run calls, servers and spawned futures.
///
/// Cheap to clone (an `Arc`). Channels and servers keep their environment alive; the threads
/// stop when the last clone, channel, server and call is gone.
///
/// ```
/// let env = grpcore::Environment::new(1);
/// let answer = futures_executor::block_on(env.spawn(async { 6 * 7 })).unwrap();
/// assert_eq!(answer, 42);
/// ```
#[derive(Clone)]
pub struct Environment {
    inner: Arc<EnvInner>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment").field("cq_count", &self.cq_count()).finish()
    }
}

impl Environment {
    /// Turns the core's tracer `name` on or off, process-wide (`GRPC_TRACE`'s names:
    /// `http`, `api`, `channel`, `round_robin`..., or `all`). Turning one on also lets the
    /// core log at INFO, where trace lines are logged; they reach the [`log`] crate under
    /// the target `grpc_core` (whose level still filters them). Fails with
    /// [`Error::Config`] for a name the core does not know. A method of the environment
    /// because the core reads `GRPC_TRACE` when it starts, which would undo a switch made
    /// before.
    ///
    /// ```
    /// let env = grpcore::Environment::new(1);
    /// env.set_core_trace("http", true)?;
    /// env.set_core_trace("http", false)?;
    /// assert!(env.set_core_trace("no_such_tracer", true).is_err());
    /// # Ok::<(), grpcore::Error>(())
    /// ```
    pub fn set_core_trace(&self, name: &str, enabled: bool) -> Result<(), Error> {
        let c_name = std::ffi::CString::new(name).map_err(|_| Error::config_kind(ConfigErrorKind::Setting, format!("a tracer name has no NUL byte: {name:?}")))?;
        // SAFETY: a NUL-terminated name that lives across the call; this environment keeps
        // the core initialized.
        let known = unsafe {
            if enabled {
                ffi::gpr_set_log_verbosity(ffi::GPR_LOG_SEVERITY_INFO);
            }
            ffi::grpc_tracer_set_enabled(c_name.as_ptr(), i32::from(enabled))
        };
        if known == 0 {
            return Err(Error::config_kind(ConfigErrorKind::Setting, format!("the core has no tracer named {name:?}")));
        }
        Ok(())
    }

    /// An environment with `cq_count` completion-queue threads.
    ///
    /// Panics if the linked gRPC C core is not the version grpcore was built for; use
    /// [`EnvBuilder::try_build`] to get that as an error.
    pub fn new(cq_count: usize) -> Environment {
        EnvBuilder::new().cq_count(cq_count).build()
    }

    /// The process-wide environment, created on first use with one completion-queue thread
    /// per core and kept for the life of the process. Share it instead of building one
    /// environment per channel: each environment has threads of its own.
    ///
    /// ```
    /// let a = grpcore::Environment::shared();
    /// let b = grpcore::Environment::shared();
    /// assert!(a.same_as(&b));
    /// ```
    pub fn shared() -> Environment {
        static SHARED: std::sync::OnceLock<Environment> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| EnvBuilder::new().name_prefix("grpcore-shared").build()).clone()
    }

    /// True when both handles refer to the same environment.
    pub fn same_as(&self, other: &Environment) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Number of completion queues (and threads).
    pub fn cq_count(&self) -> usize {
        self.inner.cqs.len()
    }

    /// True when this environment's queue threads start the batches of a round of events
    /// together, so replies share transport writes: a build with write sharing (`vendored`,
    /// or feature `shared-writes`) and [`EnvBuilder::share_writes`] left on.
    pub fn shares_writes(&self) -> bool {
        self.inner.share_writes
    }

    /// The queue for a new call or task: the caller's own queue when called on one of our
    /// threads (no cross-thread hop), otherwise round-robin.
    pub(crate) fn pick_cq(&self) -> &Arc<CompletionQueue> {
        if let Some(i) = task::current_cq_index() {
            if let Some(cq) = self.inner.cqs.get(i) {
                if task::on_cq_thread(cq) {
                    return cq;
                }
            }
        }
        let i = self.inner.next_cq.fetch_add(1, Ordering::Relaxed) % self.inner.cqs.len();
        &self.inner.cqs[i]
    }

    /// All queues, for registering with a server.
    pub(crate) fn cqs(&self) -> &[Arc<CompletionQueue>] {
        &self.inner.cqs
    }

    /// Runs `future` on a completion-queue thread and returns a handle to its output.
    ///
    /// The future is polled only on that thread; waking it from anywhere reschedules it
    /// there. Dropping the handle does not cancel the task. If the future panics, the
    /// handle yields [`Error::Internal`]; if the environment shuts down first,
    /// [`Error::Shutdown`].
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let wrapped = async move {
            let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(future))
                .await
                .map_err(|p| Error::internal_kind(InternalErrorKind::Panic, format!("spawned task panicked: {}", panic_message(&*p))));
            let _ = tx.send(result);
        };
        task::spawn(self.pick_cq().clone(), wrapped);
        JoinHandle { rx }
    }
}

/// The output of a future given to [`Environment::spawn`].
#[derive(Debug)]
pub struct JoinHandle<T> {
    rx: oneshot::Receiver<Result<T, Error>>,
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(_)) => Poll::Ready(Err(Error::shutdown(ShutdownErrorKind::Environment,
                "the environment shut down before the spawned task finished",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_core_version;

    #[test]
    fn core_version_check_accepts_29_only() {
        for ok in ["29.0.0", "29.1.2", "29.0"] {
            assert_eq!(check_core_version(ok), Ok(()), "{ok}");
        }
        for bad in ["30.1.0", "28.9", "28.9.1", "", "garbage", "29", "29.x.0", "v29.0.0", "29.0.0.1", "290.0.0", "-29.0"] {
            let err = check_core_version(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")) && err.contains("vendored"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_wake_up_call_is_made_by_the_first_wake_up() {
        // An idle environment runs none of the core's client-call code (issue #18 target 4).
        let env = super::Environment::new(1);
        assert!(!env.cqs()[0].has_kick_call());
        // Spawning from this thread posts to the queue: the call exists from then on, and works.
        let got = futures_executor::block_on(env.spawn(async { 7 })).unwrap();
        assert_eq!(got, 7);
        assert!(env.cqs()[0].has_kick_call());
    }

    #[test]
    fn environments_share_writes_exactly_when_the_build_can_and_they_are_asked_to() {
        // cfg(shared_writes): grpcore-sys compiled the batch-scope shim (build.rs).
        assert_eq!(super::Environment::new(1).shares_writes(), cfg!(shared_writes));
        assert!(!super::EnvBuilder::new().cq_count(1).share_writes(false).build().shares_writes());
    }

    #[cfg(shared_writes)]
    #[test]
    fn an_environment_that_does_not_share_never_defers_a_batch() {
        use super::{EnvBuilder, Environment};
        // Whether a batch started by a task on the queue thread, in its first round, would wait
        // in the outbox.
        let would_defer = |env: &Environment| {
            let cq = env.cqs()[0].clone();
            futures_executor::block_on(env.spawn(async move {
                let close = [crate::call::raw::op::send_close_from_client()];
                crate::cq::outbox::wants(&cq, &close)
            }))
            .unwrap()
        };
        assert!(would_defer(&Environment::new(1)));
        assert!(!would_defer(&EnvBuilder::new().cq_count(1).share_writes(false).build()));
    }

    #[test]
    fn the_linked_core_passes_the_check() {
        assert_eq!(check_core_version(&crate::core_version()), Ok(()));
    }
}
