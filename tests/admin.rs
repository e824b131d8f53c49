//! The admin services in one call: on the application's server (grpcurl lists, describes
//! and calls through reflection), and on an address of their own, where the trace switch
//! turns the core's tracers on and off while calls run.

mod common;
#[path = "support/grpcurl.rs"]
mod grpcurl;

use std::sync::{Mutex, Once};
use std::time::Duration;

use common::*;
use grpcore::admin::v1::core_trace_grpc::CoreTraceClient;
use grpcore::admin::v1::SetTraceRequest;
use grpcore::admin::Admin;
use grpcore::{CallOptions, ChannelBuilder, Environment, ServerBuilder};
use serde_json::Value;

static CORE_LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if record.target() == "grpc_core" {
            CORE_LINES.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn capture_core_log() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// Lines of the core's `api` tracer logged while `f` ran.
fn api_trace_lines(f: impl FnOnce()) -> usize {
    let before = CORE_LINES.lock().unwrap().len();
    f();
    CORE_LINES.lock().unwrap()[before..].iter().filter(|l| l.contains("grpc_call_start_batch")).count()
}

#[test]
fn admin_services_on_the_applications_server() {
    let env = Environment::new(1);
    let health = grpcore::health::HealthReporter::new();
    health.set_status(SERVICE, grpcore::health::ServingStatus::Serving);
    let server = Admin::new()
        .health(&health)
        .register(ServerBuilder::new(&env).register_service(echo_service()))
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let listed = grpcurl::run(server.port(), None, &["list"]).expect_ok("list");
    for service in [
        "grpc.channelz.v1.Channelz",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        SERVICE,
    ] {
        assert!(listed.lines().any(|l| l == service), "{service} not in {listed}");
    }
    assert!(!listed.contains("grpcore.admin.v1.CoreTrace"), "the trace switch is off unless asked for: {listed}");
    // With xDS: the configuration as JSON, "{}" in a process without a bootstrap.
    #[cfg(feature = "xds")]
    {
        assert!(listed.lines().any(|l| l == "grpcore.admin.v1.XdsConfig"), "{listed}");
        if std::env::var_os("GRPC_XDS_BOOTSTRAP").is_none() && std::env::var_os("GRPC_XDS_BOOTSTRAP_CONFIG").is_none() {
            let replies = grpcurl::call(server.port(), "grpcore.admin.v1.XdsConfig/Get", "{}");
            assert_eq!(replies, [serde_json::json!({"json": "{}"})]);
        }
    }
    let check = grpcurl::run(server.port(), Some(&format!(r#"{{"service": "{SERVICE}"}}"#)), &["grpc.health.v1.Health/Check"]).expect_ok("Check");
    assert!(check.contains("\"SERVING\""), "{check}");
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    channel.unary(&UNARY, &request("x", 1), CallOptions::new().timeout(Duration::from_secs(20))).wait().unwrap();
    let servers = grpcurl::run(server.port(), Some("{}"), &["grpc.channelz.v1.Channelz/GetServers"]).expect_ok("GetServers");
    let servers: Value = serde_json::from_str(&servers).unwrap();
    // This server, as channelz lists it: the echo call, and the grpcurl calls so far (list
    // and this one at least) counted too.
    let ours = servers["server"].as_array().unwrap().iter().any(|s| {
        s["data"]["callsSucceeded"].as_str().and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n >= 2)
    });
    assert!(ours, "{servers:#}");
}

#[test]
fn the_trace_switch_on_an_admin_socket_turns_core_tracers_on_and_off() {
    capture_core_log();
    let env = Environment::new(1);
    let app = start_echo_server(&env);
    let path = fresh_unix_address("admin");
    let admin = Admin::new().trace_switch(true).serve(&env, &path).unwrap();
    let switch = CoreTraceClient::new(ChannelBuilder::new(&env).connect(&path).unwrap());
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", app.port())).unwrap();
    let call = || {
        channel.unary(&UNARY, &request("x", 1), CallOptions::new().timeout(Duration::from_secs(20))).wait().unwrap();
    };
    call();
    assert_eq!(api_trace_lines(call), 0, "the api tracer starts off");

    let on = SetTraceRequest { enable: vec!["api".into(), "no_such_tracer".into()], disable: vec![] };
    let reply = switch.set(on).wait().unwrap();
    assert_eq!(reply.unknown, vec!["no_such_tracer".to_string()]);
    assert!(api_trace_lines(call) > 0, "the api tracer logs the call's batches once on");

    let off = SetTraceRequest { enable: vec![], disable: vec!["api".into()] };
    assert!(switch.set(off).wait().unwrap().unknown.is_empty());
    assert_eq!(api_trace_lines(call), 0, "and nothing once off again");
    drop(admin);
}

#[test]
fn the_trace_switch_through_grpcurl_and_reflection() {
    let env = Environment::new(1);
    let admin = Admin::new().trace_switch(true).serve(&env, "127.0.0.1:0").unwrap();
    let described = grpcurl::run(admin.port(), None, &["describe", "grpcore.admin.v1.CoreTrace"]).expect_ok("describe");
    assert!(described.contains("rpc Set ( .grpcore.admin.v1.SetTraceRequest )"), "{described}");
    let reply = grpcurl::run(admin.port(), Some(r#"{"enable": ["bogus_tracer"]}"#), &["grpcore.admin.v1.CoreTrace/Set"]).expect_ok("Set");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["unknown"], serde_json::json!(["bogus_tracer"]));
}
