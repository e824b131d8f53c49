//! Name resolution and load balancing by the core: `ipv4:` lists with `round_robin` and
//! `pick_first`, `dns:` and `unix:` targets.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use grpcore::{CallOptions, ChannelBuilder, Environment, Server, ServerBuilder, ServiceBuilder, Status};

/// A server whose Unary method answers with its own name.
fn named_server(env: &Environment, name: &str, addr: &str) -> Server {
    let name = name.to_string();
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, _ctx| {
            let name = name.clone();
            async move {
                Ok::<_, Status>(EchoResponse {
                    message: name,
                    seq: req.seq,
                    payload: Vec::new(),
                })
            }
        })
        .build();
    ServerBuilder::new(env).register_service(service).bind(addr).build().unwrap()
}

fn three_servers(env: &Environment) -> (Vec<Server>, String) {
    let servers: Vec<Server> = ["a", "b", "c"].iter().map(|n| named_server(env, n, "127.0.0.1:0")).collect();
    let addrs: Vec<String> = servers.iter().map(|s| format!("127.0.0.1:{}", s.port())).collect();
    (servers, format!("ipv4:{}", addrs.join(",")))
}

/// Makes `n` calls, one after another, and counts the answers per server name.
fn spread(channel: &grpcore::Channel, n: i64) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let opts = CallOptions::new().wait_for_ready(true).timeout(Duration::from_secs(10));
        let reply = channel.unary(&UNARY, &request("who", i), opts).wait().unwrap();
        assert_eq!(reply.message().seq, i);
        *counts.entry(reply.into_message().message).or_default() += 1;
    }
    counts
}

fn connected(channel: &grpcore::Channel) {
    futures::executor::block_on(channel.wait_for_connected(Instant::now() + Duration::from_secs(10))).unwrap();
}

#[test]
fn round_robin_spreads_calls_over_every_address() {
    let env = Environment::new(2);
    let (_servers, target) = three_servers(&env);
    let channel = ChannelBuilder::new(&env).load_balancing_policy("round_robin").connect(&target).unwrap();
    connected(&channel);
    let counts = spread(&channel, 300);
    assert_eq!(counts.len(), 3, "{counts:?}");
    // Strict rotation once all three are connected; the first calls may go to the servers
    // that connected first.
    for (name, n) in &counts {
        assert!((80..=120).contains(n), "server {name} got {n} of 300: {counts:?}");
    }
}

#[test]
fn round_robin_from_the_service_config_beats_the_channel_argument() {
    let env = Environment::new(2);
    let (_servers, target) = three_servers(&env);
    let channel = ChannelBuilder::new(&env)
        .load_balancing_policy("pick_first")
        .service_config(r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#)
        .connect(&target)
        .unwrap();
    connected(&channel);
    let counts = spread(&channel, 300);
    assert_eq!(counts.len(), 3, "{counts:?}");
}

#[test]
fn pick_first_sticks_to_the_first_address_and_fails_over() {
    let env = Environment::new(2);
    let (mut servers, target) = three_servers(&env);
    for channel in [
        ChannelBuilder::new(&env).connect(&target).unwrap(), // pick_first is the default
        ChannelBuilder::new(&env).load_balancing_policy("pick_first").connect(&target).unwrap(),
    ] {
        connected(&channel);
        let counts = spread(&channel, 300);
        assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![("a".to_string(), 300)]);
    }
    // With "a" gone, the channel moves on to the next address that works.
    let channel = ChannelBuilder::new(&env).load_balancing_policy("pick_first").connect(&target).unwrap();
    connected(&channel);
    futures::executor::block_on(servers.remove(0).shutdown(Duration::ZERO)).unwrap();
    let counts = spread(&channel, 50);
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![("b".to_string(), 50)]);
}

#[test]
fn unknown_lb_policy_falls_back_to_pick_first() {
    let env = Environment::new(1);
    let (_servers, target) = three_servers(&env);
    let channel = ChannelBuilder::new(&env).load_balancing_policy("no_such_policy").connect(&target).unwrap();
    let counts = spread(&channel, 30);
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![("a".to_string(), 30)]);
}

#[test]
fn dns_target_resolves_localhost() {
    let env = Environment::new(1);
    let server = named_server(&env, "dns", "127.0.0.1:0");
    for target in [format!("dns:///localhost:{}", server.port()), format!("dns:localhost:{}", server.port())] {
        let channel = ChannelBuilder::new(&env).connect(&target).unwrap();
        let counts = spread(&channel, 3);
        assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![("dns".to_string(), 3)], "{target}");
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = std::env::temp_dir().join(format!("grpcore-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn unix_socket_targets_round_trip() {
    let env = Environment::new(1);
    let dir = TempDir::new("uds");
    let path = dir.0.join("echo.sock");
    let path = path.to_str().unwrap();
    let server = named_server(&env, "uds", &format!("unix:{path}"));
    assert!(std::path::Path::new(path).exists(), "the server made its socket file");
    for target in [format!("unix:{path}"), format!("unix://{path}")] {
        let channel = ChannelBuilder::new(&env).connect(&target).unwrap();
        let counts = spread(&channel, 3);
        assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![("uds".to_string(), 3)], "{target}");
    }
    drop(server);
}

#[test]
fn unix_abstract_socket_round_trips() {
    let env = Environment::new(1);
    let name = format!("grpcore-test-{}-{:?}", std::process::id(), std::thread::current().id());
    let _server = named_server(&env, "abstract", &format!("unix-abstract:{name}"));
    let channel = ChannelBuilder::new(&env).connect(&format!("unix-abstract:{name}")).unwrap();
    let counts = spread(&channel, 3);
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![("abstract".to_string(), 3)]);
}
