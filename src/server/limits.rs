//! Message-size limits that grpcore checks itself.
//!
//! The core enforces `grpc.max_receive_message_length` / `grpc.max_send_message_length` in
//! its message-size filter, which its minimal stack leaves out (a 5 MiB request is accepted
//! even with an explicit 4 MiB limit). A server in lean mode
//! ([`ServerBuilder::lean`](crate::ServerBuilder::lean)) therefore checks every message
//! here instead: received messages by their (decompressed) length before decoding, sent
//! messages by their encoded length before they reach the core. Outside lean mode the
//! limits are unchecked here (the core's filter does the work) and each check is one
//! comparison against `usize::MAX`.

use crate::buffer::{ByteBuffer, MessageReader};
use crate::call::client::Decode;
use crate::status::{Code, Status};

/// The core's default receive limit (`GRPC_DEFAULT_MAX_RECV_MESSAGE_LENGTH`).
pub(crate) const DEFAULT_MAX_RECEIVE: usize = 4 * 1024 * 1024;

/// The sizes a server call may receive and send, in bytes (`usize::MAX`: unchecked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MessageLimits {
    receive: usize,
    send: usize,
}

impl MessageLimits {
    /// No checks here (the core's filter enforces the limits, or there are none).
    pub(crate) const UNCHECKED: MessageLimits = MessageLimits {
        receive: usize::MAX,
        send: usize::MAX,
    };

    /// Limits from the core's integer arguments as the server was configured: `None` for an
    /// argument that was not set (receive defaults to 4 MiB, send to no limit, as in the
    /// core), a negative value for no limit.
    pub(crate) fn from_args(receive: Option<i32>, send: Option<i32>) -> MessageLimits {
        let bytes = |v: i32| usize::try_from(v).unwrap_or(usize::MAX);
        MessageLimits {
            receive: receive.map_or(DEFAULT_MAX_RECEIVE, bytes),
            send: send.map_or(usize::MAX, bytes),
        }
    }

    /// `RESOURCE_EXHAUSTED` if a received message of `len` bytes is over the limit.
    #[inline]
    pub(crate) fn check_receive(&self, len: usize) -> Result<(), Status> {
        within(len, self.receive, "Received")
    }

    /// `RESOURCE_EXHAUSTED` if a message of `len` bytes is over the send limit.
    #[inline]
    pub(crate) fn check_send(&self, len: usize) -> Result<(), Status> {
        within(len, self.send, "Sent")
    }

    /// `RESOURCE_EXHAUSTED` if `buf` is over the send limit (its length is read only when
    /// there is a limit to check).
    #[inline]
    pub(crate) fn check_send_buffer(&self, buf: &ByteBuffer) -> Result<(), Status> {
        if self.send == usize::MAX {
            return Ok(());
        }
        self.check_send(buf.len())
    }

    /// Decodes a received message after checking its size. A decode failure is `INTERNAL`,
    /// naming `what` (e.g. "the request") and the method.
    pub(crate) fn decode<T>(&self, buf: &ByteBuffer, decode: Decode<T>, what: &str, method: &str) -> Result<T, Status> {
        let mut reader: MessageReader<'_> = buf.reader();
        self.check_receive(reader.len())?;
        decode(&mut reader).map_err(|e| Status::internal(format!("failed to decode {what} to {method}: {e}")))
    }
}

/// `RESOURCE_EXHAUSTED`, worded as the core's size filter words it, if `len > limit`.
/// Inlined, so that the check every message passes is a comparison in the caller, not a
/// call that writes an 88-byte result to memory.
#[inline]
fn within(len: usize, limit: usize, direction: &str) -> Result<(), Status> {
    if len > limit {
        return Err(too_large(len, limit, direction));
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn too_large(len: usize, limit: usize, direction: &str) -> Status {
    Status::new(Code::ResourceExhausted, format!("{direction} message larger than max ({len} vs. {limit})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_core_defaults_and_negative_means_none() {
        let l = MessageLimits::from_args(None, None);
        assert!(l.check_receive(DEFAULT_MAX_RECEIVE).is_ok());
        assert_eq!(l.check_receive(DEFAULT_MAX_RECEIVE + 1).unwrap_err().code(), Code::ResourceExhausted);
        assert!(l.check_send(usize::MAX - 1).is_ok());

        let l = MessageLimits::from_args(Some(-1), Some(10));
        assert!(l.check_receive(usize::MAX - 1).is_ok());
        assert!(l.check_send(10).is_ok());
        let err = l.check_send(11).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(err.message().contains("11 vs. 10"), "{}", err.message());

        assert!(MessageLimits::UNCHECKED.check_receive(usize::MAX).is_ok());
    }
}
