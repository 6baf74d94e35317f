//! What the other live workers serve, heard from their heartbeats.
//!
//! Every worker broadcasts its beats (with the keyIds it serves) on the
//! fanout exchange `<queue>.workers` besides appending them to the events
//! stream, and listens on an exclusive queue bound to it. A request for a
//! key this worker does not have goes back to the queue only while another
//! live worker lists that key (see the handler); otherwise it is answered
//! `unknown_key` at once.
//!
//! Invariant: a peer counts while its last beat is not `offline` and is no
//! older than three of its heartbeat intervals, the rule the gateways use
//! for `GET /api/workers`; this worker's own beats are ignored. Hearing
//! nothing (no peers, or the listener down) only means keys are never
//! handed over: requests are answered as they would be by a lone worker.

use std::collections::HashSet;
use std::sync::Arc;

use broker_client::{Link, SessionError};
use dashmap::DashMap;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};
use tokio_util::sync::CancellationToken;
use verify_core::{now_ms, Event, EventKind, KeyId, Topology, WorkerBeat, WorkerState};

/// Heartbeats a peer may miss before it no longer counts.
const MISSED_BEATS: u64 = 3;

/// The peers heard from, by process name.
pub struct Peers {
    me: Arc<str>,
    seen: DashMap<String, Seen>,
}

struct Seen {
    state: WorkerState,
    keys: HashSet<KeyId>,
    last_ms: u64,
    heartbeat_ms: u64,
}

impl Peers {
    pub fn new(me: Arc<str>) -> Self {
        Peers {
            me,
            seen: DashMap::new(),
        }
    }

    /// Records a beat of worker `source` (its own beats are ignored).
    pub fn apply(&self, source: &str, beat: &WorkerBeat) {
        if source == &*self.me {
            return;
        }
        self.seen.insert(
            source.to_owned(),
            Seen {
                state: beat.state,
                keys: beat.keys.iter().map(|k| k.key_id.clone()).collect(),
                last_ms: now_ms(),
                heartbeat_ms: beat.heartbeat_ms.max(1),
            },
        );
        metrics::gauge!("worker_peers_heard").set(self.seen.len() as f64);
    }

    /// Whether another live worker serves `key`.
    pub fn serve(&self, key: &KeyId) -> bool {
        let now = now_ms();
        self.seen.retain(|_, seen| {
            now.saturating_sub(seen.last_ms) <= seen.heartbeat_ms * MISSED_BEATS
                && seen.state != WorkerState::Offline
        });
        self.seen.iter().any(|seen| seen.keys.contains(key))
    }
}

/// Declares the fanout exchange workers broadcast their beats on (durable,
/// so a broadcast never finds it missing while the broker lives).
pub async fn declare_exchange(channel: &Channel, topology: &Topology) -> lapin::Result<()> {
    channel
        .exchange_declare(
            topology.workers_exchange.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Listens to the other workers' beats until `stop`, reconnecting as the
/// link does.
pub fn spawn(
    endpoint: broker_client::Endpoint,
    topology: Arc<Topology>,
    peers: Arc<Peers>,
    stop: CancellationToken,
) -> (Link<()>, tokio::task::JoinHandle<()>) {
    let name = format!("{} peers", peers.me);
    Link::spawn(endpoint, name, stop, move |session| {
        let topology = topology.clone();
        let peers = peers.clone();
        async move {
            let channel = session.channels.create().await?;
            declare_exchange(&channel, &topology).await?;
            let queue = format!("{}.{}", topology.workers_exchange, uuid::Uuid::new_v4());
            channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    topology.workers_exchange.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let mut beats = channel
                .basic_consume(
                    queue.as_str().into(),
                    "peers".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            session.set_ready(());
            loop {
                let delivery = tokio::select! {
                    d = beats.next() => d,
                    _ = session.shutdown.cancelled() => return Ok(()),
                };
                match delivery {
                    Some(Ok(delivery)) => match Event::decode(&delivery.data) {
                        Ok(Event {
                            source,
                            kind: EventKind::Worker(beat),
                            ..
                        }) => peers.apply(&source, &beat),
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "unreadable peer beat"),
                    },
                    Some(Err(e)) => return Err(e.into()),
                    None => {
                        return Err(SessionError::Ended(
                            "the broker cancelled the peers consumer",
                        ))
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use verify_core::{KeyFamily, KeySummary};

    fn beat(state: WorkerState, keys: &[&str], heartbeat_ms: u64) -> WorkerBeat {
        WorkerBeat {
            state,
            host: "h".into(),
            pid: 1,
            version: "0".into(),
            started_at_ms: 0,
            processed: 0,
            failed: 0,
            in_flight: 0,
            verify_threads: 1,
            heartbeat_ms,
            keys: keys
                .iter()
                .map(|k| KeySummary {
                    key_id: KeyId::new(*k),
                    family: KeyFamily::Ec,
                    detail: "P-256".into(),
                    fingerprint: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_key_counts_while_a_live_other_worker_lists_it() {
        let peers = Peers::new("worker@me:1".into());
        let new = KeyId::new("new");
        assert!(!peers.serve(&new));
        // Its own beats do not count.
        peers.apply("worker@me:1", &beat(WorkerState::Heartbeat, &["new"], 5000));
        assert!(!peers.serve(&new));
        peers.apply("worker@b:2", &beat(WorkerState::Heartbeat, &["new"], 5000));
        assert!(peers.serve(&new));
        assert!(!peers.serve(&KeyId::new("other")));
        // A later beat without the key (rotated away) replaces the list.
        peers.apply(
            "worker@b:2",
            &beat(WorkerState::Heartbeat, &["other"], 5000),
        );
        assert!(!peers.serve(&new));
        // A worker that said goodbye does not count.
        peers.apply("worker@b:2", &beat(WorkerState::Offline, &["new"], 5000));
        assert!(!peers.serve(&new));
    }

    #[test]
    fn a_silent_worker_stops_counting_after_three_intervals() {
        let peers = Peers::new("worker@me:1".into());
        peers.apply("worker@b:2", &beat(WorkerState::Online, &["k"], 20));
        assert!(peers.serve(&KeyId::new("k")));
        std::thread::sleep(std::time::Duration::from_millis(80));
        assert!(!peers.serve(&KeyId::new("k")));
    }
}
