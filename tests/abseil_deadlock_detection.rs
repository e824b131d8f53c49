//! grpcore turns abseil's mutex deadlock detection off when it initializes the core: Debian's
//! abseil, built without `NDEBUG`, checks every lock the core takes against a graph of lock
//! orders (a large share of the core's instructions per message, benches/README.md) and
//! aborts the process on an inversion. `GRPCORE_ABSL_DEADLOCK_DETECTION=1` keeps abseil's
//! default.
//!
//! Observed through abseil itself: a child process (this test binary again) starts an
//! environment, then locks two abseil mutexes in one order and then the other. With
//! detection on, abseil aborts it.
#![cfg(target_os = "linux")]

use std::ffi::CStr;
use std::process::Command;

use grpcore::Environment;

/// `absl::Mutex::Lock()` and `Unlock()` in Debian's abseil (inline namespace `debian3`).
const LOCK: &CStr = c"_ZN4absl7debian35Mutex4LockEv";
const UNLOCK: &CStr = c"_ZN4absl7debian35Mutex6UnlockEv";

/// Set in the child process: it does the inversion instead of the test.
const CHILD: &str = "GRPCORE_TEST_INVERT_LOCKS";

/// abseil's `Mutex` member function taking `this`, or `None` when this abseil does not
/// export it (another build of abseil: the test has nothing to observe).
fn member(name: &CStr) -> Option<extern "C" fn(*mut u64)> {
    // SAFETY: a lookup by name in the loaded objects.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    // SAFETY: a non-static member function without arguments takes `this` as its one
    // argument in the platform's C calling convention.
    (!f.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, extern "C" fn(*mut u64)>(f) })
}

/// In the child: the core initialized, A then B, then B then A.
fn invert_locks() {
    let _env = Environment::new(1);
    let (lock, unlock) = (member(LOCK).unwrap(), member(UNLOCK).unwrap());
    // An `absl::Mutex` is one pointer-sized word, zero when unlocked (its constexpr
    // constructor); these are never destroyed (the process exits).
    let a: &'static mut u64 = Box::leak(Box::new(0));
    let b: &'static mut u64 = Box::leak(Box::new(0));
    let (a, b) = (a as *mut u64, b as *mut u64);
    lock(a);
    lock(b);
    unlock(b);
    unlock(a);
    lock(b);
    lock(a);
    unlock(a);
    unlock(b);
    println!("inverted without an abort");
}

#[test]
fn a_lock_order_inversion_in_abseil_does_not_abort_the_process() {
    if std::env::var_os(CHILD).is_some() {
        invert_locks();
        return;
    }
    // Look the symbols up with the core loaded (it loads abseil).
    let _env = Environment::new(1);
    if member(LOCK).is_none() || member(UNLOCK).is_none() {
        eprintln!("this abseil exports no debian3 Mutex: nothing to observe");
        return;
    }
    let child = |keep_detection: bool| {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "a_lock_order_inversion_in_abseil_does_not_abort_the_process", "--nocapture"]);
        cmd.env(CHILD, "1");
        if keep_detection {
            cmd.env("GRPCORE_ABSL_DEADLOCK_DETECTION", "1");
        } else {
            cmd.env_remove("GRPCORE_ABSL_DEADLOCK_DETECTION");
        }
        cmd.output().unwrap()
    };
    let quiet = child(false);
    assert!(
        quiet.status.success() && String::from_utf8_lossy(&quiet.stdout).contains("inverted without an abort"),
        "with grpcore's setting the inversion must pass: {quiet:?}"
    );
    // abseil's default here: the same inversion aborts, so the child above really was checked.
    let kept = child(true);
    assert!(!kept.status.success(), "with abseil's default the inversion should abort: {kept:?}");
    assert!(String::from_utf8_lossy(&kept.stderr).contains("Potential Mutex deadlock"), "{kept:?}");
}
