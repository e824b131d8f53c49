//! The crate's one error type.

use std::fmt;

use crate::metadata::{InvalidMetadata, Metadata};
use crate::status::{Code, Status};

/// Everything that can go wrong in grpcore.
///
/// Every variant maps to a [`Status`] with [`Error::status`], so a handler can turn any
/// error into an answer with `?`-style conversion.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The call ended with a non-OK status (from the peer, or from the core: deadline,
    /// connection failure, message too large, cancellation).
    Rpc(Status),
    /// A message could not be encoded or decoded.
    Codec(String),
    /// A builder or argument was rejected: bad target, bad setting, failed bind.
    Config(String),
    /// A metadata key or value is not valid for gRPC.
    InvalidMetadata(String),
    /// The environment or server this object belongs to has shut down.
    Shutdown(String),
    /// The core refused an operation, or a task panicked.
    Internal(String),
}

impl Error {
    /// The status a peer would see for this error.
    pub fn status(&self) -> Status {
        match self {
            Error::Rpc(s) => s.clone(),
            Error::Codec(m) => Status::new(Code::Internal, m.clone()),
            Error::Config(m) => Status::new(Code::InvalidArgument, m.clone()),
            Error::InvalidMetadata(m) => Status::new(Code::Internal, m.clone()),
            Error::Shutdown(m) => Status::new(Code::Unavailable, m.clone()),
            Error::Internal(m) => Status::new(Code::Internal, m.clone()),
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
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Rpc(s) => Some(s),
            _ => None,
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
        Error::InvalidMetadata(e.0)
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

    #[test]
    fn invalid_metadata_is_an_internal_error_naming_the_input() {
        let mut md = Metadata::new();
        for bad in ["", "sp ace", "grpc-timeout"] {
            let err = md.append(bad, "v").unwrap_err();
            assert!(matches!(err, Error::InvalidMetadata(_)), "{bad:?}: {err}");
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
