//! Verification backends behind one API.
//!
//! - [`rust`]: pure Rust (`rsa`, `p256` / `p384` / `p521`, `ed25519-dalek`).
//!   The reference, and the only one that handles the legacy digests (MD5,
//!   SHA-1) and RSA keys under 2048 bits.
//! - [`aws_lc`] (feature `aws-lc`, on by default): AWS-LC, several times
//!   faster (verify-core/README.md has the figures).
//!
//! [`Backend::Fast`] uses AWS-LC wherever it supports the (key, algorithm)
//! pair and falls back to `rsa` otherwise; the differential tests hold both
//! to the same verdicts.

#[cfg(feature = "aws-lc")]
pub mod aws_lc;
pub mod rust;

use std::fmt;
use std::str::FromStr;

use crate::{Algorithm, PublicKey, Signed};

/// Which backend a [`crate::Verifier`] prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// AWS-LC where it supports the algorithm and key size, pure Rust elsewhere.
    #[default]
    Fast,
    /// The pure-Rust crates for everything.
    Rust,
}

/// The backend that actually produced a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Used {
    AwsLc,
    Rust,
}

impl Used {
    pub fn name(self) -> &'static str {
        match self {
            Used::AwsLc => "aws-lc",
            Used::Rust => "rust",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown verify backend {0:?}; expected \"fast\" or \"rust\"")]
pub struct UnknownBackend(pub String);

impl FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fast" | "aws-lc" | "auto" => Ok(Backend::Fast),
            "rust" | "rsa" => Ok(Backend::Rust),
            _ => Err(UnknownBackend(s.to_owned())),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Fast => "fast",
            Backend::Rust => "rust",
        })
    }
}

impl Backend {
    /// Verifies `signature` over the document `message`; `true` only for a
    /// valid signature.
    pub fn verify(
        self,
        key: &PublicKey,
        algorithm: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> (bool, Used) {
        self.verify_signed(key, algorithm, Signed::Document(message), signature)
    }

    /// Verifies `signature` over a document or its digest; `true` only for
    /// a valid signature.
    pub fn verify_signed(
        self,
        key: &PublicKey,
        algorithm: Algorithm,
        signed: Signed<'_>,
        signature: &[u8],
    ) -> (bool, Used) {
        #[cfg(feature = "aws-lc")]
        if self == Backend::Fast {
            if let Some(valid) = aws_lc::verify(key.fast(), algorithm, signed, signature) {
                return (valid, Used::AwsLc);
            }
        }
        (rust::verify(key, algorithm, signed, signature), Used::Rust)
    }
}
