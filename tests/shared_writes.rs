//! Write sharing (every `vendored` build, and feature `shared-writes`): the replies of one
//! round of events share transport writes, unless `EnvBuilder::share_writes(false)`.
//!
//! Observed without timing: the server's socket counts the TCP segments that carried data
//! (`TCP_INFO`'s `tcpi_data_segs_out`). The server sets `TCP_NODELAY` and loopback never
//! holds a small write back, so each `sendmsg` of a reply is one segment: without the feature
//! a burst of N unary calls on one connection costs the server about N data segments, with
//! it the replies answered in one round go out together.
#![cfg(all(shared_writes, target_os = "linux"))]

mod common;

use common::*;
use grpcore::{CallOptions, ChannelBuilder, EnvBuilder, Environment};

/// The accepted server-side socket of the one connection to `port` in this process.
fn server_socket(port: u16) -> i32 {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        // SAFETY: plain queries on a descriptor of this process into local buffers; a
        // descriptor that is not an IPv4 socket just fails them.
        unsafe {
            // The core uses dual-stack IPv6 sockets (IPv4 peers as mapped addresses).
            let mut addr: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if libc::getsockname(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len) != 0 {
                continue;
            }
            let local_port = match addr.ss_family as i32 {
                libc::AF_INET => (*(&addr as *const _ as *const libc::sockaddr_in)).sin_port,
                libc::AF_INET6 => (*(&addr as *const _ as *const libc::sockaddr_in6)).sin6_port,
                _ => continue,
            };
            if u16::from_be(local_port) != port {
                continue;
            }
            let mut peer: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if libc::getpeername(fd, &mut peer as *mut _ as *mut libc::sockaddr, &mut len) == 0 {
                found.push(fd);
            }
        }
    }
    assert_eq!(found.len(), 1, "expected one accepted connection on port {port}, found {found:?}");
    found[0]
}

/// Data-carrying segments sent on `fd` so far.
fn data_segments_out(fd: i32) -> u32 {
    // SAFETY: TCP_INFO into a local struct of the kernel's layout (libc's), with its size.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info as *mut _ as *mut libc::c_void, &mut len);
        assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info.tcpi_data_segs_out
    }
}

/// The tests of this file run one at a time: each measures how a loaded queue thread groups
/// its replies, which other tests' threads on the same two cores would disturb.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Data segments the server sent for a burst of `calls` unary replies on one connection,
/// its calls served by `server_env`: the median of three bursts (one burst that meets a
/// preempted queue thread can go out in more pieces).
fn burst_segments(server_env: &Environment, calls: usize) -> u32 {
    let server = start_echo_server(server_env);
    let client_env = Environment::new(1);
    let channel = ChannelBuilder::new(&client_env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    // Connect, and let the HTTP/2 settings exchange finish.
    channel.unary(&UNARY, &request("warm-up", 0), CallOptions::new()).wait().unwrap();
    let fd = server_socket(server.port());
    let mut bursts: Vec<u32> = (0..3)
        .map(|_| {
            let before = data_segments_out(fd);
            let pending: Vec<_> =
                (0..calls).map(|i| channel.unary(&UNARY, &request("burst", i as i64), CallOptions::new())).collect();
            let replies = futures_executor::block_on(futures_util::future::join_all(pending));
            for (i, reply) in replies.into_iter().enumerate() {
                let reply = reply.unwrap_or_else(|e| panic!("call {i}: {e}"));
                assert_eq!(reply.message().seq, i as i64);
            }
            data_segments_out(fd) - before
        })
        .collect();
    eprintln!("sharing {}: three bursts of {calls} unary replies went out in {bursts:?} data segments", server_env.shares_writes());
    bursts.sort_unstable();
    bursts[1]
}

#[test]
fn a_burst_of_unary_replies_shares_writes() {
    const CALLS: usize = 400;
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server_env = Environment::new(1);
    assert!(server_env.shares_writes());
    let segments = burst_segments(&server_env, CALLS);
    // Measured on loopback in one process: ~100-400 segments for 400 replies without
    // sharing (some replies meet in the combiner by chance), 8-33 with it, single bursts up
    // to ~110 with a C++ build loading both cores.
    assert!(segments * 8 <= CALLS as u32, "{CALLS} replies took {segments} data segments: the writes were not shared");
}

/// Turned off, the same burst is served as without sharing. (How many segments it takes is
/// not a test: without sharing, replies meet in the transport by chance, from ~30 to ~400
/// segments for 400 replies depending on scheduling; that no batch is deferred is the unit
/// test `env::tests::an_environment_that_does_not_share_never_defers_a_batch`.)
#[test]
fn turned_off_a_burst_is_served_as_without_sharing() {
    const CALLS: usize = 400;
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server_env = EnvBuilder::new().cq_count(1).share_writes(false).build();
    assert!(!server_env.shares_writes());
    burst_segments(&server_env, CALLS);
}

/// The same burst, with a deadline on every call and every other call cancelled by dropping
/// it: the answered ones still arrive intact and the server stays usable.
#[test]
fn dropped_calls_in_a_shared_round_do_not_disturb_the_others() {
    const CALLS: usize = 200;
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server_env = Environment::new(1);
    let server = start_echo_server(&server_env);
    let client_env = Environment::new(1);
    let channel = ChannelBuilder::new(&client_env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let opts = || CallOptions::new().timeout(std::time::Duration::from_secs(20));
    let mut kept = Vec::new();
    for i in 0..CALLS {
        let call = channel.unary(&UNARY, &request("mixed", i as i64), opts());
        if i % 2 == 0 {
            kept.push((i, call));
        } else {
            drop(call);
        }
    }
    for (i, call) in kept {
        assert_eq!(call.wait().unwrap().message().seq, i as i64);
    }
    assert_eq!(channel.unary(&UNARY, &request("after", 1), opts()).wait().unwrap().message().message, "after");
}
