//! The crate's one error type: a `#[non_exhaustive]` enum a program can match on, whose
//! variants carry typed details (a kind, the message, and the underlying error as
//! [`source`](std::error::Error::source) where there is one).
//!
//! Constructing one: `Error::config(msg)` (or `Error::Config(ConfigError::new(kind, msg))`,
//! or `Error::Config(msg.into())`), `Error::codec_kind(CodecErrorKind::Decode, msg)
//! .with_source(e)` ... A `String` or `&str` converts into every detail type with kind
//! `Other`, so code written against the older `Error::Config(String)` shape adapts with
//! `.into()`.

use std::fmt;
use std::sync::Arc;

use crate::metadata::{InvalidMetadata, Metadata, MetadataErrorKind};
use crate::status::{Code, Status};

/// The cause of an error, shared (an [`Error`] is `Clone`).
type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Declares a detail type: a kind, a message and an optional source.
macro_rules! detail {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $other:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            kind: $kind,
            message: String,
            source: Option<Source>,
        }

        impl $name {
            /// A detail of `kind` with `message` (what failed, with what input, what to do).
            pub fn new(kind: $kind, message: impl Into<String>) -> $name {
                $name { kind, message: message.into(), source: None }
            }

            /// The same, caused by `source` (returned by
            /// [`std::error::Error::source`] of this and of the [`Error`] holding it).
            pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> $name {
                self.source = Some(Arc::new(source));
                self
            }

            /// What kind of failure this is.
            pub fn kind(&self) -> $kind {
                self.kind
            }

            /// The message, without the kind's prefix.
            pub fn message(&self) -> &str {
                &self.message
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut d = f.debug_struct(stringify!($name));
                d.field("kind", &self.kind).field("message", &self.message);
                if let Some(source) = &self.source {
                    d.field("source", source);
                }
                d.finish()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.message)
            }
        }

        impl std::error::Error for $name {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
            }
        }

        /// A detail of kind `Other` with this message.
        impl From<String> for $name {
            fn from(message: String) -> $name {
                $name::new($kind::$other, message)
            }
        }

        /// A detail of kind `Other` with this message.
        impl From<&str> for $name {
            fn from(message: &str) -> $name {
                $name::new($kind::$other, message)
            }
        }
    };
}

/// Which way a message failed ([`CodecError::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecErrorKind {
    /// A message could not be encoded (or its codec misreported its length).
    Encode,
    /// Received bytes did not decode as the expected message.
    Decode,
    /// Anything else a codec reports.
    Other,
}

/// What was rejected ([`ConfigError::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A channel target that no resolver can use (malformed, or refused by the core).
    Target,
    /// A server could not listen on an address, or has none.
    Bind,
    /// A setting out of range, a malformed service config, a bad name or argument.
    Setting,
    /// Certificates, keys, TLS or call credentials that cannot be used.
    Credentials,
    /// A file (certificate, key, rules) could not be read; the source is the I/O error.
    File,
    /// A method descriptor used wrongly: registered twice, called as another kind.
    Method,
    /// The gRPC C core linked at run time is not the version the bindings describe.
    CoreVersion,
    /// Anything else.
    Other,
}

/// What went wrong inside ([`InternalError::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InternalErrorKind {
    /// The C core refused an operation (a batch, a call, a thread).
    Core,
    /// A spawned task or callback panicked.
    Panic,
    /// An API used in a way it does not allow: polled after completion, blocking on a
    /// completion-queue thread, sending after close.
    Misuse,
    /// Anything else.
    Other,
}

/// What has shut down ([`ShutdownError::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShutdownErrorKind {
    /// The [`Environment`](crate::Environment) and its completion queues.
    Environment,
    /// The channel.
    Channel,
    /// The server.
    Server,
    /// Anything else.
    Other,
}

detail!(
    /// The details of [`Error::Codec`]: a message that could not be encoded or decoded.
    CodecError, CodecErrorKind, Other
);
detail!(
    /// The details of [`Error::Config`]: a builder or argument that was rejected.
    ConfigError, ConfigErrorKind, Other
);
detail!(
    /// The details of [`Error::Internal`]: the core refused an operation, a task panicked,
    /// or an API was misused.
    InternalError, InternalErrorKind, Other
);
detail!(
    /// The details of [`Error::Shutdown`]: what shut down.
    ShutdownError, ShutdownErrorKind, Other
);

/// The details of [`Error::InvalidMetadata`]: which key or value, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataError {
    kind: MetadataErrorKind,
    message: String,
}

impl MetadataError {
    /// What was wrong.
    pub fn kind(&self) -> MetadataErrorKind {
        self.kind
    }

    /// The message, naming the key.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MetadataError {}

/// Everything that can go wrong in grpcore.
///
/// Every variant maps to a [`Status`] with [`Error::status`], so a handler can turn any
/// error into an answer with `?`-style conversion. The variants carry typed details to
/// match on, and [`source`](std::error::Error::source) gives the underlying error where
/// there is one (an I/O error for an unreadable file, the codec's own error, the status of
/// a failed call):
///
/// ```
/// use grpcore::{ConfigErrorKind, Error};
/// let err = grpcore::Certificate::from_pem_file("/no/such/ca.pem").unwrap_err();
/// match &err {
///     Error::Config(c) if c.kind() == ConfigErrorKind::File => {
///         let io = std::error::Error::source(&err).unwrap().downcast_ref::<std::io::Error>().unwrap();
///         assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
///     }
///     other => panic!("{other}"),
/// }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The call ended with a non-OK status (from the peer, or from the core: deadline,
    /// connection failure, message too large, cancellation).
    Rpc(Status),
    /// A message could not be encoded or decoded.
    Codec(CodecError),
    /// A builder or argument was rejected: bad target, bad setting, failed bind.
    Config(ConfigError),
    /// A metadata key or value is not valid for gRPC.
    InvalidMetadata(MetadataError),
    /// The environment, channel or server this object belongs to has shut down.
    Shutdown(ShutdownError),
    /// The core refused an operation, a task panicked, or an API was misused.
    Internal(InternalError),
}

impl Error {
    /// [`Error::Config`] of kind [`ConfigErrorKind::Other`].
    pub fn config(message: impl Into<String>) -> Error {
        Error::Config(ConfigError::new(ConfigErrorKind::Other, message))
    }

    /// [`Error::Config`] of `kind`.
    pub fn config_kind(kind: ConfigErrorKind, message: impl Into<String>) -> Error {
        Error::Config(ConfigError::new(kind, message))
    }

    /// [`Error::Codec`] of `kind`.
    pub fn codec_kind(kind: CodecErrorKind, message: impl Into<String>) -> Error {
        Error::Codec(CodecError::new(kind, message))
    }

    /// [`Error::Internal`] of kind [`InternalErrorKind::Other`].
    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal(InternalError::new(InternalErrorKind::Other, message))
    }

    /// [`Error::Internal`] of `kind`.
    pub fn internal_kind(kind: InternalErrorKind, message: impl Into<String>) -> Error {
        Error::Internal(InternalError::new(kind, message))
    }

    /// [`Error::Shutdown`] of `kind`.
    pub fn shutdown(kind: ShutdownErrorKind, message: impl Into<String>) -> Error {
        Error::Shutdown(ShutdownError::new(kind, message))
    }

    /// The same error caused by `source`, for the variants that carry one (all but
    /// [`Rpc`](Error::Rpc) and [`InvalidMetadata`](Error::InvalidMetadata), which are
    /// returned unchanged).
    pub fn with_source(self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        match self {
            Error::Codec(d) => Error::Codec(d.with_source(source)),
            Error::Config(d) => Error::Config(d.with_source(source)),
            Error::Internal(d) => Error::Internal(d.with_source(source)),
            Error::Shutdown(d) => Error::Shutdown(d.with_source(source)),
            other => other,
        }
    }

    /// The status a peer would see for this error.
    pub fn status(&self) -> Status {
        match self {
            Error::Rpc(s) => s.clone(),
            Error::Codec(d) => Status::new(Code::Internal, d.message.clone()),
            Error::Config(d) => Status::new(Code::InvalidArgument, d.message.clone()),
            Error::InvalidMetadata(d) => Status::new(Code::Internal, d.message.clone()),
            Error::Shutdown(d) => Status::new(Code::Unavailable, d.message.clone()),
            Error::Internal(d) => Status::new(Code::Internal, d.message.clone()),
        }
    }

    /// The status code of [`Error::status`].
    pub fn code(&self) -> Code {
        match self {
            Error::Rpc(s) => s.code(),
            other => other.status().code(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Rpc(s) => write!(f, "rpc failed with {s}"),
            Error::Codec(m) => write!(f, "codec error: {m}"),
            Error::Config(m) => write!(f, "invalid configuration: {m}"),
            Error::InvalidMetadata(m) => write!(f, "invalid metadata: {m}"),
            Error::Shutdown(m) => write!(f, "shut down: {m}"),
            Error::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for Error {
    /// The status of a failed call, or the underlying error of the other variants when
    /// they carry one.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Rpc(s) => Some(s),
            Error::Codec(d) => std::error::Error::source(d),
            Error::Config(d) => std::error::Error::source(d),
            Error::Internal(d) => std::error::Error::source(d),
            Error::Shutdown(d) => std::error::Error::source(d),
            Error::InvalidMetadata(_) => None,
        }
    }
}

impl From<Status> for Error {
    fn from(s: Status) -> Error {
        Error::Rpc(s)
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        e.status()
    }
}

impl From<InvalidMetadata> for Error {
    fn from(e: InvalidMetadata) -> Error {
        Error::InvalidMetadata(MetadataError { kind: e.0, message: e.1 })
    }
}

/// The validating methods of [`Metadata`]. They return the crate's [`Error`], so they live
/// here, above `metadata.rs`, which fails with its own `InvalidMetadata` and so imports
/// neither this module nor `status.rs`.
impl Metadata {
    /// Appends an entry. For a `-bin` key the string's bytes are the value.
    pub fn append(&mut self, key: &str, value: &str) -> Result<(), Error> {
        Ok(self.try_append(key, value)?)
    }

    /// Appends a binary entry; the key must end in `-bin`.
    pub fn append_bin(&mut self, key: &str, value: impl Into<Vec<u8>>) -> Result<(), Error> {
        Ok(self.try_append_bin(key, value)?)
    }

    /// Replaces every entry of `key` with one ASCII value.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), Error> {
        Ok(self.try_insert(key, value)?)
    }

    /// A map of `pairs`, in order, as [`append`](Self::append) would make it; fails on the
    /// first invalid key or value.
    ///
    /// ```
    /// let md = grpcore::Metadata::from_pairs([("x-user", "alice"), ("x-request-id", "42")])?;
    /// assert_eq!(md.get("x-request-id"), Some("42"));
    /// // Or with `try_into` where a `Metadata` is expected:
    /// let md: grpcore::Metadata = [("x-user", "bob")].try_into()?;
    /// assert!(grpcore::Metadata::from_pairs([("bad key", "v")]).is_err());
    /// # Ok::<(), grpcore::Error>(())
    /// ```
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Metadata, Error> {
        let mut md = Metadata::new();
        for (key, value) in pairs {
            md.try_append(key.as_ref(), value.as_ref())?;
        }
        Ok(md)
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> TryFrom<[(K, V); N]> for Metadata {
    type Error = Error;

    /// See [`Metadata::from_pairs`].
    fn try_from(pairs: [(K, V); N]) -> Result<Metadata, Error> {
        Metadata::from_pairs(pairs)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> TryFrom<Vec<(K, V)>> for Metadata {
    type Error = Error;

    /// See [`Metadata::from_pairs`].
    fn try_from(pairs: Vec<(K, V)>) -> Result<Metadata, Error> {
        Metadata::from_pairs(pairs)
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "prost")]
    #[test]
    fn a_decode_failure_is_typed_and_keeps_the_codec_error_as_source() {
        use crate::codec::{Codec, ProstCodec};
        let garbage = crate::buffer::ByteBuffer::from_vec(vec![0xff, 0xff, 0xff]);
        let err = <ProstCodec as Codec<String>>::decode(&mut garbage.reader()).unwrap_err();
        match &err {
            Error::Codec(c) => assert_eq!(c.kind(), CodecErrorKind::Decode, "{err}"),
            other => panic!("{other:?}"),
        }
        let source = std::error::Error::source(&err).expect("the codec's error is the source");
        assert!(source.downcast_ref::<prost::DecodeError>().is_some(), "{source:?}");
        assert_eq!(err.code(), Code::Internal);
    }

    #[test]
    fn the_older_string_spelling_still_builds_an_error() {
        // Code written for `Config(String)` adapts with `.into()`: kind `Other`.
        let err = Error::Config(format!("bad {}", 1).into());
        assert!(matches!(&err, Error::Config(c) if c.kind() == ConfigErrorKind::Other && c.message() == "bad 1"));
        assert_eq!(err.to_string(), "invalid configuration: bad 1");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(std::error::Error::source(&err).is_none());
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no");
        let err = Error::config_kind(ConfigErrorKind::File, "cannot read x").with_source(io);
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(source.downcast_ref::<std::io::Error>().unwrap().kind(), std::io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn invalid_metadata_is_an_internal_error_naming_the_input() {
        let mut md = Metadata::new();
        for bad in ["", "sp ace", "grpc-timeout"] {
            let err = md.append(bad, "v").unwrap_err();
            assert!(matches!(&err, Error::InvalidMetadata(m) if !m.message().is_empty()), "{bad:?}: {err}");
            assert_eq!(err.code(), Code::Internal);
        }
        let err = md.insert("x-a", "line\nbreak").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid metadata: value of metadata key \"x-a\""),
            "{err}"
        );
        assert!(md.append_bin("x-a", vec![0u8]).is_err());
        md.append_bin("x-a-bin", vec![0u8]).unwrap();
        assert_eq!(md.len(), 1);
    }
}
