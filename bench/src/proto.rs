//! The messages of proto/benchmark_service.proto, written by hand with prost's derive
//! (what prost-build would generate, minus the build step). Tags and types follow the
//! .proto file field by field.

/// `grpc.testing.PayloadType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PayloadType {
    /// Compressable text format.
    Compressable = 0,
}

/// `grpc.testing.GrpclbRouteType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum GrpclbRouteType {
    /// The server did not detect the route.
    Unknown = 0,
    /// Reached through gRPCLB fallback.
    Fallback = 1,
    /// Reached as a gRPCLB backend.
    Backend = 2,
}

/// `grpc.testing.Payload`: a block of data to make a message bigger.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    /// The type of data in `body`.
    #[prost(enumeration = "PayloadType", tag = "1")]
    pub r#type: i32,
    /// The bytes: a `Bytes`, as prost-build's `.bytes(["."])` generates (the tonic and grpcio
    /// peers are built so too), so a large body is shared with the transport's buffers
    /// instead of copied (benches/README.md, "1 MiB messages").
    #[prost(bytes = "bytes", tag = "2")]
    pub body: prost::bytes::Bytes,
}

/// `grpc.testing.EchoStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoStatus {
    /// Status code to return.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Status message to return.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `grpc.testing.BoolValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BoolValue {
    /// The value.
    #[prost(bool, tag = "1")]
    pub value: bool,
}

/// `grpc.testing.SimpleRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SimpleRequest {
    /// Desired payload type of the response.
    #[prost(enumeration = "PayloadType", tag = "1")]
    pub response_type: i32,
    /// Payload bytes the response carries.
    #[prost(int32, tag = "2")]
    pub response_size: i32,
    /// The request's own payload.
    #[prost(message, optional, tag = "3")]
    pub payload: Option<Payload>,
    /// Whether the response should include the user name.
    #[prost(bool, tag = "4")]
    pub fill_username: bool,
    /// Whether the response should include the OAuth scope.
    #[prost(bool, tag = "5")]
    pub fill_oauth_scope: bool,
    /// Whether the server should compress the response.
    #[prost(message, optional, tag = "6")]
    pub response_compressed: Option<BoolValue>,
    /// A status the server should return.
    #[prost(message, optional, tag = "7")]
    pub response_status: Option<EchoStatus>,
    /// Whether the server should expect a compressed request.
    #[prost(message, optional, tag = "8")]
    pub expect_compressed: Option<BoolValue>,
    /// Whether the response should include the server id.
    #[prost(bool, tag = "9")]
    pub fill_server_id: bool,
    /// Whether the response should include the gRPCLB route type.
    #[prost(bool, tag = "10")]
    pub fill_grpclb_route_type: bool,
}

/// `grpc.testing.SimpleResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SimpleResponse {
    /// The payload.
    #[prost(message, optional, tag = "1")]
    pub payload: Option<Payload>,
    /// The user the request came from.
    #[prost(string, tag = "2")]
    pub username: String,
    /// OAuth scope.
    #[prost(string, tag = "3")]
    pub oauth_scope: String,
    /// Server id.
    #[prost(string, tag = "4")]
    pub server_id: String,
    /// gRPCLB route type.
    #[prost(enumeration = "GrpclbRouteType", tag = "5")]
    pub grpclb_route_type: i32,
    /// Server host name.
    #[prost(string, tag = "6")]
    pub hostname: String,
}
