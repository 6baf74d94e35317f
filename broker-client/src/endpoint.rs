//! Where a link connects: the broker URLs (one, or a cluster's nodes) and
//! the TLS settings used for the `amqps://` ones.
//!
//! Invariant: an [`Endpoint`] holds only TLS material that parsed (every
//! file read and its PEM checked when it is built), so a bad CA or client
//! key stops the process at start with the file's name, instead of
//! failing every reconnect later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The broker a process talks to.
#[derive(Clone, Debug)]
pub struct Endpoint {
    urls: Arc<[String]>,
    tls: Arc<OwnedTLSConfig>,
}

/// TLS files for `amqps://` URLs (all optional).
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// PEM certificates of the CA(s) that signed the broker's certificate,
    /// trusted besides the system's roots.
    pub ca: Option<PathBuf>,
    /// PEM certificate (chain) this process presents to the broker.
    pub client_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {} holds no usable PEM {expected}: {source:?}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
        source: rustls_pki_types::pem::Error,
    },
    #[error("a client certificate needs its key and a key its certificate: set both AMQP_CLIENT_CERT_FILE and AMQP_CLIENT_KEY_FILE, or neither")]
    HalfIdentity,
}

impl Endpoint {
    /// `urls` (one URL or a comma-separated list) with the system's roots
    /// only and no client certificate.
    pub fn plain(urls: &str) -> Self {
        Endpoint {
            urls: crate::link::split_urls(urls).into(),
            tls: Arc::new(OwnedTLSConfig::default()),
        }
    }

    /// `urls` with the TLS material of `files`, read and checked now.
    pub fn with_tls(urls: &str, files: &TlsFiles) -> Result<Self, TlsFileError> {
        let cert_chain = match &files.ca {
            Some(path) => {
                let pem = read_text("AMQP_CA_FILE", path)?;
                check_certificates("AMQP_CA_FILE", path, pem.as_bytes())?;
                Some(pem)
            }
            None => None,
        };
        let identity = match (&files.client_cert, &files.client_key) {
            (Some(cert), Some(key)) => {
                let pem = read_text("AMQP_CLIENT_CERT_FILE", cert)?.into_bytes();
                check_certificates("AMQP_CLIENT_CERT_FILE", cert, &pem)?;
                let key_pem = read_text("AMQP_CLIENT_KEY_FILE", key)?.into_bytes();
                PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsFileError::Pem {
                    what: "AMQP_CLIENT_KEY_FILE",
                    path: key.clone(),
                    expected: "private key",
                    source,
                })?;
                Some(OwnedIdentity::PKCS8 { pem, key: key_pem })
            }
            (None, None) => None,
            _ => return Err(TlsFileError::HalfIdentity),
        };
        let endpoint = Endpoint {
            urls: crate::link::split_urls(urls).into(),
            tls: Arc::new(OwnedTLSConfig {
                identity,
                cert_chain,
            }),
        };
        if endpoint.has_tls_files() && !endpoint.urls.iter().any(|u| u.starts_with("amqps://")) {
            tracing::warn!("AMQP TLS files are set but no AMQP_URL is amqps://: they are not used");
        }
        Ok(endpoint)
    }

    /// The broker URLs, never empty.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The TLS settings for `amqps://` URLs (plain `amqp://` ignores them).
    pub fn tls(&self) -> &OwnedTLSConfig {
        &self.tls
    }

    /// The broker user of the first URL (the one every URL of a cluster names).
    pub fn user(&self) -> String {
        crate::link::url_user(&self.urls[0])
    }

    fn has_tls_files(&self) -> bool {
        self.tls.cert_chain.is_some() || self.tls.identity.is_some()
    }
}

fn read_text(what: &'static str, path: &Path) -> Result<String, TlsFileError> {
    std::fs::read_to_string(path).map_err(|source| TlsFileError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// At least one certificate, and every PEM section in `pem` well formed.
fn check_certificates(what: &'static str, path: &Path, pem: &[u8]) -> Result<(), TlsFileError> {
    let error = |source| TlsFileError::Pem {
        what,
        path: path.to_owned(),
        expected: "certificate",
        source,
    };
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(error)?;
        found += 1;
    }
    if found == 0 {
        return Err(error(rustls_pki_types::pem::Error::NoItemsFound));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn a_missing_or_bad_ca_file_is_refused_naming_it() {
        let missing = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let e = Endpoint::with_tls("amqps://h", &missing).unwrap_err();
        assert!(
            e.to_string().contains("AMQP_CA_FILE /nonexistent/ca.pem"),
            "{e}"
        );

        let junk = file("not a certificate\n");
        let e = Endpoint::with_tls(
            "amqps://h",
            &TlsFiles {
                ca: Some(junk.path().into()),
                ..TlsFiles::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                TlsFileError::Pem {
                    expected: "certificate",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let cert = file("x");
        let e = Endpoint::with_tls(
            "amqps://h",
            &TlsFiles {
                client_cert: Some(cert.path().into()),
                ..TlsFiles::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, TlsFileError::HalfIdentity));
    }

    #[test]
    fn without_files_nothing_is_read() {
        let endpoint =
            Endpoint::with_tls("amqps://a:1, amqps://b:2", &TlsFiles::default()).unwrap();
        assert_eq!(endpoint.urls().len(), 2);
        assert_eq!(endpoint.tls(), &OwnedTLSConfig::default());
    }
}
