//! gRPC status codes and the [`Status`] a call ends with.
//!
//! Owns the mapping between the core's integer codes and [`Code`]; never panics on a code it
//! does not know (it becomes [`Code::Unknown`]).

use std::fmt;

use bytes::Bytes;

use crate::metadata::Metadata;

/// The 17 canonical gRPC status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// Not an error: the call succeeded.
    Ok = 0,
    /// The operation was cancelled, typically by the caller.
    Cancelled = 1,
    /// Unknown error, or an error from an unknown error space.
    Unknown = 2,
    /// The client gave an invalid argument.
    InvalidArgument = 3,
    /// The deadline expired before the operation could complete.
    DeadlineExceeded = 4,
    /// A requested entity was not found.
    NotFound = 5,
    /// An entity the client tried to create already exists.
    AlreadyExists = 6,
    /// The caller does not have permission.
    PermissionDenied = 7,
    /// A resource (quota, memory, message size) has been exhausted.
    ResourceExhausted = 8,
    /// The system is not in a state required for the operation.
    FailedPrecondition = 9,
    /// The operation was aborted, typically because of a concurrency conflict.
    Aborted = 10,
    /// The operation was attempted past the valid range.
    OutOfRange = 11,
    /// The operation is not implemented or supported.
    Unimplemented = 12,
    /// An internal invariant was broken.
    Internal = 13,
    /// The service is currently unavailable; retrying may help.
    Unavailable = 14,
    /// Unrecoverable data loss or corruption.
    DataLoss = 15,
    /// The request does not have valid authentication credentials.
    Unauthenticated = 16,
}

impl Code {
    /// Maps a numeric code; values outside 0..=16 become [`Code::Unknown`].
    pub fn from_i32(value: i32) -> Code {
        match value {
            0 => Code::Ok,
            1 => Code::Cancelled,
            2 => Code::Unknown,
            3 => Code::InvalidArgument,
            4 => Code::DeadlineExceeded,
            5 => Code::NotFound,
            6 => Code::AlreadyExists,
            7 => Code::PermissionDenied,
            8 => Code::ResourceExhausted,
            9 => Code::FailedPrecondition,
            10 => Code::Aborted,
            11 => Code::OutOfRange,
            12 => Code::Unimplemented,
            13 => Code::Internal,
            14 => Code::Unavailable,
            15 => Code::DataLoss,
            16 => Code::Unauthenticated,
            _ => Code::Unknown,
        }
    }

    /// The numeric value sent on the wire.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The canonical upper-case name, e.g. `DEADLINE_EXCEEDED`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of a call: a code, a message, optional binary details
/// (conventionally an encoded `google.rpc.Status`) and, on the client, the trailers it came with.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    code: Code,
    message: String,
    details: Bytes,
    metadata: Metadata,
}

/// `OK` with no message, details or metadata, for code that only borrows a status (a
/// server's reply to a successful call builds none).
pub(crate) static OK: Status = Status {
    code: Code::Ok,
    message: String::new(),
    details: Bytes::new(),
    metadata: Metadata::new(),
};

/// One shorthand constructor per error code, named as tonic names them:
/// `Status::not_found(message)` is `Status::new(Code::NotFound, message)`.
macro_rules! shorthands {
    ($($name:ident => $code:ident),* $(,)?) => {
        impl Status {
            $(
                #[doc = concat!("Shorthand for `Status::new(Code::", stringify!($code), ", message)`.")]
                pub fn $name(message: impl Into<String>) -> Status {
                    Status::new(Code::$code, message)
                }
            )*
        }
    };
}

shorthands! {
    cancelled => Cancelled,
    unknown => Unknown,
    invalid_argument => InvalidArgument,
    deadline_exceeded => DeadlineExceeded,
    not_found => NotFound,
    already_exists => AlreadyExists,
    permission_denied => PermissionDenied,
    resource_exhausted => ResourceExhausted,
    failed_precondition => FailedPrecondition,
    aborted => Aborted,
    out_of_range => OutOfRange,
    unimplemented => Unimplemented,
    internal => Internal,
    unavailable => Unavailable,
    data_loss => DataLoss,
    unauthenticated => Unauthenticated,
}

/// The trailer that carries [`Status::details`] on the wire.
pub(crate) const DETAILS_KEY: &str = "grpc-status-details-bin";

impl Status {
    /// A status with a code and a message.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
            details: Bytes::new(),
            metadata: Metadata::new(),
        }
    }

    /// A status with binary details, sent as the `grpc-status-details-bin` trailer.
    pub fn with_details(code: Code, message: impl Into<String>, details: impl Into<Bytes>) -> Status {
        Status {
            details: details.into(),
            ..Status::new(code, message)
        }
    }

    /// `OK` with an empty message.
    pub fn ok() -> Status {
        Status::new(Code::Ok, "")
    }

    /// The status code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The human-readable message (may be empty).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The binary details (empty when none were sent).
    pub fn details(&self) -> &[u8] {
        &self.details
    }

    /// The trailing metadata a non-OK status arrived with (client side; empty otherwise:
    /// a successful response carries its trailers itself).
    /// The `grpc-status-details-bin` trailer is not repeated here: see [`Status::details`].
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Attaches trailing metadata.
    pub(crate) fn set_metadata(&mut self, metadata: Metadata) {
        self.metadata = metadata;
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "status {}", self.code)
        } else {
            write!(f, "status {}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for Status {}

/// An I/O failure as a status, so a handler can use `?` on `std::io::Result`: the code
/// says what the failure means to the caller, the message is the error's text (which goes
/// to the client: map it yourself where it names paths or hosts the client must not see).
///
/// | `io::ErrorKind` | code |
/// |---|---|
/// | `NotFound` | `NOT_FOUND` |
/// | `PermissionDenied` | `PERMISSION_DENIED` |
/// | `AlreadyExists` | `ALREADY_EXISTS` |
/// | `InvalidInput` | `INVALID_ARGUMENT` |
/// | `InvalidData` (stored data that does not parse) | `DATA_LOSS` |
/// | `UnexpectedEof` (reading past the end) | `OUT_OF_RANGE` |
/// | `TimedOut` | `DEADLINE_EXCEEDED` |
/// | `Unsupported` | `UNIMPLEMENTED` |
/// | `OutOfMemory` | `RESOURCE_EXHAUSTED` |
/// | a dependency out of reach or a retryable condition: `ConnectionRefused`, `ConnectionReset`, `ConnectionAborted`, `NotConnected`, `BrokenPipe`, `AddrInUse`, `AddrNotAvailable`, `WouldBlock`, `Interrupted` | `UNAVAILABLE` |
/// | `WriteZero` | `INTERNAL` |
/// | any other | `UNKNOWN` |
///
/// ```
/// use grpcore::{Code, Status};
///
/// fn read_config(path: &str) -> Result<String, Status> {
///     Ok(std::fs::read_to_string(path)?)
/// }
/// assert_eq!(read_config("/no/such/file").unwrap_err().code(), Code::NotFound);
/// ```
impl From<std::io::Error> for Status {
    fn from(err: std::io::Error) -> Status {
        use std::io::ErrorKind as K;
        let code = match err.kind() {
            K::NotFound => Code::NotFound,
            K::PermissionDenied => Code::PermissionDenied,
            K::AlreadyExists => Code::AlreadyExists,
            K::InvalidInput => Code::InvalidArgument,
            K::InvalidData => Code::DataLoss,
            K::UnexpectedEof => Code::OutOfRange,
            K::TimedOut => Code::DeadlineExceeded,
            K::Unsupported => Code::Unimplemented,
            K::OutOfMemory => Code::ResourceExhausted,
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::AddrInUse
            | K::AddrNotAvailable
            | K::WouldBlock
            | K::Interrupted => Code::Unavailable,
            K::WriteZero => Code::Internal,
            _ => Code::Unknown,
        };
        Status::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for v in 0..=16 {
            assert_eq!(Code::from_i32(v).as_i32(), v);
        }
        assert_eq!(Code::from_i32(17), Code::Unknown);
        assert_eq!(Code::from_i32(-1), Code::Unknown);
        assert_eq!(Code::DeadlineExceeded.to_string(), "DEADLINE_EXCEEDED");
    }

    #[test]
    fn every_error_code_has_its_shorthand() {
        let made: [fn(&'static str) -> Status; 16] = [
            Status::cancelled,
            Status::unknown,
            Status::invalid_argument,
            Status::deadline_exceeded,
            Status::not_found,
            Status::already_exists,
            Status::permission_denied,
            Status::resource_exhausted,
            Status::failed_precondition,
            Status::aborted,
            Status::out_of_range,
            Status::unimplemented,
            Status::internal,
            Status::unavailable,
            Status::data_loss,
            Status::unauthenticated,
        ];
        for (value, make) in (1..=16).zip(made) {
            let status = make("why");
            assert_eq!(status.code(), Code::from_i32(value), "code {value}");
            assert_eq!(status.message(), "why");
        }
    }

    #[test]
    fn io_errors_become_the_status_their_kind_means() {
        use std::io::{Error as IoError, ErrorKind};
        for (kind, code) in [
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::PermissionDenied, Code::PermissionDenied),
            (ErrorKind::InvalidData, Code::DataLoss),
            (ErrorKind::UnexpectedEof, Code::OutOfRange),
            (ErrorKind::TimedOut, Code::DeadlineExceeded),
            (ErrorKind::ConnectionRefused, Code::Unavailable),
            (ErrorKind::Other, Code::Unknown),
        ] {
            let status = Status::from(IoError::new(kind, "what happened"));
            assert_eq!(status.code(), code, "{kind:?}");
            assert_eq!(status.message(), "what happened");
        }
        fn handler() -> Result<(), Status> {
            std::fs::File::open("/grpcore/no/such/file")?;
            Ok(())
        }
        let err = handler().unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert!(err.message().contains("No such file"), "{err}");
    }

    #[test]
    fn display_names_code_and_message() {
        let s = Status::with_details(Code::NotFound, "no such user", &b"\x01"[..]);
        assert_eq!(s.to_string(), "status NOT_FOUND: no such user");
        assert_eq!(s.details(), b"\x01");
    }

    mod props {
        //! Property tests of what a peer's status becomes: any integer code, any message and
        //! details. (`grpc-message` percent-decoding is done by the core; the details trailer
        //! is taken out of the trailers with `Metadata::take_raw`, tested in metadata.rs.)
        //! 256 cases each.
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_integer_is_a_code(v in any::<i32>()) {
                let code = Code::from_i32(v);
                if (0..=16).contains(&v) {
                    prop_assert_eq!(code.as_i32(), v);
                } else {
                    prop_assert_eq!(code, Code::Unknown);
                }
                prop_assert!(!code.name().is_empty());
                prop_assert_eq!(code.to_string(), code.name());
            }

            #[test]
            fn any_message_and_details_are_kept(
                v in -3i32..20,
                message in "\\PC{0,60}|[\\x00-\\x7f%]{0,60}",
                details in proptest::collection::vec(any::<u8>(), 0..100),
            ) {
                let code = Code::from_i32(v);
                let status = Status::with_details(code, message.clone(), details.clone());
                prop_assert_eq!(status.code(), code);
                prop_assert_eq!(status.message(), &message[..]);
                prop_assert_eq!(status.details(), &details[..]);
                let shown = status.to_string();
                prop_assert!(shown.contains(code.name()));
                prop_assert!(shown.ends_with(&message[..]));
                let _ = format!("{status:?}");
            }
        }
    }
}
