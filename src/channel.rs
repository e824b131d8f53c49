//! Client channels: a connection (pool) to a target, and the calls made on it.

use std::ffi::CString;
use std::ptr;
use std::sync::Arc;

use grpcore_sys as ffi;

use crate::args::{size_limit, ChannelArgs};
use crate::buffer::ByteBuffer;
use crate::call::client::{CallOptions, UnaryCall};
use crate::call::Call;
use crate::codec::Codec;
use crate::env::Environment;
use crate::error::Error;
use crate::method::{Method, MethodKind};

/// Configures and creates a [`Channel`] (insecure; TLS comes with credentials).
///
/// ```no_run
/// let env = grpcore::Environment::new(1);
/// let channel = grpcore::ChannelBuilder::new(&env)
///     .max_receive_message_len(16 << 20)
///     .connect("127.0.0.1:50051")
///     .unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct ChannelBuilder {
    env: Environment,
    args: ChannelArgs,
    error: Option<Error>,
}

impl ChannelBuilder {
    /// A builder whose calls run on `env`'s completion queues.
    pub fn new(env: &Environment) -> ChannelBuilder {
        ChannelBuilder {
            env: env.clone(),
            args: ChannelArgs::default(),
            error: None,
        }
    }

    fn record(mut self, r: Result<(), Error>) -> ChannelBuilder {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
        self
    }

    /// Largest message this channel accepts, in bytes; `None` for no limit.
    /// Default: 4 MiB. A larger response fails the call with `RESOURCE_EXHAUSTED`.
    pub fn max_receive_message_len(self, bytes: impl Into<Option<usize>>) -> ChannelBuilder {
        let r = size_limit("max_receive_message_len", bytes.into()).and_then(|v| {
            let mut args = self.args.clone();
            args.set_int("grpc.max_receive_message_length", v).map(|()| args)
        });
        self.apply(r)
    }

    /// Largest message this channel sends, in bytes; `None` (the default) for no limit.
    /// A larger request fails the call with `RESOURCE_EXHAUSTED` before it is sent.
    pub fn max_send_message_len(self, bytes: impl Into<Option<usize>>) -> ChannelBuilder {
        let r = size_limit("max_send_message_len", bytes.into()).and_then(|v| {
            let mut args = self.args.clone();
            args.set_int("grpc.max_send_message_length", v).map(|()| args)
        });
        self.apply(r)
    }

    /// Prepended to the `user-agent` header (the core appends its own). Default: none.
    pub fn user_agent(self, agent: &str) -> ChannelBuilder {
        let mut args = self.args.clone();
        let r = args.set_str("grpc.primary_user_agent", agent).map(|()| args);
        self.apply(r)
    }

    /// Sets any integer channel argument the core understands (escape hatch).
    pub fn raw_int_arg(self, key: &str, value: i32) -> ChannelBuilder {
        let mut args = self.args.clone();
        let r = args.set_int(key, value).map(|()| args);
        self.apply(r)
    }

    /// Sets any string channel argument the core understands (escape hatch).
    pub fn raw_str_arg(self, key: &str, value: &str) -> ChannelBuilder {
        let mut args = self.args.clone();
        let r = args.set_str(key, value).map(|()| args);
        self.apply(r)
    }

    fn apply(mut self, r: Result<ChannelArgs, Error>) -> ChannelBuilder {
        match r {
            Ok(args) => {
                self.args = args;
                self
            }
            Err(e) => self.record(Err(e)),
        }
    }

    /// Creates an insecure (plaintext) channel to `target`.
    ///
    /// Targets as the core accepts them: `host:port`, `dns:[//authority/]host[:port]`,
    /// `ipv4:addr:port[,addr:port...]`, `ipv6:[addr]:port`, `unix:path`,
    /// `unix:///absolute/path`, `unix-abstract:name`. A target the core cannot parse is an
    /// [`Error::Config`].
    ///
    /// The channel connects lazily, on the first call. While no server answers, calls fail
    /// at once with `UNAVAILABLE` unless they set [`CallOptions::wait_for_ready`], which
    /// makes them wait (within their deadline) for the server to come up.
    pub fn connect(self, target: &str) -> Result<Channel, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        validate_target(target)?;
        let c_target = CString::new(target)
            .map_err(|_| Error::Config(format!("channel target {target:?} contains a NUL byte")))?;
        // SAFETY: the credentials are released right after the channel took its own
        // reference; the target string and arguments live across the call.
        let raw = self.args.with_raw(|args| unsafe {
            let creds = ffi::grpc_insecure_credentials_create();
            let ch = ffi::grpc_channel_create(c_target.as_ptr(), creds, args);
            ffi::grpc_channel_credentials_release(creds);
            ch
        });
        if raw.is_null() {
            return Err(Error::Config(format!("the core could not create a channel to {target:?}")));
        }
        let inner = ChannelInner {
            raw,
            target: target.to_string(),
            env: self.env,
        };
        // A target the core cannot resolve gives a "lame" channel, which reports
        // TRANSIENT_FAILURE before anything was tried (a real channel starts IDLE).
        // SAFETY: the channel is live; without try_to_connect this only reads state.
        let state = unsafe { ffi::grpc_channel_check_connectivity_state(inner.raw, 0) };
        if state == ffi::GRPC_CHANNEL_TRANSIENT_FAILURE || state == ffi::GRPC_CHANNEL_SHUTDOWN {
            return Err(Error::Config(format!(
                "invalid channel target {target:?}: the core has no resolver for it \
                 (expected host:port, dns:, ipv4:, ipv6:, unix: or unix-abstract:)"
            )));
        }
        Ok(Channel { inner: Arc::new(inner) })
    }
}

/// Rejects targets that would only fail later, with a message naming the problem.
fn validate_target(target: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::Config(format!("invalid channel target {target:?}: {why}")));
    if target.trim().is_empty() {
        return bad("it is empty");
    }
    if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains whitespace or control characters");
    }
    let (scheme, rest) = match target.split_once(':') {
        Some((s, r)) if matches!(s, "dns" | "ipv4" | "ipv6" | "unix" | "unix-abstract") => (s, r),
        _ => ("", target),
    };
    match scheme {
        "ipv4" => {
            for addr in rest.trim_start_matches("//").trim_start_matches('/').split(',') {
                if addr.parse::<std::net::SocketAddrV4>().is_err() {
                    return bad(&format!("{addr:?} is not an IPv4 address:port"));
                }
            }
        }
        "ipv6" => {
            for addr in rest.trim_start_matches("//").trim_start_matches('/').split(',') {
                if addr.parse::<std::net::SocketAddrV6>().is_err() {
                    return bad(&format!("{addr:?} is not an [IPv6 address]:port"));
                }
            }
        }
        "unix" | "unix-abstract" => {
            if rest.trim_start_matches('/').is_empty() && scheme == "unix" {
                return bad("the unix socket path is empty");
            }
        }
        _ => {
            // host[:port] (possibly after dns: and an authority): check the port if present.
            let host_port = if scheme == "dns" {
                let r = rest.strip_prefix("//").map_or(rest, |r| r.split_once('/').map_or("", |(_, h)| h));
                r.trim_start_matches('/')
            } else {
                rest
            };
            if host_port.is_empty() {
                return bad("the host is empty");
            }
            let port = if let Some(r) = host_port.strip_prefix('[') {
                match r.split_once(']') {
                    Some((_, p)) => p.strip_prefix(':'),
                    None => return bad("an IPv6 literal is missing its closing ']'"),
                }
            } else if host_port.matches(':').count() == 1 {
                host_port.split_once(':').map(|(_, p)| p)
            } else {
                None
            };
            if let Some(port) = port {
                if port.parse::<u16>().is_err() {
                    return bad(&format!("port {port:?} is not a number from 0 to 65535"));
                }
            }
            if host_port.starts_with(':') {
                return bad("the host is empty");
            }
        }
    }
    Ok(())
}

struct ChannelInner {
    raw: *mut ffi::grpc_channel,
    target: String,
    env: Environment,
}

// SAFETY: the core's channel is thread-safe; the pointer is destroyed once, in Drop, after
// every call made on it has been released (calls hold the channel through `Channel`).
unsafe impl Send for ChannelInner {}
// SAFETY: as above.
unsafe impl Sync for ChannelInner {}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        // SAFETY: we own the channel; calls keep their own core references to it.
        unsafe { ffi::grpc_channel_destroy(self.raw) }
    }
}

/// A client channel: cheap to clone, safe to share between threads and tasks.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<ChannelInner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("target", &self.inner.target).finish()
    }
}

impl Channel {
    /// The target this channel was created for.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The environment whose queues run this channel's calls.
    pub fn env(&self) -> &Environment {
        &self.inner.env
    }

    /// Creates a call to `path` bound to one of the environment's queues.
    pub(crate) fn create_call(&self, path: &str, static_path: Option<&'static str>, opts: &CallOptions) -> Result<Call, Error> {
        let cq = self.inner.env.pick_cq().clone();
        let Some(borrow) = cq.borrow() else {
            return Err(Error::Shutdown("the environment is shutting down".into()));
        };
        // SAFETY: the channel and the borrowed queue are live; the method slice is released
        // after the core took its own reference; the new call's single reference becomes the
        // `Call`'s.
        unsafe {
            let method = match static_path {
                Some(p) => ffi::grpc_slice_from_static_buffer(p.as_ptr() as *const _, p.len()),
                None => ffi::grpc_slice_from_copied_buffer(path.as_ptr() as *const _, path.len()),
            };
            let parent = opts.parent_call().map_or(ptr::null_mut(), |c| c.as_ptr());
            let raw = ffi::grpc_channel_create_call(
                self.inner.raw,
                parent,
                ffi::GRPC_PROPAGATE_DEFAULTS,
                borrow.raw(),
                method,
                ptr::null(),
                opts.raw_deadline(),
                ptr::null_mut(),
            );
            ffi::grpc_slice_unref(method);
            drop(borrow);
            if raw.is_null() {
                return Err(Error::Internal(format!("the core could not create a call to {path}")));
            }
            Ok(Call::from_raw(raw, cq))
        }
    }

    /// Starts a unary call. The returned future resolves to the response.
    ///
    /// The request is encoded and the call started right away; the future only waits.
    /// Use [`UnaryCall::wait`] to block instead of awaiting.
    pub fn unary<Req, Resp, C>(&self, method: &Method<Req, Resp, C>, request: &Req, opts: CallOptions) -> UnaryCall<Resp, C>
    where
        C: Codec<Req> + Codec<Resp>,
    {
        if method.kind() != MethodKind::Unary {
            return UnaryCall::failed(Error::Config(format!(
                "{} is a {:?} method, not a unary one",
                method.path(),
                method.kind()
            )));
        }
        let mut buf = Vec::new();
        if let Err(e) = C::encode(request, &mut buf) {
            return UnaryCall::failed(Error::Codec(format!("failed to encode the request to {}: {e}", method.path())));
        }
        match self.create_call(method.path(), method.static_path(), &opts) {
            Ok(call) => UnaryCall::start(call, &opts, ByteBuffer::from_vec(buf)),
            Err(e) => UnaryCall::failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::validate_target;

    #[test]
    fn targets_the_core_accepts_pass() {
        for t in [
            "localhost:50051",
            "127.0.0.1:1",
            "dns:localhost:80",
            "dns:///example.com:443",
            "dns://8.8.8.8/example.com",
            "ipv4:127.0.0.1:1,127.0.0.1:2",
            "ipv6:[::1]:80",
            "unix:/tmp/sock",
            "unix:///tmp/sock",
            "unix-abstract:name",
            "[::1]:50051",
            "example.com",
        ] {
            validate_target(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        }
    }

    #[test]
    fn malformed_targets_are_named() {
        for t in ["", " ", "host:port", "host:99999", "ipv4:1.2.3:80", "ipv4:1.2.3.4", "ipv6:::1", "unix:", ":80", "a b:1", "[::1:80"] {
            let err = validate_target(t).unwrap_err().to_string();
            assert!(err.contains("invalid channel target"), "{t}: {err}");
        }
    }
}
