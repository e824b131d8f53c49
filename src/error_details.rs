//! Rich errors: the standard error details of `google/rpc/error_details.proto` carried in a
//! [`Status`], as gRPC's richer error model defines them (a `google.rpc.Status` message in
//! the `grpc-status-details-bin` trailer). grpc-go (`status.WithDetails`), grpcio-status
//! (`rpc_status.to_status` / `from_call`) and tonic-types read and write the same bytes.
//!
//! ```
//! use std::time::Duration;
//! use grpcore::error_details::{BadRequest, ErrorDetail, FieldViolation, RetryInfo};
//! use grpcore::{Code, Status};
//!
//! let status = Status::with_error_details(
//!     Code::InvalidArgument,
//!     "the request is not valid",
//!     vec![
//!         ErrorDetail::BadRequest(BadRequest {
//!             field_violations: vec![FieldViolation { field: "name".into(), description: "empty".into() }],
//!         }),
//!         ErrorDetail::RetryInfo(RetryInfo { retry_delay: Some(Duration::from_millis(1500)) }),
//!     ],
//! );
//! let details = status.error_details().unwrap();
//! assert!(matches!(&details[1], ErrorDetail::RetryInfo(r) if r.retry_delay == Some(Duration::from_millis(1500))));
//! ```
//!
//! The types here are plain Rust; their protobuf form stays inside grpcore (it is not tied
//! to a version of a protobuf crate in grpcore's API). A detail of another type travels as
//! [`ErrorDetail::Other`]: its type URL and bytes.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;

use crate::error::{CodecErrorKind, Error};
use crate::status::{Code, Status};

/// Why an error happened, machine-readable: a reason (`UPPER_SNAKE_CASE`), the domain that
/// defines it, and details.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorInfo {
    /// The reason, e.g. `API_DISABLED`.
    pub reason: String,
    /// The logical grouping the reason belongs to, e.g. `pubsub.googleapis.com`.
    pub domain: String,
    /// More about the error, e.g. `{"resource": "projects/123"}`.
    pub metadata: HashMap<String, String>,
}

/// When the client may retry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryInfo {
    /// How long to wait before retrying.
    pub retry_delay: Option<Duration>,
}

/// Debugging information for the developers of the service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebugInfo {
    /// The stack trace.
    pub stack_entries: Vec<String>,
    /// More detail.
    pub detail: String,
}

/// Which quota checks failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaFailure {
    /// The failed checks.
    pub violations: Vec<QuotaViolation>,
}

/// One failed quota check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaViolation {
    /// What the quota applies to, e.g. `clientip:1.2.3.4`.
    pub subject: String,
    /// How it failed.
    pub description: String,
}

/// Which preconditions failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreconditionFailure {
    /// The failed preconditions.
    pub violations: Vec<PreconditionViolation>,
}

/// One failed precondition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreconditionViolation {
    /// The kind of precondition, e.g. `TOS`.
    pub kind: String,
    /// What failed it.
    pub subject: String,
    /// How it failed.
    pub description: String,
}

/// Which fields of the request are wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BadRequest {
    /// The wrong fields.
    pub field_violations: Vec<FieldViolation>,
}

/// One wrong field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path, e.g. `address.street`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// Which request this was, for a bug report or a log search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// An opaque id of the request.
    pub request_id: String,
    /// Data the service needs to find the request in its logs.
    pub serving_data: String,
}

/// The resource the error is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceInfo {
    /// Its type, e.g. `sql table`.
    pub resource_type: String,
    /// Its name.
    pub resource_name: String,
    /// Its owner.
    pub owner: String,
    /// What went wrong with it.
    pub description: String,
}

/// Where to read more.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Help {
    /// The links.
    pub links: Vec<HelpLink>,
}

/// One link of [`Help`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelpLink {
    /// What it leads to.
    pub description: String,
    /// The URL.
    pub url: String,
}

/// The error message in the user's language.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalizedMessage {
    /// The locale (BCP 47), e.g. `fr-CH`.
    pub locale: String,
    /// The message.
    pub message: String,
}

/// One detail of a rich error.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorDetail {
    /// `google.rpc.ErrorInfo`.
    ErrorInfo(ErrorInfo),
    /// `google.rpc.RetryInfo`.
    RetryInfo(RetryInfo),
    /// `google.rpc.DebugInfo`.
    DebugInfo(DebugInfo),
    /// `google.rpc.QuotaFailure`.
    QuotaFailure(QuotaFailure),
    /// `google.rpc.PreconditionFailure`.
    PreconditionFailure(PreconditionFailure),
    /// `google.rpc.BadRequest`.
    BadRequest(BadRequest),
    /// `google.rpc.RequestInfo`.
    RequestInfo(RequestInfo),
    /// `google.rpc.ResourceInfo`.
    ResourceInfo(ResourceInfo),
    /// `google.rpc.Help`.
    Help(Help),
    /// `google.rpc.LocalizedMessage`.
    LocalizedMessage(LocalizedMessage),
    /// A detail of another type, as a `google.protobuf.Any`: its type URL
    /// (`type.googleapis.com/package.Message`) and its serialized message.
    Other {
        /// The type URL.
        type_url: String,
        /// The message's bytes.
        value: Vec<u8>,
    },
}

const PREFIX: &str = "type.googleapis.com/";

impl Status {
    /// A status whose details are `details`, encoded as a `google.rpc.Status` (with the
    /// same code and message) in the `grpc-status-details-bin` trailer.
    pub fn with_error_details(code: Code, message: impl Into<String>, details: impl IntoIterator<Item = ErrorDetail>) -> Status {
        let message = message.into();
        let rpc = pb::RpcStatus {
            code: code as i32,
            message: message.clone(),
            details: details.into_iter().map(ErrorDetail::into_any).collect(),
        };
        Status::with_details(code, message, rpc.encode_to_vec())
    }

    /// The rich error details this status carries (empty when it has none). Fails when the
    /// details are not a `google.rpc.Status`, or when one of the standard details in it does
    /// not decode; details of other types come back as [`ErrorDetail::Other`].
    pub fn error_details(&self) -> Result<Vec<ErrorDetail>, Error> {
        if self.details().is_empty() {
            return Ok(Vec::new());
        }
        let rpc = pb::RpcStatus::decode(self.details())
            .map_err(|e| Error::codec_kind(CodecErrorKind::Other, format!("the status details are not a google.rpc.Status: {e}")).with_source(e))?;
        rpc.details.into_iter().map(ErrorDetail::from_any).collect()
    }
}

impl ErrorDetail {
    fn into_any(self) -> pb::Any {
        let (name, value) = match self {
            ErrorDetail::ErrorInfo(d) => ("google.rpc.ErrorInfo", pb::ErrorInfo { reason: d.reason, domain: d.domain, metadata: d.metadata }.encode_to_vec()),
            ErrorDetail::RetryInfo(d) => ("google.rpc.RetryInfo", pb::RetryInfo { retry_delay: d.retry_delay.map(pb::Duration::from) }.encode_to_vec()),
            ErrorDetail::DebugInfo(d) => ("google.rpc.DebugInfo", pb::DebugInfo { stack_entries: d.stack_entries, detail: d.detail }.encode_to_vec()),
            ErrorDetail::QuotaFailure(d) => (
                "google.rpc.QuotaFailure",
                pb::QuotaFailure {
                    violations: d.violations.into_iter().map(|v| pb::QuotaViolation { subject: v.subject, description: v.description }).collect(),
                }
                .encode_to_vec(),
            ),
            ErrorDetail::PreconditionFailure(d) => (
                "google.rpc.PreconditionFailure",
                pb::PreconditionFailure {
                    violations: d
                        .violations
                        .into_iter()
                        .map(|v| pb::PreconditionViolation { kind: v.kind, subject: v.subject, description: v.description })
                        .collect(),
                }
                .encode_to_vec(),
            ),
            ErrorDetail::BadRequest(d) => (
                "google.rpc.BadRequest",
                pb::BadRequest {
                    field_violations: d
                        .field_violations
                        .into_iter()
                        .map(|v| pb::FieldViolation { field: v.field, description: v.description })
                        .collect(),
                }
                .encode_to_vec(),
            ),
            ErrorDetail::RequestInfo(d) => {
                ("google.rpc.RequestInfo", pb::RequestInfo { request_id: d.request_id, serving_data: d.serving_data }.encode_to_vec())
            }
            ErrorDetail::ResourceInfo(d) => (
                "google.rpc.ResourceInfo",
                pb::ResourceInfo {
                    resource_type: d.resource_type,
                    resource_name: d.resource_name,
                    owner: d.owner,
                    description: d.description,
                }
                .encode_to_vec(),
            ),
            ErrorDetail::Help(d) => (
                "google.rpc.Help",
                pb::Help { links: d.links.into_iter().map(|l| pb::Link { description: l.description, url: l.url }).collect() }
                    .encode_to_vec(),
            ),
            ErrorDetail::LocalizedMessage(d) => {
                ("google.rpc.LocalizedMessage", pb::LocalizedMessage { locale: d.locale, message: d.message }.encode_to_vec())
            }
            ErrorDetail::Other { type_url, value } => return pb::Any { type_url, value },
        };
        pb::Any { type_url: format!("{PREFIX}{name}"), value }
    }

    fn from_any(any: pb::Any) -> Result<ErrorDetail, Error> {
        // The type is the URL's last path segment, whatever its host.
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        let bad = |e: prost::DecodeError| Error::codec_kind(CodecErrorKind::Decode, format!("a {name} detail does not decode: {e}")).with_source(e);
        let value = &any.value[..];
        Ok(match name {
            "google.rpc.ErrorInfo" => {
                let d = pb::ErrorInfo::decode(value).map_err(bad)?;
                ErrorDetail::ErrorInfo(ErrorInfo { reason: d.reason, domain: d.domain, metadata: d.metadata })
            }
            "google.rpc.RetryInfo" => {
                let d = pb::RetryInfo::decode(value).map_err(bad)?;
                let delay = d.retry_delay.map(Duration::try_from).transpose().map_err(|()| {
                    Error::codec_kind(CodecErrorKind::Other, "a google.rpc.RetryInfo detail has a negative or out-of-range delay")
                })?;
                ErrorDetail::RetryInfo(RetryInfo { retry_delay: delay })
            }
            "google.rpc.DebugInfo" => {
                let d = pb::DebugInfo::decode(value).map_err(bad)?;
                ErrorDetail::DebugInfo(DebugInfo { stack_entries: d.stack_entries, detail: d.detail })
            }
            "google.rpc.QuotaFailure" => {
                let d = pb::QuotaFailure::decode(value).map_err(bad)?;
                ErrorDetail::QuotaFailure(QuotaFailure {
                    violations: d.violations.into_iter().map(|v| QuotaViolation { subject: v.subject, description: v.description }).collect(),
                })
            }
            "google.rpc.PreconditionFailure" => {
                let d = pb::PreconditionFailure::decode(value).map_err(bad)?;
                ErrorDetail::PreconditionFailure(PreconditionFailure {
                    violations: d
                        .violations
                        .into_iter()
                        .map(|v| PreconditionViolation { kind: v.kind, subject: v.subject, description: v.description })
                        .collect(),
                })
            }
            "google.rpc.BadRequest" => {
                let d = pb::BadRequest::decode(value).map_err(bad)?;
                ErrorDetail::BadRequest(BadRequest {
                    field_violations: d
                        .field_violations
                        .into_iter()
                        .map(|v| FieldViolation { field: v.field, description: v.description })
                        .collect(),
                })
            }
            "google.rpc.RequestInfo" => {
                let d = pb::RequestInfo::decode(value).map_err(bad)?;
                ErrorDetail::RequestInfo(RequestInfo { request_id: d.request_id, serving_data: d.serving_data })
            }
            "google.rpc.ResourceInfo" => {
                let d = pb::ResourceInfo::decode(value).map_err(bad)?;
                ErrorDetail::ResourceInfo(ResourceInfo {
                    resource_type: d.resource_type,
                    resource_name: d.resource_name,
                    owner: d.owner,
                    description: d.description,
                })
            }
            "google.rpc.Help" => {
                let d = pb::Help::decode(value).map_err(bad)?;
                ErrorDetail::Help(Help { links: d.links.into_iter().map(|l| HelpLink { description: l.description, url: l.url }).collect() })
            }
            "google.rpc.LocalizedMessage" => {
                let d = pb::LocalizedMessage::decode(value).map_err(bad)?;
                ErrorDetail::LocalizedMessage(LocalizedMessage { locale: d.locale, message: d.message })
            }
            _ => ErrorDetail::Other { type_url: any.type_url, value: any.value },
        })
    }
}

/// The messages on the wire, field numbers as `google/rpc/status.proto`,
/// `google/rpc/error_details.proto` and the well-known `Any` and `Duration` define them.
mod pb {
    use std::collections::HashMap;
    use std::time::Duration as StdDuration;

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct RpcStatus {
        #[prost(int32, tag = "1")]
        pub(super) code: i32,
        #[prost(string, tag = "2")]
        pub(super) message: String,
        #[prost(message, repeated, tag = "3")]
        pub(super) details: Vec<Any>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Any {
        #[prost(string, tag = "1")]
        pub(super) type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub(super) value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Duration {
        #[prost(int64, tag = "1")]
        pub(super) seconds: i64,
        #[prost(int32, tag = "2")]
        pub(super) nanos: i32,
    }

    impl From<StdDuration> for Duration {
        fn from(d: StdDuration) -> Duration {
            Duration { seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX), nanos: d.subsec_nanos() as i32 }
        }
    }

    impl TryFrom<Duration> for StdDuration {
        type Error = ();

        fn try_from(d: Duration) -> Result<StdDuration, ()> {
            let seconds = u64::try_from(d.seconds).map_err(|_| ())?;
            let nanos = u32::try_from(d.nanos).ok().filter(|n| *n < 1_000_000_000).ok_or(())?;
            Ok(StdDuration::new(seconds, nanos))
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ErrorInfo {
        #[prost(string, tag = "1")]
        pub(super) reason: String,
        #[prost(string, tag = "2")]
        pub(super) domain: String,
        #[prost(map = "string, string", tag = "3")]
        pub(super) metadata: HashMap<String, String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub(super) retry_delay: Option<Duration>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct DebugInfo {
        #[prost(string, repeated, tag = "1")]
        pub(super) stack_entries: Vec<String>,
        #[prost(string, tag = "2")]
        pub(super) detail: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct QuotaFailure {
        #[prost(message, repeated, tag = "1")]
        pub(super) violations: Vec<QuotaViolation>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct QuotaViolation {
        #[prost(string, tag = "1")]
        pub(super) subject: String,
        #[prost(string, tag = "2")]
        pub(super) description: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct PreconditionFailure {
        #[prost(message, repeated, tag = "1")]
        pub(super) violations: Vec<PreconditionViolation>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct PreconditionViolation {
        /// `type` in the proto.
        #[prost(string, tag = "1")]
        pub(super) kind: String,
        #[prost(string, tag = "2")]
        pub(super) subject: String,
        #[prost(string, tag = "3")]
        pub(super) description: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct BadRequest {
        #[prost(message, repeated, tag = "1")]
        pub(super) field_violations: Vec<FieldViolation>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct FieldViolation {
        #[prost(string, tag = "1")]
        pub(super) field: String,
        #[prost(string, tag = "2")]
        pub(super) description: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct RequestInfo {
        #[prost(string, tag = "1")]
        pub(super) request_id: String,
        #[prost(string, tag = "2")]
        pub(super) serving_data: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ResourceInfo {
        #[prost(string, tag = "1")]
        pub(super) resource_type: String,
        #[prost(string, tag = "2")]
        pub(super) resource_name: String,
        #[prost(string, tag = "3")]
        pub(super) owner: String,
        #[prost(string, tag = "4")]
        pub(super) description: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Help {
        #[prost(message, repeated, tag = "1")]
        pub(super) links: Vec<Link>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Link {
        #[prost(string, tag = "1")]
        pub(super) description: String,
        #[prost(string, tag = "2")]
        pub(super) url: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct LocalizedMessage {
        #[prost(string, tag = "1")]
        pub(super) locale: String,
        #[prost(string, tag = "2")]
        pub(super) message: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_detail_round_trips() {
        let details = vec![
            ErrorDetail::ErrorInfo(ErrorInfo { reason: "R".into(), domain: "d".into(), metadata: [("k".to_string(), "v".to_string())].into() }),
            ErrorDetail::RetryInfo(RetryInfo { retry_delay: Some(Duration::new(3, 5)) }),
            ErrorDetail::DebugInfo(DebugInfo { stack_entries: vec!["a".into(), "b".into()], detail: "x".into() }),
            ErrorDetail::QuotaFailure(QuotaFailure { violations: vec![QuotaViolation { subject: "s".into(), description: "d".into() }] }),
            ErrorDetail::PreconditionFailure(PreconditionFailure {
                violations: vec![PreconditionViolation { kind: "TOS".into(), subject: "s".into(), description: "d".into() }],
            }),
            ErrorDetail::BadRequest(BadRequest { field_violations: vec![FieldViolation { field: "f".into(), description: "d".into() }] }),
            ErrorDetail::RequestInfo(RequestInfo { request_id: "id".into(), serving_data: "sd".into() }),
            ErrorDetail::ResourceInfo(ResourceInfo { resource_type: "t".into(), resource_name: "n".into(), owner: "o".into(), description: "d".into() }),
            ErrorDetail::Help(Help { links: vec![HelpLink { description: "d".into(), url: "https://x".into() }] }),
            ErrorDetail::LocalizedMessage(LocalizedMessage { locale: "fr".into(), message: "m".into() }),
            ErrorDetail::Other { type_url: "type.example.com/x.Y".into(), value: vec![1, 2] },
        ];
        let status = Status::with_error_details(Code::FailedPrecondition, "no", details.clone());
        assert_eq!((status.code(), status.message()), (Code::FailedPrecondition, "no"));
        assert_eq!(status.error_details().unwrap(), details);
        let rpc = pb::RpcStatus::decode(status.details()).unwrap();
        assert_eq!((rpc.code, rpc.message.as_str()), (Code::FailedPrecondition as i32, "no"));
        assert_eq!(rpc.details[0].type_url, "type.googleapis.com/google.rpc.ErrorInfo");
    }

    #[test]
    fn bad_details_are_errors_not_panics() {
        assert!(Status::new(Code::Internal, "x").error_details().unwrap().is_empty());
        assert!(Status::with_details(Code::Internal, "x", &b"\xff\xff"[..]).error_details().is_err());
        let bad_retry = pb::RpcStatus {
            code: 13,
            message: String::new(),
            details: vec![pb::Any {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: pb::RetryInfo { retry_delay: Some(pb::Duration { seconds: -1, nanos: 0 }) }.encode_to_vec(),
            }],
        };
        assert!(Status::with_details(Code::Internal, "x", bad_retry.encode_to_vec()).error_details().is_err());
        let garbled = pb::RpcStatus {
            code: 13,
            message: String::new(),
            details: vec![pb::Any { type_url: "type.googleapis.com/google.rpc.BadRequest".into(), value: vec![0x0a, 0x05] }],
        };
        assert!(Status::with_details(Code::Internal, "x", garbled.encode_to_vec()).error_details().is_err());
    }
}
