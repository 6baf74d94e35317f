//! Public keys: loading a directory of key files into a registry, once.
//!
//! Every accepted format (SPKI, PKCS#1 for RSA, X.509 certificate; PEM or
//! DER) is reduced to one canonical SubjectPublicKeyInfo, then to the parsed
//! key of its family: RSA ([`rsa::RsaPublicKey`]), EC on P-256 / P-384 /
//! P-521 (RustCrypto's ECDSA verifying keys) or Ed25519 (`ed25519-dalek`).
//! The fast backend's parsed form is built next to it at load time, so the
//! hot path never parses. A key's fingerprint is the SHA-256 of that
//! canonical SPKI DER (what `openssl pkey -pubin -outform DER | sha256sum`
//! prints), the same whichever format the file used.
//!
//! Size policy, enforced at load: an RSA key under the caller's minimum
//! ([`DEFAULT_MIN_RSA_BITS`] unless lowered for legacy keys) fails the load,
//! and so does a key over [`MAX_RSA_BITS`], the largest the `rsa` crate
//! parses. The minimum is passed in: this crate reads no environment.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use x509_cert::der::{Decode, Encode};

use crate::{Curve, KeyFamily};

/// The name a key is known by: its file name without the extension.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// The key used when a request names none (if it exists).
    pub const DEFAULT: &'static str = "default";

    pub fn new(id: impl Into<String>) -> Self {
        KeyId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The smallest RSA modulus loaded unless the caller lowers the minimum:
/// 2048 bits, the floor of NIST SP 800-131A and of AWS-LC's verification
/// parameters. Keys of 1024 bits verify (with the `rsa` backend) only when a
/// caller deliberately allows them.
pub const DEFAULT_MIN_RSA_BITS: usize = 2048;

/// The largest RSA modulus this build loads: the limit of
/// [`RsaPublicKey::new`] (the `rsa` crate's `MAX_SIZE`), which every key
/// format is parsed through.
pub const MAX_RSA_BITS: usize = RsaPublicKey::MAX_SIZE;

/// Why a key directory could not be loaded. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error("cannot list key directory {dir}: {source}")]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable public key: {reason}")]
    Invalid {
        path: PathBuf,
        reason: KeyParseError,
    },
    #[error("key id {key_id:?} is defined twice: {first} and {second}")]
    Duplicate {
        key_id: KeyId,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("no key files (*.pem, *.der, *.crt, *.cer) in {dir}")]
    Empty { dir: PathBuf },
    #[error(
        "{path} holds a {bits}-bit RSA key, under the minimum of {min_bits} bits; \
         lower the minimum to {bits} to load it anyway (legacy keys only)"
    )]
    TooSmall {
        path: PathBuf,
        bits: usize,
        min_bits: usize,
    },
}

/// Why a key file's bytes are not a public key this build serves.
#[derive(Debug, thiserror::Error)]
pub enum KeyParseError {
    #[error("bad PEM: {0}")]
    Pem(pem_rfc7468::Error),
    #[error("PEM label {0:?}; expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE")]
    PemLabel(String),
    #[error("bad PKCS#1 key: {0}")]
    Pkcs1(pkcs1::Error),
    #[error("not DER SubjectPublicKeyInfo, PKCS#1 RSAPublicKey nor X.509 certificate ({0})")]
    NotDer(Box<KeyParseError>),
    #[error("bad SubjectPublicKeyInfo: {0}")]
    Spki(x509_cert::der::Error),
    #[error("bad RSA SubjectPublicKeyInfo: {0}")]
    RsaSpki(spki::Error),
    #[error("bad Ed25519 key: {0}")]
    Ed25519(spki::Error),
    #[error("an Ed448 key; Ed25519 is the EdDSA curve served")]
    Ed448,
    #[error("key algorithm {0}; RSA, EC (P-256, P-384, P-521) and Ed25519 keys are served")]
    Algorithm(spki::ObjectIdentifier),
    #[error("EC key without a named curve: {0}")]
    NoNamedCurve(spki::Error),
    #[error("EC key on curve {0}; P-256, P-384 and P-521 are served")]
    Curve(spki::ObjectIdentifier),
    #[error("bad EC key: {0}")]
    Ec(spki::Error),
    #[error("bad EC key: {0}")]
    EcPoint(p521::ecdsa::Error),
    #[error("bad X.509 certificate: {0}")]
    Certificate(x509_cert::der::Error),
    #[error("bad certificate key: {0}")]
    CertificateKey(x509_cert::der::Error),
    #[error("certificate key: {0}")]
    InCertificate(Box<KeyParseError>),
    #[error("a {bits}-bit RSA key; the largest this build loads is {max} bits", max = MAX_RSA_BITS)]
    TooLarge { bits: usize },
}

/// An ECDSA verifying key on one of the [`Curve`]s.
#[derive(Clone)]
pub enum EcKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

impl EcKey {
    pub fn curve(&self) -> Curve {
        match self {
            EcKey::P256(_) => Curve::P256,
            EcKey::P384(_) => Curve::P384,
            EcKey::P521(_) => Curve::P521,
        }
    }
}

/// A key's parsed material, by family.
#[derive(Clone)]
pub enum KeyMaterial {
    Rsa(RsaPublicKey),
    Ec(EcKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A public key, parsed once for every backend.
pub struct PublicKey {
    material: KeyMaterial,
    /// SHA-256 of the canonical SPKI DER, lowercase hex.
    fingerprint: String,
    #[cfg(feature = "aws-lc")]
    fast: crate::backend::aws_lc::FastKey,
}

/// What one loaded key is, as workers announce it (no key material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySummary {
    pub key_id: KeyId,
    pub family: KeyFamily,
    /// `2048-bit`, `P-256`, `Ed25519`.
    pub detail: String,
    /// SHA-256 of the key's SubjectPublicKeyInfo DER, lowercase hex.
    pub fingerprint: String,
}

impl PublicKey {
    /// Builds an RSA key from its parsed form.
    pub fn from_rsa(rsa: RsaPublicKey) -> Self {
        let spki = rsa
            .to_public_key_der()
            .map(|d| d.into_vec())
            .unwrap_or_default();
        PublicKey::from_material(KeyMaterial::Rsa(rsa), &spki)
    }

    /// `spki`: the key's canonical SubjectPublicKeyInfo DER.
    fn from_material(material: KeyMaterial, spki: &[u8]) -> Self {
        #[cfg(feature = "aws-lc")]
        let fast = {
            use crate::backend::aws_lc::FastKey;
            match &material {
                KeyMaterial::Rsa(rsa) => FastKey::rsa(rsa.n().bits(), spki),
                KeyMaterial::Ec(ec) => FastKey::ec(ec.curve(), spki),
                KeyMaterial::Ed25519(key) => FastKey::ed25519(key.as_bytes()),
            }
        };
        PublicKey {
            material,
            fingerprint: hex::encode(sha2::Sha256::digest(spki)),
            #[cfg(feature = "aws-lc")]
            fast,
        }
    }

    /// Parses one key file's bytes (PEM or DER, told apart by content).
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyParseError> {
        let is_pem = bytes.trim_ascii_start().starts_with(b"-----BEGIN");
        let key = if is_pem {
            parse_pem(bytes)
        } else {
            parse_der(bytes)
        };
        // The `rsa` crate calls a key over its size limit "malformed": say why.
        key.map_err(|reason| oversize(bytes, is_pem).unwrap_or(reason))
    }

    pub fn material(&self) -> &KeyMaterial {
        &self.material
    }

    /// The RSA key, if this is one.
    pub fn rsa(&self) -> Option<&RsaPublicKey> {
        match &self.material {
            KeyMaterial::Rsa(rsa) => Some(rsa),
            _ => None,
        }
    }

    pub fn family(&self) -> KeyFamily {
        match &self.material {
            KeyMaterial::Rsa(_) => KeyFamily::Rsa,
            KeyMaterial::Ec(_) => KeyFamily::Ec,
            KeyMaterial::Ed25519(_) => KeyFamily::Ed25519,
        }
    }

    /// The key as the AWS-LC backend uses it.
    #[cfg(feature = "aws-lc")]
    pub fn fast(&self) -> &crate::backend::aws_lc::FastKey {
        &self.fast
    }

    /// Key size in bits: the RSA modulus, the curve's order, 256 for Ed25519.
    pub fn bits(&self) -> usize {
        match &self.material {
            KeyMaterial::Rsa(rsa) => rsa.n().bits(),
            KeyMaterial::Ec(ec) => match ec.curve() {
                Curve::P256 => 256,
                Curve::P384 => 384,
                Curve::P521 => 521,
            },
            KeyMaterial::Ed25519(_) => 256,
        }
    }

    /// SHA-256 of the key's canonical SubjectPublicKeyInfo DER, lowercase hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `2048-bit`, `P-256` or `Ed25519`.
    pub fn detail(&self) -> String {
        match &self.material {
            KeyMaterial::Rsa(_) => format!("{}-bit", self.bits()),
            KeyMaterial::Ec(ec) => ec.curve().name().to_owned(),
            KeyMaterial::Ed25519(_) => "Ed25519".to_owned(),
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("family", &self.family())
            .field("detail", &self.detail())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

fn parse_pem(bytes: &[u8]) -> Result<PublicKey, KeyParseError> {
    let (label, der) = pem_rfc7468::decode_vec(bytes).map_err(KeyParseError::Pem)?;
    match label {
        "PUBLIC KEY" => from_spki(&der),
        "RSA PUBLIC KEY" => RsaPublicKey::from_pkcs1_der(&der)
            .map(PublicKey::from_rsa)
            .map_err(KeyParseError::Pkcs1),
        "CERTIFICATE" => from_certificate(&der),
        other => Err(KeyParseError::PemLabel(other.to_owned())),
    }
}

fn parse_der(der: &[u8]) -> Result<PublicKey, KeyParseError> {
    // The three DER encodings are distinguishable by structure, so try each.
    if spki::SubjectPublicKeyInfoRef::from_der(der).is_ok() {
        return from_spki(der);
    }
    if let Ok(key) = RsaPublicKey::from_pkcs1_der(der) {
        return Ok(PublicKey::from_rsa(key));
    }
    from_certificate(der).map_err(|cert_err| KeyParseError::NotDer(Box::new(cert_err)))
}

/// The SPKI algorithm identifiers served.
mod oid {
    use spki::ObjectIdentifier as Oid;
    pub const RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    pub const EC: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    pub const ED25519: Oid = Oid::new_unwrap("1.3.101.112");
    pub const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    pub const P384: Oid = Oid::new_unwrap("1.3.132.0.34");
    pub const P521: Oid = Oid::new_unwrap("1.3.132.0.35");
    pub const ED448: Oid = Oid::new_unwrap("1.3.101.113");
}

/// A SubjectPublicKeyInfo of any family served, told apart by its
/// algorithm identifier (and, for EC, its named curve).
fn from_spki(der: &[u8]) -> Result<PublicKey, KeyParseError> {
    let info = spki::SubjectPublicKeyInfoRef::from_der(der).map_err(KeyParseError::Spki)?;
    let algorithm = info.algorithm.oid;
    if algorithm == oid::RSA {
        let rsa = RsaPublicKey::from_public_key_der(der).map_err(KeyParseError::RsaSpki)?;
        return Ok(PublicKey::from_rsa(rsa));
    }
    if algorithm == oid::ED25519 {
        let key = ed25519_dalek::VerifyingKey::from_public_key_der(der)
            .map_err(KeyParseError::Ed25519)?;
        let spki = key.to_public_key_der().map_err(KeyParseError::Ed25519)?;
        return Ok(PublicKey::from_material(
            KeyMaterial::Ed25519(key),
            spki.as_bytes(),
        ));
    }
    if algorithm == oid::ED448 {
        return Err(KeyParseError::Ed448);
    }
    if algorithm != oid::EC {
        return Err(KeyParseError::Algorithm(algorithm));
    }
    let curve = info
        .algorithm
        .parameters_oid()
        .map_err(KeyParseError::NoNamedCurve)?;
    let bad = KeyParseError::Ec;
    // Each curve's SPKI is parsed (and its point checked on the curve) by
    // its own crate, then encoded again: the canonical form (uncompressed
    // point) is what the fingerprint and the fast backend read.
    let (ec, spki) = if curve == oid::P256 {
        let key = p256::PublicKey::from_public_key_der(der).map_err(bad)?;
        let spki = key.to_public_key_der().map_err(bad)?;
        (EcKey::P256(key.into()), spki)
    } else if curve == oid::P384 {
        let key = p384::PublicKey::from_public_key_der(der).map_err(bad)?;
        let spki = key.to_public_key_der().map_err(bad)?;
        (EcKey::P384(key.into()), spki)
    } else if curve == oid::P521 {
        let key = p521::PublicKey::from_public_key_der(der).map_err(bad)?;
        let spki = key.to_public_key_der().map_err(bad)?;
        let verifying = p521::ecdsa::VerifyingKey::from_affine(*key.as_affine())
            .map_err(KeyParseError::EcPoint)?;
        (EcKey::P521(verifying), spki)
    } else {
        return Err(KeyParseError::Curve(curve));
    };
    Ok(PublicKey::from_material(
        KeyMaterial::Ec(ec),
        spki.as_bytes(),
    ))
}

fn from_certificate(der: &[u8]) -> Result<PublicKey, KeyParseError> {
    // A certificate is only a container for its key here: dates and chain are
    // deliberately not checked (the key file's presence is the trust decision).
    let cert = x509_cert::Certificate::from_der(der).map_err(KeyParseError::Certificate)?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(KeyParseError::CertificateKey)?;
    from_spki(&spki).map_err(|e| KeyParseError::InCertificate(Box::new(e)))
}

/// Why a well-formed key was refused, when it is for being over
/// [`MAX_RSA_BITS`]: its modulus read without the `rsa` crate's checks.
fn oversize(bytes: &[u8], is_pem: bool) -> Option<KeyParseError> {
    let der = if is_pem {
        pem_rfc7468::decode_vec(bytes).ok()?.1
    } else {
        bytes.to_vec()
    };
    // SPKI and certificates wrap a PKCS#1 RSAPublicKey; try each layer.
    let pkcs1 = if let Ok(spki) = spki::SubjectPublicKeyInfoRef::from_der(&der) {
        spki.subject_public_key.raw_bytes().to_vec()
    } else if let Ok(cert) = x509_cert::Certificate::from_der(&der) {
        cert.tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes()
            .to_vec()
    } else {
        der
    };
    let key = pkcs1::RsaPublicKey::from_der(&pkcs1).ok()?;
    let modulus = key.modulus.as_bytes();
    let first = modulus.iter().position(|&b| b != 0)?;
    let bits = (modulus.len() - first) * 8 - modulus[first].leading_zeros() as usize;
    (bits > MAX_RSA_BITS).then_some(KeyParseError::TooLarge { bits })
}

/// The file extensions that are read as keys; other files are ignored.
const KEY_EXTENSIONS: [&str; 4] = ["pem", "der", "crt", "cer"];

/// All keys of a directory, by [`KeyId`].
#[derive(Debug, Default)]
pub struct KeyRegistry {
    keys: BTreeMap<KeyId, PublicKey>,
}

impl KeyRegistry {
    /// Loads every key file of `dir` (not recursive). Any file that cannot be
    /// read as a key, or holds an RSA key under `min_rsa_bits`, fails the whole
    /// load, naming the file: a worker that silently skipped a key would
    /// answer `unknown_key` for it forever.
    pub fn load_dir(dir: &Path, min_rsa_bits: usize) -> Result<Self, KeyLoadError> {
        let read_dir = std::fs::read_dir(dir).map_err(|source| KeyLoadError::ReadDir {
            dir: dir.to_owned(),
            source,
        })?;
        let mut paths = Vec::new();
        for entry in read_dir {
            let entry = entry.map_err(|source| KeyLoadError::ReadDir {
                dir: dir.to_owned(),
                source,
            })?;
            let path = entry.path();
            let is_key = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| KEY_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
            if is_key && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        if paths.is_empty() {
            return Err(KeyLoadError::Empty {
                dir: dir.to_owned(),
            });
        }

        let mut registry = KeyRegistry::default();
        let mut sources: BTreeMap<KeyId, PathBuf> = BTreeMap::new();
        for path in paths {
            let key = load_file(&path, min_rsa_bits)?;
            let id = KeyId::new(
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            if let Some(first) = sources.get(&id) {
                return Err(KeyLoadError::Duplicate {
                    key_id: id,
                    first: first.clone(),
                    second: path,
                });
            }
            sources.insert(id.clone(), path);
            registry.keys.insert(id, key);
        }
        Ok(registry)
    }

    /// Adds a key (tests and embedders that do not read a directory).
    pub fn insert(&mut self, id: KeyId, key: PublicKey) {
        self.keys.insert(id, key);
    }

    pub fn get(&self, id: &KeyId) -> Option<&PublicKey> {
        self.keys.get(id)
    }

    /// The key for a request: the named one, else `default`, else the only key.
    pub fn resolve(&self, id: Option<&KeyId>) -> Option<(&KeyId, &PublicKey)> {
        match id {
            Some(id) => self.keys.get_key_value(id),
            None => self
                .keys
                .get_key_value(&KeyId::new(KeyId::DEFAULT))
                .or_else(|| {
                    (self.keys.len() == 1)
                        .then(|| self.keys.iter().next())
                        .flatten()
                }),
        }
    }

    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }

    /// Every key's id, family and fingerprint, by id.
    pub fn summaries(&self) -> Vec<KeySummary> {
        self.keys
            .iter()
            .map(|(id, key)| KeySummary {
                key_id: id.clone(),
                family: key.family(),
                detail: key.detail(),
                fingerprint: key.fingerprint().to_owned(),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Reads and parses one key file, refusing an RSA key under `min_rsa_bits`;
/// errors name the file.
pub fn load_file(path: &Path, min_rsa_bits: usize) -> Result<PublicKey, KeyLoadError> {
    let bytes = std::fs::read(path).map_err(|source| KeyLoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let key = PublicKey::parse(&bytes).map_err(|reason| KeyLoadError::Invalid {
        path: path.to_owned(),
        reason,
    })?;
    if key.family() == KeyFamily::Rsa && key.bits() < min_rsa_bits {
        return Err(KeyLoadError::TooSmall {
            path: path.to_owned(),
            bits: key.bits(),
            min_bits: min_rsa_bits,
        });
    }
    Ok(key)
}
