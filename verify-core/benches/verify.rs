//! `cargo bench -p verify-core`: verifications/s per backend and key size,
//! and SHA-256 throughput. Keys are the committed test vectors' keys.

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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = verify, sha256
}
criterion_main!(benches);
