//! The codec of the interop messages, able to tell whether a message arrived compressed.
//!
//! The compression cases need what the C core does not tell an application: whether one
//! received message carried the compressed flag. The core (1.51) decompresses in a filter
//! and takes `grpc-encoding` out of the metadata before the application sees it. But with
//! that filter switched off (channel argument `grpc.per_message_decompression` = 0, see
//! [`RAW_RECEIVE_ARG`]) the core hands over each message exactly as it travelled: still
//! compressed when its flag was set, plain otherwise. [`Wire`] then opens compressed bytes
//! itself and reports, per message, which of the two it got ([`Inbound::compressed`]).
//!
//! Telling them apart needs no guess for gzip: its stream starts 0x1f 0x8b, and 0x1f can
//! never start a protobuf message (it would be field 3 with wire type 7, which does not
//! exist; tags of fields from 16 up start at 0x80). zlib ("deflate") streams start with a
//! header that can also start a protobuf message, so they count as compressed only when the
//! header is valid and the whole stream inflates with a matching Adler-32 checksum;
//! anything else is parsed as a plain message.
//!
//! Where the filter is on (the default), the core has already decompressed every message,
//! so [`Inbound::compressed`] is always false and says nothing about the wire.

use std::io::Read;

use grpcore::{Codec, CodecErrorKind, Error, MessageReader};

/// Channel argument that makes the core hand over received messages undecompressed (the
/// client's second channel uses it; on a server the 1.51 core would not mark compressed
/// messages, and the interop server receives as the library's defaults do).
pub const RAW_RECEIVE_ARG: &str = "grpc.per_message_decompression";

/// Codec of the interop messages: prost encoding; decoding also opens messages that arrive
/// still compressed (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct Wire;

/// A received message and how it travelled.
#[derive(Clone, Debug, PartialEq)]
pub struct Inbound<T> {
    /// The message.
    pub message: T,
    /// True when it arrived compressed (only observable where [`RAW_RECEIVE_ARG`] is 0).
    pub compressed: bool,
}

impl<T: prost::Message + Default + 'static> Codec<T> for Wire {
    fn encode(msg: &T, buf: &mut Vec<u8>) -> Result<(), Error> {
        buf.reserve(msg.encoded_len());
        msg.encode(buf).map_err(|e| Error::codec_kind(CodecErrorKind::Encode, format!("encoding {}: {e}", std::any::type_name::<T>())).with_source(e))
    }

    fn decode(reader: &mut MessageReader<'_>) -> Result<T, Error> {
        <Wire as Codec<Inbound<T>>>::decode(reader).map(|m| m.message)
    }
}

impl<T: prost::Message + Default + 'static> Codec<Inbound<T>> for Wire {
    fn encode(msg: &Inbound<T>, buf: &mut Vec<u8>) -> Result<(), Error> {
        <Wire as Codec<T>>::encode(&msg.message, buf)
    }

    fn decode(reader: &mut MessageReader<'_>) -> Result<Inbound<T>, Error> {
        let mut bytes = Vec::with_capacity(reader.len());
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| Error::codec_kind(CodecErrorKind::Decode, format!("reading a message: {e}")).with_source(e))?;
        let (bytes, compressed) = open(bytes)?;
        let message = T::decode(&bytes[..])
            .map_err(|e| Error::codec_kind(CodecErrorKind::Decode, format!("decoding {}: {e}", std::any::type_name::<T>())).with_source(e))?;
        Ok(Inbound { message, compressed })
    }
}

/// The message bytes with any compression removed, and whether there was some.
pub fn open(bytes: Vec<u8>) -> Result<(Vec<u8>, bool), Error> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::codec_kind(CodecErrorKind::Decode, format!("a gzip-compressed message does not inflate: {e}")).with_source(e))?;
        return Ok((out, true));
    }
    if is_zlib_header(&bytes) {
        let mut decoder = flate2::read::ZlibDecoder::new(&bytes[..]);
        let mut out = Vec::new();
        // The decoder checks the Adler-32 trailer; the stream must also end with the input.
        if decoder.read_to_end(&mut out).is_ok() && decoder.total_in() == bytes.len() as u64 {
            return Ok((out, true));
        }
    }
    Ok((bytes, false))
}

/// RFC 1950: method 8 (deflate), window at most 32 KiB, no preset dictionary, and the
/// 16-bit header a multiple of 31.
fn is_zlib_header(bytes: &[u8]) -> bool {
    let [cmf, flg, ..] = *bytes else { return false };
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && flg & 0x20 == 0 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::proto::{Payload, SimpleRequest};

    fn request() -> Vec<u8> {
        let req = SimpleRequest {
            response_size: 314159,
            payload: Some(Payload { r#type: 0, body: vec![0; 1000] }),
            ..Default::default()
        };
        prost::Message::encode_to_vec(&req)
    }

    #[test]
    fn plain_messages_pass_through() {
        let plain = request();
        assert_eq!(open(plain.clone()).unwrap(), (plain, false));
        assert_eq!(open(Vec::new()).unwrap(), (Vec::new(), false));
    }

    #[test]
    fn gzip_and_zlib_are_opened() {
        let plain = request();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        assert_eq!(open(gz.finish().unwrap()).unwrap(), (plain.clone(), true));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&plain).unwrap();
        assert_eq!(open(z.finish().unwrap()).unwrap(), (plain, true));
    }

    #[test]
    fn a_message_that_looks_like_a_zlib_header_stays_plain() {
        // 0x78 0x9c 0x01 is field 15 (varint) = 156: a valid message starting with a valid zlib header.
        let bytes = vec![0x78, 0x9c, 0x01];
        assert!(is_zlib_header(&bytes));
        assert_eq!(open(bytes.clone()).unwrap(), (bytes, false));
    }

    #[test]
    fn broken_gzip_is_an_error() {
        assert!(open(vec![0x1f, 0x8b, 0, 0]).is_err());
    }
}
