//! Channelz: the core's live record of this process's channels, subchannels, servers and
//! sockets, served as the standard `grpc.channelz.v1.Channelz` service (gRFC A14), so
//! `grpcdebug`, grpc-go's and grpcio's channelz clients, or any generated client can read
//! it.
//!
//! The data is the core's own: its counters of calls started, succeeded and failed per
//! channel, subchannel and server, streams and messages per socket, connectivity states and
//! trace events, read through the core's JSON getters and re-encoded as the channelz
//! messages (`wire.rs`, `schema.rs`); the service carries the descriptors of grpcore's
//! statement of the protocol (`proto/`), so reflection can describe it and grpcurl can call
//! it, and [`v1`] is a typed client for Rust programs. Channelz is on by default in the core; a server built
//! with [`ServerBuilder::lean`](crate::ServerBuilder::lean), or a channel or server given
//! `grpc.enable_channelz = 0`, is not tracked.
//!
//! ```no_run
//! # let env = grpcore::Environment::new(1);
//! let server = grpcore::ServerBuilder::new(&env)
//!     .register_service(grpcore::channelz::service())
//!     .bind("127.0.0.1:0")
//!     .build()?;
//! # Ok::<(), grpcore::Error>(())
//! ```

mod schema;
mod wire;

mod generated {
    include!("generated/mod.rs");
}

use std::ffi::CStr;
use std::os::raw::c_char;

use serde_json::Value;

use crate::codec::BytesCodec;
use crate::method::Method;
use crate::server::service::{Service, ServiceBuilder};
use crate::status::{Code, Status};
use wire::Field;

/// The protocol's messages (`grpc.channelz.v1`) and its typed client
/// (`channelz_grpc::ChannelzClient`), as grpcore-compiler generates them.
pub use self::generated::grpc::channelz::v1;
use self::v1::channelz_grpc::{self, methods};

/// The service's full name.
pub const SERVICE_NAME: &str = channelz_grpc::SERVICE_NAME;

type Raw = Method<Vec<u8>, Vec<u8>, BytesCodec>;

/// The methods with raw bytes each way: the answers are encoded here from the core's JSON,
/// not through the generated messages.
fn raw<A, B, C>(typed: &Method<A, B, C>) -> Raw {
    Method::with_path(typed.kind(), typed.path())
}

/// The `grpc.channelz.v1.Channelz` service, to register on a server. It reports on every
/// channel and server of the process, not only the one it is registered on.
pub fn service() -> Service {
    ServiceBuilder::new(SERVICE_NAME)
        .file_descriptors(channelz_grpc::FILE_DESCRIPTORS)
        .add_unary(&raw(&methods::GET_TOP_CHANNELS), |req, _| async move { top_channels(&req) })
        .add_unary(&raw(&methods::GET_SERVERS), |req, _| async move { servers(&req) })
        .add_unary(&raw(&methods::GET_SERVER), |req, _| async move {
            let id = non_negative("server_id", decode::<v1::GetServerRequest>(&req)?.server_id)?;
            one(core_json(|| unsafe_getters::server(id))?, schema::GET_SERVER_RESPONSE, "server", id)
        })
        .add_unary(&raw(&methods::GET_SERVER_SOCKETS), |req, _| async move {
            let req = decode::<v1::GetServerSocketsRequest>(&req)?;
            let server = non_negative("server_id", req.server_id)?;
            let (start, max) = (non_negative("start_socket_id", req.start_socket_id)?, non_negative("max_results", req.max_results)?);
            one(core_json(|| unsafe_getters::server_sockets(server, start, max))?, schema::GET_SERVER_SOCKETS_RESPONSE, "server", server)
        })
        .add_unary(&raw(&methods::GET_CHANNEL), |req, _| async move {
            let id = non_negative("channel_id", decode::<v1::GetChannelRequest>(&req)?.channel_id)?;
            one(core_json(|| unsafe_getters::channel(id))?, schema::GET_CHANNEL_RESPONSE, "channel", id)
        })
        .add_unary(&raw(&methods::GET_SUBCHANNEL), |req, _| async move {
            let id = non_negative("subchannel_id", decode::<v1::GetSubchannelRequest>(&req)?.subchannel_id)?;
            one(core_json(|| unsafe_getters::subchannel(id))?, schema::GET_SUBCHANNEL_RESPONSE, "subchannel", id)
        })
        .add_unary(&raw(&methods::GET_SOCKET), |req, _| async move {
            let id = non_negative("socket_id", decode::<v1::GetSocketRequest>(&req)?.socket_id)?;
            one(core_json(|| unsafe_getters::socket(id))?, schema::GET_SOCKET_RESPONSE, "socket", id)
        })
        .build()
}

fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, Status> {
    M::decode(bytes).map_err(|e| Status::invalid_argument(format!("cannot decode the request: {e}")))
}

/// An id or count from a request: never negative.
fn non_negative(field: &str, value: i64) -> Result<isize, Status> {
    isize::try_from(value)
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| Status::invalid_argument(format!("{field} must be a non-negative int64, not {value}")))
}

/// One entity's response, or `NOT_FOUND` when the core has no such entity.
fn one(json: Option<Value>, table: &[Field], what: &str, id: isize) -> Result<Vec<u8>, Status> {
    match json {
        Some(json) => encode(table, &json),
        None => Err(Status::new(Code::NotFound, format!("no {what} with id {id}"))),
    }
}

fn encode(table: &[Field], json: &Value) -> Result<Vec<u8>, Status> {
    wire::encode(table, json).map_err(|e| Status::internal(format!("the core's channelz data did not fit the channelz messages: {e}")))
}

/// `GetTopChannels`: the channels the application made (grpcore's internal wake-up channels
/// left out), a page at a time.
fn top_channels(req: &[u8]) -> Result<Vec<u8>, Status> {
    let req = decode::<v1::GetTopChannelsRequest>(req)?;
    let (start, max) = (non_negative("start_channel_id", req.start_channel_id)?, non_negative("max_results", req.max_results)?);
    let page = paged(start, max, "channel", "channelId", |from| core_json(|| unsafe_getters::top_channels(from)), |channel| {
        channel.pointer("/data/target").and_then(Value::as_str) == Some(crate::cq::KICK_TARGET)
    })?;
    encode(schema::GET_TOP_CHANNELS_RESPONSE, &page)
}

/// `GetServers`, a page at a time.
fn servers(req: &[u8]) -> Result<Vec<u8>, Status> {
    let req = decode::<v1::GetServersRequest>(req)?;
    let (start, max) = (non_negative("start_server_id", req.start_server_id)?, non_negative("max_results", req.max_results)?);
    let page = paged(start, max, "server", "serverId", |from| core_json(|| unsafe_getters::servers(from)), |_| false)?;
    encode(schema::GET_SERVERS_RESPONSE, &page)
}

/// A page of at most `max` entities (0: the core's page) from id `start` on, without those
/// `skip` rejects. The core's pages hold up to 100; a page whose entities were all skipped
/// is followed by the next, so only the last page says `end`.
fn paged(
    start: isize,
    max: isize,
    list: &str,
    id_key: &str,
    mut get: impl FnMut(isize) -> Result<Option<Value>, Status>,
    skip: impl Fn(&Value) -> bool,
) -> Result<Value, Status> {
    let mut from = start;
    let mut kept = Vec::new();
    loop {
        let Some(mut page) = get(from)? else {
            return Err(Status::internal(format!("the core gave no {list} page")));
        };
        let end = page.get("end").and_then(Value::as_bool).unwrap_or(false);
        let entities = match page.get_mut(list).map(Value::take) {
            Some(Value::Array(entities)) => entities,
            _ => Vec::new(),
        };
        let last_id = entities.iter().filter_map(|e| e.get("ref")?.get(id_key)?.as_str()?.parse::<isize>().ok()).max();
        kept.extend(entities.into_iter().filter(|e| !skip(e)));
        let enough = if max > 0 { kept.len() as isize >= max } else { !kept.is_empty() };
        if enough || end || last_id.is_none() {
            let limit = if max > 0 { max as usize } else { kept.len() };
            let more = kept.len() > limit || (!end && last_id.is_some());
            kept.truncate(limit);
            return Ok(serde_json::json!({ list: kept, "end": !more }));
        }
        // Only skipped entities, or fewer than asked: go on after the last one seen.
        from = last_id.unwrap_or(from) + 1;
    }
}

/// The JSON a core getter returned, or `None` for its null ("no such entity").
fn core_json(get: impl FnOnce() -> *mut c_char) -> Result<Option<Value>, Status> {
    let raw = get();
    if raw.is_null() {
        return Ok(None);
    }
    // SAFETY: a non-null result of a channelz getter is a NUL-terminated string the core
    // allocated for us with gpr_malloc: read once, then freed with gpr_free, never again.
    let text = unsafe {
        let text = CStr::from_ptr(raw).to_string_lossy().into_owned();
        grpcore_sys::gpr_free(raw.cast());
        text
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Status::internal(format!("the core's channelz JSON did not parse: {e}")))
}

/// The core's channelz getters. Each takes plain integers, looks the entity up in the
/// core's registry under its own lock, and returns an owned string or null.
mod unsafe_getters {
    use std::os::raw::c_char;

    use grpcore_sys as ffi;

    pub(super) fn top_channels(start: isize) -> *mut c_char {
        // SAFETY: takes an integer; the core initialized (a server is running this handler).
        unsafe { ffi::grpc_channelz_get_top_channels(start) }
    }

    pub(super) fn servers(start: isize) -> *mut c_char {
        // SAFETY: as for `top_channels`.
        unsafe { ffi::grpc_channelz_get_servers(start) }
    }

    pub(super) fn server(id: isize) -> *mut c_char {
        // SAFETY: as for `top_channels`; an unknown id gives null.
        unsafe { ffi::grpc_channelz_get_server(id) }
    }

    pub(super) fn server_sockets(server: isize, start: isize, max: isize) -> *mut c_char {
        // SAFETY: as for `server`.
        unsafe { ffi::grpc_channelz_get_server_sockets(server, start, max) }
    }

    pub(super) fn channel(id: isize) -> *mut c_char {
        // SAFETY: as for `server`.
        unsafe { ffi::grpc_channelz_get_channel(id) }
    }

    pub(super) fn subchannel(id: isize) -> *mut c_char {
        // SAFETY: as for `server`.
        unsafe { ffi::grpc_channelz_get_subchannel(id) }
    }

    pub(super) fn socket(id: isize) -> *mut c_char {
        // SAFETY: as for `server`.
        unsafe { ffi::grpc_channelz_get_socket(id) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: std::ops::Range<isize>, end: bool) -> Value {
        let channels: Vec<Value> = ids.map(|id| serde_json::json!({"ref": {"channelId": id.to_string()}})).collect();
        serde_json::json!({"channel": channels, "end": end})
    }

    fn ids(page: &Value) -> (Vec<String>, bool) {
        let ids = page["channel"].as_array().unwrap().iter().map(|c| c["ref"]["channelId"].as_str().unwrap().to_string()).collect();
        (ids, page["end"].as_bool().unwrap())
    }

    #[test]
    fn pages_skip_and_continue() {
        // The core's pages: 1..4 then 4..6 (end).
        let core = |from: isize| Ok(Some(if from < 4 { page(from.max(1)..4, false) } else { page(from..6, true) }));
        let all = paged(0, 0, "channel", "channelId", core, |_| false).unwrap();
        assert_eq!(ids(&all), (vec!["1".into(), "2".into(), "3".into()], false));
        let skip_first_page = paged(0, 0, "channel", "channelId", core, |c| c["ref"]["channelId"].as_str().unwrap() < "4").unwrap();
        assert_eq!(ids(&skip_first_page), (vec!["4".into(), "5".into()], true));
        let two = paged(0, 2, "channel", "channelId", core, |_| false).unwrap();
        assert_eq!(ids(&two), (vec!["1".into(), "2".into()], false));
        let rest = paged(3, 5, "channel", "channelId", core, |_| false).unwrap();
        assert_eq!(ids(&rest), (vec!["3".into(), "4".into(), "5".into()], true));
        let exactly_the_rest = paged(4, 2, "channel", "channelId", core, |_| false).unwrap();
        assert_eq!(ids(&exactly_the_rest), (vec!["4".into(), "5".into()], true));
    }

    #[test]
    fn requests_take_non_negative_ids() {
        assert_eq!(non_negative("x", 5).unwrap(), 5);
        assert_eq!(non_negative("x", -1).unwrap_err().code(), Code::InvalidArgument);
        let garbled = decode::<v1::GetChannelRequest>(&[0x08]).unwrap_err();
        assert_eq!(garbled.code(), Code::InvalidArgument);
        assert_eq!(decode::<v1::GetChannelRequest>(&[0x08, 0x05]).unwrap().channel_id, 5);
    }
}
