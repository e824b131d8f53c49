//! helloworld_server and route_guide_server answer a request whose compressed flag its
//! headers do not explain (no `grpc-encoding`, or an unknown one) as a server on the
//! library's defaults does (issue #12, defect 11, which names every server binary).

use grpcore::{
    Environment, Method, ProstCodec, ServerBuilder, ServerContext, ServiceBuilder, Status,
};
use grpcore_examples::proto::helloworld::{HelloReply, HelloRequest};
use grpcore_examples::proto::routeguide::{Feature, Point};

#[path = "../../tests/support/server_process.rs"]
mod server_process;
use server_process::{same_statuses, ServerProcess};

const SAY_HELLO: Method<HelloRequest, HelloReply, ProstCodec> =
    Method::unary("/helloworld.Greeter/SayHello");
const GET_FEATURE: Method<Point, Feature, ProstCodec> =
    Method::unary("/routeguide.RouteGuide/GetFeature");

/// A server on a free port; its stdin stays open (closing it asks for a stop).
fn spawn(binary: &str) -> ServerProcess {
    ServerProcess::start(binary, &["--port", "0"], "listening on ")
}

#[test]
fn unexplained_compressed_flags_get_the_library_defaults_statuses() {
    let env = Environment::new(1);
    // References on the library's defaults, serving the same paths with the same messages.
    let reference = ServerBuilder::new(&env)
        .register_service(
            ServiceBuilder::new("helloworld.Greeter")
                .add_unary(&SAY_HELLO, |_r: HelloRequest, _c: ServerContext| async {
                    Ok::<_, Status>(HelloReply::default())
                })
                .build(),
        )
        .register_service(
            ServiceBuilder::new("routeguide.RouteGuide")
                .add_unary(&GET_FEATURE, |_r: Point, _c: ServerContext| async {
                    Ok::<_, Status>(Feature::default())
                })
                .build(),
        )
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let hello = spawn(env!("CARGO_BIN_EXE_helloworld_server"));
    same_statuses(
        "helloworld_server",
        hello.port(),
        reference.port(),
        "/helloworld.Greeter/SayHello",
    );
    let guide = spawn(env!("CARGO_BIN_EXE_route_guide_server"));
    same_statuses(
        "route_guide_server",
        guide.port(),
        reference.port(),
        "/routeguide.RouteGuide/GetFeature",
    );
}
