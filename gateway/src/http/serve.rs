//! The HTTP server: accepts TCP connections, does the TLS handshake when
//! the gateway serves HTTPS, and serves each connection with hyper's
//! HTTP/1.1 server.
//!
//! Invariants: no connection is held by a client that does not send a
//! request: its TLS handshake and every request header (including the
//! first on an idle keep-alive connection) must arrive within the header
//! timeout, or the connection is closed (request bodies have their own
//! timeout, a layer of the router). On shutdown the listener closes first,
//! then every connection finishes the request it is serving and closes.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How connections are served.
#[derive(Clone)]
pub struct ServeOptions {
    /// Longest a client may take to complete its TLS handshake, and to send
    /// a request's header once the connection waits for one.
    pub header_timeout: Duration,
    /// TLS: serve HTTPS with this configuration. None: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A certificate or key for HTTPS that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("{what} {}: {source}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("TLS_CERT_FILE {} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("TLS_CERT_FILE and TLS_KEY_FILE do not make a usable server identity: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither")]
    HalfIdentity,
}

/// The HTTPS configuration of a certificate chain and its key (PEM files),
/// or None when neither is set.
pub fn tls_config(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsConfigError> {
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return Ok(None),
        _ => return Err(TlsConfigError::HalfIdentity),
    };
    let pem_error = |what, path: &Path| {
        let path = path.to_owned();
        move |source| TlsConfigError::Pem { what, path, source }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem_error("TLS_CERT_FILE", cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error("TLS_CERT_FILE", cert))?;
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_error("TLS_KEY_FILE", key))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The listening socket's queue of connections the kernel has set up and
/// the gateway not yet accepted. Linux caps it at `net.core.somaxconn`
/// (4096 by default since 5.4); tokio's `TcpListener::bind` asks for 128.
/// Clients that keep starting requests while their earlier ones wait (on
/// a broker that stalls, say) open hundreds of connections at once: past
/// the queue the kernel drops their handshakes, and each then waits for a
/// retransmission (200 ms to a second) or fails.
const LISTEN_BACKLOG: u32 = 65_535;

/// Listens on `addr` (address reuse on, as `TcpListener::bind` does) with
/// a queue of [`LISTEN_BACKLOG`] connections, or as many as the kernel
/// allows.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on `listener` until `shutdown` fires, then closes the
/// listener and waits (at most `drain`) for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    let acceptor = options.tls.map(TlsAcceptor::from);
    let connections = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: give the open
                    // connections a moment to close before trying again.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    if !is_per_connection(&e) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let http = http.clone();
        let watcher = connections.watcher();
        let acceptor = acceptor.clone();
        let header_timeout = options.header_timeout;
        tokio::spawn(async move {
            let served = match acceptor {
                None => {
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?drain, "connections still open after the drain deadline");
    }
}

/// Errors of one connection (the next accept may succeed at once).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
