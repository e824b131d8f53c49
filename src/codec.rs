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

    /// The exact length of `msg`'s encoding, if the codec can tell without encoding it.
    /// When it can, grpcore encodes straight into the core's message buffer with
    /// [`encode_to_slice`](Self::encode_to_slice) (one allocation, no copy) instead of
    /// going through a `Vec`. The default, `None`, always uses [`encode`](Self::encode).
    fn encoded_len(msg: &T) -> Option<usize> {
        let _ = msg;
        None
    }

    /// Writes the encoding of `msg` into `out`, which is exactly
    /// [`encoded_len`](Self::encoded_len)`(msg)` bytes long; fails if the encoding does
    /// not fill it exactly. Called only after `encoded_len` returned `Some`. The default
    /// encodes into a `Vec` and copies.
    fn encode_to_slice(msg: &T, out: &mut [u8]) -> Result<(), Error> {
        let mut buf = Vec::with_capacity(out.len());
        Self::encode(msg, &mut buf)?;
        if buf.len() != out.len() {
            return Err(Error::Codec(format!(
                "the encoding is {} bytes, not the {} announced by encoded_len",
                buf.len(),
                out.len()
            )));
        }
        out.copy_from_slice(&buf);
        Ok(())
    }
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

    fn encoded_len(msg: &Vec<u8>) -> Option<usize> {
        Some(msg.len())
    }

    fn encode_to_slice(msg: &Vec<u8>, out: &mut [u8]) -> Result<(), Error> {
        out.copy_from_slice(msg);
        Ok(())
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

    fn encoded_len(msg: &bytes::Bytes) -> Option<usize> {
        Some(msg.len())
    }

    fn encode_to_slice(msg: &bytes::Bytes, out: &mut [u8]) -> Result<(), Error> {
        out.copy_from_slice(msg);
        Ok(())
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

    fn encoded_len(msg: &T) -> Option<usize> {
        Some(msg.encoded_len())
    }

    fn encode_to_slice(msg: &T, mut out: &mut [u8]) -> Result<(), Error> {
        // `encode` would compute `encoded_len` a second time to check the room; `out` is
        // exactly that long already. A hand-written message whose `encode_raw` writes more
        // than its `encoded_len` panics on the full slice: that becomes an error here.
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| msg.encode_raw(&mut out)));
        if written.is_err() {
            return Err(Error::Codec(format!(
                "encoding {}: longer than its encoded_len",
                std::any::type_name::<T>()
            )));
        }
        if !out.is_empty() {
            return Err(Error::Codec(format!(
                "encoding {}: {} bytes short of its encoded_len",
                std::any::type_name::<T>(),
                out.len()
            )));
        }
        Ok(())
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

    /// Computes (and caches in the message) the sizes `encode_to_slice` then writes with.
    /// `None` for a message with unset required fields or over 4 GiB: `encode` then
    /// reports the error.
    fn encoded_len(msg: &T) -> Option<usize> {
        if !msg.is_initialized() {
            return None;
        }
        u32::try_from(msg.compute_size()).ok().map(|n| n as usize)
    }

    fn encode_to_slice(msg: &T, out: &mut [u8]) -> Result<(), Error> {
        let want = out.len();
        let mut os = protobuf::CodedOutputStream::bytes(out);
        msg.write_to_with_cached_sizes(&mut os)
            .and_then(|()| os.flush())
            .map_err(|e| Error::Codec(format!("encoding {}: {e}", T::NAME)))?;
        if os.total_bytes_written() != want as u64 {
            return Err(Error::Codec(format!("encoding {}: the size computed differs from the bytes written", T::NAME)));
        }
        Ok(())
    }
}
