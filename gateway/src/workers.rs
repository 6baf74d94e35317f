//! Live workers, projected from their `worker` events (online, a heartbeat
//! every interval, offline on a graceful stop).
//!
//! Invariant: a worker is `online` while its last event says online or
//! heartbeat and is no older than three of its heartbeat intervals (a
//! SIGKILLed worker turns `offline` by itself); a worker is forgotten a
//! retention after its last event. Only trusted workers' events reach here
//! (the projection checks their `user_id` as for verdicts).

use std::time::Duration;

use dashmap::DashMap;
use serde::Serialize;
use verify_core::{now_ms, KeyFamily, KeyId, WorkerBeat, WorkerState};

use crate::store::rfc3339;

/// Heartbeats a worker may miss before it counts as offline.
const MISSED_BEATS: u64 = 3;

#[derive(Default)]
pub struct Workers {
    seen: DashMap<String, Seen>,
}

struct Seen {
    beat: WorkerBeat,
    last_seen_ms: u64,
}

/// A worker as `GET /api/workers` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerView {
    pub name: String,
    pub status: &'static str,
    pub last_seen: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub started_at: String,
    pub processed: u64,
    pub failed: u64,
    pub in_flight: u64,
    pub verify_threads: u32,
}

/// A key as `GET /api/keys` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub key_id: KeyId,
    /// `RSA`, `EC` or `Ed25519`.
    pub family: KeyFamily,
    /// `2048-bit`, `P-256`, `Ed25519`.
    pub detail: String,
    /// SHA-256 of the key's SubjectPublicKeyInfo DER, lowercase hex.
    pub fingerprint: String,
    /// The online workers serving it.
    pub workers: Vec<String>,
}

impl Workers {
    /// Records what worker `name` said at `at_ms` (an older event than the
    /// last one seen changes nothing: the stream may replay out of order
    /// across reconnects).
    pub fn apply(&self, name: &str, at_ms: u64, beat: &WorkerBeat) {
        let at_ms = at_ms.min(now_ms());
        let mut seen = self.seen.entry(name.to_owned()).or_insert_with(|| Seen {
            beat: beat.clone(),
            last_seen_ms: 0,
        });
        if at_ms >= seen.last_seen_ms {
            seen.beat = beat.clone();
            seen.last_seen_ms = at_ms;
        }
    }

    fn is_online(seen: &Seen, now: u64) -> bool {
        seen.beat.state != WorkerState::Offline
            && now.saturating_sub(seen.last_seen_ms) <= seen.beat.heartbeat_ms.max(1) * MISSED_BEATS
    }

    /// Every worker known, by name.
    pub fn list(&self) -> Vec<WorkerView> {
        let now = now_ms();
        let mut all: Vec<WorkerView> = self
            .seen
            .iter()
            .map(|e| {
                let seen = e.value();
                let beat = &seen.beat;
                WorkerView {
                    name: e.key().clone(),
                    status: if Self::is_online(seen, now) {
                        "online"
                    } else {
                        "offline"
                    },
                    last_seen: rfc3339(seen.last_seen_ms),
                    host: beat.host.clone(),
                    pid: beat.pid,
                    version: beat.version.clone(),
                    started_at: rfc3339(beat.started_at_ms),
                    processed: beat.processed,
                    failed: beat.failed,
                    in_flight: beat.in_flight,
                    verify_threads: beat.verify_threads,
                }
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The keys online workers serve (`GET /api/keys`): one entry per key
    /// id and fingerprint, with the workers serving it. Two entries with one
    /// id and different fingerprints mean a rotation is under way (or the
    /// workers' key directories differ).
    pub fn keys(&self) -> Vec<KeyView> {
        let now = now_ms();
        let mut keys: std::collections::BTreeMap<(KeyId, String), KeyView> = Default::default();
        for e in self.seen.iter() {
            if !Self::is_online(e.value(), now) {
                continue;
            }
            for key in &e.value().beat.keys {
                keys.entry((key.key_id.clone(), key.fingerprint.clone()))
                    .or_insert_with(|| KeyView {
                        key_id: key.key_id.clone(),
                        family: key.family,
                        detail: key.detail.clone(),
                        fingerprint: key.fingerprint.clone(),
                        workers: Vec::new(),
                    })
                    .workers
                    .push(e.key().clone());
            }
        }
        let mut keys: Vec<KeyView> = keys.into_values().collect();
        for key in &mut keys {
            key.workers.sort();
        }
        keys
    }

    pub fn online(&self) -> usize {
        let now = now_ms();
        self.seen
            .iter()
            .filter(|e| Self::is_online(e.value(), now))
            .count()
    }

    /// Forgets workers not heard of for `retention`.
    pub fn sweep(&self, retention: Duration) {
        let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
        self.seen.retain(|_, seen| seen.last_seen_ms > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(state: WorkerState) -> WorkerBeat {
        WorkerBeat {
            state,
            host: "h".into(),
            pid: 1,
            version: "0.1.0".into(),
            started_at_ms: now_ms(),
            processed: 3,
            failed: 1,
            in_flight: 0,
            verify_threads: 2,
            heartbeat_ms: 1000,
            keys: Vec::new(),
        }
    }

    #[test]
    fn keys_lists_what_online_workers_serve_by_id_and_fingerprint() {
        use verify_core::KeySummary;
        let summary = |id: &str, fp: &str| KeySummary {
            key_id: KeyId::new(id),
            family: KeyFamily::Ec,
            detail: "P-256".into(),
            fingerprint: fp.into(),
        };
        let workers = Workers::default();
        let mut a = beat(WorkerState::Heartbeat);
        a.keys = vec![summary("k1", "aa"), summary("k2", "bb")];
        let mut b = beat(WorkerState::Heartbeat);
        b.keys = vec![summary("k1", "aa"), summary("k2", "cc")];
        let mut gone = beat(WorkerState::Offline);
        gone.keys = vec![summary("k3", "dd")];
        workers.apply("worker@b:2", now_ms(), &b);
        workers.apply("worker@a:1", now_ms(), &a);
        workers.apply("worker@c:3", now_ms(), &gone);
        let keys = workers.keys();
        let rows: Vec<(&str, &str, Vec<&str>)> = keys
            .iter()
            .map(|k| {
                (
                    k.key_id.as_str(),
                    k.fingerprint.as_str(),
                    k.workers.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("k1", "aa", vec!["worker@a:1", "worker@b:2"]),
                ("k2", "bb", vec!["worker@a:1"]),
                ("k2", "cc", vec!["worker@b:2"]),
            ]
        );
        let json = serde_json::to_value(&keys[0]).unwrap();
        assert_eq!(json["keyId"], "k1");
        assert_eq!(json["family"], "EC");
    }

    #[test]
    fn online_until_offline_or_three_beats_missed() {
        let workers = Workers::default();
        let now = now_ms();
        workers.apply("a", now, &beat(WorkerState::Online));
        workers.apply("b", now - 3_500, &beat(WorkerState::Heartbeat));
        workers.apply("c", now, &beat(WorkerState::Offline));
        let status: Vec<_> = workers
            .list()
            .iter()
            .map(|w| (w.name.clone(), w.status))
            .collect();
        assert_eq!(
            status,
            [
                ("a".into(), "online"),
                ("b".into(), "offline"),
                ("c".into(), "offline")
            ]
        );
        assert_eq!(workers.online(), 1);
        // An older event does not undo a newer one.
        workers.apply("c", now - 1_000, &beat(WorkerState::Heartbeat));
        assert_eq!(workers.list()[2].status, "offline");
    }
}
