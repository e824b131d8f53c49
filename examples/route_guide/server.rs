//! RouteGuide server: the standard gRPC example service (`routeguide.RouteGuide`, all four
//! kinds of method) over the features of `route_guide_db.json`.
//!
//! ```text
//! cargo run -p grpcore-examples --bin route_guide_server -- [--port N] [--db PATH]
//! ```
//!
//! Listens on 127.0.0.1 (port 50051 unless `--port` says otherwise; 0 picks a free one),
//! prints `listening on 127.0.0.1:<port>`, and serves until SIGTERM or SIGINT arrives or its
//! standard input ends; then it shuts down gracefully (calls in flight get 5 seconds) and
//! exits 0.
//! It also serves the standard health service (`grpc.health.v1.Health`): `""` and
//! `routeguide.RouteGuide` are `SERVING` while it runs and turn `NOT_SERVING` when it starts
//! shutting down, before it stops accepting calls.
//! The `RouteGuide` trait it implements is generated from `route_guide.proto` by `build.rs`.

use std::collections::HashMap;
use std::error::Error;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use grpcore::health::{HealthReporter, ServingStatus};
use grpcore::{
    Environment, RequestStream, ServerBuilder, ServerContext, ServerSink, Status,
};
use grpcore_examples::proto::routeguide::route_guide_grpc::{self, RouteGuide};
use grpcore_examples::proto::routeguide::{Feature, Point, Rectangle, RouteNote, RouteSummary};
use grpcore_examples::route_guide_db::{self, distance, in_range};
use grpcore_examples::signals::StopSignals;

/// How long calls in flight may run once a stop was asked for.
const GRACE: Duration = Duration::from_secs(5);

/// The service's state: the features, and the notes left so far (by every client).
struct Guide {
    features: Vec<Feature>,
    notes: Mutex<HashMap<(i32, i32), Vec<RouteNote>>>,
}

impl Guide {
    /// The named feature at `point`, if there is one.
    fn named_feature_at(&self, point: &Point) -> Option<&Feature> {
        self.features
            .iter()
            .find(|f| f.location.as_ref() == Some(point) && !f.name.is_empty())
    }
}

impl RouteGuide for Guide {
    async fn get_feature(&self, point: Point, _ctx: ServerContext) -> Result<Feature, Status> {
        Ok(self.named_feature_at(&point).cloned().unwrap_or(Feature {
            name: String::new(),
            location: Some(point),
        }))
    }

    async fn list_features(
        &self,
        rect: Rectangle,
        mut sink: ServerSink<Feature>,
        _ctx: ServerContext,
    ) -> Result<(), Status> {
        for feature in &self.features {
            let location = feature.location.unwrap_or_default();
            if !feature.name.is_empty() && in_range(&location, &rect) {
                // The sink takes one message at a time: a slow client slows this loop down.
                sink.send(feature.clone()).await?;
            }
        }
        Ok(())
    }

    async fn record_route(
        &self,
        mut points: RequestStream<Point>,
        _ctx: ServerContext,
    ) -> Result<RouteSummary, Status> {
        let start = Instant::now();
        let mut summary = RouteSummary::default();
        let mut previous: Option<Point> = None;
        while let Some(point) = points.message().await? {
            summary.point_count += 1;
            if self.named_feature_at(&point).is_some() {
                summary.feature_count += 1;
            }
            if let Some(previous) = previous {
                summary.distance += distance(&previous, &point);
            }
            previous = Some(point);
        }
        summary.elapsed_time = start.elapsed().as_secs() as i32;
        Ok(summary)
    }

    async fn route_chat(
        &self,
        mut notes: RequestStream<RouteNote>,
        mut sink: ServerSink<RouteNote>,
        _ctx: ServerContext,
    ) -> Result<(), Status> {
        while let Some(note) = notes.message().await? {
            let location = note.location.unwrap_or_default();
            let earlier = {
                let mut all = self.notes.lock().unwrap_or_else(|e| e.into_inner());
                let here = all
                    .entry((location.latitude, location.longitude))
                    .or_default();
                let earlier = here.clone();
                here.push(note);
                earlier
            };
            for note in earlier {
                sink.send(note).await?;
            }
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("route_guide_server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    // Before any thread starts, so that every thread inherits the blocked signals.
    let signals = StopSignals::block()?;
    let args = grpcore_examples::parse_args(
        "route_guide_server",
        &[("port", "50051"), ("db", route_guide_db::DEFAULT_PATH)],
    )?;
    let port: u16 = args[0]
        .parse()
        .map_err(|_| format!("--port {:?} is not a port number (0 to 65535)", args[0]))?;
    let guide = Guide {
        features: route_guide_db::load(&args[1])?,
        notes: Mutex::default(),
    };
    let env = Environment::new(1);
    // Health: the server as a whole ("") starts SERVING; say so for the route guide too.
    let health = HealthReporter::new();
    health.set_status(route_guide_grpc::SERVICE_NAME, ServingStatus::Serving);
    let server = ServerBuilder::new(&env)
        .register_service(health.service())
        .register_service(route_guide_grpc::service(guide))
        // grpcurl and other reflection clients can list and call it without the .proto.
        .add_reflection()
        .bind(format!("127.0.0.1:{port}"))
        .build()?;
    println!("listening on 127.0.0.1:{}", server.port());
    io::stdout().flush()?;
    // Serves until a signal, or until stdin ends (which asks for a stop the same way).
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        StopSignals::request_stop("standard input closed");
    });
    let why = signals.wait()?;
    eprintln!("route_guide_server: {why}: shutting down, calls in flight get {GRACE:?}");
    server.shutdown(GRACE).wait()?;
    Ok(())
}
