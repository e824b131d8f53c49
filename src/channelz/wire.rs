//! Proto3 JSON to protobuf wire format, driven by a message table ([`Field`]s): how the
//! core's channelz JSON becomes the `grpc.channelz.v1` messages a channelz client decodes,
//! without building the generated messages first.
//!
//! Covers what proto3's JSON mapping gives the types channelz uses: 64-bit integers as
//! strings or numbers, enums by name or number, bytes as base64, `Timestamp` as RFC 3339,
//! `Int64Value` as its plain value; a key may be the field's proto
//! name or its lowerCamelCase JSON name (the core writes both kinds). A key the table does
//! not know is skipped, as a proto3 parser skips an unknown field.

use serde_json::Value;

/// One field of a message table.
pub(super) struct Field {
    /// The proto name (`calls_started`); its lowerCamelCase form matches too.
    pub(super) name: &'static str,
    pub(super) number: u32,
    pub(super) kind: Kind,
    pub(super) repeated: bool,
}

/// A field's type, as the JSON mapping and the wire format see it.
pub(super) enum Kind {
    Int64,
    Int32,
    Bool,
    String,
    Bytes,
    /// An enum: its value names in number order (`names[n]` is number `n`).
    Enum(&'static [&'static str]),
    Message(&'static [Field]),
    Timestamp,
    Int64Value,
}

/// Why a JSON document did not fit its table.
#[derive(Debug)]
pub(super) struct Mismatch(pub(super) String);

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn mismatch(field: &Field, value: &Value) -> Mismatch {
    Mismatch(format!("field {} does not take {value}", field.name))
}

/// Encodes the JSON object `json` as the message `table` describes.
pub(super) fn encode(table: &[Field], json: &Value) -> Result<Vec<u8>, Mismatch> {
    let mut out = Vec::new();
    encode_into(table, json, &mut out)?;
    Ok(out)
}

fn encode_into(table: &[Field], json: &Value, out: &mut Vec<u8>) -> Result<(), Mismatch> {
    let Value::Object(object) = json else {
        return Err(Mismatch(format!("a message is a JSON object, not {json}")));
    };
    // In field-number order, as protobuf encoders write (JSON objects have no order).
    for field in table {
        let Some(value) = object.iter().find(|(key, _)| names_match(key, field.name)).map(|(_, v)| v) else {
            continue;
        };
        match (value, field.repeated) {
            (Value::Null, _) => {}
            (Value::Array(items), true) => {
                for item in items {
                    encode_field(field, item, out)?;
                }
            }
            (_, true) => return Err(mismatch(field, value)),
            (_, false) => encode_field(field, value, out)?,
        }
    }
    Ok(())
}

/// True when a JSON key names the field: its proto name or its lowerCamelCase form
/// (compared in place: this runs for every field and key of every answer).
fn names_match(key: &str, name: &str) -> bool {
    if key == name {
        return true;
    }
    let mut key = key.bytes();
    let mut upper = false;
    for b in name.bytes() {
        if b == b'_' {
            upper = true;
            continue;
        }
        let want = if std::mem::take(&mut upper) { b.to_ascii_uppercase() } else { b };
        if key.next() != Some(want) {
            return false;
        }
    }
    key.next().is_none()
}

fn encode_field(field: &Field, value: &Value, out: &mut Vec<u8>) -> Result<(), Mismatch> {
    let n = field.number;
    match &field.kind {
        Kind::Int64 => put_varint_field(out, n, integer(value).ok_or_else(|| mismatch(field, value))? as u64),
        Kind::Int32 => {
            let v = integer(value).and_then(|v| i32::try_from(v).ok()).ok_or_else(|| mismatch(field, value))?;
            put_varint_field(out, n, v as i64 as u64)
        }
        Kind::Bool => put_varint_field(out, n, u64::from(value.as_bool().ok_or_else(|| mismatch(field, value))?)),
        Kind::String => put_bytes_field(out, n, value.as_str().ok_or_else(|| mismatch(field, value))?.as_bytes()),
        Kind::Bytes => {
            let text = value.as_str().ok_or_else(|| mismatch(field, value))?;
            put_bytes_field(out, n, &base64(text).ok_or_else(|| mismatch(field, value))?)
        }
        Kind::Enum(names) => {
            let number = match value {
                Value::String(s) => names.iter().position(|name| name == s).map(|i| i as u64),
                other => integer(other).map(|v| v as u64),
            };
            put_varint_field(out, n, number.ok_or_else(|| mismatch(field, value))?)
        }
        Kind::Message(table) => {
            let mut inner = Vec::new();
            encode_into(table, value, &mut inner)?;
            put_bytes_field(out, n, &inner)
        }
        Kind::Timestamp => {
            let (seconds, nanos) = value.as_str().and_then(rfc3339).ok_or_else(|| mismatch(field, value))?;
            put_bytes_field(out, n, &seconds_and_nanos(seconds, nanos))
        }
        Kind::Int64Value => {
            let mut inner = Vec::new();
            put_varint_field(&mut inner, 1, integer(value).ok_or_else(|| mismatch(field, value))? as u64);
            put_bytes_field(out, n, &inner)
        }
    }
    Ok(())
}

/// A JSON integer: a number, or (as proto3 writes 64-bit integers) a string.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_u64().and_then(|v| i64::try_from(v).ok())),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The body of a `Timestamp`: seconds = 1, nanos = 2 (zeros omitted).
fn seconds_and_nanos(seconds: i64, nanos: i32) -> Vec<u8> {
    let mut body = Vec::new();
    if seconds != 0 {
        put_varint_field(&mut body, 1, seconds as u64);
    }
    if nanos != 0 {
        put_varint_field(&mut body, 2, nanos as i64 as u64);
    }
    body
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
    put_varint(out, u64::from(number) << 3);
    put_varint(out, v);
}

fn put_bytes_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(number) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Standard or URL-safe base64, padded or not.
fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// An RFC 3339 time in UTC or with an offset (`2026-12-04T18:07:40.359367540Z`): seconds
/// since the Unix epoch and nanoseconds.
fn rfc3339(text: &str) -> Option<(i64, i32)> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0i32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = fraction[..digits].parse::<i32>().ok()? * 10i32.pow(9 - digits as u32);
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some((seconds, nanos))
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Years counted from March, so the leap day ends the year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_match_the_calendar() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(rfc3339("2000-03-01T00:00:00Z"), Some((951_868_800, 0)));
        assert_eq!(rfc3339("2026-12-04T18:07:40.359367540Z"), Some((1_796_407_660, 359_367_540)));
        assert_eq!(rfc3339("2026-12-04T19:07:40.5+01:00"), Some((1_796_407_660, 500_000_000)));
        assert_eq!(rfc3339("1969-12-31T23:59:59Z"), Some((-1, 0)));
        for bad in ["", "2026-12-04", "2026-13-04T00:00:00Z", "2026-12-04T00:00:00", "2026-12-04T00:00:00.Z", "2026-12-04T00:00:00+0100"] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn base64_standard_and_url_safe() {
        assert_eq!(base64("fwAAAQ=="), Some(vec![127, 0, 0, 1]));
        assert_eq!(base64("_-8"), Some(vec![0xff, 0xef]));
        assert_eq!(base64("a*"), None);
    }

    #[test]
    fn names_match_proto_and_camel_forms() {
        assert!(names_match("calls_started", "calls_started"));
        assert!(names_match("callsStarted", "calls_started"));
        assert!(names_match("ref", "ref"));
        assert!(!names_match("callsstarted", "calls_started"));
        assert!(!names_match("callsStartedX", "calls_started"));
        assert!(!names_match("calls", "calls_started"));
        assert!(names_match("lastCallStartedTimestamp", "last_call_started_timestamp"));
    }

    static INNER: &[Field] = &[Field { name: "value", number: 1, kind: Kind::Int64, repeated: false }];
    static OUTER: &[Field] = &[
        Field { name: "id", number: 1, kind: Kind::Int64, repeated: false },
        Field { name: "tags", number: 2, kind: Kind::String, repeated: true },
        Field { name: "state", number: 3, kind: Kind::Enum(&["UNKNOWN", "IDLE", "READY"]), repeated: false },
        Field { name: "inner", number: 4, kind: Kind::Message(INNER), repeated: false },
        Field { name: "port", number: 5, kind: Kind::Int32, repeated: false },
    ];

    #[test]
    fn encodes_the_wire_format() {
        let json = serde_json::json!({"id": "300", "tags": ["a", "b"], "state": "READY", "inner": {"value": 1}, "port": -1, "extra": 5});
        let bytes = encode(OUTER, &json).unwrap();
        let mut expected = vec![0x08, 0xac, 0x02, 0x12, 1, b'a', 0x12, 1, b'b', 0x18, 2, 0x22, 2, 0x08, 1, 0x28];
        expected.extend([0xff; 9]);
        expected.push(0x01);
        assert_eq!(bytes, expected);
        assert!(encode(OUTER, &serde_json::json!({"state": "GONE"})).is_err());
        assert!(encode(OUTER, &serde_json::json!({"tags": "a"})).is_err());
        assert!(encode(OUTER, &serde_json::json!([1])).is_err());
    }
}
