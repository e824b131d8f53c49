//! Keeping panics out of C: every piece of Rust that the core calls (`extern "C"`
//! callbacks, slice destructors, the log bridge, the batch scope) runs inside
//! [`ffi_guard`], its logging included ([`log_caught!`]). A panic that reached an
//! `extern "C"` frame would abort the process.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f` inside an `extern "C"` callback: no panic leaves it, whatever `f` runs (user
/// code, the `log` backend, formatting); `on_panic` is returned instead. The panic's payload
/// is dropped inside `catch_unwind` too (dropping a payload can panic); only a payload whose
/// own drop panicked is leaked.
pub(crate) fn ffi_guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                std::mem::forget(again);
            }
            on_panic
        }
    }
}

/// Logs through the `log` crate without letting a panicking logger unwind (see
/// [`ffi_guard`]): the core's callbacks log through this, so the `log` backend cannot change
/// what they answer the core. The record keeps the caller's module as its target.
macro_rules! log_caught {
    ($level:ident, $($arg:tt)+) => {
        $crate::ffi_guard::ffi_guard((), || log::$level!($($arg)+))
    };
}
pub(crate) use log_caught;

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload whose own drop panics: dropping it must not unwind out of the guard.
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("the payload's drop panicked too");
        }
    }

    #[test]
    fn a_panic_and_a_panicking_payload_stay_inside() {
        assert_eq!(ffi_guard(7, || 1), 1);
        assert_eq!(ffi_guard(7, || panic!("inside")), 7);
        assert_eq!(ffi_guard(7, || std::panic::panic_any(Bomb)), 7);
    }
}
