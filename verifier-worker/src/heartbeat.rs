//! What a worker tells of itself: an `online` event when it starts, a
//! heartbeat every `HEARTBEAT_INTERVAL`, an `offline` event on a graceful
//! stop; each with its counts. Gateways list workers from them
//! (`GET /api/workers`) and show one that missed three heartbeats as
//! offline, so a worker that dies without a word is seen as gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use broker::{BatchPublisher, Link, Publisher};
use tokio_util::sync::CancellationToken;
use verify_core::{Event, EventKind, RequestId, WorkerBeat, WorkerState};

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

impl Identity {
    fn beat(&self, state: WorkerState, stats: &WorkerStats) -> Event {
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
            }),
        )
    }
}

/// Publishes `online` once the results link is up, then a heartbeat every
/// interval until `stop`; the caller sends `offline` with [`offline`].
pub async fn run(
    identity: Arc<Identity>,
    stats: Arc<WorkerStats>,
    events: BatchPublisher,
    results: Link<Publisher>,
    stop: CancellationToken,
) {
    let mut state = WorkerState::Online;
    let mut tick = tokio::time::interval(identity.interval);
    loop {
        // `online` goes as soon as the results link is up; then a beat a tick.
        let announced = state != WorkerState::Online;
        tokio::select! {
            _ = tick.tick(), if announced => {}
            _ = results.wait_usable(identity.interval), if !announced => {}
            _ = stop.cancelled() => return,
        }
        if !results.is_up() {
            continue;
        }
        match events.publish(identity.beat(state, &stats).encode()).await {
            Ok(()) => state = WorkerState::Heartbeat,
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat not confirmed");
                // Not a hot loop when `online` is refused: wait a tick.
                if !announced {
                    tick.reset();
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
    }
}

/// Says the worker is going away (bounded: a stop never waits on it long).
pub async fn offline(identity: &Identity, stats: &WorkerStats, events: &BatchPublisher) {
    let bye = events.publish(identity.beat(WorkerState::Offline, stats).encode());
    match tokio::time::timeout(Duration::from_secs(5), bye).await {
        Ok(Ok(())) => tracing::info!("offline event sent"),
        _ => tracing::warn!("could not send the offline event"),
    }
}
