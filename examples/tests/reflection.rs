//! Server reflection against the example servers, with peers we did not write and no
//! `.proto` file given to them (issue #14): grpcurl lists, describes and calls
//! route_guide_server and helloworld_server; grpcio's reflection client builds route
//! guide's types in a descriptor pool and calls with them; a symbol nobody declared gets
//! NOT_FOUND on both v1 and v1alpha.

use grpcore_examples::proto::routeguide::{Point, Rectangle};
use grpcore_examples::route_guide_db;
use serde_json::json;

#[path = "../../tests/support/server_process.rs"]
mod server_process;
use server_process::ServerProcess;

#[path = "../../tests/support/grpcurl.rs"]
mod grpcurl;

const ROUTE_GUIDE: &str = env!("CARGO_BIN_EXE_route_guide_server");
const HELLOWORLD: &str = env!("CARGO_BIN_EXE_helloworld_server");

const V1: &str = "grpc.reflection.v1.ServerReflection";
const V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

fn start(binary: &str) -> ServerProcess {
    ServerProcess::start(binary, &["--port", "0"], "listening on ")
}

/// Asserts that `listed` names each of `expected` (and nothing twice): the example servers
/// may serve more (a health service, say) without breaking these tests.
fn assert_lists(listed: &[String], expected: &[&str]) {
    for name in expected {
        assert!(listed.iter().any(|l| l == name), "{name} is not listed: {listed:?}");
    }
    let mut unique = listed.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), listed.len(), "a service is listed twice: {listed:?}");
}

/// The first named feature of the database: where it is, and its name.
fn a_feature() -> (Point, String) {
    let features = route_guide_db::load(route_guide_db::DEFAULT_PATH).unwrap();
    let feature = features.into_iter().find(|f| !f.name.is_empty()).unwrap();
    (feature.location.unwrap(), feature.name)
}

#[test]
fn grpcurl_lists_and_describes_route_guide() {
    let server = start(ROUTE_GUIDE);
    assert_lists(&grpcurl::list(server.port()), &[V1, V1ALPHA, "routeguide.RouteGuide"]);

    // Every service the server lists can be described (a service added to the example
    // without descriptors would fail this).
    grpcurl::run(server.port(), None, &["describe"]).expect_ok("describe (every service)");

    let service = grpcurl::describe(server.port(), "routeguide.RouteGuide");
    for line in [
        "routeguide.RouteGuide is a service:",
        "rpc GetFeature ( .routeguide.Point ) returns ( .routeguide.Feature );",
        "rpc ListFeatures ( .routeguide.Rectangle ) returns ( stream .routeguide.Feature );",
        "rpc RecordRoute ( stream .routeguide.Point ) returns ( .routeguide.RouteSummary );",
        "rpc RouteChat ( stream .routeguide.RouteNote ) returns ( stream .routeguide.RouteNote );",
    ] {
        assert!(service.lines().any(|l| l == line), "no {line:?} in:\n{service}");
    }

    let point = grpcurl::describe(server.port(), "routeguide.Point");
    assert_eq!(
        point,
        "routeguide.Point is a message:\nmessage Point {\nint32 latitude = 1;\nint32 longitude = 2;\n}"
    );
    // The reflection services describe themselves: the same messages under two packages.
    for version in ["v1", "v1alpha"] {
        let described = grpcurl::describe(server.port(), &format!("grpc.reflection.{version}.ServerReflection"));
        let line = format!(
            "rpc ServerReflectionInfo ( stream .grpc.reflection.{version}.ServerReflectionRequest ) returns ( stream .grpc.reflection.{version}.ServerReflectionResponse );"
        );
        assert!(described.lines().any(|l| l == line), "no {line:?} in:\n{described}");
    }
    // A method by its full name, too.
    let method = grpcurl::describe(server.port(), "routeguide.RouteGuide.GetFeature");
    assert!(method.contains("rpc GetFeature ( .routeguide.Point ) returns ( .routeguide.Feature );"), "{method}");
}

#[test]
fn grpcurl_calls_get_feature_and_list_features_by_reflection_alone() {
    let server = start(ROUTE_GUIDE);
    let (at, name) = a_feature();
    let got = grpcurl::call(
        server.port(),
        "routeguide.RouteGuide/GetFeature",
        &json!({"latitude": at.latitude, "longitude": at.longitude}).to_string(),
    );
    assert_eq!(
        got,
        [json!({"name": name, "location": {"latitude": at.latitude, "longitude": at.longitude}})]
    );

    let rect = Rectangle {
        lo: Some(Point { latitude: 400_000_000, longitude: -750_000_000 }),
        hi: Some(Point { latitude: 420_000_000, longitude: -730_000_000 }),
    };
    let expected: Vec<String> = route_guide_db::load(route_guide_db::DEFAULT_PATH)
        .unwrap()
        .into_iter()
        .filter(|f| !f.name.is_empty() && route_guide_db::in_range(&f.location.unwrap(), &rect))
        .map(|f| f.name)
        .collect();
    assert!(expected.len() > 10, "the rectangle holds features");
    let got = grpcurl::call(
        server.port(),
        "routeguide.RouteGuide/ListFeatures",
        &json!({
            "lo": {"latitude": 400_000_000, "longitude": -750_000_000},
            "hi": {"latitude": 420_000_000, "longitude": -730_000_000},
        })
        .to_string(),
    );
    let names: Vec<&str> = got.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, expected);
}

#[test]
fn unknown_symbols_are_not_found_on_v1_and_v1alpha() {
    let server = start(ROUTE_GUIDE);
    let failed = grpcurl::run(server.port(), None, &["describe", "no.such.Thing"]);
    assert!(!failed.ok, "describe of an unknown symbol succeeded:\n{}", failed.stdout);
    assert!(failed.stderr.contains("Symbol not found: no.such.Thing"), "{}", failed.stderr);

    for service in [V1, V1ALPHA] {
        // One stream: the unknown name, then a known file (the stream goes on after an
        // error), then the same file's symbol again (its imports are not sent twice).
        let answers = grpcurl::ask_reflection(
            server.port(),
            service,
            &[
                json!({"host": "h", "fileContainingSymbol": "no.such.Thing"}),
                json!({"fileByFilename": "nope.proto"}),
                json!({"fileContainingSymbol": "routeguide.Point"}),
                json!({"allExtensionNumbersOfType": "routeguide.Point"}),
                json!({"allExtensionNumbersOfType": "routeguide.Nope"}),
                json!({"fileContainingExtension": {"containingType": "routeguide.Point", "extensionNumber": 100}}),
                json!({"listServices": ""}),
            ],
        );
        assert_eq!(answers.len(), 7, "{service}: {answers:#?}");
        assert_eq!(answers[0]["validHost"], "h", "{service}");
        assert_eq!(answers[0]["originalRequest"]["fileContainingSymbol"], "no.such.Thing", "{service}");
        for i in [0, 1, 4, 5] {
            assert_eq!(answers[i]["errorResponse"]["errorCode"], 5, "{service}, answer {i}: {:#}", answers[i]);
        }
        assert!(
            answers[0]["errorResponse"]["errorMessage"].as_str().unwrap().contains("no.such.Thing"),
            "{service}: {:#}",
            answers[0]
        );
        let files = answers[2]["fileDescriptorResponse"]["fileDescriptorProto"].as_array().unwrap();
        assert_eq!(files.len(), 1, "{service}: route_guide.proto imports nothing");
        // A known message without extensions: its name and no numbers.
        assert_eq!(answers[3]["allExtensionNumbersResponse"]["baseTypeName"], "routeguide.Point", "{service}");
        assert!(answers[3]["allExtensionNumbersResponse"].get("extensionNumber").is_none(), "{service}");
        let listed: Vec<String> = answers[6]["listServicesResponse"]["service"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        assert_lists(&listed, &["routeguide.RouteGuide", V1, V1ALPHA]);
    }
}

#[test]
fn grpcurl_lists_describes_and_calls_helloworld() {
    let server = start(HELLOWORLD);
    assert_lists(&grpcurl::list(server.port()), &[V1, V1ALPHA, "helloworld.Greeter"]);
    let message = grpcurl::describe(server.port(), "helloworld.HelloRequest");
    assert_eq!(message, "helloworld.HelloRequest is a message:\nmessage HelloRequest {\nstring name = 1;\n}");
    let got = grpcurl::call(server.port(), "helloworld.Greeter/SayHello", r#"{"name": "reflection"}"#);
    assert_eq!(got, [json!({"message": "Hello reflection"})]);
}

#[test]
fn grpcio_reflection_client_builds_a_pool_and_calls_with_it() {
    let server = start(ROUTE_GUIDE);
    let (at, name) = a_feature();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/peers/python/reflection_client.py");
    let out = std::process::Command::new(&python)
        .args([script, &server.target(), &at.latitude.to_string(), &at.longitude.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e} (grpcio-reflection comes from scripts/setup.sh)"));
    assert!(
        out.status.success(),
        "reflection_client.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services: Vec<String> = serde_json::from_value(got["services"].clone()).unwrap();
    assert_lists(&services, &[V1, V1ALPHA, "routeguide.RouteGuide"]);
    assert_eq!(got["methods"]["GetFeature"], json!(["routeguide.Point", "routeguide.Feature"]));
    assert_eq!(got["methods"]["RouteChat"], json!(["routeguide.RouteNote", "routeguide.RouteNote"]));
    assert_eq!(got["point_fields"], json!([["latitude", 1], ["longitude", 2]]));
    assert_eq!(got["point_file"], "route_guide.proto");
    assert_eq!(got["unknown_in_pool"], "KeyError");
    assert_eq!(
        got["feature"],
        json!({"name": name, "location": {"latitude": at.latitude, "longitude": at.longitude}})
    );
    assert_eq!(got["v1alpha_unknown"], json!([5]));
    assert_eq!(got["v1_unknown"], json!([5]));
    assert_eq!(got["v1_method_files"], 1);
}
