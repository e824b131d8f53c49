//! Sockets the application owns: channels over a socket it made, connections it accepted
//! handed to a server, an owned listener with accept-time limits, socket activation
//! (`LISTEN_FDS`), and one port serving gRPC (grpcio, grpc-js, grpcore) and HTTP/1.1 at once.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use grpcore::listener::{Connection, Listener, Protocol};
use grpcore::{BytesCodec, CallOptions, ChannelBuilder, Code, Environment, Method, ServerBuilder, ServiceBuilder, Status};

use common::{echo_service, request, UNARY};

const WHO: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/grpcore.test.Peer/Who");

/// A service answering each call with what the server knows of its client:
/// `peer uid` (uid `-` when there are no unix credentials).
fn who_service() -> grpcore::Service {
    ServiceBuilder::new("grpcore.test.Peer")
        .add_unary(&WHO, |_req: Vec<u8>, ctx: grpcore::ServerContext| async move {
            let uid = ctx.peer_credentials().map_or("-".to_string(), |c| c.uid.to_string());
            Ok::<_, Status>(format!("{} {uid}", ctx.peer()).into_bytes())
        })
        .build()
}

fn opts() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20))
}

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap()
}

#[test]
fn a_channel_over_a_socketpair_reaches_a_server_given_the_other_end() {
    let env = Environment::new(2);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .register_service(who_service())
        .connections_only()
        .build()
        .unwrap();
    let (server_end, client_end) = UnixStream::pair().unwrap();
    server.add_connection(server_end).unwrap();
    let channel = ChannelBuilder::new(&env).connect_socket(client_end).unwrap();
    block_on(common::check_all_call_kinds(channel.clone()));
    // The handler sees the unix peer and its credentials, not the core's "fd:N".
    let who = block_on(channel.unary(&WHO, &Vec::new(), opts())).unwrap().into_message();
    assert_eq!(String::from_utf8(who).unwrap(), format!("unix: {}", my_uid()));

    // One connection for the channel's whole life: once the server is gone the channel's
    // calls fail with UNAVAILABLE, at once and without a reconnect.
    drop(server);
    let start = Instant::now();
    let err = loop {
        match block_on(channel.unary(&UNARY, &request("after", 1), opts())) {
            Err(e) => break e,
            Ok(_) if start.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(20)),
            Ok(_) => panic!("calls still succeed 10 s after the server was dropped"),
        }
    };
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}

#[test]
fn a_channel_over_a_tcp_stream_talks_to_grpcio() {
    let peer = common::python_server(&[]);
    let stream = TcpStream::connect(("127.0.0.1", peer.port)).unwrap();
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env).connect_socket(stream).unwrap();
    block_on(common::check_all_call_kinds(channel.clone()));
    drop(peer); // kills the Python server
    let err = block_on(channel.unary(&UNARY, &request("gone", 2), opts())).unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}

#[test]
fn a_server_serves_tcp_connections_it_did_not_accept_to_grpcio() {
    let env = Environment::new(2);
    let server = ServerBuilder::new(&env).register_service(echo_service()).connections_only().build().unwrap();
    let server = Arc::new(server);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (s, a) = (server.clone(), accepted.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            a.fetch_add(1, Ordering::SeqCst);
            if s.add_connection(stream).is_err() {
                return;
            }
        }
    });
    // Several rounds: a blocking socket handed to the core used to hang some of them.
    for round in 0..3 {
        let (ok, out) = common::python_client(&format!("127.0.0.1:{port}"), &["unary", "metadata", "status", "client_stream", "server_stream", "bidi"]);
        assert!(ok, "round {round}:\n{out}");
    }
    assert!(accepted.load(Ordering::SeqCst) >= 3);
}

#[test]
fn sockets_that_cannot_carry_grpc_are_refused_with_the_reason() {
    let err = grpcore::Socket::from_fd(std::fs::File::open("/dev/null").unwrap().into()).unwrap_err();
    assert!(matches!(err, grpcore::Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("not a socket"), "{err}");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let err = grpcore::Socket::from_fd(listener.into()).unwrap_err();
    assert!(err.to_string().contains("listening socket"), "{err}");

    let env = Environment::new(1);
    let err = ServerBuilder::new(&env).register_service(echo_service()).build().unwrap_err();
    assert!(err.to_string().contains("connections_only"), "{err}");
}

/// Opens `n` connections to `port` from source address `from` in a Python process and
/// reports, for each, whether the server kept it open (`open`) or closed it (`closed`).
/// The connections stay open until the returned child is killed.
fn python_connections(from: &str, port: u16, n: usize) -> (std::process::Child, Vec<String>) {
    let script = r#"
import socket, sys
src, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
    conns.append(s)
states = []
for s in conns:
    s.settimeout(0.5)
    try:
        # An open connection gets the core's SETTINGS frame at once.
        states.append("closed" if s.recv(1) == b"" else "open")
    except socket.timeout:
        states.append("open")
    except ConnectionResetError:
        states.append("closed")
print(" ".join(states), flush=True)
sys.stdin.read()
"#;
    let mut child = Command::new(common::python())
        .args(["-c", script, from, &port.to_string(), &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (child, line.split_whitespace().map(String::from).collect())
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_owned_listener_limits_connections_in_all_and_per_ip() {
    let env = Environment::new(1);
    let listener = Listener::bind("127.0.0.1:0").unwrap().max_connections(3).max_connections_per_ip(2);
    let server = ServerBuilder::new(&env).register_service(echo_service()).listener(listener).build().unwrap();
    let port = server.port();
    let stats = || server.listener_stats().remove(0);

    // Two from 127.0.0.1 are kept, the third from there is closed (per-IP limit).
    let (mut first, states) = python_connections("127.0.0.1", port, 3);
    assert_eq!(states, ["open", "open", "closed"]);
    // One more from 127.0.0.2 fits the total of 3; the next is over it.
    let (mut second, states) = python_connections("127.0.0.2", port, 2);
    assert_eq!(states, ["open", "closed"]);
    let s = stats();
    assert_eq!((s.accepted, s.refused_per_ip, s.refused_max_connections, s.open), (5, 1, 1, 3), "{s:?}");

    // The count follows connections the core closes: end the first client's two.
    first.kill().unwrap();
    first.wait().unwrap();
    wait_for("the closed connections to leave the count", || stats().open == 1);
    // Room again: a grpcore client (one connection) is served.
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{port}")).unwrap();
    let reply = block_on(channel.unary(&UNARY, &request("room", 7), opts().wait_for_ready(true))).unwrap();
    assert_eq!(reply.message().seq, 7);
    assert_eq!(stats().open, 2);
    second.kill().unwrap();
    second.wait().unwrap();
    wait_for("the second client's connection to leave the count", || stats().open == 1);
    // The reply holds its call, and the call its channel.
    drop((reply, channel));
    wait_for("every connection to leave the count", || stats().open == 0);
}

/// What the HTTP/1.1 side of the one-port server answers: `ok <path>` to any request.
fn serve_http(conn: Connection) {
    std::thread::spawn(move || {
        let Ok(stream) = conn.into_tcp() else { return };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(&stream);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(n) if n > 0 && header != "\r\n" => continue,
                _ => break,
            }
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("?");
        let body = format!("ok {path}");
        let _ = (&stream).write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes());
    });
}

#[test]
fn one_port_serves_grpcio_grpc_js_grpcore_and_http1_at_once() {
    let env = Environment::new(2);
    let listener = Listener::bind("127.0.0.1:0")
        .unwrap()
        .serve_other(Protocol::http1(), serve_http)
        .sniff_timeout(Duration::from_secs(1));
    let server = ServerBuilder::new(&env).register_service(echo_service()).listener(listener).build().unwrap();
    let port = server.port();
    let target = format!("127.0.0.1:{port}");

    // A client that connects and says nothing is dropped after the sniff timeout, while
    // the others are served.
    let mut silent = TcpStream::connect(&target).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let silent_start = Instant::now();
    let silent_waiter = std::thread::spawn(move || {
        let mut buf = [0u8; 1];
        let n = silent.read(&mut buf).unwrap_or(0);
        (n, silent_start.elapsed())
    });

    let python = common::python_script("one_port_client.py")
        .args([&target, "--grpc", "400", "--http", "300", "--garbage", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let node = Command::new("node")
        .arg(format!("{}/tests/peers/node/one_port_client.js", env!("CARGO_MANIFEST_DIR")))
        .args([&target, "250"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // grpcore's own client on the same port meanwhile.
    let channel = ChannelBuilder::new(&env).connect(&target).unwrap();
    block_on(common::check_all_call_kinds(channel));

    let (n, waited) = silent_waiter.join().unwrap();
    assert_eq!(n, 0, "the silent client got data");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(8), "silent client closed after {waited:?}");

    let python = python.wait_with_output().unwrap();
    let node = node.wait_with_output().unwrap();
    let (py_out, js_out) = (String::from_utf8_lossy(&python.stdout), String::from_utf8_lossy(&node.stdout));
    assert!(python.status.success(), "python: {py_out}");
    assert!(node.status.success(), "grpc-js: {js_out}");
    assert_eq!(py_out.lines().next(), Some("grpc 400/400 http 300/300 garbage 50/50"));
    assert_eq!(js_out.lines().next(), Some("grpc-js 250/250"));

    let s = server.listener_stats().remove(0);
    assert!(s.to_core >= 651, "{s:?}"); // 400 grpcio + 250 grpc-js + grpcore's
    assert_eq!(s.to_handlers, 300, "{s:?}");
    assert_eq!(s.unrecognized, 50, "{s:?}");
    assert_eq!(s.sniff_timeouts, 1, "{s:?}");
}

#[test]
fn a_full_sniff_stage_stops_accepting_until_a_slot_frees() {
    let env = Environment::new(1);
    let listener = Listener::bind("127.0.0.1:0")
        .unwrap()
        .serve_other(Protocol::http1(), serve_http)
        .sniff_timeout(Duration::from_millis(500))
        .max_sniffing(2);
    let server = ServerBuilder::new(&env).register_service(echo_service()).listener(listener).build().unwrap();
    let target = format!("127.0.0.1:{}", server.port());
    let _silent: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&target).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    // The stage is full: a third client waits in the backlog, and is served once the
    // silent ones time out.
    let start = Instant::now();
    let channel = ChannelBuilder::new(&env).connect(&target).unwrap();
    block_on(channel.unary(&UNARY, &request("late", 3), opts().wait_for_ready(true))).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300), "served after {:?}: the stage was not bounded", start.elapsed());
    let s = server.listener_stats().remove(0);
    assert_eq!(s.sniff_timeouts, 2, "{s:?}");
}

/// The socket-activated server: runs only as the child of
/// `socket_activation_serves_grpcio` (which sets `GRPCORE_TEST_ACTIVATED`).
#[test]
fn socket_activation_child() {
    let Ok(mode) = std::env::var("GRPCORE_TEST_ACTIVATED") else { return };
    if mode == "error" {
        println!("ERROR {}", Listener::from_systemd().unwrap_err());
        return;
    }
    let mut listeners = Listener::from_systemd().unwrap();
    assert_eq!(listeners.len(), 1);
    assert_eq!(listeners[0].name(), Some("grpc"));
    assert!(std::env::var("LISTEN_FDS").is_err(), "LISTEN_FDS is left for children");
    assert!(Listener::from_systemd().is_err(), "taken twice");
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .listener(listeners.remove(0))
        .build()
        .unwrap();
    println!("READY {}", server.port());
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest); // until the parent closes stdin
}

/// Starts this test binary as a socket-activated server: the listening socket as fd 3,
/// `LISTEN_PID` the child's own pid (set by the shell that execs it), `LISTEN_FDS=1`.
fn activated_child(listener: &TcpListener, listen_pid: &str, mode: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let fd = listener.as_raw_fd();
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("LISTEN_PID={listen_pid} LISTEN_FDS=1 LISTEN_FDNAMES=grpc exec \"$0\" \"$@\""))
        .arg(exe)
        .args(["--exact", "socket_activation_child", "--nocapture", "--test-threads=1"])
        .env("GRPCORE_TEST_ACTIVATED", mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: dup2 and fcntl are async-signal-safe; they make the listener fd 3 in the child
    // without close-on-exec, as systemd passes the first socket. When the listener already
    // is fd 3 (other tests' descriptors come and go), dup2 would do nothing and leave its
    // close-on-exec flag set: the exec would close it.
    unsafe {
        command.pre_exec(move || {
            let rc = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(fd, 3) };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().unwrap()
}

fn read_marker(child: &mut std::process::Child, marker: &str) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = marker.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The harness prints "test socket_activation_child ... " on the same line.
            if let Some(at) = line.find(&wanted) {
                let _ = tx.send(line[at + wanted.len()..].to_string());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("the activated child printed no {marker}"))
}

#[test]
fn socket_activation_serves_grpcio() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = activated_child(&listener, "$$", "serve");
    drop(listener); // the child has its own copy
    let reported = read_marker(&mut child, "READY ");
    assert_eq!(reported, port.to_string());
    let (ok, out) = common::python_client(&format!("127.0.0.1:{port}"), &["unary", "metadata", "bidi"]);
    drop(child.stdin.take());
    let _ = child.wait();
    assert!(ok, "{out}");
}

#[test]
fn socket_activation_for_another_process_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = activated_child(&listener, "1", "error");
    let error = read_marker(&mut child, "ERROR ");
    let _ = child.wait();
    assert!(error.contains("LISTEN_PID is 1"), "{error}");
}

#[test]
fn socket_activation_without_the_descriptor_is_an_error() {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
        .arg(exe)
        .args(["--exact", "socket_activation_child", "--nocapture", "--test-threads=1"])
        .env("GRPCORE_TEST_ACTIVATED", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: close is async-signal-safe: the child starts with no fd 3.
    unsafe {
        command.pre_exec(|| {
            libc::close(3);
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let error = read_marker(&mut child, "ERROR ");
    assert!(child.wait().unwrap().success(), "the child must report the error, not abort");
    assert!(error.contains("LISTEN_FDS descriptor 3: not open"), "{error}");
}

#[cfg(feature = "access")]
#[test]
fn access_rules_tell_unix_clients_apart_by_uid() {
    use grpcore::access::{AccessControl, AccessRules};
    let uid = my_uid();
    let rules = AccessRules::from_json(&format!(
        r#"{{"rules": [
            {{"methods": ["/grpcore.test.Echo/Unary"], "allow": ["uid:{uid}"]}},
            {{"methods": ["/grpcore.test.Peer/Who"], "allow": ["uid:{}"]}}
        ]}}"#,
        uid + 1
    ))
    .unwrap();
    let env = Environment::new(1);
    let path = std::env::temp_dir().join(format!("grpcore-uid-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = Listener::unix(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let server = ServerBuilder::new(&env)
        .intercept(AccessControl::new(rules))
        .register_service(echo_service())
        .register_service(who_service())
        .listener(listener)
        .build()
        .unwrap();
    assert!(server.bound_ports().iter().any(|(a, _)| a.starts_with("unix:")), "{:?}", server.bound_ports());
    let channel = ChannelBuilder::new(&env).connect(&format!("unix:{}", path.display())).unwrap();
    let reply = block_on(channel.unary(&UNARY, &request("mine", 5), opts().wait_for_ready(true))).unwrap();
    assert_eq!(reply.message().seq, 5);
    let err = block_on(channel.unary(&WHO, &Vec::new(), opts())).unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.to_string().contains(&format!("uid:{uid}")), "{err}");
    drop(server);
    let _ = std::fs::remove_file(&path);
}
