//! The atomics of the pure state machines ([`crate::task`]'s task state, [`crate::cq`]'s
//! shutdown gate and the call state word in `call/state.rs`): std's normally, [loom](https://docs.rs/loom)'s under
//! `--cfg loom`, where a model checker runs their tests under every interleaving.
//!
//! Only modules with no FFI in them use this facade, so a loom model never touches the
//! core. Run the models with `LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom -C debug-assertions"
//! cargo test -p grpcore --lib --release loom` (scripts/test.sh does, in a target directory
//! of its own).

// Only in this crate's own test build: loom is a dev-dependency, and a program that depends
// on grpcore and runs its own loom tests with `--cfg loom` must still get std's atomics here.
#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
