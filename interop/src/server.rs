//! `grpc.testing.TestService` on grpcore, with the server features of the interop test
//! descriptions: EmptyCall, UnaryCall, StreamingInputCall, StreamingOutputCall and
//! FullDuplexCall; CompressedResponse (`response_compressed`,
//! `ResponseParameters.compressed`), Echo Status, Echo Metadata and
//! `ResponseParameters.interval_us`. `UnimplementedCall` and `UnimplementedService` are not
//! registered, so grpcore answers them `UNIMPLEMENTED`. `CacheableUnaryCall` and
//! `HalfDuplexCall` are not among the cases and not served either.
//!
//! Requests are received as on any grpcore server with the library's defaults: the core
//! decompresses what arrived with a `grpc-encoding` it supports, and hands everything else
//! to the codec as it is. So a message with the compressed flag but no `grpc-encoding`, or
//! with an encoding nobody supports, gets exactly the status it gets from every other server
//! binary in this repository (the core of 1.51 passes it through; the prost codec then fails
//! it with INTERNAL unless its bytes happen to be a valid message).
//!
//! CompressedRequest (`expect_compressed: true`) is not served: it needs to know whether a
//! request travelled compressed, and the 1.51 core tells a server neither per message nor
//! per call (a received buffer is never marked compressed on a server, with or without the
//! core's decompression filter; `grpc-encoding` is taken out of the request metadata, and an
//! unknown value is already read as `identity`). Guessing it from the bytes, as this server
//! once did with the filter off, also took in messages whose flag the headers did not
//! explain. Such requests are answered UNIMPLEMENTED saying so, as the grpc-js peer server
//! does, rather than with a wrong answer.

use std::time::Duration;

use futures::StreamExt;
use grpcore::{
    Code, Compression, Metadata, Method, ProstCodec, RequestStream, ServerBuilder, ServerContext, ServerSink,
    Service, ServiceBuilder, Status, WriteFlags,
};

use crate::proto::{
    Empty, EchoStatus, PayloadType, ResponseParameters, SimpleRequest, SimpleResponse, StreamingInputCallRequest,
    StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
};
use crate::{paths, zeros, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY, TEST_SERVICE};

const EMPTY_CALL: Method<Empty, Empty, ProstCodec> = Method::unary(paths::EMPTY_CALL);
const UNARY_CALL: Method<SimpleRequest, SimpleResponse, ProstCodec> = Method::unary(paths::UNARY_CALL);
const STREAMING_INPUT_CALL: Method<StreamingInputCallRequest, StreamingInputCallResponse, ProstCodec> =
    Method::client_streaming(paths::STREAMING_INPUT_CALL);
const STREAMING_OUTPUT_CALL: Method<StreamingOutputCallRequest, StreamingOutputCallResponse, ProstCodec> =
    Method::server_streaming(paths::STREAMING_OUTPUT_CALL);
const FULL_DUPLEX_CALL: Method<StreamingOutputCallRequest, StreamingOutputCallResponse, ProstCodec> =
    Method::duplex(paths::FULL_DUPLEX_CALL);

/// The algorithm the server compresses with when a request asks for compression.
pub const RESPONSE_COMPRESSION: Compression = Compression::Gzip;

/// The service, ready to register.
pub fn test_service() -> Service {
    ServiceBuilder::new(TEST_SERVICE)
        .add_unary(&EMPTY_CALL, |_: Empty, ctx: ServerContext| async move {
            echo_metadata(&ctx);
            Ok::<_, Status>(Empty {})
        })
        .add_unary(&UNARY_CALL, unary_call)
        .add_client_streaming(&STREAMING_INPUT_CALL, streaming_input_call)
        .add_server_streaming(&STREAMING_OUTPUT_CALL, streaming_output_call)
        .add_duplex(&FULL_DUPLEX_CALL, full_duplex_call)
        .build()
}

/// A server builder with the test service, receiving as the library's defaults do (see the
/// module docs).
pub fn configure(builder: ServerBuilder) -> ServerBuilder {
    builder.register_service(test_service())
}

/// Echo Metadata: `x-grpc-test-echo-initial` comes back in the initial metadata,
/// `x-grpc-test-echo-trailing-bin` in the trailing metadata, unchanged.
fn echo_metadata(ctx: &ServerContext) {
    let request = ctx.request_metadata();
    if let Some(v) = request.get(ECHO_INITIAL_KEY) {
        let mut initial = Metadata::new();
        if initial.append(ECHO_INITIAL_KEY, v).is_ok() {
            ctx.set_initial_metadata(initial);
        }
    }
    if let Some(v) = request.get_bin(ECHO_TRAILING_KEY) {
        let mut trailing = Metadata::new();
        if trailing.append_bin(ECHO_TRAILING_KEY, v.to_vec()).is_ok() {
            ctx.set_trailing_metadata(trailing);
        }
    }
}

/// Echo Status: a set `response_status` with a non-zero code ends the call with it.
fn echo_status(status: &Option<EchoStatus>) -> Result<(), Status> {
    match status {
        Some(s) if s.code != 0 => Err(Status::new(Code::from_i32(s.code), s.message.clone())),
        _ => Ok(()),
    }
}

/// CompressedRequest: `expect_compressed` true cannot be checked here (see the module docs),
/// so it is refused rather than answered wrongly.
fn check_compressed(expect: &Option<crate::proto::BoolValue>) -> Result<(), Status> {
    if expect.as_ref().is_some_and(|b| b.value) {
        return Err(Status::unimplemented(
            "expect_compressed is not supported: the gRPC core (1.51) does not tell a server whether a \
             request arrived compressed",
        ));
    }
    Ok(())
}

fn check_type(response_type: i32) -> Result<(), Status> {
    if response_type != PayloadType::Compressable as i32 {
        return Err(Status::invalid_argument(format!("unsupported response_type {response_type}")));
    }
    Ok(())
}

fn payload_size(size: i32) -> Result<usize, Status> {
    usize::try_from(size).map_err(|_| Status::invalid_argument(format!("negative response size {size}")))
}

async fn unary_call(req: SimpleRequest, ctx: ServerContext) -> Result<SimpleResponse, Status> {
    echo_metadata(&ctx);
    check_compressed(&req.expect_compressed)?;
    echo_status(&req.response_status)?;
    check_type(req.response_type)?;
    if req.response_compressed.as_ref().is_some_and(|b| b.value) {
        ctx.set_compression(RESPONSE_COMPRESSION);
    }
    Ok(SimpleResponse {
        payload: Some(zeros(payload_size(req.response_size)?)),
        ..Default::default()
    })
}

async fn streaming_input_call(
    mut requests: RequestStream<StreamingInputCallRequest>,
    ctx: ServerContext,
) -> Result<StreamingInputCallResponse, Status> {
    echo_metadata(&ctx);
    let mut total = 0usize;
    while let Some(request) = requests.message().await? {
        check_compressed(&request.expect_compressed)?;
        total += request.payload.map_or(0, |p| p.body.len());
    }
    let aggregated_payload_size =
        i32::try_from(total).map_err(|_| Status::invalid_argument("aggregated payload size overflows int32"))?;
    Ok(StreamingInputCallResponse { aggregated_payload_size })
}

fn wants_compression(params: &[ResponseParameters]) -> bool {
    params.iter().any(|p| p.compressed.as_ref().is_some_and(|b| b.value))
}

/// Sends one response per parameter: sleeping `interval_us` first, compressed unless the
/// parameter says `compressed: false` (the call compresses only if some parameter asked).
async fn send_responses(
    params: &[ResponseParameters],
    sink: &mut ServerSink<StreamingOutputCallResponse>,
    ctx: &ServerContext,
) -> Result<(), Status> {
    for p in params {
        if p.interval_us > 0 && !sleep_unless_cancelled(ctx, Duration::from_micros(p.interval_us as u64)).await {
            return Err(Status::new(Code::Cancelled, "cancelled while waiting to send a response"));
        }
        let response = StreamingOutputCallResponse {
            payload: Some(zeros(payload_size(p.size)?)),
        };
        let plain = p.compressed.as_ref().is_some_and(|b| !b.value);
        sink.send_with(response, WriteFlags::new().no_compress(plain)).await?;
    }
    Ok(())
}

async fn streaming_output_call(
    req: StreamingOutputCallRequest,
    mut sink: ServerSink<StreamingOutputCallResponse>,
    ctx: ServerContext,
) -> Result<(), Status> {
    echo_metadata(&ctx);
    check_type(req.response_type)?;
    if wants_compression(&req.response_parameters) {
        ctx.set_compression(RESPONSE_COMPRESSION);
    }
    send_responses(&req.response_parameters, &mut sink, &ctx).await?;
    echo_status(&req.response_status)
}

async fn full_duplex_call(
    mut requests: RequestStream<StreamingOutputCallRequest>,
    mut sink: ServerSink<StreamingOutputCallResponse>,
    ctx: ServerContext,
) -> Result<(), Status> {
    echo_metadata(&ctx);
    while let Some(req) = requests.next().await {
        let req = req?;
        echo_status(&req.response_status)?;
        check_type(req.response_type)?;
        // Takes effect only before the first response (it rides on the initial metadata).
        if wants_compression(&req.response_parameters) {
            ctx.set_compression(RESPONSE_COMPRESSION);
        }
        send_responses(&req.response_parameters, &mut sink, &ctx).await?;
    }
    Ok(())
}

/// Sleeps on a plain thread (no runtime needed); false if the call was cancelled first.
async fn sleep_unless_cancelled(ctx: &ServerContext, pause: Duration) -> bool {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(pause);
        let _ = tx.send(());
    });
    futures::future::select(rx, ctx.cancelled()).await;
    !ctx.is_cancelled()
}
