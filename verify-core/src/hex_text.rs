//! Bytes as hexadecimal text, the form signatures and digests travel in.
//!
//! The `hex` crate's slice functions, wrapped: [`hex::decode`] and
//! [`hex::encode`] go one character at a time through iterators (2.5-3.5 %
//! of the gateway's CPU in perf profiles under load), while
//! [`hex::decode_to_slice`] and [`hex::encode_to_slice`] are plain loops,
//! twice as fast or more on a signature (`cargo bench -p verify-core`,
//! docs/benchmarks.md).
//! Invariant: the same answers and the same errors as [`hex::decode`] and
//! [`hex::encode`] (lowercase out, either case in).

/// Decodes `text` (an even number of hex digits, either case).
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, hex::FromHexError> {
    let text = text.as_ref();
    if text.len() % 2 != 0 {
        return Err(hex::FromHexError::OddLength);
    }
    let mut bytes = vec![0; text.len() / 2];
    hex::decode_to_slice(text, &mut bytes)?;
    Ok(bytes)
}

/// Encodes `bytes` as lowercase hex digits.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    let mut text = vec![0; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut text).expect("the output is twice the input");
    String::from_utf8(text).expect("hex digits are ASCII")
}

/// `#[serde(with = "crate::hex_text::serde")]` for a `Vec<u8>` (or
/// `serialize_with` for a `&[u8]`): a JSON string of hex digits.
pub mod serde {
    use serde::de::Visitor;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        bytes: impl AsRef<[u8]>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_str(HexVisitor)
    }

    /// Reads the string where it lies (borrowed or not), without a copy.
    struct HexVisitor;

    impl Visitor<'_> for HexVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string of hex digits")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
            super::decode(text).map_err(E::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decodes_and_encodes_as_the_hex_crate_does(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = super::encode(&bytes);
            prop_assert_eq!(&text, &hex::encode(&bytes));
            prop_assert_eq!(super::decode(&text), Ok(bytes.clone()));
            prop_assert_eq!(super::decode(text.to_uppercase()), Ok(bytes));
        }

        #[test]
        fn refuses_what_the_hex_crate_refuses(text in "[0-9a-fA-Fxz ]{0,40}") {
            prop_assert_eq!(super::decode(&text), hex::decode(&text));
        }
    }
}
