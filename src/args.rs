//! Channel arguments (`grpc_channel_args`), shared by the channel and server builders.
//!
//! Values are owned here: strings as `CString`s, pointer values (the resource quota) as
//! owner types holding one core reference each, released when the value is dropped or
//! replaced. The core copies what it needs (taking its own references through the pointer
//! vtable) when it creates a channel or server, so a view only has to live across that call.

use std::ffi::CString;
use std::os::raw::c_int;

use grpcore_sys as ffi;

use crate::error::{ConfigErrorKind, Error};
use crate::credentials::SslSessionCache;
use crate::quota::ResourceQuota;

#[derive(Clone, Debug)]
enum Value {
    Int(c_int),
    Str(CString),
    /// `grpc.resource_quota`: owns one reference (see [`ResourceQuota`]'s Clone and Drop).
    Quota(ResourceQuota),
    /// `grpc.ssl_session_cache`: holds the cache (and so one core reference to it).
    SessionCache(SslSessionCache),
}

/// An ordered set of core channel arguments; a later value for a key replaces an earlier one.
#[derive(Clone, Debug, Default)]
pub(crate) struct ChannelArgs {
    args: Vec<(CString, Value)>,
}

fn c_string(what: &str, s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::config_kind(ConfigErrorKind::Setting, format!("{what} {s:?} contains a NUL byte")))
}

impl ChannelArgs {
    fn set(&mut self, key: CString, value: Value) {
        self.args.retain(|(k, _)| *k != key);
        self.args.push((key, value));
    }

    pub(crate) fn set_int(&mut self, key: &str, value: i32) -> Result<(), Error> {
        let key = c_string("channel argument key", key)?;
        self.set(key, Value::Int(value));
        Ok(())
    }

    /// The integer value set for `key`, if any.
    pub(crate) fn get_int(&self, key: &str) -> Option<i32> {
        self.args.iter().rev().find_map(|(k, v)| match v {
            Value::Int(i) if k.as_bytes() == key.as_bytes() => Some(*i),
            _ => None,
        })
    }

    /// Whether any value is set for `key`.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.args.iter().any(|(k, _)| k.as_bytes() == key.as_bytes())
    }

    pub(crate) fn set_str(&mut self, key: &str, value: &str) -> Result<(), Error> {
        let key = c_string("channel argument key", key)?;
        let value = c_string(&format!("value of channel argument {key:?}"), value)?;
        self.set(key, Value::Str(value));
        Ok(())
    }

    /// Sets the resource quota (`grpc.resource_quota`); the arguments hold their own
    /// reference until they are dropped or the quota is replaced.
    pub(crate) fn set_quota(&mut self, quota: &ResourceQuota) {
        // The key is a constant without NUL bytes.
        let key = CString::new("grpc.resource_quota").unwrap_or_default();
        self.set(key, Value::Quota(quota.clone()));
    }

    /// Sets the TLS session cache (`grpc.ssl_session_cache`); the arguments keep the cache
    /// alive until they are dropped or the cache is replaced.
    pub(crate) fn set_session_cache(&mut self, cache: &SslSessionCache) {
        // The key is a constant without NUL bytes.
        let key = CString::new("grpc.ssl_session_cache").unwrap_or_default();
        self.set(key, Value::SessionCache(cache.clone()));
    }

    /// Calls `f` with a `grpc_channel_args` view that is valid for the duration of the call
    /// (the core copies arguments when it creates a channel or server).
    pub(crate) fn with_raw<R>(&self, f: impl FnOnce(*const ffi::grpc_channel_args) -> R) -> R {
        let mut raw: Vec<ffi::grpc_arg> = self
            .args
            .iter()
            .map(|(k, v)| {
                let mut arg = ffi::grpc_arg {
                    key: k.as_ptr() as *mut _,
                    ..Default::default()
                };
                match v {
                    Value::Int(i) => {
                        arg.type_ = ffi::GRPC_ARG_INTEGER;
                        arg.value.integer = *i;
                    }
                    Value::Str(s) => {
                        arg.type_ = ffi::GRPC_ARG_STRING;
                        arg.value.string = s.as_ptr() as *mut _;
                    }
                    Value::Quota(q) => {
                        arg.type_ = ffi::GRPC_ARG_POINTER;
                        arg.value.pointer = ffi::grpc_arg_grpc_arg_value_grpc_arg_pointer {
                            p: q.as_ptr() as *mut _,
                            // SAFETY: returns a pointer to the core's static vtable for quotas,
                            // whose copy/destroy take and release quota references.
                            vtable: unsafe { ffi::grpc_resource_quota_arg_vtable() },
                        };
                    }
                    Value::SessionCache(c) => {
                        // SAFETY: builds a pointer argument (the core's own key and vtable,
                        // whose copy/destroy take and release cache references) without taking
                        // a reference itself; `c` keeps the cache alive meanwhile.
                        arg = unsafe { ffi::grpc_ssl_session_cache_create_channel_arg(c.as_ptr()) };
                    }
                }
                arg
            })
            .collect();
        let args = ffi::grpc_channel_args {
            num_args: raw.len(),
            args: raw.as_mut_ptr(),
        };
        f(&args)
    }
}

/// Converts a byte limit to the core's `int` argument (`-1` = unlimited).
pub(crate) fn size_limit(setting: &str, limit: Option<usize>) -> Result<i32, Error> {
    match limit {
        None => Ok(-1),
        Some(n) => i32::try_from(n).map_err(|_| {
            Error::config_kind(ConfigErrorKind::Setting, format!("{setting} = {n} bytes is larger than the core's maximum of {} bytes", i32::MAX))
        }),
    }
}
