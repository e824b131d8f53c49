//! The client cases of the interop test descriptions, each an async function that returns
//! `Err` with what went wrong.
//!
//! Whether a response arrived compressed (server_compressed_*) is seen on a second channel
//! to the same server that receives messages undecompressed ([`crate::wire`]); the same
//! calls are also made on the ordinary channel, where the core decompresses.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;
use grpcore::{CallOptions, Channel, Code, Compression, Error, Metadata, Method, WriteFlags};

use crate::proto::{
    EchoStatus, Empty, ResponseParameters, SimpleRequest, SimpleResponse, StreamingInputCallRequest,
    StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
};
use crate::wire::{Inbound, Wire};
use crate::{bool_value, paths, zeros, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY};

const EMPTY_CALL: Method<Empty, Empty, Wire> = Method::unary(paths::EMPTY_CALL);
const UNARY_CALL: Method<SimpleRequest, Inbound<SimpleResponse>, Wire> = Method::unary(paths::UNARY_CALL);
const STREAMING_INPUT_CALL: Method<StreamingInputCallRequest, StreamingInputCallResponse, Wire> =
    Method::client_streaming(paths::STREAMING_INPUT_CALL);
const STREAMING_OUTPUT_CALL: Method<StreamingOutputCallRequest, Inbound<StreamingOutputCallResponse>, Wire> =
    Method::server_streaming(paths::STREAMING_OUTPUT_CALL);
const FULL_DUPLEX_CALL: Method<StreamingOutputCallRequest, Inbound<StreamingOutputCallResponse>, Wire> =
    Method::duplex(paths::FULL_DUPLEX_CALL);
static UNIMPLEMENTED_METHOD: Method<Empty, Empty, Wire> = Method::unary(paths::UNIMPLEMENTED_METHOD);
static UNIMPLEMENTED_SERVICE: Method<Empty, Empty, Wire> = Method::unary(paths::UNIMPLEMENTED_SERVICE);

/// Every case, in the order of the interop test descriptions.
pub const CASES: &[&str] = &[
    "empty_unary",
    "large_unary",
    "client_compressed_unary",
    "server_compressed_unary",
    "client_streaming",
    "client_compressed_streaming",
    "server_streaming",
    "server_compressed_streaming",
    "ping_pong",
    "empty_stream",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
];

/// What a case returns.
pub type CaseResult = Result<(), String>;

/// The channels a case runs on.
pub struct Client {
    /// An ordinary channel to the server under test.
    pub channel: Channel,
    /// A channel to the same server whose received messages are not decompressed by the
    /// core, so that the [`Wire`] codec sees which arrived compressed.
    pub raw: Channel,
}

/// Runs case `name`; `Err` for an unknown name too.
pub fn run<'a>(client: &'a Client, name: &str) -> Pin<Box<dyn Future<Output = CaseResult> + 'a>> {
    let c = client;
    match name {
        "empty_unary" => Box::pin(empty_unary(c)),
        "large_unary" => Box::pin(large_unary(c)),
        "client_compressed_unary" => Box::pin(client_compressed_unary(c)),
        "server_compressed_unary" => Box::pin(server_compressed_unary(c)),
        "client_streaming" => Box::pin(client_streaming(c)),
        "client_compressed_streaming" => Box::pin(client_compressed_streaming(c)),
        "server_streaming" => Box::pin(server_streaming(c)),
        "server_compressed_streaming" => Box::pin(server_compressed_streaming(c)),
        "ping_pong" => Box::pin(ping_pong(c)),
        "empty_stream" => Box::pin(empty_stream(c)),
        "custom_metadata" => Box::pin(custom_metadata(c)),
        "status_code_and_message" => Box::pin(status_code_and_message(c)),
        "special_status_message" => Box::pin(special_status_message(c)),
        "unimplemented_method" => Box::pin(unimplemented(c, &UNIMPLEMENTED_METHOD)),
        "unimplemented_service" => Box::pin(unimplemented(c, &UNIMPLEMENTED_SERVICE)),
        "cancel_after_begin" => Box::pin(cancel_after_begin(c)),
        "cancel_after_first_response" => Box::pin(cancel_after_first_response(c)),
        "timeout_on_sleeping_server" => Box::pin(timeout_on_sleeping_server(c)),
        other => {
            let msg = format!("unknown test case {other:?}; known: {}", CASES.join(", "));
            Box::pin(async move { Err(msg) })
        }
    }
}

fn opts() -> CallOptions {
    CallOptions::new()
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn failed(what: &str, e: Error) -> String {
    format!("{what}: {e}")
}

/// Checks that a payload is `size` zeros.
fn check_payload(payload: &Option<crate::proto::Payload>, size: usize, what: &str) -> CaseResult {
    let body = payload.as_ref().map_or(&[][..], |p| &p.body[..]);
    ensure!(body.len() == size, "{what}: payload of {} bytes, expected {size}", body.len());
    ensure!(body.iter().all(|&b| b == 0), "{what}: payload is not all zeros");
    Ok(())
}

/// Checks that a call failed with `code` (and `message`, if given).
fn check_status<T>(result: Result<T, Error>, code: Code, message: Option<&str>, what: &str) -> CaseResult {
    let err = match result {
        Ok(_) => return Err(format!("{what}: succeeded, expected {code:?}")),
        Err(e) => e,
    };
    let status = err.status();
    ensure!(status.code() == code, "{what}: ended {status}, expected {code:?}");
    if let Some(m) = message {
        ensure!(status.message() == m, "{what}: message {:?}, expected {m:?}", status.message());
    }
    Ok(())
}

fn large_request() -> SimpleRequest {
    SimpleRequest {
        response_size: 314159,
        payload: Some(zeros(271828)),
        ..Default::default()
    }
}

async fn empty_unary(c: &Client) -> CaseResult {
    let reply = c.channel.unary(&EMPTY_CALL, &Empty {}, opts()).await.map_err(|e| failed("EmptyCall", e))?;
    ensure!(*reply.message() == Empty {}, "EmptyCall answered {:?}", reply.message());
    Ok(())
}

async fn large_unary(c: &Client) -> CaseResult {
    let reply = c.channel.unary(&UNARY_CALL, &large_request(), opts()).await.map_err(|e| failed("UnaryCall", e))?;
    check_payload(&reply.message().message.payload, 314159, "UnaryCall")
}

async fn client_compressed_unary(c: &Client) -> CaseResult {
    let mut req = large_request();
    req.expect_compressed = bool_value(true);
    // The probe: an uncompressed request claiming to be compressed must be refused.
    let probe = c.channel.unary(&UNARY_CALL, &req, opts()).await;
    check_status(probe, Code::InvalidArgument, None, "uncompressed probe with expect_compressed")?;
    let reply = c
        .channel
        .unary(&UNARY_CALL, &req, opts().compression(Compression::Gzip))
        .await
        .map_err(|e| failed("compressed UnaryCall", e))?;
    check_payload(&reply.message().message.payload, 314159, "compressed UnaryCall")?;
    req.expect_compressed = bool_value(false);
    let reply = c.channel.unary(&UNARY_CALL, &req, opts()).await.map_err(|e| failed("uncompressed UnaryCall", e))?;
    check_payload(&reply.message().message.payload, 314159, "uncompressed UnaryCall")
}

async fn server_compressed_unary(c: &Client) -> CaseResult {
    for compressed in [true, false] {
        let mut req = large_request();
        req.response_compressed = bool_value(compressed);
        let what = format!("UnaryCall with response_compressed {compressed}");
        // On the raw channel the flag of the response is visible.
        let reply = c.raw.unary(&UNARY_CALL, &req, opts()).await.map_err(|e| failed(&what, e))?;
        let reply = reply.message();
        ensure!(
            reply.compressed == compressed,
            "{what}: the response arrived {}",
            if reply.compressed { "compressed" } else { "uncompressed" }
        );
        check_payload(&reply.message.payload, 314159, &what)?;
        // On the ordinary channel the core decompresses it.
        let reply = c.channel.unary(&UNARY_CALL, &req, opts()).await.map_err(|e| failed(&what, e))?;
        check_payload(&reply.message().message.payload, 314159, &what)?;
    }
    Ok(())
}

fn input(size: usize, expect_compressed: Option<bool>) -> StreamingInputCallRequest {
    StreamingInputCallRequest {
        payload: Some(zeros(size)),
        expect_compressed: expect_compressed.and_then(bool_value),
    }
}

async fn client_streaming(c: &Client) -> CaseResult {
    let (mut sink, response) = c.channel.client_streaming(&STREAMING_INPUT_CALL, opts());
    for size in [27182, 8, 1828, 45904] {
        sink.send(input(size, None)).await.map_err(|e| failed("sending a request", e))?;
    }
    sink.close().await.map_err(|e| failed("half-closing", e))?;
    let reply = response.await.map_err(|e| failed("StreamingInputCall", e))?;
    let total = reply.aggregated_payload_size;
    ensure!(total == 74922, "aggregated_payload_size {total}, expected 74922");
    Ok(())
}

async fn client_compressed_streaming(c: &Client) -> CaseResult {
    // The probe: one uncompressed message claiming to be compressed must be refused.
    let (mut sink, response) = c.channel.client_streaming(&STREAMING_INPUT_CALL, opts());
    let _ = sink.send(input(27182, Some(true))).await; // the server may already have ended the call
    let _ = sink.close().await;
    check_status(response.await, Code::InvalidArgument, None, "uncompressed probe with expect_compressed")?;
    // A compressed message, then one sent uncompressed on the same compressed call.
    let (mut sink, response) = c.channel.client_streaming(&STREAMING_INPUT_CALL, opts().compression(Compression::Gzip));
    sink.send(input(27182, Some(true))).await.map_err(|e| failed("sending the compressed request", e))?;
    sink.send_with(input(45904, Some(false)), WriteFlags::new().no_compress(true))
        .await
        .map_err(|e| failed("sending the uncompressed request", e))?;
    sink.close().await.map_err(|e| failed("half-closing", e))?;
    let reply = response.await.map_err(|e| failed("StreamingInputCall", e))?;
    let total = reply.aggregated_payload_size;
    ensure!(total == 73086, "aggregated_payload_size {total}, expected 73086");
    Ok(())
}

fn params(sizes: &[(i32, Option<bool>)]) -> Vec<ResponseParameters> {
    sizes
        .iter()
        .map(|&(size, compressed)| ResponseParameters {
            size,
            compressed: compressed.and_then(bool_value),
            ..Default::default()
        })
        .collect()
}

async fn server_streaming(c: &Client) -> CaseResult {
    let sizes = [31415, 9, 2653, 58979];
    let req = StreamingOutputCallRequest {
        response_parameters: params(&sizes.map(|s| (s, None))),
        ..Default::default()
    };
    let mut stream = c.channel.server_streaming(&STREAMING_OUTPUT_CALL, &req, opts());
    let mut got = Vec::new();
    while let Some(item) = stream.next().await {
        let item = item.map_err(|e| failed("StreamingOutputCall", e))?;
        let size = item.message.payload.as_ref().map_or(0, |p| p.body.len());
        check_payload(&item.message.payload, size, "a response")?;
        got.push(size as i32);
    }
    ensure!(got == sizes, "response sizes {got:?}, expected {sizes:?}");
    Ok(())
}

async fn server_compressed_streaming(c: &Client) -> CaseResult {
    let req = StreamingOutputCallRequest {
        response_parameters: params(&[(31415, Some(true)), (92653, Some(false))]),
        ..Default::default()
    };
    for (channel, raw) in [(&c.raw, true), (&c.channel, false)] {
        let mut stream = channel.server_streaming(&STREAMING_OUTPUT_CALL, &req, opts());
        let mut got = Vec::new();
        while let Some(item) = stream.next().await {
            let item = item.map_err(|e| failed("StreamingOutputCall", e))?;
            let size = item.message.payload.as_ref().map_or(0, |p| p.body.len());
            check_payload(&item.message.payload, size, "a response")?;
            got.push((size, item.compressed));
        }
        let sizes: Vec<usize> = got.iter().map(|g| g.0).collect();
        ensure!(sizes == [31415, 92653], "response sizes {sizes:?}, expected [31415, 92653]");
        if raw {
            let flags: Vec<bool> = got.iter().map(|g| g.1).collect();
            ensure!(flags == [true, false], "responses arrived compressed {flags:?}, expected [true, false]");
        }
    }
    Ok(())
}

fn duplex_request(response_size: i32, payload: usize) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: params(&[(response_size, None)]),
        payload: Some(zeros(payload)),
        ..Default::default()
    }
}

async fn ping_pong(c: &Client) -> CaseResult {
    let (mut sink, mut stream) = c.channel.duplex(&FULL_DUPLEX_CALL, opts());
    for (response_size, payload) in [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)] {
        sink.send(duplex_request(response_size, payload)).await.map_err(|e| failed("sending a request", e))?;
        let item = stream
            .next()
            .await
            .ok_or_else(|| format!("the stream ended before the response of {response_size} bytes"))?
            .map_err(|e| failed("FullDuplexCall", e))?;
        check_payload(&item.message.payload, response_size as usize, "a response")?;
    }
    sink.close().await.map_err(|e| failed("half-closing", e))?;
    match stream.next().await {
        None => Ok(()),
        Some(Ok(_)) => Err("a fifth response arrived".into()),
        Some(Err(e)) => Err(failed("FullDuplexCall after half-close", e)),
    }
}

async fn empty_stream(c: &Client) -> CaseResult {
    let (mut sink, mut stream) = c.channel.duplex(&FULL_DUPLEX_CALL, opts());
    sink.close().await.map_err(|e| failed("half-closing", e))?;
    match stream.next().await {
        None => Ok(()),
        Some(Ok(_)) => Err("a response arrived on an empty stream".into()),
        Some(Err(e)) => Err(failed("FullDuplexCall", e)),
    }
}

const ECHO_INITIAL_VALUE: &str = "test_initial_metadata_value";
const ECHO_TRAILING_VALUE: &[u8] = &[0xab, 0xab, 0xab];

fn check_echoed(initial: &Metadata, trailing: Option<&Metadata>, what: &str) -> CaseResult {
    let got = initial.get(ECHO_INITIAL_KEY);
    ensure!(got == Some(ECHO_INITIAL_VALUE), "{what}: initial metadata {ECHO_INITIAL_KEY} = {got:?}");
    let got = trailing.and_then(|t| t.get_bin(ECHO_TRAILING_KEY));
    ensure!(got == Some(ECHO_TRAILING_VALUE), "{what}: trailing metadata {ECHO_TRAILING_KEY} = {got:?}");
    Ok(())
}

async fn custom_metadata(c: &Client) -> CaseResult {
    let mut md = Metadata::new();
    md.append(ECHO_INITIAL_KEY, ECHO_INITIAL_VALUE).map_err(|e| e.to_string())?;
    md.append_bin(ECHO_TRAILING_KEY, ECHO_TRAILING_VALUE).map_err(|e| e.to_string())?;

    let reply = c
        .channel
        .unary(&UNARY_CALL, &large_request(), opts().metadata(md.clone()))
        .await
        .map_err(|e| failed("UnaryCall", e))?;
    check_payload(&reply.message().message.payload, 314159, "UnaryCall")?;
    check_echoed(reply.initial_metadata(), Some(reply.trailing_metadata()), "UnaryCall")?;

    let (mut sink, mut stream) = c.channel.duplex(&FULL_DUPLEX_CALL, opts().metadata(md));
    sink.send(duplex_request(314159, 271828)).await.map_err(|e| failed("sending the request", e))?;
    sink.close().await.map_err(|e| failed("half-closing", e))?;
    let initial = stream.initial_metadata().await.map_err(|e| failed("FullDuplexCall headers", e))?.clone();
    let mut count = 0;
    while let Some(item) = stream.next().await {
        let item = item.map_err(|e| failed("FullDuplexCall", e))?;
        check_payload(&item.message.payload, 314159, "FullDuplexCall response")?;
        count += 1;
    }
    ensure!(count == 1, "FullDuplexCall: {count} responses, expected 1");
    check_echoed(&initial, stream.trailing_metadata(), "FullDuplexCall")
}

async fn echo_status_calls(c: &Client, message: &str, duplex_too: bool) -> CaseResult {
    let status = Some(EchoStatus {
        code: Code::Unknown.as_i32(),
        message: message.to_string(),
    });
    let req = SimpleRequest {
        response_status: status.clone(),
        ..Default::default()
    };
    let unary = c.channel.unary(&UNARY_CALL, &req, opts()).await;
    check_status(unary, Code::Unknown, Some(message), "UnaryCall")?;
    if duplex_too {
        let (mut sink, mut stream) = c.channel.duplex(&FULL_DUPLEX_CALL, opts());
        let req = StreamingOutputCallRequest {
            response_status: status,
            ..Default::default()
        };
        sink.send(req).await.map_err(|e| failed("sending the request", e))?;
        let _ = sink.close().await; // may race with the server's status
        let end = match stream.next().await {
            Some(Err(e)) => Err(e),
            Some(Ok(_)) => return Err("FullDuplexCall: a response arrived, expected a status".into()),
            None => Ok(()),
        };
        check_status(end, Code::Unknown, Some(message), "FullDuplexCall")?;
    }
    Ok(())
}

async fn status_code_and_message(c: &Client) -> CaseResult {
    echo_status_calls(c, "test status message", true).await
}

/// The message of special_status_message: whitespace, a BMP and a non-BMP character.
pub const SPECIAL_STATUS_MESSAGE: &str = "\t\ntest with whitespace\r\nand Unicode BMP \u{263A} and non-BMP \u{1F608}\t\n";

async fn special_status_message(c: &Client) -> CaseResult {
    echo_status_calls(c, SPECIAL_STATUS_MESSAGE, false).await
}

async fn unimplemented(c: &Client, method: &Method<Empty, Empty, Wire>) -> CaseResult {
    let result = c.channel.unary(method, &Empty {}, opts()).await;
    check_status(result, Code::Unimplemented, None, method.path())
}

/// grpcore cancels a call by dropping its response half; it has no `cancel()` that leaves
/// the status to read (see README.md, "Gaps"). So the check is what the client can see: the
/// call is over, and the request half reports it instead of sending.
async fn cancel_after_begin(c: &Client) -> CaseResult {
    let (mut sink, response) = c.channel.client_streaming(&STREAMING_INPUT_CALL, opts());
    response.cancel();
    check_status(response.await.map(|_| ()), Code::Cancelled, None, "StreamingInputCall after cancel")?;
    check_cancelled_sink(&mut sink, input(27182, None)).await
}

async fn cancel_after_first_response(c: &Client) -> CaseResult {
    let (mut sink, mut stream) = c.channel.duplex(&FULL_DUPLEX_CALL, opts());
    sink.send(duplex_request(31415, 27182)).await.map_err(|e| failed("sending the request", e))?;
    let item = stream
        .next()
        .await
        .ok_or("the stream ended before the first response")?
        .map_err(|e| failed("FullDuplexCall", e))?;
    check_payload(&item.message.payload, 31415, "the first response")?;
    stream.cancel();
    let end = loop {
        match stream.next().await {
            Some(Ok(_)) => continue, // responses already on their way may still arrive
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    check_status(end, Code::Cancelled, None, "FullDuplexCall after cancel")?;
    check_cancelled_sink(&mut sink, duplex_request(9, 8)).await
}

/// After a cancel, a send must fail: the core ends every batch of a cancelled call. A few
/// tries allow for a write taken just before the core processed the cancellation.
async fn check_cancelled_sink<Req>(sink: &mut grpcore::RequestSink<Req>, req: Req) -> CaseResult
where
    Req: Clone,
    Wire: grpcore::Codec<Req>,
{
    for _ in 0..10 {
        if let Err(e) = sink.send(req.clone()).await {
            let code = e.code();
            ensure!(
                matches!(code, Code::Cancelled | Code::Unavailable),
                "sending after the cancel failed with {e}, expected the call to be over"
            );
            return Ok(());
        }
    }
    Err("sends still succeed after the call was cancelled".into())
}

async fn timeout_on_sleeping_server(c: &Client) -> CaseResult {
    let (mut sink, mut stream) = c.channel.duplex(&FULL_DUPLEX_CALL, opts().timeout(Duration::from_millis(1)));
    let req = StreamingOutputCallRequest {
        payload: Some(zeros(27182)),
        ..Default::default()
    };
    let _ = sink.send(req).await; // may fail: the deadline can pass first
    let end = match stream.next().await {
        Some(Err(e)) => Err(e),
        Some(Ok(_)) => return Err("a response arrived, expected DEADLINE_EXCEEDED".into()),
        None => Ok(()),
    };
    check_status(end, Code::DeadlineExceeded, None, "FullDuplexCall with a 1 ms timeout")
}
