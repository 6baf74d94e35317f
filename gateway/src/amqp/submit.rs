//! Publishing a request. Invariants: 202 only after the broker confirmed the
//! request message (durable queue, persistent message); any doubt is a 503.
//! Nothing says a request exists before that confirm: its `accepted` event
//! is published only afterwards, so a refused request leaves no trace.

use std::sync::Arc;

use broker_client::{BatchLimits, BatchPublisher, Link, PublishError, Publisher};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use verify_core::{Event, EventKind, RequestId, Topology, VerifyRequest};

use super::unanswered::Unanswered;

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("not connected to the broker")]
    Disconnected,
    #[error("the request queue is full")]
    QueueFull,
    #[error("{0}")]
    Broker(PublishError),
    /// The submission's task panicked or was cancelled (a bug, not the
    /// broker): the request is refused like any other doubt.
    #[error("the submission failed unexpectedly: {0}")]
    Aborted(#[from] tokio::task::JoinError),
}

/// Requests per message at most: a batch is verified by one worker, so it is
/// kept small enough to spread over several.
const REQUEST_BATCH_ITEMS: usize = 32;

/// Requests per message when the batch opened on a backlog (every batch in
/// flight awaiting its confirm): then the requests past 32 would wait for
/// the next confirm anyway, and fewer, larger messages cost the broker less
/// while the gateway catches up.
const BACKLOG_BATCH_ITEMS: usize = 128;

/// How request messages are batched: this process's batching settings with
/// the request queue's own item counts, never past what the broker takes.
fn request_limits(
    batching: BatchLimits,
    max_message_bytes: usize,
    confirm_timeout: std::time::Duration,
    compress: bool,
) -> BatchLimits {
    BatchLimits {
        max_items: REQUEST_BATCH_ITEMS,
        backlog_items: BACKLOG_BATCH_ITEMS,
        max_bytes: batching.max_bytes.min(max_message_bytes),
        retry_for: confirm_timeout,
        compress,
        ..batching
    }
}

/// The publishing side: a supervised connection with one confirm channel.
#[derive(Clone)]
pub struct Submitter {
    link: Link<Publisher>,
    /// Requests, batched under load into one message per batch.
    requests: BatchPublisher,
    /// `accepted` events, batched the same way.
    events: BatchPublisher,
    identity: Arc<str>,
    unanswered: Arc<Unanswered>,
    /// The `accepted` events on their way (see [`Submitter::flush`]).
    announcing: TaskTracker,
}

/// Where and how requests are published.
pub struct Target {
    pub endpoint: broker_client::Endpoint,
    pub topology: Arc<Topology>,
    pub settings: broker_client::QueueSettings,
    pub confirm_timeout: std::time::Duration,
    /// Largest message the broker takes.
    pub max_message_bytes: usize,
    /// How requests are batched (linger, batches in flight).
    pub batching: BatchLimits,
    /// How long `accepted` events gather before they go (see
    /// [`BatchLimits::hold`]).
    pub accepted_hold: std::time::Duration,
    /// Whether request messages go compressed (see [`BatchLimits::compress`]).
    pub compress_requests: bool,
    /// How `accepted` events are batched (compressed per COMPRESS_EVENTS).
    pub event_batching: BatchLimits,
    pub identity: Arc<str>,
}

impl Submitter {
    pub fn spawn(
        target: Target,
        unanswered: Arc<Unanswered>,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let Target {
            endpoint,
            topology,
            settings,
            confirm_timeout,
            max_message_bytes,
            batching,
            accepted_hold,
            compress_requests,
            event_batching,
            identity,
        } = target;
        let topo = topology.clone();
        let (link, task) = Link::spawn(
            endpoint,
            format!("{identity} publish"),
            shutdown,
            move |session| {
                let topology = topo.clone();
                let settings = settings.clone();
                async move {
                    broker_client::declare_topology(&session.connection, &topology, &settings)
                        .await?;
                    broker_client::publisher::serve(session, confirm_timeout).await
                }
            },
        );
        let requests = BatchPublisher::spawn(
            link.clone(),
            topology.request_queue.clone(),
            "verify-requests",
            request_limits(
                batching,
                max_message_bytes,
                confirm_timeout,
                compress_requests,
            ),
        );
        let events = BatchPublisher::spawn(
            link.clone(),
            topology.events_stream.clone(),
            "events",
            BatchLimits {
                hold: accepted_hold,
                ..event_batching
            },
        );
        (
            Submitter {
                link,
                requests,
                events,
                identity,
                unanswered,
                announcing: TaskTracker::new(),
            },
            task,
        )
    }

    pub fn is_ready(&self) -> bool {
        self.link.current().is_some_and(|p| p.is_usable())
    }

    /// Publishes the request (its encoded form); once the broker has
    /// confirmed it, appends its `accepted` event. Under load the request
    /// travels in a batch with others and is confirmed (or refused) with it.
    /// The event is not awaited: the request is safe once confirmed, and
    /// the event only tells the other gateways about it early (without it
    /// they learn of the id from its verdict). Returns the event, for this
    /// gateway's own store.
    pub async fn submit(
        &self,
        request: &VerifyRequest,
        encoded: Bytes,
        fingerprint: String,
        idempotency_key: Option<String>,
        tenant: Option<String>,
    ) -> Result<Event, SubmitError> {
        if self.link.current().is_none() {
            return Err(SubmitError::Disconnected);
        }
        match self
            .requests
            .publish_traced(
                encoded.clone(),
                request.traceparent.clone(),
                telemetry::trace::step(tracing::Span::current),
            )
            .await
        {
            Ok(()) => self
                .unanswered
                .hold(request.id, encoded, request.traceparent.clone()),
            Err(PublishError::Nacked) => return Err(SubmitError::QueueFull),
            Err(PublishError::Disconnected) => return Err(SubmitError::Disconnected),
            Err(e) => return Err(SubmitError::Broker(e)),
        }
        let accepted = Event {
            at_ms: request.submitted_at_ms,
            ..Event::new(
                request.id,
                &self.identity,
                EventKind::Accepted {
                    algorithm: request.algorithm,
                    key_id: request.key_id.clone(),
                    idempotency_key,
                    fingerprint: Some(fingerprint),
                    tenant,
                },
            )
            .traced(request.traceparent.clone())
        };
        let events = self.events.clone();
        let (id, encoded) = (accepted.id, accepted.encode());
        self.announcing.spawn(async move {
            if let Err(e) = events.publish(encoded).await {
                tracing::warn!(%id, error = %e, "accepted event not confirmed");
            }
        });
        Ok(accepted)
    }

    /// Waits (at most `within`) until the `accepted` events of every
    /// request answered 202 so far are confirmed or failed: on shutdown,
    /// before the links close, so none is cut off while it gathers.
    pub async fn flush(&self, within: std::time::Duration) {
        self.announcing.close();
        if tokio::time::timeout(within, self.announcing.wait())
            .await
            .is_err()
        {
            tracing::warn!("accepted events still unconfirmed at shutdown");
        }
    }

    /// Publishes a request again (see [`Unanswered`]); whether the broker
    /// confirmed it.
    pub async fn republish(&self, id: RequestId, body: Bytes, traceparent: Option<String>) -> bool {
        match self
            .requests
            .publish_traced(body, traceparent, tracing::Span::none())
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%id, error = %e, "request not published again");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_batches_hold_32_requests_or_128_under_a_backlog() {
        // README, "Queues and messages" and MAX_QUEUE_LENGTH.
        let limits = request_limits(
            BatchLimits::DEFAULT,
            1000,
            std::time::Duration::from_secs(5),
            true,
        );
        assert_eq!(limits.max_items, 32);
        assert_eq!(limits.backlog_items, 128);
        assert_eq!(
            limits.max_bytes, 1000,
            "never past the broker's message size"
        );
    }
}
