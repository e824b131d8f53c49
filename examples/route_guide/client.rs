//! RouteGuide client: calls each of the four methods of `routeguide.RouteGuide` once with
//! fixed input and prints what comes back, one fact per line, so runs against different
//! servers (ours, Python grpcio's) can be compared line by line.
//!
//! ```text
//! cargo run -p grpcore-examples --bin route_guide_client -- [--target HOST:PORT] [--db PATH]
//! ```
//!
//! The points it asks about come from the feature database (`--db`, the server's by
//! default). `RouteGuideClient` is generated from `route_guide.proto` by `build.rs`; the
//! unary call blocks with `.wait()`, the streaming calls are awaited (under
//! `futures::executor::block_on`: any executor works).

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use grpcore::{ChannelBuilder, Environment};
use grpcore_examples::proto::routeguide::route_guide_grpc::RouteGuideClient;
use grpcore_examples::proto::routeguide::{Feature, Point, Rectangle, RouteNote};
use grpcore_examples::route_guide_db;

const TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("route_guide_client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn point(latitude: i32, longitude: i32) -> Point {
    Point {
        latitude,
        longitude,
    }
}

fn show(p: &Point) -> String {
    format!("{},{}", p.latitude, p.longitude)
}

fn run() -> Result<(), Box<dyn Error>> {
    let args = grpcore_examples::parse_args(
        "route_guide_client",
        &[
            ("target", "127.0.0.1:50051"),
            ("db", route_guide_db::DEFAULT_PATH),
        ],
    )?;
    let features = route_guide_db::load(&args[1])?;
    let at = |i: usize| features[i].location.unwrap_or_default();
    let env = Environment::new(1);
    let client = RouteGuideClient::new(ChannelBuilder::new(&env).connect(&args[0])?);

    // GetFeature: a named feature, a known place without a name, and nowhere.
    for p in [at(0), at(3), point(0, 0)] {
        let feature = client
            .get_feature(p)
            .timeout(TIMEOUT)
            .wait_for_ready(true)
            .wait()?;
        match feature.name.as_str() {
            "" => println!("get_feature {}: no feature", show(&p)),
            name => println!("get_feature {}: {name:?}", show(&p)),
        }
    }

    futures::executor::block_on(async {
        // ListFeatures: everything named in the south-west quarter of the map.
        let rect = Rectangle {
            lo: Some(point(400_000_000, -750_000_000)),
            hi: Some(point(405_000_000, -745_000_000)),
        };
        println!(
            "list_features {} to {}:",
            show(&rect.lo.unwrap()),
            show(&rect.hi.unwrap())
        );
        let mut stream = client.list_features(rect).timeout(TIMEOUT).start();
        let mut count = 0;
        while let Some(feature) = stream.next().await {
            let Feature { name, location } = feature?;
            println!("  {name:?} at {}", show(&location.unwrap_or_default()));
            count += 1;
        }
        println!("list_features: {count} features");

        // RecordRoute: features and plain points, named and not.
        let route = [
            at(0),
            at(5),
            point(400_500_000, -745_000_000),
            at(10),
            at(3),
            at(20),
            point(401_000_000, -749_000_000),
            at(30),
        ];
        let (mut sink, summary) = client.record_route().timeout(TIMEOUT).start();
        for p in route {
            sink.send(p).await?;
        }
        sink.close().await?;
        let summary = summary.await?;
        println!("record_route: sent {} points", route.len());
        println!(
            "record_route: point_count={} feature_count={} distance={}",
            summary.point_count, summary.feature_count, summary.distance
        );

        // RouteChat: notes at three places; each note brings back the earlier ones left there.
        let notes = [
            ("First message", point(0, 0)),
            ("Second message", point(0, 1)),
            ("Third message", point(1, 0)),
            ("Fourth message", point(0, 0)),
            ("Fifth message", point(0, 1)),
            ("Sixth message", point(0, 0)),
        ];
        let (mut sink, mut stream) = client.route_chat().timeout(TIMEOUT).start();
        for (message, location) in notes {
            sink.send(RouteNote {
                location: Some(location),
                message: message.to_string(),
            })
            .await?;
        }
        sink.close().await?;
        while let Some(note) = stream.next().await {
            let note = note?;
            println!(
                "route_chat: got {:?} at {}",
                note.message,
                show(&note.location.unwrap_or_default())
            );
        }
        println!("route_chat: done");
        Ok::<_, Box<dyn Error>>(())
    })
}
