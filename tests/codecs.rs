//! The codecs behind one trait: prost, rust-protobuf 3.x (feature `protobuf`) and raw bytes,
//! each serving real calls, and the protobuf codecs agreeing on the wire.

mod common;

use common::*;
use grpcore::{BytesCodec, CallOptions, ChannelBuilder, Environment, Method, ServerBuilder, ServiceBuilder, Status};

#[test]
fn prost_messages_cross_the_wire_as_plain_protobuf() {
    // A prost client talks to a raw-bytes server that checks the exact encoding.
    let env = Environment::new(1);
    const RAW: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/grpcore.test.Echo/Unary");
    let service = ServiceBuilder::new("grpcore.test.Echo")
        .add_unary(&RAW, |req: Vec<u8>, _| async move {
            // EchoRequest{message: "hi", seq: 5} is field 1 (len 2, "hi") then field 2 (varint 5).
            assert_eq!(req, vec![0x0a, 0x02, b'h', b'i', 0x10, 0x05]);
            Ok::<_, Status>(vec![0x10, 0x2a]) // EchoResponse{seq: 42}
        })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let reply = channel.unary(&UNARY, &request("hi", 5), CallOptions::new()).wait().unwrap();
    assert_eq!(reply.message().seq, 42);
}

#[cfg(feature = "protobuf")]
#[test]
fn rust_protobuf_messages_serve_calls_and_match_prost_on_the_wire() {
    use grpcore::ProtobufCodec;
    use protobuf::well_known_types::wrappers::StringValue;

    const UPPER: Method<StringValue, StringValue, ProtobufCodec> = Method::unary("/grpcore.test.Text/Upper");
    let env = Environment::new(1);
    let service = ServiceBuilder::new("grpcore.test.Text")
        .add_unary(&UPPER, |req: StringValue, _| async move {
            let mut out = StringValue::new();
            out.value = req.value.to_uppercase();
            Ok::<_, Status>(out)
        })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let mut req = StringValue::new();
    req.value = "ünïcode ".repeat(10_000); // spans several slices
    let reply = channel.unary(&UPPER, &req, CallOptions::new()).wait().unwrap();
    assert_eq!(reply.message().value, "ÜNÏCODE ".repeat(10_000));

    // The same bytes decode with prost: StringValue is field 1, a string.
    #[derive(Clone, PartialEq, prost::Message)]
    struct ProstString {
        #[prost(string, tag = "1")]
        value: String,
    }
    const UPPER_PROST: Method<ProstString, ProstString, grpcore::ProstCodec> = Method::unary("/grpcore.test.Text/Upper");
    let reply = channel
        .unary(&UPPER_PROST, &ProstString { value: "mixed".into() }, CallOptions::new())
        .wait()
        .unwrap();
    assert_eq!(reply.message().value, "MIXED");

    // Garbage is a codec error naming the message type.
    const RAW: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/grpcore.test.Text/Upper");
    let err = channel.unary(&RAW, &vec![0x0a, 0xff], CallOptions::new()).wait().unwrap_err();
    assert!(err.to_string().contains("StringValue"), "{err}");
}

#[test]
fn bytes_codec_carries_empty_and_large_messages() {
    let env = Environment::new(1);
    const ECHO: Method<bytes::Bytes, bytes::Bytes, BytesCodec> = Method::unary("/grpcore.test.Raw/Echo");
    let service = ServiceBuilder::new("grpcore.test.Raw")
        .add_unary(&ECHO, |req: bytes::Bytes, _| async move { Ok::<_, Status>(req) })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    for len in [0usize, 1, 23, 24, 3 << 20] {
        let data = bytes::Bytes::from((0..len).map(|i| (i % 253) as u8).collect::<Vec<_>>());
        let reply = channel.unary(&ECHO, &data, CallOptions::new()).wait().unwrap();
        assert_eq!(reply.message(), &data, "len {len}");
    }
}
