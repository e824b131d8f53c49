//! The `helloworld.Greeter` service of `helloworld.proto` (next to this file), written by hand
//! until grpcore-compiler generates it: the two messages as prost structs, and the one method.

use grpcore::{Method, ProstCodec};

/// The request: whom to greet.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// The response: the greeting.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

/// `rpc SayHello (HelloRequest) returns (HelloReply)` of service `helloworld.Greeter`.
pub const SAY_HELLO: Method<HelloRequest, HelloReply, ProstCodec> =
    Method::unary("/helloworld.Greeter/SayHello");
