//! Method descriptions: what generated code (or a hand-written client) names a method by.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use crate::codec::{Codec, Coder};
use crate::deadline::DeadlinePolicy;

/// The four kinds of gRPC methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// One request, one response.
    Unary,
    /// A stream of requests, one response.
    ClientStreaming,
    /// One request, a stream of responses.
    ServerStreaming,
    /// Streams both ways.
    Duplex,
}

/// A method: its full path (`/package.Service/Method`), its kind, and the request and
/// response types with the codec that encodes them.
///
/// Descriptors are `const`-constructible, so generated code declares them as constants:
///
/// ```
/// use grpcore::{BytesCodec, Method};
/// const ECHO: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/demo.Echo/Echo");
/// assert_eq!(ECHO.path(), "/demo.Echo/Echo");
/// ```
pub struct Method<Req, Resp, C> {
    kind: MethodKind,
    path: Cow<'static, str>,
    deadline: Option<DeadlinePolicy>,
    _types: PhantomData<fn(Req, C) -> Resp>,
}

impl<Req, Resp, C> Method<Req, Resp, C> {
    /// A method of any kind with a static path.
    pub const fn new(kind: MethodKind, path: &'static str) -> Self {
        Method {
            kind,
            path: Cow::Borrowed(path),
            deadline: None,
            _types: PhantomData,
        }
    }

    /// A method whose path is known only at run time.
    pub fn with_path(kind: MethodKind, path: impl Into<String>) -> Self {
        Method {
            kind,
            path: Cow::Owned(path.into()),
            deadline: None,
            _types: PhantomData,
        }
    }

    /// A unary method.
    pub const fn unary(path: &'static str) -> Self {
        Method::new(MethodKind::Unary, path)
    }

    /// A client-streaming method.
    pub const fn client_streaming(path: &'static str) -> Self {
        Method::new(MethodKind::ClientStreaming, path)
    }

    /// A server-streaming method.
    pub const fn server_streaming(path: &'static str) -> Self {
        Method::new(MethodKind::ServerStreaming, path)
    }

    /// A bidirectional-streaming method.
    pub const fn duplex(path: &'static str) -> Self {
        Method::new(MethodKind::Duplex, path)
    }

    /// The full path, `/package.Service/Method`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The method's kind.
    pub fn kind(&self) -> MethodKind {
        self.kind
    }

    /// The same method with a [`DeadlinePolicy`]: calls made with this descriptor get its
    /// default timeout when they have no deadline, and a service that registers it checks
    /// arriving calls against it. grpcore-compiler sets it from the proto's
    /// `(grpcore.deadline)` options.
    ///
    /// ```
    /// use std::time::Duration;
    /// use grpcore::{BytesCodec, DeadlinePolicy, Method};
    /// const ECHO: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/demo.Echo/Echo")
    ///     .with_deadline_policy(DeadlinePolicy::new().with_default_timeout(Duration::from_secs(1)));
    /// assert_eq!(ECHO.deadline_policy().unwrap().default_timeout(), Some(Duration::from_secs(1)));
    /// ```
    pub const fn with_deadline_policy(mut self, policy: DeadlinePolicy) -> Self {
        self.deadline = Some(policy);
        self
    }

    /// The method's deadline policy, if it has one.
    pub fn deadline_policy(&self) -> Option<&DeadlinePolicy> {
        self.deadline.as_ref()
    }
}

impl<Req, Resp, C: Codec<Req> + Codec<Resp>> Method<Req, Resp, C> {
    /// The method with its codec taken out as functions: what calls and request builders
    /// keep, so their types name no codec.
    pub(crate) fn erase(&self) -> ErasedMethod<Req, Resp> {
        ErasedMethod {
            kind: self.kind,
            path: self.path.clone(),
            deadline: self.deadline,
            request: Coder::of::<C>(),
            response: Coder::of::<C>(),
        }
    }
}

/// A [`Method`] whose codec is carried as functions ([`Coder`]) instead of a type.
pub(crate) struct ErasedMethod<Req, Resp> {
    pub(crate) kind: MethodKind,
    pub(crate) path: Cow<'static, str>,
    pub(crate) deadline: Option<DeadlinePolicy>,
    pub(crate) request: Coder<Req>,
    pub(crate) response: Coder<Resp>,
}

impl<Req, Resp, C> Clone for Method<Req, Resp, C> {
    fn clone(&self) -> Self {
        Method {
            kind: self.kind,
            path: self.path.clone(),
            deadline: self.deadline,
            _types: PhantomData,
        }
    }
}

impl<Req, Resp, C> fmt::Debug for Method<Req, Resp, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Method")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("deadline", &self.deadline)
            .finish()
    }
}
