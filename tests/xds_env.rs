//! xDS with the bootstrap in the process environment (`GRPC_XDS_BOOTSTRAP_CONFIG`), the
//! process-wide xDS client of the core shared by a channel and an xDS-enabled server
//! (`ServerBuilder::xds(true)`), and CSDS over it, in binary and as JSON (checked against
//! protobuf's own JSON mapping of the same bytes), ACKed and NACKed.
//!
//! One test only, in a binary of its own: it sets the environment before the core or any
//! other thread of the test could read it.

mod common;
#[cfg(feature = "admin")]
#[path = "support/grpcurl.rs"]
mod grpcurl;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use common::*;
use grpcore::xds::XdsBootstrap;
use grpcore::{CallOptions, ChannelBuilder, Environment, ServerBuilder, ServiceBuilder, Status};

#[test]
fn environment_bootstrap_serves_xds_channels_and_csds_reports_them() {
    // The backend's port must be in the control plane's configuration, and the control
    // plane's port in the bootstrap: reserve the backend's port first.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = reserved.local_addr().unwrap().port();
    // And an xDS-enabled server (ServerBuilder::xds(true)) on the same bootstrap.
    let xds_server_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let template = "grpc/server?xds.resource.listening_address=%s";
    let listener = template.replace("%s", &format!("127.0.0.1:{xds_server_port}"));
    let config = format!(
        r#"{{"services": {{"echo": {{"echo-c": 1}}}}, "clusters": {{"echo-c": ["127.0.0.1:{backend_port}"]}},
            "server_listeners": {{"{listener}": "127.0.0.1:{xds_server_port}"}}}}"#
    )
    .replace('\n', " ");
    let plane = python_peer_server("xds_control_plane.py", &[&config]);
    let bootstrap = XdsBootstrap::new()
        .server(&format!("127.0.0.1:{}", plane.port))
        .node_id("grpcore-env")
        .server_listener_resource_name_template(template)
        .to_json()
        .unwrap();
    // Before any Environment exists: nothing in this process reads the environment yet.
    std::env::remove_var("GRPC_XDS_BOOTSTRAP");
    std::env::set_var("GRPC_XDS_BOOTSTRAP_CONFIG", &bootstrap);

    let env = Environment::new(2);
    drop(reserved);
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, |req: EchoRequest, _ctx| async move {
            Ok::<_, Status>(EchoResponse { message: "c".into(), seq: req.seq, payload: Vec::new() })
        })
        .build();
    let server =
        ServerBuilder::new(&env).register_service(service).bind(format!("127.0.0.1:{backend_port}")).build().unwrap();

    // No bootstrap on the builder: the check at connect reads the environment and passes.
    let channel = ChannelBuilder::new(&env).connect("xds:///echo").unwrap();
    let mut counts = BTreeMap::<String, usize>::new();
    for i in 0..20 {
        let opts = CallOptions::new().wait_for_ready(true).timeout(Duration::from_secs(10));
        let reply = channel.unary(&UNARY, &request("who", i), opts).wait().unwrap();
        *counts.entry(reply.into_message().message).or_default() += 1;
    }
    assert_eq!(counts.get("c"), Some(&20), "{counts:?}");

    // The xDS-enabled server, configured from the environment's bootstrap.
    let serving = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = serving.clone();
    let _xds_server = ServerBuilder::new(&env)
        .xds(true)
        .on_xds_serving_status(move |_, status| flag.store(status.is_ok(), std::sync::atomic::Ordering::SeqCst))
        .register_service(common::echo_service())
        .bind(format!("127.0.0.1:{xds_server_port}"))
        .build()
        .unwrap();
    let direct = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{xds_server_port}")).unwrap();
    let opts = CallOptions::new().wait_for_ready(true).timeout(Duration::from_secs(10));
    assert_eq!(direct.unary(&UNARY, &request("xds(true)", 1), opts).wait().unwrap().into_message().message, "xds(true)");
    assert!(serving.load(std::sync::atomic::Ordering::SeqCst));

    // CSDS, served by grpcore, read by a CSDS client built on the envoy protos.
    assert!(!grpcore::xds::client_config(&env).is_empty());
    // With the admin feature, through the admin server (which includes CSDS); else alone.
    #[cfg(feature = "admin")]
    let csds = grpcore::admin::Admin::new().serve(&env, "127.0.0.1:0").unwrap();
    #[cfg(not(feature = "admin"))]
    let csds = ServerBuilder::new(&env).register_service(grpcore::xds::csds_service(&env)).bind("127.0.0.1:0").build().unwrap();
    let csds_port = csds.port();
    let fetch_csds = move || {
        let out = python_script("csds_client.py")
            .arg(format!("127.0.0.1:{csds_port}"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "csds client failed: {stdout}");
        serde_json::from_str::<serde_json::Value>(stdout.trim()).unwrap()
    };
    let report = fetch_csds();
    eprintln!("CSDS: {report}");
    assert_eq!(report["node"], "grpcore-env");
    let resources: Vec<(String, String, String)> = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let kind = r[0].as_str().unwrap().rsplit('.').next().unwrap().to_string();
            (kind, r[1].as_str().unwrap().to_string(), r[2].as_str().unwrap().to_string())
        })
        .collect();
    for (kind, name) in [("Listener", "echo"), ("Listener", listener.as_str()), ("RouteConfiguration", "route-echo"), ("Cluster", "echo-c"), ("ClusterLoadAssignment", "echo-c")] {
        assert!(
            resources.contains(&(kind.to_string(), name.to_string(), "ACKED".to_string())),
            "{kind} {name} not ACKED in {resources:?}"
        );
    }

    // The same view as JSON (client_config_json): every resource ACKED at version 1, its
    // type URL, and the resource's own type and name decoded from its bytes.
    let (json, protobuf_json) = both_jsons(&env);
    assert_eq!(json["node"]["id"], "grpcore-env", "{json}");
    for (kind, name) in [("Listener", "echo"), ("Listener", listener.as_str()), ("RouteConfiguration", "route-echo"), ("Cluster", "echo-c"), ("ClusterLoadAssignment", "echo-c")] {
        let entry = resource(&json, kind, name);
        let type_url = format!("type.googleapis.com/{}.{kind}", package_of(kind));
        assert_eq!(entry["typeUrl"], type_url.as_str(), "{entry}");
        assert_eq!(entry["clientStatus"], "ACKED", "{entry}");
        assert_eq!(entry["versionInfo"], "1", "{entry}");
        assert!(entry.get("errorState").is_none(), "{entry}");
        assert_eq!(entry["xdsConfig"]["@type"], type_url.as_str(), "{entry}");
        let name_key = if kind == "ClusterLoadAssignment" { "clusterName" } else { "name" };
        assert_eq!(entry["xdsConfig"][name_key], name, "{entry}");
        assert!(entry["xdsConfig"]["value"].as_str().is_some_and(|v| v.len() > 4), "{entry}");
        assert!(entry["lastUpdated"].as_str().is_some_and(|t| t.len() >= 20 && t.ends_with('Z')), "{entry}");
    }
    // Field for field what protobuf's own JSON mapping (Python) makes of the same bytes,
    // the resources aside.
    assert_eq!(without_resources(&json), protobuf_json, "grpcore's JSON differs from protobuf's");
    // The same JSON from the admin server, to grpcurl (which learns the method by reflection).
    #[cfg(feature = "admin")]
    {
        let replies = grpcurl::call(csds_port, "grpcore.admin.v1.XdsConfig/Get", "{}");
        assert_eq!(replies.len(), 1, "{replies:?}");
        let served: serde_json::Value = serde_json::from_str(replies[0]["json"].as_str().unwrap()).unwrap();
        // Another dump: the update times may differ in their last digits (see both_jsons).
        let names = |j: &serde_json::Value| -> Vec<(String, String, String)> {
            j["genericXdsConfigs"].as_array().unwrap().iter().map(|r| {
                (r["typeUrl"].to_string(), r["name"].to_string(), r["clientStatus"].to_string())
            }).collect()
        };
        assert_eq!(names(&served), names(&json), "{served}");
        assert_eq!(served["node"], json["node"]);
    }

    // A RouteConfiguration the 1.51 core rejects (a StringMatcher header matcher): the
    // client NACKs it, keeps version 1 of it (calls still work), and the JSON says why.
    let mut plane = plane;
    let nacked = config.replace(r#"{"echo-c": 1}"#, r#"{"routes": [{"header": ["x-a", "b"], "string_match": true, "split": {"echo-c": 1}}, {"split": {"echo-c": 1}}]}"#);
    assert_ne!(nacked, config);
    let stdin = plane.child.stdin.as_mut().unwrap();
    stdin.write_all(format!("{nacked}\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    let start = std::time::Instant::now();
    let route = loop {
        let json = client_config_json(&env);
        let route = resource(&json, "RouteConfiguration", "route-echo").clone();
        if route["clientStatus"] == "NACKED" || start.elapsed() > Duration::from_secs(10) {
            eprintln!("CSDS JSON after the NACK ({:?}): {json}", start.elapsed());
            break route;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(route["clientStatus"], "NACKED", "{route}");
    assert_eq!(route["versionInfo"], "1", "the last good version stays: {route}");
    let error = &route["errorState"];
    assert_eq!(error["versionInfo"], "2", "{route}");
    assert!(error["details"].as_str().is_some_and(|d| d.contains("header matcher")), "{route}");
    assert!(error["lastUpdateAttempt"].as_str().is_some_and(|t| t.ends_with('Z')), "{route}");
    let (json, protobuf_json) = both_jsons(&env);
    // The Listener came again unchanged in version 2: the 1.51 core ignores an identical
    // resource ("identical to current, ignoring"), version and time included.
    assert_eq!(resource(&json, "Listener", "echo")["versionInfo"], "1", "{json}");
    assert_eq!(resource(&json, "Listener", "echo")["clientStatus"], "ACKED", "{json}");
    let opts = CallOptions::new().wait_for_ready(true).timeout(Duration::from_secs(10));
    assert_eq!(channel.unary(&UNARY, &request("who", 99), opts).wait().unwrap().into_message().message, "c");
    assert_eq!(without_resources(&json), protobuf_json, "grpcore's JSON differs from protobuf's after the NACK");
    assert_eq!(fetch_csds()["client_config"]["genericXdsConfigs"].as_array().map(Vec::len), Some(5));
    drop(server);
}

fn client_config_json(env: &Environment) -> serde_json::Value {
    let text = grpcore::xds::client_config_json(env).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// One dump of the process's xDS client as JSON twice: by `client_config_to_json`, and by
/// protobuf's own JSON mapping (Python, the resources left out). The core converts each
/// resource's update time to wall-clock time anew for every dump (the nanoseconds differ
/// from one dump to the next), so both must read the same bytes.
fn both_jsons(env: &Environment) -> (serde_json::Value, serde_json::Value) {
    use std::process::Stdio;
    let bytes = grpcore::xds::client_config(env);
    let text = grpcore::xds::client_config_to_json(&bytes).unwrap();
    let ours: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let mut child = python_script("csds_client.py")
        .arg("--decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "csds_client.py --decode failed: {stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    (ours, report["client_config"].clone())
}

fn package_of(kind: &str) -> &'static str {
    match kind {
        "Listener" => "envoy.config.listener.v3",
        "RouteConfiguration" => "envoy.config.route.v3",
        "Cluster" => "envoy.config.cluster.v3",
        _ => "envoy.config.endpoint.v3",
    }
}

/// The entry of `genericXdsConfigs` for the resource `kind` (the type's last part) `name`.
fn resource<'a>(json: &'a serde_json::Value, kind: &str, name: &str) -> &'a serde_json::Value {
    json["genericXdsConfigs"]
        .as_array()
        .unwrap_or_else(|| panic!("no genericXdsConfigs: {json}"))
        .iter()
        .find(|r| r["name"] == name && r["typeUrl"].as_str().is_some_and(|t| t.ends_with(&format!(".{kind}"))))
        .unwrap_or_else(|| panic!("no {kind} {name} in {json}"))
}

/// The JSON without the resources (`xdsConfig`, `errorState.failedConfiguration`).
fn without_resources(json: &serde_json::Value) -> serde_json::Value {
    let mut json = json.clone();
    for r in json["genericXdsConfigs"].as_array_mut().unwrap() {
        let r = r.as_object_mut().unwrap();
        r.remove("xdsConfig");
        if let Some(e) = r.get_mut("errorState").and_then(|e| e.as_object_mut()) {
            e.remove("failedConfiguration");
        }
    }
    json
}
