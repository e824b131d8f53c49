//! Call credentials: metadata added to every call of a channel, from a static bearer token
//! or from an async token source ([`CallCredentials`]).
//!
//! A token source is the core's metadata credentials plugin. The core asks the plugin for
//! metadata before each call (on one of its own threads); we start the source's future on a
//! completion-queue thread of the given [`Environment`] and answer the core when it
//! resolves. The plugin's C callbacks run Rust code only inside `catch_unwind`, and the
//! core's completion callback is called exactly once per request: by the future's result, or,
//! if the future is dropped unfinished, by the guard that owns the request.
//!
//! # Errors
//! The 1.51 core turns every failure of a plugin into `UNAVAILABLE` whatever code the plugin
//! gave (`plugin_credentials.cc`, `ProcessPluginResult`), with the message
//! `Getting metadata from plugin failed with error: <details>`. We put the source's own
//! code name first in the details, so a caller sees e.g.
//! `UNAVAILABLE: Getting metadata from plugin failed with error: UNAUTHENTICATED: token expired`.

use std::ffi::CStr;
use std::fmt;
use std::future::Future;
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr;
use std::sync::Arc;

use futures_util::FutureExt;
use grpcore_sys as ffi;

use crate::ffi_guard::{ffi_guard, log_caught};
use crate::call::raw::SendMetadata;
use crate::env::Environment;
use crate::error::{ConfigErrorKind, Error};
use crate::metadata::Metadata;
use crate::status::{Code, Status};

/// What the core tells a token source about the call that needs metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthMetadataContext {
    service_url: String,
    method_name: String,
}

impl AuthMetadataContext {
    /// The URL of the service being called, e.g. `https://example.com/pkg.Service` (the
    /// audience of a JWT).
    pub fn service_url(&self) -> &str {
        &self.service_url
    }

    /// The method's name without the service, e.g. `Unary`.
    pub fn method_name(&self) -> &str {
        &self.method_name
    }
}

type TokenFuture = Pin<Box<dyn Future<Output = Result<Metadata, Status>> + Send + 'static>>;
type TokenSource = dyn Fn(AuthMetadataContext) -> TokenFuture + Send + Sync + 'static;

/// Credentials that add metadata (typically `authorization`) to each call. Attach them to a
/// channel with [`ChannelCredentials::with_call_credentials`]; they are only ever sent over
/// TLS or local connections.
///
/// ```no_run
/// # fn main() -> Result<(), grpcore::Error> {
/// use grpcore::{CallCredentials, ChannelCredentials, Environment, Metadata, Status};
/// let env = Environment::new(1);
/// let tokens = CallCredentials::from_async(&env, |ctx| async move {
///     let token = format!("token-for-{}", ctx.method_name()); // e.g. fetched from an IdP
///     let mut md = Metadata::new();
///     md.append("authorization", &format!("Bearer {token}")).map_err(|e| e.status())?;
///     Ok::<_, Status>(md)
/// });
/// let creds = ChannelCredentials::tls().build()?.with_call_credentials(tokens);
/// # drop(creds); Ok(()) }
/// ```
///
/// [`ChannelCredentials::with_call_credentials`]: crate::ChannelCredentials::with_call_credentials
#[derive(Clone)]
pub struct CallCredentials {
    inner: Arc<RawCallCredentials>,
}

impl fmt::Debug for CallCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallCredentials").finish_non_exhaustive()
    }
}

/// Owns one reference to core call credentials.
struct RawCallCredentials(*mut ffi::grpc_call_credentials);

// SAFETY: core call credentials are reference counted and immutable once made; the plugin
// state they may carry is Send + Sync (see `PluginState`). Released once, in Drop.
unsafe impl Send for RawCallCredentials {}
// SAFETY: as above.
unsafe impl Sync for RawCallCredentials {}

impl Drop for RawCallCredentials {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: we own one reference; composites and channels hold their own.
            unsafe { ffi::grpc_call_credentials_release(self.0) }
        }
    }
}

impl CallCredentials {
    /// Sends `authorization: Bearer <token>` with every call (the core's access-token
    /// credentials). The token must be non-empty printable ASCII.
    pub fn bearer_token(token: &str) -> Result<CallCredentials, Error> {
        if token.is_empty() || !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(Error::config_kind(ConfigErrorKind::Credentials,
                "bearer token must be non-empty printable ASCII without spaces (it goes into an HTTP/2 header)",
            ));
        }
        let c = std::ffi::CString::new(token).map_err(|_| Error::config_kind(ConfigErrorKind::Credentials, "bearer token contains a NUL byte"))?;
        // SAFETY: the core copies the token; the reference returned is owned by the result.
        let raw = unsafe { ffi::grpc_access_token_credentials_create(c.as_ptr(), ptr::null_mut()) };
        CallCredentials::from_raw(raw)
    }

    /// Asks `source` for the metadata of each call; its future runs on a completion-queue
    /// thread of `env`. An `Err(status)` (or a panic) fails the call with `UNAVAILABLE` (see
    /// the module docs for the message). Keep the future quick: the call waits for it (its
    /// deadline still applies).
    pub fn from_async<F, Fut>(env: &Environment, source: F) -> CallCredentials
    where
        F: Fn(AuthMetadataContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Metadata, Status>> + Send + 'static,
    {
        let source: Box<TokenSource> = Box::new(move |ctx| Box::pin(source(ctx)) as TokenFuture);
        let state = Box::into_raw(Box::new(PluginState { env: env.clone(), source }));
        let plugin = ffi::grpc_metadata_credentials_plugin {
            get_metadata: Some(plugin_get_metadata),
            debug_string: None,
            destroy: Some(plugin_destroy),
            state: state as *mut c_void,
            type_: c"grpcore.token_source".as_ptr(),
        };
        // SAFETY: the plugin's callbacks match the core's contract (below); the core owns
        // `state` from here on and frees it through `destroy`. Metadata is sent only on
        // connections at least as private as GRPC_PRIVACY_AND_INTEGRITY (TLS or local).
        let raw = unsafe { ffi::grpc_metadata_credentials_create_from_plugin(plugin, ffi::GRPC_PRIVACY_AND_INTEGRITY, ptr::null_mut()) };
        // The core never returns null here (it allocates), but stay total.
        CallCredentials::from_raw(raw).unwrap_or_else(|_| CallCredentials {
            inner: Arc::new(RawCallCredentials(ptr::null_mut())),
        })
    }

    /// Applies `self` and then `other` to each call.
    pub fn and(self, other: CallCredentials) -> Result<CallCredentials, Error> {
        // SAFETY: both are live; the composite takes references of its own.
        let raw = unsafe { ffi::grpc_composite_call_credentials_create(self.as_ptr(), other.as_ptr(), ptr::null_mut()) };
        CallCredentials::from_raw(raw)
    }

    fn from_raw(raw: *mut ffi::grpc_call_credentials) -> Result<CallCredentials, Error> {
        if raw.is_null() {
            return Err(Error::config_kind(ConfigErrorKind::Credentials, "the core could not create the call credentials"));
        }
        Ok(CallCredentials {
            inner: Arc::new(RawCallCredentials(raw)),
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::grpc_call_credentials {
        self.inner.0
    }

    /// The list as one set of credentials (`None` for an empty list).
    pub(crate) fn compose_raw(list: &[CallCredentials]) -> Result<Option<CallCredentials>, Error> {
        let mut iter = list.iter().cloned();
        let Some(first) = iter.next() else { return Ok(None) };
        iter.try_fold(first, CallCredentials::and).map(Some)
    }
}

/// The plugin's state, owned by the core's credentials object.
struct PluginState {
    /// Keeps the environment (and so its queues) alive while the core may ask for metadata.
    env: Environment,
    source: Box<TokenSource>,
}

/// One pending request of the core: completes it exactly once (with the source's answer,
/// or with an error if it is dropped unanswered).
struct PluginReply {
    cb: ffi::grpc_credentials_plugin_metadata_cb,
    user_data: *mut c_void,
    answered: bool,
}

// SAFETY: the core allows the completion callback to be called from any thread, once.
unsafe impl Send for PluginReply {}

impl PluginReply {
    fn answer(mut self, result: Result<Metadata, Status>) {
        self.answered = true;
        let Some(cb) = self.cb else { return };
        match result {
            Ok(md) => {
                let mut entries = SendMetadata::new(&md, None);
                // SAFETY: the entries are valid for the call (the core takes its own slice
                // references); `user_data` is the core's request, completed exactly once here.
                unsafe { cb(self.user_data, entries.as_mut_ptr(), entries.len(), ffi::GRPC_STATUS_OK, ptr::null()) };
            }
            Err(status) => {
                let code = if status.code() == Code::Ok { Code::Unauthenticated } else { status.code() };
                let details = c_text(&format!("{}: {}", code.name(), status.message()));
                // SAFETY: as above; the details string lives across the call (the core copies it).
                unsafe { cb(self.user_data, ptr::null(), 0, code.as_i32() as ffi::grpc_status_code, details.as_ptr()) };
            }
        }
    }
}

impl Drop for PluginReply {
    fn drop(&mut self) {
        if !self.answered {
            self.answered = true;
            if let Some(cb) = self.cb {
                let details = c_text("UNAVAILABLE: the token source was dropped before it answered (environment shutting down?)");
                // SAFETY: the request has not been completed yet; complete it once, here.
                unsafe { cb(self.user_data, ptr::null(), 0, ffi::GRPC_STATUS_UNAVAILABLE, details.as_ptr()) };
            }
        }
    }
}

fn c_text(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s.replace('\0', " ")).unwrap_or_default()
}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: the core's context strings are NUL-terminated and valid during the call.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// A `gpr_malloc`ed copy of `s`, which the core frees with `gpr_free`.
fn gpr_string(s: &str) -> *const c_char {
    let bytes = s.replace('\0', " ");
    // SAFETY: allocates len + 1 bytes and fills them completely (text, then NUL).
    unsafe {
        let p = ffi::gpr_malloc(bytes.len() + 1) as *mut u8;
        ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
        *p.add(bytes.len()) = 0;
        p as *const c_char
    }
}

/// `get_metadata` of the plugin: starts the source's future and answers asynchronously (0),
/// or, if the source panicked before giving a future, fails synchronously (1).
///
/// # Safety
/// Called only by the core, with the `state` registered with this plugin (alive until
/// `plugin_destroy`) and a callback and `user_data` valid until the callback is invoked.
unsafe extern "C" fn plugin_get_metadata(
    state: *mut c_void,
    context: ffi::grpc_auth_metadata_context,
    cb: ffi::grpc_credentials_plugin_metadata_cb,
    user_data: *mut c_void,
    _creds_md: *mut ffi::grpc_metadata,
    num_creds_md: *mut usize,
    status: *mut ffi::grpc_status_code,
    error_details: *mut *const c_char,
) -> c_int {
    // Everything, logging included, runs inside `ffi_guard`: no panic reaches the core. If
    // something still panicked there, the request must not be left unanswered: the
    // asynchronous answer (0) is only given once the reply guard owns the request, and before
    // that point the fallback fails synchronously with fixed text.
    let answered_async = std::cell::Cell::new(false);
    let fallback = || {
        // SAFETY: the core passes valid out-pointers for a synchronous answer; it frees the
        // details with gpr_free.
        unsafe {
            *num_creds_md = 0;
            *status = ffi::GRPC_STATUS_UNAVAILABLE;
            *error_details = gpr_string("UNAVAILABLE: the token source failed");
        }
        1
    };
    let rc = ffi_guard(-1, || {
        // SAFETY: `state` is the `PluginState` we gave the core, alive until `destroy`.
        let state = unsafe { &*(state as *const PluginState) };
        let started = catch_unwind(AssertUnwindSafe(|| {
            let ctx = AuthMetadataContext {
                service_url: text(context.service_url),
                method_name: text(context.method_name),
            };
            (state.source)(ctx)
        }));
        match started {
            Ok(future) => {
                let reply = PluginReply {
                    cb,
                    user_data,
                    answered: false,
                };
                answered_async.set(true);
                let task = async move {
                    let result = AssertUnwindSafe(future).catch_unwind().await.unwrap_or_else(|panic| {
                        Err(Status::new(
                            Code::Unavailable,
                            format!("the token source panicked: {}", crate::task::panic_message(&*panic)),
                        ))
                    });
                    reply.answer(result);
                };
                // Spawning only allocates; if it ever unwound, the dropped task's reply would
                // still complete the request (once), so the answer stays "asynchronous".
                ffi_guard((), || drop(state.env.spawn(task)));
                0
            }
            Err(panic) => {
                let msg = format!("UNAVAILABLE: the token source panicked: {}", crate::task::panic_message(&*panic));
                log_caught!(error, "call credentials: {msg}");
                // SAFETY: the core passes valid out-pointers for a synchronous answer; it
                // frees the details with gpr_free.
                unsafe {
                    *num_creds_md = 0;
                    *status = ffi::GRPC_STATUS_UNAVAILABLE;
                    *error_details = gpr_string(&msg);
                }
                1
            }
        }
    });
    match rc {
        -1 if answered_async.get() => 0,
        -1 => fallback(),
        rc => rc,
    }
}

/// `destroy` of the plugin: frees the state when the core's credentials object dies.
///
/// # Safety
/// Called once by the core, with the `state` registered with this plugin (or null).
unsafe extern "C" fn plugin_destroy(state: *mut c_void) {
    if state.is_null() {
        return;
    }
    // SAFETY: `state` came from Box::into_raw in `from_async`; the core calls destroy once.
    let state = unsafe { Box::from_raw(state as *mut PluginState) };
    ffi_guard((), move || {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(state))) {
            log_caught!(error, "dropping a token source panicked: {}", crate::task::panic_message(&*panic));
        }
    });
}
