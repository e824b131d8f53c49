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

/// A `bytes` field of at least this many bytes that lies inside one received slice is
/// handed to the decoder as a view of that slice (no copy); shorter ones are copied.
///
/// Sharing costs two allocations (a one-slice `grpc_byte_buffer` that holds the core's
/// slice, and `Bytes::from_owner`'s header) and an atomic reference pair, and it keeps the
/// whole read buffer the slice was cut from (8 or 64 KiB on 1.51) alive as long as the
/// `Bytes` is: below this size a copy is both cheaper and kinder to memory.
pub(crate) const SHARE_MIN: usize = 4096;

/// A `Buf` of at least this many bytes written into a [`MessageWriter`] (prost writes every
/// `bytes::Bytes` field with `put`) becomes a slice of its own: for a `Bytes` that is a
/// reference, not a copy. Shorter ones are copied next to the rest of the message.
pub(crate) const ADOPT_MIN: usize = 4096;

/// The first chunk a [`MessageWriter`] allocates for the bytes it copies (field keys,
/// lengths, small fields); each later chunk doubles, up to what is left of the message.
const FIRST_CHUNK: usize = 256;

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
    #[inline]
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

/// Drops a `Bytes` adopted by a slice ([`MessageWriter`]), when the core releases the slice.
///
/// The core calls this exactly once, on whichever thread drops the slice's last reference
/// (a completion-queue thread, a core thread, a user's thread dropping a byte buffer); a
/// `Bytes` may be dropped on any thread. Its drop runs the owner's `Drop` (for
/// `Bytes::from_owner`, the user's type), so a panic there is caught: it must not unwind
/// into C.
unsafe extern "C" fn drop_adopted_bytes(user_data: *mut c_void) {
    // SAFETY: `user_data` is the `Box<Bytes>` leaked in `MessageWriter::adopt`, handed to
    // the core with this destructor, which the core calls once.
    let boxed = unsafe { Box::from_raw(user_data as *mut bytes::Bytes) };
    crate::ffi_guard::ffi_guard((), move || drop(boxed));
}

/// Writes an encoded message as the core's slices: what the codec copies goes into chunks of
/// core memory, and a large `Buf` handed over whole (prost writes every `bytes::Bytes` field
/// with `put`) becomes a slice of its own that references the `Bytes` instead of copying it.
///
/// grpcore gives a codec one of these for a message whose encoding is large (see
/// [`Codec::encode_to_writer`](crate::codec::Codec::encode_to_writer)); smaller messages are
/// encoded straight into one slice. It implements [`bytes::BufMut`] with room for exactly
/// the announced length: writing more panics, as a full `&mut [u8]` does.
pub struct MessageWriter {
    /// Finished slices, in order; we own one reference to each.
    slices: Vec<ffi::grpc_slice>,
    /// The chunk being written (core memory from `grpc_slice_malloc`, ours alone) and how
    /// many of its bytes are written; `None` before the first copy and after each adoption.
    chunk: Option<(ffi::grpc_slice, usize)>,
    /// The size of the last chunk allocated (the next one doubles it).
    last_chunk: usize,
    /// The announced length of the whole encoding, and how much of it is written.
    len: usize,
    written: usize,
}

// SAFETY: the slices are owned by this value alone (core memory or an adopted `Bytes`,
// which is `Send`), and the core's slice functions have no thread affinity.
unsafe impl Send for MessageWriter {}

impl MessageWriter {
    /// A writer for an encoding of exactly `len` bytes.
    pub(crate) fn new(len: usize) -> MessageWriter {
        MessageWriter { slices: Vec::new(), chunk: None, last_chunk: 0, len, written: 0 }
    }

    /// The announced length of the whole encoding.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the announced encoding is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Writes the rest of the message (every byte not written yet) with `fill`, into one
    /// new slice of core memory: how a codec that cannot hand over pieces writes a large
    /// message (the default [`Codec::encode_to_writer`](crate::codec::Codec::encode_to_writer)).
    pub fn write_rest<E>(&mut self, fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<(), E> {
        self.seal();
        let rest = self.len - self.written;
        if rest == 0 {
            return Ok(());
        }
        let slice = new_slice_filled(rest, fill)?;
        self.slices.push(slice);
        self.written = self.len;
        Ok(())
    }

    /// Adds `bytes` as a slice of its own that references it (no copy); the core drops it
    /// when it is done with the slice, on whatever thread that happens.
    fn adopt(&mut self, bytes: bytes::Bytes) {
        self.seal();
        let len = bytes.len();
        let ptr = bytes.as_ptr() as *mut c_void;
        let owner = Box::into_raw(Box::new(bytes)) as *mut c_void;
        // SAFETY: `ptr`/`len` describe the bytes of the `Bytes` behind `owner`, which stay
        // valid and unchanged until `drop_adopted_bytes` frees it, once, when the core drops
        // the slice's last reference. The core only reads the bytes of a slice it sends (the
        // `*mut` is the C signature's), so a shared or static `Bytes` is never written.
        let slice = unsafe { ffi::grpc_slice_new_with_user_data(ptr, len, Some(drop_adopted_bytes), owner) };
        self.slices.push(slice);
        self.written += len;
    }

    /// Closes the chunk being written: its slice is cut to the bytes written and joins the
    /// finished ones (or is released if nothing was written into it).
    fn seal(&mut self) {
        let Some((mut slice, filled)) = self.chunk.take() else { return };
        // SAFETY: the chunk is our own slice from `grpc_slice_malloc`; shortening its length
        // field to the `filled <= length` bytes written is what the core's own trimming does
        // (the allocation is freed through the refcount, whatever the length). An unused
        // chunk's one reference is released here.
        unsafe {
            if filled == 0 {
                ffi::grpc_slice_unref(slice);
                return;
            }
            if slice.refcount.is_null() {
                slice.data.inlined.length = filled as u8;
            } else {
                slice.data.refcounted.length = filled;
            }
        }
        self.slices.push(slice);
    }

    /// The finished message as a byte buffer, and how many bytes were written.
    pub(crate) fn finish(mut self) -> (ByteBuffer, usize) {
        self.seal();
        // SAFETY: an empty raw buffer is created and each of our slices' one reference is
        // passed to it (`grpc_slice_buffer_add` takes ownership); `slices` is left empty so
        // our Drop releases nothing twice.
        let raw = unsafe {
            let raw = ffi::grpc_raw_byte_buffer_create(ptr::null_mut(), 0);
            for slice in self.slices.drain(..) {
                ffi::grpc_slice_buffer_add(&mut (*raw).data.raw.slice_buffer, slice);
            }
            raw
        };
        (ByteBuffer { raw }, self.written)
    }
}

impl Drop for MessageWriter {
    fn drop(&mut self) {
        self.seal();
        for slice in self.slices.drain(..) {
            // SAFETY: each slice holds one reference we own (core memory, or an adopted
            // `Bytes` whose destructor is ours and may run on any thread).
            unsafe { ffi::grpc_slice_unref(slice) }
        }
    }
}

// SAFETY: `chunk_mut` returns writable memory of the current chunk past the bytes written
// (ours alone until sealed), and `advance_mut` only counts bytes the caller initialised
// there; `remaining_mut` never exceeds what the chunks can still be grown to hold.
unsafe impl bytes::BufMut for MessageWriter {
    #[inline]
    fn remaining_mut(&self) -> usize {
        self.len - self.written
    }

    #[inline]
    unsafe fn advance_mut(&mut self, cnt: usize) {
        if cnt == 0 {
            return;
        }
        let (slice, filled) = self.chunk.as_mut().expect("advance_mut without a chunk");
        // SAFETY: the chunk is a valid slice of ours.
        let room = unsafe { slice_bytes(slice) }.len() - *filled;
        assert!(cnt <= room, "advance_mut {cnt} past the {room} bytes of the chunk");
        *filled += cnt;
        self.written += cnt;
    }

    #[inline]
    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        let full = match &self.chunk {
            // SAFETY: the chunk is a valid slice of ours.
            Some((slice, filled)) => *filled == unsafe { slice_bytes(slice) }.len(),
            None => true,
        };
        if full {
            self.new_chunk();
        }
        match &mut self.chunk {
            Some((slice, filled)) => {
                // SAFETY: the chunk is ours alone (from `grpc_slice_malloc`, not shared until
                // it is sealed), so its bytes may be written.
                let bytes = unsafe { slice_bytes_mut(slice) };
                bytes::buf::UninitSlice::new(&mut bytes[*filled..])
            }
            None => bytes::buf::UninitSlice::new(&mut []),
        }
    }

    /// A large `Buf` (a `bytes::Bytes` field, as prost writes it) becomes its own slice;
    /// `copy_to_bytes` on a `Bytes` is a reference, on other `Buf`s one copy.
    fn put<B: bytes::Buf>(&mut self, mut src: B)
    where
        Self: Sized,
    {
        let n = src.remaining();
        assert!(n <= self.remaining_mut(), "put of {n} bytes past the {} left", self.remaining_mut());
        if n >= ADOPT_MIN {
            let bytes = src.copy_to_bytes(n);
            self.adopt(bytes);
            return;
        }
        while src.has_remaining() {
            let chunk = src.chunk();
            let step = chunk.len();
            self.put_slice(chunk);
            src.advance(step);
        }
    }
}

impl MessageWriter {
    /// Seals the current chunk and allocates the next one: double the last, at least
    /// [`FIRST_CHUNK`], at most what is left of the message (none when nothing is).
    fn new_chunk(&mut self) {
        self.seal();
        let rest = self.len - self.written;
        if rest == 0 {
            return;
        }
        let size = (self.last_chunk * 2).max(FIRST_CHUNK).min(rest);
        self.last_chunk = size;
        // SAFETY: a fresh slice we own the one reference to; it is sealed or released later.
        self.chunk = Some((unsafe { ffi::grpc_slice_malloc(size) }, 0));
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
    #[inline]
    fn new(buffer: &'a ByteBuffer) -> MessageReader<'a> {
        // SAFETY: `buffer.raw` is a live byte buffer for 'a. A raw buffer's slices are read in
        // place (its public layout: `data.raw.slice_buffer`), for as long as the borrow.
        unsafe {
            let raw = &*buffer.raw;
            if raw.type_ == ffi::GRPC_BB_RAW && raw.data.raw.compression == ffi::GRPC_COMPRESS_NONE {
                let sb = &raw.data.raw.slice_buffer;
                let mut r = MessageReader::over(sb.slices, sb.count, sb.length);
                r.next_slice();
                return r;
            }
        }
        MessageReader::inflating(buffer)
    }

    /// A reader over `count` slices at `slices` holding `length` bytes, before its first slice.
    #[inline]
    fn over(slices: *const ffi::grpc_slice, count: usize, length: usize) -> MessageReader<'a> {
        MessageReader {
            slices,
            count,
            next: 0,
            current: ptr::null(),
            current_len: 0,
            remaining: length,
            inflater: None,
            _buffer: PhantomData,
        }
    }

    /// A compressed buffer goes through the core's reader, which inflates into `buffer_out`,
    /// alive until the reader is destroyed in our Drop; if inflating fails we read nothing,
    /// and the codec rejects the message if it needs bytes.
    #[cold]
    #[inline(never)]
    fn inflating(buffer: &'a ByteBuffer) -> MessageReader<'a> {
        let mut r = MessageReader::over(ptr::null(), 0, 0);
        // SAFETY: `buffer.raw` is a live byte buffer for 'a; the inflated copy lives in the
        // reader we keep (and destroy in Drop), so its slices outlive our reads.
        unsafe {
            let mut reader = ffi::grpc_byte_buffer_reader::default();
            if ffi::grpc_byte_buffer_reader_init(&mut reader, buffer.raw) == 0 {
                return r;
            }
            let inflater = r.inflater.insert(reader);
            let sb = &(*inflater.buffer_out).data.raw.slice_buffer;
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

    /// The next `len` bytes (all inside the current slice) as a `Bytes` that shares the
    /// core's slice instead of copying it; the caller consumes them.
    fn share_current(&mut self, len: usize) -> bytes::Bytes {
        debug_assert!(len > 0 && len <= self.current_len);
        // SAFETY: `current_len > 0`, so `next_slice` has moved past the current slice:
        // index `next - 1` is it, one of the buffer's slices, alive for 'a.
        let slice = unsafe { *self.slices.add(self.next - 1) };
        if slice.refcount.is_null() {
            // An inlined slice holds at most 23 bytes: never this long, but copy if it were.
            return bytes::Bytes::copy_from_slice(&self.current()[..len]);
        }
        // SAFETY: `slice` is a live refcounted slice and `current` points inside its bytes,
        // so `begin..begin + len` is within them.
        let begin = unsafe { self.current.offset_from(slice_bytes(&slice).as_ptr()) } as usize;
        bytes::Bytes::from_owner(SharedSlice::new(slice, begin, len))
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

/// A piece of a received slice that outlives the message it came in: the owner behind a
/// `Bytes` from [`MessageReader`]'s `copy_to_bytes`.
///
/// It holds its own reference to the core's slice inside a one-slice byte buffer, not as a
/// bare slice: the last reference to a transport read buffer gives its memory back to the
/// core's resource quota, which may wake the quota's reclaimer and needs the core's
/// execution context on the thread. `grpc_byte_buffer_destroy` sets one up; a bare
/// `grpc_slice_unref` on a thread of the user's does not. So the `Bytes` may be dropped on
/// any thread, at any time, also after the call, the channel or the server is gone.
struct SharedSlice {
    buffer: ByteBuffer,
}

impl SharedSlice {
    /// Takes a reference to `len` bytes of `slice` from `begin`.
    fn new(slice: ffi::grpc_slice, begin: usize, len: usize) -> SharedSlice {
        // SAFETY: `slice` is a live refcounted slice with at least `begin + len` bytes (our
        // caller's contract), so `grpc_slice_sub` returns a new reference to that range; the
        // empty raw buffer made here takes that reference over (`grpc_slice_buffer_add`
        // passes ownership), and `ByteBuffer` destroys it once.
        unsafe {
            let sub = ffi::grpc_slice_sub(slice, begin, begin + len);
            let raw = ffi::grpc_raw_byte_buffer_create(ptr::null_mut(), 0);
            ffi::grpc_slice_buffer_add(&mut (*raw).data.raw.slice_buffer, sub);
            SharedSlice { buffer: ByteBuffer { raw } }
        }
    }
}

impl AsRef<[u8]> for SharedSlice {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the buffer is a raw one holding exactly the one slice added in `new`, alive
        // as long as `self`.
        unsafe { slice_bytes(&*(*self.buffer.raw).data.raw.slice_buffer.slices) }
    }
}

/// A range of at least this many bytes that spans slices is gathered into a buffer kept
/// for reuse on the queue thread (see [`GatherBuf`]); shorter ones into a fresh allocation.
/// Every field of a read slice's size or more (64 KiB on 1.51) spans slices.
pub(crate) const REUSE_MIN: usize = 64 * 1024;

/// At most this many bytes of gather buffers are kept per completion-queue thread: one
/// message of the default receive limit (4 MiB), or four of 1 MiB.
const REUSE_MAX_BYTES: usize = 4 << 20;

thread_local! {
    /// Gather buffers waiting for their next message; `None` on threads that keep none
    /// (every thread but the completion-queue threads, see [`keep_gather_buffers`]).
    static GATHER_CACHE: std::cell::RefCell<Option<Vec<Vec<u8>>>> = const { std::cell::RefCell::new(None) };
}

/// Makes the calling thread keep the gather buffers of large received fields for the next
/// message (`true`, called by each completion-queue thread when it starts) or stop and
/// free them (`false`, when it ends).
///
/// Why: a 1 MiB field is gathered into a 1 MiB allocation per message. glibc serves that
/// from the thread's arena and, once the arena's free top passes its trim threshold (about
/// 2 MiB after the first 1 MiB block was freed), hands the memory back to the kernel
/// (`madvise(MADV_DONTNEED)`), so the next message's buffer faults in again page by page:
/// measured on the 1 MiB echo benchmark, ~60 extra page faults per call and kernel time
/// to match. Reusing the buffer on the thread that decodes and (usually) drops the
/// message keeps its pages mapped. Only queue threads keep buffers, so what stays
/// allocated is bounded by `REUSE_MAX_BYTES` per queue thread; a buffer dropped on any
/// other thread is freed as before.
pub(crate) fn keep_gather_buffers(keep: bool) {
    let old = GATHER_CACHE.try_with(|c| c.replace(keep.then(Vec::new)));
    drop(old);
}

/// Bytes of gather buffers the calling thread keeps (tests).
#[cfg(test)]
fn kept_gather_bytes() -> usize {
    GATHER_CACHE.with(|c| c.borrow().as_ref().map_or(0, |v| v.iter().map(Vec::capacity).sum()))
}

/// The owner behind a `Bytes` gathered from several slices (at least [`REUSE_MIN`]
/// bytes): a `Vec` taken from the thread's kept buffers when one fits, given back to the
/// dropping thread's when it keeps buffers and has room.
struct GatherBuf(Vec<u8>);

impl GatherBuf {
    /// An empty buffer with room for `len` bytes: the smallest kept one that fits and is
    /// not more than twice as large (a small field must not pin a big buffer), the most
    /// recently kept among equals (the likeliest to be in cache), else new.
    fn take(len: usize) -> GatherBuf {
        let kept = GATHER_CACHE
            .try_with(|c| {
                let mut c = c.borrow_mut();
                let kept = c.as_mut()?;
                let best = (0..kept.len())
                    .rev()
                    .filter(|&i| kept[i].capacity() >= len && kept[i].capacity() / 2 <= len)
                    .min_by_key(|&i| kept[i].capacity())?;
                Some(kept.swap_remove(best))
            })
            .ok()
            .flatten();
        GatherBuf(kept.unwrap_or_else(|| Vec::with_capacity(len)))
    }
}

impl AsRef<[u8]> for GatherBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for GatherBuf {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        buf.clear();
        // On a thread that keeps none, or is exiting, or has no room, `buf` is freed here.
        let _ = GATHER_CACHE.try_with(|c| {
            if let Some(kept) = c.borrow_mut().as_mut() {
                let held: usize = kept.iter().map(Vec::capacity).sum();
                if held + buf.capacity() <= REUSE_MAX_BYTES {
                    kept.push(buf);
                }
            }
        });
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

    /// prost reads every `bytes` field through this. A range of at least 4 KiB
    /// inside one slice comes back as a view of the core's slice, kept alive by the
    /// returned `Bytes` (no copy; a `bytes::Bytes` field then holds it as is); a shorter
    /// one is one allocation and copy; a range over several slices is gathered with one
    /// copy (the bytes are not contiguous in memory: the transport cuts a message at every
    /// HTTP/2 frame and read buffer boundary).
    fn copy_to_bytes(&mut self, len: usize) -> bytes::Bytes {
        if len <= self.current_len {
            let out = if len >= SHARE_MIN {
                self.share_current(len)
            } else {
                bytes::Bytes::copy_from_slice(&self.current()[..len])
            };
            self.consume(len);
            return out;
        }
        assert!(len <= self.remaining, "copy_to_bytes {len} past the {} bytes left", self.remaining);
        if len >= REUSE_MIN {
            let mut out = GatherBuf::take(len);
            while out.0.len() < len {
                let n = (len - out.0.len()).min(self.current_len);
                out.0.extend_from_slice(&self.current()[..n]);
                self.consume(n);
            }
            return bytes::Bytes::from_owner(out);
        }
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

    /// A buffer of `parts` slices holding `len` bytes of a pattern that depends on `seed`.
    fn patterned(len: usize, parts: usize, seed: u8) -> (Vec<u8>, ByteBuffer) {
        let all: Vec<u8> = (0..len).map(|i| (i % 253) as u8 ^ seed).collect();
        let pieces: Vec<&[u8]> = all.chunks(len.div_ceil(parts)).collect();
        let bb = multi_slice(&pieces);
        (all, bb)
    }

    #[test]
    fn a_queue_thread_gathers_large_fields_into_the_buffer_it_kept() {
        std::thread::spawn(|| {
            keep_gather_buffers(true);
            let (want, bb) = patterned(REUSE_MIN + 4096, 3, 1);
            let first = bb.reader().copy_to_bytes(want.len());
            assert_eq!(&first[..], &want[..]);
            let at = first.as_ptr();
            assert_eq!(kept_gather_bytes(), 0);
            drop(first);
            assert!(kept_gather_bytes() >= REUSE_MIN + 4096, "the dropped buffer is kept");
            // A shorter one fits in it: same memory, new bytes, its own length.
            let (want, bb) = patterned(REUSE_MIN + 100, 2, 7);
            let second = bb.reader().copy_to_bytes(want.len());
            assert_eq!(second.as_ptr(), at, "the kept buffer is reused");
            assert_eq!(&second[..], &want[..]);
            assert_eq!(kept_gather_bytes(), 0);
            // A small field does not take a buffer more than twice its size.
            drop(second);
            let (big_want, bb) = patterned(4 * REUSE_MIN, 4, 3);
            let big = bb.reader().copy_to_bytes(big_want.len());
            drop(big);
            let kept = kept_gather_bytes();
            let (want, bb) = patterned(REUSE_MIN, 2, 9);
            let small = bb.reader().copy_to_bytes(want.len());
            assert_eq!(&small[..], &want[..]);
            assert!(kept_gather_bytes() >= 4 * REUSE_MIN, "the big buffer stays kept");
            assert!(kept_gather_bytes() < kept, "the small field took the small buffer");
            drop(small);
            // Past the bound nothing more is kept.
            let (want, bb) = patterned(REUSE_MAX_BYTES, 8, 5);
            let huge = bb.reader().copy_to_bytes(want.len());
            assert_eq!(&huge[..], &want[..]);
            let before = kept_gather_bytes();
            drop(huge);
            assert_eq!(kept_gather_bytes(), before);
            assert!(kept_gather_bytes() <= REUSE_MAX_BYTES);
            keep_gather_buffers(false);
            assert_eq!(kept_gather_bytes(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn other_threads_keep_no_gather_buffers() {
        std::thread::spawn(|| {
            let (want, bb) = patterned(2 * REUSE_MIN, 3, 2);
            let gathered = bb.reader().copy_to_bytes(want.len());
            assert_eq!(&gathered[..], &want[..]);
            // A buffer gathered on a keeping thread and dropped here is freed, not kept.
            let from_queue = std::thread::spawn(|| {
                keep_gather_buffers(true);
                let (_, bb) = patterned(2 * REUSE_MIN, 2, 4);
                let out = bb.reader().copy_to_bytes(2 * REUSE_MIN);
                out
            })
            .join()
            .unwrap();
            drop(gathered);
            drop(from_queue);
            assert_eq!(kept_gather_bytes(), 0);
        })
        .join()
        .unwrap();
    }

    /// The slices of a buffer as (pointer, length) pairs.
    fn slices_of(bb: &ByteBuffer) -> Vec<(*const u8, usize)> {
        // SAFETY: `bb` is a live raw buffer; its slices are read, not changed.
        unsafe {
            let sb = &(*bb.raw).data.raw.slice_buffer;
            (0..sb.count).map(|i| slice_bytes(&*sb.slices.add(i))).map(|b| (b.as_ptr(), b.len())).collect()
        }
    }

    #[test]
    fn a_long_range_inside_one_slice_is_shared_and_outlives_the_buffer() {
        let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let bb = multi_slice(&[b"head", &big, b"tail"]);
        let mut r = bb.reader();
        r.advance(4 + 100);
        let at = r.chunk().as_ptr();
        let shared = r.copy_to_bytes(SHARE_MIN + 10);
        assert_eq!(shared.as_ptr(), at, "a range inside one slice is a view of it, not a copy");
        assert_eq!(&shared[..], &big[100..100 + SHARE_MIN + 10]);
        let at = r.chunk().as_ptr();
        let short = r.copy_to_bytes(SHARE_MIN - 1);
        assert_ne!(short.as_ptr(), at, "a short range is copied");
        assert_eq!(&short[..], &big[100 + SHARE_MIN + 10..100 + 2 * SHARE_MIN + 9]);
        let rest = big.len() - (100 + 2 * SHARE_MIN + 9);
        let across = r.copy_to_bytes(rest + 2); // into "tail": gathered
        assert_eq!(&across[..rest], &big[big.len() - rest..]);
        assert_eq!(&across[rest..], b"ta");
        drop(r);
        drop(bb);
        // The buffer is gone; the shared range keeps its slice alive (valgrind would see a
        // read of freed memory, or a leak if the reference were never released), also when
        // the last reference goes on another thread.
        let copy = shared.clone();
        std::thread::spawn(move || assert_eq!(&copy[..], &big[100..100 + SHARE_MIN + 10])).join().unwrap();
        drop(shared);
    }

    #[test]
    fn the_writer_adopts_large_bytes_and_copies_the_rest() {
        use bytes::BufMut;
        let big = bytes::Bytes::from((0..50_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let small = bytes::Bytes::from(vec![7u8; ADOPT_MIN - 1]);
        let slice_field: Vec<u8> = vec![3u8; ADOPT_MIN];
        let total = 3 + big.len() + small.len() + slice_field.len() + 1_000;
        let mut w = MessageWriter::new(total);
        w.put_slice(b"abc");
        w.put(big.clone());
        w.put(small.clone());
        w.put(&slice_field[..]);
        for i in 0..1_000u32 {
            w.put_u8(i as u8); // across chunks that grow
        }
        assert_eq!(bytes::BufMut::remaining_mut(&w), 0);
        let (bb, written) = w.finish();
        assert_eq!(written, total);
        let slices = slices_of(&bb);
        assert!(slices.contains(&(big.as_ptr(), big.len())), "the large Bytes is its own slice: {slices:?}");
        assert!(!slices.iter().any(|&(p, _)| p == small.as_ptr()), "a short one is copied");
        assert!(!big.is_unique(), "the core's slice holds a reference");
        let mut want = b"abc".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(&small);
        want.extend_from_slice(&slice_field);
        want.extend((0..1_000u32).map(|i| i as u8));
        let mut got = Vec::new();
        bb.reader().read_to_end(&mut got).unwrap();
        assert_eq!(got, want);
        // The core releases the adopted `Bytes` with the buffer, on any thread.
        std::thread::spawn(move || drop(bb)).join().unwrap();
        assert!(big.is_unique(), "the slice's reference was released");
    }

    #[test]
    fn an_unfinished_writer_releases_what_it_adopted() {
        use bytes::BufMut;
        let big = bytes::Bytes::from(vec![1u8; 2 * ADOPT_MIN]);
        let mut w = MessageWriter::new(10 + big.len() + 10);
        w.put_slice(&[0; 10]);
        w.put(big.clone());
        assert!(!big.is_unique());
        drop(w); // e.g. a codec error
        assert!(big.is_unique());
        // Writing past the announced length panics, as on a full slice.
        let mut w = MessageWriter::new(4);
        let past = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.put_slice(&[0; 5])));
        assert!(past.is_err());
        let mut w = MessageWriter::new(ADOPT_MIN);
        let past = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.put(bytes::Bytes::from(vec![0; ADOPT_MIN + 1]))));
        assert!(past.is_err());
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
