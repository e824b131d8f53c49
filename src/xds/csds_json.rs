//! The CSDS dump (`envoy.service.status.v3.ClientConfig`) rendered as JSON.
//!
//! Only the envelope is decoded, with message types written here for it (field numbers
//! of `envoy/service/status/v3/csds.proto`, `envoy/admin/v3/config_dump_shared.proto`,
//! `envoy/config/core/v3/base.proto` and the well-known types): the node, and per
//! resource its type, name, versions, statuses, times and error. The resources
//! themselves are not decoded (that needs the envoy protos): see
//! [`client_config_to_json`](super::client_config_to_json) for what is shown of them.

use std::collections::BTreeMap;

use base64::Engine as _;
use prost::Message;
use serde_json::{json, Map, Value};

use crate::error::{CodecErrorKind, Error};

/// `envoy.service.status.v3.ClientConfig` (the deprecated field 2, `xds_config`, which the
/// 1.51 core never fills, is skipped as unknown).
#[derive(Clone, PartialEq, Message)]
pub(super) struct ClientConfig {
    #[prost(message, optional, tag = "1")]
    pub(super) node: Option<Node>,
    #[prost(message, repeated, tag = "3")]
    pub(super) generic_xds_configs: Vec<GenericXdsConfig>,
    #[prost(string, tag = "4")]
    pub(super) client_scope: String,
}

/// `envoy.service.status.v3.ClientConfig.GenericXdsConfig`.
#[derive(Clone, PartialEq, Message)]
pub(super) struct GenericXdsConfig {
    #[prost(string, tag = "1")]
    pub(super) type_url: String,
    #[prost(string, tag = "2")]
    pub(super) name: String,
    #[prost(string, tag = "3")]
    pub(super) version_info: String,
    #[prost(message, optional, tag = "4")]
    pub(super) xds_config: Option<Any>,
    #[prost(message, optional, tag = "5")]
    pub(super) last_updated: Option<Timestamp>,
    /// `envoy.service.status.v3.ConfigStatus`.
    #[prost(int32, tag = "6")]
    pub(super) config_status: i32,
    /// `envoy.admin.v3.ClientResourceStatus`.
    #[prost(int32, tag = "7")]
    pub(super) client_status: i32,
    #[prost(message, optional, tag = "8")]
    pub(super) error_state: Option<UpdateFailureState>,
    #[prost(bool, tag = "9")]
    pub(super) is_static_resource: bool,
}

/// `envoy.admin.v3.UpdateFailureState`.
#[derive(Clone, PartialEq, Message)]
pub(super) struct UpdateFailureState {
    #[prost(message, optional, tag = "1")]
    pub(super) failed_configuration: Option<Any>,
    #[prost(message, optional, tag = "2")]
    pub(super) last_update_attempt: Option<Timestamp>,
    #[prost(string, tag = "3")]
    pub(super) details: String,
    #[prost(string, tag = "4")]
    pub(super) version_info: String,
}

/// `envoy.config.core.v3.Node`, the fields the core fills (not `dynamic_parameters`,
/// `user_agent_build_version`, `extensions`, `listening_addresses`).
#[derive(Clone, PartialEq, Message)]
pub(super) struct Node {
    #[prost(string, tag = "1")]
    pub(super) id: String,
    #[prost(string, tag = "2")]
    pub(super) cluster: String,
    #[prost(message, optional, tag = "3")]
    pub(super) metadata: Option<Struct>,
    #[prost(message, optional, tag = "4")]
    pub(super) locality: Option<Locality>,
    #[prost(string, tag = "6")]
    pub(super) user_agent_name: String,
    /// One member of the `user_agent_version_type` oneof (the core sets this one).
    #[prost(string, tag = "7")]
    pub(super) user_agent_version: String,
    #[prost(string, repeated, tag = "10")]
    pub(super) client_features: Vec<String>,
}

/// `envoy.config.core.v3.Locality`.
#[derive(Clone, PartialEq, Message)]
pub(super) struct Locality {
    #[prost(string, tag = "1")]
    pub(super) region: String,
    #[prost(string, tag = "2")]
    pub(super) zone: String,
    #[prost(string, tag = "3")]
    pub(super) sub_zone: String,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub(super) struct Any {
    #[prost(string, tag = "1")]
    pub(super) type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) value: Vec<u8>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, Message)]
pub(super) struct Timestamp {
    #[prost(int64, tag = "1")]
    pub(super) seconds: i64,
    #[prost(int32, tag = "2")]
    pub(super) nanos: i32,
}

/// `google.protobuf.Struct` (the node's metadata).
#[derive(Clone, PartialEq, Message)]
pub(super) struct Struct {
    #[prost(btree_map = "string, message", tag = "1")]
    pub(super) fields: BTreeMap<String, StructValue>,
}

/// `google.protobuf.Value`.
#[derive(Clone, PartialEq, Message)]
pub(super) struct StructValue {
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5, 6")]
    pub(super) kind: Option<Kind>,
}

/// `google.protobuf.Value.kind`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum Kind {
    #[prost(int32, tag = "1")]
    Null(i32),
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    String(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
    #[prost(message, tag = "5")]
    Struct(Struct),
    #[prost(message, tag = "6")]
    List(ListValue),
}

/// `google.protobuf.ListValue`.
#[derive(Clone, PartialEq, Message)]
pub(super) struct ListValue {
    #[prost(message, repeated, tag = "1")]
    pub(super) values: Vec<StructValue>,
}

/// Names of `envoy.admin.v3.ClientResourceStatus`.
const CLIENT_STATUS: &[&str] = &["UNKNOWN", "REQUESTED", "DOES_NOT_EXIST", "ACKED", "NACKED", "RECEIVED_ERROR", "TIMEOUT"];
/// Names of `envoy.service.status.v3.ConfigStatus`.
const CONFIG_STATUS: &[&str] = &["UNKNOWN", "SYNCED", "NOT_SENT", "STALE", "ERROR"];

/// The resource types whose field 1 is the resource's name, and that field's JSON name.
const NAMED_TYPES: &[(&str, &str)] = &[
    ("type.googleapis.com/envoy.config.listener.v3.Listener", "name"),
    ("type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name"),
    ("type.googleapis.com/envoy.config.cluster.v3.Cluster", "name"),
    ("type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", "clusterName"),
];

/// `bytes`, a serialized ClientConfig, as proto3-shaped JSON (see `client_config_to_json`).
pub(super) fn render(bytes: &[u8]) -> Result<Value, Error> {
    let config = ClientConfig::decode(bytes).map_err(|e| {
        Error::codec_kind(CodecErrorKind::Decode, format!("CSDS: not an envoy.service.status.v3.ClientConfig: {e}"))
            .with_source(e)
    })?;
    let mut out = Map::new();
    if let Some(node) = &config.node {
        out.insert("node".into(), node_json(node));
    }
    if !config.generic_xds_configs.is_empty() {
        let configs = config.generic_xds_configs.iter().map(generic_json).collect();
        out.insert("genericXdsConfigs".into(), Value::Array(configs));
    }
    put_str(&mut out, "clientScope", &config.client_scope);
    Ok(Value::Object(out))
}

/// Inserts a string field unless it has its default (empty) value, as proto3 JSON does.
fn put_str(out: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        out.insert(key.into(), Value::String(value.into()));
    }
}

/// An enum's JSON: its name, or its number when this decoder does not know it (as
/// proto3 JSON prints unknown enum values); nothing for the default 0.
fn put_enum(out: &mut Map<String, Value>, key: &str, value: i32, names: &[&str]) {
    if value == 0 {
        return;
    }
    let json = match usize::try_from(value).ok().and_then(|i| names.get(i)) {
        Some(name) => json!(name),
        None => json!(value),
    };
    out.insert(key.into(), json);
}

fn node_json(node: &Node) -> Value {
    let mut out = Map::new();
    put_str(&mut out, "id", &node.id);
    put_str(&mut out, "cluster", &node.cluster);
    if let Some(metadata) = &node.metadata {
        out.insert("metadata".into(), struct_json(metadata));
    }
    if let Some(locality) = &node.locality {
        let mut l = Map::new();
        put_str(&mut l, "region", &locality.region);
        put_str(&mut l, "zone", &locality.zone);
        put_str(&mut l, "subZone", &locality.sub_zone);
        out.insert("locality".into(), Value::Object(l));
    }
    put_str(&mut out, "userAgentName", &node.user_agent_name);
    put_str(&mut out, "userAgentVersion", &node.user_agent_version);
    if !node.client_features.is_empty() {
        out.insert("clientFeatures".into(), json!(node.client_features));
    }
    Value::Object(out)
}

fn struct_json(s: &Struct) -> Value {
    Value::Object(s.fields.iter().map(|(k, v)| (k.clone(), value_json(v))).collect())
}

fn value_json(v: &StructValue) -> Value {
    match &v.kind {
        None | Some(Kind::Null(_)) => Value::Null,
        // JSON has no NaN or infinities; proto3 JSON spells them as strings.
        Some(Kind::Number(n)) => serde_json::Number::from_f64(*n).map(Value::Number).unwrap_or_else(|| {
            Value::String(if n.is_nan() { "NaN".into() } else if *n > 0.0 { "Infinity".into() } else { "-Infinity".into() })
        }),
        Some(Kind::String(s)) => Value::String(s.clone()),
        Some(Kind::Bool(b)) => Value::Bool(*b),
        Some(Kind::Struct(s)) => struct_json(s),
        Some(Kind::List(l)) => Value::Array(l.values.iter().map(value_json).collect()),
    }
}

fn generic_json(c: &GenericXdsConfig) -> Value {
    let mut out = Map::new();
    put_str(&mut out, "typeUrl", &c.type_url);
    put_str(&mut out, "name", &c.name);
    put_str(&mut out, "versionInfo", &c.version_info);
    if let Some(any) = &c.xds_config {
        out.insert("xdsConfig".into(), any_json(any));
    }
    if let Some(t) = &c.last_updated {
        out.insert("lastUpdated".into(), Value::String(rfc3339(t)));
    }
    put_enum(&mut out, "configStatus", c.config_status, CONFIG_STATUS);
    put_enum(&mut out, "clientStatus", c.client_status, CLIENT_STATUS);
    if let Some(e) = &c.error_state {
        let mut state = Map::new();
        if let Some(any) = &e.failed_configuration {
            state.insert("failedConfiguration".into(), any_json(any));
        }
        if let Some(t) = &e.last_update_attempt {
            state.insert("lastUpdateAttempt".into(), Value::String(rfc3339(t)));
        }
        put_str(&mut state, "details", &e.details);
        put_str(&mut state, "versionInfo", &e.version_info);
        out.insert("errorState".into(), Value::Object(state));
    }
    if c.is_static_resource {
        out.insert("isStaticResource".into(), Value::Bool(true));
    }
    Value::Object(out)
}

/// An xDS resource: `@type`, its name for the four resource types gRPC clients use
/// (field 1, when it decodes as a string), and `value`, the resource's serialized bytes
/// in base64.
fn any_json(any: &Any) -> Value {
    let mut out = Map::new();
    out.insert("@type".into(), Value::String(any.type_url.clone()));
    if let Some((_, key)) = NAMED_TYPES.iter().find(|(t, _)| *t == any.type_url) {
        if let Ok(named) = FirstString::decode(&any.value[..]) {
            put_str(&mut out, key, &named.value);
        }
    }
    out.insert("value".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(&any.value)));
    Value::Object(out)
}

/// Field 1 of a message, read as a string (every other field skipped).
#[derive(Clone, PartialEq, Message)]
struct FirstString {
    #[prost(string, tag = "1")]
    value: String,
}

/// A Timestamp as proto3 JSON writes it: RFC 3339 in UTC, with 0, 3, 6 or 9 fractional
/// digits.
pub(super) fn rfc3339(t: &Timestamp) -> String {
    let days = t.seconds.div_euclid(86_400);
    let secs = t.seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let nanos = t.nanos.clamp(0, 999_999_999);
    let fraction = if nanos == 0 {
        String::new()
    } else if nanos % 1_000_000 == 0 {
        format!(".{:03}", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!(".{:06}", nanos / 1_000)
    } else {
        format!(".{nanos:09}")
    };
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (Howard Hinnant's
/// days-to-civil algorithm: 400-year eras of 146,097 days, years starting in March).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> String {
        rfc3339(&Timestamp { seconds, nanos })
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(ts(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(ts(951_868_799, 5_000_000), "2000-02-29T23:59:59.005Z");
        assert_eq!(ts(1_796_463_579, 123_456_000), "2026-12-05T09:39:39.123456Z");
        assert_eq!(ts(4_102_444_800, 1), "2100-01-01T00:00:00.000000001Z");
        assert_eq!(ts(-1, 0), "1969-12-31T23:59:59Z");
        assert_eq!(ts(253_402_300_799, 0), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn client_config_renders_as_proto3_json() {
        let listener = FirstString { value: "echo".into() }.encode_to_vec();
        let mut metadata = Struct::default();
        metadata.fields.insert("k".into(), StructValue { kind: Some(Kind::String("v".into())) });
        metadata.fields.insert("n".into(), StructValue { kind: Some(Kind::Number(f64::NAN)) });
        let config = ClientConfig {
            node: Some(Node {
                id: "n1".into(),
                metadata: Some(metadata),
                locality: Some(Locality { zone: "z".into(), ..Default::default() }),
                user_agent_name: "gRPC C-core".into(),
                client_features: vec!["f1".into()],
                ..Default::default()
            }),
            generic_xds_configs: vec![
                GenericXdsConfig {
                    type_url: NAMED_TYPES[0].0.into(),
                    name: "echo".into(),
                    version_info: "1".into(),
                    xds_config: Some(Any { type_url: NAMED_TYPES[0].0.into(), value: listener.clone() }),
                    last_updated: Some(Timestamp { seconds: 0, nanos: 250_000_000 }),
                    client_status: 4,
                    error_state: Some(UpdateFailureState {
                        details: "bad".into(),
                        version_info: "2".into(),
                        last_update_attempt: Some(Timestamp { seconds: 60, nanos: 0 }),
                        failed_configuration: None,
                    }),
                    ..Default::default()
                },
                GenericXdsConfig { type_url: NAMED_TYPES[3].0.into(), name: "c".into(), client_status: 99, ..Default::default() },
            ],
            client_scope: String::new(),
        };
        let v = render(&config.encode_to_vec()).unwrap();
        let expected = json!({
            "node": {"id": "n1", "metadata": {"k": "v", "n": "NaN"}, "locality": {"zone": "z"},
                     "userAgentName": "gRPC C-core", "clientFeatures": ["f1"]},
            "genericXdsConfigs": [
                {"typeUrl": NAMED_TYPES[0].0, "name": "echo", "versionInfo": "1",
                 "xdsConfig": {"@type": NAMED_TYPES[0].0, "name": "echo",
                               "value": base64::engine::general_purpose::STANDARD.encode(&listener)},
                 "lastUpdated": "1970-01-01T00:00:00.250Z", "clientStatus": "NACKED",
                 "errorState": {"lastUpdateAttempt": "1970-01-01T00:01:00Z", "details": "bad", "versionInfo": "2"}},
                {"typeUrl": NAMED_TYPES[3].0, "name": "c", "clientStatus": 99}
            ]
        });
        assert_eq!(v, expected);
        // An empty dump (no bootstrap) is the empty message.
        assert_eq!(render(&[]).unwrap(), json!({}));
        // Bytes that are not a ClientConfig.
        let err = render(&[0x0a, 0x05, 1]).unwrap_err();
        assert!(matches!(&err, Error::Codec(c) if c.kind() == CodecErrorKind::Decode), "{err}");
    }
}
