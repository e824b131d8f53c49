//! Listening: binds a server's addresses (each with its credentials) to the core's server,
//! and, when the core refuses one, probes the same socket to say why.
//!
//! The core only logs why `grpc_server_add_http2_port` failed; [`diagnose_bind`] asks the
//! operating system the same question (binding the unix socket or TCP address itself, then
//! releasing it) so the error a user gets names the cause: a missing directory, a port in
//! use, an address that does not resolve. This module owns every socket probe in the crate.
//! It never creates credentials (that is `credentials::server`) and never starts, stops or
//! destroys the server (that is the parent module).

use std::ffi::CString;

use grpcore_sys as ffi;

use crate::credentials::ServerCredentials;
use crate::error::{ConfigErrorKind, Error, InternalErrorKind};

/// The port of an address an xDS-enabled server will listen on once configured: the one
/// written in it, which must not be 0 (the Listener resource is named after the address).
fn deferred_port(addr: &str) -> Result<u16, Error> {
    let port = addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).unwrap_or(0);
    if port == 0 {
        return Err(Error::config_kind(
            ConfigErrorKind::Bind,
            format!("an xDS-enabled server needs an explicit port, not {addr:?}: its Listener resource is named after the address"),
        ));
    }
    Ok(port)
}

/// Binds `addr` on `server` with `creds` (insecure when `None`) and returns the port.
///
/// # Safety
/// `server` must be a live core server that has not been started.
pub(crate) unsafe fn add_port(server: *mut ffi::grpc_server, addr: &str, creds: Option<&ServerCredentials>) -> Result<u16, Error> {
    let c_addr = CString::new(addr).map_err(|_| Error::config_kind(ConfigErrorKind::Bind, format!("address {addr:?} contains a NUL byte")))?;
    crate::address::check_listen_address(addr)
        .map_err(|why| Error::config_kind(ConfigErrorKind::Bind, format!("cannot listen on {addr:?}: {why}")))?;
    let raw = match creds {
        Some(c) => c.create()?,
        None => ServerCredentials::insecure().create()?,
    };
    // SAFETY: the server is live and not started (caller's contract); the address string and
    // the credentials live across the call, and the core takes its own reference to them.
    let port = unsafe { ffi::grpc_server_add_http2_port(server, c_addr.as_ptr(), raw.as_ptr()) };
    drop(raw);
    if port == -1 {
        // Only with an xDS config fetcher (1.51): the address was accepted, but nothing is
        // bound until the control plane's Listener for it arrives, so the core knows no port.
        return deferred_port(addr);
    }
    if port <= 0 {
        return Err(Error::config_kind(ConfigErrorKind::Bind, format!("failed to listen on {addr:?}: {}", diagnose_bind(addr))));
    }
    u16::try_from(port).map_err(|_| Error::internal_kind(InternalErrorKind::Core, format!("the core bound {addr:?} to port {port}, which is not a port")))
}

/// Why the core could not listen on `addr`: the operating system's answer to the same bind
/// (the core only logs its reason), for unix sockets and IP addresses.
pub(crate) fn diagnose_bind(addr: &str) -> String {
    const GENERIC: &str = "the address is malformed, in use, or not permitted (the grpc_core log says why)";
    if let Some(rest) = addr.strip_prefix("unix:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return "the unix socket path is empty".into();
        }
        return match std::os::unix::net::UnixListener::bind(path) {
            Err(e) => {
                let parent = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty());
                let hint = match (e.kind(), parent) {
                    (std::io::ErrorKind::NotFound, Some(dir)) => format!(" (does the directory {} exist?)", dir.display()),
                    (std::io::ErrorKind::PermissionDenied, Some(dir)) => {
                        format!(" (this process may not create files in {})", dir.display())
                    }
                    (std::io::ErrorKind::AddrInUse, _) => " (something else exists at that path)".into(),
                    _ => String::new(),
                };
                format!("cannot create unix socket {path}: {e}{hint}")
            }
            Ok(listener) => {
                drop(listener);
                let _ = std::fs::remove_file(path);
                GENERIC.into()
            }
        };
    }
    #[cfg(target_os = "linux")]
    if let Some(name) = addr.strip_prefix("unix-abstract:") {
        use std::os::linux::net::SocketAddrExt;
        let bound = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|a| std::os::unix::net::UnixListener::bind_addr(&a));
        return match bound {
            Err(e) => format!("cannot bind abstract unix socket {name:?}: {e}"),
            Ok(_) => GENERIC.into(),
        };
    }
    let host_port = addr.strip_prefix("ipv4:").or_else(|| addr.strip_prefix("ipv6:")).unwrap_or(addr);
    match std::net::ToSocketAddrs::to_socket_addrs(host_port).map(|mut a| a.next()) {
        Ok(Some(sa)) => match std::net::TcpListener::bind(sa) {
            Err(e) => format!("cannot listen on {sa}: {e}"),
            Ok(_) => GENERIC.into(),
        },
        Ok(None) => format!("{host_port:?} resolves to no address"),
        Err(e) => format!("{host_port:?} is not a valid host:port ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::diagnose_bind;

    #[test]
    fn bind_failures_are_explained() {
        let why = diagnose_bind("unix:/nonexistent-grpcore-dir/x.sock");
        assert!(why.contains("No such file or directory") && why.contains("/nonexistent-grpcore-dir"), "{why}");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let why = diagnose_bind(&format!("127.0.0.1:{}", taken.local_addr().unwrap().port()));
        assert!(why.contains("in use"), "{why}");
        let why = diagnose_bind("no-port");
        assert!(why.contains("not a valid host:port"), "{why}");
    }
}
