//! The verification entry point: resolve the key, apply policy, verify.
//!
//! The keys can be replaced while verifications run ([`Verifier::replace_keys`]):
//! each verification reads one registry from start to end, the old one or
//! the new one, never a mix, and nothing waits on a lock.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::backend::{Backend, Used};
use crate::{Algorithm, KeyFamily, KeyId, KeyRegistry, Signed};

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
    #[error("key {key_id:?} is an {key} key; {algorithm} needs an {needs} key")]
    KeyAlgorithmMismatch {
        key_id: KeyId,
        key: KeyFamily,
        algorithm: Algorithm,
        needs: KeyFamily,
    },
}

impl VerifyError {
    /// Stable snake_case code, as carried in `failed` results.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::UnknownKey(_) | VerifyError::NoDefaultKey => "unknown_key",
            VerifyError::AlgorithmDisabled(_) => "algorithm_disabled",
            VerifyError::KeyAlgorithmMismatch { .. } => "key_algorithm_mismatch",
        }
    }
}

/// Keys, backend and policy; shared by all verification threads.
#[derive(Debug)]
pub struct Verifier {
    keys: ArcSwap<KeyRegistry>,
    backend: Backend,
    allow_legacy: bool,
}

impl Verifier {
    pub fn new(keys: KeyRegistry, backend: Backend, allow_legacy: bool) -> Self {
        Verifier {
            keys: ArcSwap::from_pointee(keys),
            backend,
            allow_legacy,
        }
    }

    /// The keys in use now.
    pub fn keys(&self) -> Arc<KeyRegistry> {
        self.keys.load_full()
    }

    /// Puts `keys` in use for every verification that starts from now on;
    /// those already running finish with the registry they started with.
    pub fn replace_keys(&self, keys: KeyRegistry) {
        self.keys.store(Arc::new(keys));
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks `signature` over `document`. CPU-bound.
    pub fn verify(
        &self,
        key_id: Option<&KeyId>,
        algorithm: Algorithm,
        document: &[u8],
        signature: &[u8],
    ) -> Result<Verdict, VerifyError> {
        self.verify_signed(key_id, algorithm, Signed::Document(document), signature)
    }

    /// Checks `signature` over a document or its digest. CPU-bound.
    pub fn verify_signed(
        &self,
        key_id: Option<&KeyId>,
        algorithm: Algorithm,
        signed: Signed<'_>,
        signature: &[u8],
    ) -> Result<Verdict, VerifyError> {
        if algorithm.is_legacy() && !self.allow_legacy {
            return Err(VerifyError::AlgorithmDisabled(algorithm));
        }
        let keys = self.keys.load();
        let (key_id, key) = keys.resolve(key_id).ok_or_else(|| match key_id {
            Some(id) => VerifyError::UnknownKey(id.clone()),
            None => VerifyError::NoDefaultKey,
        })?;
        if key.family() != algorithm.family() {
            return Err(VerifyError::KeyAlgorithmMismatch {
                key_id: key_id.clone(),
                key: key.family(),
                algorithm,
                needs: algorithm.family(),
            });
        }
        let (valid, backend) = self
            .backend
            .verify_signed(key, algorithm, signed, signature);
        Ok(Verdict {
            valid,
            key_id: key_id.clone(),
            algorithm,
            backend,
        })
    }
}
