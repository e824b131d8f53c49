//! Checks and conversions behind the typed settings of [`ChannelBuilder`] and
//! [`ServerBuilder`]: every value is turned into the core's channel-argument form here, and
//! a value the core would misread (a zero interval, milliseconds overflowing its `int`, a
//! window outside HTTP/2's range, a service config that is not JSON) becomes an
//! [`Error::Config`] naming the setting, before anything is created.
//!
//! This module never touches the core; it only validates and converts.
//!
//! [`ChannelBuilder`]: crate::ChannelBuilder
//! [`ServerBuilder`]: crate::ServerBuilder

use std::time::Duration;

use crate::error::{ConfigErrorKind, Error};

/// Channel-argument keys (grpc/impl/codegen/grpc_types.h and compression_types.h of 1.51).
pub(crate) mod keys {
    pub(crate) const KEEPALIVE_TIME_MS: &str = "grpc.keepalive_time_ms";
    pub(crate) const KEEPALIVE_TIMEOUT_MS: &str = "grpc.keepalive_timeout_ms";
    pub(crate) const KEEPALIVE_PERMIT_WITHOUT_CALLS: &str = "grpc.keepalive_permit_without_calls";
    pub(crate) const HTTP2_MAX_PINGS_WITHOUT_DATA: &str = "grpc.http2.max_pings_without_data";
    pub(crate) const HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS: &str =
        "grpc.http2.min_ping_interval_without_data_ms";
    pub(crate) const HTTP2_MAX_PING_STRIKES: &str = "grpc.http2.max_ping_strikes";
    pub(crate) const HTTP2_STREAM_LOOKAHEAD_BYTES: &str = "grpc.http2.lookahead_bytes";
    pub(crate) const HTTP2_BDP_PROBE: &str = "grpc.http2.bdp_probe";
    pub(crate) const MAX_CONCURRENT_STREAMS: &str = "grpc.max_concurrent_streams";
    pub(crate) const MAX_CONNECTION_IDLE_MS: &str = "grpc.max_connection_idle_ms";
    pub(crate) const MAX_CONNECTION_AGE_MS: &str = "grpc.max_connection_age_ms";
    pub(crate) const MAX_CONNECTION_AGE_GRACE_MS: &str = "grpc.max_connection_age_grace_ms";
    pub(crate) const CLIENT_IDLE_TIMEOUT_MS: &str = "grpc.client_idle_timeout_ms";
    pub(crate) const DEFAULT_AUTHORITY: &str = "grpc.default_authority";
    pub(crate) const LB_POLICY_NAME: &str = "grpc.lb_policy_name";
    pub(crate) const SERVICE_CONFIG: &str = "grpc.service_config";
    pub(crate) const ENABLE_RETRIES: &str = "grpc.enable_retries";
    pub(crate) const DEFAULT_COMPRESSION_ALGORITHM: &str = "grpc.default_compression_algorithm";
}

/// Whether a zero duration means something for a setting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Zero {
    /// Zero is meaningful (e.g. "no minimum interval", "no grace").
    Allowed,
    /// Zero would make the setting useless or harmful: reject it.
    Rejected,
}

/// Converts `value` to the core's `int` milliseconds, rounding up a fraction of a
/// millisecond so that a tiny positive duration never becomes zero.
pub(crate) fn millis(setting: &str, value: Duration, zero: Zero) -> Result<i32, Error> {
    if value.is_zero() && zero == Zero::Rejected {
        return Err(Error::config_kind(ConfigErrorKind::Setting, format!("{setting} = 0: must be greater than zero")));
    }
    let ms = value.as_nanos().div_ceil(1_000_000);
    i32::try_from(ms).map_err(|_| {
        Error::config_kind(ConfigErrorKind::Setting, format!(
            "{setting} = {value:?}: must be at most {} ms (about 24.8 days), the largest the core's \
             millisecond setting holds",
            i32::MAX
        ))
    })
}

/// Converts a count to the core's `int`, requiring at least `min`.
pub(crate) fn count(setting: &str, value: u32, min: u32) -> Result<i32, Error> {
    if value < min {
        return Err(Error::config_kind(ConfigErrorKind::Setting, format!("{setting} = {value}: must be at least {min}")));
    }
    i32::try_from(value)
        .map_err(|_| Error::config_kind(ConfigErrorKind::Setting, format!("{setting} = {value}: must be at most {}", i32::MAX)))
}

/// Smallest initial window the core accepts (it clamps smaller values up to this).
pub(crate) const MIN_WINDOW: u32 = 5;
/// Largest flow-control window HTTP/2 allows (RFC 9113 §6.9.1): 2^31 - 1 bytes.
pub(crate) const MAX_WINDOW: u32 = i32::MAX as u32;

/// Checks an HTTP/2 window size in bytes.
pub(crate) fn window(setting: &str, bytes: u32) -> Result<i32, Error> {
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&bytes) {
        return Err(Error::config_kind(ConfigErrorKind::Setting, format!(
            "{setting} = {bytes} bytes: must be from {MIN_WINDOW} to {MAX_WINDOW} (2^31 - 1, the \
             HTTP/2 maximum)"
        )));
    }
    Ok(bytes as i32)
}

/// Checks a name the core takes as a plain token (LB policy, authority).
pub(crate) fn token(setting: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::config_kind(ConfigErrorKind::Setting, format!("{setting} is empty")));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::config_kind(ConfigErrorKind::Setting, format!(
            "{setting} = {value:?}: contains whitespace or control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_message(r: Result<impl std::fmt::Debug, Error>) -> String {
        match r {
            Err(Error::Config(m)) => m.message().to_string(),
            other => panic!("expected Error::Config, got {other:?}"),
        }
    }

    #[test]
    fn durations_become_rounded_up_milliseconds() {
        assert_eq!(millis("t", Duration::from_secs(20), Zero::Rejected).unwrap(), 20_000);
        assert_eq!(millis("t", Duration::from_micros(1), Zero::Rejected).unwrap(), 1);
        assert_eq!(millis("t", Duration::from_micros(1500), Zero::Rejected).unwrap(), 2);
        assert_eq!(millis("t", Duration::ZERO, Zero::Allowed).unwrap(), 0);
        let max = Duration::from_millis(i32::MAX as u64);
        assert_eq!(millis("t", max, Zero::Rejected).unwrap(), i32::MAX);
    }

    #[test]
    fn zero_and_overflowing_durations_are_rejected_by_name() {
        let m = config_message(millis("keepalive_time", Duration::ZERO, Zero::Rejected));
        assert!(m.contains("keepalive_time") && m.contains("greater than zero"), "{m}");
        let too_long = Duration::from_millis(i32::MAX as u64 + 1);
        let m = config_message(millis("max_connection_age", too_long, Zero::Allowed));
        assert!(m.contains("max_connection_age") && m.contains("2147483647"), "{m}");
        let m = config_message(millis("idle_timeout", Duration::MAX, Zero::Rejected));
        assert!(m.contains("idle_timeout"), "{m}");
    }

    #[test]
    fn counts_fit_the_cores_int() {
        assert_eq!(count("n", 0, 0).unwrap(), 0);
        assert_eq!(count("n", i32::MAX as u32, 1).unwrap(), i32::MAX);
        let m = config_message(count("max_concurrent_streams", 0, 1));
        assert!(m.contains("max_concurrent_streams") && m.contains("at least 1"), "{m}");
        let m = config_message(count("http2_max_ping_strikes", u32::MAX, 0));
        assert!(m.contains("http2_max_ping_strikes"), "{m}");
    }

    #[test]
    fn windows_must_be_within_http2_range() {
        assert_eq!(window("w", 65_535).unwrap(), 65_535);
        assert_eq!(window("w", MIN_WINDOW).unwrap(), 5);
        assert_eq!(window("w", MAX_WINDOW).unwrap(), i32::MAX);
        for bad in [0, 4, MAX_WINDOW + 1, u32::MAX] {
            let m = config_message(window("http2_initial_stream_window_size", bad));
            assert!(m.contains("http2_initial_stream_window_size"), "{m}");
        }
    }

    #[test]
    fn tokens_must_be_non_empty_and_plain() {
        token("load_balancing_policy", "round_robin").unwrap();
        let m = config_message(token("load_balancing_policy", ""));
        assert!(m.contains("load_balancing_policy is empty"), "{m}");
        let m = config_message(token("default_authority", "a b"));
        assert!(m.contains("default_authority") && m.contains("whitespace"), "{m}");
    }
}
