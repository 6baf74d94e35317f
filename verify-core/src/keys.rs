//! Public keys: loading a directory of key files into a registry, once.
//!
//! Every accepted format (SPKI, PKCS#1, X.509 certificate; PEM or DER) is
//! reduced to the same parsed [`rsa::RsaPublicKey`], and the fast backend's
//! parsed form is built next to it at load time, so the hot path never parses.
//!
//! Size policy, enforced at load: a key under the caller's minimum
//! ([`DEFAULT_MIN_RSA_BITS`] unless lowered for legacy keys) fails the load,
//! and so does a key over [`MAX_RSA_BITS`], the largest the `rsa` crate
//! parses. The minimum is passed in: this crate reads no environment.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;
use serde::{Deserialize, Serialize};
use x509_cert::der::{Decode, Encode};

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
    #[error("{path} is not a usable RSA public key: {reason}")]
    Invalid { path: PathBuf, reason: String },
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

/// A public key, parsed once for every backend.
pub struct PublicKey {
    pub(crate) rsa: RsaPublicKey,
    #[cfg(feature = "aws-lc")]
    pub(crate) fast: crate::backend::aws_lc::FastKey,
}

impl PublicKey {
    /// Builds the key from its parsed form (the fast backend's form is derived here).
    pub fn from_rsa(rsa: RsaPublicKey) -> Self {
        PublicKey {
            #[cfg(feature = "aws-lc")]
            fast: crate::backend::aws_lc::FastKey::new(&rsa),
            rsa,
        }
    }

    /// Parses one key file's bytes (PEM or DER, told apart by content).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let is_pem = bytes.trim_ascii_start().starts_with(b"-----BEGIN");
        let rsa = if is_pem {
            parse_pem(bytes)
        } else {
            parse_der(bytes)
        };
        // The `rsa` crate calls a key over its size limit "malformed": say why.
        let rsa = rsa.map_err(|reason| oversize(bytes, is_pem).unwrap_or(reason))?;
        Ok(PublicKey::from_rsa(rsa))
    }

    pub fn rsa(&self) -> &RsaPublicKey {
        &self.rsa
    }

    /// The key as the AWS-LC backend uses it.
    #[cfg(feature = "aws-lc")]
    pub fn fast(&self) -> &crate::backend::aws_lc::FastKey {
        &self.fast
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.rsa.n().bits()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("bits", &self.bits())
            .finish()
    }
}

fn parse_pem(bytes: &[u8]) -> Result<RsaPublicKey, String> {
    let (label, der) = pem_rfc7468::decode_vec(bytes).map_err(|e| format!("bad PEM: {e}"))?;
    match label {
        "PUBLIC KEY" => spki_to_rsa(&der),
        "RSA PUBLIC KEY" => {
            RsaPublicKey::from_pkcs1_der(&der).map_err(|e| format!("bad PKCS#1 key: {e}"))
        }
        "CERTIFICATE" => certificate_to_rsa(&der),
        other => Err(format!(
            "PEM label {other:?}; expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE"
        )),
    }
}

fn parse_der(der: &[u8]) -> Result<RsaPublicKey, String> {
    // The three DER encodings are distinguishable by structure, so try each.
    if let Ok(key) = RsaPublicKey::from_public_key_der(der) {
        return Ok(key);
    }
    if let Ok(key) = RsaPublicKey::from_pkcs1_der(der) {
        return Ok(key);
    }
    certificate_to_rsa(der).map_err(|cert_err| {
        format!(
            "not DER SubjectPublicKeyInfo, PKCS#1 RSAPublicKey nor X.509 certificate ({cert_err})"
        )
    })
}

fn spki_to_rsa(der: &[u8]) -> Result<RsaPublicKey, String> {
    RsaPublicKey::from_public_key_der(der).map_err(|e| format!("bad RSA SubjectPublicKeyInfo: {e}"))
}

fn certificate_to_rsa(der: &[u8]) -> Result<RsaPublicKey, String> {
    // A certificate is only a container for its key here: dates and chain are
    // deliberately not checked (the key file's presence is the trust decision).
    let cert =
        x509_cert::Certificate::from_der(der).map_err(|e| format!("bad X.509 certificate: {e}"))?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("bad certificate key: {e}"))?;
    spki_to_rsa(&spki).map_err(|e| format!("certificate does not hold an RSA key: {e}"))
}

/// Why a well-formed key was refused, when it is for being over
/// [`MAX_RSA_BITS`]: its modulus read without the `rsa` crate's checks.
fn oversize(bytes: &[u8], is_pem: bool) -> Option<String> {
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
    (bits > MAX_RSA_BITS).then(|| {
        format!("a {bits}-bit RSA key; the largest this build loads is {MAX_RSA_BITS} bits")
    })
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
    /// read as a key, or holds a key under `min_rsa_bits`, fails the whole
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

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Reads and parses one key file, refusing a key under `min_rsa_bits`;
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
    if key.bits() < min_rsa_bits {
        return Err(KeyLoadError::TooSmall {
            path: path.to_owned(),
            bits: key.bits(),
            min_bits: min_rsa_bits,
        });
    }
    Ok(key)
}
