//! Request and response metadata: validated keys, ASCII and binary (`-bin`) values.
//!
//! Owns validation and the Rust-side representation; the conversion to and from the core's
//! `grpc_metadata` arrays lives in `call::raw`.
//!
//! This module sits below `status.rs` and `error.rs` and imports neither: validation fails
//! with [`InvalidMetadata`], and the public validating methods ([`Metadata::append`],
//! [`Metadata::append_bin`], [`Metadata::insert`]), which return the crate's
//! [`Error`](crate::Error), are defined in `error.rs` on top of the `try_` methods here.

use std::fmt;

/// Why a metadata key or value was refused; becomes
/// [`Error::InvalidMetadata`](crate::Error::InvalidMetadata) with this kind and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InvalidMetadata(pub(crate) MetadataErrorKind, pub(crate) String);

impl fmt::Display for InvalidMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.1)
    }
}

/// What was wrong with a metadata key or value
/// ([`MetadataError::kind`](crate::MetadataError::kind)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetadataErrorKind {
    /// The key is empty.
    EmptyKey,
    /// The key has a character other than `0-9 a-z - _ .` (upper case is folded).
    InvalidKey,
    /// The key starts with `grpc-`, which belongs to the protocol.
    ReservedKey,
    /// An ASCII value has a byte outside 0x20-0x7e (binary data needs a `-bin` key).
    InvalidValue,
    /// Binary data was given for a key that does not end in `-bin`.
    NotBinaryKey,
}

/// An ordered multimap of metadata entries (HTTP/2 headers or trailers).
///
/// Keys are lower-case ASCII (`0-9 a-z - _ .`); upper-case input is folded to lower case.
/// Keys ending in `-bin` carry arbitrary bytes (the core base64-encodes them on the wire);
/// other values must be printable ASCII. Keys starting with `grpc-` are reserved for the
/// protocol and rejected. Invalid input is an [`Error::InvalidMetadata`](crate::Error::InvalidMetadata),
/// never a panic.
///
/// ```
/// let mut md = grpcore::Metadata::new();
/// md.append("x-user", "alice").unwrap();
/// md.append_bin("x-trace-bin", vec![0u8, 1, 2]).unwrap();
/// assert_eq!(md.get("x-user"), Some("alice"));
/// assert!(md.append("bad key", "v").is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(String, Vec<u8>)>,
}

fn is_binary_key(key: &str) -> bool {
    key.ends_with("-bin")
}

fn check_key(key: &str) -> Result<String, InvalidMetadata> {
    if key.is_empty() {
        return Err(InvalidMetadata(MetadataErrorKind::EmptyKey, "empty metadata key".into()));
    }
    let lower = key.to_ascii_lowercase();
    if let Some(bad) = lower
        .chars()
        .find(|c| !(c.is_ascii_digit() || c.is_ascii_lowercase() || matches!(c, '-' | '_' | '.')))
    {
        return Err(InvalidMetadata(MetadataErrorKind::InvalidKey, format!(
            "metadata key {key:?} contains {bad:?}; keys may only contain 0-9 a-z - _ ."
        )));
    }
    if lower.starts_with("grpc-") {
        return Err(InvalidMetadata(MetadataErrorKind::ReservedKey, format!(
            "metadata key {key:?} is reserved: keys starting with \"grpc-\" belong to the protocol"
        )));
    }
    Ok(lower)
}

fn check_ascii_value(key: &str, value: &[u8]) -> Result<(), InvalidMetadata> {
    if let Some(pos) = value.iter().position(|b| !(0x20..=0x7e).contains(b)) {
        return Err(InvalidMetadata(MetadataErrorKind::InvalidValue, format!(
            "value of metadata key {key:?} has byte {:#04x} at offset {pos}; ASCII values must be \
             printable (0x20-0x7e): use a key ending in \"-bin\" for binary data",
            value[pos]
        )));
    }
    Ok(())
}

impl Metadata {
    /// An empty map.
    pub const fn new() -> Metadata {
        Metadata { entries: Vec::new() }
    }

    /// [`append`](Self::append), failing with [`InvalidMetadata`].
    pub(crate) fn try_append(&mut self, key: &str, value: &str) -> Result<(), InvalidMetadata> {
        let key = check_key(key)?;
        if !is_binary_key(&key) {
            check_ascii_value(&key, value.as_bytes())?;
        }
        self.entries.push((key, value.as_bytes().to_vec()));
        Ok(())
    }

    /// [`append_bin`](Self::append_bin), failing with [`InvalidMetadata`].
    pub(crate) fn try_append_bin(&mut self, key: &str, value: impl Into<Vec<u8>>) -> Result<(), InvalidMetadata> {
        let key = check_key(key)?;
        if !is_binary_key(&key) {
            return Err(InvalidMetadata(MetadataErrorKind::NotBinaryKey, format!(
                "binary metadata needs a key ending in \"-bin\", got {key:?}"
            )));
        }
        self.entries.push((key, value.into()));
        Ok(())
    }

    /// [`insert`](Self::insert), failing with [`InvalidMetadata`].
    pub(crate) fn try_insert(&mut self, key: &str, value: &str) -> Result<(), InvalidMetadata> {
        let lower = check_key(key)?;
        if !is_binary_key(&lower) {
            check_ascii_value(&lower, value.as_bytes())?;
        }
        self.entries.retain(|(k, _)| *k != lower);
        self.entries.push((lower, value.as_bytes().to_vec()));
        Ok(())
    }

    /// Removes every entry of `key`; returns how many were removed.
    pub fn remove(&mut self, key: &str) -> usize {
        let lower = key.to_ascii_lowercase();
        let before = self.entries.len();
        self.entries.retain(|(k, _)| *k != lower);
        before - self.entries.len()
    }

    /// The first value of `key` as text (`None` when absent or not UTF-8).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.get_bin(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `key` as bytes.
    pub fn get_bin(&self, key: &str) -> Option<&[u8]> {
        let lower = key.to_ascii_lowercase();
        self.entries
            .iter()
            .find(|(k, _)| *k == lower)
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let lower = key.to_ascii_lowercase();
        self.entries
            .iter()
            .filter(move |(k, _)| *k == lower)
            .map(|(_, v)| v.as_slice())
    }

    /// All entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// An empty map with room for `n` entries.
    pub(crate) fn with_capacity(n: usize) -> Metadata {
        Metadata {
            entries: Vec::with_capacity(n),
        }
    }

    /// Adds an entry received from the core, which has validated it already. Reserved keys
    /// are kept: a peer's trailers may carry them.
    pub(crate) fn push_raw(&mut self, key: &[u8], value: &[u8]) {
        let key = match std::str::from_utf8(key) {
            Ok(k) => k.to_owned(),
            Err(_) => String::from_utf8_lossy(key).into_owned(),
        };
        self.entries.push((key, value.to_vec()));
    }

    /// Removes and returns the first value of a (possibly reserved) key.
    pub(crate) fn take_raw(&mut self, key: &str) -> Option<Vec<u8>> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(pos).1)
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.entries {
            if is_binary_key(k) {
                m.entry(k, v);
            } else {
                m.entry(k, &String::from_utf8_lossy(v));
            }
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated_and_folded() {
        let mut md = Metadata::new();
        md.try_append("X-User", "a").unwrap();
        assert_eq!(md.get("x-user"), Some("a"));
        for bad in ["", "sp ace", "colon:", "ünï", "grpc-timeout", ":path"] {
            let err = md.try_append(bad, "v").unwrap_err();
            assert!(err.1.contains("key"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn values_are_validated() {
        let mut md = Metadata::new();
        let err = md.try_append("x-a", "line\nbreak").unwrap_err();
        assert!(err.to_string().contains("-bin"), "{err}");
        assert!(md.try_append_bin("x-a", vec![0u8]).is_err());
        md.try_append_bin("x-a-bin", vec![0u8, 255]).unwrap();
        md.try_append("x-b-bin", "text as bytes").unwrap();
        assert_eq!(md.get_bin("x-a-bin"), Some(&[0u8, 255][..]));
    }

    #[test]
    fn insert_replaces_and_remove_counts() {
        let mut md = Metadata::new();
        md.try_append("k", "1").unwrap();
        md.try_append("k", "2").unwrap();
        assert_eq!(md.get_all("k").count(), 2);
        md.try_insert("k", "3").unwrap();
        assert_eq!(md.get_all("k").collect::<Vec<_>>(), vec![b"3"]);
        assert_eq!(md.remove("K"), 1);
        assert!(md.is_empty());
    }

    mod props {
        //! Property tests of metadata from a peer (`push_raw`, which the core's received
        //! arrays go through) and of validation. 256 cases each.
        use super::*;
        use proptest::prelude::*;

        /// Keys mixing the legal alphabet, upper case, reserved prefixes and junk.
        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9._-]{1,12}",
                "[a-zA-Z0-9._-]{1,12}(-bin|-BIN)?",
                "(grpc-|GRPC-|:)?[a-z]{0,6}",
                "\\PC{0,8}",
                Just(String::new()),
            ]
        }

        /// The rule, restated independently of `check_key`.
        fn key_is_valid(key: &str) -> bool {
            !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && !key.to_ascii_lowercase().starts_with("grpc-")
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn peer_entries_are_kept_byte_for_byte_in_order(
                entries in proptest::collection::vec(
                    (proptest::collection::vec(any::<u8>(), 0..20), proptest::collection::vec(any::<u8>(), 0..40)),
                    0..12,
                )
            ) {
                let mut md = Metadata::with_capacity(entries.len());
                for (k, v) in &entries {
                    md.push_raw(k, v);
                }
                prop_assert_eq!(md.len(), entries.len());
                for ((k, v), (got_k, got_v)) in entries.iter().zip(md.iter()) {
                    prop_assert_eq!(got_k, String::from_utf8_lossy(k));
                    prop_assert_eq!(got_v, &v[..]);
                }
                let _ = format!("{md:?}"); // never panics, whatever the bytes
                // Taking one key out (as the details trailer is) leaves the others in order.
                if let Some((k, v)) = entries.first() {
                    let k = String::from_utf8_lossy(k).into_owned();
                    prop_assert_eq!(md.take_raw(&k), Some(v.clone()));
                    // It removed the first match, entry 0; the others stay, in order.
                    let want: Vec<_> = entries[1..]
                        .iter()
                        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
                        .collect();
                    let got: Vec<_> = md.iter().map(|(k, v)| (k.to_owned(), v.to_vec())).collect();
                    prop_assert_eq!(got, want);
                }
            }

            #[test]
            fn append_accepts_exactly_the_documented_grammar(key in key(), value in "\\PC{0,16}|[ -~]{0,16}") {
                let mut md = Metadata::new();
                let valid = key_is_valid(&key)
                    && (key.to_ascii_lowercase().ends_with("-bin") || value.bytes().all(|b| (0x20..=0x7e).contains(&b)));
                let result = md.try_append(&key, &value);
                prop_assert_eq!(result.is_ok(), valid, "{:?}={:?}: {:?}", key, value, result);
                if valid {
                    let lower = key.to_ascii_lowercase();
                    prop_assert_eq!(md.iter().next(), Some((lower.as_str(), value.as_bytes())));
                    prop_assert_eq!(md.get_bin(&key), Some(value.as_bytes()));
                    let mut again = Metadata::new();
                    prop_assert!(again.try_insert(&key, &value).is_ok());
                    prop_assert_eq!(again, md);
                } else {
                    prop_assert!(md.is_empty());
                    prop_assert!(!result.unwrap_err().1.is_empty());
                }
            }

            #[test]
            fn binary_values_round_trip(key in "[a-z0-9._-]{0,10}", value in proptest::collection::vec(any::<u8>(), 0..64)) {
                let key = format!("x{key}-bin");
                let mut md = Metadata::new();
                md.try_append_bin(&key, value.clone()).unwrap();
                prop_assert_eq!(md.get_bin(&key), Some(&value[..]));
                prop_assert!(md.try_append_bin(key.trim_end_matches("-bin"), value).is_err());
            }
        }
    }
}
