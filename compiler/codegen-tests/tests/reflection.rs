//! Server reflection of services generated with rust-protobuf messages (issue #14): the
//! tricky set's `Type` and `Result`, whose file imports another package's file and four
//! well-known types, served with `add_reflection()` and nothing else, then listed,
//! described and called by grpcurl in JSON with no `.proto` given to it. And every
//! generated service module, with either codec, carries its file's descriptor and all the
//! files that one imports.

use std::time::Duration;

use grpcore::{Environment, Server, ServerBuilder, ServerContext, ServerSink, Status};
use grpcore_codegen_tests::protobuf_gen::common::point::{Colour, Label};
use grpcore_codegen_tests::protobuf_gen::common::Point;
use grpcore_codegen_tests::protobuf_gen::services::Self_;
use grpcore_codegen_tests::protobuf_gen::{result_grpc, type_grpc};
use grpcore_codegen_tests::prost_gen;
use protobuf::well_known_types::empty::Empty;
use protobuf::{EnumOrUnknown, Message};
use serde_json::json;

#[path = "../../../tests/support/grpcurl.rs"]
mod grpcurl;

struct Impl;

impl type_grpc::Type for Impl {
    async fn r#match(&self, mut request: Self_, _ctx: ServerContext) -> Result<Self_, Status> {
        request.value = request.value.to_uppercase();
        Ok(request)
    }

    async fn r#box(&self, _request: Empty, mut sink: ServerSink<Label>, _ctx: ServerContext) -> Result<(), Status> {
        for text in ["a", "b"] {
            let mut label = Label::new();
            label.text = text.into();
            label.colour = EnumOrUnknown::new(Colour::COLOUR_RED);
            sink.send(label).await?;
        }
        Ok(())
    }
}

struct Stepper;

impl result_grpc::Result for Stepper {
    async fn step(&self, mut p: Point, _ctx: ServerContext) -> Result<Point, Status> {
        p.x += 1;
        Ok(p)
    }
}

fn serve(env: &Environment) -> Server {
    ServerBuilder::new(env)
        .add_reflection()
        .register_service(type_grpc::service(Impl))
        .register_service(result_grpc::service(Stepper))
        .bind("127.0.0.1:0")
        .build()
        .expect("start the server")
}

/// The names of the files in `descriptors`, in order.
fn names(descriptors: &[&[u8]]) -> Vec<String> {
    descriptors
        .iter()
        .map(|d| protobuf::descriptor::FileDescriptorProto::parse_from_bytes(d).unwrap().name().to_string())
        .collect()
}

#[test]
fn service_modules_carry_their_file_and_its_imports() {
    let expected = [
        "grpcore/tricky/services.proto",
        "google/protobuf/any.proto",
        "google/protobuf/empty.proto",
        "google/protobuf/struct.proto",
        "google/protobuf/timestamp.proto",
        "grpcore/tricky/common.proto",
    ];
    assert_eq!(names(type_grpc::FILE_DESCRIPTORS), expected);
    assert_eq!(names(result_grpc::FILE_DESCRIPTORS), expected);
    assert_eq!(names(prost_gen::grpcore::tricky::r#async::type_grpc::FILE_DESCRIPTORS), expected);
}

#[test]
fn grpcurl_lists_describes_and_calls_rust_protobuf_services() {
    let env = Environment::new(1);
    let server = serve(&env);
    let port = server.port();
    assert_eq!(
        grpcurl::list(port),
        [
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "grpcore.tricky.async.Result",
            "grpcore.tricky.async.Type",
        ]
    );

    let service = grpcurl::describe(port, "grpcore.tricky.async.Type");
    for line in [
        "rpc Match ( .grpcore.tricky.async.Self ) returns ( .grpcore.tricky.async.Self );",
        "rpc Box ( .google.protobuf.Empty ) returns ( stream .grpcore.tricky.common.Point.Label );",
        "rpc Collect ( stream .google.protobuf.Any ) returns ( .google.protobuf.Struct );",
    ] {
        assert!(service.lines().any(|l| l == line), "no {line:?} in:\n{service}");
    }
    // A nested message, a nested enum and a field, each by its full name.
    let label = grpcurl::describe(port, "grpcore.tricky.common.Point.Label");
    assert!(label.contains("message Label {\nstring text = 1;\n.grpcore.tricky.common.Point.Colour colour = 2;\n}"), "{label}");
    let colour = grpcurl::describe(port, "grpcore.tricky.common.Point.Colour");
    assert!(colour.contains("enum Colour {\nCOLOUR_UNSPECIFIED = 0;\nCOLOUR_RED = 1;\n}"), "{colour}");
    let field = grpcurl::describe(port, "grpcore.tricky.async.Self.at");
    assert!(field.contains("is a field") && field.contains(".google.protobuf.Timestamp at = 3;"), "{field}");

    assert_eq!(
        grpcurl::call(port, "grpcore.tricky.async.Result/Step", r#"{"x": 1, "y": 2}"#),
        [json!({"x": 2, "y": 2})]
    );
    // A well-known type in JSON form: grpcurl resolved google/protobuf/timestamp.proto.
    assert_eq!(
        grpcurl::call(
            port,
            "grpcore.tricky.async.Type/Match",
            r#"{"value": "abc", "at": "2020-01-02T03:04:05Z", "label": {"text": "t"}}"#
        ),
        [json!({"value": "ABC", "at": "2020-01-02T03:04:05Z", "label": {"text": "t"}})]
    );
    assert_eq!(
        grpcurl::call(port, "grpcore.tricky.async.Type/Box", "{}"),
        [json!({"text": "a", "colour": "COLOUR_RED"}), json!({"text": "b", "colour": "COLOUR_RED"})]
    );
    let failed = grpcurl::run(port, None, &["describe", "grpcore.tricky.async.Nope"]);
    assert!(!failed.ok && failed.stderr.contains("Symbol not found"), "{}", failed.stderr);
    server.shutdown(Duration::from_secs(1)).wait().unwrap();
}
