//! The AWS-LC backend: keys parsed once per algorithm at load time.
//!
//! It works on its own form of a key ([`FastKey`], made from the canonical
//! SubjectPublicKeyInfo the key registry hands it); the registry holds one
//! beside each key, and this module knows nothing of the registry.
//!
//! ECDSA is verified with AWS-LC's ASN.1 (DER) parameters for every curve
//! and digest pair; a P1363 (raw r‖s) signature is re-encoded as DER first,
//! since AWS-LC has fixed-length parameters for only some of the pairs.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};

use crate::{Algorithm, Curve, Digest, KeyFamily, Scheme, SignatureEncoding, Signed};

/// The RSA algorithms AWS-LC verifies here. Legacy digests are left to the
/// `rsa` backend on purpose: AWS-LC has no MD5.
const RSA: [(Algorithm, &signature::RsaParameters); 6] = [
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

/// AWS-LC's DER parameters for a curve and digest.
fn ecdsa_params(curve: Curve, digest: Digest) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match (curve, digest) {
        (Curve::P256, Digest::Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
        (Curve::P256, Digest::Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
        (Curve::P256, Digest::Sha512) => &signature::ECDSA_P256_SHA512_ASN1,
        (Curve::P384, Digest::Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
        (Curve::P384, Digest::Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
        (Curve::P384, Digest::Sha512) => &signature::ECDSA_P384_SHA512_ASN1,
        (Curve::P521, Digest::Sha256) => &signature::ECDSA_P521_SHA256_ASN1,
        (Curve::P521, Digest::Sha384) => &signature::ECDSA_P521_SHA384_ASN1,
        (Curve::P521, Digest::Sha512) => &signature::ECDSA_P521_SHA512_ASN1,
        _ => return None,
    })
}

/// One parsed AWS-LC key per algorithm it verifies (none where AWS-LC
/// refuses the key, e.g. RSA under 2048 bits).
pub struct FastKey {
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
    /// The curve of an EC key (to re-encode P1363 signatures).
    curve: Option<Curve>,
}

impl FastKey {
    /// An RSA key of `bits` bits, from its SubjectPublicKeyInfo DER.
    pub(crate) fn rsa(bits: usize, spki: &[u8]) -> Self {
        // AWS-LC parses smaller keys but then refuses every signature under
        // them, so the size range of its parameters is enforced here.
        let parsed = if (2048..=8192).contains(&bits) {
            RSA.iter()
                .filter_map(|(a, params)| Some((*a, ParsedPublicKey::new(*params, spki).ok()?)))
                .collect()
        } else {
            Vec::new()
        };
        FastKey {
            parsed,
            curve: None,
        }
    }

    /// An EC key on `curve`, from its SubjectPublicKeyInfo DER.
    pub(crate) fn ec(curve: Curve, spki: &[u8]) -> Self {
        // Every ECDSA algorithm, both encodings of each digest.
        let parsed = Algorithm::ALL
            .iter()
            .filter(|a| a.family() == KeyFamily::Ec)
            .filter_map(|a| {
                let params = ecdsa_params(curve, a.digest()?)?;
                Some((*a, ParsedPublicKey::new(params, spki).ok()?))
            })
            .collect();
        FastKey {
            parsed,
            curve: Some(curve),
        }
    }

    /// An Ed25519 key, from its 32 bytes.
    pub(crate) fn ed25519(key: &[u8; 32]) -> Self {
        let parsed = ParsedPublicKey::new(&signature::ED25519, key)
            .ok()
            .map(|p| (Algorithm::Ed25519, p))
            .into_iter()
            .collect();
        FastKey {
            parsed,
            curve: None,
        }
    }
}

/// `Some(verdict)` when AWS-LC supports this key and algorithm, else
/// `None`. A digest is checked as it is (AWS-LC's `verify_digest_sig`),
/// and only when it has the algorithm's length; Ed25519 takes a document
/// only.
pub fn verify(
    key: &FastKey,
    algorithm: Algorithm,
    signed: Signed<'_>,
    signature: &[u8],
) -> Option<bool> {
    let (_, parsed) = key.parsed.iter().find(|(a, _)| *a == algorithm)?;
    let der;
    let signature = if algorithm.scheme() == Scheme::Ecdsa(SignatureEncoding::P1363) {
        let Some(encoded) = p1363_to_der(key.curve?, signature) else {
            return Some(false);
        };
        der = encoded;
        &der[..]
    } else {
        signature
    };
    Some(match signed {
        Signed::Document(message) => parsed.verify_sig(message, signature).is_ok(),
        Signed::Digest(given) => {
            let Some(hash) = algorithm.digest().and_then(digest_algorithm) else {
                return Some(false);
            };
            digest::Digest::import_less_safe(given, hash)
                .is_ok_and(|d| parsed.verify_digest_sig(&d, signature).is_ok())
        }
    })
}

/// AWS-LC's form of a digest this backend verifies with.
fn digest_algorithm(digest: Digest) -> Option<&'static digest::Algorithm> {
    Some(match digest {
        Digest::Sha256 => &digest::SHA256,
        Digest::Sha384 => &digest::SHA384,
        Digest::Sha512 => &digest::SHA512,
        Digest::Sha1 | Digest::Md5 => return None,
    })
}

/// A raw r‖s signature as DER; `None` when it is not one (wrong length, r
/// or s zero or not under the curve's order).
fn p1363_to_der(curve: Curve, signature: &[u8]) -> Option<Vec<u8>> {
    Some(match curve {
        Curve::P256 => p256::ecdsa::Signature::from_slice(signature)
            .ok()?
            .to_der()
            .as_bytes()
            .to_vec(),
        Curve::P384 => p384::ecdsa::Signature::from_slice(signature)
            .ok()?
            .to_der()
            .as_bytes()
            .to_vec(),
        Curve::P521 => p521::ecdsa::Signature::from_slice(signature)
            .ok()?
            .to_der()
            .as_bytes()
            .to_vec(),
    })
}
