//! The status store: every request id this gateway knows, projected from the
//! events stream (and from its own accepts, so a client reads its own write).
//!
//! Invariants: the first terminal event (`completed` / `failed`) for an id
//! wins and is never replaced (redelivery can produce a second result);
//! entries expire `retention` after the request was accepted, so memory
//! stays bounded (an event stamped more than a minute ahead of this
//! gateway's clock counts as stamped now, so no entry outlives its
//! retention); a long-poll registered on an id wakes on its result, also
//! when the id was not known yet when the poll began.
//!
//! Expiry reads only what is due: every new entry's id is filed under the
//! second it expires in ([`ExpiryIndex`]), so a sweep (and `MAX_RESULTS`'s
//! early expiry) takes the due or oldest seconds and never walks the whole
//! store, which at 6,000 requests a second and the default 15 minutes holds
//! over 5 million entries.
//!
//! Memory: an entry is a fixed 48 bytes with no allocation of its own
//! (times as 32-bit offsets, worker and key names as indexes into a table
//! of names, the details of a failure, which is rare, in a map beside),
//! plus its 16-byte id and the map's overhead, and its id again in the
//! expiry index. With `MAX_RESULTS` set the store
//! never holds more: reaching it makes the oldest entries expire early
//! (counted in `gateway_results_evicted_total`).

mod expiry;

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::Notify;
use verify_core::{now_ms, Algorithm, ErrorBody, Event, EventKind, KeyId, RequestId};

use expiry::ExpiryIndex;

/// A time (ms since the Unix epoch) as the API shows times: RFC 3339, UTC, in ms.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// What a client sees of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum Status {
    Pending,
    #[serde(rename_all = "camelCase")]
    Completed {
        valid: bool,
        algorithm: Algorithm,
        key_id: KeyId,
        worker: String,
        verify_micros: u64,
        completed_at_ms: u64,
    },
    #[serde(rename_all = "camelCase")]
    Failed {
        error: ErrorBody,
        worker: String,
        completed_at_ms: u64,
    },
}

impl Status {
    pub fn is_pending(&self) -> bool {
        matches!(self, Status::Pending)
    }
}

/// The outcome an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Valid,
    Invalid,
    Failed,
}

/// One id in 48 bytes (see the module's note on memory).
struct Entry {
    /// The first 64 bits of the fingerprint of the request accepted under
    /// this id (0: not known yet): a verdict naming another request answers
    /// one smuggled in under this id, and does not count.
    fingerprint: u64,
    /// When the entry expires, in seconds since [`Store::epoch_ms`].
    expires_s: u32,
    /// When the verdict was written, in ms after `expires - retention`
    /// (saturating), 0 while pending.
    completed_after_ms: u32,
    verify_micros: u32,
    /// Interned worker and key names (indexes into [`Names`]).
    worker: u32,
    key_id: u32,
    /// Interned name of the gateway that accepted it (for the timeline).
    gateway: u32,
    /// Interned name of the tenant that submitted it (0: none, or not
    /// known yet).
    tenant: u32,
    /// From the submission to the start of the verification.
    queue_wait_ms: u32,
    /// Which delivery answered (1: the first).
    attempt: u16,
    /// How far `expires_s` was rounded up (ms): the exact acceptance time
    /// is kept, for the timeline.
    rounded_up_ms: u16,
    /// A trace id is known: the request's own id (a trace the gateway
    /// started), or the one in [`Store::traces`].
    traced: bool,
    outcome: Outcome,
    algorithm: Algorithm,
}

/// Worker and key names, each stored once; entries hold their index.
/// Names are few (a worker per process start, a key per key file) and are
/// never dropped.
#[derive(Default)]
struct Names {
    index: DashMap<Arc<str>, u32>,
    names: std::sync::RwLock<Vec<Arc<str>>>,
}

impl Names {
    fn intern(&self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        if names.is_empty() {
            names.push("".into());
        }
        *self.index.entry(name.into()).or_insert_with(|| {
            names.push(name.into());
            (names.len() - 1) as u32
        })
    }

    /// Index 0 means "none": it is never given to a name.
    fn get(&self, i: u32) -> String {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names
            .get(i as usize)
            .map(|n| n.to_string())
            .unwrap_or_default()
    }
}

/// What applying an event changed (drives metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new pending request.
    Accepted,
    /// The first result for the id; `latency_ms` is submit-to-result.
    Finished {
        outcome: &'static str,
        latency_ms: u64,
    },
    /// Nothing changed (a duplicate, a late `accepted`, an expired event).
    Ignored,
    /// A later result for an id that already has one.
    Duplicate,
    /// A verdict on another request than the one accepted under this id.
    Mismatch,
}

struct KeyEntry {
    id: RequestId,
    /// [`verify_core::VerifyRequest::fingerprint`] of that request.
    fingerprint: Option<String>,
    expires_at_ms: u64,
    /// Read from the stream (not only this gateway's own accept): the
    /// stream's order decides which request a key belongs to, so every
    /// gateway ends up with the same answer.
    from_stream: bool,
}

/// Where an event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The events stream, in its order.
    Stream,
    /// This gateway's own accept, before the stream echoes it.
    Local,
}

/// The first 64 bits of a fingerprint (0: none, or not 32 hex digits).
/// Finding a request whose fingerprint shares them with a given one takes
/// about 2^64 hashes: enough to tell an id's request from a smuggled one.
fn fingerprint_bits(hex: Option<&String>) -> u64 {
    hex.filter(|h| h.len() == 32)
        .and_then(|h| u64::from_str_radix(&h[..16], 16).ok())
        .unwrap_or(0)
}

/// What an `Idempotency-Key` already stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// Not used within the retention window.
    Unused,
    /// Used for the same request: answer with its id.
    Same(RequestId),
    /// Used for another request (a different body).
    Other(RequestId),
}

/// How far ahead of this gateway's clock an event may be stamped.
const MAX_CLOCK_SKEW_MS: u64 = 60_000;

/// Shards of the maps that hold an item per request (entries, caller trace
/// ids, idempotency keys).
///
/// A hash map grows by moving every item into a table twice the size,
/// holding its lock meanwhile, and in the gateway the caller's thread is a
/// runtime thread serving every request. DashMap's default of four shards a
/// CPU means one table of an eighth of the store on two cores, all eight
/// growing within a few hundred inserts of each other: filling a store
/// with a million results, the longest single result took 9.9-10.8 ms (37-38
/// ms at five million, the 15 minutes' worth of 6,000 requests a second),
/// against 3.4-3.9 ms (7.4-7.9) with 1,024 shards, both without huge pages
/// (`crate::huge_pages`). A table then holds a thousandth of the store and
/// grows in a thousand small steps spread over the inserts
/// (`cargo run --release -p gateway --example store_memory`;
/// docs/benchmarks.md, "The store grew in stalls").
const PER_REQUEST_SHARDS: usize = 1024;

fn per_request_map<K: Eq + std::hash::Hash, V>() -> DashMap<K, V> {
    DashMap::with_shard_amount(PER_REQUEST_SHARDS)
}

pub struct Store {
    entries: DashMap<RequestId, Entry>,
    /// How many `entries` (DashMap's own count locks every shard in turn).
    len: AtomicUsize,
    /// Worker and key names, shared by the entries naming them.
    names: Names,
    /// The details of failures (rare, so kept beside the entries).
    failures: DashMap<RequestId, ErrorBody>,
    /// Trace ids other than the request's own id (a caller's trace, or one
    /// a worker started): kept beside the entries, which then need no
    /// 16 bytes of their own for the common case.
    traces: DashMap<RequestId, [u8; 16]>,
    /// Requests a worker dead-lettered (rare): reason, when, by whom.
    dead_letters: DashMap<RequestId, (u32, u64, u32)>,
    /// Entries count time in seconds from here (ms since the Unix epoch):
    /// an hour before the store was made, so replayed events fit.
    epoch_ms: u64,
    /// At most this many entries (`MAX_RESULTS`).
    max_entries: Option<usize>,
    /// Held by whoever is evicting (one at a time).
    evicting: std::sync::Mutex<()>,
    /// Every entry's id under the second it expires in.
    expiry: ExpiryIndex,
    /// Long-polls waiting on an id; removed and woken by its first result.
    waiters: DashMap<RequestId, Arc<Notify>>,
    /// `Idempotency-Key` -> the request it was first accepted for.
    idempotency: DashMap<String, KeyEntry>,
    retention: Duration,
    pending: AtomicI64,
}

impl Store {
    pub fn new(retention: Duration) -> Self {
        Store::with_limit(retention, None)
    }

    /// A store that holds at most `max_entries` (then the oldest go first).
    pub fn with_limit(retention: Duration, max_entries: Option<usize>) -> Self {
        Store {
            entries: per_request_map(),
            len: AtomicUsize::new(0),
            names: Names::default(),
            failures: DashMap::new(),
            traces: per_request_map(),
            dead_letters: DashMap::new(),
            epoch_ms: now_ms().saturating_sub(retention.as_millis() as u64 + 3_600_000),
            max_entries: max_entries.map(|m| m.max(1)),
            evicting: std::sync::Mutex::new(()),
            expiry: ExpiryIndex::default(),
            waiters: DashMap::new(),
            idempotency: per_request_map(),
            retention,
            pending: AtomicI64::new(0),
        }
    }

    fn retention_ms(&self) -> u64 {
        self.retention.as_millis() as u64
    }

    pub fn get(&self, id: &RequestId) -> Option<Status> {
        let entry = self.entries.get(id)?;
        (self.expires_at_ms(&entry) > now_ms()).then(|| self.status(id, &entry))
    }

    /// Whether `id` is known, not expired, and still waits for its verdict
    /// (a dead-lettered request waits no more).
    pub fn awaits_verdict(&self, id: &RequestId) -> bool {
        self.entries.get(id).is_some_and(|entry| {
            entry.outcome == Outcome::Pending && self.expires_at_ms(&entry) > now_ms()
        }) && !self.dead_letters.contains_key(id)
    }

    fn expires_at_ms(&self, entry: &Entry) -> u64 {
        self.epoch_ms + u64::from(entry.expires_s) * 1000
    }

    /// When the request was accepted (ms since the epoch, exact).
    fn accepted_at_ms(&self, entry: &Entry) -> u64 {
        self.expires_at_ms(entry)
            .saturating_sub(u64::from(entry.rounded_up_ms) + self.retention_ms())
    }

    fn new_entry(&self, expires_at_ms: u64, fingerprint: u64) -> Entry {
        // Rounded up to the second: an entry never expires early.
        let exact_ms = expires_at_ms.saturating_sub(self.epoch_ms);
        let expires_s = exact_ms.div_ceil(1000);
        Entry {
            rounded_up_ms: (expires_s * 1000 - exact_ms) as u16,
            traced: false,
            fingerprint,
            expires_s: u32::try_from(expires_s).unwrap_or(u32::MAX),
            completed_after_ms: 0,
            verify_micros: 0,
            worker: 0,
            key_id: 0,
            gateway: 0,
            tenant: 0,
            queue_wait_ms: 0,
            attempt: 0,
            outcome: Outcome::Pending,
            algorithm: Algorithm::DEFAULT,
        }
    }

    /// What a client sees of an entry.
    fn status(&self, id: &RequestId, entry: &Entry) -> Status {
        let completed_at_ms = self.accepted_at_ms(entry) + u64::from(entry.completed_after_ms);
        match entry.outcome {
            Outcome::Pending => Status::Pending,
            Outcome::Valid | Outcome::Invalid => Status::Completed {
                valid: entry.outcome == Outcome::Valid,
                algorithm: entry.algorithm,
                key_id: KeyId::new(self.names.get(entry.key_id)),
                worker: self.names.get(entry.worker),
                verify_micros: u64::from(entry.verify_micros),
                completed_at_ms,
            },
            Outcome::Failed => Status::Failed {
                error: self
                    .failures
                    .get(id)
                    .map(|e| e.clone())
                    .unwrap_or(ErrorBody {
                        code: "internal_error".into(),
                        message: String::new(),
                    }),
                worker: self.names.get(entry.worker),
                completed_at_ms,
            },
        }
    }

    /// Whether the store holds `id` (expired or not).
    pub fn contains(&self, id: &RequestId) -> bool {
        self.entries.contains_key(id)
    }

    /// Whether `tenant` may see `id`: on an open gateway (`None`) anyone
    /// may; otherwise only the tenant whose `accepted` event named it (an
    /// id whose `accepted` has not been read yet is no one's for now).
    pub fn belongs_to(&self, id: &RequestId, tenant: Option<&str>) -> bool {
        let Some(tenant) = tenant else {
            return true;
        };
        let Some(owner) = self.names.index.get(tenant).map(|i| *i) else {
            return false;
        };
        self.entries.get(id).is_some_and(|e| e.tenant == owner)
    }

    /// The request's W3C trace id (32 hex digits), when one is known.
    pub fn trace_id(&self, id: &RequestId) -> Option<String> {
        let traced = self.entries.get(id)?.traced;
        traced.then(|| self.trace_of(id))
    }

    fn trace_of(&self, id: &RequestId) -> String {
        match self.traces.get(id) {
            Some(trace) => verify_core::hex_text::encode(*trace),
            None => id.as_uuid().simple().to_string(),
        }
    }

    /// The steps of a request, oldest first (None: unknown or expired):
    /// `accepted` (by which gateway), `dead_lettered` (why, by which
    /// worker), `completed` / `failed` (by which worker, on which delivery,
    /// after how long a wait, how long the verification took).
    pub fn timeline(&self, id: &RequestId) -> Option<Vec<serde_json::Value>> {
        let entry = self.entries.get(id)?;
        if self.expires_at_ms(&entry) <= now_ms() {
            return None;
        }
        let accepted_at_ms = self.accepted_at_ms(&entry);
        let mut steps = vec![(
            accepted_at_ms,
            serde_json::json!({
                "type": "accepted",
                "at": rfc3339(accepted_at_ms),
                "by": self.names.get(entry.gateway),
            }),
        )];
        if let Some(dead) = self.dead_letters.get(id) {
            let (reason, at_ms, by) = *dead;
            steps.push((
                at_ms,
                serde_json::json!({
                    "type": "dead_lettered",
                    "at": rfc3339(at_ms),
                    "by": self.names.get(by),
                    "reason": self.names.get(reason),
                }),
            ));
        }
        if entry.outcome != Outcome::Pending {
            let status = self.status(id, &entry);
            let (at_ms, mut step) = match status {
                Status::Completed {
                    valid,
                    verify_micros,
                    completed_at_ms,
                    ..
                } => (
                    completed_at_ms,
                    serde_json::json!({
                        "type": "completed",
                        "valid": valid,
                        "verifyMicros": verify_micros,
                    }),
                ),
                Status::Failed {
                    error,
                    completed_at_ms,
                    ..
                } => (
                    completed_at_ms,
                    serde_json::json!({ "type": "failed", "errorCode": error.code }),
                ),
                Status::Pending => unreachable!("not pending"),
            };
            step["at"] = rfc3339(at_ms).into();
            step["by"] = self.names.get(entry.worker).into();
            if entry.attempt > 0 {
                step["attempt"] = entry.attempt.into();
                step["redelivered"] = (entry.attempt > 1).into();
                step["queueWaitMs"] = entry.queue_wait_ms.into();
            }
            steps.push((at_ms, step));
        }
        steps.sort_by_key(|(at_ms, _)| *at_ms);
        // The gateway and the worker continue one trace: every step names it.
        let trace_id = entry.traced.then(|| self.trace_of(id));
        Some(
            steps
                .into_iter()
                .map(|(_, mut step)| {
                    if let Some(trace_id) = &trace_id {
                        step["traceId"] = trace_id.as_str().into();
                    }
                    step
                })
                .collect(),
        )
    }

    /// Makes room for `id` when the store is full and `id` is new: the
    /// oldest sixteenth of the limit expires at once (so the cost is spread
    /// over many inserts).
    fn make_room(&self, id: &RequestId) {
        let Some(max) = self.max_entries else {
            return;
        };
        if self.len() < max || self.entries.contains_key(id) {
            return;
        }
        let Ok(_one_at_a_time) = self.evicting.try_lock() else {
            return;
        };
        let wanted = (self.len() + 1 - max).max(max / 16);
        let evicted = self
            .expiry
            .take_oldest(wanted)
            .iter()
            .filter(|(second, id)| self.remove_if(id, |entry| entry.expires_s == *second))
            .count();
        metrics::counter!("gateway_results_evicted_total").increment(evicted as u64);
        tracing::warn!(
            evicted,
            max,
            "MAX_RESULTS reached: the oldest results expired early"
        );
    }

    /// Removes `id`'s entry if `expired` says so, with what is kept beside
    /// it; whether it was removed.
    fn remove_if(&self, id: &RequestId, expired: impl FnOnce(&Entry) -> bool) -> bool {
        let Some((_, entry)) = self.entries.remove_if(id, |_, entry| expired(entry)) else {
            return false;
        };
        self.len.fetch_sub(1, Ordering::Relaxed);
        if entry.outcome == Outcome::Pending {
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
        if entry.outcome == Outcome::Failed {
            self.failures.remove(id);
        }
        self.traces.remove(id);
        self.dead_letters.remove(id);
        true
    }

    /// What `key` stands for within the retention window, given the
    /// fingerprint of the request now submitted with it.
    pub fn idempotency_key(&self, key: &str, fingerprint: &str) -> KeyUse {
        match self.idempotency.get(key) {
            Some(found) if found.expires_at_ms > now_ms() => {
                if found
                    .fingerprint
                    .as_deref()
                    .is_none_or(|f| f == fingerprint)
                {
                    KeyUse::Same(found.id)
                } else {
                    KeyUse::Other(found.id)
                }
            }
            _ => KeyUse::Unused,
        }
    }

    /// Applies one lifecycle event; safe to call with duplicates and out of order.
    pub fn apply(&self, event: &Event, origin: Origin) -> Applied {
        let now = now_ms();
        let at_ms = if event.at_ms > now + MAX_CLOCK_SKEW_MS {
            now
        } else {
            event.at_ms
        };
        let expires_at_ms = at_ms.saturating_add(self.retention_ms());
        if expires_at_ms <= now {
            return Applied::Ignored;
        }
        match &event.kind {
            EventKind::Accepted {
                idempotency_key,
                fingerprint,
                tenant,
                ..
            } => {
                if let Some(key) = idempotency_key {
                    self.bind_key(key, event.id, fingerprint, expires_at_ms, origin, now);
                }
                self.make_room(&event.id);
                let mut inserted = false;
                let mut entry = self.entries.entry(event.id).or_insert_with(|| {
                    inserted = true;
                    self.len.fetch_add(1, Ordering::Relaxed);
                    self.new_entry(expires_at_ms, 0)
                });
                if entry.fingerprint == 0 {
                    entry.fingerprint = fingerprint_bits(fingerprint.as_ref());
                }
                if entry.gateway == 0 && !event.source.is_empty() {
                    entry.gateway = self.names.intern(&event.source);
                }
                if entry.tenant == 0 {
                    if let Some(tenant) = tenant.as_deref().filter(|t| !t.is_empty()) {
                        entry.tenant = self.names.intern(tenant);
                    }
                }
                self.note_trace(&mut entry, event);
                let expires_s = entry.expires_s;
                // (The shard is let go before the index is taken: the
                // sweep takes the index, then the shards.)
                drop(entry);
                if inserted {
                    self.expiry.add(expires_s, event.id);
                    self.pending.fetch_add(1, Ordering::Relaxed);
                    Applied::Accepted
                } else {
                    Applied::Ignored
                }
            }
            EventKind::Completed { fingerprint, .. } | EventKind::Failed { fingerprint, .. } => {
                let answers = fingerprint_bits(fingerprint.as_ref());
                let (outcome, submitted_at_ms) = match &event.kind {
                    EventKind::Completed {
                        valid,
                        submitted_at_ms,
                        ..
                    } => (
                        if *valid {
                            Outcome::Valid
                        } else {
                            Outcome::Invalid
                        },
                        *submitted_at_ms,
                    ),
                    EventKind::Failed {
                        submitted_at_ms, ..
                    } => (Outcome::Failed, *submitted_at_ms),
                    EventKind::Accepted { .. }
                    | EventKind::Checkpoint
                    | EventKind::Worker(_)
                    | EventKind::DeadLettered { .. } => (Outcome::Failed, 0),
                };
                self.make_room(&event.id);
                let mut inserted = None;
                let applied = {
                    let mut entry = self.entries.entry(event.id).or_insert_with(|| {
                        // A result before (or without) its `accepted`: count
                        // it as pending for a moment so the gauge balances.
                        self.pending.fetch_add(1, Ordering::Relaxed);
                        self.len.fetch_add(1, Ordering::Relaxed);
                        let entry = self.new_entry(expires_at_ms, answers);
                        inserted = Some(entry.expires_s);
                        entry
                    });
                    if entry.fingerprint != 0 && entry.fingerprint != answers {
                        return Applied::Mismatch;
                    }
                    if entry.outcome == Outcome::Pending {
                        self.note_trace(&mut entry, event);
                        self.record_verdict(&mut entry, event, outcome, at_ms);
                        self.pending.fetch_sub(1, Ordering::Relaxed);
                        Applied::Finished {
                            outcome: match outcome {
                                Outcome::Valid => "valid",
                                Outcome::Invalid => "invalid",
                                _ => "failed",
                            },
                            latency_ms: at_ms.saturating_sub(submitted_at_ms),
                        }
                    } else {
                        Applied::Duplicate
                    }
                };
                if let Some(expires_s) = inserted {
                    self.expiry.add(expires_s, event.id);
                }
                if let Some((_, notify)) = self.waiters.remove(&event.id) {
                    notify.notify_waiters();
                }
                applied
            }
            EventKind::DeadLettered { reason, .. } => {
                // Noted while the entry is held, so a sweep removing it
                // cannot leave the note behind.
                if let Some(_entry) = self.entries.get(&event.id) {
                    let note = (
                        self.names.intern(reason),
                        at_ms,
                        self.names.intern(&event.source),
                    );
                    self.dead_letters.insert(event.id, note);
                }
                Applied::Ignored
            }
            EventKind::Checkpoint | EventKind::Worker(_) => Applied::Ignored,
        }
    }

    /// Binds `key` to `id` unless it is bound (and not expired) already.
    /// The stream's order wins over this gateway's own accept: if another
    /// gateway's request with the key came first in the stream, the key is
    /// rebound to it here too.
    fn bind_key(
        &self,
        key: &str,
        id: RequestId,
        fingerprint: &Option<String>,
        expires_at_ms: u64,
        origin: Origin,
        now: u64,
    ) {
        let fresh = KeyEntry {
            id,
            fingerprint: fingerprint.clone(),
            expires_at_ms,
            from_stream: origin == Origin::Stream,
        };
        match self.idempotency.entry(key.to_owned()) {
            dashmap::Entry::Vacant(slot) => {
                slot.insert(fresh);
            }
            dashmap::Entry::Occupied(mut slot) => {
                let held = slot.get_mut();
                if held.expires_at_ms <= now {
                    *held = fresh;
                } else if origin == Origin::Stream && !held.from_stream {
                    // The first accept of this key the stream shows decides.
                    *held = fresh;
                }
            }
        }
    }

    #[cfg(test)]
    fn apply_stream(&self, event: &Event) -> Applied {
        self.apply(event, Origin::Stream)
    }

    /// Waits until `id` has a result, `timeout` passes or `stop` resolves;
    /// returns the status then (None: unknown or expired). An id not known
    /// yet is waited for too: another gateway may have accepted it a moment
    /// ago, and its `accepted` event (or its result) is on its way.
    pub async fn wait(
        &self,
        id: &RequestId,
        timeout: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Option<Status> {
        let early = {
            let notify = self.waiters.entry(*id).or_default().clone();
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a result landing in between still wakes us.
            notified.as_mut().enable();
            let status = self.get(id);
            if status.as_ref().is_none_or(Status::is_pending) {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(timeout) => {}
                    _ = stop => {}
                }
                None
            } else {
                Some(status)
            }
        };
        // The last waiter out removes the entry (a result removes it too).
        self.waiters.remove_if(id, |_, n| Arc::strong_count(n) == 1);
        early.unwrap_or_else(|| self.get(id))
    }

    /// Drops the entries that have expired; returns how many. Reads only
    /// the ids filed under seconds now past.
    pub fn sweep(&self) -> usize {
        self.sweep_at(now_ms())
    }

    fn sweep_at(&self, now: u64) -> usize {
        let now_s = u32::try_from(now.saturating_sub(self.epoch_ms) / 1000).unwrap_or(u32::MAX);
        self.expiry
            .take_due(now_s)
            .iter()
            .flatten()
            .filter(|id| self.remove_if(id, |entry| self.expires_at_ms(entry) <= now))
            .count()
    }

    /// Drops expired `Idempotency-Key`s (a walk over the keys: only clients
    /// that send the header make them, so the walk is run less often).
    pub fn sweep_keys(&self) {
        let now = now_ms();
        self.idempotency.retain(|_, k| k.expires_at_ms > now);
    }

    pub fn pending(&self) -> i64 {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Store {
    /// Keeps the first trace id an event of the request names (an event
    /// without a `traceparent` names the trace whose id is the request id).
    fn note_trace(&self, entry: &mut Entry, event: &Event) {
        if entry.traced {
            return;
        }
        let Some(traceparent) = &event.traceparent else {
            entry.traced = true;
            return;
        };
        let trace = telemetry::trace::trace_id_of(traceparent).to_be_bytes();
        if trace == [0; 16] {
            return;
        }
        if trace != *event.id.as_uuid().as_bytes() {
            self.traces.insert(event.id, trace);
        }
        entry.traced = true;
    }

    /// Writes a verdict into a pending entry; `at_ms` is its (clamped) time.
    fn record_verdict(&self, entry: &mut Entry, event: &Event, outcome: Outcome, at_ms: u64) {
        entry.outcome = outcome;
        let accepted_at_ms = self.accepted_at_ms(entry);
        entry.completed_after_ms =
            u32::try_from(at_ms.saturating_sub(accepted_at_ms)).unwrap_or(u32::MAX);
        entry.worker = self.names.intern(&event.source);
        match &event.kind {
            EventKind::Completed {
                algorithm,
                key_id,
                verify_micros,
                ..
            } => {
                entry.algorithm = *algorithm;
                entry.key_id = self.names.intern(key_id.as_str());
                entry.verify_micros = u32::try_from(*verify_micros).unwrap_or(u32::MAX);
            }
            EventKind::Failed { error, .. } => {
                self.failures.insert(event.id, error.clone());
            }
            EventKind::Accepted { .. }
            | EventKind::Checkpoint
            | EventKind::Worker(_)
            | EventKind::DeadLettered { .. } => {}
        }
        if let EventKind::Completed {
            delivery: Some(info),
            ..
        }
        | EventKind::Failed {
            delivery: Some(info),
            ..
        } = &event.kind
        {
            entry.attempt = u16::try_from(info.attempt).unwrap_or(u16::MAX);
            entry.queue_wait_ms = u32::try_from(info.queue_wait_ms).unwrap_or(u32::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_small() {
        assert!(
            std::mem::size_of::<Entry>() <= 48,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn max_results_bounds_the_store_and_the_oldest_go_first() {
        let store = Store::with_limit(Duration::from_secs(60), Some(64));
        let mut ids = Vec::new();
        for i in 0..200u64 {
            let mut event = accepted(RequestId::new());
            event.at_ms -= 10_000 - i * 10;
            ids.push(event.id);
            store.apply_stream(&event);
            assert!(store.len() <= 64, "{} entries", store.len());
        }
        assert!(store.get(&ids[199]).is_some(), "the newest is kept");
        assert!(store.get(&ids[0]).is_none(), "the oldest went first");
        assert_eq!(store.pending(), store.len() as i64);
    }

    /// The maps with an item per request grow a thousandth of the store at
    /// a time, whatever the host's CPU count (see [`PER_REQUEST_SHARDS`]).
    #[test]
    fn the_maps_with_an_item_per_request_have_a_thousand_shards() {
        let store = Store::new(Duration::from_secs(60));
        assert_eq!(store.entries.shards().len(), PER_REQUEST_SHARDS);
        assert_eq!(store.traces.shards().len(), PER_REQUEST_SHARDS);
        assert_eq!(store.idempotency.shards().len(), PER_REQUEST_SHARDS);
    }

    #[test]
    fn the_count_of_entries_follows_the_map_through_redeliveries_and_removals() {
        let store = Store::with_limit(Duration::from_secs(60), Some(8));
        for _ in 0..20 {
            let id = RequestId::new();
            let event = accepted(id);
            store.apply_stream(&event);
            store.apply_stream(&event);
            store.apply_stream(&completed(id, true));
            store.apply_stream(&completed(id, true));
            // A verdict read before its `accepted`.
            store.apply_stream(&completed(RequestId::new(), false));
            assert_eq!(store.len(), store.entries.len());
        }
        assert_eq!(store.len(), 8, "evictions counted too");
        assert_eq!(store.sweep_at(now_ms() + 61_000), 8);
        assert_eq!((store.len(), store.entries.len()), (0, 0));
        assert!(store.is_empty());
    }

    #[test]
    fn a_sweep_drops_what_expired_with_what_was_kept_beside_it() {
        let store = Store::new(Duration::from_secs(60));
        let now = now_ms();
        // Accepted 30 s ago: expires 30 s from now.
        let older = Event {
            at_ms: now - 30_000,
            ..accepted(RequestId::new())
        };
        store.apply_stream(&older);
        // Accepted now and failed: its error is kept beside the entry.
        let failed = accepted(RequestId::new());
        store.apply_stream(&failed);
        let error = ErrorBody {
            code: "unknown_key".into(),
            message: "no key".into(),
        };
        let failure = Event::new(
            failed.id,
            "w",
            EventKind::Failed {
                error: error.clone(),
                submitted_at_ms: now,
                fingerprint: Some(F1.into()),
                delivery: None,
            },
        );
        store.apply_stream(&failure);
        // A caller's trace, and a dead letter, both kept beside the entry.
        let traced = accepted(RequestId::new()).traced(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        ));
        store.apply_stream(&traced);
        let dead = accepted(RequestId::new());
        store.apply_stream(&dead);
        store.apply_stream(&Event::new(
            dead.id,
            "w",
            EventKind::DeadLettered {
                reason: "expired".into(),
                delivery: None,
            },
        ));
        // A verdict with no `accepted` read: an entry of its own.
        let orphan = completed(RequestId::new(), true);
        store.apply_stream(&orphan);
        assert_eq!(store.len(), 5);
        assert_eq!(store.pending(), 3);
        assert_eq!(
            (
                store.failures.len(),
                store.traces.len(),
                store.dead_letters.len()
            ),
            (1, 1, 1)
        );

        assert_eq!(store.sweep_at(now), 0, "nothing is due yet");
        assert_eq!(store.sweep_at(now + 45_000), 1, "the older one is due");
        assert!(!store.contains(&older.id));
        assert_eq!(store.pending(), 2);
        assert!(
            matches!(store.get(&failed.id), Some(Status::Failed { error: e, .. }) if e == error)
        );

        assert_eq!(store.sweep_at(now + 61_000), 4, "the rest is due");
        assert!(store.is_empty());
        assert_eq!(store.pending(), 0);
        assert_eq!(
            (
                store.failures.len(),
                store.traces.len(),
                store.dead_letters.len()
            ),
            (0, 0, 0),
            "nothing is left beside the entries"
        );
        assert!(store.expiry.lock().is_empty(), "nor in the expiry index");
    }

    #[test]
    fn an_id_evicted_early_and_accepted_again_lives_its_own_retention() {
        let store = Store::with_limit(Duration::from_secs(60), Some(16));
        let now = now_ms();
        let first = Event {
            at_ms: now - 50_000,
            ..accepted(RequestId::new())
        };
        store.apply_stream(&first);
        for _ in 0..16 {
            store.apply_stream(&accepted(RequestId::new()));
        }
        assert!(!store.contains(&first.id), "the oldest went first");
        assert_eq!(store.len(), 16, "and no more than needed");
        // The same id again (a replay): filed anew, under its own second.
        let again = Event {
            at_ms: now,
            ..accepted(first.id)
        };
        store.apply_stream(&again);
        assert_eq!(store.sweep_at(now + 15_000), 0);
        assert!(store.contains(&first.id), "kept for its own retention");
        assert_eq!(store.pending(), 16);
        assert_eq!(store.sweep_at(now + 61_000), 16);
        assert!(store.is_empty());
        assert_eq!(store.pending(), 0);
    }

    const F1: &str = "0123456789abcdef0123456789abcdef";
    const F2: &str = "fedcba9876543210fedcba9876543210";

    fn accepted(id: RequestId) -> Event {
        Event::new(
            id,
            "gw",
            EventKind::Accepted {
                algorithm: Algorithm::DEFAULT,
                key_id: None,
                idempotency_key: Some("k".into()),
                fingerprint: Some(F1.into()),
                tenant: None,
            },
        )
    }

    fn completed(id: RequestId, valid: bool) -> Event {
        Event::new(
            id,
            "w",
            EventKind::Completed {
                valid,
                algorithm: Algorithm::DEFAULT,
                key_id: KeyId::new("default"),
                verify_micros: 1,
                submitted_at_ms: now_ms(),
                fingerprint: Some(F1.into()),
                delivery: None,
            },
        )
    }

    #[test]
    fn the_timeline_keeps_exact_times_and_the_trace() {
        let store = Store::new(Duration::from_secs(60));
        let id = RequestId::new();
        // Accepted 1,234 ms into a second; answered 57 ms later.
        let at_ms = (now_ms() / 1000 - 5) * 1000 + 234;
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let accepted = Event {
            at_ms,
            ..accepted(id)
        }
        .traced(Some(traceparent.into()));
        store.apply_stream(&accepted);
        let done = Event {
            at_ms: at_ms + 57,
            ..completed(id, true)
        }
        .traced(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01".into(),
        ));
        store.apply_stream(&done);
        let steps = store.timeline(&id).unwrap();
        let at = |ms: u64| {
            humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                .to_string()
        };
        assert_eq!(steps[0]["type"], "accepted");
        assert_eq!(steps[0]["at"], at(at_ms));
        assert_eq!(steps[1]["type"], "completed");
        assert_eq!(steps[1]["at"], at(at_ms + 57));
        for step in &steps {
            assert_eq!(step["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        }
        assert_eq!(
            store.trace_id(&id).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        match store.get(&id) {
            Some(Status::Completed {
                completed_at_ms, ..
            }) => assert_eq!(completed_at_ms, at_ms + 57),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn first_result_wins_and_pending_balances() {
        let store = Store::new(Duration::from_secs(60));
        let id = RequestId::new();
        assert_eq!(store.apply_stream(&accepted(id)), Applied::Accepted);
        assert_eq!(store.pending(), 1);
        assert!(matches!(
            store.apply_stream(&completed(id, true)),
            Applied::Finished {
                outcome: "valid",
                ..
            }
        ));
        assert_eq!(
            store.apply_stream(&completed(id, false)),
            Applied::Duplicate
        );
        assert!(matches!(
            store.get(&id),
            Some(Status::Completed { valid: true, .. })
        ));
        // A late `accepted` does not reset a finished request.
        assert_eq!(store.apply_stream(&accepted(id)), Applied::Ignored);
        assert_eq!(store.pending(), 0);
        assert_eq!(store.idempotency_key("k", F1), KeyUse::Same(id));
        assert_eq!(store.idempotency_key("k", F2), KeyUse::Other(id));
        assert_eq!(store.idempotency_key("k2", F1), KeyUse::Unused);
    }

    #[test]
    fn a_verdict_on_another_request_under_the_same_id_does_not_count() {
        let store = Store::new(Duration::from_secs(60));
        let id = RequestId::new();
        store.apply_stream(&accepted(id));
        let mut smuggled = completed(id, true);
        if let EventKind::Completed { fingerprint, .. } = &mut smuggled.kind {
            *fingerprint = Some(F2.into());
        }
        assert_eq!(store.apply_stream(&smuggled), Applied::Mismatch);
        let mut unnamed = completed(id, true);
        if let EventKind::Completed { fingerprint, .. } = &mut unnamed.kind {
            *fingerprint = None;
        }
        assert_eq!(store.apply_stream(&unnamed), Applied::Mismatch);
        assert_eq!(store.get(&id), Some(Status::Pending));
        assert!(matches!(
            store.apply_stream(&completed(id, false)),
            Applied::Finished { .. }
        ));
    }

    #[test]
    fn the_streams_order_decides_a_key_and_expired_keys_are_rebound() {
        let store = Store::new(Duration::from_secs(60));
        let (mine, theirs) = (RequestId::new(), RequestId::new());
        // This gateway accepted `mine` with key k; another gateway's request
        // with k reached the stream first: every gateway settles on it.
        store.apply(&accepted(mine), Origin::Local);
        assert_eq!(store.idempotency_key("k", F1), KeyUse::Same(mine));
        store.apply_stream(&accepted(theirs));
        store.apply_stream(&accepted(mine));
        assert_eq!(store.idempotency_key("k", F1), KeyUse::Same(theirs));
        // An expired binding gives way to a new request with the key.
        let mut old = accepted(RequestId::new());
        if let EventKind::Accepted {
            idempotency_key, ..
        } = &mut old.kind
        {
            *idempotency_key = Some("old".into());
        }
        store.apply_stream(&old);
        store.idempotency.get_mut("old").unwrap().expires_at_ms = now_ms() - 1;
        let mut again = accepted(RequestId::new());
        if let EventKind::Accepted {
            idempotency_key, ..
        } = &mut again.kind
        {
            *idempotency_key = Some("old".into());
        }
        store.apply(&again, Origin::Local);
        assert_eq!(store.idempotency_key("old", F1), KeyUse::Same(again.id));
    }

    #[test]
    fn events_from_the_future_expire_like_events_of_now() {
        let store = Store::new(Duration::from_secs(60));
        let mut far = completed(RequestId::new(), true);
        far.at_ms += 365 * 24 * 3600 * 1000;
        store.apply_stream(&far);
        // (Each read guard is dropped at once: holding one across an apply
        // would deadlock on the shard.)
        let expires_at = |id: &RequestId| store.expires_at_ms(&store.entries.get(id).unwrap());
        let expires = expires_at(&far.id);
        // (Stored to the second, rounded up.)
        assert!(expires <= now_ms() + 61_000, "pinned until {expires}");
        // A little skew is kept as it is.
        let mut near = completed(RequestId::new(), true);
        near.at_ms += 30_000;
        store.apply_stream(&near);
        let expires = expires_at(&near.id);
        assert!((near.at_ms + 60_000..near.at_ms + 61_000).contains(&expires));
        // The verdict's time comes back to the millisecond.
        match store.get(&near.id) {
            Some(Status::Completed {
                completed_at_ms,
                worker,
                key_id,
                ..
            }) => {
                assert_eq!(completed_at_ms, near.at_ms);
                assert_eq!(worker, "w");
                assert_eq!(key_id.as_str(), "default");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_long_poll_waits_for_an_id_it_does_not_know_yet() {
        let store = Arc::new(Store::new(Duration::from_secs(60)));
        let id = RequestId::new();
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .wait(&id, Duration::from_secs(20), std::future::pending())
                    .await
            })
        };
        wait_registered(&store, &id).await;
        store.apply_stream(&completed(id, true));
        assert!(matches!(
            waiter.await.unwrap(),
            Some(Status::Completed { valid: true, .. })
        ));
        // Unknown and never answered: None once the wait is over.
        let unknown = store
            .wait(
                &RequestId::new(),
                Duration::from_millis(20),
                std::future::pending(),
            )
            .await;
        assert_eq!(unknown, None);
    }

    #[test]
    fn result_before_accept_and_expired_events() {
        let store = Store::new(Duration::from_secs(60));
        let id = RequestId::new();
        assert!(matches!(
            store.apply_stream(&completed(id, false)),
            Applied::Finished { .. }
        ));
        assert_eq!(store.pending(), 0);
        let mut old = accepted(RequestId::new());
        old.at_ms -= 61_000;
        assert_eq!(store.apply_stream(&old), Applied::Ignored);
    }

    /// Waits (bounded) until a long-poll on `id` has registered.
    async fn wait_registered(store: &Store, id: &RequestId) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !store.waiters.contains_key(id) {
            assert!(
                std::time::Instant::now() < deadline,
                "waiter never registered"
            );
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_long_poll_wakes_on_the_result() {
        let store = Arc::new(Store::new(Duration::from_secs(60)));
        let id = RequestId::new();
        store.apply_stream(&accepted(id));
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let status = store
                    .wait(&id, Duration::from_secs(20), std::future::pending())
                    .await;
                (status, started.elapsed())
            })
        };
        wait_registered(&store, &id).await;
        store.apply_stream(&completed(id, true));
        let (status, elapsed) = waiter.await.unwrap();
        assert!(matches!(
            status,
            Some(Status::Completed { valid: true, .. })
        ));
        assert!(elapsed < Duration::from_secs(10), "woke after {elapsed:?}");
        assert!(store.waiters.is_empty());
    }
}
