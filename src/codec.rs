//! Codecs: how messages become bytes and back.
//!
//! A codec is a marker type implementing [`Codec`] for the message types it handles.
//! [`ProstCodec`] (feature `prost`, default), [`ProtobufCodec`] (feature `protobuf`,
//! rust-protobuf 3.x) and [`BytesCodec`] (raw bytes) are provided.

use crate::buffer::MessageReader;
use crate::error::Error;

/// Encodes and decodes messages of type `T`.
///
/// Implementations are stateless: methods take no `self`, so a codec is chosen by type
/// (in a [`Method`](crate::Method) descriptor) and costs nothing to carry around.
pub trait Codec<T>: Send + Sync + 'static {
    /// Appends the encoding of `msg` to `buf`.
    fn encode(msg: &T, buf: &mut Vec<u8>) -> Result<(), Error>;
    /// Decodes a whole message from `reader`, which walks the core's slices in place.
    fn decode(reader: &mut MessageReader<'_>) -> Result<T, Error>;
}

/// Raw bytes, unchanged: for proxies, tests, and hand-rolled encodings.
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesCodec;

impl Codec<Vec<u8>> for BytesCodec {
    fn encode(msg: &Vec<u8>, buf: &mut Vec<u8>) -> Result<(), Error> {
        buf.extend_from_slice(msg);
        Ok(())
    }

    fn decode(reader: &mut MessageReader<'_>) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(reader.len());
        std::io::Read::read_to_end(reader, &mut out)
            .map_err(|e| Error::Codec(format!("reading message bytes: {e}")))?;
        Ok(out)
    }
}

impl Codec<bytes::Bytes> for BytesCodec {
    fn encode(msg: &bytes::Bytes, buf: &mut Vec<u8>) -> Result<(), Error> {
        buf.extend_from_slice(msg);
        Ok(())
    }

    fn decode(reader: &mut MessageReader<'_>) -> Result<bytes::Bytes, Error> {
        let len = reader.len();
        Ok(bytes::Buf::copy_to_bytes(reader, len))
    }
}

/// [prost](https://docs.rs/prost) messages.
#[cfg(feature = "prost")]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProstCodec;

#[cfg(feature = "prost")]
impl<T: prost::Message + Default + 'static> Codec<T> for ProstCodec {
    fn encode(msg: &T, buf: &mut Vec<u8>) -> Result<(), Error> {
        buf.reserve_exact(msg.encoded_len());
        msg.encode(buf)
            .map_err(|e| Error::Codec(format!("encoding {}: {e}", std::any::type_name::<T>())))
    }

    fn decode(reader: &mut MessageReader<'_>) -> Result<T, Error> {
        T::decode(reader)
            .map_err(|e| Error::Codec(format!("decoding {}: {e}", std::any::type_name::<T>())))
    }
}

/// [rust-protobuf](https://docs.rs/protobuf) 3.x messages.
#[cfg(feature = "protobuf")]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProtobufCodec;

#[cfg(feature = "protobuf")]
impl<T: protobuf::Message> Codec<T> for ProtobufCodec {
    fn encode(msg: &T, buf: &mut Vec<u8>) -> Result<(), Error> {
        msg.write_to_vec(buf)
            .map_err(|e| Error::Codec(format!("encoding {}: {e}", T::NAME)))
    }

    fn decode(reader: &mut MessageReader<'_>) -> Result<T, Error> {
        let mut input = protobuf::CodedInputStream::from_buf_read(reader);
        T::parse_from(&mut input).map_err(|e| Error::Codec(format!("decoding {}: {e}", T::NAME)))
    }
}
