//! grpcore-compiler's output for the tricky proto set, compiled with both codecs under
//! `#![deny(warnings, missing_docs)]` (and clippy with `-D warnings` in CI): packages with
//! dots and the keyword `async`, nested and imported messages, several services in a file,
//! all four kinds of method, well-known types, keyword and std names, comments with code
//! and brackets, deprecated services and methods. tests/run.rs serves and calls them; the
//! policy set (deadline options, an error enum) is served by tests/policy.rs.
#![deny(warnings, missing_docs)]

/// The tricky set with prost messages (`grpcore::ProstCodec`).
pub mod prost_gen {
    include!(concat!(env!("OUT_DIR"), "/prost/mod.rs"));
}

/// The tricky set with rust-protobuf messages (`grpcore::ProtobufCodec`).
pub mod protobuf_gen {
    include!(concat!(env!("OUT_DIR"), "/protobuf/mod.rs"));
}

/// The policy set (grpcore's proto options) with prost messages.
pub mod policy_prost {
    include!(concat!(env!("OUT_DIR"), "/policy-prost/mod.rs"));
}

/// The policy set (grpcore's proto options) with rust-protobuf messages.
pub mod policy_protobuf {
    include!(concat!(env!("OUT_DIR"), "/policy-protobuf/mod.rs"));
}

/// A program that uses a part of a service, as most do: only the client, one of its four
/// methods, from a private module. Nothing else of the generated service may warn (this
/// crate denies warnings, `dead_code` included): the build fails if it does.
mod partial_use {
    mod proto {
        include!(concat!(env!("OUT_DIR"), "/partial/mod.rs"));
    }

    use proto::golden::v1::{greeter_grpc::GreeterClient, HelloRequest};

    /// Says hello to `name` through `channel`: the reply's message.
    pub async fn say_hello(channel: grpcore::Channel, name: &str) -> Result<String, grpcore::Error> {
        let reply = GreeterClient::new(channel).say_hello(HelloRequest { name: name.to_string() }).await?;
        Ok(reply.message)
    }
}

pub use partial_use::say_hello;
