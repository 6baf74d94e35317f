//! The pure-Rust backend: the `rsa` crate, RustCrypto's `p256` / `p384` /
//! `p521` ECDSA and `ed25519-dalek`; every algorithm, every key size.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::Verifier as _;
use rsa::{Pkcs1v15Sign, Pss};

use crate::keys::{EcKey, KeyMaterial};
use crate::{Algorithm, Digest, Padding, PublicKey, Scheme, SignatureEncoding, Signed};

/// Verifies with the pure-Rust crates. Any failure (bad padding or
/// encoding, wrong length, wrong key, a key of another family, a digest
/// that is not the algorithm's) is a `false` verdict: there is nothing else
/// it can mean here.
pub fn verify(key: &PublicKey, algorithm: Algorithm, signed: Signed<'_>, signature: &[u8]) -> bool {
    match (key.material(), algorithm.scheme(), algorithm.digest()) {
        (KeyMaterial::Rsa(rsa), Scheme::Rsa(padding), Some(digest)) => signed
            .digest_for(algorithm)
            .is_some_and(|hashed| verify_rsa(rsa, padding, digest, &hashed, signature)),
        (KeyMaterial::Ec(ec), Scheme::Ecdsa(encoding), Some(_)) => signed
            .digest_for(algorithm)
            .is_some_and(|hashed| verify_ecdsa(ec, encoding, &hashed, signature)),
        (KeyMaterial::Ed25519(key), Scheme::Ed25519, None) => match signed {
            Signed::Document(message) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
            Signed::Digest(_) => false,
        },
        _ => false,
    }
}

/// RSA over `hashed`, the document's `digest`.
fn verify_rsa(
    rsa: &rsa::RsaPublicKey,
    padding: Padding,
    digest: Digest,
    hashed: &[u8],
    signature: &[u8],
) -> bool {
    match (padding, digest) {
        (Padding::Pkcs1v15, Digest::Sha256) => {
            rsa.verify(Pkcs1v15Sign::new::<sha2::Sha256>(), hashed, signature)
        }
        (Padding::Pkcs1v15, Digest::Sha384) => {
            rsa.verify(Pkcs1v15Sign::new::<sha2::Sha384>(), hashed, signature)
        }
        (Padding::Pkcs1v15, Digest::Sha512) => {
            rsa.verify(Pkcs1v15Sign::new::<sha2::Sha512>(), hashed, signature)
        }
        (Padding::Pkcs1v15, Digest::Sha1) => {
            rsa.verify(Pkcs1v15Sign::new::<sha1::Sha1>(), hashed, signature)
        }
        (Padding::Pkcs1v15, Digest::Md5) => {
            rsa.verify(Pkcs1v15Sign::new::<md5::Md5>(), hashed, signature)
        }
        // `Pss::new` fixes MGF1 to the same digest and the salt length to the
        // digest length, which is exactly what we accept.
        (Padding::Pss, Digest::Sha256) => rsa.verify(Pss::new::<sha2::Sha256>(), hashed, signature),
        (Padding::Pss, Digest::Sha384) => rsa.verify(Pss::new::<sha2::Sha384>(), hashed, signature),
        (Padding::Pss, Digest::Sha512) => rsa.verify(Pss::new::<sha2::Sha512>(), hashed, signature),
        (Padding::Pss, Digest::Sha1 | Digest::Md5) => return false,
    }
    .is_ok()
}

/// ECDSA over a digest of any length, as Java and OpenSSL verify it: a
/// digest longer than the curve's order is truncated to its leftmost bits
/// (RustCrypto does that), a shorter one is read as a smaller number, which
/// is left-padding it with zeros (done here: RustCrypto refuses a digest
/// under half the field, e.g. SHA-256 on P-521). High-S signatures verify.
fn verify_ecdsa(ec: &EcKey, encoding: SignatureEncoding, prehash: &[u8], signature: &[u8]) -> bool {
    let field = ec.curve().field_len();
    let padded;
    let prehash = if prehash.len() < field {
        let mut buf = vec![0u8; field];
        buf[field - prehash.len()..].copy_from_slice(prehash);
        padded = buf;
        &padded[..]
    } else {
        prehash
    };
    macro_rules! check {
        ($curve:ident, $key:expr) => {{
            let sig = match encoding {
                SignatureEncoding::Der => $curve::ecdsa::Signature::from_der(signature),
                SignatureEncoding::P1363 => $curve::ecdsa::Signature::from_slice(signature),
            };
            sig.is_ok_and(|sig| $key.verify_prehash(prehash, &sig).is_ok())
        }};
    }
    match ec {
        EcKey::P256(key) => check!(p256, key),
        EcKey::P384(key) => check!(p384, key),
        EcKey::P521(key) => check!(p521, key),
    }
}
