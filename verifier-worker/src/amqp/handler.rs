//! Settling one delivery of the request queue.
//!
//! Delivery invariants:
//! - A message (one request, or a batch from a busy gateway) is acked only
//!   once every request in it is settled: its verdict confirmed in the
//!   events stream, or the request dead-lettered (confirmed in
//!   `<queue>.dead`, with the reason in `x-dead-reason`).
//! - A message is read by its `content-encoding` (a gateway's requests come
//!   zstd-compressed, see `verify_core::encoding`); one that cannot be
//!   decoded is dead-lettered as it came (`unreadable_request`). Copies
//!   given back or dead-lettered after that go decoded.
//! - Items are settled one by one. An item that cannot be read is
//!   dead-lettered alone and, when its id can be read, answered `failed`
//!   (`unreadable_request`); the rest of its batch is verified as usual.
//! - Deliveries are bounded. Requests whose verdict could not be published
//!   go back to the queue as a new message counting the deliveries so far
//!   (`x-requeue-count`), and the original is acked. A message whose worker
//!   died is counted by the broker on a quorum queue (`x-delivery-count`);
//!   a classic queue does not count, so a redelivered message is published
//!   again with `x-requeue-count` raised and the original acked. On the
//!   last delivery (the two counts together = `DELIVERY_LIMIT`) every
//!   request in the message is answered `failed` (`delivery_limit`) and the
//!   message dead-lettered; should that delivery crash its worker too, a
//!   quorum queue's `x-delivery-limit` dead-letters it.
//! - A request for a key this worker does not have, which another live
//!   worker serves (it says so in its heartbeats: a key rotation reached
//!   it first), goes back to the queue the same way, counted, for another
//!   worker to take; only while one more delivery would still verify (two
//!   under the limit), so the last worker to take it answers
//!   `unknown_key`. A key no live worker serves is answered `unknown_key`
//!   at once.
//! - A request older than the retention (its id has expired) is
//!   dead-lettered (`expired`) instead of verified; the queue's
//!   `x-message-ttl` does the same for requests still waiting in it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use broker_client::{BatchPublisher, Link, PublishError, Publisher};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use serde_json::value::RawValue;
use verify_core::{
    join_batch, now_ms, split_batch, DeliveryInfo, ErrorBody, Event, EventKind, KeyId, RequestId,
    Topology, VerifyError, VerifyRequest,
};

use telemetry::trace::TRACEPARENT;
use tracing::Instrument as _;

use crate::heartbeat::WorkerStats;
use crate::peers::Peers;
use crate::pool::VerifyPool;

/// How many times the messages' earlier copies were given back.
pub const REQUEUE_HEADER: &str = "x-requeue-count";
/// How many times the broker returned this copy (quorum queues).
const BROKER_COUNT_HEADER: &str = "x-delivery-count";
/// Why the worker dead-lettered a message (`unreadable_request`,
/// `delivery_limit`, `expired`), and the details.
pub const DEAD_REASON_HEADER: &str = "x-dead-reason";
pub const DEAD_DETAIL_HEADER: &str = "x-dead-detail";

/// Items of one message settled at once (a gateway's batches hold 32; up to
/// 128, two such chunks, while it works off a backlog).
const SETTLE_AT_ONCE: usize = 64;

/// Longest a held message waits for the results link to come back (or the
/// broker to lift an alarm) before it is given back.
const HOLD_WHILE_UNPUBLISHABLE: Duration = Duration::from_secs(30);

/// What a request handler needs; cheap to clone per delivery.
#[derive(Clone)]
pub struct Handler {
    pub pool: VerifyPool,
    /// Which keys the other live workers serve.
    pub peers: Arc<Peers>,
    /// The results connection: verdicts (through `events`), dead letters
    /// and requeued copies.
    pub results: Link<Publisher>,
    /// Appends result events to the stream, batched under load.
    pub events: BatchPublisher,
    pub topology: Arc<Topology>,
    pub identity: Arc<str>,
    /// Deliveries after the first a message may have (RabbitMQ's
    /// `x-delivery-limit` semantics): the last one answers `failed`.
    pub delivery_limit: u32,
    /// Requests older than this are not verified (their ids have expired).
    pub retention: Duration,
    /// Counts for the heartbeats.
    pub stats: Arc<WorkerStats>,
}

/// How one item of a message ended on this delivery.
enum Settled {
    /// Verdict confirmed, or dead-lettered: done with.
    Done,
    /// Not settled (its verdict was not confirmed): goes back to the queue.
    Retry,
    /// Its key is served by another worker and not this one: goes back to
    /// the queue for that worker.
    HandOff,
}

impl Handler {
    /// One delivery, start to ack. Never panics, never leaves it unsettled
    /// while the channel lives.
    pub(super) async fn handle(self, delivery: Delivery) {
        let mut returned = header_count(&delivery, REQUEUE_HEADER)
            .saturating_add(header_count(&delivery, BROKER_COUNT_HEADER));
        if delivery.redelivered {
            metrics::counter!("worker_redeliveries_total").increment(1);
        }
        // A quorum queue counts returns itself (`x-delivery-count` on every
        // redelivery); a classic queue does not: then count it here. Read
        // per delivery, so a queue of either type is counted right.
        let broker_counted = header_count(&delivery, BROKER_COUNT_HEADER) > 0;
        if delivery.redelivered && !broker_counted {
            // This copy came back without being counted: count it.
            returned = returned.saturating_add(1);
        }
        // A compressed message (a gateway's requests) is read, given back
        // and dead-lettered decoded; one that cannot be decoded is
        // dead-lettered as it came, with its `content-encoding`.
        let encoding = delivery
            .properties
            .content_encoding()
            .as_ref()
            .map(|e| e.as_str());
        let body = match verify_core::encoding::decode(encoding, &delivery.data) {
            Ok(body) => body,
            Err(e) => {
                let detail = e.to_string();
                let raw = Body {
                    bytes: &delivery.data,
                    encoding,
                };
                self.dead_letter_message(&delivery, raw, "unreadable_request", &detail, returned)
                    .await;
                return;
            }
        };
        if delivery.redelivered && !broker_counted && returned < self.delivery_limit {
            self.give_back(&delivery, &body, returned).await;
            return;
        }
        let items = match split_batch(&body) {
            Ok(items) => items,
            Err(e) => {
                // Not even JSON: nothing in it can be answered.
                let detail = e.to_string();
                self.dead_letter_message(
                    &delivery,
                    Body::plain(&body),
                    "unreadable_request",
                    &detail,
                    returned,
                )
                .await;
                return;
            }
        };
        let _held = self.stats.hold(items.len() as u64);
        // A message holding one request may carry its trace as a header.
        let header_trace = if items.len() == 1 {
            header_text(&delivery, TRACEPARENT)
        } else {
            None
        };
        if returned >= self.delivery_limit {
            self.last_delivery(&delivery, &body, &items, returned).await;
            return;
        }

        // A bounded number of items at once: a hostile message of a million
        // tiny items must not become a million futures.
        let mut outcomes = Vec::with_capacity(items.len());
        for chunk in items.chunks(SETTLE_AT_ONCE) {
            let settled = futures_util::future::join_all(
                chunk
                    .iter()
                    .map(|raw| self.settle(raw, returned, header_trace.as_deref())),
            );
            outcomes.extend(settled.await);
        }
        // Each request's span lasts until its message is settled.
        let spans: Vec<tracing::Span> = outcomes
            .iter()
            .filter_map(|(_, span)| span.clone())
            .collect();
        let unconfirmed = outcomes
            .iter()
            .filter(|(outcome, _)| matches!(outcome, Settled::Retry))
            .count();
        let retry: Vec<&RawValue> = items
            .iter()
            .zip(outcomes)
            .filter(|(_, (outcome, _))| !matches!(outcome, Settled::Done))
            .map(|(raw, _)| *raw)
            .collect();
        if retry.is_empty() {
            let acks: Vec<tracing::Span> = spans
                .iter()
                .map(|span| telemetry::trace::step(|| tracing::info_span!(parent: span, "ack")))
                .collect();
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            drop(acks);
        } else {
            if unconfirmed > 0 {
                metrics::counter!("worker_publish_failures_total").increment(unconfirmed as u64);
                tracing::warn!(
                    requests = unconfirmed,
                    of = items.len(),
                    "verdicts not confirmed; giving these requests back"
                );
            }
            let handed = retry.len() - unconfirmed;
            if handed > 0 {
                metrics::counter!("worker_key_handoffs_total").increment(handed as u64);
                tracing::info!(
                    requests = handed,
                    "keys served by another worker, not this one; giving these requests back"
                );
            }
            let joined;
            let back: &[u8] = if retry.len() == items.len() {
                &body
            } else {
                joined = join_batch(retry);
                &joined
            };
            self.give_back(&delivery, back, returned.saturating_add(1))
                .await;
        }
    }

    /// Settles one item: verified and answered, or dead-lettered; the
    /// request's span (`consume`), which continues the gateway's trace.
    async fn settle(
        &self,
        raw: &RawValue,
        returned: u32,
        header_trace: Option<&str>,
    ) -> (Settled, Option<tracing::Span>) {
        let request = match VerifyRequest::decode_item(raw) {
            Ok(request) => Arc::new(request),
            Err(unreadable) => {
                tracing::warn!(id = ?unreadable.id, error = %unreadable.error, "dead-lettering an unreadable request");
                let detail = unreadable.error.to_string();
                let answered = match unreadable.id {
                    Some(id) => {
                        let kind = failed(
                            "unreadable_request",
                            format!("the worker could not read this request: {detail}"),
                            now_ms(),
                            None,
                        );
                        self.publish_event(Event::new(id, &self.identity, kind))
                            .await
                    }
                    None => Ok(()),
                };
                let dead = self
                    .dead_letter(
                        Body::plain(raw.get().as_bytes()),
                        "unreadable_request",
                        &detail,
                        returned,
                    )
                    .await;
                if let (Some(id), Ok(())) = (unreadable.id, &dead) {
                    self.tell_dead_lettered(id, "unreadable_request", returned, None)
                        .await;
                }
                let settled = if answered.is_ok() && dead.is_ok() {
                    Settled::Done
                } else {
                    Settled::Retry
                };
                return (settled, None);
            }
        };
        let span = tracing::info_span!(
            "consume",
            request_id = %request.id,
            trace_id = tracing::field::Empty
        );
        let parent = request.traceparent.as_deref().or(header_trace);
        let trace = telemetry::trace::enter(&span, parent);
        // A verdict names its trace only when it is not the request's own
        // id (see `Event::traced`).
        let traceparent = (trace.trace_id().to_bytes() != *request.id.as_uuid().as_bytes())
            .then(|| trace.traceparent());
        let settled = self
            .settle_request(raw, request, returned, traceparent)
            .instrument(span.clone())
            .await;
        (settled, Some(span))
    }

    /// Settles a readable request: dead-lettered when expired, else
    /// verified and answered.
    async fn settle_request(
        &self,
        raw: &RawValue,
        request: Arc<VerifyRequest>,
        returned: u32,
        traceparent: Option<String>,
    ) -> Settled {
        let expires_at_ms = request
            .submitted_at_ms
            .saturating_add(self.retention.as_millis() as u64);
        if expires_at_ms <= now_ms() {
            let detail = format!(
                "submitted more than {:?} ago; its id has expired",
                self.retention
            );
            return match self
                .dead_letter(
                    Body::plain(raw.get().as_bytes()),
                    "expired",
                    &detail,
                    returned,
                )
                .await
            {
                Ok(()) => {
                    self.tell_dead_lettered(request.id, "expired", returned, traceparent)
                        .await;
                    Settled::Done
                }
                Err(_) => Settled::Retry,
            };
        }
        self.verify_and_publish(request, returned, traceparent)
            .await
            .unwrap_or(Settled::Retry)
    }

    /// The last delivery a message may have: every request in it is
    /// answered `failed` (`delivery_limit`, or `unreadable_request` for an
    /// item that cannot be read but names its id) and the message
    /// dead-lettered. If an answer cannot be published for now (no
    /// connection, the broker blocks us), the message goes back with its
    /// count unchanged, to be answered on its next delivery; if the broker
    /// refuses the answer itself (the stream is gone), the message is
    /// dead-lettered all the same, so nothing loops.
    async fn last_delivery(
        &self,
        delivery: &Delivery,
        body: &[u8],
        items: &[&RawValue],
        returned: u32,
    ) {
        let detail = format!(
            "delivered {} times without a confirmed verdict",
            returned.saturating_add(1)
        );
        tracing::warn!(
            requests = items.len(),
            returned,
            "delivery limit reached; answering failed"
        );
        let mut answered = true;
        let mut ids = Vec::new();
        for raw in items {
            let (id, kind) = match VerifyRequest::decode_item(raw) {
                Ok(request) => (
                    request.id,
                    failed(
                        "delivery_limit",
                        format!("the request was {detail}"),
                        request.submitted_at_ms,
                        Some(request.fingerprint()),
                    ),
                ),
                Err(unreadable) => match unreadable.id {
                    Some(id) => (
                        id,
                        failed(
                            "unreadable_request",
                            format!(
                                "the worker could not read this request: {}",
                                unreadable.error
                            ),
                            now_ms(),
                            None,
                        ),
                    ),
                    None => continue,
                },
            };
            ids.push(id);
            let kind = delivered(kind, delivery_info(returned, now_ms()));
            if let Err(e) = self
                .publish_event(Event::new(id, &self.identity, kind))
                .await
            {
                tracing::warn!(%id, error = %e, "could not publish the last delivery's verdict");
                answered &= !matches!(
                    e,
                    PublishError::Disconnected
                        | PublishError::Connection(_)
                        | PublishError::Timeout(_)
                        | PublishError::Closed
                );
            }
        }
        if answered {
            self.dead_letter_message(
                delivery,
                Body::plain(body),
                "delivery_limit",
                &detail,
                returned,
            )
            .await;
            for id in ids {
                self.tell_dead_lettered(id, "delivery_limit", returned, None)
                    .await;
            }
        } else {
            self.give_back(delivery, body, returned).await;
        }
    }

    /// Verifies one request and appends its result event (confirmed), or
    /// hands it to another worker when its key is theirs and not ours.
    async fn verify_and_publish(
        &self,
        request: Arc<VerifyRequest>,
        returned: u32,
        traceparent: Option<String>,
    ) -> Result<Settled, PublishError> {
        let info = delivery_info(returned, request.submitted_at_ms);
        let verified = self
            .pool
            .verify(request.clone())
            .instrument(telemetry::trace::step(|| tracing::info_span!("verify")))
            .await;
        if let Ok((Err(VerifyError::UnknownKey(_) | VerifyError::NoDefaultKey), _)) = &verified {
            let wanted = request
                .key_id
                .clone()
                .unwrap_or_else(|| KeyId::new(KeyId::DEFAULT));
            // One more delivery must still verify (not answer `delivery_limit`).
            if returned.saturating_add(1) < self.delivery_limit && self.peers.serve(&wanted) {
                tracing::debug!(key_id = %wanted, "key served by another worker: handing over");
                return Ok(Settled::HandOff);
            }
        }
        let kind = match verified {
            Ok((Ok(verdict), took)) => {
                let outcome = if verdict.valid { "valid" } else { "invalid" };
                metrics::counter!("worker_verifications_total", "outcome" => outcome, "algorithm" => verdict.algorithm.name()).increment(1);
                metrics::histogram!("worker_verify_seconds", "backend" => verdict.backend.name())
                    .record(took.as_secs_f64());
                EventKind::Completed {
                    valid: verdict.valid,
                    algorithm: verdict.algorithm,
                    key_id: verdict.key_id,
                    verify_micros: took.as_micros() as u64,
                    submitted_at_ms: request.submitted_at_ms,
                    fingerprint: Some(request.fingerprint()),
                    delivery: None,
                }
            }
            Ok((Err(e), _)) => {
                metrics::counter!("worker_verifications_total", "outcome" => e.code(), "algorithm" => request.algorithm.name()).increment(1);
                failed(
                    e.code(),
                    e.to_string(),
                    request.submitted_at_ms,
                    Some(request.fingerprint()),
                )
            }
            Err(panic) => {
                tracing::error!(id = %request.id, %panic, "verification panicked");
                failed(
                    "internal_error",
                    "the verification failed unexpectedly".into(),
                    request.submitted_at_ms,
                    Some(request.fingerprint()),
                )
            }
        };
        match &kind {
            EventKind::Completed { valid, .. } => tracing::debug!(valid, "verified"),
            EventKind::Failed { error, .. } => tracing::debug!(code = %error.code, "not verified"),
            _ => {}
        }
        let event =
            Event::new(request.id, &self.identity, delivered(kind, info)).traced(traceparent);
        self.publish_event(event)
            .instrument(telemetry::trace::step(|| {
                tracing::info_span!("publish_result")
            }))
            .await
            .map(|()| Settled::Done)
    }

    /// Tells the gateways (best effort: the dead letter itself is what
    /// counts) that the request `id` was dead-lettered.
    async fn tell_dead_lettered(
        &self,
        id: RequestId,
        reason: &str,
        returned: u32,
        traceparent: Option<String>,
    ) {
        let kind = EventKind::DeadLettered {
            reason: reason.to_owned(),
            delivery: Some(DeliveryInfo {
                attempt: returned.saturating_add(1),
                queue_wait_ms: 0,
            }),
        };
        if let Err(e) = self
            .events
            .publish(
                Event::new(id, &self.identity, kind)
                    .traced(traceparent)
                    .encode(),
            )
            .await
        {
            tracing::debug!(%id, error = %e, "dead_lettered event not confirmed");
        }
    }

    /// Appends an event to the stream, confirmed. When the results link is
    /// down or blocked, the message stays held (no other worker can take it
    /// meanwhile) and the event is tried once more when the link is back,
    /// rather than spending one of the message's deliveries.
    async fn publish_event(&self, event: Event) -> Result<(), PublishError> {
        let published = match self.events.publish(event.encode()).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(id = %event.id, error = %e, "result not confirmed; trying once more");
                if self.results.wait_usable(HOLD_WHILE_UNPUBLISHABLE).await {
                    // Encoded again rather than copied up front: the retry is rare.
                    self.events.publish(event.encode()).await
                } else {
                    Err(e)
                }
            }
        };
        if published.is_ok() {
            tracing::debug!("result confirmed");
            self.stats.processed.fetch_add(1, Ordering::Relaxed);
            if matches!(event.kind, EventKind::Failed { .. }) {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        published
    }

    /// Publishes `body` to the dead-letter queue with the reason in its
    /// headers, confirmed.
    async fn dead_letter(
        &self,
        body: Body<'_>,
        reason: &'static str,
        detail: &str,
        returned: u32,
    ) -> Result<(), PublishError> {
        let Body { bytes, encoding } = body;
        let mut headers = FieldTable::default();
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));
        headers.insert(ShortString::from(DEAD_REASON_HEADER), text(reason));
        let detail: String = detail.chars().take(1000).collect();
        headers.insert(ShortString::from(DEAD_DETAIL_HEADER), text(&detail));
        headers.insert(
            ShortString::from("x-original-queue"),
            text(&self.topology.request_queue),
        );
        headers.insert(
            ShortString::from("x-dead-lettered-by"),
            text(&self.identity),
        );
        headers.insert(
            ShortString::from(REQUEUE_HEADER),
            AMQPValue::LongUInt(returned),
        );
        let publisher = self.results.current().ok_or(PublishError::Disconnected)?;
        publisher
            .publish_observed(
                &self.topology.dead_letter_queue,
                bytes,
                "dead-letter",
                Some(headers),
                encoding,
                &mut || {},
            )
            .await?;
        metrics::counter!("worker_dead_lettered_total", "reason" => reason).increment(1);
        Ok(())
    }

    /// Dead-letters the whole message and acks it; if even that cannot be
    /// published, rejects it so the broker dead-letters it (`x-death`).
    async fn dead_letter_message(
        &self,
        delivery: &Delivery,
        body: Body<'_>,
        reason: &'static str,
        detail: &str,
        returned: u32,
    ) {
        match self.dead_letter(body, reason, detail, returned).await {
            Ok(()) => {
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, reason, "could not publish the dead letter; rejecting the message to the broker's dead-letter route");
                metrics::counter!("worker_dead_lettered_total", "reason" => "rejected")
                    .increment(1);
                let _ = delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await;
            }
        }
    }

    /// Returns `body` (the whole message, or its unsettled items) to the
    /// request queue as a new message counting `returned` deliveries, then
    /// acks the delivery. If the copy cannot be published, the delivery is
    /// requeued as it is (and counted when it comes back).
    async fn give_back(&self, delivery: &Delivery, body: &[u8], returned: u32) {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from(REQUEUE_HEADER),
            AMQPValue::LongUInt(returned),
        );
        let published = match self.results.current() {
            Some(publisher) => {
                publisher
                    .publish_with_headers(
                        &self.topology.request_queue,
                        body,
                        "verify-requests",
                        Some(headers),
                    )
                    .await
            }
            None => Err(PublishError::Disconnected),
        };
        match published {
            Ok(()) => {
                metrics::counter!("worker_requeued_total").increment(1);
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not give the message back; requeueing it");
                // Let the link come back, and in any case pause: a refused
                // copy (a full queue) must not turn into a hot loop. (A
                // quorum queue counts this return; a classic one does not.)
                let paused = tokio::time::Instant::now();
                self.results.wait_usable(Duration::from_secs(1)).await;
                tokio::time::sleep_until(paused + Duration::from_secs(1)).await;
                let _ = delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        multiple: false,
                    })
                    .await;
            }
        }
    }
}

/// A message body and its `content-encoding` (`None`: as it is).
#[derive(Clone, Copy)]
struct Body<'a> {
    bytes: &'a [u8],
    encoding: Option<&'a str>,
}

impl<'a> Body<'a> {
    fn plain(bytes: &'a [u8]) -> Self {
        Body {
            bytes,
            encoding: None,
        }
    }
}

/// A text header of the message.
fn header_text(delivery: &Delivery, name: &str) -> Option<String> {
    match delivery.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(text) => Some(text.to_string()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    }
}

/// A count in a header of the message (0 when absent or not a number).
fn header_count(delivery: &Delivery, name: &str) -> u32 {
    let Some(headers) = delivery.properties.headers() else {
        return 0;
    };
    match headers.inner().get(name) {
        Some(AMQPValue::LongUInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => (*n).max(0) as u32,
        Some(AMQPValue::LongLongInt(n)) => (*n).clamp(0, i64::from(u32::MAX)) as u32,
        Some(AMQPValue::ShortUInt(n)) => u32::from(*n),
        Some(AMQPValue::ShortInt(n)) => (*n).max(0) as u32,
        Some(AMQPValue::ShortShortUInt(n)) => u32::from(*n),
        Some(AMQPValue::ShortShortInt(n)) => (*n).max(0) as u32,
        _ => 0,
    }
}

fn failed(
    code: &str,
    message: String,
    submitted_at_ms: u64,
    fingerprint: Option<String>,
) -> EventKind {
    EventKind::Failed {
        error: ErrorBody {
            code: code.to_owned(),
            message,
        },
        submitted_at_ms,
        fingerprint,
        delivery: None,
    }
}

/// Which delivery this is (`returned` earlier ones) and how long the
/// request has waited.
fn delivery_info(returned: u32, submitted_at_ms: u64) -> DeliveryInfo {
    DeliveryInfo {
        attempt: returned.saturating_add(1),
        queue_wait_ms: now_ms().saturating_sub(submitted_at_ms),
    }
}

/// Notes how `kind` (a verdict) was delivered.
fn delivered(mut kind: EventKind, info: DeliveryInfo) -> EventKind {
    if let EventKind::Completed { delivery, .. } | EventKind::Failed { delivery, .. } = &mut kind {
        *delivery = Some(info);
    }
    kind
}
