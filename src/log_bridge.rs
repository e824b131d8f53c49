//! Routes the core's log lines (`gpr_log`) to the [`log`] crate, target `grpc_core`, and
//! lets a caller collect the error lines the core logs on its own thread during one call
//! ([`capture_errors`]): some C functions give their reason only there.

use std::cell::RefCell;
use std::ffi::CStr;

use grpcore_sys as ffi;

thread_local! {
    /// The error lines logged on this thread while a [`capture_errors`] runs.
    static CAPTURED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns, with its result, the error lines the core logged on this thread
/// meanwhile (they still go to the `log` crate as usual). Empty when the core logs nothing,
/// as with `GRPC_VERBOSITY=NONE`.
pub(crate) fn capture_errors<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    let outer = CAPTURED.with(|c| c.replace(Some(Vec::new())));
    let result = f();
    let lines = CAPTURED.with(|c| c.replace(outer)).unwrap_or_default();
    (result, lines)
}

extern "C" fn forward(args: *mut ffi::gpr_log_func_args) {
    // No panic may cross into C: everything below, the `log` backend included, is caught.
    crate::ffi_guard::ffi_guard((), || {
        if args.is_null() {
            return;
        }
        // SAFETY: the core passes a valid argument block for the duration of this call; its
        // strings are NUL-terminated (file and message) or null.
        let args = unsafe { &*args };
        let text = |p: *const std::os::raw::c_char| {
            if p.is_null() {
                std::borrow::Cow::Borrowed("")
            } else {
                // SAFETY: non-null strings from the core are NUL-terminated and live for this call.
                unsafe { CStr::from_ptr(p) }.to_string_lossy()
            }
        };
        let level = match args.severity {
            ffi::GPR_LOG_SEVERITY_ERROR => log::Level::Error,
            ffi::GPR_LOG_SEVERITY_INFO => log::Level::Info,
            _ => log::Level::Debug,
        };
        if level == log::Level::Error {
            CAPTURED.with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    if let Some(lines) = c.as_mut() {
                        lines.push(text(args.message).into_owned());
                    }
                }
            });
        }
        log::log!(target: "grpc_core", level, "{}:{}: {}", text(args.file), args.line, text(args.message));
    });
}

/// Installs the forwarder and lets through what the `log` crate's max level allows.
pub(crate) fn install() {
    let verbosity = match log::max_level() {
        log::LevelFilter::Debug | log::LevelFilter::Trace => ffi::GPR_LOG_SEVERITY_DEBUG,
        log::LevelFilter::Info => ffi::GPR_LOG_SEVERITY_INFO,
        _ => ffi::GPR_LOG_SEVERITY_ERROR,
    };
    // SAFETY: `forward` matches `gpr_log_func` and never unwinds.
    unsafe {
        ffi::gpr_set_log_function(Some(forward));
        if std::env::var_os("GRPC_VERBOSITY").is_none() {
            ffi::gpr_set_log_verbosity(verbosity);
        }
    }
}
