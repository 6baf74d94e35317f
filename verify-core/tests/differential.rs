//! Differential test: the pure-Rust and AWS-LC backends give the same
//! verdict on many random (key, algorithm, message, damage) cases, over RSA,
//! ECDSA on P-256 / P-384 / P-521 (DER and P1363) and Ed25519.
#![cfg(feature = "aws-lc")]

use p256::ecdsa::signature::hazmat::RandomizedPrehashSigner;
use p256::ecdsa::signature::Signer as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rsa::pkcs8::EncodePublicKey;
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey};
use verify_core::backend::{aws_lc, rust};
use verify_core::{
    Algorithm, Digest, KeyFamily, Padding, PublicKey, Scheme, SignatureEncoding, Signed,
};

/// A private key of any family served, to sign test cases with.
enum Signer {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// Signs an ECDSA prehash (left-padded to the field when shorter, as the
/// verifiers read it) and encodes it; `high_s` flips s to n - s.
macro_rules! ecdsa_sign {
    ($curve:ident, $key:expr, $prehash:expr, $encoding:expr, $high_s:expr, $field:expr, $rng:expr) => {{
        let mut prehash = $prehash.to_vec();
        if prehash.len() < $field {
            let mut padded = vec![0u8; $field - prehash.len()];
            padded.extend_from_slice(&prehash);
            prehash = padded;
        }
        let sig: $curve::ecdsa::Signature = $key.sign_prehash_with_rng($rng, &prehash).unwrap();
        let sig = if $high_s {
            $curve::ecdsa::Signature::from_scalars(sig.r(), -sig.s()).unwrap()
        } else {
            sig
        };
        match $encoding {
            SignatureEncoding::Der => sig.to_der().as_bytes().to_vec(),
            SignatureEncoding::P1363 => sig.to_bytes().to_vec(),
        }
    }};
}

impl Signer {
    fn family(&self) -> KeyFamily {
        match self {
            Signer::Rsa(_) => KeyFamily::Rsa,
            Signer::Ed25519(_) => KeyFamily::Ed25519,
            _ => KeyFamily::Ec,
        }
    }

    fn public(&self) -> PublicKey {
        let spki = match self {
            Signer::Rsa(k) => return PublicKey::from_rsa(k.to_public_key()),
            Signer::P256(k) => p256::PublicKey::from(k.verifying_key()).to_public_key_der(),
            Signer::P384(k) => p384::PublicKey::from(k.verifying_key()).to_public_key_der(),
            Signer::P521(k) => {
                p521::PublicKey::from_affine(*p521::ecdsa::VerifyingKey::from(k).as_affine())
                    .unwrap()
                    .to_public_key_der()
            }
            Signer::Ed25519(k) => k.verifying_key().to_public_key_der(),
        };
        PublicKey::parse(spki.unwrap().as_bytes()).unwrap()
    }

    /// A valid signature (high-S for ECDSA when asked; ignored elsewhere).
    fn sign(
        &self,
        algorithm: Algorithm,
        message: &[u8],
        high_s: bool,
        rng: &mut StdRng,
    ) -> Vec<u8> {
        let digest = algorithm.digest();
        match (self, algorithm.scheme()) {
            (Signer::Rsa(key), Scheme::Rsa(padding)) => {
                let hashed = digest.unwrap().hash(message);
                match (padding, digest.unwrap()) {
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
            (Signer::P256(key), Scheme::Ecdsa(encoding)) => {
                let prehash = digest.unwrap().hash(message);
                ecdsa_sign!(p256, key, prehash, encoding, high_s, 32, rng)
            }
            (Signer::P384(key), Scheme::Ecdsa(encoding)) => {
                let prehash = digest.unwrap().hash(message);
                ecdsa_sign!(p384, key, prehash, encoding, high_s, 48, rng)
            }
            (Signer::P521(key), Scheme::Ecdsa(encoding)) => {
                let prehash = digest.unwrap().hash(message);
                ecdsa_sign!(p521, key, prehash, encoding, high_s, 66, rng)
            }
            (Signer::Ed25519(key), Scheme::Ed25519) => key.sign(message).to_bytes().to_vec(),
            _ => panic!("{algorithm} does not fit this key"),
        }
    }
}

#[test]
fn both_backends_agree_on_random_cases() {
    let mut rng = StdRng::seed_from_u64(0x5eed_2026);
    let signers: Vec<Signer> = vec![
        Signer::Rsa(Box::new(RsaPrivateKey::new(&mut rng, 2048).unwrap())),
        Signer::Rsa(Box::new(RsaPrivateKey::new(&mut rng, 3072).unwrap())),
        Signer::P256(p256::ecdsa::SigningKey::random(&mut rng)),
        Signer::P256(p256::ecdsa::SigningKey::random(&mut rng)),
        Signer::P384(p384::ecdsa::SigningKey::random(&mut rng)),
        Signer::P521(p521::ecdsa::SigningKey::random(&mut rng)),
        Signer::Ed25519(ed25519_dalek::SigningKey::from_bytes(&rng.gen())),
        Signer::Ed25519(ed25519_dalek::SigningKey::from_bytes(&rng.gen())),
    ];
    let publics: Vec<PublicKey> = signers.iter().map(Signer::public).collect();
    let fast_algorithms: Vec<Algorithm> = Algorithm::ALL
        .into_iter()
        .filter(|a| !a.is_legacy())
        .collect();

    let (mut valid, mut invalid) = (0, 0);
    let mut high_s_valid = 0;
    for case in 0..1500 {
        let algorithm = fast_algorithms[rng.gen_range(0..fast_algorithms.len())];
        let fitting: Vec<usize> = (0..signers.len())
            .filter(|&i| signers[i].family() == algorithm.family())
            .collect();
        let k = fitting[rng.gen_range(0..fitting.len())];
        let len = rng.gen_range(0..4096);
        let mut message: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let damage = case % 9;
        let mut signature = signers[k].sign(algorithm, &message, damage == 6, &mut rng);
        // Which key verifies, and what is damaged.
        let mut verify_with = k;
        match damage {
            2 if !message.is_empty() => {
                let i = rng.gen_range(0..message.len());
                message[i] ^= 1 << rng.gen_range(0..8);
            }
            3 => {
                let i = rng.gen_range(0..signature.len());
                signature[i] ^= 1 << rng.gen_range(0..8);
            }
            // Another key of the family (for EC, maybe on another curve).
            4 => {
                verify_with =
                    fitting[(fitting.iter().position(|&i| i == k).unwrap() + 1) % fitting.len()]
            }
            5 => signature = (0..signature.len()).map(|_| rng.gen()).collect(),
            // 6: a high-S signature, which is valid.
            7 => {
                signature.pop();
            }
            8 => signature.push(0),
            _ => {}
        }
        let key = &publics[verify_with];
        let reference = rust::verify(key, algorithm, Signed::Document(&message), &signature);
        let fast = aws_lc::verify(
            key.fast(),
            algorithm,
            Signed::Document(&message),
            &signature,
        )
        .expect("AWS-LC serves every non-legacy algorithm on these keys");
        assert_eq!(
            reference, fast,
            "case {case}: {algorithm}, key {verify_with}, len {len}, damage {damage}"
        );
        if reference {
            valid += 1;
            if damage == 6 && algorithm.family() == KeyFamily::Ec {
                high_s_valid += 1;
            }
        } else {
            invalid += 1
        }
    }
    // Both kinds of verdict were exercised, not just one.
    assert!(
        valid > 400 && invalid > 400,
        "valid {valid}, invalid {invalid}"
    );
    assert!(
        high_s_valid > 20,
        "high-S ECDSA valid only {high_s_valid} times"
    );
}

/// A signature in one encoding sent under the other name, and a key of
/// another family, are `false` from both backends (never a panic).
#[test]
fn encodings_and_families_do_not_cross() {
    let mut rng = StdRng::seed_from_u64(7);
    let p256 = Signer::P256(p256::ecdsa::SigningKey::random(&mut rng));
    let ed = Signer::Ed25519(ed25519_dalek::SigningKey::from_bytes(&rng.gen()));
    let message = b"a document";
    let der = p256.sign(Algorithm::Sha256WithEcdsa, message, false, &mut rng);
    let raw = p256.sign(Algorithm::Sha256WithEcdsaP1363, message, false, &mut rng);
    let key = p256.public();
    for (algorithm, signature, expected) in [
        (Algorithm::Sha256WithEcdsa, &der, true),
        (Algorithm::Sha256WithEcdsaP1363, &raw, true),
        (Algorithm::Sha256WithEcdsa, &raw, false),
        (Algorithm::Sha256WithEcdsaP1363, &der, false),
        (Algorithm::Sha384WithEcdsa, &der, false),
        (Algorithm::Sha256WithRsa, &der, false),
        (Algorithm::Ed25519, &raw, false),
    ] {
        assert_eq!(
            rust::verify(&key, algorithm, Signed::Document(message), signature),
            expected,
            "{algorithm}"
        );
        let fast = aws_lc::verify(key.fast(), algorithm, Signed::Document(message), signature)
            .unwrap_or(false);
        assert_eq!(fast, expected, "{algorithm} (aws-lc)");
    }
    let ed_sig = ed.sign(Algorithm::Ed25519, message, false, &mut rng);
    let ed_key = ed.public();
    assert!(rust::verify(
        &ed_key,
        Algorithm::Ed25519,
        Signed::Document(message),
        &ed_sig
    ));
    for bad in [
        &ed_sig[..63],
        &[ed_sig.as_slice(), &[0]].concat()[..],
        &[][..],
    ] {
        assert!(!rust::verify(
            &ed_key,
            Algorithm::Ed25519,
            Signed::Document(message),
            bad
        ));
        assert_eq!(
            aws_lc::verify(
                ed_key.fast(),
                Algorithm::Ed25519,
                Signed::Document(message),
                bad
            ),
            Some(false)
        );
    }
}
