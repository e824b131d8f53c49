//! [`ResourceQuota`]: the core's memory budget, shared by the channels and servers given it.
//!
//! Owns one reference to a `grpc_resource_quota`; clones share the quota. It never decides
//! how the core spends the budget: the core's transports and calls draw from it and push
//! back (smaller windows, reclaimed buffers, refused calls) when it runs low.

use std::ffi::CString;
use std::ptr::NonNull;

use grpcore_sys as ffi;

/// A memory budget for the core's transports and calls, shared by every [`ChannelBuilder`]
/// and [`ServerBuilder`] it is given to.
///
/// Cheap to clone: clones are the same quota, and [`ResourceQuota::resize`] on any of them
/// changes it for everyone using it, at once. Without a quota, the core uses one process-wide
/// default quota with no limit.
///
/// ```
/// let env = grpcore::Environment::new(1);
/// let quota = grpcore::ResourceQuota::new("clients");
/// quota.resize(64 << 20); // 64 MiB for every channel built with it
/// let channel = grpcore::ChannelBuilder::new(&env)
///     .resource_quota(&quota)
///     .connect("127.0.0.1:50051")
///     .unwrap();
/// # drop(channel);
/// ```
///
/// [`ChannelBuilder`]: crate::ChannelBuilder
/// [`ServerBuilder`]: crate::ServerBuilder
pub struct ResourceQuota {
    raw: NonNull<ffi::grpc_resource_quota>,
}

// SAFETY: the core's resource quota is reference-counted atomically and its resize is
// thread-safe; we only ref, unref and resize it.
unsafe impl Send for ResourceQuota {}
// SAFETY: as above.
unsafe impl Sync for ResourceQuota {}

impl ResourceQuota {
    /// A quota named `name` (the core shows the name in its traces), with no limit until
    /// [`ResourceQuota::resize`] sets one.
    pub fn new(name: &str) -> ResourceQuota {
        crate::env::init_core();
        let name = CString::new(name.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the core copies the name; the returned quota carries one reference, which
        // becomes ours. The core is initialised above (paired with grpc_shutdown in Drop).
        let raw = unsafe { ffi::grpc_resource_quota_create(name.as_ptr()) };
        ResourceQuota {
            raw: NonNull::new(raw).expect("grpc_resource_quota_create returned null"),
        }
    }

    /// Sets the memory limit, in bytes, for everything using this quota (now and later).
    pub fn resize(&self, bytes: usize) {
        // SAFETY: we hold a reference, so the quota is alive; resizing is thread-safe.
        unsafe { ffi::grpc_resource_quota_resize(self.raw.as_ptr(), bytes) }
    }

    /// The raw pointer, still owned by `self` (for channel arguments, which take their own
    /// reference through the core's vtable).
    pub(crate) fn as_ptr(&self) -> *mut ffi::grpc_resource_quota {
        self.raw.as_ptr()
    }
}

impl Clone for ResourceQuota {
    fn clone(&self) -> ResourceQuota {
        crate::env::init_core();
        // SAFETY: we hold a reference, so the quota is alive; the new reference is the clone's.
        unsafe { ffi::grpc_resource_quota_ref(self.raw.as_ptr()) };
        ResourceQuota { raw: self.raw }
    }
}

impl Drop for ResourceQuota {
    fn drop(&mut self) {
        // SAFETY: releases the one reference this value owns (from `new` or `clone`); the
        // core frees the quota when channels and servers holding theirs are gone too. The
        // shutdown pairs with the `init_core` of `new`/`clone`.
        unsafe {
            ffi::grpc_resource_quota_unref(self.raw.as_ptr());
            ffi::grpc_shutdown();
        }
    }
}

impl std::fmt::Debug for ResourceQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceQuota").finish_non_exhaustive()
    }
}
