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
