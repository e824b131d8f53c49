//! Channelz served from the core's own data, read by grpcio's channelz stubs
//! (`tests/peers/python/channelz_client.py`): the counts it reports for a server, a channel,
//! its subchannel and their sockets match the calls this test made.
//!
//! One test in this binary: channelz reports on the whole process, and other tests' servers
//! and channels would change its counts.

mod common;
#[path = "support/grpcurl.rs"]
mod grpcurl;

use std::process::Command;
use std::time::Duration;

use common::*;
use grpcore::{CallOptions, ChannelBuilder, Code, Environment, ServerBuilder};
use serde_json::Value;

fn count(v: &Value, key: &str) -> i64 {
    // Protobuf's JSON writes 64-bit integers as strings and leaves zeros out.
    v.get(key).map_or(0, |n| n.as_str().expect("an int64 as a string").parse().unwrap())
}

#[test]
fn channelz_reports_the_calls_made_on_a_server_a_channel_and_their_sockets() {
    let env = Environment::new(1);
    let served = ServerBuilder::new(&env).register_service(echo_service()).bind("127.0.0.1:0").build().unwrap();
    // The channelz service on a port of its own (an admin port), so reading it does not
    // add calls to the server being read.
    let admin = ServerBuilder::new(&env)
        .register_service(grpcore::channelz::service())
        .add_reflection()
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let target = format!("127.0.0.1:{}", served.port());
    let channel = ChannelBuilder::new(&env).connect(&target).unwrap();
    let opts = || CallOptions::new().timeout(Duration::from_secs(20));

    // 3 unary calls that succeed, 2 that fail, 1 server-streaming call with 2 responses.
    for i in 0..3 {
        channel.unary(&UNARY, &request("ok", i), opts()).wait().unwrap();
    }
    for i in 0..2 {
        let failing = EchoRequest { fail_code: Code::Aborted as i32, fail_message: "no".into(), ..request("f", i) };
        assert_eq!(channel.unary(&UNARY, &failing, opts()).wait().unwrap_err().code(), Code::Aborted);
    }
    let streamed: Vec<_> = channel.server_streaming(&SERVER_STREAM, &request("s", 2), opts()).into_blocking_iter().collect();
    assert_eq!(streamed.len(), 2);

    let output = Command::new(python())
        .arg("tests/peers/python/channelz_client.py")
        .arg(format!("127.0.0.1:{}", admin.port()))
        .output()
        .expect("python runs");
    assert!(output.status.success(), "channelz client failed: {}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();

    // Servers: ours (created first, so the lower id) and the admin one.
    let servers = seen["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{servers:#?}");
    assert_eq!(seen["end_of_servers"], true);
    let server = &servers[0];
    let data = &server["data"];
    assert_eq!((count(data, "callsStarted"), count(data, "callsSucceeded"), count(data, "callsFailed")), (6, 4, 2), "{server:#}");
    assert!(data["lastCallStartedTimestamp"].as_str().unwrap().ends_with('Z'));
    assert!(!server["listenSocket"].as_array().unwrap().is_empty(), "{server:#}");
    let server_id = server["ref"]["serverId"].as_str().unwrap();
    // GetServer gives what GetServers listed (timestamps aside: the core converts its
    // cycle counter anew on each read).
    let by_id = &seen["server_by_id"][server_id];
    assert_eq!((&by_id["ref"], &by_id["listenSocket"], count(&by_id["data"], "callsStarted")), (&server["ref"], &server["listenSocket"], 6));
    // The admin server has served only the channelz calls so far.
    let admin_data = &servers[1]["data"];
    assert_eq!((count(admin_data, "callsFailed"), count(admin_data, "callsSucceeded") + 1), (0, count(admin_data, "callsStarted")));

    // The one connection to our server: what it received and sent.
    let socket_refs = seen["server_sockets"][server_id].as_array().unwrap();
    assert_eq!(socket_refs.len(), 1, "{socket_refs:#?}");
    let server_socket = &seen["sockets"][socket_refs[0]["socketId"].as_str().unwrap()];
    let sdata = &server_socket["data"];
    assert_eq!((count(sdata, "streamsStarted"), count(sdata, "messagesReceived"), count(sdata, "messagesSent")), (6, 6, 5), "{server_socket:#}");
    assert_eq!(server_socket["local"]["tcpipAddress"]["port"], served.port() as i64, "{server_socket:#}");
    assert_eq!(server_socket["local"]["tcpipAddress"]["ipAddress"], "fwAAAQ==", "127.0.0.1 in base64");

    // Top channels: ours only (the environment's internal wake-up channels are left out).
    let channels = seen["top_channels"].as_array().unwrap();
    assert_eq!(channels.len(), 1, "{channels:#?}");
    assert_eq!(seen["end_of_channels"], true);
    let top = &channels[0];
    let cdata = &top["data"];
    assert_eq!(cdata["target"], target.as_str());
    assert_eq!(cdata["state"]["state"], "READY");
    assert_eq!((count(cdata, "callsStarted"), count(cdata, "callsSucceeded"), count(cdata, "callsFailed")), (6, 4, 2), "{top:#}");
    let events = cdata["trace"]["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["description"] == "Channel created" && e["severity"] == "CT_INFO"), "{events:#?}");
    let channel_id = top["ref"]["channelId"].as_str().unwrap();
    let by_id = &seen["channel_by_id"][channel_id];
    assert_eq!((&by_id["ref"], &by_id["subchannelRef"], count(&by_id["data"], "callsFailed")), (&top["ref"], &top["subchannelRef"], 2));
    let age = seen["last_call_age"][channel_id].as_f64().unwrap();
    assert!((0.0..120.0).contains(&age), "the last call started {age} s ago by the decoded timestamp");

    // Its subchannel and the subchannel's connection.
    let sub_id = top["subchannelRef"][0]["subchannelId"].as_str().unwrap();
    let sub = &seen["subchannels"][sub_id];
    assert_eq!((count(&sub["data"], "callsStarted"), count(&sub["data"], "callsFailed")), (6, 2), "{sub:#}");
    let client_socket = &seen["sockets"][sub["socketRef"][0]["socketId"].as_str().unwrap()];
    let kdata = &client_socket["data"];
    assert_eq!((count(kdata, "streamsStarted"), count(kdata, "messagesSent"), count(kdata, "messagesReceived")), (6, 6, 5), "{client_socket:#}");
    assert_eq!(client_socket["remote"]["tcpipAddress"]["port"], served.port() as i64);

    // Ids that name nothing: NOT_FOUND; a negative id: INVALID_ARGUMENT.
    let not_found = &seen["not_found"];
    for method in ["GetServer", "GetServerSockets", "GetChannel", "GetSubchannel", "GetSocket"] {
        assert_eq!(not_found[method], "NOT_FOUND", "{method}: {not_found}");
    }
    assert_eq!(not_found["GetChannel(-1)"], "INVALID_ARGUMENT");

    // The service carries its descriptors: grpcurl describes it and calls it with JSON
    // through reflection alone.
    let described = grpcurl::run(admin.port(), None, &["describe", "grpc.channelz.v1.Channelz"]).expect_ok("describe");
    assert!(described.contains("rpc GetServerSockets ( .grpc.channelz.v1.GetServerSocketsRequest )"), "{described}");
    grpcurl::run(admin.port(), None, &["describe"]).expect_ok("describe every service");
    let servers = grpcurl::run(admin.port(), Some("{}"), &["grpc.channelz.v1.Channelz/GetServers"]).expect_ok("GetServers");
    let servers: Value = serde_json::from_str(&servers).unwrap();
    assert_eq!(count(&servers["server"][0]["data"], "callsStarted"), 6, "{servers:#}");
}
