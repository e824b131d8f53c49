//! Bad input gets a clear error, never a crash, a hang or silent loss.

mod common;

use std::time::{Duration, Instant};

use common::*;
use grpcore::{BytesCodec, CallOptions, ChannelBuilder, Code, Environment, Error, Metadata, Method, ServerBuilder, ServiceBuilder, Status};

#[test]
fn targets_the_core_refuses_are_config_errors_with_its_reason() {
    // The core's resolvers judge the target when the channel is created; its reason (only
    // in its log) becomes the error.
    let env = Environment::new(1);
    for (target, reason) in [
        ("", "the target uri is not valid: dns:///"),
        ("ipv4:1.2.3:80", "invalid ipv4 address: '1.2.3'"),
        ("ipv4:1.2.3.4", "no port given for ipv4 scheme"),
        ("ipv6:not-an-address", "the target uri is not valid: ipv6:not-an-address"),
        ("bad\0target", "NUL"),
    ] {
        let start = Instant::now();
        let err = ChannelBuilder::new(&env).connect(target).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{target:?}: {err}");
        let text = err.to_string();
        assert!(text.contains("invalid channel target") && text.contains(reason), "{target:?}: {text}");
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}

#[test]
fn targets_the_core_cannot_resolve_fail_the_first_call_with_its_reason() {
    // The core takes these (anything without a known scheme goes to its DNS resolver) and
    // fails the calls, at once and without a network, naming the target.
    let env = Environment::new(1);
    for (target, reason) in [
        (":80", "DNS resolution failed for :80: unparseable host:port"),
        ("[::1:80", "DNS resolution failed for [::1:80: unparseable host:port"),
        ("unix:", "empty address list"),
    ] {
        let start = Instant::now();
        let channel = ChannelBuilder::new(&env).connect(target).unwrap();
        let err = channel
            .unary(&UNARY, &request("x", 1), CallOptions::new().timeout(Duration::from_secs(10)))
            .wait()
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{target:?}: {err}");
        assert!(err.to_string().contains(reason), "{target:?}: {err}");
        assert!(start.elapsed() < Duration::from_secs(5), "{target:?}: {:?}", start.elapsed());
    }
}

#[test]
fn ports_the_core_would_misread_are_config_errors() {
    // The core's DNS resolver reads a port with atoi into 16 bits: 99999 would connect to
    // 34463, `abc` to 0, and a server would listen there (or on 443 without a port).
    let env = Environment::new(1);
    for (target, why) in [
        ("127.0.0.1:99999", "port \"99999\" is not a number from 0 to 65535"),
        ("localhost:5OO51", "port \"5OO51\""),
        ("localhost:", "the port after ':' is empty"),
        ("dns:///localhost:70000", "port \"70000\""),
        ("ipv4:127.0.0.1:80abc", "port \"80abc\""),
    ] {
        let err = ChannelBuilder::new(&env).connect(target).unwrap_err();
        assert!(matches!(&err, Error::Config(c) if c.kind() == grpcore::ConfigErrorKind::Target), "{target:?}: {err}");
        let text = err.to_string();
        assert!(text.contains(&format!("{target:?}")) && text.contains(why), "{target:?}: {text}");
    }
    for (addr, why) in [
        ("127.0.0.1:99999", "port \"99999\""),
        ("[::1]:65536", "port \"65536\""),
        ("127.0.0.1:", "the port after ':' is empty"),
        ("127.0.0.1", "no port given"),
    ] {
        let err = ServerBuilder::new(&env).register_service(echo_service()).bind(addr).build().unwrap_err();
        assert!(matches!(&err, Error::Config(c) if c.kind() == grpcore::ConfigErrorKind::Bind), "{addr:?}: {err}");
        assert!(err.to_string().contains(why), "{addr:?}: {err}");
    }
    // Named ports the core knows, and targets without a port, still go to the core.
    assert!(ChannelBuilder::new(&env).connect("localhost:https").is_ok());
    assert!(ChannelBuilder::new(&env).connect("[::1]").is_ok());
}

#[test]
fn an_unreachable_target_fails_fast_with_unavailable() {
    // Port 1 on loopback refuses connections: fail-fast calls end with UNAVAILABLE.
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env).connect("127.0.0.1:1").unwrap();
    let err = channel
        .unary(&UNARY, &request("x", 1), CallOptions::new().timeout(Duration::from_secs(10)))
        .wait()
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}

#[test]
fn invalid_metadata_keys_and_values_are_errors() {
    let mut md = Metadata::new();
    let err = md.append("Bad Key", "v").unwrap_err();
    assert!(matches!(err, Error::InvalidMetadata(_)));
    assert!(err.to_string().contains("Bad Key"), "{err}");
    assert!(md.append("x-ok", "bell\x07").is_err());
    assert!(md.append("grpc-status", "0").is_err(), "reserved keys are refused");
    assert!(md.append_bin("not-binary", vec![1u8]).is_err());
}

#[test]
fn bad_settings_and_addresses_are_rejected_at_build_time() {
    let env = Environment::new(1);
    let err = ChannelBuilder::new(&env).max_receive_message_len(usize::MAX).connect("127.0.0.1:1").unwrap_err();
    assert!(err.to_string().contains("max_receive_message_len"), "{err}");
    let err = ChannelBuilder::new(&env).raw_str_arg("grpc.x", "nul\0").connect("127.0.0.1:1").unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
    let err = ServerBuilder::new(&env).register_service(echo_service()).build().unwrap_err();
    assert!(err.to_string().contains("bind"), "{err}");
    let err = ServerBuilder::new(&env).bind("256.1.1.1:0").build().unwrap_err();
    assert!(err.to_string().contains("256.1.1.1:0"), "{err}");
    let taken = start_echo_server(&env);
    let err = ServerBuilder::new(&env).bind(format!("127.0.0.1:{}", taken.port())).build().unwrap_err();
    assert!(err.to_string().contains("failed to listen"), "{err}");
    let err = ServerBuilder::new(&env)
        .register_service(echo_service())
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("registered twice"), "{err}");
    let wrong: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/other.Service/M");
    let service = ServiceBuilder::new("my.Service")
        .add_unary(&wrong, |r: Vec<u8>, _| async move { Ok::<_, Status>(r) })
        .build();
    let err = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap_err();
    assert!(err.to_string().contains("/other.Service/M"), "{err}");
}

#[test]
fn messages_over_the_limit_are_resource_exhausted_naming_the_limit() {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .max_receive_message_len(1000)
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let target = format!("127.0.0.1:{}", server.port());
    // Request over the server's receive limit.
    let channel = ChannelBuilder::new(&env).connect(&target).unwrap();
    let mut req = request("big", 1);
    req.payload = vec![7; 5000];
    let err = channel.unary(&UNARY, &req, CallOptions::new()).wait().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.to_string().contains("1000"), "{err}");
    // Response over the client's receive limit.
    let small = ChannelBuilder::new(&env).max_receive_message_len(2000).connect(&target).unwrap();
    let mut req = request("big reply", 1);
    req.response_size = 10_000;
    let err = small.unary(&UNARY, &req, CallOptions::new()).wait().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.to_string().contains("2000"), "{err}");
    // Request over the client's own send limit.
    let strict = ChannelBuilder::new(&env).max_send_message_len(100).connect(&target).unwrap();
    let mut req = request("too big to send", 1);
    req.payload = vec![1; 500];
    let err = strict.unary(&UNARY, &req, CallOptions::new()).wait().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    // The server still serves normal calls.
    assert_eq!(channel.unary(&UNARY, &request("ok", 9), CallOptions::new()).wait().unwrap().message().seq, 9);
}

#[test]
fn undecodable_messages_are_errors_in_both_directions() {
    let env = Environment::new(1);
    // A server that answers garbage bytes on the Echo path.
    const RAW: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/grpcore.test.Echo/Unary");
    let garbage = ServiceBuilder::new("grpcore.test.Echo")
        .add_unary(&RAW, |_req: Vec<u8>, _| async { Ok::<_, Status>(vec![0xff, 0xff, 0xff]) })
        .build();
    let garbage_server = ServerBuilder::new(&env).register_service(garbage).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", garbage_server.port())).unwrap();
    let err = channel.unary(&UNARY, &request("x", 1), CallOptions::new()).wait().unwrap_err();
    assert!(matches!(err, Error::Codec(_)), "{err}");
    assert!(err.to_string().contains("EchoResponse"), "names the type: {err}");

    // Garbage sent to a prost server: INTERNAL naming the method.
    let server = start_echo_server(&env);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let err = channel.unary(&RAW, &vec![0xff, 0xff, 0xff], CallOptions::new()).wait().unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(err.to_string().contains("/grpcore.test.Echo/Unary"), "{err}");
    assert_eq!(channel.unary(&UNARY, &request("fine", 2), CallOptions::new()).wait().unwrap().message().seq, 2);
}

#[test]
fn calling_a_streaming_descriptor_as_unary_is_an_error() {
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env).connect("127.0.0.1:1").unwrap();
    let m: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::duplex("/a.B/C");
    let err = channel.unary(&m, &vec![], CallOptions::new()).wait().unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}
