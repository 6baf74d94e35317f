//! The pure-Rust backend: the `rsa` crate, RustCrypto's `p256` / `p384` /
//! `p521` ECDSA and `ed25519-dalek`; every algorithm, every key size.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::Verifier as _;
use rsa::{Pkcs1v15Sign, Pss};
use sha2::Digest as _;

use crate::keys::{EcKey, KeyMaterial};
use crate::{Algorithm, Digest, Padding, PublicKey, Scheme, SignatureEncoding};

/// Verifies with the pure-Rust crates. Any failure (bad padding or
/// encoding, wrong length, wrong key, a key of another family) is a `false`
/// verdict: there is nothing else it can mean here.
pub fn verify(key: &PublicKey, algorithm: Algorithm, message: &[u8], signature: &[u8]) -> bool {
    match (key.material(), algorithm.scheme(), algorithm.digest()) {
        (KeyMaterial::Rsa(rsa), Scheme::Rsa(padding), Some(digest)) => {
            verify_rsa(rsa, padding, digest, message, signature)
        }
        (KeyMaterial::Ec(ec), Scheme::Ecdsa(encoding), Some(digest)) => {
            verify_ecdsa(ec, encoding, &hash(digest, message), signature)
        }
        (KeyMaterial::Ed25519(key), Scheme::Ed25519, None) => {
            ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok())
        }
        _ => false,
    }
}

fn verify_rsa(
    rsa: &rsa::RsaPublicKey,
    padding: Padding,
    digest: Digest,
    message: &[u8],
    signature: &[u8],
) -> bool {
    let hashed = hash(digest, message);
    match (padding, digest) {
        (Padding::Pkcs1v15, Digest::Sha256) => {
            rsa.verify(Pkcs1v15Sign::new::<sha2::Sha256>(), &hashed, signature)
        }
        (Padding::Pkcs1v15, Digest::Sha384) => {
            rsa.verify(Pkcs1v15Sign::new::<sha2::Sha384>(), &hashed, signature)
        }
        (Padding::Pkcs1v15, Digest::Sha512) => {
            rsa.verify(Pkcs1v15Sign::new::<sha2::Sha512>(), &hashed, signature)
        }
        (Padding::Pkcs1v15, Digest::Sha1) => {
            rsa.verify(Pkcs1v15Sign::new::<sha1::Sha1>(), &hashed, signature)
        }
        (Padding::Pkcs1v15, Digest::Md5) => {
            rsa.verify(Pkcs1v15Sign::new::<md5::Md5>(), &hashed, signature)
        }
        // `Pss::new` fixes MGF1 to the same digest and the salt length to the
        // digest length, which is exactly what we accept.
        (Padding::Pss, Digest::Sha256) => {
            rsa.verify(Pss::new::<sha2::Sha256>(), &hashed, signature)
        }
        (Padding::Pss, Digest::Sha384) => {
            rsa.verify(Pss::new::<sha2::Sha384>(), &hashed, signature)
        }
        (Padding::Pss, Digest::Sha512) => {
            rsa.verify(Pss::new::<sha2::Sha512>(), &hashed, signature)
        }
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

/// Hashes `message` with `digest`.
pub fn hash(digest: Digest, message: &[u8]) -> Vec<u8> {
    match digest {
        Digest::Md5 => md5::Md5::digest(message).to_vec(),
        Digest::Sha1 => sha1::Sha1::digest(message).to_vec(),
        Digest::Sha256 => sha2::Sha256::digest(message).to_vec(),
        Digest::Sha384 => sha2::Sha384::digest(message).to_vec(),
        Digest::Sha512 => sha2::Sha512::digest(message).to_vec(),
    }
}
