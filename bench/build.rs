//! Links `bench_server` (release builds) with the functions it runs from exec until it idles
//! placed first in its text (`startup-order.txt`, written by `benches/startup-order`).
//!
//! Why: start-up runs ~100 KiB of the ~1 MB of text, spread over nearly every 64 KiB window
//! of the file, and the kernel's fault-around maps each window it faults in whole: the idle
//! server ends up with ~900 KiB of its executable resident. Grouped, the same code maps
//! ~200 KiB (benches/README.md, "Issue #18, target 4"). It is a plain linker option, one a
//! user can give their own server the same way; it changes where functions sit, not what
//! they execute.
//!
//! Only with lld (`--symbol-ordering-file` is lld's), which is Rust's default linker for
//! `x86_64-unknown-linux-gnu` from Rust 1.90: older toolchains, other targets and builds
//! that choose their own linker link as before. `GRPCORE_BENCH_STARTUP_ORDER=0` turns it
//! off (to measure the difference).

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=startup-order.txt");
    println!("cargo:rerun-if-env-changed=GRPCORE_BENCH_STARTUP_ORDER");
    if env::var("GRPCORE_BENCH_STARTUP_ORDER").is_ok_and(|v| v == "0") {
        return;
    }
    // Names in the file are those of an optimized build; a debug build has other symbols.
    if env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    if let Some(why) = not_default_lld() {
        println!("cargo:warning=bench_server links without its start-up order: {why}");
        return;
    }
    let order = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("startup-order.txt");
    println!("cargo:rustc-link-arg-bin=bench_server=-Wl,--symbol-ordering-file={}", order.display());
    // Names the build no longer has (a dependency or the toolchain changed) are skipped
    // silently: regenerate the file then (benches/README.md says how; `benches/idle-rss
    // --detail` shows the executable's resident KiB growing back when it is stale).
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
