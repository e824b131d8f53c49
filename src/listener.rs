//! Listeners the application owns: a listening socket grpcore accepts on itself, instead of
//! one the core binds, for three things the core cannot do:
//!
//! - **socket activation**: serve on the sockets systemd passed ([`Listener::from_systemd`]);
//! - **one port, several protocols**: peek at each connection's first bytes without
//!   consuming them, give HTTP/2 (gRPC) connections to the core and the others to your
//!   handlers ([`Listener::serve_other`]), e.g. plain HTTP/1.1 for `/healthz` and
//!   `/metrics`, or another RPC protocol during a migration;
//! - **accept-time limits**: most connections at once, most per client IP.
//!
//! ```no_run
//! use grpcore::listener::{Connection, Listener, Protocol};
//! use std::io::Write;
//! # let env = grpcore::Environment::new(1);
//! let listener = Listener::bind("127.0.0.1:8080")?
//!     .max_connections(10_000)
//!     .max_connections_per_ip(100)
//!     .serve_other(Protocol::http1(), |conn: Connection| {
//!         // Runs on the listener's thread: hand the connection on at once.
//!         std::thread::spawn(move || {
//!             let mut stream = conn.into_tcp().unwrap();
//!             let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
//!         });
//!     });
//! let server = grpcore::ServerBuilder::new(&env).listener(listener).build()?;
//! # Ok::<(), grpcore::Error>(())
//! ```
//!
//! How a connection goes: the listener's thread accepts it; a connection over the limits
//! is closed at once (its client sees the connection reset and fails with `UNAVAILABLE`,
//! rather than waiting in the kernel's backlog). Without [`serve_other`](Listener::serve_other)
//! every connection goes straight to the core. With it, the connection waits in the sniff
//! stage until its first bytes arrive: the HTTP/2 client preface
//! (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, which every plaintext gRPC client sends first) sends
//! it to the core, a protocol's matcher to that protocol's handler, anything else is
//! closed. A client that sends nothing, or too little to decide, is closed after the
//! [sniff timeout](Listener::sniff_timeout); at most [`max_sniffing`](Listener::max_sniffing)
//! connections wait at once, and while the stage is full the listener stops accepting (the
//! kernel's backlog holds the rest), so silent clients can delay others by at most one
//! sniff timeout and can never grow memory without bound.
//!
//! Once the core has a connection, it costs a call exactly what a connection the core
//! accepted itself costs: the bytes were only peeked, and the listener's thread is not on
//! the call's path (it only waits for the connection's end, to keep the counts).
//!
//! TLS: the 1.51 core accepts only plaintext on a socket it did not accept itself, so an
//! owned listener serves plaintext (TCP or unix); a [`Listener`] has no credentials to set.
//! Serve TLS on a port the core binds
//! ([`ServerBuilder::bind_with_credentials`](crate::ServerBuilder::bind_with_credentials),
//! possibly beside the listener on the same server), or terminate TLS in front of grpcore.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::server::ServerInner;
use crate::socket::{self, Interest, ListenSocket, Peer, Poller, Socket};

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How many bytes the sniff stage peeks at most (matchers see at most this many).
const SNIFF_BYTES: usize = 64;
/// Default for [`Listener::sniff_timeout`].
const DEFAULT_SNIFF_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`Listener::max_sniffing`].
const DEFAULT_MAX_SNIFFING: usize = 1024;

/// A listening socket grpcore accepts on (see the [module docs](self)). Give it to
/// [`ServerBuilder::listener`](crate::ServerBuilder::listener).
pub struct Listener {
    pub(crate) socket: ListenSocket,
    name: Option<String>,
    max_connections: Option<usize>,
    max_per_ip: Option<usize>,
    routes: Vec<Route>,
    sniff_timeout: Duration,
    max_sniffing: usize,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("socket", &self.socket.describe())
            .field("name", &self.name)
            .field("max_connections", &self.max_connections)
            .field("max_per_ip", &self.max_per_ip)
            .field("protocols", &self.routes.iter().map(|r| &r.protocol.name).collect::<Vec<_>>())
            .finish()
    }
}

/// A connection a protocol's handler claimed ([`Listener::serve_other`]). Its first bytes
/// are still unread in the socket.
pub struct Connection {
    socket: Socket,
    protocol: Arc<str>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").field("socket", &self.socket).field("protocol", &self.protocol).finish()
    }
}

impl Connection {
    /// The client.
    pub fn peer(&self) -> &Peer {
        self.socket.peer()
    }

    /// The name of the [`Protocol`] that matched.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The connection as a (blocking) TCP stream; a unix connection is handed back.
    pub fn into_tcp(self) -> Result<TcpStream, Connection> {
        match self.socket.peer() {
            Peer::Tcp(_) => Ok(TcpStream::from(OwnedFd::from(self.socket))),
            Peer::Unix(_) => Err(self),
        }
    }

    /// The connection as a (blocking) unix stream; a TCP connection is handed back.
    pub fn into_unix(self) -> Result<UnixStream, Connection> {
        match self.socket.peer() {
            Peer::Unix(_) => Ok(UnixStream::from(OwnedFd::from(self.socket))),
            Peer::Tcp(_) => Err(self),
        }
    }
}

/// What a [`Protocol`]'s matcher says of the bytes a connection has sent so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    /// This protocol: its handler gets the connection.
    Match,
    /// Not this protocol.
    NoMatch,
    /// Too few bytes to tell: wait for more (within the sniff timeout).
    NeedMore,
}

impl Sniff {
    /// Whether `bytes` start with `prefix` (`NeedMore` while they are a shorter prefix of it).
    pub fn prefix(bytes: &[u8], prefix: &[u8]) -> Sniff {
        if bytes.starts_with(prefix) {
            Sniff::Match
        } else if prefix.starts_with(bytes) {
            Sniff::NeedMore
        } else {
            Sniff::NoMatch
        }
    }
}

/// A protocol served beside gRPC on an owned listener: a name and a matcher that looks at
/// a connection's first bytes (at most 64).
#[derive(Clone)]
pub struct Protocol {
    name: Arc<str>,
    matcher: Matcher,
}

/// A protocol's test of a connection's first bytes.
type Matcher = Arc<dyn Fn(&[u8]) -> Sniff + Send + Sync>;

impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Protocol").field("name", &self.name).finish()
    }
}

/// HTTP/1.x request methods ([`Protocol::http1`]).
const HTTP1_METHODS: [&[u8]; 9] =
    [b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"TRACE ", b"CONNECT "];

impl Protocol {
    /// HTTP/1.x: a request line starting with a standard method (`GET `, `POST `, ...).
    /// HTTP/2's preface (`PRI * ...`) never matches it.
    pub fn http1() -> Protocol {
        Protocol::custom("http/1.1", |bytes| {
            let mut need_more = false;
            for method in HTTP1_METHODS {
                match Sniff::prefix(bytes, method) {
                    Sniff::Match => return Sniff::Match,
                    Sniff::NeedMore => need_more = true,
                    Sniff::NoMatch => {}
                }
            }
            if need_more {
                Sniff::NeedMore
            } else {
                Sniff::NoMatch
            }
        })
    }

    /// Connections whose first bytes are `prefix` (at most 64 bytes), e.g. another RPC
    /// protocol's own header.
    pub fn prefix(name: &str, prefix: &[u8]) -> Protocol {
        let prefix: Vec<u8> = prefix.iter().copied().take(SNIFF_BYTES).collect();
        Protocol::custom(name, move |bytes| Sniff::prefix(bytes, &prefix))
    }

    /// A protocol told by `matcher`, which sees the bytes received so far (at least one,
    /// at most 64; more on each call). It runs on the listener's thread: keep it quick. A
    /// matcher still answering `NeedMore` at 64 bytes counts as `NoMatch`.
    pub fn custom(name: &str, matcher: impl Fn(&[u8]) -> Sniff + Send + Sync + 'static) -> Protocol {
        Protocol { name: name.into(), matcher: Arc::new(matcher) }
    }

    /// The protocol's name ([`Connection::protocol`]).
    pub fn name(&self) -> &str {
        &self.name
    }
}

struct Route {
    protocol: Protocol,
    handler: Box<dyn Fn(Connection) + Send + Sync>,
}

impl Listener {
    /// Accepts on `listener` (TCP).
    pub fn tcp(listener: TcpListener) -> Listener {
        Listener::new(ListenSocket::Tcp(listener), None)
    }

    /// Accepts on `listener` (a unix socket). Connections carry the client's uid, gid and
    /// pid ([`Peer::Unix`]).
    pub fn unix(listener: UnixListener) -> Listener {
        Listener::new(ListenSocket::Unix(listener), None)
    }

    /// Binds a TCP listener on `addr` (port 0 picks a free one).
    pub fn bind(addr: impl ToSocketAddrs + fmt::Debug) -> Result<Listener, Error> {
        TcpListener::bind(&addr)
            .map(Listener::tcp)
            .map_err(|e| Error::config_kind(crate::error::ConfigErrorKind::Bind, format!("could not listen on {addr:?}: {e}")))
    }

    /// The listening sockets systemd passed to this process (socket activation: a `.socket`
    /// unit with `Accept=no`; any launcher that sets `LISTEN_PID` and `LISTEN_FDS` the
    /// same way works). Each keeps the name `LISTEN_FDNAMES` gave it
    /// ([`name`](Self::name)). The environment variables are removed so child processes
    /// do not see them; a second call fails.
    ///
    /// Fails with an [`Error::Config`] saying why when the variables are missing, name
    /// another process, or a descriptor is not a listening TCP or unix socket.
    pub fn from_systemd() -> Result<Vec<Listener>, Error> {
        Ok(socket::systemd_listeners()?.into_iter().map(|(s, name)| Listener::new(s, name)).collect())
    }

    fn new(socket: ListenSocket, name: Option<String>) -> Listener {
        Listener {
            socket,
            name,
            max_connections: None,
            max_per_ip: None,
            routes: Vec::new(),
            sniff_timeout: DEFAULT_SNIFF_TIMEOUT,
            max_sniffing: DEFAULT_MAX_SNIFFING,
        }
    }

    /// The name systemd gave the socket (`FileDescriptorName=` in the unit), if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The TCP port the listener is bound to (0 for a unix socket).
    pub fn port(&self) -> u16 {
        self.socket.port()
    }

    /// Most connections open at once through this listener (in the sniff stage or served
    /// by the core; connections given to [`serve_other`](Self::serve_other) handlers are
    /// theirs and not counted). One more is closed as soon as it is accepted. Default: no
    /// limit.
    pub fn max_connections(mut self, max: usize) -> Listener {
        self.max_connections = Some(max);
        self
    }

    /// Most connections open at once from one IP address (counted as in
    /// [`max_connections`](Self::max_connections); unix-socket clients are not limited by
    /// this). Default: no limit.
    pub fn max_connections_per_ip(mut self, max: usize) -> Listener {
        self.max_per_ip = Some(max);
        self
    }

    /// Serves connections that start like `protocol` with `handler` instead of the core.
    /// Protocols are tried in the order they were added, after HTTP/2. The handler runs on
    /// the listener's thread and owns the connection: hand it to a thread or a runtime at
    /// once (the listener accepts nothing while it runs).
    pub fn serve_other(mut self, protocol: Protocol, handler: impl Fn(Connection) + Send + Sync + 'static) -> Listener {
        self.routes.push(Route { protocol, handler: Box::new(handler) });
        self
    }

    /// How long a connection may take to send enough bytes to tell its protocol before it
    /// is closed (only with [`serve_other`](Self::serve_other)). Default: 5 s.
    pub fn sniff_timeout(mut self, timeout: Duration) -> Listener {
        self.sniff_timeout = timeout;
        self
    }

    /// Most connections waiting in the sniff stage at once (at least 1); while it is full
    /// the listener accepts nothing. Default: 1024.
    pub fn max_sniffing(mut self, max: usize) -> Listener {
        self.max_sniffing = max.max(1);
        self
    }

    /// Starts the listener's thread, handing connections to `server`.
    pub(crate) fn start(self, server: Arc<ServerInner>) -> Result<RunningListener, Error> {
        let describe = self.socket.describe();
        let fail = |what: &str, e: io::Error| Error::config(format!("listener {describe}: {what}: {e}"));
        self.socket.set_nonblocking().map_err(|e| fail("cannot make it non-blocking", e))?;
        let poller = Poller::new().map_err(|e| fail("epoll_create1", e))?;
        let (wake_tx, wake_rx) = UnixStream::pair().map_err(|e| fail("socketpair", e))?;
        wake_rx.set_nonblocking(true).map_err(|e| fail("wake socket", e))?;
        poller.add(wake_rx.as_raw_fd(), WAKE, Interest::Readable).map_err(|e| fail("epoll_ctl", e))?;
        poller.add(self.socket.raw_fd(), LISTEN, Interest::Readable).map_err(|e| fail("epoll_ctl", e))?;
        let stats = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let port = self.socket.port();
        let mut state = Accepting {
            listener: self,
            server,
            poller,
            wake: wake_rx,
            stop: stop.clone(),
            stats: stats.clone(),
            sniffing: HashMap::new(),
            open: HashMap::new(),
            per_ip: HashMap::new(),
            next_token: FIRST_TOKEN,
            listening: true,
            paused_until: None,
        };
        let thread = std::thread::Builder::new()
            .name("grpcore-listener".into())
            .spawn(move || state.run())
            .map_err(|e| fail("cannot start its thread", e))?;
        Ok(RunningListener { describe, port, stop, wake: wake_tx, stats, thread: Some(thread) })
    }
}

/// Counts of what a listener did with the connections it accepted
/// ([`Server::listener_stats`](crate::Server::listener_stats)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerStats {
    /// Where the listener listens (`127.0.0.1:8080`, `unix:/run/app.sock`).
    pub address: String,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections handed to the core (gRPC).
    pub to_core: u64,
    /// Connections handed to [`serve_other`](Listener::serve_other) handlers.
    pub to_handlers: u64,
    /// Connections closed because [`max_connections`](Listener::max_connections) were open.
    pub refused_max_connections: u64,
    /// Connections closed because their IP had
    /// [`max_connections_per_ip`](Listener::max_connections_per_ip) open.
    pub refused_per_ip: u64,
    /// Connections closed because they did not tell their protocol within the sniff timeout.
    pub sniff_timeouts: u64,
    /// Connections closed because their first bytes matched no protocol.
    pub unrecognized: u64,
    /// Connections that closed before sending anything.
    pub closed_while_sniffing: u64,
    /// Connections open now: in the sniff stage or served by the core.
    pub open: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    to_core: AtomicU64,
    to_handlers: AtomicU64,
    refused_max_connections: AtomicU64,
    refused_per_ip: AtomicU64,
    sniff_timeouts: AtomicU64,
    unrecognized: AtomicU64,
    closed_while_sniffing: AtomicU64,
    open: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A started listener, owned by its server.
pub(crate) struct RunningListener {
    describe: String,
    port: u16,
    stop: Arc<AtomicBool>,
    wake: UnixStream,
    stats: Arc<Counters>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for RunningListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningListener").field("address", &self.describe).finish_non_exhaustive()
    }
}

impl RunningListener {
    /// Where it listens and its TCP port (for `Server::bound_ports`).
    pub(crate) fn address(&self) -> (String, u16) {
        (self.describe.clone(), self.port)
    }

    pub(crate) fn stats(&self) -> ListenerStats {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ListenerStats {
            address: self.describe.clone(),
            accepted: get(&s.accepted),
            to_core: get(&s.to_core),
            to_handlers: get(&s.to_handlers),
            refused_max_connections: get(&s.refused_max_connections),
            refused_per_ip: get(&s.refused_per_ip),
            sniff_timeouts: get(&s.sniff_timeouts),
            unrecognized: get(&s.unrecognized),
            closed_while_sniffing: get(&s.closed_while_sniffing),
            open: get(&s.open),
        }
    }

    /// Stops accepting: the thread closes the listening socket and the connections still
    /// being sniffed, and exits. Connections the core has stay the core's.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = (&self.wake).write(&[1]);
        if let Some(thread) = self.thread.take() {
            // Not joined when stopped from the listener's own thread (a handler that
            // dropped the last server handle).
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for RunningListener {
    fn drop(&mut self) {
        self.stop();
    }
}

const WAKE: u64 = 0;
const LISTEN: u64 = 1;
const FIRST_TOKEN: u64 = 2;

/// A connection in the sniff stage.
struct Sniffing {
    socket: Socket,
    deadline: Instant,
}

/// A connection the core serves, watched for its end through a second descriptor.
struct Open {
    watch: OwnedFd,
    ip: Option<IpAddr>,
    fd: i32,
    generation: u64,
}

/// The listener thread's state.
struct Accepting {
    listener: Listener,
    server: Arc<ServerInner>,
    poller: Poller,
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    stats: Arc<Counters>,
    sniffing: HashMap<u64, Sniffing>,
    open: HashMap<u64, Open>,
    per_ip: HashMap<IpAddr, usize>,
    next_token: u64,
    /// Whether the listening socket is in the poller (not while the sniff stage is full).
    listening: bool,
    /// Accept paused after running out of descriptors, until then.
    paused_until: Option<Instant>,
}

impl Accepting {
    fn run(&mut self) {
        let mut events = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            let next = self.sniffing.values().map(|s| s.deadline).chain(self.paused_until).min();
            let timeout = next.map(|d| d.saturating_duration_since(now));
            if let Err(e) = self.poller.wait(&mut events, timeout) {
                log::error!("listener {}: epoll_wait failed, it stops accepting: {e}", self.listener.socket.describe());
                break;
            }
            for &(token, hup) in &events {
                match token {
                    WAKE => {
                        let mut buf = [0u8; 16];
                        while matches!(io::Read::read(&mut &self.wake, &mut buf), Ok(n) if n > 0) {}
                    }
                    LISTEN => self.accept_ready(),
                    t if self.sniffing.contains_key(&t) => self.sniff(t),
                    t if hup => self.closed(t),
                    _ => {}
                }
            }
            self.expire_sniffing();
            if self.paused_until.is_some_and(|t| t <= Instant::now()) {
                self.paused_until = None;
                self.resume_listening();
            }
        }
        self.shut();
    }

    fn accept_ready(&mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            if self.sniffing.len() >= self.listener.max_sniffing {
                self.pause_listening();
                return;
            }
            match self.listener.socket.accept() {
                Ok(socket) => self.admit(socket),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or memory: the connection stays in
                    // the backlog, and accepting again at once would only spin.
                    log::warn!("listener {}: accept failed, pausing 100 ms: {e}", self.listener.socket.describe());
                    self.paused_until = Some(Instant::now() + Duration::from_millis(100));
                    self.pause_listening();
                    return;
                }
            }
        }
    }

    fn pause_listening(&mut self) {
        if self.listening {
            self.poller.remove(self.listener.socket.raw_fd());
            self.listening = false;
        }
    }

    fn resume_listening(&mut self) {
        if !self.listening && self.paused_until.is_none() && self.sniffing.len() < self.listener.max_sniffing {
            match self.poller.add(self.listener.socket.raw_fd(), LISTEN, Interest::Readable) {
                Ok(()) => self.listening = true,
                Err(e) => log::error!("listener {}: cannot resume accepting: {e}", self.listener.socket.describe()),
            }
        }
    }

    /// Applies the connection limits, then sniffs or hands the connection to the core.
    fn admit(&mut self, socket: Socket) {
        bump(&self.stats.accepted);
        let open = self.sniffing.len() + self.open.len();
        if self.listener.max_connections.is_some_and(|max| open >= max) {
            bump(&self.stats.refused_max_connections);
            return; // dropping the socket closes it
        }
        let ip = socket.peer().ip();
        if let (Some(max), Some(ip)) = (self.listener.max_per_ip, ip) {
            if self.per_ip.get(&ip).copied().unwrap_or(0) >= max {
                bump(&self.stats.refused_per_ip);
                return;
            }
        }
        if let Some(ip) = ip {
            *self.per_ip.entry(ip).or_insert(0) += 1;
        }
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        if self.listener.routes.is_empty() {
            return self.hand_to_core(socket);
        }
        let token = self.token();
        if let Err(e) = self.poller.add(socket.as_raw_fd(), token, Interest::NewData) {
            log::warn!("listener {}: cannot watch a new connection: {e}", self.listener.socket.describe());
            return self.forget(ip);
        }
        let deadline = Instant::now() + self.listener.sniff_timeout;
        self.sniffing.insert(token, Sniffing { socket, deadline });
    }

    fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    /// A connection left the listener's count (closed, refused, or claimed by a handler).
    fn forget(&mut self, ip: Option<IpAddr>) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = ip {
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }

    /// Looks at what a sniffed connection has sent so far and decides where it goes.
    fn sniff(&mut self, token: u64) {
        let mut buf = [0u8; SNIFF_BYTES];
        let Some(s) = self.sniffing.get(&token) else { return };
        let verdict = match socket::peek(&s.socket, &mut buf) {
            Ok(0) => Verdict::Closed,
            Ok(n) => classify(&buf[..n], n == SNIFF_BYTES, &self.listener.routes),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Verdict::Wait,
            Err(_) => Verdict::Closed,
        };
        if let Verdict::Wait = verdict {
            return;
        }
        let Some(s) = self.sniffing.remove(&token) else { return };
        self.poller.remove(s.socket.as_raw_fd());
        if self.sniffing.len() < self.listener.max_sniffing {
            self.resume_listening();
        }
        let ip = s.socket.peer().ip();
        match verdict {
            Verdict::Wait => unreachable!("handled above"),
            Verdict::Core => self.hand_to_core(s.socket),
            Verdict::Route(i) => {
                bump(&self.stats.to_handlers);
                self.forget(ip);
                let route = &self.listener.routes[i];
                let conn = Connection { socket: s.socket, protocol: route.protocol.name.clone() };
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (route.handler)(conn))).is_err() {
                    log::error!("the {} handler of listener {} panicked", route.protocol.name, self.listener.socket.describe());
                }
            }
            Verdict::Unrecognized => {
                bump(&self.stats.unrecognized);
                self.forget(ip);
            }
            Verdict::Closed => {
                bump(&self.stats.closed_while_sniffing);
                self.forget(ip);
            }
        }
    }

    fn expire_sniffing(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self.sniffing.iter().filter(|(_, s)| s.deadline <= now).map(|(t, _)| *t).collect();
        for token in expired {
            if let Some(s) = self.sniffing.remove(&token) {
                self.poller.remove(s.socket.as_raw_fd());
                bump(&self.stats.sniff_timeouts);
                self.forget(s.socket.peer().ip());
            }
        }
        self.resume_listening();
    }

    /// Hands a connection to the core, keeping a second descriptor to see it end.
    fn hand_to_core(&mut self, socket: Socket) {
        let ip = socket.peer().ip();
        let watch = match socket.try_clone_fd() {
            Ok(w) => w,
            Err(e) => {
                log::warn!("listener {}: cannot watch a connection (dup: {e}); closing it", self.listener.socket.describe());
                return self.forget(ip);
            }
        };
        match self.server.add_socket(socket) {
            Ok((fd, generation)) => {
                bump(&self.stats.to_core);
                let token = self.token();
                if let Err(e) = self.poller.add(watch.as_raw_fd(), token, Interest::Closed) {
                    // Served, but its end cannot be seen: stop counting it now.
                    log::warn!("listener {}: cannot watch a connection: {e}", self.listener.socket.describe());
                    return self.forget(ip);
                }
                self.open.insert(token, Open { watch, ip, fd, generation });
            }
            Err(e) => {
                log::debug!("listener {}: connection not served: {e}", self.listener.socket.describe());
                self.forget(ip);
            }
        }
    }

    /// A connection the core served has ended (the core shut it down and closed it).
    fn closed(&mut self, token: u64) {
        if let Some(open) = self.open.remove(&token) {
            self.poller.remove(open.watch.as_raw_fd());
            socket::forget_peer(open.fd, open.generation);
            self.forget(open.ip);
        }
    }

    /// Stopping: closes the listening socket (when `self` drops) and the connections not
    /// yet handed on; the core's connections stay open until the server closes them.
    fn shut(&mut self) {
        let sniffing = std::mem::take(&mut self.sniffing);
        for s in sniffing.into_values() {
            self.forget(s.socket.peer().ip());
        }
        for (_, open) in std::mem::take(&mut self.open) {
            socket::forget_peer(open.fd, open.generation);
            self.forget(open.ip);
        }
    }
}

/// Where a sniffed connection goes.
enum Verdict {
    /// Not enough bytes yet.
    Wait,
    Core,
    Route(usize),
    Unrecognized,
    Closed,
}

/// Decides from the first bytes; `full` when no more bytes would be looked at.
fn classify(bytes: &[u8], full: bool, routes: &[Route]) -> Verdict {
    let mut need_more = false;
    match Sniff::prefix(bytes, H2_PREFACE) {
        Sniff::Match => return Verdict::Core,
        Sniff::NeedMore => need_more = true,
        Sniff::NoMatch => {}
    }
    for (i, route) in routes.iter().enumerate() {
        let matcher = &route.protocol.matcher;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| matcher(bytes))) {
            Ok(Sniff::Match) => return Verdict::Route(i),
            Ok(Sniff::NeedMore) => need_more = true,
            Ok(Sniff::NoMatch) => {}
            Err(_) => log::error!("the matcher of protocol {} panicked", route.protocol.name),
        }
    }
    if need_more && !full {
        Verdict::Wait
    } else {
        Verdict::Unrecognized
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<Route> {
        vec![
            Route { protocol: Protocol::http1(), handler: Box::new(|_| {}) },
            Route { protocol: Protocol::prefix("drpc", b"DRPC!"), handler: Box::new(|_| {}) },
        ]
    }

    fn verdict(bytes: &[u8]) -> &'static str {
        match classify(bytes, bytes.len() >= SNIFF_BYTES, &routes()) {
            Verdict::Wait => "wait",
            Verdict::Core => "core",
            Verdict::Route(0) => "http1",
            Verdict::Route(_) => "drpc",
            Verdict::Unrecognized => "unrecognized",
            Verdict::Closed => "closed",
        }
    }

    #[test]
    fn first_bytes_decide_the_protocol() {
        assert_eq!(verdict(H2_PREFACE), "core");
        assert_eq!(verdict(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04"), "core");
        assert_eq!(verdict(b"PRI * HTTP"), "wait");
        assert_eq!(verdict(b"P"), "wait"); // PRI, POST, PUT, PATCH
        assert_eq!(verdict(b"POST /x HTTP/1.1\r\n"), "http1");
        assert_eq!(verdict(b"GET "), "http1");
        assert_eq!(verdict(b"GE"), "wait");
        assert_eq!(verdict(b"DRPC!\x01"), "drpc");
        assert_eq!(verdict(b"DR"), "wait");
        assert_eq!(verdict(b"\x16\x03\x01\x02\x00"), "unrecognized"); // a TLS ClientHello
        assert_eq!(verdict(b"GARBAGE"), "unrecognized");
        assert_eq!(verdict(b"PRX"), "unrecognized");
        // A matcher that never decides cannot hold a connection past 64 bytes.
        let undecided = vec![Route { protocol: Protocol::custom("never", |_| Sniff::NeedMore), handler: Box::new(|_| {}) }];
        assert!(matches!(classify(&[b'x'; SNIFF_BYTES], true, &undecided), Verdict::Unrecognized));
        assert!(matches!(classify(b"x", false, &undecided), Verdict::Wait));
    }
}
