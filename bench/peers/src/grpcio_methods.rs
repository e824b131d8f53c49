// The BenchmarkService methods for grpcio, with marshallers over the same prost messages
// as the tonic peer. The functions are grpcio's own `pr_codec` (feature prost-codec)
// written for this prost version: encode straight into the slice grpcio allocates, decode
// from its reader in place.

use grpcio::{GrpcSlice, Marshaller, MessageReader, Method, MethodType};
use prost::Message;

use crate::pb::{SimpleRequest, SimpleResponse};

fn ser<M: Message>(msg: &M, buf: &mut GrpcSlice) -> grpcio::Result<()> {
    let size = msg.encoded_len();
    // SAFETY: prost writes exactly `encoded_len` bytes, initializing the whole slice.
    unsafe {
        let bytes = buf.realloc(size);
        let mut b = &mut *(bytes as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]);
        msg.encode(&mut b)
            .map_err(|e| grpcio::Error::Codec(Box::new(e)))?;
        debug_assert!(b.is_empty());
    }
    Ok(())
}

fn de<M: Message + Default>(reader: MessageReader) -> grpcio::Result<M> {
    M::decode(reader).map_err(|e| grpcio::Error::Codec(Box::new(e)))
}

const REQ: Marshaller<SimpleRequest> = Marshaller {
    ser: ser::<SimpleRequest>,
    de: de::<SimpleRequest>,
};
const RESP: Marshaller<SimpleResponse> = Marshaller {
    ser: ser::<SimpleResponse>,
    de: de::<SimpleResponse>,
};

/// `UnaryCall`.
pub const UNARY_CALL: Method<SimpleRequest, SimpleResponse> = Method {
    ty: MethodType::Unary,
    name: "/grpc.testing.BenchmarkService/UnaryCall",
    req_mar: REQ,
    resp_mar: RESP,
};
/// `StreamingCall`.
pub const STREAMING_CALL: Method<SimpleRequest, SimpleResponse> = Method {
    ty: MethodType::Duplex,
    name: "/grpc.testing.BenchmarkService/StreamingCall",
    req_mar: REQ,
    resp_mar: RESP,
};
/// `StreamingFromServer`.
pub const STREAMING_FROM_SERVER: Method<SimpleRequest, SimpleResponse> = Method {
    ty: MethodType::ServerStreaming,
    name: "/grpc.testing.BenchmarkService/StreamingFromServer",
    req_mar: REQ,
    resp_mar: RESP,
};
