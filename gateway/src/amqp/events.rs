//! The events-stream projection: every gateway reads the whole lifecycle log
//! into its [`Store`].
//!
//! On first connect it replays from (now - retention) (`x-stream-offset` as a
//! timestamp); after a reconnect it reads again from [`REREAD`] messages
//! before the last offset it saw, so nothing is skipped even when the
//! stream's leader failed over. It appends a checkpoint event when it starts reading
//! and reports ready only once it has read that checkpoint back: everything
//! before it has been applied.
//!
//! Trust: a `completed` / `failed` event counts only when the broker-validated
//! `user_id` of its message is one of the trusted result publishers (the
//! workers' broker user). Anything else is dropped, counted in
//! `gateway_events_rejected_total{reason}` and logged once per source. Items
//! are read one by one: an unreadable item (an unknown kind, a newer
//! version) is skipped alone, never the rest of its message.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker_client::{Link, Publisher, SessionError};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use tokio_util::sync::CancellationToken;
use verify_core::{Event, EventKind, RequestId, Topology};

use crate::stats::{FailureKind, LiveStats};
use crate::store::{Applied, Origin, Store};
use crate::workers::Workers;

/// Acknowledge stream deliveries in batches (stream acks only return credit).
const ACK_BATCH: u64 = 200;

/// Messages read again before the last one seen when the projection
/// reconnects. Around a leader failover a consumer on a replica can be
/// handed the newest messages before they are committed, and the new
/// leader may hold other messages at those offsets: reading the tail again
/// (a duplicate event changes nothing) loses none of them. Far more than
/// the messages publishers can have unconfirmed at once.
const REREAD: i64 = 10_000;

pub struct Projection {
    link: Link<()>,
}

/// Who may write verdicts, and which rejected sources were already logged.
pub struct Trust {
    publishers: HashSet<String>,
    logged: Mutex<HashSet<String>>,
}

/// Distinct rejected sources logged at most (then only counted).
const MAX_LOGGED_SOURCES: usize = 1024;

impl Trust {
    pub fn new(publishers: impl IntoIterator<Item = String>) -> Self {
        Trust {
            publishers: publishers.into_iter().collect(),
            logged: Mutex::new(HashSet::new()),
        }
    }

    /// Whether `event`, published by broker user `user_id`, may be applied.
    fn admits(&self, event: &Event, user_id: Option<&str>) -> bool {
        !event.is_from_worker() || user_id.is_some_and(|u| self.publishers.contains(u))
    }

    /// Counts a dropped item; logs the first one from each source and reason.
    fn reject(&self, reason: &'static str, source: &str, detail: &dyn std::fmt::Display) {
        metrics::counter!("gateway_events_rejected_total", "reason" => reason).increment(1);
        let first = {
            let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
            logged.len() < MAX_LOGGED_SOURCES && logged.insert(format!("{reason} {source}"))
        };
        if first {
            tracing::warn!(reason, source, %detail, "dropping events from this source (logged once)");
        }
    }
}

/// Where the projection reads from and how.
pub struct Source {
    pub endpoint: broker_client::Endpoint,
    pub topology: Arc<Topology>,
    pub settings: broker_client::QueueSettings,
    /// Stream deliveries in flight to this gateway.
    pub prefetch: u16,
    pub identity: Arc<str>,
}

impl Projection {
    /// Starts projecting the stream of `source` into `store`, believing
    /// verdicts only as far as `trust` allows.
    pub fn spawn(
        source: Source,
        store: Arc<Store>,
        workers: Arc<Workers>,
        stats: Arc<LiveStats>,
        trust: Arc<Trust>,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let Source {
            endpoint,
            topology,
            settings,
            prefetch,
            identity,
        } = source;
        let started_at_ms = verify_core::now_ms();
        // -1: nothing read yet, replay by timestamp.
        let last_offset = Arc::new(AtomicI64::new(-1));
        let (link, task) = Link::spawn(
            endpoint,
            format!("{identity} events"),
            shutdown,
            move |session| {
                let topology = topology.clone();
                let settings = settings.clone();
                let store = store.clone();
                let identity = identity.clone();
                let last_offset = last_offset.clone();
                let trust = trust.clone();
                let workers = workers.clone();
                let stats = stats.clone();
                async move {
                    broker_client::declare_topology(&session.connection, &topology, &settings)
                        .await?;
                    let channel = session.channels.create().await?;
                    channel
                        .basic_qos(prefetch, BasicQosOptions::default())
                        .await?;
                    let offset = match last_offset.load(Ordering::Relaxed) {
                        -1 => {
                            let from = SystemTime::now()
                                .checked_sub(settings.retention)
                                .unwrap_or(UNIX_EPOCH)
                                .duration_since(UNIX_EPOCH)
                                .unwrap_or_default();
                            AMQPValue::Timestamp(from.as_secs())
                        }
                        seen => AMQPValue::LongLongInt((seen + 1 - REREAD).max(0)),
                    };
                    // Read again after a reconnect: applied already, not counted again.
                    let reread_until = last_offset.load(Ordering::Relaxed);
                    let mut args = FieldTable::default();
                    args.insert(ShortString::from("x-stream-offset"), offset);
                    let mut consumer = channel
                        .basic_consume(
                            topology.events_stream.as_str().into(),
                            format!("{identity}-{}", session.attempt).into(),
                            BasicConsumeOptions::default(),
                            args,
                        )
                        .await?;

                    // Our checkpoint: when it comes back, the replay is done.
                    let checkpoint = RequestId::new();
                    let marker =
                        Publisher::open(&session.channels, &session.user, Duration::from_secs(10))
                            .await?;
                    marker
                        .publish(
                            &topology.events_stream,
                            &Event::new(checkpoint, &identity, EventKind::Checkpoint).encode(),
                            "checkpoint",
                        )
                        .await?;
                    // The request queue as the broker sees it, for /api/stats.
                    let poller = tokio::spawn(poll_queues(
                        session.channels.clone(),
                        topology.clone(),
                        stats.clone(),
                    ));
                    let _poller = AbortOnDrop(poller);
                    let replay_started = std::time::Instant::now();
                    let mut replayed = 0u64;
                    let mut caught_up = false;
                    let mut unacked = 0u64;

                    loop {
                        let delivery = tokio::select! {
                            d = consumer.next() => d,
                            _ = session.shutdown.cancelled() => return Ok(()),
                        };
                        let Some(delivery) = delivery else {
                            return Err(SessionError::Ended(
                                "events consumer cancelled by the broker",
                            ));
                        };
                        let delivery = delivery?;
                        let offset = stream_offset(&delivery.properties);
                        let again = offset.is_some_and(|o| o <= reread_until);
                        if let Some(offset) = offset.filter(|_| !again) {
                            let before = last_offset.swap(offset, Ordering::Relaxed);
                            if before >= 0 && offset > before + 1 {
                                // Every message has its own offset: a jump means
                                // messages this projection never saw.
                                metrics::counter!("gateway_events_gap_total")
                                    .increment((offset - before - 1) as u64);
                                tracing::warn!(
                                    after = before,
                                    next = offset,
                                    "events stream skipped offsets"
                                );
                            }
                        }
                        let user_id = delivery.properties.user_id().as_ref().map(|u| u.as_str());
                        let source = user_id.unwrap_or("(no user_id)");
                        // Workers and gateways send events compressed
                        // (COMPRESS_EVENTS); older ones and tools, as JSON.
                        let encoding = delivery
                            .properties
                            .content_encoding()
                            .as_ref()
                            .map(|e| e.as_str());
                        // Undecodable or unreadable, the whole message is `malformed`.
                        let malformed = |e: &dyn std::fmt::Display| {
                            trust.reject("malformed", source, e);
                            Vec::new()
                        };
                        let items = match verify_core::encoding::decode(encoding, &delivery.data) {
                            Ok(body) => {
                                Event::decode_items(&body).unwrap_or_else(|e| malformed(&e))
                            }
                            Err(e) => malformed(&e),
                        };
                        for item in items {
                            let event = match item {
                                Ok(event) => event,
                                Err(e) => {
                                    trust.reject(e.reason(), source, &e);
                                    continue;
                                }
                            };
                            if event.id == checkpoint && !caught_up {
                                caught_up = true;
                                tracing::info!(
                                    events = replayed,
                                    elapsed_ms = replay_started.elapsed().as_millis() as u64,
                                    entries = store.len(),
                                    "events stream caught up"
                                );
                                metrics::gauge!("gateway_replay_seconds")
                                    .set(replay_started.elapsed().as_secs_f64());
                                session.set_ready(());
                            }
                            replayed += 1;
                            if !trust.admits(&event, user_id) {
                                trust.reject(
                                    "untrusted_publisher",
                                    source,
                                    &format_args!(
                                        "a verdict for {} from a user not in RESULT_PUBLISHERS",
                                        event.id
                                    ),
                                );
                                continue;
                            }
                            if let EventKind::Worker(beat) = &event.kind {
                                workers.apply(&event.source, event.at_ms, beat);
                                continue;
                            }
                            let applied = store.apply(&event, Origin::Stream);
                            if applied == Applied::Mismatch {
                                trust.reject(
                                    "fingerprint_mismatch",
                                    source,
                                    &format_args!("a verdict for {} on another request than the one accepted under that id", event.id),
                                );
                                continue;
                            }
                            let live = event.at_ms >= started_at_ms && !again;
                            if live {
                                count_live(&stats, &event, applied);
                            }
                            record(applied, live);
                        }
                        // The last few deliveries may stay unacked while the stream
                        // is idle; ACK_BATCH < prefetch, so credit never runs out.
                        unacked += 1;
                        if unacked >= ACK_BATCH {
                            delivery
                                .acker
                                .ack(BasicAckOptions { multiple: true })
                                .await?;
                            unacked = 0;
                        }
                    }
                }
            },
        );
        (Projection { link }, task)
    }

    /// Connected, consuming, and caught up with the stream.
    pub fn is_ready(&self) -> bool {
        self.link.is_up()
    }

    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        self.link.wait_up(timeout).await
    }
}

/// Feeds the live figures of `/api/stats` and the recent failures of
/// `/api/failures` (a `failed` verdict only when it is the first result).
fn count_live(stats: &LiveStats, event: &Event, applied: Applied) {
    match (&event.kind, applied) {
        (EventKind::Accepted { .. }, _) => stats.accepted(),
        (EventKind::DeadLettered { reason, .. }, _) => stats.failure(
            event.id,
            FailureKind::DeadLettered,
            reason,
            event.at_ms,
            &event.source,
        ),
        (kind, Applied::Finished { latency_ms, .. }) => {
            let verify_micros = match kind {
                EventKind::Completed { verify_micros, .. } => *verify_micros,
                EventKind::Failed { error, .. } => {
                    stats.failure(
                        event.id,
                        FailureKind::Failed,
                        &error.code,
                        event.at_ms,
                        &event.source,
                    );
                    0
                }
                _ => 0,
            };
            stats.completed(
                Duration::from_millis(latency_ms),
                Duration::from_micros(verify_micros),
            );
        }
        _ => {}
    }
}

/// Aborts a task when dropped (a session's helpers end with it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every second, the request queue's depth and consumers and the dead
/// letters' count (passive declares on a channel of their own: a missing
/// queue closes only that channel).
async fn poll_queues(
    channels: broker_client::Channels,
    topology: Arc<Topology>,
    stats: Arc<LiveStats>,
) {
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let mut channel: Option<lapin::Channel> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if channel.as_ref().is_none_or(|c| !c.status().connected()) {
            channel = channels.create().await.ok();
        }
        let Some(ch) = &channel else { continue };
        let request = ch
            .queue_declare(
                topology.request_queue.as_str().into(),
                passive,
                FieldTable::default(),
            )
            .await;
        let dead = ch
            .queue_declare(
                topology.dead_letter_queue.as_str().into(),
                passive,
                FieldTable::default(),
            )
            .await;
        match (request, dead) {
            (Ok(q), Ok(d)) => {
                stats
                    .queue_depth
                    .store(u64::from(q.message_count()), Ordering::Relaxed);
                stats
                    .queue_consumers
                    .store(u64::from(q.consumer_count()), Ordering::Relaxed);
                stats
                    .dead_letters
                    .store(u64::from(d.message_count()), Ordering::Relaxed);
                stats.queue_known.store(true, Ordering::Relaxed);
            }
            _ => stats.queue_known.store(false, Ordering::Relaxed),
        }
    }
}

fn record(applied: Applied, live: bool) {
    match applied {
        Applied::Finished {
            outcome,
            latency_ms,
        } if live => {
            metrics::counter!("gateway_results_total", "outcome" => outcome).increment(1);
            metrics::histogram!("gateway_end_to_end_seconds").record(latency_ms as f64 / 1000.0);
        }
        Applied::Duplicate => metrics::counter!("gateway_duplicate_results_total").increment(1),
        _ => {}
    }
}

fn stream_offset(properties: &lapin::BasicProperties) -> Option<i64> {
    match properties
        .headers()
        .as_ref()?
        .inner()
        .get("x-stream-offset")?
    {
        AMQPValue::LongLongInt(o) => Some(*o),
        AMQPValue::LongUInt(o) => Some(i64::from(*o)),
        AMQPValue::LongInt(o) => Some(i64::from(*o)),
        _ => None,
    }
}
