//! Differential test: the `rsa` and AWS-LC backends give the same verdict on
//! many random (key, message, signature, bit-flip) cases.
#![cfg(feature = "aws-lc")]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey};
use verify_core::backend::{aws_lc, rust};
use verify_core::{Algorithm, Digest, Padding, PublicKey};

fn sign(key: &RsaPrivateKey, algorithm: Algorithm, message: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let hashed = rust::hash(algorithm.digest(), message);
    match (algorithm.padding(), algorithm.digest()) {
        (Padding::Pkcs1v15, Digest::Sha256) => {
            key.sign(Pkcs1v15Sign::new::<sha2::Sha256>(), &hashed)
        }
        (Padding::Pkcs1v15, Digest::Sha384) => {
            key.sign(Pkcs1v15Sign::new::<sha2::Sha384>(), &hashed)
        }
        (Padding::Pkcs1v15, Digest::Sha512) => {
            key.sign(Pkcs1v15Sign::new::<sha2::Sha512>(), &hashed)
        }
        (Padding::Pss, Digest::Sha256) => {
            key.sign_with_rng(rng, Pss::new::<sha2::Sha256>(), &hashed)
        }
        (Padding::Pss, Digest::Sha384) => {
            key.sign_with_rng(rng, Pss::new::<sha2::Sha384>(), &hashed)
        }
        (Padding::Pss, Digest::Sha512) => {
            key.sign_with_rng(rng, Pss::new::<sha2::Sha512>(), &hashed)
        }
        other => panic!("not a fast-backend algorithm: {other:?}"),
    }
    .unwrap()
}

#[test]
fn both_backends_agree_on_random_cases() {
    let mut rng = StdRng::seed_from_u64(0x5eed_2026);
    let keys: Vec<RsaPrivateKey> = [2048, 2048, 3072]
        .into_iter()
        .map(|bits| RsaPrivateKey::new(&mut rng, bits).unwrap())
        .collect();
    let publics: Vec<PublicKey> = keys
        .iter()
        .map(|k| PublicKey::from_rsa(k.to_public_key()))
        .collect();
    let fast_algorithms: Vec<Algorithm> = Algorithm::ALL
        .into_iter()
        .filter(|a| !a.is_legacy())
        .collect();

    let (mut valid, mut invalid) = (0, 0);
    for case in 0..600 {
        let k = rng.gen_range(0..keys.len());
        let algorithm = fast_algorithms[rng.gen_range(0..fast_algorithms.len())];
        let len = rng.gen_range(0..4096);
        let mut message: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let mut signature = sign(&keys[k], algorithm, &message, &mut rng);
        // Which key verifies, and what is damaged: a third of the cases each.
        let mut verify_with = k;
        match case % 6 {
            0 | 1 => {}
            2 if !message.is_empty() => {
                let i = rng.gen_range(0..message.len());
                message[i] ^= 1 << rng.gen_range(0..8);
            }
            3 => {
                let i = rng.gen_range(0..signature.len());
                signature[i] ^= 1 << rng.gen_range(0..8);
            }
            4 => verify_with = (k + 1) % keys.len(),
            _ => signature = (0..signature.len()).map(|_| rng.gen()).collect(),
        }
        let key = &publics[verify_with];
        let reference = rust::verify(key, algorithm, &message, &signature);
        let fast = aws_lc::verify(key.fast(), algorithm, &message, &signature)
            .expect("AWS-LC supports >= 2048-bit keys with SHA-2");
        assert_eq!(
            reference, fast,
            "case {case}: {algorithm}, key {verify_with}, len {len}"
        );
        if reference {
            valid += 1
        } else {
            invalid += 1
        }
    }
    // Both kinds of verdict were exercised, not just one.
    assert!(
        valid > 150 && invalid > 150,
        "valid {valid}, invalid {invalid}"
    );
}
