//! Known-answer vectors made by the openssl CLI and by Java's
//! java.security.Signature (see tests/vectors/make_vectors.sh for RSA,
//! vectors.tsv, and make_modern_vectors.sh for ECDSA and Ed25519,
//! modern.tsv), checked with both backends, plus their tampered variants.

use std::path::{Path, PathBuf};

use verify_core::backend::{self, Backend};
use verify_core::{
    Algorithm, KeyFamily, KeyId, KeyLoadError, KeyParseError, KeyRegistry, PublicKey, Signed,
    Verdict, Verifier, VerifyError, DEFAULT_MIN_RSA_BITS,
};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// The 1 MiB document is not committed; it is this pattern (as the script writes it).
fn document(name: &str) -> Vec<u8> {
    if name == "big.bin" {
        return (0..1usize << 20).map(|i| (i % 251) as u8).collect();
    }
    std::fs::read(vectors_dir().join("docs").join(name)).expect("vector document")
}

struct Vector {
    source: String,
    key: KeyId,
    algorithm: Algorithm,
    document: String,
    signature: Vec<u8>,
    valid: bool,
}

fn vectors() -> Vec<Vector> {
    let read = |name: &str| std::fs::read_to_string(vectors_dir().join(name)).unwrap();
    let text = [read("vectors.tsv"), read("modern.tsv")];
    text.iter()
        .flat_map(|t| t.lines().skip(1))
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Vector {
                source: f[0].to_owned(),
                key: KeyId::new(f[1]),
                algorithm: Algorithm::parse(f[2]).unwrap_or_else(|| panic!("algorithm {}", f[2])),
                document: f[3].to_owned(),
                signature: hex::decode(f[4]).unwrap(),
                valid: f[5] == "true",
            }
        })
        .collect()
}

/// The vector keys, with the minimum lowered to 1024 bits: they
/// deliberately include a legacy 1024-bit key (`k1024`).
/// Verifies vector `v`'s document and signature under `key`.
fn verify(verifier: &Verifier, v: &Vector, key: &KeyId) -> Result<Verdict, VerifyError> {
    verifier.verify(Some(key), v.algorithm, &document(&v.document), &v.signature)
}

fn registry() -> KeyRegistry {
    KeyRegistry::load_dir(&vectors_dir().join("keys"), 1024).expect("vector keys load")
}

#[test]
fn every_vector_gets_its_expected_verdict_from_both_backends() {
    let keys = registry();
    let all = vectors();
    assert!(all.len() > 500, "only {} vectors", all.len());
    for source in ["openssl", "java"] {
        for algorithm in Algorithm::ALL {
            assert!(
                all.iter()
                    .any(|v| v.source == source && v.algorithm == algorithm),
                "no {source} vector for {algorithm}"
            );
        }
    }
    let docs: std::collections::HashMap<String, Vec<u8>> =
        ["text.txt", "empty.bin", "big.bin", "tampered.txt"]
            .iter()
            .map(|d| (d.to_string(), document(d)))
            .collect();
    for v in &all {
        let key = keys.get(&v.key).unwrap();
        let doc = &docs[&v.document];
        for backend in [Backend::Fast, Backend::Rust] {
            let (valid, _) = backend.verify(key, v.algorithm, doc, &v.signature);
            assert_eq!(
                valid, v.valid,
                "{backend} on {} {} {} {}",
                v.source, v.key, v.algorithm, v.document
            );
        }
    }
}

/// The digest form (what a gateway sends for RSA and ECDSA): every vector
/// gets the verdict its document gets, on both backends and through the
/// AWS-LC digest path; a digest altered, cut short, or of another hash is
/// invalid; Ed25519 never verifies a digest.
#[test]
fn every_vector_gets_the_same_verdict_from_its_documents_digest() {
    let keys = registry();
    let mut checked = 0;
    for v in vectors() {
        let key = keys.get(&v.key).unwrap();
        let doc = document(&v.document);
        let Some(digest) = v.algorithm.digest() else {
            let sha512 = verify_core::Digest::Sha512.hash(&doc);
            for backend in [Backend::Fast, Backend::Rust] {
                let (valid, _) =
                    backend.verify_signed(key, v.algorithm, Signed::Digest(&sha512), &v.signature);
                assert!(!valid, "{backend} took a digest for {}", v.algorithm);
            }
            continue;
        };
        let hashed = digest.hash(&doc);
        let mut altered = hashed.clone();
        altered[0] ^= 0x01;
        let other_hash = if digest == verify_core::Digest::Sha256 {
            verify_core::Digest::Sha384.hash(&doc)
        } else {
            verify_core::Digest::Sha256.hash(&doc)
        };
        for backend in [Backend::Fast, Backend::Rust] {
            let ctx = format!(
                "{backend} on {} {} {} {}",
                v.source, v.key, v.algorithm, v.document
            );
            let check = |signed| backend.verify_signed(key, v.algorithm, signed, &v.signature);
            let (valid, used) = check(Signed::Digest(&hashed));
            assert_eq!(valid, v.valid, "{ctx}");
            assert_eq!(
                used,
                backend.verify(key, v.algorithm, &doc, &v.signature).1,
                "{ctx}"
            );
            for bad in [&altered[..], &hashed[..hashed.len() - 1], &other_hash[..]] {
                assert!(!check(Signed::Digest(bad)).0, "{ctx}: {}", hex::encode(bad));
            }
        }
        checked += 1;
    }
    assert!(checked > 400, "only {checked} digest-form vectors");
}

#[test]
fn tampering_wrong_keys_and_wrong_algorithms_are_invalid_verdicts() {
    let keys = registry();
    let other = keys.get(&KeyId::new("other")).unwrap();
    for v in vectors()
        .iter()
        .filter(|v| v.valid && v.document != "big.bin")
    {
        let key = keys.get(&v.key).unwrap();
        let doc = document(&v.document);

        let mut tampered_doc = doc.clone();
        match tampered_doc.first_mut() {
            Some(b) => *b ^= 0x01,
            None => tampered_doc.push(0),
        }
        let mut tampered_sig = v.signature.clone();
        let mid = tampered_sig.len() / 2;
        tampered_sig[mid] ^= 0x80;
        let short_sig = &v.signature[1..];
        let wrong_alg = if v.algorithm == Algorithm::Sha256WithRsa {
            Algorithm::Sha256WithRsaPss
        } else {
            Algorithm::Sha256WithRsa
        };

        for backend in [Backend::Fast, Backend::Rust] {
            let ctx = format!("{backend} {} {} {}", v.source, v.key, v.algorithm);
            assert!(
                !backend
                    .verify(key, v.algorithm, &tampered_doc, &v.signature)
                    .0,
                "doc {ctx}"
            );
            assert!(
                !backend.verify(key, v.algorithm, &doc, &tampered_sig).0,
                "sig {ctx}"
            );
            assert!(
                !backend.verify(key, v.algorithm, &doc, short_sig).0,
                "length {ctx}"
            );
            assert!(
                !backend.verify(other, v.algorithm, &doc, &v.signature).0,
                "key {ctx}"
            );
            assert!(
                !backend.verify(key, wrong_alg, &doc, &v.signature).0,
                "alg {ctx}"
            );
        }
    }
}

#[test]
fn legacy_algorithms_are_refused_unless_enabled() {
    let v = vectors()
        .into_iter()
        .find(|v| v.algorithm == Algorithm::Md5WithRsa && v.document == "text.txt")
        .unwrap();
    let doc = document(&v.document);

    let strict = Verifier::new(registry(), Backend::Fast, false);
    assert_eq!(
        strict.verify(Some(&v.key), v.algorithm, &doc, &v.signature),
        Err(VerifyError::AlgorithmDisabled(Algorithm::Md5WithRsa))
    );
    assert_eq!(
        strict
            .verify(Some(&v.key), v.algorithm, &doc, &v.signature)
            .unwrap_err()
            .code(),
        "algorithm_disabled"
    );

    let legacy = Verifier::new(registry(), Backend::Fast, true);
    let verdict = legacy
        .verify(Some(&v.key), v.algorithm, &doc, &v.signature)
        .unwrap();
    assert!(verdict.valid);
    assert_eq!(
        verdict.backend,
        verify_core::Used::Rust,
        "MD5 is the rsa backend's"
    );
}

#[test]
fn fast_backend_serves_2048_bit_and_larger_sha2_and_rsa_serves_the_rest() {
    let verifier = Verifier::new(registry(), Backend::Fast, true);
    for v in vectors()
        .iter()
        .filter(|v| v.document == "text.txt" && v.source == "java")
    {
        let verdict = verify(&verifier, v, &v.key).unwrap();
        assert!(verdict.valid);
        let fast =
            cfg!(feature = "aws-lc") && !v.algorithm.is_legacy() && v.key.as_str() != "k1024";
        let expected = if fast {
            verify_core::Used::AwsLc
        } else {
            verify_core::Used::Rust
        };
        assert_eq!(verdict.backend, expected, "{} {}", v.key, v.algorithm);
    }
}

#[test]
fn unknown_keys_and_key_resolution() {
    let verifier = Verifier::new(registry(), Backend::Fast, false);
    let err = verifier
        .verify(Some(&KeyId::new("nope")), Algorithm::DEFAULT, b"x", b"y")
        .unwrap_err();
    assert_eq!(err, VerifyError::UnknownKey(KeyId::new("nope")));
    assert_eq!(err.code(), "unknown_key");
    // Several keys and none called "default": a request must name one.
    assert_eq!(
        verifier
            .verify(None, Algorithm::DEFAULT, b"x", b"y")
            .unwrap_err(),
        VerifyError::NoDefaultKey
    );

    // Exactly one key: it is the default.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        vectors_dir().join("keys/k2048.pem"),
        dir.path().join("solo.pem"),
    )
    .unwrap();
    let solo = KeyRegistry::load_dir(dir.path(), DEFAULT_MIN_RSA_BITS).unwrap();
    assert_eq!(solo.resolve(None).unwrap().0.as_str(), "solo");

    // A key named "default" wins when there are several.
    std::fs::copy(
        vectors_dir().join("keys/other.pem"),
        dir.path().join("default.pem"),
    )
    .unwrap();
    let two = KeyRegistry::load_dir(dir.path(), DEFAULT_MIN_RSA_BITS).unwrap();
    assert_eq!(two.resolve(None).unwrap().0.as_str(), "default");
}

#[test]
fn every_format_of_one_key_loads_to_the_same_key() {
    let dir = vectors_dir().join("formats");
    let mut loaded = Vec::new();
    for name in [
        "spki.pem",
        "spki.der",
        "pkcs1.pem",
        "pkcs1.der",
        "cert.pem",
        "cert.der",
        "cert.crt",
        "cert.cer",
    ] {
        let key = verify_core::keys::load_file(&dir.join(name), DEFAULT_MIN_RSA_BITS)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        loaded.push((name, key));
    }
    let reference = registry();
    let k2048 = reference.get(&KeyId::new("k2048")).unwrap();
    for (name, key) in &loaded {
        assert_eq!(key.rsa(), k2048.rsa(), "{name} differs from keys/k2048.pem");
        assert_eq!(key.bits(), 2048);
    }
    let ids: Vec<_> = reference.ids().map(|k| k.as_str().to_owned()).collect();
    assert_eq!(
        ids,
        ["ec256", "ec384", "ec521", "ed25519", "k1024", "k2048", "k3072", "k4096", "other"]
    );
}

/// The fingerprints openssl computed (make_modern_vectors.sh), by key id.
fn openssl_fingerprints() -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(vectors_dir().join("fingerprints.tsv"))
        .unwrap()
        .lines()
        .map(|l| {
            let (id, fp) = l.split_once('\t').unwrap();
            (id.to_owned(), fp.to_owned())
        })
        .collect()
}

#[test]
fn ec_and_ed25519_keys_load_from_every_format_with_openssls_fingerprint() {
    let reference = registry();
    let expected = openssl_fingerprints();
    for (id, family, detail) in [
        ("ec256", KeyFamily::Ec, "P-256"),
        ("ec384", KeyFamily::Ec, "P-384"),
        ("ec521", KeyFamily::Ec, "P-521"),
        ("ed25519", KeyFamily::Ed25519, "Ed25519"),
    ] {
        let key = reference.get(&KeyId::new(id)).unwrap();
        assert_eq!((key.family(), key.detail().as_str()), (family, detail));
        assert_eq!(key.fingerprint(), expected[id], "{id}");
    }
    let dir = vectors_dir().join("formats");
    for id in ["ec256", "ed25519"] {
        for form in ["spki.pem", "spki.der", "cert.pem", "cert.der"] {
            let name = format!("{id}-{form}");
            let key = verify_core::keys::load_file(&dir.join(&name), DEFAULT_MIN_RSA_BITS)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(key.fingerprint(), expected[id], "{name}");
        }
    }
    let summaries = reference.summaries();
    let ed = summaries
        .iter()
        .find(|s| s.key_id.as_str() == "ed25519")
        .unwrap();
    assert_eq!(ed.fingerprint, expected["ed25519"]);
    assert_eq!(
        serde_json::to_value(ed).unwrap()["family"],
        serde_json::json!("Ed25519")
    );
}

#[test]
fn keys_of_families_not_served_fail_the_load_saying_why() {
    for (name, says) in [
        ("ed448.pem", "Ed448"),
        ("secp256k1.pem", "curve"),
        ("dsa.pem", "key algorithm"),
    ] {
        let bytes = std::fs::read(vectors_dir().join("unsupported").join(name)).unwrap();
        let err = load_error(&[(name, &bytes)]);
        let message = err.to_string();
        let why_matches = match &err {
            KeyLoadError::Invalid { reason, .. } => matches!(
                (name, reason),
                ("ed448.pem", KeyParseError::Ed448)
                    | ("secp256k1.pem", KeyParseError::Curve(_))
                    | ("dsa.pem", KeyParseError::Algorithm(_))
            ),
            _ => false,
        };
        assert!(
            why_matches && message.contains(name) && message.contains(says),
            "{name}: {err:?}: {message}"
        );
    }
}

#[test]
fn a_key_of_another_family_than_the_algorithm_is_key_algorithm_mismatch() {
    let verifier = Verifier::new(registry(), Backend::Fast, true);
    for (key, algorithm) in [
        ("ec256", Algorithm::Sha256WithRsa),
        ("ec384", Algorithm::Ed25519),
        ("k2048", Algorithm::Sha256WithEcdsa),
        ("k2048", Algorithm::Sha256WithEcdsaP1363),
        ("ed25519", Algorithm::Sha512WithEcdsa),
        ("ed25519", Algorithm::Sha256WithRsaPss),
    ] {
        let err = verifier
            .verify(Some(&KeyId::new(key)), algorithm, b"doc", b"sig")
            .unwrap_err();
        assert_eq!(err.code(), "key_algorithm_mismatch", "{key} {algorithm}");
        let message = err.to_string();
        assert!(
            message.contains(key) && message.contains(algorithm.name()),
            "{message}"
        );
    }
    // Any curve serves any ECDSA digest (as in Java): not a mismatch.
    let v = vectors()
        .into_iter()
        .find(|v| v.key.as_str() == "ec521" && v.algorithm == Algorithm::Sha256WithEcdsa && v.valid)
        .unwrap();
    let verdict = verify(&verifier, &v, &v.key).unwrap();
    assert!(verdict.valid);
}

fn load_error(files: &[(&str, &[u8])]) -> KeyLoadError {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        vectors_dir().join("keys/k2048.pem"),
        dir.path().join("good.pem"),
    )
    .unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    KeyRegistry::load_dir(dir.path(), DEFAULT_MIN_RSA_BITS).expect_err("load must fail")
}

#[test]
fn malformed_key_files_fail_the_load_naming_the_file() {
    let private = std::fs::read(vectors_dir().join("private/k2048.pem")).unwrap();
    let cases: [(&str, &[u8]); 5] = [
        (
            "garbage.pem",
            b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
        ),
        ("garbage.der", b"\x30\x03\x02\x01\x05"),
        ("text.crt", b"hello"),
        ("secret.pem", &private),
        ("empty.cer", b""),
    ];
    for (name, bytes) in cases {
        let err = load_error(&[(name, bytes)]);
        assert!(
            matches!(err, KeyLoadError::Invalid { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
    let private_err = load_error(&[("secret.pem", &private)]).to_string();
    assert!(private_err.contains("PRIVATE KEY"), "{private_err}");

    let spki = std::fs::read(vectors_dir().join("formats/spki.der")).unwrap();
    let dup = load_error(&[("good.der", &spki)]);
    assert!(matches!(dup, KeyLoadError::Duplicate { .. }), "{dup:?}");

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("README.txt"), "not a key").unwrap();
    assert!(matches!(
        KeyRegistry::load_dir(empty.path(), DEFAULT_MIN_RSA_BITS),
        Err(KeyLoadError::Empty { .. })
    ));
    assert!(matches!(
        KeyRegistry::load_dir(Path::new("/nonexistent/keys"), DEFAULT_MIN_RSA_BITS),
        Err(KeyLoadError::ReadDir { .. })
    ));
}

/// A directory holding a copy of `keys/k2048.pem` and of each `(vector key, name)`.
fn key_dir(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let keys = vectors_dir().join("keys");
    std::fs::copy(keys.join("k2048.pem"), dir.path().join("good.pem")).unwrap();
    for (from, name) in extra {
        std::fs::copy(keys.join(from), dir.path().join(name)).unwrap();
    }
    dir
}

#[test]
fn keys_under_the_minimum_fail_the_load_naming_file_size_and_minimum() {
    assert_eq!(DEFAULT_MIN_RSA_BITS, 2048);
    let dir = key_dir(&[("k1024.pem", "legacy.pem")]);
    let err = KeyRegistry::load_dir(dir.path(), DEFAULT_MIN_RSA_BITS).unwrap_err();
    match &err {
        KeyLoadError::TooSmall {
            path,
            bits,
            min_bits,
        } => {
            assert_eq!(path, &dir.path().join("legacy.pem"));
            assert_eq!((*bits, *min_bits), (1024, 2048));
        }
        other => panic!("expected TooSmall, got {other:?}"),
    }
    let message = err.to_string();
    for part in [
        "legacy.pem",
        "1024-bit",
        "minimum of 2048 bits",
        "lower the minimum",
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }

    // Lowered for legacy keys, it loads, and the 1024-bit key still verifies.
    let lowered = KeyRegistry::load_dir(dir.path(), 1024).unwrap();
    let ids: Vec<&str> = lowered.ids().map(KeyId::as_str).collect();
    assert_eq!(ids, ["good", "legacy"]);
    assert_eq!(lowered.get(&KeyId::new("legacy")).unwrap().bits(), 1024);
    let v = vectors()
        .into_iter()
        .find(|v| v.key.as_str() == "k1024" && v.valid && v.algorithm == Algorithm::DEFAULT)
        .unwrap();
    let verifier = Verifier::new(lowered, Backend::Fast, false);
    let verdict = verify(&verifier, &v, &KeyId::new("legacy")).unwrap();
    assert!(verdict.valid);

    // The bound is inclusive: a key of exactly the minimum loads, one bit
    // more is refused; the single-file loader applies the same rule.
    assert!(KeyRegistry::load_dir(key_dir(&[]).path(), 2048).is_ok());
    assert!(matches!(
        KeyRegistry::load_dir(key_dir(&[]).path(), 2049),
        Err(KeyLoadError::TooSmall { bits: 2048, .. })
    ));
    let k1024 = vectors_dir().join("keys/k1024.pem");
    assert!(matches!(
        verify_core::keys::load_file(&k1024, DEFAULT_MIN_RSA_BITS),
        Err(KeyLoadError::TooSmall { bits: 1024, .. })
    ));
    assert!(verify_core::keys::load_file(&k1024, 1024).is_ok());
}

#[test]
fn keys_over_the_rsa_crate_limit_fail_the_load_naming_their_size() {
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::EncodePublicKey;
    use rsa::{BigUint, RsaPublicKey};

    assert_eq!(verify_core::keys::MAX_RSA_BITS, 4096);
    // A well-formed key of 4097 and of 8192 bits (an odd modulus: parsing
    // does not factor it), in SPKI PEM and PKCS#1 DER.
    for bits in [4097usize, 8192] {
        let mut modulus = vec![0xffu8; bits.div_ceil(8)];
        modulus[0] = 0xff >> (modulus.len() * 8 - bits);
        let key =
            RsaPublicKey::new_unchecked(BigUint::from_bytes_be(&modulus), BigUint::from(65_537u32));
        let dir = tempfile::tempdir().unwrap();
        let pem = key.to_public_key_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        std::fs::write(dir.path().join("huge.pem"), pem).unwrap();
        std::fs::write(
            dir.path().join("huge.der"),
            key.to_pkcs1_der().unwrap().as_bytes(),
        )
        .unwrap();
        for name in ["huge.pem", "huge.der"] {
            let err = verify_core::keys::load_file(&dir.path().join(name), 1024).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, KeyLoadError::Invalid { reason: KeyParseError::TooLarge { bits: b }, .. } if b == bits)
                    && message.contains(name)
                    && message.contains(&format!("{bits}-bit"))
                    && message.contains("4096"),
                "{bits} {name}: {message}"
            );
        }
    }
}

#[test]
fn a_key_parses_once_and_serves_every_backend() {
    let bytes = std::fs::read(vectors_dir().join("formats/spki.pem")).unwrap();
    let key = PublicKey::parse(&bytes).unwrap();
    let v = vectors()
        .into_iter()
        .find(|v| v.key.as_str() == "k2048" && v.algorithm == Algorithm::DEFAULT)
        .unwrap();
    let doc = document(&v.document);
    assert!(backend::rust::verify(
        &key,
        v.algorithm,
        Signed::Document(&doc),
        &v.signature
    ));
    #[cfg(feature = "aws-lc")]
    assert_eq!(
        backend::aws_lc::verify(
            key.fast(),
            v.algorithm,
            Signed::Document(&doc),
            &v.signature
        ),
        Some(true)
    );
}

#[test]
fn replaced_keys_serve_the_next_verification_and_a_held_registry_keeps_its_own() {
    let verifier = Verifier::new(registry(), Backend::Fast, false);
    let v = vectors()
        .into_iter()
        .find(|v| v.key.as_str() == "k2048" && v.valid && v.algorithm == Algorithm::DEFAULT)
        .unwrap();
    assert!(verify(&verifier, &v, &v.key).unwrap().valid);
    // What a verification already running holds.
    let held = verifier.keys();
    // The same key under another name only: the old name is gone.
    let dir = key_dir(&[]);
    verifier.replace_keys(KeyRegistry::load_dir(dir.path(), DEFAULT_MIN_RSA_BITS).unwrap());
    assert!(matches!(
        verify(&verifier, &v, &v.key),
        Err(VerifyError::UnknownKey(_))
    ));
    assert!(verify(&verifier, &v, &KeyId::new("good")).unwrap().valid);
    assert!(held.get(&v.key).is_some());
    assert!(held.get(&KeyId::new("good")).is_none());
}
