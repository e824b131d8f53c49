//! Serves and calls every service of the tricky proto set, once with the prost output and
//! once with the rust-protobuf output: all four kinds of method, keyword-named methods
//! (`r#match`, `r#box`), messages named `Self` (`Self_`), nested, imported and well-known
//! types, several services in one server, a deprecated method and a deprecated service,
//! the blocking and the async client API, and the UNIMPLEMENTED default of a method the
//! implementation leaves out.

use std::time::Duration;

use futures::executor::block_on;
use futures::StreamExt;
use grpcore::{ChannelBuilder, Code, Environment, Error, Server, ServerBuilder};

const TIMEOUT: Duration = Duration::from_secs(10);

fn assert_unimplemented<T: std::fmt::Debug>(result: Result<T, Error>) {
    let err = result.expect_err("Missing is not implemented");
    assert_eq!(err.code(), Code::Unimplemented, "{err}");
    assert!(
        err.to_string().contains("Type/Missing is not implemented"),
        "{err}"
    );
}

/// Compiles only if the message attribute `#[derive(PartialOrd)]` reached `T`.
fn derives_partial_ord<T: PartialOrd>() {}

/// Compiles only if the message attribute `#[derive(Eq)]` reached `T`.
fn derives_eq<T: Eq>() {}

fn serve(env: &Environment, services: Vec<grpcore::Service>) -> Server {
    services
        .into_iter()
        .fold(ServerBuilder::new(env), ServerBuilder::register_service)
        .bind("127.0.0.1:0")
        .build()
        .expect("start the server")
}

mod prost_side {
    use super::*;
    use grpcore::{RequestStream, ServerContext, ServerSink, Status};
    use grpcore_codegen_tests::prost_gen::grpcore::tricky::common::point::{Colour, Label};
    use grpcore_codegen_tests::prost_gen::grpcore::tricky::common::Point;
    use grpcore_codegen_tests::prost_gen::grpcore::tricky::r#async::{
        result_grpc, type_grpc, Self_,
    };
    use prost_types::{value::Kind, Any, Struct, Timestamp, Value};

    struct Impl;

    impl type_grpc::Type for Impl {
        async fn r#match(&self, request: Self_, _ctx: ServerContext) -> Result<Self_, Status> {
            Ok(Self_ {
                value: request.value.to_uppercase(),
                ..request
            })
        }

        async fn r#box(
            &self,
            _request: (),
            mut sink: ServerSink<Label>,
            _ctx: ServerContext,
        ) -> Result<(), Status> {
            for text in ["a", "b", "c"] {
                sink.send(Label {
                    text: text.into(),
                    colour: Colour::Red as i32,
                })
                .await?;
            }
            Ok(())
        }

        async fn collect(
            &self,
            mut requests: RequestStream<Any>,
            _ctx: ServerContext,
        ) -> Result<Struct, Status> {
            let mut counts = Struct::default();
            while let Some(any) = requests.message().await? {
                let entry = counts.fields.entry(any.type_url).or_insert(Value {
                    kind: Some(Kind::NumberValue(0.0)),
                });
                if let Some(Kind::NumberValue(n)) = &mut entry.kind {
                    *n += 1.0;
                }
            }
            Ok(counts)
        }

        async fn chat(
            &self,
            mut requests: RequestStream<Self_>,
            mut sink: ServerSink<Point>,
            _ctx: ServerContext,
        ) -> Result<(), Status> {
            while let Some(s) = requests.message().await? {
                sink.send(Point {
                    x: s.value.len() as i32,
                    y: 0,
                    label: s.label,
                })
                .await?;
            }
            Ok(())
        }

        async fn old(&self, _request: (), _ctx: ServerContext) -> Result<(), Status> {
            Ok(())
        }
    }

    struct Stepper;

    impl result_grpc::Result for Stepper {
        async fn step(&self, p: Point, _ctx: ServerContext) -> Result<Point, Status> {
            Ok(Point { x: p.x + 1, ..p })
        }
    }

    #[allow(deprecated)]
    mod legacy {
        use grpcore::{ServerContext, Status};
        use grpcore_codegen_tests::prost_gen::grpcore::tricky::r#async::legacy_grpc;

        pub struct Legacy;

        impl legacy_grpc::Legacy for Legacy {
            async fn ping(&self, _request: (), _ctx: ServerContext) -> Result<(), Status> {
                Ok(())
            }
        }

        pub fn service() -> grpcore::Service {
            legacy_grpc::service(Legacy)
        }

        pub fn ping(channel: grpcore::Channel) -> Result<(), grpcore::Error> {
            legacy_grpc::LegacyClient::new(channel).ping(()).wait()
        }
    }

    #[test]
    fn message_attributes_reach_prost_messages() {
        derives_partial_ord::<Label>();
    }

    #[test]
    fn every_method_with_prost() {
        let env = Environment::new(1);
        let server = serve(
            &env,
            vec![
                type_grpc::service(Impl),
                result_grpc::service(Stepper),
                legacy::service(),
            ],
        );
        let channel = ChannelBuilder::new(&env)
            .connect(&format!("127.0.0.1:{}", server.port()))
            .unwrap();
        let client = type_grpc::TypeClient::new(channel.clone())
            .with_default_options(grpcore::CallOptions::new().timeout(TIMEOUT));

        // Unary, blocking; a message named Self with nested, imported and well-known fields.
        let request = Self_ {
            value: "abc".into(),
            label: Some(Label {
                text: "l".into(),
                colour: Colour::Red as i32,
            }),
            at: Some(Timestamp {
                seconds: 5,
                nanos: 6,
            }),
        };
        let reply = client
            .r#match(request.clone())
            .wait_for_ready(true)
            .wait()
            .unwrap();
        assert_eq!(
            reply,
            Self_ {
                value: "ABC".into(),
                ..request
            }
        );

        block_on(async {
            // Unary, awaited, with the whole response through start().
            let response = client.r#match(Self_::default()).start().await.unwrap();
            assert_eq!(response.message().value, "");

            // Server streaming from Empty (prost's `()`).
            let labels: Vec<String> = client
                .r#box(())
                .start()
                .map(|l| l.unwrap().text)
                .collect()
                .await;
            assert_eq!(labels, ["a", "b", "c"]);

            // Client streaming of Any, answered with a Struct.
            let (mut sink, response) = client.collect().start();
            for url in ["t/a", "t/b", "t/a"] {
                sink.send(Any {
                    type_url: url.into(),
                    value: vec![1, 2],
                })
                .await
                .unwrap();
            }
            sink.close().await.unwrap();
            let counts = response.await.unwrap();
            let count = |k: &str| counts.fields[k].kind.clone();
            assert_eq!(
                (count("t/a"), count("t/b")),
                (Some(Kind::NumberValue(2.0)), Some(Kind::NumberValue(1.0)))
            );

            // Bidirectional, in turn.
            let (mut sink, mut stream) = client.chat().start();
            for value in ["x", "yy", "zzz"] {
                sink.send(Self_ {
                    value: value.into(),
                    ..Default::default()
                })
                .await
                .unwrap();
                assert_eq!(stream.next().await.unwrap().unwrap().x, value.len() as i32);
            }
            sink.close().await.unwrap();
            assert!(stream.next().await.is_none());

            // The method the implementation left out, and the deprecated one.
            assert_unimplemented(client.missing(()).await);
            #[allow(deprecated)]
            client.old(()).await.unwrap();
        });

        // The second service of the file, and the deprecated third one, on the same server.
        let stepped = result_grpc::ResultClient::new(channel.clone())
            .step(Point {
                x: 1,
                y: 2,
                label: None,
            })
            .wait()
            .unwrap();
        assert_eq!((stepped.x, stepped.y), (2, 2));
        legacy::ping(channel).unwrap();
        server.shutdown(Duration::from_secs(1)).wait().unwrap();
    }
}

mod protobuf_side {
    use super::*;
    use grpcore::{RequestStream, ServerContext, ServerSink, Status};
    use grpcore_codegen_tests::protobuf_gen::common::point::{Colour, Label};
    use grpcore_codegen_tests::protobuf_gen::common::Point;
    use grpcore_codegen_tests::protobuf_gen::services::Self_;
    use grpcore_codegen_tests::protobuf_gen::{result_grpc, type_grpc};
    use protobuf::well_known_types::any::Any;
    use protobuf::well_known_types::empty::Empty;
    use protobuf::well_known_types::struct_::{Struct, Value};
    use protobuf::well_known_types::timestamp::Timestamp;
    use protobuf::{EnumOrUnknown, MessageField};

    fn label(text: &str) -> Label {
        let mut l = Label::new();
        l.text = text.into();
        l.colour = EnumOrUnknown::new(Colour::COLOUR_RED);
        l
    }

    fn self_(value: &str) -> Self_ {
        let mut s = Self_::new();
        s.value = value.into();
        s
    }

    struct Impl;

    impl type_grpc::Type for Impl {
        async fn r#match(&self, mut request: Self_, _ctx: ServerContext) -> Result<Self_, Status> {
            request.value = request.value.to_uppercase();
            Ok(request)
        }

        async fn r#box(
            &self,
            _request: Empty,
            mut sink: ServerSink<Label>,
            _ctx: ServerContext,
        ) -> Result<(), Status> {
            for text in ["a", "b", "c"] {
                sink.send(label(text)).await?;
            }
            Ok(())
        }

        async fn collect(
            &self,
            mut requests: RequestStream<Any>,
            _ctx: ServerContext,
        ) -> Result<Struct, Status> {
            let mut counts = Struct::new();
            while let Some(any) = requests.message().await? {
                let entry = counts.fields.entry(any.type_url).or_insert_with(|| {
                    let mut v = Value::new();
                    v.set_number_value(0.0);
                    v
                });
                let n = entry.number_value();
                entry.set_number_value(n + 1.0);
            }
            Ok(counts)
        }

        async fn chat(
            &self,
            mut requests: RequestStream<Self_>,
            mut sink: ServerSink<Point>,
            _ctx: ServerContext,
        ) -> Result<(), Status> {
            while let Some(s) = requests.message().await? {
                let mut p = Point::new();
                p.x = s.value.len() as i32;
                p.label = s.label;
                sink.send(p).await?;
            }
            Ok(())
        }

        async fn old(&self, _request: Empty, _ctx: ServerContext) -> Result<Empty, Status> {
            Ok(Empty::new())
        }
    }

    struct Stepper;

    impl result_grpc::Result for Stepper {
        async fn step(&self, mut p: Point, _ctx: ServerContext) -> Result<Point, Status> {
            p.x += 1;
            Ok(p)
        }
    }

    #[allow(deprecated)]
    mod legacy {
        use grpcore::{ServerContext, Status};
        use grpcore_codegen_tests::protobuf_gen::legacy_grpc;
        use protobuf::well_known_types::empty::Empty;

        pub struct Legacy;

        impl legacy_grpc::Legacy for Legacy {
            async fn ping(&self, _request: Empty, _ctx: ServerContext) -> Result<Empty, Status> {
                Ok(Empty::new())
            }
        }

        pub fn service() -> grpcore::Service {
            legacy_grpc::service(Legacy)
        }

        pub fn ping(channel: grpcore::Channel) -> Result<Empty, grpcore::Error> {
            legacy_grpc::LegacyClient::new(channel)
                .ping(Empty::new())
                .wait()
        }
    }

    #[test]
    fn message_attributes_reach_rust_protobuf_messages() {
        derives_eq::<Label>();
    }

    #[test]
    fn every_method_with_rust_protobuf() {
        let env = Environment::new(1);
        let server = serve(
            &env,
            vec![
                type_grpc::service(Impl),
                result_grpc::service(Stepper),
                legacy::service(),
            ],
        );
        let channel = ChannelBuilder::new(&env)
            .connect(&format!("127.0.0.1:{}", server.port()))
            .unwrap();
        let client = type_grpc::TypeClient::new(channel.clone());

        let mut request = self_("abc");
        request.label = MessageField::some(label("l"));
        let mut at = Timestamp::new();
        at.seconds = 5;
        request.at = MessageField::some(at);
        let reply = client
            .r#match(request.clone())
            .timeout(TIMEOUT)
            .wait_for_ready(true)
            .wait()
            .unwrap();
        assert_eq!(reply.value, "ABC");
        assert_eq!((reply.label, reply.at), (request.label, request.at));

        block_on(async {
            let labels: Vec<String> = client
                .r#box(Empty::new())
                .timeout(TIMEOUT)
                .start()
                .map(|l| l.unwrap().text)
                .collect()
                .await;
            assert_eq!(labels, ["a", "b", "c"]);

            let (mut sink, response) = client.collect().timeout(TIMEOUT).start();
            for url in ["t/a", "t/b", "t/a"] {
                let mut any = Any::new();
                any.type_url = url.into();
                sink.send(any).await.unwrap();
            }
            sink.close().await.unwrap();
            let counts = response.await.unwrap();
            assert_eq!(
                (
                    counts.fields["t/a"].number_value(),
                    counts.fields["t/b"].number_value()
                ),
                (2.0, 1.0)
            );

            let (mut sink, mut stream) = client.chat().timeout(TIMEOUT).start();
            for value in ["x", "yy", "zzz"] {
                sink.send(self_(value)).await.unwrap();
                assert_eq!(stream.next().await.unwrap().unwrap().x, value.len() as i32);
            }
            sink.close().await.unwrap();
            assert!(stream.next().await.is_none());

            assert_unimplemented(client.missing(Empty::new()).await);
            #[allow(deprecated)]
            client.old(Empty::new()).await.unwrap();
        });

        let mut p = Point::new();
        p.x = 1;
        p.y = 2;
        let stepped = result_grpc::ResultClient::new(channel.clone())
            .step(p)
            .wait()
            .unwrap();
        assert_eq!((stepped.x, stepped.y), (2, 2));
        legacy::ping(channel).unwrap();
        server.shutdown(Duration::from_secs(1)).wait().unwrap();
    }
}

/// The line just before the first line of `text` that starts with `item` (both trimmed).
fn line_before<'a>(text: &'a str, item: &str) -> &'a str {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with(item))
        .unwrap_or_else(|| panic!("no `{item}` in the generated code"));
    lines[at - 1]
}

/// build.rs puts `#[cfg(all())]` on the `grpcore.tricky.async.Result` client and
/// `#[doc(alias = "Stepper")]` on its server: each reaches exactly its own items (the
/// client struct and impl; the server trait and `service` function), and no other
/// service's.
#[test]
fn client_and_server_attributes_reach_their_items_only() {
    let outputs = [
        ("prost", include_str!(concat!(env!("OUT_DIR"), "/prost/grpcore.tricky.r#async.rs"))),
        ("protobuf", include_str!(concat!(env!("OUT_DIR"), "/protobuf/services.grpcore.rs"))),
    ];
    let (client, server) = ("#[cfg(all())]", "#[doc(alias = \"Stepper\")]");
    for (codec, text) in outputs {
        // The client struct's derive sits between the attribute and the struct.
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let at = lines.iter().position(|l| l.starts_with("pub struct ResultClient")).expect("ResultClient");
        assert_eq!(lines[at - 2], client, "{codec}: client attribute on the client struct");
        assert_eq!(line_before(text, "impl ResultClient"), client, "{codec}: client attribute on its impl");
        assert_eq!(line_before(text, "pub trait Result:"), server, "{codec}: server attribute on the trait");
        assert_eq!(line_before(text, "pub fn service<I: Result>"), server, "{codec}: server attribute on service()");
        assert_eq!(text.matches(client).count(), 2, "{codec}: the client attribute elsewhere too");
        for other in ["pub trait Type:", "pub fn service<I: Type>", "impl TypeClient"] {
            let before = line_before(text, other);
            assert!(before != client && before != server, "{codec}: `{other}` got an attribute: {before}");
        }
    }
}

/// RPCs named like the client's own methods (`new`, `channel`, `with_default_options`, and
/// `clone` of the derived `Clone`) get a `_call` suffix on the client, so the client's own
/// methods keep working, and each call reaches its method.
#[test]
fn rpcs_named_like_client_methods_are_called_with_a_suffix() {
    use grpcore::{ServerContext, Status};
    use grpcore_codegen_tests::prost_gen::grpcore::tricky::r#async::helpers_grpc;

    struct Helpers;
    impl helpers_grpc::Helpers for Helpers {
        async fn new(&self, _: (), _ctx: ServerContext) -> Result<(), Status> {
            Err(Status::new(Code::Aborted, "new"))
        }
        async fn channel(&self, _: (), _ctx: ServerContext) -> Result<(), Status> {
            Err(Status::new(Code::Aborted, "channel"))
        }
        async fn with_default_options(&self, _: (), _ctx: ServerContext) -> Result<(), Status> {
            Err(Status::new(Code::Aborted, "with_default_options"))
        }
        async fn clone(&self, _: (), _ctx: ServerContext) -> Result<(), Status> {
            Err(Status::new(Code::Aborted, "clone"))
        }
    }

    let env = Environment::new(1);
    let server = serve(&env, vec![helpers_grpc::service(Helpers)]);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let client = helpers_grpc::HelpersClient::new(channel).with_default_options(grpcore::CallOptions::new().timeout(TIMEOUT));
    let copy = client.clone();
    let _: &grpcore::Channel = copy.channel();
    let answers = [
        ("new", client.new_call(()).wait()),
        ("channel", client.channel_call(()).wait()),
        ("with_default_options", client.with_default_options_call(()).wait()),
        ("clone", copy.clone_call(()).wait()),
    ];
    for (method, answer) in answers {
        let err = answer.expect_err(method);
        assert_eq!(err.code(), Code::Aborted, "{method}: {err}");
        assert_eq!(err.status().message(), method);
    }
}
