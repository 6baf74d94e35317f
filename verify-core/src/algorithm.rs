//! The signature algorithms clients may name, by their Java names.
//!
//! Clients send Java's `java.security.Signature` names (`SHA256withRSA`,
//! `SHA256withRSA/PSS`, `SHA256withECDSA`, `SHA256withECDSAinP1363Format`,
//! `Ed25519`, ...). They are matched case-insensitively and always reported
//! in the canonical spelling below; `EdDSA` (Java's other name for it) is
//! read as `Ed25519`, the only EdDSA curve served.
//!
//! Each algorithm belongs to one [`KeyFamily`]; a key of another family
//! never verifies it (the verifier answers `key_algorithm_mismatch`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The digest an algorithm hashes the document with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Digest {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    /// `data` hashed with this digest.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        match self {
            Digest::Md5 => md5::Md5::digest(data).to_vec(),
            Digest::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Digest::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Digest::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Digest::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// Output length in bytes; also the PSS salt length we accept.
    pub fn output_len(self) -> usize {
        match self {
            Digest::Md5 => 16,
            Digest::Sha1 => 20,
            Digest::Sha256 => 32,
            Digest::Sha384 => 48,
            Digest::Sha512 => 64,
        }
    }
}

/// The kind of key an algorithm needs, by Java's `KeyFactory` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyFamily {
    #[serde(rename = "RSA")]
    Rsa,
    /// ECDSA keys on a NIST curve ([`Curve`]).
    #[serde(rename = "EC")]
    Ec,
    #[serde(rename = "Ed25519")]
    Ed25519,
}

impl KeyFamily {
    pub fn name(self) -> &'static str {
        match self {
            KeyFamily::Rsa => "RSA",
            KeyFamily::Ec => "EC",
            KeyFamily::Ed25519 => "Ed25519",
        }
    }
}

impl fmt::Display for KeyFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The elliptic curves ECDSA keys may be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    /// The NIST name (`P-256`).
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    /// Bytes of a field element (and of r and s in a raw signature).
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

/// How an ECDSA signature's (r, s) is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureEncoding {
    /// ASN.1 DER `SEQUENCE { r INTEGER, s INTEGER }`, as Java's
    /// `SHA256withECDSA` and OpenSSL make it.
    Der,
    /// IEEE P1363: r and s as fixed-length big-endian, concatenated, as
    /// WebCrypto, JOSE and Java's `...inP1363Format` make it.
    P1363,
}

/// How an algorithm checks a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Rsa(Padding),
    Ecdsa(SignatureEncoding),
    /// PureEdDSA (RFC 8032): the document is not hashed first.
    Ed25519,
}

/// The RSA signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Padding {
    /// RSASSA-PKCS1-v1_5.
    Pkcs1v15,
    /// RSASSA-PSS, MGF1 with the same digest, salt length = digest length.
    Pss,
}

/// A supported signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256WithRsa,
    Sha384WithRsa,
    Sha512WithRsa,
    Sha256WithRsaPss,
    Sha384WithRsaPss,
    Sha512WithRsaPss,
    /// Legacy: only verified when the caller enables legacy digests.
    Sha1WithRsa,
    /// Legacy: what the system this service replaces signed with.
    Md5WithRsa,
    Sha256WithEcdsa,
    Sha384WithEcdsa,
    Sha512WithEcdsa,
    Sha256WithEcdsaP1363,
    Sha384WithEcdsaP1363,
    Sha512WithEcdsaP1363,
    Ed25519,
}

impl Algorithm {
    /// Every algorithm, in a stable order (tests and benchmarks iterate this).
    pub const ALL: [Algorithm; 15] = [
        Algorithm::Sha256WithRsa,
        Algorithm::Sha384WithRsa,
        Algorithm::Sha512WithRsa,
        Algorithm::Sha256WithRsaPss,
        Algorithm::Sha384WithRsaPss,
        Algorithm::Sha512WithRsaPss,
        Algorithm::Sha1WithRsa,
        Algorithm::Md5WithRsa,
        Algorithm::Sha256WithEcdsa,
        Algorithm::Sha384WithEcdsa,
        Algorithm::Sha512WithEcdsa,
        Algorithm::Sha256WithEcdsaP1363,
        Algorithm::Sha384WithEcdsaP1363,
        Algorithm::Sha512WithEcdsaP1363,
        Algorithm::Ed25519,
    ];

    /// The algorithm a request gets when it names none.
    pub const DEFAULT: Algorithm = Algorithm::Sha256WithRsa;

    /// The canonical (Java) spelling.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256WithRsa => "SHA256withRSA",
            Algorithm::Sha384WithRsa => "SHA384withRSA",
            Algorithm::Sha512WithRsa => "SHA512withRSA",
            Algorithm::Sha256WithRsaPss => "SHA256withRSA/PSS",
            Algorithm::Sha384WithRsaPss => "SHA384withRSA/PSS",
            Algorithm::Sha512WithRsaPss => "SHA512withRSA/PSS",
            Algorithm::Sha1WithRsa => "SHA1withRSA",
            Algorithm::Md5WithRsa => "MD5withRSA",
            Algorithm::Sha256WithEcdsa => "SHA256withECDSA",
            Algorithm::Sha384WithEcdsa => "SHA384withECDSA",
            Algorithm::Sha512WithEcdsa => "SHA512withECDSA",
            Algorithm::Sha256WithEcdsaP1363 => "SHA256withECDSAinP1363Format",
            Algorithm::Sha384WithEcdsaP1363 => "SHA384withECDSAinP1363Format",
            Algorithm::Sha512WithEcdsaP1363 => "SHA512withECDSAinP1363Format",
            Algorithm::Ed25519 => "Ed25519",
        }
    }

    /// Parses a name case-insensitively (`EdDSA` is read as `Ed25519`);
    /// `None` for anything not supported.
    pub fn parse(name: &str) -> Option<Algorithm> {
        if name.eq_ignore_ascii_case("EdDSA") {
            return Some(Algorithm::Ed25519);
        }
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The digest the document is hashed with first; `None` for Ed25519,
    /// which signs the document itself (its SHA-512 is internal to it).
    pub fn digest(self) -> Option<Digest> {
        Some(match self {
            Algorithm::Sha256WithRsa
            | Algorithm::Sha256WithRsaPss
            | Algorithm::Sha256WithEcdsa
            | Algorithm::Sha256WithEcdsaP1363 => Digest::Sha256,
            Algorithm::Sha384WithRsa
            | Algorithm::Sha384WithRsaPss
            | Algorithm::Sha384WithEcdsa
            | Algorithm::Sha384WithEcdsaP1363 => Digest::Sha384,
            Algorithm::Sha512WithRsa
            | Algorithm::Sha512WithRsaPss
            | Algorithm::Sha512WithEcdsa
            | Algorithm::Sha512WithEcdsaP1363 => Digest::Sha512,
            Algorithm::Sha1WithRsa => Digest::Sha1,
            Algorithm::Md5WithRsa => Digest::Md5,
            Algorithm::Ed25519 => return None,
        })
    }

    pub fn scheme(self) -> Scheme {
        match self {
            Algorithm::Sha256WithRsaPss
            | Algorithm::Sha384WithRsaPss
            | Algorithm::Sha512WithRsaPss => Scheme::Rsa(Padding::Pss),
            Algorithm::Sha256WithRsa
            | Algorithm::Sha384WithRsa
            | Algorithm::Sha512WithRsa
            | Algorithm::Sha1WithRsa
            | Algorithm::Md5WithRsa => Scheme::Rsa(Padding::Pkcs1v15),
            Algorithm::Sha256WithEcdsa
            | Algorithm::Sha384WithEcdsa
            | Algorithm::Sha512WithEcdsa => Scheme::Ecdsa(SignatureEncoding::Der),
            Algorithm::Sha256WithEcdsaP1363
            | Algorithm::Sha384WithEcdsaP1363
            | Algorithm::Sha512WithEcdsaP1363 => Scheme::Ecdsa(SignatureEncoding::P1363),
            Algorithm::Ed25519 => Scheme::Ed25519,
        }
    }

    /// The kind of key this algorithm verifies with.
    pub fn family(self) -> KeyFamily {
        match self.scheme() {
            Scheme::Rsa(_) => KeyFamily::Rsa,
            Scheme::Ecdsa(_) => KeyFamily::Ec,
            Scheme::Ed25519 => KeyFamily::Ed25519,
        }
    }

    /// SHA-1 and MD5 are broken for signatures; they are refused unless enabled.
    pub fn is_legacy(self) -> bool {
        matches!(self.digest(), Some(Digest::Sha1 | Digest::Md5))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a name that is not one of [`Algorithm::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature algorithm {0:?}")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::parse(s).ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

impl Serialize for Algorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Algorithm::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(UnknownAlgorithm(name.into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_case_insensitively_and_report_canonical_spelling() {
        assert_eq!(
            Algorithm::parse("sha256withrsa"),
            Some(Algorithm::Sha256WithRsa)
        );
        assert_eq!(
            Algorithm::parse("SHA512WITHRSA/pss"),
            Some(Algorithm::Sha512WithRsaPss)
        );
        assert_eq!(Algorithm::parse("md5withRSA").unwrap().name(), "MD5withRSA");
        assert_eq!(
            Algorithm::parse("sha384withecdsainp1363format"),
            Some(Algorithm::Sha384WithEcdsaP1363)
        );
        assert_eq!(Algorithm::parse("EDDSA"), Some(Algorithm::Ed25519));
        assert_eq!(Algorithm::parse("ed25519").unwrap().name(), "Ed25519");
        assert_eq!(Algorithm::parse("SHA256withDSA"), None);
        assert_eq!(Algorithm::parse("Ed448"), None);
        assert_eq!(Algorithm::parse(""), None);
    }

    #[test]
    fn every_name_round_trips_through_serde() {
        for a in Algorithm::ALL {
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<Algorithm>(&json).unwrap(), a);
        }
        assert!(serde_json::from_str::<Algorithm>("\"RSA\"").is_err());
    }

    #[test]
    fn only_sha1_and_md5_are_legacy() {
        let legacy: Vec<_> = Algorithm::ALL
            .into_iter()
            .filter(|a| a.is_legacy())
            .collect();
        assert_eq!(legacy, [Algorithm::Sha1WithRsa, Algorithm::Md5WithRsa]);
    }

    #[test]
    fn each_algorithm_names_its_key_family() {
        assert_eq!(Algorithm::Sha256WithRsaPss.family(), KeyFamily::Rsa);
        assert_eq!(Algorithm::Sha512WithEcdsaP1363.family(), KeyFamily::Ec);
        assert_eq!(Algorithm::Sha256WithEcdsa.family(), KeyFamily::Ec);
        assert_eq!(Algorithm::Ed25519.family(), KeyFamily::Ed25519);
        assert_eq!(Algorithm::Ed25519.digest(), None);
    }
}
