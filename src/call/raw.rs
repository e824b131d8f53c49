//! C-side buffers of call operations: metadata arrays, status slices, and `grpc_op` builders.

use std::os::raw::{c_char, c_int};
use std::mem::MaybeUninit;
use std::ptr;

use grpcore_sys as ffi;

use crate::buffer::{slice_bytes, ByteBuffer};
use crate::metadata::Metadata;

/// Metadata to send, as the core's `grpc_metadata` entries; owns every key and value slice.
pub(crate) struct SendMetadata {
    entries: Vec<ffi::grpc_metadata>,
}

// SAFETY: the entries own copied slices; nothing is shared with another owner.
unsafe impl Send for SendMetadata {}

fn copied_slice(bytes: &[u8]) -> ffi::grpc_slice {
    // SAFETY: the core copies `bytes` into a slice we then own.
    unsafe { ffi::grpc_slice_from_copied_buffer(bytes.as_ptr() as *const c_char, bytes.len()) }
}

impl SendMetadata {
    /// Copies `md`, plus extra (reserved) entries such as the status details.
    pub(crate) fn new<'a>(md: &'a Metadata, extra: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> SendMetadata {
        let mut extra = extra.into_iter().peekable();
        if md.is_empty() && extra.peek().is_none() {
            return SendMetadata::empty();
        }
        let mut entries = Vec::with_capacity(md.len() + extra.size_hint().0);
        for (k, v) in md.iter().chain(extra) {
            entries.push(ffi::grpc_metadata {
                key: copied_slice(k.as_bytes()),
                value: copied_slice(v),
                internal_data: Default::default(),
            });
        }
        SendMetadata { entries }
    }

    /// An empty set.
    pub(crate) fn empty() -> SendMetadata {
        SendMetadata { entries: Vec::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut ffi::grpc_metadata {
        if self.entries.is_empty() {
            ptr::null_mut()
        } else {
            self.entries.as_mut_ptr()
        }
    }
}

impl Drop for SendMetadata {
    fn drop(&mut self) {
        for e in &self.entries {
            // SAFETY: each slice was created by `copied_slice` and is released once, here.
            unsafe {
                ffi::grpc_slice_unref(e.key);
                ffi::grpc_slice_unref(e.value);
            }
        }
    }
}

/// A metadata array the core fills in. The array is ours; its elements belong to the call,
/// so read them (with [`RecvMetadata::to_metadata`]) while the call is alive.
pub(crate) struct RecvMetadata {
    pub(crate) array: ffi::grpc_metadata_array,
}

// SAFETY: plain data; the element pointers are only dereferenced under `to_metadata`'s contract.
unsafe impl Send for RecvMetadata {}

impl RecvMetadata {
    pub(crate) fn new() -> RecvMetadata {
        RecvMetadata {
            array: ffi::grpc_metadata_array::default(),
        }
    }

    /// Forgets the received entries but keeps the array's storage, so the next op that
    /// fills it needs no allocation (the C API allows reusing an array in a later op).
    pub(crate) fn clear(&mut self) {
        self.array.count = 0;
    }

    /// Copies the received entries.
    ///
    /// # Safety
    /// The call that filled the array must still be alive.
    pub(crate) unsafe fn to_metadata(&self) -> Metadata {
        let mut md = Metadata::with_capacity(self.array.count);
        for i in 0..self.array.count {
            // SAFETY: the core filled `count` entries whose slices the live call owns.
            unsafe {
                let e = &*self.array.metadata.add(i);
                md.push_raw(slice_bytes(&e.key), slice_bytes(&e.value));
            }
        }
        md
    }
}

impl Drop for RecvMetadata {
    fn drop(&mut self) {
        // SAFETY: frees only the array storage the core allocated for us (or nothing).
        unsafe { ffi::grpc_metadata_array_destroy(&mut self.array) }
    }
}

/// An owned slice (released on drop).
pub(crate) struct OwnedSlice(pub(crate) ffi::grpc_slice);

// SAFETY: slices are reference counted with atomic counts in the core.
unsafe impl Send for OwnedSlice {}

impl OwnedSlice {
    pub(crate) fn empty() -> OwnedSlice {
        // All zeros is the core's empty slice (what `grpc_empty_slice` returns): an inlined
        // slice of length 0, no refcount.
        OwnedSlice(ffi::grpc_slice::default())
    }

    pub(crate) fn copy_of(bytes: &[u8]) -> OwnedSlice {
        if bytes.is_empty() {
            return OwnedSlice::empty();
        }
        OwnedSlice(copied_slice(bytes))
    }

    pub(crate) fn to_string_lossy(&self) -> String {
        // SAFETY: the slice is owned by self and valid for the borrow.
        String::from_utf8_lossy(unsafe { slice_bytes(&self.0) }).into_owned()
    }
}

impl Drop for OwnedSlice {
    fn drop(&mut self) {
        // An inlined slice (no refcount) owns no memory: unreferencing it is a no-op, and
        // skipping the call keeps empty slices free of FFI (even after `grpc_shutdown`).
        if !self.0.refcount.is_null() {
            // SAFETY: we own one reference to the slice.
            unsafe { ffi::grpc_slice_unref(self.0) }
        }
    }
}

/// A received message slot: the core stores an owned buffer pointer here (or null).
pub(crate) struct RecvMessage(pub(crate) *mut ffi::grpc_byte_buffer);

// SAFETY: the buffer pointer is owned by this slot until taken.
unsafe impl Send for RecvMessage {}

impl RecvMessage {
    pub(crate) fn new() -> RecvMessage {
        RecvMessage(ptr::null_mut())
    }

    /// Takes the received buffer; `None` when the stream had no more messages.
    pub(crate) fn take(&mut self) -> Option<ByteBuffer> {
        let raw = std::mem::replace(&mut self.0, ptr::null_mut());
        // SAFETY: the core handed us ownership of this buffer (or null).
        unsafe { ByteBuffer::from_raw(raw) }
    }
}

impl Drop for RecvMessage {
    fn drop(&mut self) {
        drop(self.take());
    }
}

/// A debug error string the core allocates for failed client calls.
pub(crate) struct ErrorString(pub(crate) *const c_char);

// SAFETY: owned C string, freed once.
unsafe impl Send for ErrorString {}

impl ErrorString {
    pub(crate) fn new() -> ErrorString {
        ErrorString(ptr::null())
    }

    pub(crate) fn get(&self) -> Option<String> {
        // SAFETY: when set, the core stored a NUL-terminated string we own.
        (!self.0.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(self.0) }.to_string_lossy().into_owned())
    }
}

impl Drop for ErrorString {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: allocated by the core with gpr_malloc; freed once.
            unsafe { ffi::gpr_free(self.0 as *mut _) }
        }
    }
}

/// Up to `N` ops on the stack: a batch's op list without a heap allocation. Only the ops
/// pushed are ever written (a batch's start used to spend ~90 instructions zeroing four ops
/// it then mostly did not use, and copying them into place).
pub(crate) struct OpList<const N: usize> {
    ops: [MaybeUninit<ffi::grpc_op>; N],
    len: usize,
}

impl<const N: usize> OpList<N> {
    pub(crate) fn new() -> Self {
        OpList {
            ops: [const { MaybeUninit::uninit() }; N],
            len: 0,
        }
    }

    /// Appends an op; panics (a bug, caught by tests) if more than `N` are pushed.
    pub(crate) fn push(&mut self, op: ffi::grpc_op) {
        self.ops[self.len].write(op);
        self.len += 1;
    }

    pub(crate) fn as_slice(&self) -> &[ffi::grpc_op] {
        // SAFETY: the first `len` ops were written by `push` (`len` only grows there, one op
        // at a time, and never past `N`: indexing checks it), and `MaybeUninit<T>` has
        // `T`'s layout.
        unsafe { std::slice::from_raw_parts(self.ops.as_ptr().cast::<ffi::grpc_op>(), self.len) }
    }
}

/// Builders for `grpc_op` values. Each returns an op pointing into the given buffers; the
/// caller keeps those alive until the batch completes (see `Call::start_batch`).
pub(crate) mod op {
    use super::*;

    fn new(kind: ffi::grpc_op_type, flags: u32) -> ffi::grpc_op {
        ffi::grpc_op {
            op: kind,
            flags,
            reserved: ptr::null_mut(),
            data: Default::default(),
        }
    }

    pub(crate) fn send_initial_metadata(md: &mut SendMetadata, flags: u32) -> ffi::grpc_op {
        let mut o = new(ffi::GRPC_OP_SEND_INITIAL_METADATA, flags);
        o.data.send_initial_metadata.count = md.len();
        o.data.send_initial_metadata.metadata = md.as_mut_ptr();
        o
    }

    pub(crate) fn send_message(msg: &ByteBuffer, flags: u32) -> ffi::grpc_op {
        let mut o = new(ffi::GRPC_OP_SEND_MESSAGE, flags);
        o.data.send_message.send_message = msg.as_ptr();
        o
    }

    pub(crate) fn send_close_from_client() -> ffi::grpc_op {
        new(ffi::GRPC_OP_SEND_CLOSE_FROM_CLIENT, 0)
    }

    pub(crate) fn send_status_from_server(
        trailers: &mut SendMetadata,
        code: ffi::grpc_status_code,
        details: &mut OwnedSlice,
    ) -> ffi::grpc_op {
        let mut o = new(ffi::GRPC_OP_SEND_STATUS_FROM_SERVER, 0);
        o.data.send_status_from_server.trailing_metadata_count = trailers.len();
        o.data.send_status_from_server.trailing_metadata = trailers.as_mut_ptr();
        o.data.send_status_from_server.status = code;
        o.data.send_status_from_server.status_details = &mut details.0;
        o
    }

    pub(crate) fn recv_initial_metadata(md: &mut RecvMetadata) -> ffi::grpc_op {
        let mut o = new(ffi::GRPC_OP_RECV_INITIAL_METADATA, 0);
        o.data.recv_initial_metadata.recv_initial_metadata = &mut md.array;
        o
    }

    pub(crate) fn recv_message(slot: &mut RecvMessage) -> ffi::grpc_op {
        let mut o = new(ffi::GRPC_OP_RECV_MESSAGE, 0);
        o.data.recv_message.recv_message = &mut slot.0;
        o
    }

    pub(crate) fn recv_status_on_client(
        trailers: &mut RecvMetadata,
        status: &mut ffi::grpc_status_code,
        details: &mut OwnedSlice,
        error: &mut ErrorString,
    ) -> ffi::grpc_op {
        let mut o = new(ffi::GRPC_OP_RECV_STATUS_ON_CLIENT, 0);
        o.data.recv_status_on_client.trailing_metadata = &mut trailers.array;
        o.data.recv_status_on_client.status = status;
        o.data.recv_status_on_client.status_details = &mut details.0;
        o.data.recv_status_on_client.error_string = &mut error.0;
        o
    }

    pub(crate) fn recv_close_on_server(cancelled: *mut c_int) -> ffi::grpc_op {
        let mut o = new(ffi::GRPC_OP_RECV_CLOSE_ON_SERVER, 0);
        o.data.recv_close_on_server.cancelled = cancelled;
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_op_list_holds_exactly_the_ops_pushed_in_order() {
        let mut ops = OpList::<4>::new();
        assert!(ops.as_slice().is_empty());
        ops.push(op::send_close_from_client());
        let mut slot = RecvMessage::new();
        ops.push(op::recv_message(&mut slot));
        let kinds: Vec<_> = ops.as_slice().iter().map(|o| o.op).collect();
        assert_eq!(kinds, [ffi::GRPC_OP_SEND_CLOSE_FROM_CLIENT, ffi::GRPC_OP_RECV_MESSAGE]);
        assert_eq!(ops.as_slice()[1].flags, 0);
    }

    #[test]
    #[should_panic]
    fn an_op_list_refuses_more_ops_than_it_has_room_for() {
        let mut ops = OpList::<1>::new();
        ops.push(op::send_close_from_client());
        ops.push(op::send_close_from_client());
    }
}
