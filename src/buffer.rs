//! Message bytes at the FFI boundary: the owner of a core `grpc_byte_buffer` and a reader
//! that walks its slices in place.
//!
//! Sending hands the core an owned Rust buffer (no copy for messages larger than an inline
//! slice); receiving decodes straight from the core's slices, never gathering them first.
//!
//! This module knows bytes, not messages: it never imports the codecs. Encoding a message
//! into a buffer ([`ByteBuffer::encode`], `refill`) lives in `codec.rs`, on top of the
//! primitives here ([`ByteBuffer::filled`], [`ByteBuffer::refill_with`]).

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

    /// A one-slice buffer of `len` bytes written by `fill`, straight into a slice the core
    /// allocates (inline up to 23 bytes, else one allocation), with no copy.
    #[inline]
    pub(crate) fn filled<E>(len: usize, fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<ByteBuffer, E> {
        let mut slice = new_slice_filled(len, fill)?;
        // SAFETY: `slice` is valid and ours; the buffer takes its own reference, and ours is
        // released right after.
        unsafe {
            let raw = ffi::grpc_raw_byte_buffer_create(&mut slice, 1);
            ffi::grpc_slice_unref(slice);
            Ok(ByteBuffer { raw })
        }
    }

    /// True for a plain (raw, uncompressed) buffer, the kind [`refill_with`](Self::refill_with)
    /// can reuse.
    pub(crate) fn is_plain(&self) -> bool {
        // SAFETY: `raw` is a live byte buffer owned by `self`; reading its tag fields is plain.
        unsafe { (*self.raw).type_ == ffi::GRPC_BB_RAW && (*self.raw).data.raw.compression == ffi::GRPC_COMPRESS_NONE }
    }

    /// Replaces what this plain buffer holds with one new slice of `len` bytes written by
    /// `fill` (as in [`filled`](Self::filled)); on error the buffer is left as it was.
    ///
    /// The core is done with a send op's buffer when its batch completes (1.51 even moves the
    /// slices into the call when the batch starts), and the C API keeps the buffer valid until
    /// `grpc_byte_buffer_destroy`: refilling it for the next message saves creating and
    /// destroying a buffer per message.
    ///
    /// # Safety
    /// No operation may be using this buffer (any batch that sent it has completed), and it
    /// must be plain ([`is_plain`](Self::is_plain)).
    #[inline]
    pub(crate) unsafe fn refill_with<E>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        debug_assert!(self.is_plain());
        let slice = new_slice_filled(len, fill)?;
        // SAFETY: no operation uses the buffer and it is a raw one (the caller's contract), so
        // its slice buffer is ours to empty and append to; the appended slice's one reference
        // passes to it.
        unsafe {
            self.clear();
            ffi::grpc_slice_buffer_add(&mut (*self.raw).data.raw.slice_buffer, slice);
        }
        Ok(())
    }

    /// Releases the bytes this plain buffer still holds (none once the core has sent them),
    /// keeping the buffer itself for [`refill`](Self::refill).
    ///
    /// # Safety
    /// No operation may be using this buffer (any batch that sent it has completed).
    pub(crate) unsafe fn clear(&mut self) {
        // SAFETY: `raw` is a live byte buffer owned by `self`, which no operation uses (the
        // caller's contract), so a raw buffer's slice buffer is ours to reset.
        unsafe {
            if (*self.raw).type_ == ffi::GRPC_BB_RAW && (*self.raw).data.raw.slice_buffer.count > 0 {
                ffi::grpc_slice_buffer_reset_and_unref(&mut (*self.raw).data.raw.slice_buffer);
            }
        }
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

    /// The message's length in bytes (as sent; compressed if the buffer is).
    pub(crate) fn len(&self) -> usize {
        // SAFETY: `raw` is a live byte buffer owned by `self`.
        unsafe { ffi::grpc_byte_buffer_length(self.raw) }
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

/// A new core slice of `len` bytes written by `fill` (inline up to 23 bytes, else one
/// allocation); the caller owns its one reference.
#[inline]
fn new_slice_filled<E>(len: usize, fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<ffi::grpc_slice, E> {
    // SAFETY: `grpc_slice_malloc` returns a slice we own the one reference to, with `len`
    // writable bytes nobody else sees; on error that reference is released here.
    unsafe {
        let mut slice = ffi::grpc_slice_malloc(len);
        if let Err(e) = fill(slice_bytes_mut(&mut slice)) {
            ffi::grpc_slice_unref(slice);
            return Err(e);
        }
        Ok(slice)
    }
}

/// The bytes of a slice we hold the only reference to, writable.
///
/// # Safety
/// `slice` must be valid, and no one else may read or write its bytes meanwhile.
unsafe fn slice_bytes_mut(slice: &mut ffi::grpc_slice) -> &mut [u8] {
    // SAFETY: as in `slice_bytes`; exclusive use is guaranteed by the caller.
    unsafe {
        if slice.refcount.is_null() {
            let inl = &mut slice.data.inlined;
            &mut inl.bytes[..inl.length as usize]
        } else {
            let rc = &mut slice.data.refcounted;
            if rc.length == 0 {
                &mut []
            } else {
                std::slice::from_raw_parts_mut(rc.bytes, rc.length)
            }
        }
    }
}

/// Reads a received message in place, slice by slice.
///
/// Implements [`bytes::Buf`] (for prost) and [`std::io::Read`] / [`std::io::BufRead`]
/// (for rust-protobuf and anything else), so codecs decode from the core's memory directly.
pub struct MessageReader<'a> {
    /// The slices being read: the buffer's own, or those the core decompressed into.
    slices: *const ffi::grpc_slice,
    count: usize,
    /// Index of the slice after the current one.
    next: usize,
    current: *const u8,
    current_len: usize,
    remaining: usize,
    /// For a compressed buffer: the core's reader, which owns the decompressed copy.
    inflater: Option<ffi::grpc_byte_buffer_reader>,
    _buffer: PhantomData<&'a ByteBuffer>,
}

impl<'a> MessageReader<'a> {
    fn new(buffer: &'a ByteBuffer) -> MessageReader<'a> {
        let mut r = MessageReader {
            slices: ptr::null(),
            count: 0,
            next: 0,
            current: ptr::null(),
            current_len: 0,
            remaining: 0,
            inflater: None,
            _buffer: PhantomData,
        };
        // SAFETY: `buffer.raw` is a live byte buffer for 'a. A raw buffer's slices are read in
        // place (its public layout: `data.raw.slice_buffer`). A compressed one goes through the
        // core's reader, which inflates into `buffer_out`, alive until the reader is destroyed
        // in our Drop; if inflating fails we read nothing, and the codec rejects the message
        // if it needs bytes.
        unsafe {
            let raw = &*buffer.raw;
            let sb = if raw.type_ == ffi::GRPC_BB_RAW && raw.data.raw.compression == ffi::GRPC_COMPRESS_NONE {
                &raw.data.raw.slice_buffer
            } else {
                let mut reader = ffi::grpc_byte_buffer_reader::default();
                if ffi::grpc_byte_buffer_reader_init(&mut reader, buffer.raw) == 0 {
                    return r;
                }
                let inflater = r.inflater.insert(reader);
                &(*inflater.buffer_out).data.raw.slice_buffer
            };
            r.slices = sb.slices;
            r.count = sb.count;
            r.remaining = sb.length;
        }
        r.next_slice();
        r
    }

    /// Moves to the next non-empty slice, if any bytes remain.
    fn next_slice(&mut self) {
        while self.current_len == 0 && self.remaining > 0 && self.next < self.count {
            // SAFETY: `next < count`, so this is one of the buffer's slices, which live as long
            // as the buffer (or the inflater's copy) that this reader borrows.
            let bytes = unsafe { slice_bytes(&*self.slices.add(self.next)) };
            self.next += 1;
            self.current = bytes.as_ptr();
            self.current_len = bytes.len();
        }
        if self.current_len == 0 {
            self.remaining = 0; // the slices hold fewer bytes than the buffer claimed
        }
    }

    #[inline]
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
            // SAFETY: `step <= current_len`, so the pointer stays inside (or one past) the
            // current slice.
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
        if let Some(reader) = &mut self.inflater {
            // SAFETY: the reader was initialised successfully (else it would be `None`) and is
            // destroyed once, here, after the last read of its slices.
            unsafe { ffi::grpc_byte_buffer_reader_destroy(reader) }
        }
    }
}

// `#[inline]` on these: codecs are generic over `Buf` and get instantiated in the user's crate,
// which can then inline the per-byte calls (prost calls `chunk`/`advance` for every field).
impl bytes::Buf for MessageReader<'_> {
    #[inline]
    fn remaining(&self) -> usize {
        self.remaining
    }

    #[inline]
    fn chunk(&self) -> &[u8] {
        self.current()
    }

    #[inline]
    fn advance(&mut self, cnt: usize) {
        assert!(cnt <= self.remaining, "advance {cnt} past the {} bytes left", self.remaining);
        self.consume(cnt);
    }

    /// prost reads every `bytes` field through this. Inside one slice it is a single
    /// allocation and copy (the default goes through a growing `BytesMut`).
    fn copy_to_bytes(&mut self, len: usize) -> bytes::Bytes {
        if len <= self.current_len {
            let out = bytes::Bytes::copy_from_slice(&self.current()[..len]);
            self.consume(len);
            return out;
        }
        assert!(len <= self.remaining, "copy_to_bytes {len} past the {} bytes left", self.remaining);
        let mut out = bytes::BytesMut::with_capacity(len);
        bytes::BufMut::put(&mut out, bytes::Buf::take(&mut *self, len));
        out.freeze()
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
impl ByteBuffer {
    /// A raw buffer of one slice per part (empty parts included), as a peer's message can
    /// arrive: for tests of everything that reads buffers.
    pub(crate) fn from_parts(parts: &[&[u8]]) -> ByteBuffer {
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
            ByteBuffer { raw }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Buf;
    use std::io::Read;

    fn multi_slice(parts: &[&[u8]]) -> ByteBuffer {
        ByteBuffer::from_parts(parts)
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
    fn copy_to_bytes_within_and_across_slices() {
        let bb = multi_slice(&[b"abcdef", b"ghij", b"k"]);
        let mut r = bb.reader();
        assert_eq!(&r.copy_to_bytes(2)[..], b"ab"); // inside the first slice
        assert_eq!(&r.copy_to_bytes(4)[..], b"cdef"); // exactly its rest
        assert_eq!(&r.copy_to_bytes(5)[..], b"ghijk"); // across the last two
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

    pub(crate) mod props {
        //! Property tests of the reader over multi-slice buffers, the way the core hands a
        //! peer's message over. 256 cases each.
        use super::*;
        use proptest::prelude::*;
        use std::io::BufRead;

        /// Bytes cut into slices at arbitrary points (empty slices included).
        pub(crate) fn split_bytes(max: usize) -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
            (
                proptest::collection::vec(any::<u8>(), 0..max),
                proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
            )
                .prop_map(|(data, cuts)| {
                    let parts = split_at(&data, &cuts);
                    (data, parts)
                })
        }

        /// `data` cut at the given points (each an index into `0..=data.len()`, in any
        /// order): slices, empty ones included, that concatenate back to `data`.
        pub(crate) fn split_at(data: &[u8], cuts: &[proptest::sample::Index]) -> Vec<Vec<u8>> {
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            at.sort_unstable();
            let mut parts = Vec::new();
            let mut start = 0;
            for end in at.into_iter().chain([data.len()]) {
                parts.push(data[start..end].to_vec());
                start = end;
            }
            parts
        }

        pub(crate) fn buffer_of(parts: &[Vec<u8>]) -> ByteBuffer {
            let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            ByteBuffer::from_parts(&parts)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_mix_of_reads_walks_the_concatenation(
                (data, parts) in split_bytes(300),
                ops in proptest::collection::vec((0u8..5, 0usize..80), 0..40),
            ) {
                let bb = buffer_of(&parts);
                prop_assert_eq!(bb.len(), data.len());
                let mut r = bb.reader();
                let mut at = 0;
                for (op, n) in ops {
                    prop_assert_eq!(bytes::Buf::remaining(&r), data.len() - at);
                    let chunk = bytes::Buf::chunk(&r);
                    prop_assert_eq!(chunk.is_empty(), at == data.len(), "an empty chunk only at the end");
                    prop_assert_eq!(chunk, &data[at..at + chunk.len()]);
                    let n = n.min(data.len() - at);
                    match op {
                        0 => bytes::Buf::advance(&mut r, n),
                        1 => prop_assert_eq!(&bytes::Buf::copy_to_bytes(&mut r, n)[..], &data[at..at + n]),
                        2 => {
                            let mut buf = vec![0u8; n];
                            let got = std::io::Read::read(&mut r, &mut buf).unwrap();
                            prop_assert!(got <= n && (got > 0 || n == 0));
                            prop_assert_eq!(&buf[..got], &data[at..at + got]);
                            at += got;
                            continue;
                        }
                        3 => {
                            let len = r.fill_buf().unwrap().len();
                            let step = n.min(len);
                            BufRead::consume(&mut r, step);
                            at += step;
                            continue;
                        }
                        _ => {
                            let mut rest = Vec::new();
                            std::io::Read::read_to_end(&mut r, &mut rest).unwrap();
                            prop_assert_eq!(&rest[..], &data[at..]);
                            at = data.len();
                            continue;
                        }
                    }
                    at += n;
                }
                prop_assert_eq!(r.len(), data.len() - at);
            }
        }
    }
}
