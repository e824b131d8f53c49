//! Typed application errors: an enum of a service's own error reasons, each mapped to a
//! gRPC code in the proto with the `(grpcore.code)` option of `grpcore/options.proto`.
//! grpcore-compiler implements [`ApplicationError`] for such an enum and `From<Enum> for
//! Status`, so a handler returns `Err(LibraryError::BookNotFound.into())` (or uses `?` on a
//! `Result<_, LibraryError>`), and a client reads the enum back with
//! [`ApplicationError::from_status`].
//!
//! On the wire the error is an ordinary status: the mapped code, a message, and a
//! `google.rpc.ErrorInfo` detail (reason: the enum value's proto name, domain: the enum's
//! full proto name) that any gRPC implementation with rich status support reads
//! (grpcio-status, grpc-go's `status.Details`, tonic-types).

use crate::error_details::{ErrorDetail, ErrorInfo};
use crate::status::{Code, Status};

/// An application error enum whose values map to gRPC codes; implemented by the code
/// grpcore-compiler generates for an enum with `(grpcore.code)` options.
///
/// ```
/// use grpcore::{ApplicationError, Code, Status};
///
/// // What grpcore-compiler writes for `enum Failure { FAILURE_UNSPECIFIED = 0;
/// // NO_SUCH_BOOK = 1 [(grpcore.code) = NOT_FOUND]; }` in package `library`, by hand:
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// enum Failure { Unspecified, NoSuchBook }
///
/// impl ApplicationError for Failure {
///     const DOMAIN: &'static str = "library.Failure";
///     fn code(self) -> Code {
///         match self { Failure::NoSuchBook => Code::NotFound, Failure::Unspecified => Code::Unknown }
///     }
///     fn reason(self) -> &'static str {
///         match self { Failure::NoSuchBook => "NO_SUCH_BOOK", Failure::Unspecified => "FAILURE_UNSPECIFIED" }
///     }
///     fn from_reason(reason: &str) -> Option<Self> {
///         match reason { "NO_SUCH_BOOK" => Some(Failure::NoSuchBook), "FAILURE_UNSPECIFIED" => Some(Failure::Unspecified), _ => None }
///     }
/// }
///
/// let status = Failure::NoSuchBook.status("no book 42");
/// assert_eq!((status.code(), status.message()), (Code::NotFound, "no book 42"));
/// assert_eq!(Failure::from_status(&status), Some(Failure::NoSuchBook));
/// ```
pub trait ApplicationError: Copy + Send + Sync + 'static {
    /// The enum's full proto name (`library.Failure`): the `domain` of the `ErrorInfo`.
    const DOMAIN: &'static str;

    /// The code this value maps to (`UNKNOWN` for a value without `(grpcore.code)`).
    fn code(self) -> Code;

    /// The value's name in the proto (`NO_SUCH_BOOK`): the `reason` of the `ErrorInfo`.
    fn reason(self) -> &'static str;

    /// The value whose proto name is `reason`.
    fn from_reason(reason: &str) -> Option<Self>;

    /// A status with this value's code, `message`, and an `ErrorInfo` detail naming the
    /// value (its reason) and the enum (its domain).
    fn status(self, message: impl Into<String>) -> Status {
        let info = ErrorInfo { reason: self.reason().to_string(), domain: Self::DOMAIN.to_string(), metadata: Default::default() };
        Status::with_error_details(self.code(), message, [ErrorDetail::ErrorInfo(info)])
    }

    /// The value a status carries: the one its first `ErrorInfo` of this enum's domain
    /// names. `None` for a status without one (or with details that do not decode).
    fn from_status(status: &Status) -> Option<Self> {
        status.error_details().ok()?.into_iter().find_map(|detail| match detail {
            ErrorDetail::ErrorInfo(info) if info.domain == Self::DOMAIN => Self::from_reason(&info.reason),
            _ => None,
        })
    }
}
