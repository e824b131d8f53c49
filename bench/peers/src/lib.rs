//! What the tonic and grpcio peers share: the generated messages and tonic stubs, the
//! benchmark's flags/phases/report (grpcore-bench's own `common.rs`, so every client
//! measures the same way), and the upstream response semantics.

#[path = "../../src/common.rs"]
pub mod common;

/// grpcore-bench's own SIGTERM/SIGINT handling, so the peers stop as its servers do.
#[path = "../../src/signals.rs"]
pub mod signals;

/// `grpc.testing` from ../proto/benchmark_service.proto (prost messages, tonic stubs).
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("grpc.testing");
}

use pb::{Payload, SimpleRequest, SimpleResponse};

/// A request with `req_size` payload bytes asking for `resp_size` bytes back.
pub fn request(req_size: usize, resp_size: usize) -> SimpleRequest {
    SimpleRequest {
        response_size: resp_size.min(i32::MAX as usize) as i32,
        payload: Some(Payload {
            r#type: 0,
            body: vec![0; req_size].into(),
        }),
        ..Default::default()
    }
}

/// The upstream benchmark servers' answer: `response_size` zero bytes.
pub fn response_for(req: &SimpleRequest) -> SimpleResponse {
    SimpleResponse {
        payload: Some(Payload {
            r#type: req.response_type,
            body: common::zeroed_body(req.response_size.max(0) as usize).into(),
        }),
        ..Default::default()
    }
}

/// Payload bytes of a response.
pub fn payload_len(resp: &SimpleResponse) -> usize {
    resp.payload.as_ref().map_or(0, |p| p.body.len())
}

/// grpcio's method descriptors for the same service.
#[path = "grpcio_methods.rs"]
pub mod grpcio_methods;
