//! Writing messages on a stream: write flags, compression choice, and the one-write-in-flight
//! rule that gives streams their backpressure.

use std::sync::Arc;
use std::task::{Context, Poll};

use grpcore_sys as ffi;

use super::raw::{op, OpList, SendMetadata};
use super::{Batch, Call, OnComplete};
use crate::buffer::ByteBuffer;
use crate::error::Error;

/// Options for one message write.
///
/// ```
/// let flags = grpcore::WriteFlags::new().buffer_hint(true).no_compress(true);
/// assert!(flags.is_buffer_hint());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteFlags {
    buffer_hint: bool,
    no_compress: bool,
}

impl WriteFlags {
    /// No flags: written at once, compressed per the call's settings.
    pub fn new() -> WriteFlags {
        WriteFlags::default()
    }

    /// The write may be held back and coalesced with the next ones (for bursts); the
    /// stream's next write without the hint, or its close, flushes it.
    pub fn buffer_hint(mut self, hint: bool) -> WriteFlags {
        self.buffer_hint = hint;
        self
    }

    /// Send this message uncompressed even if the call compresses (e.g. already-compressed
    /// data, or secrets that must not be compressed next to attacker-chosen bytes).
    pub fn no_compress(mut self, no_compress: bool) -> WriteFlags {
        self.no_compress = no_compress;
        self
    }

    /// Whether the buffer hint is set.
    pub fn is_buffer_hint(&self) -> bool {
        self.buffer_hint
    }

    /// Whether compression is disabled for this message.
    pub fn is_no_compress(&self) -> bool {
        self.no_compress
    }

    pub(crate) fn bits(&self) -> u32 {
        (if self.buffer_hint { ffi::GRPC_WRITE_BUFFER_HINT } else { 0 })
            | (if self.no_compress { ffi::GRPC_WRITE_NO_COMPRESS } else { 0 })
    }
}

/// A message compression algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// No compression (`identity`).
    None,
    /// `deflate` (zlib).
    Deflate,
    /// `gzip`.
    Gzip,
}

impl Compression {
    /// The name used in `grpc-encoding` headers.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "identity",
            Compression::Deflate => "deflate",
            Compression::Gzip => "gzip",
        }
    }

    /// The core's algorithm number.
    pub(crate) fn algorithm(self) -> i32 {
        (match self {
            Compression::None => ffi::GRPC_COMPRESS_NONE,
            Compression::Deflate => ffi::GRPC_COMPRESS_DEFLATE,
            Compression::Gzip => ffi::GRPC_COMPRESS_GZIP,
        }) as i32
    }
}

/// The metadata key through which the core's compression filter takes a per-call algorithm.
pub(crate) const ENCODING_REQUEST_KEY: &str = "grpc-internal-encoding-request";

/// C-side buffers of one write (plus, on a server's first write, its initial metadata).
pub(crate) struct SendState {
    pub(crate) initial: Option<SendMetadata>,
    pub(crate) message: Option<ByteBuffer>,
}

impl OnComplete for SendState {}

/// Keeps at most one write in flight; reports a failed write as the end of the stream.
#[derive(Default)]
pub(crate) struct Writer {
    in_flight: Option<Arc<Batch<SendState>>>,
    /// The last finished write's batch, whose allocation the next write reuses.
    spare: Option<Arc<Batch<SendState>>>,
    failed: bool,
}

impl Writer {
    /// Ready when no write is in flight. `Err(())` once a write has failed (the call is over).
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        if let Some(batch) = &self.in_flight {
            match batch.poll_done(cx) {
                None => return Poll::Pending,
                Some(ok) => {
                    self.spare = self.in_flight.take();
                    if !ok {
                        self.failed = true;
                    }
                }
            }
        }
        Poll::Ready(if self.failed { Err(()) } else { Ok(()) })
    }

    /// Starts a write of `message` (and `initial` metadata first, if given). The caller
    /// has seen `poll_ready` return `Ok`.
    pub(crate) fn start(
        &mut self,
        call: &Call,
        initial: Option<SendMetadata>,
        message: ByteBuffer,
        flags: WriteFlags,
    ) -> Result<(), Error> {
        debug_assert!(self.in_flight.is_none());
        // Replacing the previous write's buffers releases them.
        let state = SendState {
            initial,
            message: Some(message),
        };
        let batch = Batch::reuse_or_new(self.spare.take(), state);
        // SAFETY: the batch has not started; its ops point into its own state, kept alive
        // by the tag until the event.
        unsafe {
            let s = &mut *batch.state_ptr();
            let mut ops = OpList::<2>::new();
            if let Some(md) = s.initial.as_mut() {
                ops.push(op::send_initial_metadata(md, 0));
            }
            ops.push(op::send_message(s.message.as_ref().unwrap(), flags.bits()));
            call.start_batch(ops.as_slice(), batch.tag())?;
        }
        self.in_flight = Some(batch);
        Ok(())
    }
}
