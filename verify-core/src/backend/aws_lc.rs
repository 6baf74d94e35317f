//! The AWS-LC backend: keys parsed once per algorithm at load time.
//!
//! It works on its own form of a key ([`FastKey`], made from the `rsa`
//! crate's); the key registry holds one beside each key, and this module
//! knows nothing of the registry.

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters};
use rsa::pkcs8::EncodePublicKey;

use crate::Algorithm;

/// The algorithms AWS-LC verifies here, in the order of [`FastKey::parsed`].
/// Legacy digests are left to the `rsa` backend on purpose: AWS-LC has no MD5.
const FAST: [(Algorithm, &RsaParameters); 6] = [
    (
        Algorithm::Sha256WithRsa,
        &signature::RSA_PKCS1_2048_8192_SHA256,
    ),
    (
        Algorithm::Sha384WithRsa,
        &signature::RSA_PKCS1_2048_8192_SHA384,
    ),
    (
        Algorithm::Sha512WithRsa,
        &signature::RSA_PKCS1_2048_8192_SHA512,
    ),
    (
        Algorithm::Sha256WithRsaPss,
        &signature::RSA_PSS_2048_8192_SHA256,
    ),
    (
        Algorithm::Sha384WithRsaPss,
        &signature::RSA_PSS_2048_8192_SHA384,
    ),
    (
        Algorithm::Sha512WithRsaPss,
        &signature::RSA_PSS_2048_8192_SHA512,
    ),
];

/// One parsed AWS-LC key per supported algorithm (`None` where AWS-LC refuses
/// the key, e.g. under 2048 bits).
pub struct FastKey {
    parsed: [Option<ParsedPublicKey>; 6],
}

impl FastKey {
    pub(crate) fn new(rsa: &rsa::RsaPublicKey) -> Self {
        // AWS-LC parses smaller keys but then refuses every signature under
        // them, so the size range of its parameters is enforced here.
        let bits = rsa::traits::PublicKeyParts::n(rsa).bits();
        if !(2048..=8192).contains(&bits) {
            return FastKey {
                parsed: Default::default(),
            };
        }
        let der = rsa
            .to_public_key_der()
            .map(|d| d.into_vec())
            .unwrap_or_default();
        FastKey {
            parsed: FAST.map(|(_, params)| ParsedPublicKey::new(params, &der).ok()),
        }
    }
}

/// `Some(verdict)` when AWS-LC supports this key and algorithm, else `None`.
pub fn verify(
    key: &FastKey,
    algorithm: Algorithm,
    message: &[u8],
    signature: &[u8],
) -> Option<bool> {
    let slot = FAST.iter().position(|(a, _)| *a == algorithm)?;
    let parsed = key.parsed[slot].as_ref()?;
    Some(parsed.verify_sig(message, signature).is_ok())
}
