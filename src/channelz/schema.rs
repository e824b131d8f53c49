//! The `grpc.channelz.v1` messages as [`Field`] tables: names, numbers and types as the
//! channelz protocol (gRFC A14) defines them, enough to encode every message a channelz
//! response carries. `google.protobuf.Any` fields (the "other" address, security model and
//! socket option payloads) are left out: the core does not fill them.

use super::wire::{Field, Kind};

const fn f(name: &'static str, number: u32, kind: Kind) -> Field {
    Field { name, number, kind, repeated: false }
}

const fn list(name: &'static str, number: u32, kind: Kind) -> Field {
    Field { name, number, kind, repeated: true }
}

pub(super) static CHANNEL_REF: &[Field] = &[f("channel_id", 1, Kind::Int64), f("name", 2, Kind::String)];
pub(super) static SUBCHANNEL_REF: &[Field] = &[f("subchannel_id", 7, Kind::Int64), f("name", 8, Kind::String)];
pub(super) static SOCKET_REF: &[Field] = &[f("socket_id", 3, Kind::Int64), f("name", 4, Kind::String)];
pub(super) static SERVER_REF: &[Field] = &[f("server_id", 5, Kind::Int64), f("name", 6, Kind::String)];

static CONNECTIVITY_STATE: &[Field] = &[f(
    "state",
    1,
    Kind::Enum(&["UNKNOWN", "IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE", "SHUTDOWN"]),
)];

static TRACE_EVENT: &[Field] = &[
    f("description", 1, Kind::String),
    f("severity", 2, Kind::Enum(&["CT_UNKNOWN", "CT_INFO", "CT_WARNING", "CT_ERROR"])),
    f("timestamp", 3, Kind::Timestamp),
    f("channel_ref", 4, Kind::Message(CHANNEL_REF)),
    f("subchannel_ref", 5, Kind::Message(SUBCHANNEL_REF)),
];

static TRACE: &[Field] = &[
    f("num_events_logged", 1, Kind::Int64),
    f("creation_timestamp", 2, Kind::Timestamp),
    list("events", 3, Kind::Message(TRACE_EVENT)),
];

static CHANNEL_DATA: &[Field] = &[
    f("state", 1, Kind::Message(CONNECTIVITY_STATE)),
    f("target", 2, Kind::String),
    f("trace", 3, Kind::Message(TRACE)),
    f("calls_started", 4, Kind::Int64),
    f("calls_succeeded", 5, Kind::Int64),
    f("calls_failed", 6, Kind::Int64),
    f("last_call_started_timestamp", 7, Kind::Timestamp),
];

pub(super) static CHANNEL: &[Field] = &[
    f("ref", 1, Kind::Message(CHANNEL_REF)),
    f("data", 2, Kind::Message(CHANNEL_DATA)),
    list("channel_ref", 3, Kind::Message(CHANNEL_REF)),
    list("subchannel_ref", 4, Kind::Message(SUBCHANNEL_REF)),
    list("socket_ref", 5, Kind::Message(SOCKET_REF)),
];

pub(super) static SUBCHANNEL: &[Field] = &[
    f("ref", 1, Kind::Message(SUBCHANNEL_REF)),
    f("data", 2, Kind::Message(CHANNEL_DATA)),
    list("channel_ref", 3, Kind::Message(CHANNEL_REF)),
    list("subchannel_ref", 4, Kind::Message(SUBCHANNEL_REF)),
    list("socket_ref", 5, Kind::Message(SOCKET_REF)),
];

static SERVER_DATA: &[Field] = &[
    f("trace", 1, Kind::Message(TRACE)),
    f("calls_started", 2, Kind::Int64),
    f("calls_succeeded", 3, Kind::Int64),
    f("calls_failed", 4, Kind::Int64),
    f("last_call_started_timestamp", 5, Kind::Timestamp),
];

pub(super) static SERVER: &[Field] = &[
    f("ref", 1, Kind::Message(SERVER_REF)),
    f("data", 2, Kind::Message(SERVER_DATA)),
    list("listen_socket", 3, Kind::Message(SOCKET_REF)),
];

static SOCKET_OPTION: &[Field] = &[f("name", 1, Kind::String), f("value", 2, Kind::String)];

static SOCKET_DATA: &[Field] = &[
    f("streams_started", 1, Kind::Int64),
    f("streams_succeeded", 2, Kind::Int64),
    f("streams_failed", 3, Kind::Int64),
    f("messages_sent", 4, Kind::Int64),
    f("messages_received", 5, Kind::Int64),
    f("keep_alives_sent", 6, Kind::Int64),
    f("last_local_stream_created_timestamp", 7, Kind::Timestamp),
    f("last_remote_stream_created_timestamp", 8, Kind::Timestamp),
    f("last_message_sent_timestamp", 9, Kind::Timestamp),
    f("last_message_received_timestamp", 10, Kind::Timestamp),
    f("local_flow_control_window", 11, Kind::Int64Value),
    f("remote_flow_control_window", 12, Kind::Int64Value),
    list("option", 13, Kind::Message(SOCKET_OPTION)),
];

static TCPIP_ADDRESS: &[Field] = &[f("ip_address", 1, Kind::Bytes), f("port", 2, Kind::Int32)];
static UDS_ADDRESS: &[Field] = &[f("filename", 1, Kind::String)];
static OTHER_ADDRESS: &[Field] = &[f("name", 1, Kind::String)];

static ADDRESS: &[Field] = &[
    f("tcpip_address", 1, Kind::Message(TCPIP_ADDRESS)),
    f("uds_address", 2, Kind::Message(UDS_ADDRESS)),
    f("other_address", 3, Kind::Message(OTHER_ADDRESS)),
];

static TLS: &[Field] = &[
    f("standard_name", 1, Kind::String),
    f("other_name", 2, Kind::String),
    f("local_certificate", 3, Kind::Bytes),
    f("remote_certificate", 4, Kind::Bytes),
];
static OTHER_SECURITY: &[Field] = &[f("name", 1, Kind::String)];
static SECURITY: &[Field] = &[f("tls", 1, Kind::Message(TLS)), f("other", 2, Kind::Message(OTHER_SECURITY))];

pub(super) static SOCKET: &[Field] = &[
    f("ref", 1, Kind::Message(SOCKET_REF)),
    f("data", 2, Kind::Message(SOCKET_DATA)),
    f("local", 3, Kind::Message(ADDRESS)),
    f("remote", 4, Kind::Message(ADDRESS)),
    f("security", 5, Kind::Message(SECURITY)),
    f("remote_name", 6, Kind::String),
];

/// The responses: what each getter of the core returns, as the message its method answers.
pub(super) static GET_TOP_CHANNELS_RESPONSE: &[Field] = &[list("channel", 1, Kind::Message(CHANNEL)), f("end", 2, Kind::Bool)];
pub(super) static GET_SERVERS_RESPONSE: &[Field] = &[list("server", 1, Kind::Message(SERVER)), f("end", 2, Kind::Bool)];
pub(super) static GET_SERVER_RESPONSE: &[Field] = &[f("server", 1, Kind::Message(SERVER))];
pub(super) static GET_SERVER_SOCKETS_RESPONSE: &[Field] = &[list("socket_ref", 1, Kind::Message(SOCKET_REF)), f("end", 2, Kind::Bool)];
pub(super) static GET_CHANNEL_RESPONSE: &[Field] = &[f("channel", 1, Kind::Message(CHANNEL))];
pub(super) static GET_SUBCHANNEL_RESPONSE: &[Field] = &[f("subchannel", 1, Kind::Message(SUBCHANNEL))];
pub(super) static GET_SOCKET_RESPONSE: &[Field] = &[f("socket", 1, Kind::Message(SOCKET))];

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{DescriptorProto, FileDescriptorProto};

    /// Every message of the file, by fully qualified name (nested ones included).
    fn messages(file: &FileDescriptorProto) -> std::collections::HashMap<String, DescriptorProto> {
        fn add(prefix: &str, list: &[DescriptorProto], out: &mut std::collections::HashMap<String, DescriptorProto>) {
            for m in list {
                let name = format!("{prefix}.{}", m.name());
                add(&name, &m.nested_type, out);
                out.insert(name, m.clone());
            }
        }
        let mut out = std::collections::HashMap::new();
        add(&format!(".{}", file.package()), &file.message_type, &mut out);
        out
    }

    /// The tables say what grpcore's statement of the protocol (proto/, whose descriptors
    /// the service carries) says: every field's number, type and repetition, down through
    /// every message a table points to.
    #[test]
    fn tables_match_the_proto() {
        let file = FileDescriptorProto::decode(super::super::channelz_grpc::FILE_DESCRIPTORS[0]).unwrap();
        let all = messages(&file);
        let mut todo: Vec<(&[Field], String)> = vec![
            (GET_TOP_CHANNELS_RESPONSE, ".grpc.channelz.v1.GetTopChannelsResponse".into()),
            (GET_SERVERS_RESPONSE, ".grpc.channelz.v1.GetServersResponse".into()),
            (GET_SERVER_RESPONSE, ".grpc.channelz.v1.GetServerResponse".into()),
            (GET_SERVER_SOCKETS_RESPONSE, ".grpc.channelz.v1.GetServerSocketsResponse".into()),
            (GET_CHANNEL_RESPONSE, ".grpc.channelz.v1.GetChannelResponse".into()),
            (GET_SUBCHANNEL_RESPONSE, ".grpc.channelz.v1.GetSubchannelResponse".into()),
            (GET_SOCKET_RESPONSE, ".grpc.channelz.v1.GetSocketResponse".into()),
        ];
        let mut checked = 0;
        while let Some((table, name)) = todo.pop() {
            let message = &all[&name];
            for field in table {
                let proto = message.field.iter().find(|f| f.name() == field.name).unwrap_or_else(|| panic!("{name} has no {}", field.name));
                assert_eq!(proto.number(), field.number as i32, "{name}.{}", field.name);
                assert_eq!(proto.label() == Label::Repeated, field.repeated, "{name}.{}", field.name);
                let expected = match &field.kind {
                    Kind::Int64 => Type::Int64,
                    Kind::Int32 => Type::Int32,
                    Kind::Bool => Type::Bool,
                    Kind::String => Type::String,
                    Kind::Bytes => Type::Bytes,
                    Kind::Enum(_) => Type::Enum,
                    Kind::Message(inner) => {
                        todo.push((inner, proto.type_name().to_string()));
                        Type::Message
                    }
                    Kind::Timestamp => {
                        assert_eq!(proto.type_name(), ".google.protobuf.Timestamp");
                        Type::Message
                    }
                    Kind::Int64Value => {
                        assert_eq!(proto.type_name(), ".google.protobuf.Int64Value");
                        Type::Message
                    }
                };
                assert_eq!(proto.r#type(), expected, "{name}.{}", field.name);
                checked += 1;
            }
        }
        assert!(checked > 80, "{checked} fields checked");
    }
}
