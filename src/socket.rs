//! Sockets the application owns: connected sockets whose ownership moves into grpcore (a
//! channel over a socket, a connection handed to a server) and the few system calls the
//! owned listener needs (peek, peer credentials, epoll, systemd's `LISTEN_FDS`).
//!
//! This module and `grpc_posix.h`'s two calls in [`server`](crate::Server) and
//! [`channel`](crate::ChannelBuilder) are the only places that touch raw file descriptors;
//! every `unsafe` block here is a plain system call on a descriptor a Rust owner holds.
//!
//! The 1.51 core takes only insecure credentials on a socket it did not open itself
//! (`grpc_channel_create_from_fd`, `grpc_server_add_channel_from_fd`): that is why no API
//! here accepts TLS credentials. Serve TLS on ports the core binds itself
//! ([`ServerBuilder::bind_with_credentials`](crate::ServerBuilder::bind_with_credentials)),
//! or terminate it in front of grpcore; unix sockets are the usual reason to own a socket.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::Error;

/// A connected stream socket (TCP or unix) whose ownership moves into grpcore: a channel
/// made over it ([`ChannelBuilder::connect_socket`](crate::ChannelBuilder::connect_socket))
/// or a server connection ([`Server::add_connection`](crate::Server::add_connection)) closes
/// it when it ends.
///
/// Made from a [`TcpStream`] or [`UnixStream`] (always connected), or checked from any
/// [`OwnedFd`] with [`Socket::from_fd`]:
///
/// ```
/// let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
/// let socket = grpcore::Socket::from(ours);
/// assert!(socket.peer().is_unix());
/// # drop(theirs);
/// ```
pub struct Socket {
    fd: OwnedFd,
    peer: Peer,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("fd", &self.fd.as_raw_fd()).field("peer", &self.peer).finish()
    }
}

/// The other end of a connection, as the listener or the socket saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A unix-socket peer, with the credentials the kernel recorded when it connected
    /// (`SO_PEERCRED`; `None` where the kernel gave none).
    Unix(Option<PeerCredentials>),
}

impl Peer {
    /// Whether the peer is on a unix socket.
    pub fn is_unix(&self) -> bool {
        matches!(self, Peer::Unix(_))
    }

    /// The peer's IP address, for TCP peers.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Peer::Tcp(a) => Some(a.ip()),
            Peer::Unix(_) => None,
        }
    }

    /// The peer in the core's own notation, as
    /// [`ServerContext::peer`](crate::ServerContext::peer) reports it for connections the
    /// core accepted itself: `ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`, `unix:`.
    pub fn to_core_string(&self) -> String {
        match self {
            Peer::Tcp(SocketAddr::V4(a)) => format!("ipv4:{a}"),
            Peer::Tcp(SocketAddr::V6(a)) => format!("ipv6:{a}"),
            Peer::Unix(_) => "unix:".to_string(),
        }
    }
}

/// A unix-socket peer's process credentials (`SO_PEERCRED`), taken when it connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    /// The peer's user id.
    pub uid: u32,
    /// The peer's group id.
    pub gid: u32,
    /// The peer's process id.
    pub pid: i32,
}

impl From<TcpStream> for Socket {
    fn from(stream: TcpStream) -> Socket {
        // A connection the peer already reset has no address left: it stays a TCP socket
        // (for TCP_NODELAY and `Connection::into_tcp`), with the unspecified address.
        let addr = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Socket { fd: stream.into(), peer: Peer::Tcp(addr) }
    }
}

impl From<UnixStream> for Socket {
    fn from(stream: UnixStream) -> Socket {
        let peer = Peer::Unix(peer_credentials(stream.as_raw_fd()));
        Socket { fd: stream.into(), peer }
    }
}

impl Socket {
    /// Takes `fd` if it is a connected stream socket (TCP over IPv4 or IPv6, or unix);
    /// anything else (a file, a pipe, a datagram or listening socket, a socket not
    /// connected) is an [`Error::Config`] saying what it is, and `fd` is closed.
    pub fn from_fd(fd: OwnedFd) -> Result<Socket, Error> {
        let raw = fd.as_raw_fd();
        let bad = |why: String| Err(Error::config(format!("file descriptor {raw} cannot carry gRPC: {why}")));
        let ty = match sockopt_int(raw, libc::SOL_SOCKET, libc::SO_TYPE) {
            Ok(ty) => ty,
            Err(e) => return bad(format!("it is not a socket ({e})")),
        };
        if ty != libc::SOCK_STREAM {
            return bad(format!("it is not a stream socket (SO_TYPE {ty})"));
        }
        if sockopt_int(raw, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).ok() == Some(1) {
            return bad("it is a listening socket, not a connection (give it to grpcore::Listener)".into());
        }
        match socket_family(raw) {
            Ok(libc::AF_INET | libc::AF_INET6) => {
                let stream = TcpStream::from(fd);
                match stream.peer_addr() {
                    Ok(a) => Ok(Socket { fd: stream.into(), peer: Peer::Tcp(a) }),
                    Err(e) => bad(format!("it is not connected ({e})")),
                }
            }
            Ok(libc::AF_UNIX) => {
                let stream = UnixStream::from(fd);
                if let Err(e) = stream.peer_addr() {
                    return bad(format!("it is not connected ({e})"));
                }
                Ok(Socket::from(stream))
            }
            Ok(family) => bad(format!("address family {family} is neither IP nor unix")),
            Err(e) => bad(format!("getsockname failed ({e})")),
        }
    }

    /// The other end of the connection.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Makes the socket ready for the core (non-blocking, and `TCP_NODELAY` on TCP as the
    /// core sets on connections it accepts) and gives up ownership of the descriptor: the
    /// core closes it when the connection ends.
    pub(crate) fn into_core_fd(self) -> Result<RawFd, Error> {
        let fd = self.fd.as_raw_fd();
        set_nonblocking(fd, true).map_err(|e| Error::config(format!("could not make socket {fd} non-blocking: {e}")))?;
        if matches!(self.peer, Peer::Tcp(_)) {
            // Best effort: a failure only costs latency.
            let _ = set_sockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        }
        Ok(self.fd.into_raw_fd())
    }

    /// A second descriptor for the same connection, to watch it end
    /// ([`Interest::Closed`]).
    pub(crate) fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<Socket> for OwnedFd {
    fn from(socket: Socket) -> OwnedFd {
        socket.fd
    }
}

/// The peers of the connections grpcore handed to the core, by descriptor number.
///
/// The core names such a connection's peer `fd:N` (N the descriptor it was given); this
/// table turns that back into the address (and, on unix sockets, the credentials) the
/// listener or the socket saw. An entry lives from the hand-over until grpcore sees the
/// connection end; a generation number keeps a late removal from taking out the entry of
/// a newer connection that got the same descriptor number.
struct PeerTable {
    next_generation: u64,
    peers: std::collections::HashMap<RawFd, (u64, Peer)>,
}

static PEERS: std::sync::Mutex<Option<PeerTable>> = std::sync::Mutex::new(None);

/// Records `peer` for descriptor `fd`; returns the entry's generation.
pub(crate) fn remember_peer(fd: RawFd, peer: Peer) -> u64 {
    let mut guard = PEERS.lock().unwrap_or_else(|e| e.into_inner());
    let table = guard.get_or_insert_with(|| PeerTable { next_generation: 1, peers: Default::default() });
    let generation = table.next_generation;
    table.next_generation += 1;
    table.peers.insert(fd, (generation, peer));
    generation
}

/// Removes the entry of `fd` if it is still generation `generation`.
pub(crate) fn forget_peer(fd: RawFd, generation: u64) {
    let mut guard = PEERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(table) = guard.as_mut() {
        if table.peers.get(&fd).is_some_and(|(g, _)| *g == generation) {
            table.peers.remove(&fd);
        }
    }
}

/// The peer of a connection the core names `fd:N`, if grpcore handed it over and it is
/// still open.
pub(crate) fn peer_of_core_name(core_peer: &str) -> Option<Peer> {
    let fd: RawFd = core_peer.strip_prefix("fd:")?.parse().ok()?;
    let guard = PEERS.lock().unwrap_or_else(|e| e.into_inner());
    guard.as_ref()?.peers.get(&fd).map(|(_, p)| p.clone())
}

/// The peer name to show for a server call whose core peer name is `core`: the address
/// grpcore accepted the connection from where the core says only `fd:N`.
pub(crate) fn display_peer(core: String) -> String {
    match peer_of_core_name(&core) {
        Some(peer) => peer.to_core_string(),
        None => core,
    }
}

/// The unix credentials of the client of a server call whose core peer name is `core`.
pub(crate) fn credentials_of(core: &str) -> Option<PeerCredentials> {
    match peer_of_core_name(core)? {
        Peer::Unix(creds) => creds,
        Peer::Tcp(_) => None,
    }
}

/// Reads an integer socket option.
fn sockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes given; a bad fd is an error
    // return, not undefined behaviour.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut libc::c_int).cast(), &mut len) };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets an integer socket option.
fn set_sockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is valid for reads of the size given.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, (&value as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The address family of a socket (`AF_INET`, `AF_UNIX`, ...).
fn socket_family(fd: RawFd) -> io::Result<libc::c_int> {
    // SAFETY: an all-zero sockaddr_storage is a valid value of this plain C struct.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `addr` is large enough for any address and `len` says how large.
    let rc = unsafe { libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_storage).cast(), &mut len) };
    if rc == 0 {
        Ok(addr.ss_family as libc::c_int)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets or clears `O_NONBLOCK`.
fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor the caller holds; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        if libc::fcntl(fd, libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The credentials of a unix-socket peer (`SO_PEERCRED`).
pub(crate) fn peer_credentials(fd: RawFd) -> Option<PeerCredentials> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the size given.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len) };
    (rc == 0 && len as usize == std::mem::size_of::<libc::ucred>()).then_some(PeerCredentials {
        uid: cred.uid,
        gid: cred.gid,
        pid: cred.pid,
    })
}

/// Copies up to `buf.len()` bytes the peer has sent without consuming them, without
/// blocking: `Ok(0)` is the peer's end of stream, `WouldBlock` means nothing has arrived.
pub(crate) fn peek(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// An epoll instance: the listener's one way to wait on its listening socket, the
/// connections it is sniffing, and the connections it watches for their end.
pub(crate) struct Poller {
    epoll: OwnedFd,
}

/// What [`Poller::add`] asks to be told about.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Interest {
    /// Readable, level-triggered (a listening socket, a wake-up socket).
    Readable,
    /// Each arrival of new data, edge-triggered: a sniffed connection whose peeked bytes
    /// stay in the socket must not wake the poller again until more arrive.
    NewData,
    /// Only the connection's end (`EPOLLHUP`, reported whatever the interest).
    Closed,
}

impl Poller {
    /// A new epoll instance.
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: plain constructor; the descriptor is owned at once.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1 and nothing else owns it.
        Ok(Poller { epoll: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Watches `fd` (which the caller keeps open until [`remove`](Self::remove)) with `token`.
    pub(crate) fn add(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let events = match interest {
            Interest::Readable => libc::EPOLLIN,
            Interest::NewData => libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET,
            Interest::Closed => 0,
        };
        let mut event = libc::epoll_event { events: events as u32, u64: token };
        // SAFETY: `event` is valid for reads; a bad fd is an error return.
        let rc = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Stops watching `fd` (before it is closed or handed on).
    pub(crate) fn remove(&self, fd: RawFd) {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL (Linux >= 2.6.9).
        unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }

    /// Waits up to `timeout` (`None`: forever) and fills `events` with (token, hung up).
    pub(crate) fn wait(&self, events: &mut Vec<(u64, bool)>, timeout: Option<Duration>) -> io::Result<()> {
        const MAX: usize = 256;
        let mut raw = [libc::epoll_event { events: 0, u64: 0 }; MAX];
        let ms = match timeout {
            None => -1,
            // Rounded up, so a deadline is never polled a millisecond early in a busy loop.
            Some(t) => t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
        };
        // SAFETY: `raw` is valid for writes of MAX events.
        let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), raw.as_mut_ptr(), MAX as libc::c_int, ms) };
        events.clear();
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
        }
        for e in &raw[..n as usize] {
            let hup = e.events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
            events.push((e.u64, hup));
        }
        Ok(())
    }
}

/// A listening socket grpcore accepts on.
#[derive(Debug)]
pub(crate) enum ListenSocket {
    /// TCP, IPv4 or IPv6.
    Tcp(TcpListener),
    /// A unix socket.
    Unix(UnixListener),
}

impl ListenSocket {
    pub(crate) fn raw_fd(&self) -> RawFd {
        match self {
            ListenSocket::Tcp(l) => l.as_raw_fd(),
            ListenSocket::Unix(l) => l.as_raw_fd(),
        }
    }

    pub(crate) fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            ListenSocket::Tcp(l) => l.set_nonblocking(true),
            ListenSocket::Unix(l) => l.set_nonblocking(true),
        }
    }

    /// The TCP port, or 0 for a unix socket.
    pub(crate) fn port(&self) -> u16 {
        match self {
            ListenSocket::Tcp(l) => l.local_addr().map_or(0, |a| a.port()),
            ListenSocket::Unix(_) => 0,
        }
    }

    /// Where the socket listens, for messages and [`Server::bound_ports`](crate::Server::bound_ports).
    pub(crate) fn describe(&self) -> String {
        match self {
            ListenSocket::Tcp(l) => l.local_addr().map_or_else(|_| "tcp:?".into(), |a| a.to_string()),
            ListenSocket::Unix(l) => match l.local_addr().ok().and_then(|a| a.as_pathname().map(|p| p.display().to_string())) {
                Some(path) => format!("unix:{path}"),
                None => "unix:(unnamed)".into(),
            },
        }
    }

    /// Accepts one connection without blocking (`WouldBlock` when none is waiting). The
    /// accepted socket is blocking, as the accept call made it.
    pub(crate) fn accept(&self) -> io::Result<Socket> {
        match self {
            ListenSocket::Tcp(l) => {
                let (stream, addr) = l.accept()?;
                Ok(Socket { fd: stream.into(), peer: Peer::Tcp(addr) })
            }
            ListenSocket::Unix(l) => l.accept().map(|(stream, _)| Socket::from(stream)),
        }
    }
}

/// Whether this process's `LISTEN_FDS` have been taken (they can be only once).
static SYSTEMD_FDS_TAKEN: AtomicBool = AtomicBool::new(false);

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Takes the listening sockets systemd (or any socket-activation launcher) passed to this
/// process: `LISTEN_PID` must be this process, `LISTEN_FDS` says how many descriptors from
/// 3 on, `LISTEN_FDNAMES` optionally names them. The variables are removed so child
/// processes do not take them too; a second call is an error.
pub(crate) fn systemd_listeners() -> Result<Vec<(ListenSocket, Option<String>)>, Error> {
    let var = |name: &str| std::env::var(name).ok();
    let (Some(pid), Some(count)) = (var("LISTEN_PID"), var("LISTEN_FDS")) else {
        return Err(Error::Config(
            "no sockets were passed to this process: LISTEN_PID and LISTEN_FDS are not set (is it started by a systemd .socket unit?)".into(),
        ));
    };
    if pid.trim() != std::process::id().to_string() {
        return Err(Error::config(format!(
            "LISTEN_PID is {pid} but this process is {}: the sockets were meant for another process",
            std::process::id()
        )));
    }
    let count: RawFd = count
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=1024).contains(n))
        .ok_or_else(|| Error::config(format!("LISTEN_FDS is {count:?}, not a count of descriptors")))?;
    let names: Vec<String> = var("LISTEN_FDNAMES").map(|n| n.split(':').map(String::from).collect()).unwrap_or_default();
    if SYSTEMD_FDS_TAKEN.swap(true, Ordering::AcqRel) {
        return Err(Error::Config("the sockets in LISTEN_FDS were already taken by this process".into()));
    }
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let mut sockets = Vec::new();
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + count {
        let bad = |why: String| Error::config(format!("LISTEN_FDS descriptor {fd}: {why}"));
        // SAFETY: F_GETFD only reads the descriptor's flags (fails with EBADF if it is not open).
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            // Not ours to own: an `OwnedFd` of a closed descriptor would close whatever
            // takes that number later.
            return Err(bad(format!("not open ({})", std::io::Error::last_os_error())));
        }
        // SAFETY: the launcher passed descriptors 3..3+LISTEN_FDS to this process (LISTEN_PID
        // checked above) for it to own, SYSTEMD_FDS_TAKEN makes sure they are taken once, and
        // this one is open.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: FD_CLOEXEC on a descriptor we now own, so children do not inherit it.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        if sockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).map_err(|e| bad(format!("not a socket ({e})")))? != 1 {
            return Err(bad("not a listening socket (a socket unit with Accept=no passes listening sockets)".into()));
        }
        let socket = match socket_family(fd).map_err(|e| bad(e.to_string()))? {
            libc::AF_INET | libc::AF_INET6 => ListenSocket::Tcp(TcpListener::from(owned)),
            libc::AF_UNIX => ListenSocket::Unix(UnixListener::from(owned)),
            other => return Err(bad(format!("address family {other} is neither IP nor unix"))),
        };
        sockets.push((socket, names.get((fd - LISTEN_FDS_START) as usize).cloned()));
    }
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connected_stream_sockets_are_taken() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let err = Socket::from_fd(file.into()).unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let err = Socket::from_fd(listener.try_clone().unwrap().into()).unwrap_err().to_string();
        assert!(err.contains("listening socket"), "{err}");

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = Socket::from_fd(udp.into()).unwrap_err().to_string();
        assert!(err.contains("not a stream socket"), "{err}");

        let (a, _b) = UnixStream::pair().unwrap();
        let socket = Socket::from_fd(a.into()).unwrap();
        let Peer::Unix(Some(creds)) = socket.peer() else { panic!("{:?}", socket.peer()) };
        // SAFETY: plain getters.
        assert_eq!((creds.uid, creds.pid), (unsafe { libc::getuid() }, std::process::id() as i32));

        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let socket = Socket::from_fd(client.into()).unwrap();
        assert_eq!(socket.peer(), &Peer::Tcp(listener.local_addr().unwrap()));
        assert!(socket.peer().to_core_string().starts_with("ipv4:127.0.0.1:"));
    }

    #[test]
    fn peek_leaves_the_bytes_in_the_socket() {
        use std::io::{Read, Write};
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(peek(&b, &mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        a.write_all(b"hello").unwrap();
        assert_eq!(peek(&b, &mut buf).unwrap(), 5);
        let mut all = [0u8; 5];
        b.read_exact(&mut all).unwrap();
        assert_eq!(&all, b"hello");
        drop(a);
        assert_eq!(peek(&b, &mut buf).unwrap(), 0);
    }

    #[test]
    fn edge_triggered_interest_wakes_once_per_arrival() {
        use std::io::Write;
        let poller = Poller::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        poller.add(b.as_raw_fd(), 7, Interest::NewData).unwrap();
        let mut events = Vec::new();
        a.write_all(b"x").unwrap();
        poller.wait(&mut events, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(events, vec![(7, false)]);
        // The byte is still unread, but nothing new came: no second wake-up.
        poller.wait(&mut events, Some(Duration::from_millis(20))).unwrap();
        assert!(events.is_empty());
        a.write_all(b"y").unwrap();
        poller.wait(&mut events, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(events, vec![(7, false)]);
        poller.remove(b.as_raw_fd());
    }

    #[test]
    fn a_closed_watch_sees_the_local_shutdown_of_another_descriptor() {
        let poller = Poller::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let watch = a.try_clone().unwrap();
        poller.add(watch.as_raw_fd(), 1, Interest::Closed).unwrap();
        let mut events = Vec::new();
        poller.wait(&mut events, Some(Duration::from_millis(20))).unwrap();
        assert!(events.is_empty());
        // What the core does when a connection ends: shutdown, then close its descriptor.
        a.shutdown(std::net::Shutdown::Both).unwrap();
        drop(a);
        poller.wait(&mut events, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(events, vec![(1, true)]);
    }
}
