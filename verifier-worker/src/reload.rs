//! Live key rotation: the keys directory is read again when it changes
//! (a file watch) or on SIGHUP, and the new keys replace the old ones for
//! every verification that starts after; none in flight is dropped or
//! mixed (see [`verify_core::Verifier::replace_keys`]).
//!
//! Invariants:
//! - A reload is all or nothing. A directory that does not load (a file
//!   half-written, a bad key, no key at all) leaves the keys in use as they
//!   were, says why in the log and in `worker_key_reloads_total{outcome=
//!   "failed"}`, and is tried again on the next change or SIGHUP.
//! - Changes are gathered for [`QUIET`] (a copy that writes in several
//!   steps is read once, whole), so a new key is in use well within 2 s
//!   of its file appearing.
//! - When the keys changed, the heartbeat goes out at once (`changed` is
//!   notified), so gateways and the other workers learn the new list
//!   without waiting for the next interval.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use verify_core::{KeyLoadError, KeyRegistry, Verifier};

/// How long the directory must stay still before it is read.
pub const QUIET: Duration = Duration::from_millis(200);
/// The longest a stream of changes delays a reload.
const MOST: Duration = Duration::from_secs(1);

/// Where keys come from and the size policy they load under.
#[derive(Debug, Clone)]
pub struct KeySource {
    pub dir: PathBuf,
    pub min_rsa_bits: usize,
}

impl KeySource {
    /// Loads the directory; errors name the file and, for a key under the
    /// minimum, the knob that admits it.
    pub fn load(&self) -> anyhow::Result<KeyRegistry> {
        let min_bits = self.min_rsa_bits;
        KeyRegistry::load_dir(&self.dir, min_bits).map_err(|e| {
            // verify-core reads no environment: the knob's name is added here.
            let how = match &e {
                KeyLoadError::TooSmall { bits, .. } => format!(
                    " (VERIFIER_MIN_RSA_BITS={min_bits}; set VERIFIER_MIN_RSA_BITS={bits} to accept legacy {bits}-bit keys)"
                ),
                _ => String::new(),
            };
            anyhow::Error::new(e).context(format!("loading VERIFIER_KEYS_DIR{how}"))
        })
    }
}

/// The watch and the signal, set up before the worker starts consuming (a
/// SIGHUP before this would end the process, its default action).
pub struct Reloader {
    source: KeySource,
    hangup: Signal,
    changes: mpsc::UnboundedReceiver<()>,
    /// Kept alive: dropping it stops the watch. `None` when the directory
    /// cannot be watched (then SIGHUP still reloads).
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Reloader {
    /// `watch`: follow the directory's changes (else SIGHUP only).
    pub fn new(source: KeySource, watch_dir: bool) -> anyhow::Result<Self> {
        let hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
        let (tx, changes) = mpsc::unbounded_channel();
        let watcher = if watch_dir {
            watch(&source.dir, tx)
                .inspect_err(|e| {
                    tracing::warn!(dir = %source.dir.display(), error = %e, "cannot watch the keys directory; send SIGHUP to reload keys");
                })
                .ok()
        } else {
            tracing::info!("VERIFIER_KEYS_WATCH is off: send SIGHUP to reload keys");
            None
        };
        Ok(Reloader {
            source,
            hangup,
            changes,
            _watcher: watcher,
        })
    }

    /// Reloads on every change or SIGHUP until `stop`.
    pub async fn run(
        mut self,
        verifier: Arc<Verifier>,
        changed: Arc<Notify>,
        stop: CancellationToken,
    ) {
        loop {
            let why = tokio::select! {
                Some(()) = self.changes.recv() => {
                    self.settle().await;
                    "the keys directory changed"
                }
                Some(()) = self.hangup.recv() => "SIGHUP",
                _ = stop.cancelled() => return,
            };
            if reload(&self.source, &verifier).await {
                changed.notify_one();
            }
            tracing::debug!(why, "keys directory read");
        }
    }

    /// Waits until no change has come for [`QUIET`] (at most [`MOST`]).
    async fn settle(&mut self) {
        let deadline = tokio::time::Instant::now() + MOST;
        loop {
            match tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + QUIET),
                self.changes.recv(),
            )
            .await
            {
                Ok(Some(())) => continue,
                _ => return,
            }
        }
    }
}

/// Watches `dir` (not recursive); every change that can alter a key file
/// sends `()`. Reading a file (the reload itself) is not a change.
fn watch(dir: &Path, tx: mpsc::UnboundedSender<()>) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                EventKind::Access(_) => false,
                _ => true,
            },
            // A lost event (queue overflow): read the directory to be sure.
            Err(_) => true,
        };
        if relevant {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Reads the directory again; `true` when the keys in use changed.
async fn reload(source: &KeySource, verifier: &Verifier) -> bool {
    let read = source.clone();
    let loaded = tokio::task::spawn_blocking(move || read.load())
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the key reload panicked: {e}")));
    let keys = match loaded {
        Ok(keys) => keys,
        Err(e) => {
            metrics::counter!("worker_key_reloads_total", "outcome" => "failed").increment(1);
            tracing::error!(
                error = format!("{e:#}"),
                "keys not reloaded; the keys loaded before stay in use"
            );
            return false;
        }
    };
    let before = verifier.keys().summaries();
    let after = keys.summaries();
    if before == after {
        metrics::counter!("worker_key_reloads_total", "outcome" => "unchanged").increment(1);
        return false;
    }
    let added: Vec<String> = after
        .iter()
        .filter(|k| !before.contains(k))
        .map(|k| format!("{} ({} {})", k.key_id, k.family, k.detail))
        .collect();
    let removed: Vec<String> = before
        .iter()
        .filter(|k| !after.contains(k))
        .map(|k| k.key_id.to_string())
        .collect();
    verifier.replace_keys(keys);
    metrics::counter!("worker_key_reloads_total", "outcome" => "changed").increment(1);
    metrics::gauge!("worker_keys").set(after.len() as f64);
    tracing::info!(?added, ?removed, keys = after.len(), "keys reloaded");
    true
}
