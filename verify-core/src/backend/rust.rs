//! The `rsa` crate backend: pure Rust, every algorithm, every key size.

use rsa::{Pkcs1v15Sign, Pss};
use sha2::Digest as _;

use crate::{Algorithm, Digest, Padding, PublicKey};

/// Verifies with the `rsa` crate. Any failure (bad padding, wrong length,
/// wrong key) is a `false` verdict: there is nothing else it can mean here.
pub fn verify(key: &PublicKey, algorithm: Algorithm, message: &[u8], signature: &[u8]) -> bool {
    let digest = algorithm.digest();
    let hashed = hash(digest, message);
    let scheme = algorithm.padding();
    let rsa = key.rsa();
    match (scheme, digest) {
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
