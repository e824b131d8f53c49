//! Deadline policies: what a method asks of its callers' deadlines. They come from the
//! `(grpcore.deadline)` and `(grpcore.service_deadline)` options of `grpcore/options.proto`
//! (grpcore-compiler puts them in the generated method descriptors), or are set by hand on a
//! [`Method`](crate::Method) with [`Method::with_deadline_policy`](crate::Method::with_deadline_policy).
//!
//! A policy acts at both ends of a call made with its method descriptor:
//!
//! - **client**: a call with no deadline of its own (no [`CallOptions::timeout`] or
//!   [`deadline`](crate::CallOptions::deadline), no parent deadline to inherit, no
//!   [`default_timeout`](crate::CallOptions::default_timeout) of the caller's) gets the policy's
//!   default timeout;
//! - **server**: a call that arrives without a deadline is refused (`INVALID_ARGUMENT`, or the
//!   status given to [`Service::missing_deadline_status`](crate::Service::missing_deadline_status))
//!   unless the policy says no deadline is needed; a deadline further away than the maximum
//!   is brought in to it, for the handler ([`ServerContext::deadline`](crate::ServerContext::deadline))
//!   and for the calls it makes with [`CallOptions::parent`].
//!
//! Methods without a policy pay nothing for any of this: no check runs.
//!
//! The maximum is what the handler and its child calls see; the C core still ends the call
//! itself only at the client's own deadline, so a handler that ignores the time it was given
//! is not cut off at the maximum.
//!
//! [`CallOptions::timeout`]: crate::CallOptions::timeout
//! [`CallOptions::parent`]: crate::CallOptions::parent
//! [`CallOptions`]: crate::CallOptions

use std::time::Duration;

use crate::status::{Code, Status};

/// What a method asks of its callers' deadlines (see the [module docs](self)).
///
/// ```
/// use std::time::Duration;
/// use grpcore::DeadlinePolicy;
///
/// // Calls without a deadline get 2 s from generated clients; a server refuses calls that
/// // arrive without one, and brings deadlines further than 30 s away in to 30 s.
/// const POLICY: DeadlinePolicy = DeadlinePolicy::new()
///     .with_default_timeout(Duration::from_secs(2))
///     .with_max_timeout(Duration::from_secs(30));
/// assert!(POLICY.requires_deadline());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeadlinePolicy {
    default_timeout: Option<Duration>,
    max_timeout: Option<Duration>,
    deadline_optional: bool,
}

impl DeadlinePolicy {
    /// A policy that requires a deadline, with no default and no maximum.
    pub const fn new() -> DeadlinePolicy {
        DeadlinePolicy {
            default_timeout: None,
            max_timeout: None,
            deadline_optional: false,
        }
    }

    /// The timeout a client gives a call that has no deadline of its own.
    pub const fn with_default_timeout(mut self, timeout: Duration) -> DeadlinePolicy {
        self.default_timeout = Some(timeout);
        self
    }

    /// The furthest deadline a server lets a call have: one further away is brought in to
    /// `timeout` from the call's arrival.
    pub const fn with_max_timeout(mut self, timeout: Duration) -> DeadlinePolicy {
        self.max_timeout = Some(timeout);
        self
    }

    /// Whether a server refuses a call that comes without a deadline (default `true`;
    /// `false` is "no deadline needed" in the proto options).
    pub const fn with_deadline_required(mut self, required: bool) -> DeadlinePolicy {
        self.deadline_optional = !required;
        self
    }

    /// The default timeout, if any.
    pub const fn default_timeout(&self) -> Option<Duration> {
        self.default_timeout
    }

    /// The maximum timeout, if any.
    pub const fn max_timeout(&self) -> Option<Duration> {
        self.max_timeout
    }

    /// Whether a server refuses a call of this method that comes without a deadline.
    pub const fn requires_deadline(&self) -> bool {
        !self.deadline_optional
    }
}

/// What a server does with the deadline of an arriving call of one method: made once per
/// method when the server is built, and only for methods whose policy has work to do.
#[derive(Clone, Debug)]
pub(crate) struct ServerDeadline {
    /// Refuse calls without a deadline with this status (`None`: accept them).
    refusal: Option<Status>,
    max: Option<Duration>,
}

impl ServerDeadline {
    /// The server side of `policy`, refusing with `refusal` (the service's choice) or
    /// `INVALID_ARGUMENT`; `None` when the policy asks nothing of the server.
    pub(crate) fn new(policy: &DeadlinePolicy, method: &str, refusal: Option<&Status>) -> Option<ServerDeadline> {
        let refusal = policy.requires_deadline().then(|| {
            refusal.cloned().unwrap_or_else(|| {
                Status::new(
                    Code::InvalidArgument,
                    format!("{method} needs a deadline: set a timeout on the call"),
                )
            })
        });
        (refusal.is_some() || policy.max_timeout.is_some()).then_some(ServerDeadline {
            refusal,
            max: policy.max_timeout,
        })
    }

    /// The deadline the call gets (the core's, or the maximum from now when that is
    /// nearer), or the status that refuses it.
    pub(crate) fn admit(&self, deadline: grpcore_sys::gpr_timespec) -> Result<grpcore_sys::gpr_timespec, &Status> {
        if let Some(refusal) = &self.refusal {
            if crate::time::is_infinite(deadline) {
                return Err(refusal);
            }
        }
        Ok(match self.max {
            Some(max) => crate::time::clamp(deadline, max),
            None => deadline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_policies_with_server_work_make_a_server_side() {
        let none = DeadlinePolicy::new().with_deadline_required(false).with_default_timeout(Duration::from_secs(1));
        assert!(ServerDeadline::new(&none, "/a.B/C", None).is_none());
        let max_only = DeadlinePolicy::new().with_deadline_required(false).with_max_timeout(Duration::from_secs(1));
        let max_only = ServerDeadline::new(&max_only, "/a.B/C", None).unwrap();
        assert!(max_only.refusal.is_none());
        let required = ServerDeadline::new(&DeadlinePolicy::new(), "/a.B/C", None).unwrap();
        let refusal = required.admit(crate::time::infinite_future()).unwrap_err();
        assert_eq!(refusal.code(), Code::InvalidArgument);
        assert!(refusal.message().contains("/a.B/C"), "{}", refusal.message());
        let mine = Status::new(Code::FailedPrecondition, "mine");
        let chosen = ServerDeadline::new(&DeadlinePolicy::new(), "/a.B/C", Some(&mine)).unwrap();
        assert_eq!(chosen.admit(crate::time::infinite_future()).unwrap_err().code(), Code::FailedPrecondition);
    }

    #[test]
    fn far_deadlines_are_brought_in_and_near_ones_kept() {
        let policy = DeadlinePolicy::new().with_deadline_required(false).with_max_timeout(Duration::from_secs(2));
        let side = ServerDeadline::new(&policy, "/a.B/C", None).unwrap();
        let far = crate::time::from_instant(std::time::Instant::now() + Duration::from_secs(60));
        let left = crate::time::to_instant(side.admit(far).unwrap()).unwrap().saturating_duration_since(std::time::Instant::now());
        assert!(left <= Duration::from_secs(2) && left > Duration::from_millis(1500), "{left:?}");
        let never = crate::time::to_instant(side.admit(crate::time::infinite_future()).unwrap()).unwrap();
        assert!(never <= std::time::Instant::now() + Duration::from_secs(2));
        let near = crate::time::from_timeout(Duration::from_millis(300));
        let kept = crate::time::to_instant(side.admit(near).unwrap()).unwrap().saturating_duration_since(std::time::Instant::now());
        assert!(kept <= Duration::from_millis(300), "{kept:?}");
    }
}
