//! The ports of channel targets and listening addresses, checked before the core sees them.
//!
//! The 1.51 core's DNS resolver, which takes every target without a scheme of its own
//! (`host:port`, `dns:…`, and unknown schemes, which it prefixes with `dns:///`), reads the
//! port with `atoi` and truncates it to 16 bits: `127.0.0.1:99999` connects to port 34463,
//! `localhost:5OO51` (letters O) to port 5, `localhost:abc` and `[::1]:` to port 0. Its
//! servers resolve listening addresses the same way (`127.0.0.1:99999` listens on 34463)
//! and take a missing port as 443. A typo must not reach or open another port, so such a
//! port is a configuration error here. The `ipv4:` and `ipv6:` resolvers check the range
//! themselves but read a port like `80abc` as 80; their ports are checked the same way.
//! Everything else about an address (hosts, schemes, paths) is the core's to judge.

/// Schemes the core resolves without DNS; a target with one of these is left to it,
/// except that the addresses of `ipv4:` and `ipv6:` are checked.
const OWN_SCHEMES: &[&str] = &["unix", "unix-abstract", "xds", "google-c2p", "vsock"];

/// Checks the ports in a channel's `target`; `Err` says what is wrong with which port.
pub(crate) fn check_target(target: &str) -> Result<(), String> {
    match scheme(target) {
        Some(("ipv4" | "ipv6", rest)) => rest.split(',').try_for_each(|address| check_host_port(address.trim_start_matches('/'))),
        Some((s, _)) if OWN_SCHEMES.contains(&s) => Ok(()),
        Some(("dns", rest)) => check_host_port(dns_name(rest)),
        // Unknown schemes and plain names: the core prefixes `dns:///`, so all of it is the
        // name (`localhost:50051` has the "scheme" `localhost`).
        _ => check_host_port(target),
    }
}

/// Checks the port of an address a server listens on: required (the core would listen on
/// 443 without one) and a number, except for unix and vsock addresses.
pub(crate) fn check_listen_address(addr: &str) -> Result<(), String> {
    if ["unix:", "unix-abstract:", "vsock:"].iter().any(|p| addr.starts_with(p)) {
        return Ok(());
    }
    match host_port(addr) {
        Some(Some(port)) => check_port(port),
        Some(None) => Err("no port given (write host:port; port 0 picks a free one)".to_string()),
        None => Ok(()),
    }
}

/// `(scheme, rest)` if `target` starts with a URI scheme (a letter, then letters, digits,
/// `+`, `-` or `.`, then `:`). Schemes are compared as written, as the core looks its
/// resolvers up (`DNS:` is not `dns:` to it).
fn scheme(target: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = target.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// The name a `dns:` URI resolves: its path, after an optional `//authority` (the DNS
/// server) and the leading `/`.
fn dns_name(rest: &str) -> &str {
    match rest.strip_prefix("//") {
        Some(after) => after.split_once('/').map_or("", |(_authority, path)| path),
        None => rest.trim_start_matches('/'),
    }
}

/// Checks the port of `host[:port]`, if it has one.
fn check_host_port(name: &str) -> Result<(), String> {
    match host_port(name) {
        Some(Some(port)) => check_port(port),
        _ => Ok(()),
    }
}

/// The port of `host[:port]` as the core splits it: `[v6]:port`, `host:port` with one
/// colon; `Some(None)` for no port (a bare host, or a bare IPv6 address: several colons);
/// `None` for a malformed bracket, which the core refuses with its own reason.
fn host_port(name: &str) -> Option<Option<&str>> {
    if let Some(bracketed) = name.strip_prefix('[') {
        let (_host, after) = bracketed.split_once(']')?;
        if after.is_empty() {
            return Some(None);
        }
        return after.strip_prefix(':').map(Some);
    }
    Some(match name.split_once(':') {
        Some((_host, port)) if !port.contains(':') => Some(port),
        _ => None,
    })
}

/// A port is decimal digits up to 65535, or the names `http` and `https` (which the core
/// knows as 80 and 443).
fn check_port(port: &str) -> Result<(), String> {
    if port == "http" || port == "https" {
        return Ok(());
    }
    if port.is_empty() {
        return Err("the port after ':' is empty".to_string());
    }
    match port.parse::<u16>() {
        Ok(_) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!("port {port:?} is not a number from 0 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_the_core_would_misread_are_refused() {
        for (target, why) in [
            ("127.0.0.1:99999", "\"99999\" is not a number"),
            ("localhost:5OO51", "\"5OO51\""),
            ("localhost:abc", "\"abc\""),
            ("localhost:+80", "\"+80\""),
            ("localhost:", "empty"),
            ("[::1]:", "empty"),
            ("[::1]:65536", "\"65536\""),
            ("dns:///localhost:70000", "\"70000\""),
            ("dns:localhost:-1", "\"-1\""),
            ("dns://8.8.8.8:53/example.com:8o", "\"8o\""),
            ("unknown:///x", "\"///x\""),
            ("ipv4:127.0.0.1:80abc", "\"80abc\""),
            ("ipv4:127.0.0.1:1,127.0.0.2:99999", "\"99999\""),
            ("ipv6:[::1]:1x", "\"1x\""),
        ] {
            let err = check_target(target).expect_err(target);
            assert!(err.contains(why), "{target}: {err}");
        }
    }

    #[test]
    fn targets_with_good_ports_or_none_pass() {
        for target in [
            "localhost:50051",
            "127.0.0.1:0",
            "127.0.0.1:65535",
            "localhost",
            "example.com:https",
            "dns:///localhost:50051",
            "dns:localhost:http",
            "dns://8.8.8.8:53/example.com:443",
            "dns://8.8.8.8:53/example.com",
            "[::1]:50051",
            "[::1]",
            "::1",
            "fe80::1%eth0",
            "ipv4:127.0.0.1:1,127.0.0.2:2",
            "ipv6:[::1]:50051",
            "unix:/tmp/socket:1",
            "unix:///tmp/socket",
            "unix-abstract:name:x",
            "xds:///service:x",
            "",
        ] {
            assert_eq!(check_target(target), Ok(()), "{target}");
        }
    }

    #[test]
    fn listening_addresses_need_a_port_that_is_a_number() {
        for (addr, why) in [
            ("127.0.0.1:99999", "\"99999\""),
            ("127.0.0.1:", "empty"),
            ("127.0.0.1", "no port"),
            ("localhost", "no port"),
            ("[::1]", "no port"),
            ("[::1]:65536", "\"65536\""),
            ("localhost:5OO51", "\"5OO51\""),
        ] {
            let err = check_listen_address(addr).expect_err(addr);
            assert!(err.contains(why), "{addr}: {err}");
        }
        for addr in ["127.0.0.1:0", "[::]:50051", "0.0.0.0:https", "localhost:65535", "unix:/tmp/s", "unix-abstract:x", "[::1"] {
            assert_eq!(check_listen_address(addr), Ok(()), "{addr}");
        }
    }
}
