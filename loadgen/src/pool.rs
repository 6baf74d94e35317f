//! The document pool: documents signed at start with the private key, a
//! share of them tampered after signing, each with the verdict it must get.

use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use rand::distributions::Alphanumeric;
use rand::{Rng, SeedableRng};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};

pub struct Case {
    /// The POST body, serialized once.
    pub body: Bytes,
    pub valid: bool,
}

pub fn build(
    key_path: &Path,
    key_id: Option<&str>,
    size: usize,
    doc_len: usize,
    tampered: f64,
) -> anyhow::Result<Vec<Case>> {
    let pem = std::fs::read_to_string(key_path)
        .with_context(|| format!("reading private key {}", key_path.display()))?;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
        .or_else(|_| {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            rsa::RsaPrivateKey::from_pkcs1_pem(&pem)
        })
        .with_context(|| {
            format!(
                "{} is not an RSA private key (PKCS#8 or PKCS#1 PEM)",
                key_path.display()
            )
        })?;
    let signer = SigningKey::<sha2::Sha256>::new(key);
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let tampered_every = if tampered > 0.0 {
        (1.0 / tampered).round() as usize
    } else {
        0
    };
    Ok((0..size)
        .map(|i| {
            let text: String = (&mut rng)
                .sample_iter(&Alphanumeric)
                .take(doc_len)
                .map(char::from)
                .collect();
            let signature = hex::encode(signer.sign(text.as_bytes()).to_bytes());
            let valid = !(tampered_every > 0 && i % tampered_every == tampered_every - 1);
            let sent = if valid { text } else { format!("{text}!") };
            let mut body = serde_json::json!({ "text": sent, "hexSignature": signature });
            if let Some(k) = key_id {
                body["keyId"] = k.into();
            }
            Case {
                body: Bytes::from(body.to_string()),
                valid,
            }
        })
        .collect())
}
