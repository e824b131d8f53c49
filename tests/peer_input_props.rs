//! Property tests of what a peer sends, through the core and back: a status (any code,
//! any `grpc-message` text, any `grpc-status-details-bin` bytes) and metadata (ASCII and
//! binary values), sent by a grpcore server and decoded by a grpcore client. The core
//! percent-encodes `grpc-message` and base64-encodes `-bin` values on the wire; what the
//! client decodes must equal what the server sent. One server and channel for all cases.

mod common;

use std::sync::OnceLock;

use common::*;
use grpcore::{CallOptions, Channel, ChannelBuilder, Code, Environment, Error, Metadata, Server};
use proptest::prelude::*;

fn channel() -> &'static Channel {
    static PEER: OnceLock<(Environment, Server, Channel)> = OnceLock::new();
    let (_, _, channel) = PEER.get_or_init(|| {
        let env = Environment::new(1);
        let server = start_echo_server(&env);
        let channel = ChannelBuilder::new(&env)
            .connect(&format!("127.0.0.1:{}", server.port()))
            .unwrap();
        (env, server, channel)
    });
    channel
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_status_message_and_details_arrive_unchanged(
        code in 1i32..=16,
        message in "\\PC{0,80}|[\\x00-\\x7f%]{0,80}",
        details in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut req = request("fail", 1);
        req.fail_code = code;
        req.fail_message = message.clone();
        req.fail_details = details.clone();
        let err = channel().unary(&UNARY, &req, CallOptions::new()).wait().unwrap_err();
        let Error::Rpc(status) = err else { panic!("expected an RPC status, got {err}") };
        prop_assert_eq!(status.code(), Code::from_i32(code));
        prop_assert_eq!(status.message(), &message[..]);
        prop_assert_eq!(status.details(), &details[..]);
        prop_assert!(status.metadata().get_bin("grpc-status-details-bin").is_none());
    }

    #[test]
    fn any_metadata_values_arrive_unchanged(
        ascii in "[ -~]{0,60}",
        binary in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut md = Metadata::new();
        md.append("x-echo-text", &ascii).unwrap();
        md.append_bin("x-echo-data-bin", binary.clone()).unwrap();
        let reply = channel().unary(&UNARY, &request("md", 1), CallOptions::new().metadata(md)).wait().unwrap();
        prop_assert_eq!(reply.initial_metadata().get_bin("x-echo-text"), Some(ascii.as_bytes()));
        prop_assert_eq!(reply.trailing_metadata().get_bin("x-trailer-text"), Some(ascii.as_bytes()));
        prop_assert_eq!(reply.initial_metadata().get_bin("x-echo-data-bin"), Some(&binary[..]));
        prop_assert_eq!(reply.trailing_metadata().get_bin("x-trailer-data-bin"), Some(&binary[..]));
    }
}
