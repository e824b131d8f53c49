//! How messages are written: write flags and the compression choice. (The one-write-in-flight
//! rule that gives streams their backpressure is `SendSlot`'s, in `call/core.rs`.)

use grpcore_sys as ffi;

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
