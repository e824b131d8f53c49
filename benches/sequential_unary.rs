//! Round trips per second of sequential in-process unary calls (grpcore client and server
//! in one process, 100-byte payload), the same loop as `sequential_unary.py` runs with
//! Python grpcio. Run both side by side with `bash benches/sequential_unary.sh`.
//!
//! `cargo bench --bench sequential_unary` runs 10,000 calls; under `cargo test` it runs a
//! 100-call smoke test. Prints one line: `grpcore <calls> calls <rate> calls/s`.

use std::time::{Duration, Instant};

use grpcore::{BytesCodec, CallOptions, ChannelBuilder, Environment, Method, ServerBuilder, ServiceBuilder, Status};

const ECHO: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/bench.Echo/Echo");

fn main() {
    let calls: usize = if std::env::args().any(|a| a == "--bench") { 10_000 } else { 100 };
    let env = Environment::new(1);
    let service = ServiceBuilder::new("bench.Echo")
        .add_unary(&ECHO, |req: Vec<u8>, _ctx| async move { Ok::<_, Status>(req) })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let payload = vec![b'x'; 100];
    let call = || {
        let reply = channel
            .unary(&ECHO, &payload, CallOptions::new().timeout(Duration::from_secs(10)))
            .wait()
            .unwrap();
        assert_eq!(reply.message().len(), 100);
    };
    for _ in 0..(calls / 10).max(10) {
        call(); // warm-up: connect, fill caches
    }
    let start = Instant::now();
    for _ in 0..calls {
        call();
    }
    let secs = start.elapsed().as_secs_f64();
    println!("grpcore {calls} calls {:.0} calls/s", calls as f64 / secs);
}
