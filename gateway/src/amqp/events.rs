//! The events-stream projection: every gateway reads the whole lifecycle log
//! into its [`Store`].
//!
//! On first connect it replays from (now - retention) (`x-stream-offset` as a
//! timestamp); after a reconnect it resumes after the last offset it saw, so
//! nothing is skipped. It appends a checkpoint event when it starts reading
//! and reports ready only once it has read that checkpoint back: everything
//! before it has been applied.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker::{Link, Publisher};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use tokio_util::sync::CancellationToken;
use verify_core::{Event, EventKind, RequestId, Topology};

use crate::store::{Applied, Store};

/// Acknowledge stream deliveries in batches (stream acks only return credit).
const ACK_BATCH: u64 = 200;

pub struct Projection {
    link: Link<()>,
}

impl Projection {
    pub fn spawn(
        url: String,
        topology: Arc<Topology>,
        settings: broker::QueueSettings,
        prefetch: u16,
        store: Arc<Store>,
        identity: Arc<str>,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let started_at_ms = verify_core::now_ms();
        // -1: nothing read yet, replay by timestamp.
        let last_offset = Arc::new(AtomicI64::new(-1));
        let (link, task) = Link::spawn(
            url,
            format!("{identity} events"),
            shutdown,
            move |session| {
                let topology = topology.clone();
                let settings = settings.clone();
                let store = store.clone();
                let identity = identity.clone();
                let last_offset = last_offset.clone();
                async move {
                    broker::declare_topology(&session.connection, &topology, &settings).await?;
                    let channel = session.connection.create_channel().await?;
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
                        seen => AMQPValue::LongLongInt(seen + 1),
                    };
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
                        Publisher::open(&session.connection, Duration::from_secs(10)).await?;
                    marker
                        .publish(
                            &topology.events_stream,
                            &Event::new(checkpoint, &identity, EventKind::Checkpoint).encode(),
                            "checkpoint",
                        )
                        .await?;
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
                            return Err("events consumer cancelled by the broker".into());
                        };
                        let delivery = delivery?;
                        if let Some(offset) = stream_offset(&delivery.properties) {
                            last_offset.store(offset, Ordering::Relaxed);
                        }
                        match Event::decode_batch(&delivery.data) {
                            Ok(events) => {
                                for event in &events {
                                    if event.id == checkpoint && !caught_up {
                                        caught_up = true;
                                        tracing::info!(
                                            events = replayed,
                                            elapsed_ms =
                                                replay_started.elapsed().as_millis() as u64,
                                            entries = store.len(),
                                            "events stream caught up"
                                        );
                                        metrics::gauge!("gateway_replay_seconds")
                                            .set(replay_started.elapsed().as_secs_f64());
                                        session.set_ready(());
                                    }
                                    replayed += 1;
                                    record(store.apply(event), event.at_ms >= started_at_ms);
                                }
                            }
                            Err(e) => {
                                metrics::counter!("gateway_events_undecodable_total").increment(1);
                                tracing::warn!(error = %e, "skipping an undecodable event");
                            }
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
