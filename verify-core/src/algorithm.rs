//! The signature algorithms clients may name, by their Java names.
//!
//! Clients send Java's `java.security.Signature` names (`SHA256withRSA`,
//! `SHA256withRSA/PSS`, ...). They are matched case-insensitively and always
//! reported in the canonical spelling below.

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
}

impl Algorithm {
    /// Every algorithm, in a stable order (tests and benchmarks iterate this).
    pub const ALL: [Algorithm; 8] = [
        Algorithm::Sha256WithRsa,
        Algorithm::Sha384WithRsa,
        Algorithm::Sha512WithRsa,
        Algorithm::Sha256WithRsaPss,
        Algorithm::Sha384WithRsaPss,
        Algorithm::Sha512WithRsaPss,
        Algorithm::Sha1WithRsa,
        Algorithm::Md5WithRsa,
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
        }
    }

    /// Parses a name case-insensitively; `None` for anything not supported.
    pub fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    pub fn digest(self) -> Digest {
        match self {
            Algorithm::Sha256WithRsa | Algorithm::Sha256WithRsaPss => Digest::Sha256,
            Algorithm::Sha384WithRsa | Algorithm::Sha384WithRsaPss => Digest::Sha384,
            Algorithm::Sha512WithRsa | Algorithm::Sha512WithRsaPss => Digest::Sha512,
            Algorithm::Sha1WithRsa => Digest::Sha1,
            Algorithm::Md5WithRsa => Digest::Md5,
        }
    }

    pub fn padding(self) -> Padding {
        match self {
            Algorithm::Sha256WithRsaPss
            | Algorithm::Sha384WithRsaPss
            | Algorithm::Sha512WithRsaPss => Padding::Pss,
            _ => Padding::Pkcs1v15,
        }
    }

    /// SHA-1 and MD5 are broken for signatures; they are refused unless enabled.
    pub fn is_legacy(self) -> bool {
        matches!(self.digest(), Digest::Sha1 | Digest::Md5)
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
        assert_eq!(Algorithm::parse("SHA256withECDSA"), None);
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
}
