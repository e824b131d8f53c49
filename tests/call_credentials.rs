//! Call credentials over TLS: a static bearer token and an async token source reach the
//! server as metadata on every call; a token source that fails or panics fails the call with
//! the documented status (UNAVAILABLE, with the source's own code and message in it), and the
//! handler never runs.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::tls::*;
use common::*;
use grpcore::{
    AuthMetadataContext, CallCredentials, CallOptions, ChannelBuilder, ChannelCredentials, ClientCertificateMode, Code,
    Environment, Metadata, Server, ServerBuilder, ServerContext, ServiceBuilder, Status,
};

/// A TLS Echo server whose unary handler records the request metadata of each call.
fn server(env: &Environment) -> (Server, Arc<Mutex<Vec<Metadata>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, ctx: ServerContext| {
            record.lock().unwrap().push(ctx.request_metadata().clone());
            unary_echo(req, ctx)
        })
        .build();
    let server = ServerBuilder::new(env)
        .register_service(service)
        .bind_with_credentials("127.0.0.1:0", &server_credentials(ClientCertificateMode::DontRequest))
        .build()
        .unwrap();
    (server, seen)
}

/// For calls expected to succeed: a transient connection failure (seen once in hundreds
/// of runs on an overloaded machine) is retried by the channel instead of failing the test.
fn ready() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20)).wait_for_ready(true)
}

/// For calls expected to fail: fail fast instead of waiting for a connection that works.
fn opts() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20))
}

fn connect(env: &Environment, server: &Server, call: CallCredentials) -> grpcore::Channel {
    let creds = client_credentials(false).with_call_credentials(call);
    ChannelBuilder::new(env).connect_with_credentials(&target(server), &creds).unwrap()
}

#[test]
fn bearer_token_reaches_the_server_on_every_call() {
    let env = Environment::new(1);
    let (server, seen) = server(&env);
    let channel = connect(&env, &server, CallCredentials::bearer_token("s3cr3t-t0ken").unwrap());
    for i in 0..3 {
        channel.unary(&UNARY, &request("tok", i), ready()).wait().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for md in seen.iter() {
        assert_eq!(md.get("authorization"), Some("Bearer s3cr3t-t0ken"));
    }
}

#[test]
fn async_token_source_adds_metadata_per_call_and_sees_the_call() {
    let env = Environment::new(1);
    let (server, seen) = server(&env);
    let asked = Arc::new(Mutex::new(Vec::<AuthMetadataContext>::new()));
    let counter = Arc::new(AtomicUsize::new(0));
    let (log, n) = (asked.clone(), counter.clone());
    let tokens = CallCredentials::from_async(&env, move |ctx| {
        log.lock().unwrap().push(ctx);
        let serial = n.fetch_add(1, Ordering::SeqCst);
        async move {
            // A token that takes a while to come (another thread fulfils it).
            let (tx, rx) = futures::channel::oneshot::channel();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                let _ = tx.send(format!("token-{serial}"));
            });
            let token = rx.await.map_err(|_| Status::new(Code::Internal, "token thread died"))?;
            let mut md = Metadata::new();
            md.append("authorization", &format!("Bearer {token}")).map_err(|e| e.status())?;
            md.append_bin("x-token-serial-bin", vec![serial as u8]).map_err(|e| e.status())?;
            Ok(md)
        }
    });
    // Composed with a static token: both sets of metadata arrive.
    let both = tokens.clone().and(CallCredentials::bearer_token("ignored-second").unwrap()).unwrap();
    let channel = connect(&env, &server, tokens.clone());
    for i in 0..3 {
        channel.unary(&UNARY, &request("async", i), ready()).wait().unwrap();
    }
    {
        let seen = seen.lock().unwrap();
        let tokens: Vec<_> = seen.iter().map(|md| md.get("authorization").unwrap().to_string()).collect();
        assert_eq!(tokens, ["Bearer token-0", "Bearer token-1", "Bearer token-2"]);
        assert_eq!(seen[2].get_bin("x-token-serial-bin"), Some(&[2u8][..]));
    }
    let ctx = asked.lock().unwrap()[0].clone();
    assert_eq!(ctx.method_name(), "Unary");
    assert_eq!(ctx.service_url(), format!("https://{SERVER_NAME}/grpcore.test.Echo"));

    let channel = connect(&env, &server, both);
    channel.unary(&UNARY, &request("both", 9), ready()).wait().unwrap();
    let last = seen.lock().unwrap().last().cloned().unwrap();
    let values: Vec<&[u8]> = last.get_all("authorization").collect();
    assert_eq!(values.len(), 2, "{last:?}");
}

#[test]
fn a_failing_token_source_fails_the_call_with_unavailable_and_its_reason() {
    let env = Environment::new(1);
    let (server, seen) = server(&env);
    let failing = CallCredentials::from_async(&env, |_ctx| async {
        Err::<Metadata, _>(Status::new(Code::Unauthenticated, "token expired at 12:00"))
    });
    let channel = connect(&env, &server, failing);
    let err = channel.unary(&UNARY, &request("x", 1), opts()).wait().unwrap_err();
    println!("{err}");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("UNAUTHENTICATED: token expired at 12:00"), "{err}");

    // A source that panics, in its future or before returning one.
    let panicking = CallCredentials::from_async(&env, |_ctx| async { panic!("token cache corrupted") });
    let err = connect(&env, &server, panicking).unary(&UNARY, &request("x", 2), opts()).wait().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("panicked: token cache corrupted"), "{err}");
    let panicking_early = CallCredentials::from_async(&env, |_ctx| -> std::future::Ready<Result<Metadata, Status>> {
        panic!("no future for you")
    });
    let err = connect(&env, &server, panicking_early).unary(&UNARY, &request("x", 3), opts()).wait().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("panicked: no future for you"), "{err}");

    assert!(seen.lock().unwrap().is_empty(), "no handler may run without credentials");

    // The channel itself is fine: with working credentials the same server answers.
    let ok = connect(&env, &server, CallCredentials::bearer_token("fine").unwrap());
    ok.unary(&UNARY, &request("ok", 4), ready()).wait().unwrap();
}

#[test]
fn call_credentials_are_never_sent_in_plaintext_and_bad_tokens_are_refused() {
    let env = Environment::new(1);
    let plain = ChannelCredentials::insecure().with_call_credentials(CallCredentials::bearer_token("t").unwrap());
    let err = ChannelBuilder::new(&env).connect_with_credentials("127.0.0.1:1", &plain).unwrap_err();
    assert!(err.to_string().contains("call credentials need a secure channel"), "{err}");
    for bad in ["", "two words", "line\nbreak", "nul\0"] {
        let err = CallCredentials::bearer_token(bad).unwrap_err();
        assert!(err.to_string().contains("bearer token"), "{bad:?}: {err}");
    }
}
