//! xDS with the bootstrap in the process environment (`GRPC_XDS_BOOTSTRAP_CONFIG`), the
//! process-wide xDS client of the core shared by a channel and an xDS-enabled server
//! (`ServerBuilder::xds(true)`), and CSDS over it.
//!
//! One test only, in a binary of its own: it sets the environment before the core or any
//! other thread of the test could read it.

mod common;

use std::collections::BTreeMap;
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
    let out = python_script("csds_client.py")
        .arg(format!("127.0.0.1:{}", csds.port()))
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "csds client failed: {stdout}");
    eprintln!("CSDS: {stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
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
    drop(server);
}
