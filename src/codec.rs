//! Codecs: how messages become bytes and back.
//!
//! A codec is a marker type implementing [`Codec`] for the message types it handles.
//! [`ProstCodec`] (feature `prost`, default), [`ProtobufCodec`] (feature `protobuf`,
//! rust-protobuf 3.x) and [`BytesCodec`] (raw bytes) are provided.
//!
//! Encoding a message into the core's byte buffer ([`ByteBuffer::encode`], `refill`) lives
//! here too, above `buffer.rs`, which knows bytes and never imports the codecs.

use crate::buffer::{ByteBuffer, MessageReader, MessageWriter};

/// A message whose encoding is at least this long is encoded through a [`MessageWriter`]
/// ([`Codec::encode_to_writer`]), which can hand large `bytes::Bytes` fields to the core
/// without copying them; shorter ones go straight into one slice (the fastest path for
/// small messages).
pub(crate) const LARGE_MESSAGE: usize = 32 * 1024;
use crate::error::{CodecErrorKind, Error};

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
            return Err(Error::codec_kind(CodecErrorKind::Encode, format!(
                "the encoding is {} bytes, not the {} announced by encoded_len",
                buf.len(),
                out.len()
            )));
        }
        out.copy_from_slice(&buf);
        Ok(())
    }

    /// Writes the encoding of a large message into `out`, a writer with room for exactly
    /// [`encoded_len`](Self::encoded_len)`(msg)` bytes that can take large pieces over
    /// without copying them (a `bytes::Bytes` written with [`bytes::BufMut::put`] becomes a
    /// slice of its own). grpcore calls it instead of
    /// [`encode_to_slice`](Self::encode_to_slice) for messages of 32 KiB and more; the
    /// default writes the whole encoding with `encode_to_slice` into one new slice.
    fn encode_to_writer(msg: &T, out: &mut MessageWriter) -> Result<(), Error> {
        out.write_rest(|buf| Self::encode_to_slice(msg, buf))
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
            .map_err(|e| Error::codec_kind(CodecErrorKind::Decode, format!("reading message bytes: {e}")).with_source(e))?;
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

    /// A large `Bytes` message is handed to the core as it is, without a copy.
    fn encode_to_writer(msg: &bytes::Bytes, out: &mut MessageWriter) -> Result<(), Error> {
        bytes::BufMut::put(out, msg.clone());
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
            .map_err(|e| Error::codec_kind(CodecErrorKind::Encode, format!("encoding {}: {e}", std::any::type_name::<T>())).with_source(e))
    }

    fn decode(reader: &mut MessageReader<'_>) -> Result<T, Error> {
        T::decode(reader)
            .map_err(|e| Error::codec_kind(CodecErrorKind::Decode, format!("decoding {}: {e}", std::any::type_name::<T>())).with_source(e))
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
            return Err(Error::codec_kind(CodecErrorKind::Encode, format!(
                "encoding {}: longer than its encoded_len",
                std::any::type_name::<T>()
            )));
        }
        if !out.is_empty() {
            return Err(Error::codec_kind(CodecErrorKind::Encode, format!(
                "encoding {}: {} bytes short of its encoded_len",
                std::any::type_name::<T>(),
                out.len()
            )));
        }
        Ok(())
    }

    /// prost writes each `bytes::Bytes` field with `put`: the writer takes a large one over
    /// as a slice of its own instead of copying it (prost-build's `.bytes(["."])` makes
    /// every `bytes` field one).
    fn encode_to_writer(msg: &T, out: &mut MessageWriter) -> Result<(), Error> {
        // As in `encode_to_slice`: the writer has room for exactly `encoded_len` bytes, and a
        // message that writes more panics on it.
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| msg.encode_raw(out)));
        if written.is_err() {
            return Err(Error::codec_kind(CodecErrorKind::Encode, format!(
                "encoding {}: longer than its encoded_len",
                std::any::type_name::<T>()
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
            .map_err(|e| Error::codec_kind(CodecErrorKind::Encode, format!("encoding {}: {e}", T::NAME)).with_source(e))
    }

    fn decode(reader: &mut MessageReader<'_>) -> Result<T, Error> {
        let mut input = protobuf::CodedInputStream::from_buf_read(reader);
        T::parse_from(&mut input).map_err(|e| Error::codec_kind(CodecErrorKind::Decode, format!("decoding {}: {e}", T::NAME)).with_source(e))
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
            .map_err(|e| Error::codec_kind(CodecErrorKind::Encode, format!("encoding {}: {e}", T::NAME)).with_source(e))?;
        if os.total_bytes_written() != want as u64 {
            return Err(Error::codec_kind(CodecErrorKind::Encode, format!("encoding {}: the size computed differs from the bytes written", T::NAME)));
        }
        Ok(())
    }
}

/// One message type's codec functions as values, taken once from a codec type.
///
/// The handles of a call ([`RequestStream`](crate::RequestStream),
/// [`ServerSink`](crate::ServerSink), [`ResponseStream`](crate::ResponseStream),
/// [`RequestSink`](crate::RequestSink), the call futures and the request builders) carry
/// these pointers instead of a codec type parameter, so the codec is named once, in the
/// [`Method`](crate::Method) descriptor, and never in a handler's or caller's signature (as
/// grpcio's serializer functions and tonic's boxed codec do). The cost is an indirect call
/// per message, against a call's tens of thousands of instructions.
pub(crate) struct Coder<T> {
    /// Encodes a message into a new core buffer ([`ByteBuffer::encode`]).
    pub(crate) encode: fn(&T) -> Result<ByteBuffer, Error>,
    /// Encodes a message into a buffer reused from a finished call ([`ByteBuffer::refill`]).
    ///
    /// # Safety
    /// As [`ByteBuffer::refill`]: no operation may be using the buffer.
    pub(crate) refill: unsafe fn(&mut ByteBuffer, &T) -> Result<(), Error>,
    /// Decodes a whole message ([`Codec::decode`]).
    pub(crate) decode: fn(&mut MessageReader<'_>) -> Result<T, Error>,
}

impl<T> Coder<T> {
    /// The functions of codec `C` for `T`.
    pub(crate) fn of<C: Codec<T>>() -> Coder<T> {
        Coder {
            encode: ByteBuffer::encode::<T, C>,
            refill: ByteBuffer::refill::<T, C>,
            decode: C::decode,
        }
    }
}

impl<T> Clone for Coder<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Coder<T> {}

/// Encoding messages into the core's buffers (here rather than in `buffer.rs`, so that the
/// buffer layer never depends on the codecs).
impl ByteBuffer {
    /// Encodes `msg` with codec `C`: straight into a slice the core allocates when the codec
    /// knows the length up front (one allocation for the bytes, none up to 23 bytes), else
    /// through a `Vec` that the core then adopts.
    ///
    /// A message of [`LARGE_MESSAGE`] bytes or more goes through a [`MessageWriter`]
    /// ([`Codec::encode_to_writer`]), so its large `Bytes` fields reach the core uncopied.
    pub(crate) fn encode<T, C: Codec<T>>(msg: &T) -> Result<ByteBuffer, Error> {
        let Some(len) = C::encoded_len(msg) else {
            let mut buf = Vec::new();
            C::encode(msg, &mut buf)?;
            return Ok(ByteBuffer::from_vec(buf));
        };
        if len >= LARGE_MESSAGE {
            return ByteBuffer::encode_large::<T, C>(msg, len);
        }
        ByteBuffer::filled(len, |out| C::encode_to_slice(msg, out))
    }

    /// [`encode`](Self::encode)'s path for a large message of `len` bytes.
    #[inline(never)]
    fn encode_large<T, C: Codec<T>>(msg: &T, len: usize) -> Result<ByteBuffer, Error> {
        let mut writer = MessageWriter::new(len);
        C::encode_to_writer(msg, &mut writer)?;
        let (buffer, written) = writer.finish();
        if written != len {
            return Err(Error::codec_kind(CodecErrorKind::Encode, format!(
                "encoding {}: {} bytes written, not the {len} announced by encoded_len",
                std::any::type_name::<T>(),
                written
            )));
        }
        Ok(buffer)
    }

    /// Encodes `msg` into this buffer, replacing what it holds: into a new core slice when
    /// the codec knows the encoded length and the buffer is a plain (uncompressed) one,
    /// otherwise by replacing the buffer with [`ByteBuffer::encode`]'s.
    ///
    /// # Safety
    /// No operation may be using this buffer (any batch that sent it has completed).
    pub(crate) unsafe fn refill<T, C: Codec<T>>(&mut self, msg: &T) -> Result<(), Error> {
        match C::encoded_len(msg) {
            // SAFETY: no operation uses the buffer (our caller's contract) and it is plain.
            Some(len) if len < LARGE_MESSAGE && self.is_plain() => unsafe { self.refill_with(len, |out| C::encode_to_slice(msg, out)) },
            _ => {
                *self = ByteBuffer::encode::<T, C>(msg)?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn encoding_into_a_core_slice_matches_the_vec_encoding() {
        for len in [0usize, 1, 23, 24, 5_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let bb = ByteBuffer::encode::<Vec<u8>, BytesCodec>(&data).unwrap();
            assert_eq!(bb.len(), len);
            let mut out = Vec::new();
            bb.reader().read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "len {len}");
            let mut via_vec = Vec::new();
            BytesCodec::encode(&data, &mut via_vec).unwrap();
            assert_eq!(via_vec, data);
        }
    }

    /// A codec whose `encoded_len` is wrong in either direction must fail cleanly.
    struct Lying<const DELTA: isize>;

    impl<const DELTA: isize> Codec<Vec<u8>> for Lying<DELTA> {
        fn encode(msg: &Vec<u8>, buf: &mut Vec<u8>) -> Result<(), Error> {
            buf.extend_from_slice(msg);
            Ok(())
        }
        fn decode(_: &mut MessageReader<'_>) -> Result<Vec<u8>, Error> {
            unreachable!("only encodes")
        }
        fn encoded_len(msg: &Vec<u8>) -> Option<usize> {
            Some((msg.len() as isize + DELTA) as usize)
        }
    }

    #[test]
    fn a_wrong_encoded_len_is_an_error_not_a_panic() {
        // Small messages go into one slice, large ones through the writer's default.
        for len in [40, LARGE_MESSAGE + 40] {
            let msg = vec![1u8; len];
            for err in [
                ByteBuffer::encode::<Vec<u8>, Lying<-3>>(&msg).err().unwrap(),
                ByteBuffer::encode::<Vec<u8>, Lying<5>>(&msg).err().unwrap(),
            ] {
                assert!(err.to_string().contains("encoded_len"), "{err}");
            }
            assert_eq!(ByteBuffer::encode::<Vec<u8>, Lying<0>>(&msg).unwrap().len(), len);
        }
    }

    #[test]
    fn a_large_bytes_message_is_handed_over_not_copied() {
        let msg = bytes::Bytes::from(vec![5u8; LARGE_MESSAGE]);
        let bb = ByteBuffer::encode::<bytes::Bytes, BytesCodec>(&msg).unwrap();
        assert_eq!(bytes::Buf::chunk(&bb.reader()).as_ptr(), msg.as_ptr());
        assert_eq!(bb.len(), msg.len());
        let small = bytes::Bytes::from(vec![5u8; LARGE_MESSAGE - 1]);
        let bb = ByteBuffer::encode::<bytes::Bytes, BytesCodec>(&small).unwrap();
        assert_ne!(bytes::Buf::chunk(&bb.reader()).as_ptr(), small.as_ptr(), "below the crossover: one slice, copied");
    }

    #[cfg(feature = "prost")]
    #[test]
    fn a_large_prost_message_of_the_wrong_length_is_an_error() {
        /// Writes `WRITES` bytes (one length-delimited field) but claims `CLAIMS`.
        #[derive(Debug, Default)]
        struct Liar<const WRITES: usize, const CLAIMS: usize>;
        impl<const WRITES: usize, const CLAIMS: usize> prost::Message for Liar<WRITES, CLAIMS> {
            fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
                prost::encoding::bytes::encode(1, &bytes::Bytes::from(vec![1u8; WRITES - 4]), buf);
            }
            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: prost::encoding::WireType,
                buf: &mut impl bytes::Buf,
                ctx: prost::encoding::DecodeContext,
            ) -> Result<(), prost::DecodeError> {
                prost::encoding::skip_field(wire_type, tag, buf, ctx)
            }
            fn encoded_len(&self) -> usize {
                CLAIMS
            }
            fn clear(&mut self) {}
        }
        const N: usize = 2 * LARGE_MESSAGE; // a 3-byte length: key + length = 4 bytes
        let err = ByteBuffer::encode::<Liar<N, { N - 1 }>, ProstCodec>(&Liar).err().unwrap();
        assert!(err.to_string().contains("longer than its encoded_len"), "{err}");
        let err = ByteBuffer::encode::<Liar<N, { N + 1 }>, ProstCodec>(&Liar).err().unwrap();
        assert!(err.to_string().contains("announced by encoded_len"), "{err}");
        assert_eq!(ByteBuffer::encode::<Liar<N, N>, ProstCodec>(&Liar).unwrap().len(), N);
    }

    #[cfg(feature = "prost")]
    #[test]
    fn prost_encodes_into_the_slice_exactly_as_into_a_vec() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct M {
            #[prost(string, tag = "1")]
            s: String,
            #[prost(bytes = "vec", tag = "2")]
            b: Vec<u8>,
            #[prost(int64, tag = "3")]
            n: i64,
        }
        for size in [0usize, 10, 3_000] {
            let m = M { s: "x".repeat(size / 3), b: vec![9; size], n: -(size as i64) };
            let mut want = Vec::new();
            ProstCodec::encode(&m, &mut want).unwrap();
            let bb = ByteBuffer::encode::<M, ProstCodec>(&m).unwrap();
            let mut got = Vec::new();
            bb.reader().read_to_end(&mut got).unwrap();
            assert_eq!(got, want, "size {size}");
            let back: M = ProstCodec::decode(&mut bb.reader()).unwrap();
            assert_eq!(back, m);
        }
    }

    #[cfg(feature = "prost")]
    #[test]
    fn a_prost_message_longer_than_its_encoded_len_is_an_error() {
        /// Writes 10 bytes but claims 4 (a broken hand-written `Message`).
        #[derive(Debug, Default)]
        struct Short;
        impl prost::Message for Short {
            fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
                buf.put_slice(&[0x0a, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
            }
            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: prost::encoding::WireType,
                buf: &mut impl bytes::Buf,
                ctx: prost::encoding::DecodeContext,
            ) -> Result<(), prost::DecodeError> {
                prost::encoding::skip_field(wire_type, tag, buf, ctx)
            }
            fn encoded_len(&self) -> usize {
                4
            }
            fn clear(&mut self) {}
        }
        let err = ByteBuffer::encode::<Short, ProstCodec>(&Short).err().unwrap();
        assert!(err.to_string().contains("encoded_len"), "{err}");
    }

    #[cfg(feature = "protobuf")]
    #[test]
    fn rust_protobuf_encodes_into_the_slice_exactly_as_into_a_vec() {
        let mut m = protobuf::well_known_types::struct_::Value::new();
        m.set_string_value("grpcore ".repeat(50));
        let mut want = Vec::new();
        ProtobufCodec::encode(&m, &mut want).unwrap();
        let bb = ByteBuffer::encode::<_, ProtobufCodec>(&m).unwrap();
        let mut got = Vec::new();
        bb.reader().read_to_end(&mut got).unwrap();
        assert_eq!(got, want);
    }

    mod props {
        //! Property tests of every codec over multi-slice buffers, the way the core hands a
        //! peer's message over: decoding through the in-place reader must equal decoding the
        //! concatenated bytes, for valid and garbage input alike, and never panic. 256 cases
        //! each.
        use super::*;
        use crate::buffer::tests::props::{buffer_of, split_at, split_bytes};
        use proptest::prelude::*;

        #[cfg(feature = "prost")]
        #[derive(Clone, PartialEq, prost::Message)]
        struct Child {
            #[prost(fixed64, tag = "1")]
            f: u64,
            #[prost(string, repeated, tag = "2")]
            names: Vec<String>,
        }

        /// Every wire type: varint (zigzag too), 64-bit, length-delimited, nested, packed.
        #[cfg(feature = "prost")]
        #[derive(Clone, PartialEq, prost::Message)]
        struct Msg {
            #[prost(string, tag = "1")]
            s: String,
            #[prost(bytes = "vec", tag = "2")]
            b: Vec<u8>,
            #[prost(sint64, tag = "3")]
            n: i64,
            #[prost(uint32, repeated, tag = "4")]
            r: Vec<u32>,
            #[prost(message, optional, tag = "5")]
            child: Option<Child>,
            #[prost(bool, tag = "6")]
            flag: bool,
        }

        #[cfg(feature = "prost")]
        fn msg() -> impl Strategy<Value = Msg> {
            let child =
                (any::<u64>(), proptest::collection::vec("\\PC{0,8}", 0..3)).prop_map(|(f, names)| Child { f, names });
            (
                "\\PC{0,40}",
                proptest::collection::vec(any::<u8>(), 0..200),
                any::<i64>(),
                proptest::collection::vec(any::<u32>(), 0..20),
                proptest::option::of(child),
                any::<bool>(),
            )
                .prop_map(|(s, b, n, r, child, flag)| Msg {
                    s,
                    b,
                    n,
                    r,
                    child,
                    flag,
                })
        }

        /// A message of `bytes::Bytes` fields (prost-build's `.bytes(["."])`), nested too.
        #[cfg(feature = "prost")]
        #[derive(Clone, PartialEq, prost::Message)]
        struct Blobs {
            #[prost(bytes = "bytes", tag = "1")]
            a: bytes::Bytes,
            #[prost(string, tag = "2")]
            s: String,
            #[prost(bytes = "bytes", repeated, tag = "3")]
            many: Vec<bytes::Bytes>,
            #[prost(message, optional, tag = "4")]
            inner: Option<InnerBlob>,
        }

        #[cfg(feature = "prost")]
        #[derive(Clone, PartialEq, prost::Message)]
        struct InnerBlob {
            #[prost(bytes = "bytes", tag = "1")]
            b: bytes::Bytes,
            #[prost(bytes = "vec", tag = "2")]
            v: Vec<u8>,
        }

        /// Field lengths around every threshold: sharing (4 KiB), HTTP/2 frames (16 KiB),
        /// the writer's crossover (32 KiB), and beyond a 64 KiB read buffer.
        #[cfg(feature = "prost")]
        fn blob() -> impl Strategy<Value = bytes::Bytes> {
            let len = prop_oneof![0usize..64, 4_090usize..4_100, 16_380usize..16_390, 32_760usize..32_780, 60_000usize..70_000];
            (len, any::<u8>()).prop_map(|(len, salt)| (0..len).map(|i| (i % 253) as u8 ^ salt).collect::<Vec<u8>>().into())
        }

        #[cfg(feature = "prost")]
        fn blobs() -> impl Strategy<Value = Blobs> {
            let inner = (blob(), blob()).prop_map(|(b, v)| InnerBlob { b, v: v.to_vec() });
            (blob(), "\\PC{0,20}", proptest::collection::vec(blob(), 0..4), proptest::option::of(inner))
                .prop_map(|(a, s, many, inner)| Blobs { a, s, many, inner })
        }

        /// `data` cut the way the transport cuts a message: every `frame` bytes (HTTP/2 DATA
        /// frames, read buffers), plus arbitrary cuts.
        fn frames(data: &[u8], frame: usize, cuts: &[proptest::sample::Index]) -> Vec<Vec<u8>> {
            let mut parts = Vec::new();
            for piece in data.chunks(frame.max(1)) {
                parts.extend(split_at(piece, cuts));
            }
            parts
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[cfg(feature = "prost")]
            #[test]
            fn prost_bytes_fields_round_trip_through_frames_and_the_writer(
                m in blobs(),
                frame in prop_oneof![1usize..64, 4_000usize..20_000, 60_000usize..70_000],
                cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..3),
            ) {
                let mut encoded = Vec::new();
                ProstCodec::encode(&m, &mut encoded).unwrap();
                // Receive: decoded from the message cut into frames (boundaries inside fields).
                let bb = buffer_of(&frames(&encoded, frame, &cuts));
                let got = <ProstCodec as Codec<Blobs>>::decode(&mut bb.reader()).unwrap();
                drop(bb); // shared fields must outlive the buffer
                prop_assert_eq!(&got, &m);
                // Send: through one slice or the writer (by size), the same bytes as prost's.
                let bb = ByteBuffer::encode::<Blobs, ProstCodec>(&m).unwrap();
                let mut sent = Vec::new();
                std::io::Read::read_to_end(&mut bb.reader(), &mut sent).unwrap();
                prop_assert_eq!(&sent, &encoded);
                let back = <ProstCodec as Codec<Blobs>>::decode(&mut bb.reader()).unwrap();
                drop(bb);
                prop_assert_eq!(back, m);
            }

            #[test]
            fn bytes_codecs_read_any_split_buffer((data, parts) in split_bytes(2_000)) {
                let bb = buffer_of(&parts);
                prop_assert_eq!(<BytesCodec as Codec<Vec<u8>>>::decode(&mut bb.reader()).unwrap(), data.clone());
                prop_assert_eq!(&<BytesCodec as Codec<bytes::Bytes>>::decode(&mut bb.reader()).unwrap()[..], &data[..]);
                let encoded = ByteBuffer::encode::<Vec<u8>, BytesCodec>(&data).unwrap();
                prop_assert_eq!(<BytesCodec as Codec<Vec<u8>>>::decode(&mut encoded.reader()).unwrap(), data);
            }

            #[cfg(feature = "prost")]
            #[test]
            fn prost_on_garbage_split_buffers_matches_the_concatenation((data, parts) in split_bytes(300)) {
                let got = <ProstCodec as Codec<Msg>>::decode(&mut buffer_of(&parts).reader());
                let want = <Msg as prost::Message>::decode(&data[..]);
                match (got, want) {
                    (Ok(got), Ok(want)) => prop_assert_eq!(got, want),
                    (Err(got), Err(_)) => prop_assert!(matches!(got, Error::Codec(_))),
                    (got, want) => prop_assert!(false, "split buffer {:?}, concatenation {:?}", got, want),
                }
            }

            #[cfg(feature = "prost")]
            #[test]
            fn prost_round_trips_through_split_buffers(
                m in msg(),
                cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
                other in msg(),
            ) {
                let mut encoded = Vec::new();
                ProstCodec::encode(&m, &mut encoded).unwrap();
                let bb = buffer_of(&split_at(&encoded, &cuts));
                prop_assert_eq!(<ProstCodec as Codec<Msg>>::decode(&mut bb.reader()).unwrap(), m.clone());
                // The send path: encoded into a core slice, then refilled with another message.
                let mut bb = ByteBuffer::encode::<Msg, ProstCodec>(&m).unwrap();
                prop_assert_eq!(<ProstCodec as Codec<Msg>>::decode(&mut bb.reader()).unwrap(), m);
                // SAFETY: no operation uses this buffer.
                unsafe { bb.refill::<Msg, ProstCodec>(&other) }.unwrap();
                prop_assert_eq!(<ProstCodec as Codec<Msg>>::decode(&mut bb.reader()).unwrap(), other);
            }

            #[cfg(feature = "prost")]
            #[test]
            fn a_truncated_prost_message_is_an_error_not_a_panic(
                s in "\\PC{1,40}",
                cut in 1usize..=40,
                cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
            ) {
                let m = Msg { s, ..Msg::default() };
                let mut encoded = Vec::new();
                ProstCodec::encode(&m, &mut encoded).unwrap();
                // The string is the last field: cutting into it leaves its length unmet.
                let cut = cut.min(m.s.len());
                encoded.truncate(encoded.len() - cut);
                let got = <ProstCodec as Codec<Msg>>::decode(&mut buffer_of(&split_at(&encoded, &cuts)).reader());
                prop_assert!(matches!(got, Err(Error::Codec(_))), "{:?}", got);
            }

            #[cfg(feature = "protobuf")]
            #[test]
            fn rust_protobuf_on_garbage_split_buffers_matches_the_concatenation((data, parts) in split_bytes(300)) {
                use protobuf::well_known_types::struct_::Struct;
                let got = <ProtobufCodec as Codec<Struct>>::decode(&mut buffer_of(&parts).reader());
                let want = <Struct as protobuf::Message>::parse_from_bytes(&data);
                match (got, want) {
                    (Ok(got), Ok(want)) => prop_assert_eq!(got, want),
                    (Err(got), Err(_)) => prop_assert!(matches!(got, Error::Codec(_))),
                    (got, want) => prop_assert!(false, "split buffer {:?}, concatenation {:?}", got, want),
                }
            }

            #[cfg(feature = "protobuf")]
            #[test]
            fn rust_protobuf_round_trips_through_split_buffers(
                fields in proptest::collection::btree_map("\\PC{0,10}", "\\PC{0,30}", 0..6),
                cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
            ) {
                use protobuf::well_known_types::struct_::{Struct, Value};
                let mut m = Struct::new();
                for (k, v) in fields {
                    let mut value = Value::new();
                    value.set_string_value(v);
                    m.fields.insert(k, value);
                }
                let mut encoded = Vec::new();
                ProtobufCodec::encode(&m, &mut encoded).unwrap();
                let bb = buffer_of(&split_at(&encoded, &cuts));
                prop_assert_eq!(<ProtobufCodec as Codec<Struct>>::decode(&mut bb.reader()).unwrap(), m.clone());
                let bb = ByteBuffer::encode::<Struct, ProtobufCodec>(&m).unwrap();
                prop_assert_eq!(<ProtobufCodec as Codec<Struct>>::decode(&mut bb.reader()).unwrap(), m);
            }
        }
    }
}
