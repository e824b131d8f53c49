//! Links `bench_server` (release builds) with the functions it runs from exec until it idles
//! placed first in its text, when `GRPCORE_BENCH_STARTUP_ORDER` names an order file written
//! by `benches/startup-order` for this very build (benches/README.md, "Issue #18, target 4").
//!
//! Why: start-up runs ~100 KiB of the ~1 MB of text, spread over nearly every 64 KiB window
//! of the file, and the kernel's fault-around maps each window it faults in whole: the idle
//! server ends up with ~900 KiB of its executable resident. Grouped, the same code maps
//! ~200 KiB. It is a plain linker option a user can give their own server the same way; it
//! changes where functions sit, not what they execute.
//!
//! The file lists symbol names, and an optimized build's local names carry a hash of their
//! module (`.llvm.NNN`) that changes with any edit of the crate: a file is only good for the
//! build it was made from (profile, then relink; names it lacks are skipped silently). So
//! nothing is committed, and the option is off unless asked for.
//!
//! Only with lld (`--symbol-ordering-file` is lld's), which is Rust's default linker for
//! `x86_64-unknown-linux-gnu` from Rust 1.90: otherwise the build links as before, with a
//! warning.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GRPCORE_BENCH_STARTUP_ORDER");
    let Some(order) = env::var_os("GRPCORE_BENCH_STARTUP_ORDER").filter(|v| !v.is_empty()) else {
        return;
    };
    let order = PathBuf::from(order);
    println!("cargo:rerun-if-changed={}", order.display());
    // Names in the file are those of an optimized build; a debug build has other symbols.
    if env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    if let Some(why) = not_default_lld() {
        println!("cargo:warning=bench_server links without its start-up order: {why}");
        return;
    }
    if !order.is_file() {
        panic!(
            "GRPCORE_BENCH_STARTUP_ORDER={}: no such file; write it with `benches/startup-order --out FILE \
             target/release/bench_server --port 0` after a build without the variable",
            order.display()
        );
    }
    println!("cargo:rustc-link-arg-bin=bench_server=-Wl,--symbol-ordering-file={}", order.display());
    // Names this build does not have are skipped: without this, lld warns once per name.
    println!("cargo:rustc-link-arg-bin=bench_server=-Wl,--no-warn-symbol-ordering");
}

/// `None` when this build links with rustc's own lld, otherwise why not.
fn not_default_lld() -> Option<String> {
    let target = env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" {
        return Some(format!("target {target} (lld is the default only on x86_64-unknown-linux-gnu)"));
    }
    let linker_env = format!("CARGO_TARGET_{}_LINKER", target.to_uppercase().replace('-', "_"));
    println!("cargo:rerun-if-env-changed={linker_env}");
    if env::var_os(&linker_env).is_some() {
        return Some(format!("{linker_env} chooses the linker"));
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.split('\x1f').any(|f| f.contains("linker") || f.contains("link-self-contained")) {
        return Some("RUSTFLAGS choose the linker".to_string());
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = match Command::new(&rustc).arg("-V").output() {
        Ok(out) => out,
        Err(e) => return Some(format!("cannot run {rustc} -V: {e}")),
    };
    let text = String::from_utf8_lossy(&version.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let minor = text.split_whitespace().nth(1).and_then(|v| v.split('.').nth(1)).and_then(|m| m.parse::<u32>().ok());
    match minor {
        Some(m) if m >= 90 => None,
        _ => Some(format!("{} (lld is rustc's default linker from 1.90)", text.trim())),
    }
}
