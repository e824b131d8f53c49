//! grpcore's own proto options (compiler/tests/protos/policy) in generated code, against
//! Python grpcio (tests/peers/python/deadlines.py), with both codecs:
//!
//! - a generated client gives a call without a deadline the proto's default, and grpcio's
//!   `context.time_remaining()` sees it; the caller's own timeout or default wins;
//! - a generated server refuses a grpcio call without a deadline (INVALID_ARGUMENT, or the
//!   status the service picked), accepts one to a method marked `no_deadline_needed`, and
//!   brings a 60 s deadline in to the 2 s maximum, for the handler and for its child call;
//! - an error enum with `(grpcore.code)` values reaches grpcio with the mapped code and an
//!   ErrorInfo that grpcio-status reads, and reads back into the enum in grpcore.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grpcore::{ApplicationError, ChannelBuilder, Code, Environment, Server, ServerBuilder, ServerContext, Service, Status};
use serde_json::Value;

/// How long a peer may take to start, or the Python client to run all its cases.
const PEER_BOUND: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/python/deadlines.py")
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// The Python server, stopped (stdin closed, then killed) when dropped.
struct Peer {
    child: Child,
    port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python_server() -> Peer {
    let mut child = Command::new(python())
        .arg(script())
        .arg("server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tests/peers/python/deadlines.py (scripts/setup.sh installs grpcio)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(PEER_BOUND).expect("deadlines.py printed its port");
    let port = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).expect("PORT <n>");
    Peer { child, port }
}

/// Runs the Python client's cases against `port` (AskPeer's child calls go to `peer`).
fn python_client(port: u16, peer: u16) -> Value {
    let mut child = Command::new(python())
        .arg(script())
        .args(["client", &format!("127.0.0.1:{port}"), &format!("127.0.0.1:{peer}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the Python client");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > PEER_BOUND {
            let _ = child.kill();
            panic!("the Python client did not finish within {PEER_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the Python client failed");
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

/// `ms` and what it can grow to on its way to a peer: the core rounds the `grpc-timeout`
/// header up ("arbitrarily", says its encoder; seen: 9 s arriving as 9008 ms, 20 s as
/// 20098 ms). 5% leaves every bound here far from the next one it must tell apart.
fn up_to(ms: u64) -> u64 {
    ms + ms / 20
}

/// The handler's time left in whole milliseconds, or "none".
fn remaining(ctx: &ServerContext) -> String {
    ctx.time_remaining().map_or_else(|| "none".to_string(), |left| left.as_millis().to_string())
}

fn millis(title: &str) -> u64 {
    title.parse().unwrap_or_else(|_| panic!("a number of milliseconds, not {title:?}"))
}

fn serve(env: &Environment, services: Vec<Service>) -> Server {
    services
        .into_iter()
        .fold(ServerBuilder::new(env), ServerBuilder::register_service)
        .bind("127.0.0.1:0")
        .build()
        .expect("start the server")
}

/// What the Python client saw from a generated server, whatever its codec.
fn check_grpcio_client(seen: &Value) {
    let case = |name: &str| &seen[name];
    let title = |name: &str| case(name)["title"].as_str().unwrap_or_else(|| panic!("{name}: {}", case(name))).to_string();

    assert_eq!(case("get_book_without_deadline")["code"], "INVALID_ARGUMENT", "{seen:#}");
    let message = case("get_book_without_deadline")["message"].as_str().unwrap();
    assert!(message.contains("/grpcore.policy.Library/GetBook needs a deadline"), "{message}");

    // 60 s asked, 2 s maximum: the handler sees at most 2 s.
    let left = millis(&title("get_book_with_60s"));
    assert!((1600..=2000).contains(&left), "a 60 s deadline clamped to 2 s left the handler {left} ms");
    // The child call of a handler whose deadline was clamped goes out with that deadline
    // (not the 60 s the core would propagate, nor the 1.5 s default: the parent's counts).
    let child = millis(&title("ask_peer_with_60s"));
    assert!((1600..=up_to(2000)).contains(&child), "the child call's server saw {child} ms");

    // no_deadline_needed: accepted; the service's maximum still bounds it.
    assert_eq!(case("browse_without_deadline")["code"], "OK", "{seen:#}");
    assert!(millis(&title("browse_without_deadline")) <= 2000);
    // No options: nothing checked, nothing added.
    assert_eq!(title("plain_without_deadline"), "none");

    let error = |name: &str, code: &str, reason: &str, domain: &str| {
        assert_eq!(case(name)["code"], code, "{name}: {}", case(name));
        assert_eq!(case(name)["error_info"]["reason"], reason, "{name}: {}", case(name));
        assert_eq!(case(name)["error_info"]["domain"], domain, "{name}: {}", case(name));
    };
    error("missing", "NOT_FOUND", "BOOK_NOT_FOUND", "grpcore.policy.LibraryError");
    assert_eq!(case("missing")["message"], "BOOK_NOT_FOUND");
    error("full", "RESOURCE_EXHAUSTED", "SHELF_FULL", "grpcore.policy.LibraryError");
    assert_eq!(case("full")["message"], "the shelf is full");
    error("torn", "FAILED_PRECONDITION", "TORN", "grpcore.policy.Book.Damage");
}

mod prost_side {
    use super::*;
    use grpcore::{CallOptions, Method, ProstCodec, ServerSink};
    use grpcore_codegen_tests::policy_prost::grpcore::policy::{
        book::Damage, library_grpc, plain_grpc, Book, BookRequest, LibraryError,
    };

    struct Library {
        env: Environment,
    }

    fn book(title: String) -> Book {
        Book { title }
    }

    impl library_grpc::Library for Library {
        async fn get_book(&self, request: BookRequest, ctx: ServerContext) -> Result<Book, Status> {
            match request.title.as_str() {
                "missing" => Err(LibraryError::BookNotFound.into()),
                "full" => Err(LibraryError::ShelfFull.status("the shelf is full")),
                "torn" => Err(Damage::Torn.into()),
                _ => Ok(book(remaining(&ctx))),
            }
        }

        async fn ask_peer(&self, request: BookRequest, ctx: ServerContext) -> Result<Book, Status> {
            let channel = ChannelBuilder::new(&self.env).connect(&request.title).map_err(|e| Status::internal(e.to_string()))?;
            let client = library_grpc::LibraryClient::new(channel);
            let answer = client.get_book(BookRequest { title: "remaining".into() }).parent(&ctx).await;
            answer.map_err(|e| e.status())
        }

        async fn browse(&self, _request: BookRequest, ctx: ServerContext) -> Result<Book, Status> {
            Ok(book(remaining(&ctx)))
        }

        async fn watch(&self, _request: BookRequest, mut sink: ServerSink<Book>, ctx: ServerContext) -> Result<(), Status> {
            sink.send(book(remaining(&ctx))).await.map_err(|e| e.status())
        }
    }

    struct Plain;

    impl plain_grpc::Plain for Plain {
        async fn remaining(&self, _request: BookRequest, ctx: ServerContext) -> Result<Book, Status> {
            Ok(book(remaining(&ctx)))
        }
    }

    fn services(env: &Environment) -> Vec<Service> {
        vec![library_grpc::service(Library { env: env.clone() }), plain_grpc::service(Plain)]
    }

    #[test]
    fn a_generated_client_sends_the_default_deadline_and_the_callers_own_wins() {
        let env = Environment::new(1);
        let peer = python_server();
        let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", peer.port)).unwrap();
        let client = library_grpc::LibraryClient::new(channel);
        let ask = |title: &str| BookRequest { title: title.into() };

        // No deadline from the caller: the service's 1.5 s default.
        let seen = millis(&client.get_book(ask("remaining")).wait().unwrap().title);
        assert!((1000..=up_to(1500)).contains(&seen), "grpcio saw {seen} ms left, not the 1.5 s default");
        // The caller's timeout wins.
        let seen = millis(&client.get_book(ask("remaining")).timeout(Duration::from_secs(20)).wait().unwrap().title);
        assert!((19_000..=up_to(20_000)).contains(&seen), "grpcio saw {seen} ms left, not the caller's 20 s");
        // So does the caller's own default.
        let options = CallOptions::new().default_timeout(Duration::from_secs(9));
        let seen = millis(&client.get_book(ask("remaining")).options(options).wait().unwrap().title);
        assert!((8_000..=up_to(9_000)).contains(&seen), "grpcio saw {seen} ms left, not the caller's 9 s default");
    }

    #[test]
    fn a_generated_server_refuses_clamps_and_maps_errors_for_grpcio() {
        let env = Environment::new(1);
        let peer = python_server();
        let server = serve(&env, services(&env));
        check_grpcio_client(&python_client(server.port(), peer.port));
    }

    #[test]
    fn the_service_picks_the_refusal_and_errors_read_back_into_the_enum() {
        let env = Environment::new(1);
        let refusal = Status::new(Code::FailedPrecondition, "the library wants a timeout");
        let library = library_grpc::service(Library { env: env.clone() }).missing_deadline_status(refusal);
        let server = serve(&env, vec![library]);
        let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();

        // A descriptor without the proto's policy sends no deadline.
        const BARE: Method<BookRequest, Book, ProstCodec> = Method::unary("/grpcore.policy.Library/GetBook");
        let err = channel.unary(&BARE, &BookRequest { title: "remaining".into() }, CallOptions::new()).wait().unwrap_err();
        assert_eq!((err.code(), err.status().message()), (Code::FailedPrecondition, "the library wants a timeout"));

        let client = library_grpc::LibraryClient::new(channel);
        let err = client.get_book(BookRequest { title: "missing".into() }).wait().unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(LibraryError::from_status(&err.status()), Some(LibraryError::BookNotFound));
        assert_eq!(Damage::from_status(&err.status()), None, "another enum's domain");
        let err = client.get_book(BookRequest { title: "torn".into() }).wait().unwrap_err();
        assert_eq!(Damage::from_status(&err.status()), Some(Damage::Torn));

        // A server-streaming method with a default of its own (1.8 s), clamped by nothing.
        let mut stream = client.watch(BookRequest::default()).start();
        let first = futures::executor::block_on(futures::StreamExt::next(&mut stream)).unwrap().unwrap();
        let left = millis(&first.title);
        assert!((1500..=up_to(1800)).contains(&left), "Watch's handler saw {left} ms, not its 1.8 s default");
    }
}

mod protobuf_side {
    use super::*;
    use grpcore_codegen_tests::policy_protobuf::library::{book::Damage, Book, BookRequest, LibraryError};
    use grpcore_codegen_tests::policy_protobuf::{library_grpc, plain_grpc};

    struct Library {
        env: Environment,
    }

    fn book(title: String) -> Book {
        Book { title, ..Default::default() }
    }

    fn ask(title: &str) -> BookRequest {
        BookRequest { title: title.into(), ..Default::default() }
    }

    impl library_grpc::Library for Library {
        async fn get_book(&self, request: BookRequest, ctx: ServerContext) -> Result<Book, Status> {
            match request.title.as_str() {
                "missing" => Err(LibraryError::BOOK_NOT_FOUND.into()),
                "full" => Err(LibraryError::SHELF_FULL.status("the shelf is full")),
                "torn" => Err(Damage::TORN.into()),
                _ => Ok(book(remaining(&ctx))),
            }
        }

        async fn ask_peer(&self, request: BookRequest, ctx: ServerContext) -> Result<Book, Status> {
            let channel = ChannelBuilder::new(&self.env).connect(&request.title).map_err(|e| Status::internal(e.to_string()))?;
            let client = library_grpc::LibraryClient::new(channel);
            client.get_book(ask("remaining")).parent(&ctx).await.map_err(|e| e.status())
        }

        async fn browse(&self, _request: BookRequest, ctx: ServerContext) -> Result<Book, Status> {
            Ok(book(remaining(&ctx)))
        }
    }

    struct Plain;

    impl plain_grpc::Plain for Plain {
        async fn remaining(&self, _request: BookRequest, ctx: ServerContext) -> Result<Book, Status> {
            Ok(book(remaining(&ctx)))
        }
    }

    #[test]
    fn a_generated_client_sends_the_default_deadline() {
        let env = Environment::new(1);
        let peer = python_server();
        let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", peer.port)).unwrap();
        let client = library_grpc::LibraryClient::new(channel);
        let seen = millis(&client.get_book(ask("remaining")).wait().unwrap().title);
        assert!((1000..=up_to(1500)).contains(&seen), "grpcio saw {seen} ms left, not the 1.5 s default");
    }

    #[test]
    fn a_generated_server_refuses_clamps_and_maps_errors_for_grpcio() {
        let env = Environment::new(1);
        let peer = python_server();
        let services = vec![library_grpc::service(Library { env: env.clone() }), plain_grpc::service(Plain)];
        let server = serve(&env, services);
        check_grpcio_client(&python_client(server.port(), peer.port));

        let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
        let client = library_grpc::LibraryClient::new(channel);
        let err = client.get_book(ask("full")).wait().unwrap_err();
        assert_eq!(LibraryError::from_status(&err.status()), Some(LibraryError::SHELF_FULL));
    }
}
