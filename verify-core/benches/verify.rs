//! `cargo bench -p verify-core`: verifications/s per backend and key size
//! (RSA), per curve (ECDSA) and for Ed25519, SHA-256 throughput, and a
//! request's hex signature and wire form (what the gateway writes and the
//! worker reads per request). Keys are the committed test vectors' keys.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::Digest as _;
use verify_core::{Algorithm, Backend, PublicKey};

/// The service's reference document size (the load tests use the same).
const DOC_LEN: usize = 2900;

fn key(bits: u32) -> RsaPrivateKey {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/vectors/private/k{bits}.pk8.der"));
    RsaPrivateKey::from_pkcs8_der(&std::fs::read(path).unwrap()).unwrap()
}

fn verify(c: &mut Criterion) {
    let document: Vec<u8> = (0..DOC_LEN).map(|i| (i * 7) as u8).collect();
    let mut group = c.benchmark_group("verify SHA256withRSA 2900B");
    group.throughput(Throughput::Elements(1));
    for bits in [2048, 3072, 4096] {
        let private = key(bits);
        let hashed = sha2::Sha256::digest(&document);
        let signature = private
            .sign(Pkcs1v15Sign::new::<sha2::Sha256>(), &hashed)
            .unwrap();
        let public = PublicKey::from_rsa(private.to_public_key());
        for backend in [Backend::Fast, Backend::Rust] {
            assert!(
                backend
                    .verify(&public, Algorithm::Sha256WithRsa, &document, &signature)
                    .0
            );
            group.bench_with_input(
                BenchmarkId::new(backend.to_string(), bits),
                &bits,
                |b, _| {
                    b.iter(|| {
                        backend.verify(
                            black_box(&public),
                            Algorithm::Sha256WithRsa,
                            black_box(&document),
                            black_box(&signature),
                        )
                    })
                },
            );
        }
    }
    group.finish();
}

/// A committed vector private key's PKCS#8 DER.
fn private_der(name: &str) -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/vectors/private/{name}.pk8.der"));
    std::fs::read(path).unwrap()
}

/// ECDSA on each curve with its own digest (DER), and Ed25519.
fn verify_modern(c: &mut Criterion) {
    use p256::ecdsa::signature::{RandomizedSigner, Signer};
    use p256::pkcs8::DecodePrivateKey;
    use rand::SeedableRng;

    let document: Vec<u8> = (0..DOC_LEN).map(|i| (i * 7) as u8).collect();
    let p256 = p256::ecdsa::SigningKey::from_pkcs8_der(&private_der("ec256")).unwrap();
    let p384 = p384::ecdsa::SigningKey::from_pkcs8_der(&private_der("ec384")).unwrap();
    let p521_secret = p521::SecretKey::from_pkcs8_der(&private_der("ec521")).unwrap();
    let p521 = p521::ecdsa::SigningKey::from_bytes(&p521_secret.to_bytes()).unwrap();
    let ed = ed25519_dalek::SigningKey::from_pkcs8_der(&private_der("ed25519")).unwrap();
    let public = |file: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors/keys")
            .join(file);
        PublicKey::parse(&std::fs::read(path).unwrap()).unwrap()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let p256_sig: p256::ecdsa::Signature = p256.sign(&document);
    let p384_sig: p384::ecdsa::Signature = p384.sign(&document);
    let p521_sig: p521::ecdsa::Signature = p521.sign_with_rng(&mut rng, &document);
    let cases = [
        (
            "P-256 SHA256withECDSA",
            public("ec256.pem"),
            Algorithm::Sha256WithEcdsa,
            p256_sig.to_der().as_bytes().to_vec(),
        ),
        (
            "P-384 SHA384withECDSA",
            public("ec384.der"),
            Algorithm::Sha384WithEcdsa,
            p384_sig.to_der().as_bytes().to_vec(),
        ),
        (
            "P-521 SHA512withECDSA",
            public("ec521.crt"),
            Algorithm::Sha512WithEcdsa,
            p521_sig.to_der().as_bytes().to_vec(),
        ),
        (
            "Ed25519",
            public("ed25519.pem"),
            Algorithm::Ed25519,
            ed.sign(&document).to_bytes().to_vec(),
        ),
    ];
    let mut group = c.benchmark_group("verify 2900B");
    group.throughput(Throughput::Elements(1));
    for (name, public, algorithm, signature) in &cases {
        for backend in [Backend::Fast, Backend::Rust] {
            assert!(backend.verify(public, *algorithm, &document, signature).0);
            group.bench_with_input(BenchmarkId::new(backend.to_string(), name), name, |b, _| {
                b.iter(|| {
                    backend.verify(
                        black_box(public),
                        *algorithm,
                        black_box(&document),
                        black_box(signature),
                    )
                })
            });
        }
    }
    group.finish();
}

fn sha256(c: &mut Criterion) {
    let mut group = c.benchmark_group("sha256");
    for len in [4 << 10, 1 << 20] {
        let data = vec![0x5au8; len];
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("sha2", len), &data, |b, d| {
            b.iter(|| sha2::Sha256::digest(black_box(d)))
        });
        #[cfg(feature = "aws-lc")]
        group.bench_with_input(BenchmarkId::new("aws-lc", len), &data, |b, d| {
            b.iter(|| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, black_box(d)))
        });
    }
    group.finish();
}

fn wire(c: &mut Criterion) {
    let signature: Vec<u8> = (0..=255u8).collect();
    let text = hex::encode(&signature);
    let mut group = c.benchmark_group("hex 256B signature");
    group.bench_function("hex::decode", |b| b.iter(|| hex::decode(black_box(&text))));
    group.bench_function("hex_text::decode", |b| {
        b.iter(|| verify_core::hex_text::decode(black_box(&text)))
    });
    group.bench_function("hex::encode", |b| {
        b.iter(|| hex::encode(black_box(&signature)))
    });
    group.bench_function("hex_text::encode", |b| {
        b.iter(|| verify_core::hex_text::encode(black_box(&signature)))
    });
    group.finish();

    let request = verify_core::VerifyRequest {
        v: verify_core::SCHEMA_VERSION,
        id: verify_core::RequestId::new(),
        payload: verify_core::Payload::Document(vec![b'a'; DOC_LEN]),
        signature,
        algorithm: Algorithm::DEFAULT,
        key_id: None,
        submitted_at_ms: 1_800_000_000_000,
        traceparent: None,
    }
    .digested();
    let encoded = serde_json::to_vec(&request).unwrap();
    let mut group = c.benchmark_group("request in digest form");
    group.bench_function("encode", |b| {
        b.iter(|| serde_json::to_vec(black_box(&request)))
    });
    group.bench_function("decode", |b| {
        b.iter(|| serde_json::from_slice::<verify_core::VerifyRequest>(black_box(&encoded)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = verify, verify_modern, sha256, wire
}
criterion_main!(benches);
