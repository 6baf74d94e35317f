//! What a worker tells of itself: an `online` event when it starts, a
//! heartbeat every `HEARTBEAT_INTERVAL`, an `offline` event on a graceful
//! stop; each with its counts. Gateways list workers from them
//! (`GET /api/workers`) and show one that missed three heartbeats as
//! offline, so a worker that dies without a word is seen as gone.
//!
//! Each beat lists the keys the worker serves (id, family, fingerprint):
//! gateways answer `GET /api/keys` from them, and the other workers, which
//! hear the beats on the workers exchange ([`crate::peers`]), hand them
//! requests for keys they lack. A beat goes out at once when the keys
//! change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use broker_client::{BatchPublisher, Link, Publisher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use verify_core::{Event, EventKind, RequestId, Verifier, WorkerBeat, WorkerState};

/// Counts the handler keeps for the heartbeats.
#[derive(Default)]
pub struct WorkerStats {
    /// Requests answered (a verdict or a failure confirmed in the stream).
    pub processed: AtomicU64,
    pub failed: AtomicU64,
    /// Requests held right now.
    pub in_flight: AtomicU64,
}

/// Counts `n` requests as held until dropped.
pub struct Held<'a>(&'a WorkerStats, u64);

impl WorkerStats {
    pub fn hold(&self, n: u64) -> Held<'_> {
        self.in_flight.fetch_add(n, Ordering::Relaxed);
        Held(self, n)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(self.1, Ordering::Relaxed);
    }
}

/// Who the worker is, for its heartbeats.
pub struct Identity {
    pub name: Arc<str>,
    pub started_at_ms: u64,
    pub verify_threads: u32,
    pub interval: Duration,
}

/// What the beats are made of and where they go.
pub struct Beacon {
    pub identity: Identity,
    pub stats: Arc<WorkerStats>,
    /// Its keys are listed in every beat.
    pub verifier: Arc<Verifier>,
    /// The events stream (gateways).
    pub events: BatchPublisher,
    /// The results link, for the broadcast to the workers exchange.
    pub results: Link<Publisher>,
    pub workers_exchange: String,
    /// Notified when the keys changed: beat now.
    pub keys_changed: Arc<Notify>,
}

impl Beacon {
    /// Appends the beat to the events stream and broadcasts it to the
    /// other workers (best effort: a beat nobody hears is not an error).
    async fn send(&self, state: WorkerState) -> Result<(), broker_client::PublishError> {
        let beat = self
            .identity
            .beat(state, &self.stats, &self.verifier)
            .encode();
        if let Some(publisher) = self.results.current() {
            if let Err(e) = publisher
                .broadcast(&self.workers_exchange, &beat, "worker")
                .await
            {
                tracing::debug!(error = %e, "heartbeat not broadcast to the other workers");
            }
        }
        self.events.publish(beat).await
    }
}

impl Identity {
    fn beat(&self, state: WorkerState, stats: &WorkerStats, verifier: &Verifier) -> Event {
        let host = self
            .name
            .split_once('@')
            .and_then(|(_, rest)| rest.rsplit_once(':'))
            .map_or("", |(host, _)| host);
        Event::new(
            RequestId::new(),
            &self.name,
            EventKind::Worker(WorkerBeat {
                state,
                host: host.to_owned(),
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at_ms: self.started_at_ms,
                processed: stats.processed.load(Ordering::Relaxed),
                failed: stats.failed.load(Ordering::Relaxed),
                in_flight: stats.in_flight.load(Ordering::Relaxed),
                verify_threads: self.verify_threads,
                heartbeat_ms: self.interval.as_millis() as u64,
                keys: verifier.keys().summaries(),
            }),
        )
    }
}

/// Publishes `online` once the results link is up, then a heartbeat every
/// interval (and at once when the keys change) until `stop`; the caller
/// sends `offline` with [`offline`].
pub async fn run(beacon: Arc<Beacon>, stop: CancellationToken) {
    let mut state = WorkerState::Online;
    let interval = beacon.identity.interval;
    let mut tick = tokio::time::interval(interval);
    // After a refused `online` (e.g. the events stream not declared yet: no
    // gateway has started), the next try comes after this, doubling up to
    // the interval: soon enough that a worker started before the gateways
    // is listed (with its keys) within moments of the first one.
    let mut retry = Duration::from_millis(100);
    loop {
        // `online` goes as soon as the results link is up; then a beat a tick.
        let announced = state != WorkerState::Online;
        tokio::select! {
            _ = tick.tick(), if announced => {}
            _ = beacon.keys_changed.notified(), if announced => {}
            _ = beacon.results.wait_usable(interval), if !announced => {}
            _ = stop.cancelled() => return,
        }
        if !beacon.results.is_up() {
            continue;
        }
        match beacon.send(state).await {
            Ok(()) => state = WorkerState::Heartbeat,
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat not confirmed");
                // Not a hot loop when `online` is refused: back off.
                if !announced {
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = stop.cancelled() => return,
                    }
                    retry = (retry * 2).min(interval);
                }
            }
        }
    }
}

/// Says the worker is going away (bounded: a stop never waits on it long).
pub async fn offline(beacon: &Beacon) {
    let bye = beacon.send(WorkerState::Offline);
    match tokio::time::timeout(Duration::from_secs(5), bye).await {
        Ok(Ok(())) => tracing::info!("offline event sent"),
        _ => tracing::warn!("could not send the offline event"),
    }
}
