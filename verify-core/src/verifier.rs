//! The verification entry point: resolve the key, apply policy, verify.

use crate::backend::{Backend, Used};
use crate::{Algorithm, KeyId, KeyRegistry};

/// The outcome of checking a signature that could be checked.
///
/// A signature that does not verify for any reason (tampered document or
/// signature, wrong key, wrong length) is `valid: false`, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub valid: bool,
    /// The key actually used (resolved from `default` / the only key).
    pub key_id: KeyId,
    pub algorithm: Algorithm,
    pub backend: Used,
}

/// Why a signature could not be checked at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no key with id {0:?} is loaded")]
    UnknownKey(KeyId),
    #[error(
        "the request names no keyId and there is neither a key \"default\" nor exactly one key"
    )]
    NoDefaultKey,
    #[error("{0} is a legacy algorithm and legacy digests are disabled")]
    AlgorithmDisabled(Algorithm),
}

impl VerifyError {
    /// Stable snake_case code, as carried in `failed` results.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::UnknownKey(_) | VerifyError::NoDefaultKey => "unknown_key",
            VerifyError::AlgorithmDisabled(_) => "algorithm_disabled",
        }
    }
}

/// Keys, backend and policy; shared by all verification threads.
#[derive(Debug)]
pub struct Verifier {
    keys: KeyRegistry,
    backend: Backend,
    allow_legacy: bool,
}

impl Verifier {
    pub fn new(keys: KeyRegistry, backend: Backend, allow_legacy: bool) -> Self {
        Verifier {
            keys,
            backend,
            allow_legacy,
        }
    }

    pub fn keys(&self) -> &KeyRegistry {
        &self.keys
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks `signature` over `document`. CPU-bound: call it off the reactor.
    pub fn verify(
        &self,
        key_id: Option<&KeyId>,
        algorithm: Algorithm,
        document: &[u8],
        signature: &[u8],
    ) -> Result<Verdict, VerifyError> {
        if algorithm.is_legacy() && !self.allow_legacy {
            return Err(VerifyError::AlgorithmDisabled(algorithm));
        }
        let (key_id, key) = self.keys.resolve(key_id).ok_or_else(|| match key_id {
            Some(id) => VerifyError::UnknownKey(id.clone()),
            None => VerifyError::NoDefaultKey,
        })?;
        let (valid, backend) = self.backend.verify(key, algorithm, document, signature);
        Ok(Verdict {
            valid,
            key_id: key_id.clone(),
            algorithm,
            backend,
        })
    }
}
