//! Conversions between Rust time and the core's `gpr_timespec`.

use std::time::{Duration, Instant};

use grpcore_sys as ffi;

/// "Never": the core's infinite future.
pub(crate) fn infinite_future() -> ffi::gpr_timespec {
    ffi::gpr_timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
        clock_type: ffi::GPR_CLOCK_REALTIME,
    }
}

/// A relative deadline: the core adds it to its monotonic clock when the call starts.
pub(crate) fn from_timeout(timeout: Duration) -> ffi::gpr_timespec {
    // Far beyond any real deadline; keeps the addition inside the core from overflowing.
    const MAX_SECS: u64 = 100 * 365 * 24 * 3600;
    if timeout.as_secs() >= MAX_SECS {
        return infinite_future();
    }
    ffi::gpr_timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: timeout.subsec_nanos() as i32,
        clock_type: ffi::GPR_TIMESPAN,
    }
}

/// A deadline at `instant`.
pub(crate) fn from_instant(instant: Instant) -> ffi::gpr_timespec {
    from_timeout(instant.saturating_duration_since(Instant::now()))
}

/// True once the core's clock is within `slack` of `deadline` or past it (compared on the
/// core's own clock, so no conversion to `Instant` can shift it); false for "never".
pub(crate) fn has_passed(deadline: ffi::gpr_timespec, slack: Duration) -> bool {
    if deadline.tv_sec == i64::MAX {
        return false;
    }
    // SAFETY: pure functions over plain values.
    unsafe {
        let deadline = ffi::gpr_convert_clock_type(deadline, ffi::GPR_CLOCK_MONOTONIC);
        let soon = ffi::gpr_time_add(ffi::gpr_now(ffi::GPR_CLOCK_MONOTONIC), from_timeout(slack));
        ffi::gpr_time_cmp(soon, deadline) >= 0
    }
}

/// True for the core's "never" (a call without a deadline).
pub(crate) fn is_infinite(deadline: ffi::gpr_timespec) -> bool {
    deadline.tv_sec == i64::MAX
}

/// `deadline`, or `max` from now on the core's monotonic clock when that comes first
/// ("never" included).
pub(crate) fn clamp(deadline: ffi::gpr_timespec, max: Duration) -> ffi::gpr_timespec {
    // SAFETY: pure functions over plain values.
    unsafe {
        let cap = ffi::gpr_time_add(ffi::gpr_now(ffi::GPR_CLOCK_MONOTONIC), from_timeout(max));
        if is_infinite(deadline) || ffi::gpr_time_cmp(ffi::gpr_convert_clock_type(deadline, ffi::GPR_CLOCK_MONOTONIC), cap) > 0 {
            cap
        } else {
            deadline
        }
    }
}

/// The `Instant` of a deadline from the core; `None` for "never".
pub(crate) fn to_instant(ts: ffi::gpr_timespec) -> Option<Instant> {
    if ts.tv_sec == i64::MAX {
        return None;
    }
    // SAFETY: pure functions over plain values.
    let (deadline, now) = unsafe {
        (
            ffi::gpr_convert_clock_type(ts, ffi::GPR_CLOCK_MONOTONIC),
            ffi::gpr_now(ffi::GPR_CLOCK_MONOTONIC),
        )
    };
    let nanos = (deadline.tv_sec as i128 - now.tv_sec as i128) * 1_000_000_000
        + (deadline.tv_nsec as i128 - now.tv_nsec as i128);
    let base = Instant::now();
    Some(if nanos <= 0 {
        base
    } else {
        base + Duration::from_nanos(nanos.min(u64::MAX as i128) as u64)
    })
}
