//! Message bytes at the FFI boundary: the owner of a core `grpc_byte_buffer` and a reader
//! that walks its slices in place.
//!
//! Sending hands the core an owned Rust buffer (no copy for messages larger than an inline
//! slice); receiving decodes straight from the core's slices, never gathering them first.

use std::io;
use std::marker::PhantomData;
use std::os::raw::c_void;
use std::ptr;

use grpcore_sys as ffi;

/// Messages up to this size are copied into an inline slice (no allocation at all).
const INLINE_MAX: usize = 23;

/// Owns one `grpc_byte_buffer`; dropping it destroys the buffer.
pub(crate) struct ByteBuffer {
    raw: *mut ffi::grpc_byte_buffer,
}

// SAFETY: a byte buffer is plain data owned by this value alone; the core has no thread affinity for it.
unsafe impl Send for ByteBuffer {}
// SAFETY: shared access only reads it through the core's reader functions, which do not mutate it.
unsafe impl Sync for ByteBuffer {}

unsafe extern "C" fn free_boxed_slice(ptr: *mut c_void, len: usize) {
    // SAFETY: `ptr`/`len` come from `Box::<[u8]>::into_raw` in `ByteBuffer::from_vec`, and the
    // core calls this destructor exactly once, when the last reference to the slice is gone.
    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(ptr as *mut u8, len)) });
}

impl ByteBuffer {
    /// Takes ownership of `raw` (which may be null for "no message").
    ///
    /// # Safety
    /// `raw` must be null or a byte buffer nobody else will destroy.
    pub(crate) unsafe fn from_raw(raw: *mut ffi::grpc_byte_buffer) -> Option<ByteBuffer> {
        (!raw.is_null()).then_some(ByteBuffer { raw })
    }

    /// Hands `bytes` to the core without copying them (small messages are inlined).
    pub(crate) fn from_vec(bytes: Vec<u8>) -> ByteBuffer {
        // SAFETY: every slice passed to `grpc_raw_byte_buffer_create` is valid; the buffer takes
        // its own reference to it, so ours is released right after. For the adopted case the
        // boxed slice's pointer and length are handed to the core with the matching destructor.
        unsafe {
            let mut slice = if bytes.is_empty() {
                ffi::grpc_empty_slice()
            } else if bytes.len() <= INLINE_MAX {
                ffi::grpc_slice_from_copied_buffer(bytes.as_ptr() as *const _, bytes.len())
            } else {
                let boxed = Box::into_raw(bytes.into_boxed_slice());
                let len = boxed.len();
                ffi::grpc_slice_new_with_len(boxed as *mut c_void, len, Some(free_boxed_slice))
            };
            let raw = ffi::grpc_raw_byte_buffer_create(&mut slice, 1);
            ffi::grpc_slice_unref(slice);
            ByteBuffer { raw }
        }
    }

    /// The raw pointer, still owned by `self`.
    pub(crate) fn as_ptr(&self) -> *mut ffi::grpc_byte_buffer {
        self.raw
    }

    /// A reader over the message bytes (decompressing first if the buffer is compressed).
    pub(crate) fn reader(&self) -> MessageReader<'_> {
        MessageReader::new(self)
    }
}

impl Drop for ByteBuffer {
    fn drop(&mut self) {
        // SAFETY: `raw` is a live buffer owned only by this value (see `from_raw`/`from_vec`).
        unsafe { ffi::grpc_byte_buffer_destroy(self.raw) }
    }
}

/// The bytes of a slice, following `GRPC_SLICE_START_PTR`/`GRPC_SLICE_LENGTH` from slice.h.
///
/// # Safety
/// `slice` must be a valid slice that outlives the returned borrow.
pub(crate) unsafe fn slice_bytes(slice: &ffi::grpc_slice) -> &[u8] {
    // SAFETY: per the core's slice layout, a null refcount means the inlined variant is active,
    // otherwise the refcounted one; either describes `length` readable bytes.
    unsafe {
        if slice.refcount.is_null() {
            let inl = &slice.data.inlined;
            &inl.bytes[..inl.length as usize]
        } else {
            let rc = &slice.data.refcounted;
            if rc.length == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(rc.bytes, rc.length)
            }
        }
    }
}

/// Reads a received message in place, slice by slice.
///
/// Implements [`bytes::Buf`] (for prost) and [`std::io::Read`] / [`std::io::BufRead`]
/// (for rust-protobuf and anything else), so codecs decode from the core's memory directly.
pub struct MessageReader<'a> {
    reader: ffi::grpc_byte_buffer_reader,
    current: *const u8,
    current_len: usize,
    remaining: usize,
    _buffer: PhantomData<&'a ByteBuffer>,
}

impl<'a> MessageReader<'a> {
    fn new(buffer: &'a ByteBuffer) -> MessageReader<'a> {
        let mut reader = ffi::grpc_byte_buffer_reader::default();
        // SAFETY: `buffer.raw` is a live byte buffer for 'a; init fills `reader` (and decompresses
        // into `reader.buffer_out` when needed). A failed init leaves nothing to destroy and we
        // report an empty message, which the codec then rejects if it needs bytes.
        let ok = unsafe { ffi::grpc_byte_buffer_reader_init(&mut reader, buffer.raw) } != 0;
        let remaining = if ok {
            // SAFETY: after a successful init, `buffer_out` is the buffer being read.
            unsafe { ffi::grpc_byte_buffer_length(reader.buffer_out) }
        } else {
            0
        };
        let mut r = MessageReader {
            reader,
            current: ptr::null(),
            current_len: 0,
            remaining,
            _buffer: PhantomData,
        };
        if !ok {
            r.remaining = usize::MAX; // marks "not initialised" for Drop
        }
        r.next_slice();
        r
    }

    fn initialised(&self) -> bool {
        self.remaining != usize::MAX
    }

    /// Moves to the next non-empty slice, if any bytes remain.
    fn next_slice(&mut self) {
        if !self.initialised() {
            self.remaining = 0;
            self.reader.buffer_in = ptr::null_mut();
            return;
        }
        while self.current_len == 0 && self.remaining > 0 {
            let mut slice: *mut ffi::grpc_slice = ptr::null_mut();
            // SAFETY: the reader was initialised over a buffer that lives for 'a; peek returns a
            // pointer to a slice owned by that buffer, valid as long as the buffer is.
            let more = unsafe { ffi::grpc_byte_buffer_reader_peek(&mut self.reader, &mut slice) } != 0;
            if !more {
                self.remaining = 0;
                return;
            }
            // SAFETY: `slice` points into the buffer, which outlives this reader.
            let bytes = unsafe { slice_bytes(&*slice) };
            self.current = bytes.as_ptr();
            self.current_len = bytes.len();
        }
    }

    fn current(&self) -> &[u8] {
        if self.current_len == 0 {
            &[]
        } else {
            // SAFETY: `current`/`current_len` describe part of a slice of the buffer borrowed for 'a.
            unsafe { std::slice::from_raw_parts(self.current, self.current_len) }
        }
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        if n < self.current_len {
            // Fast path (varints, small fields): stay inside the current slice.
            // SAFETY: `n < current_len`, so the pointer stays inside the current slice.
            self.current = unsafe { self.current.add(n) };
            self.current_len -= n;
            self.remaining -= n;
            return;
        }
        self.consume_across(n);
    }

    fn consume_across(&mut self, mut n: usize) {
        while n > 0 {
            let step = n.min(self.current_len);
            assert!(step > 0, "advanced past the end of the message");
            // SAFETY: `step <= current_len`, so the pointer stays inside the current slice.
            self.current = unsafe { self.current.add(step) };
            self.current_len -= step;
            self.remaining -= step;
            n -= step;
            if self.current_len == 0 {
                self.next_slice();
            }
        }
    }

    /// Bytes not read yet.
    pub fn len(&self) -> usize {
        self.remaining
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl Drop for MessageReader<'_> {
    fn drop(&mut self) {
        if !self.reader.buffer_in.is_null() {
            // SAFETY: the reader was initialised (buffer_in is set by init and cleared above when not).
            unsafe { ffi::grpc_byte_buffer_reader_destroy(&mut self.reader) }
        }
    }
}

impl bytes::Buf for MessageReader<'_> {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.current()
    }

    fn advance(&mut self, cnt: usize) {
        assert!(cnt <= self.remaining, "advance {cnt} past the {} bytes left", self.remaining);
        self.consume(cnt);
    }
}

impl io::Read for MessageReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.current_len);
        buf[..n].copy_from_slice(&self.current()[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl io::BufRead for MessageReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        Ok(self.current())
    }

    fn consume(&mut self, amt: usize) {
        MessageReader::consume(self, amt.min(self.current_len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use std::io::Read;

    fn multi_slice(parts: &[&[u8]]) -> ByteBuffer {
        let mut slices: Vec<ffi::grpc_slice> = parts
            .iter()
            // SAFETY: each part is a live byte slice; the copy is owned by the returned slice.
            .map(|p| unsafe { ffi::grpc_slice_from_copied_buffer(p.as_ptr() as *const _, p.len()) })
            .collect();
        // SAFETY: the slices are valid; the buffer takes its own references and we drop ours.
        unsafe {
            let raw = ffi::grpc_raw_byte_buffer_create(slices.as_mut_ptr(), slices.len());
            for s in slices {
                ffi::grpc_slice_unref(s);
            }
            ByteBuffer::from_raw(raw).unwrap()
        }
    }

    #[test]
    fn reads_across_slices_without_gathering() {
        let bb = multi_slice(&[b"hello ", b"", b"wide world, this slice is longer than inline"]);
        let mut r = bb.reader();
        assert_eq!(r.remaining(), 50);
        assert_eq!(r.chunk(), b"hello ");
        r.advance(3);
        assert_eq!(r.chunk(), b"lo ");
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "lo wide world, this slice is longer than inline");
        assert!(r.is_empty());
    }

    #[test]
    fn owned_vectors_round_trip() {
        for len in [0usize, 1, 23, 24, 100_000] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let bb = ByteBuffer::from_vec(data.clone());
            let mut out = Vec::new();
            bb.reader().read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "len {len}");
        }
    }
}
