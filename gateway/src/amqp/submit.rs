//! Publishing a request. Invariant: 202 only after the broker confirmed the
//! request message (durable queue, persistent message); any doubt is a 503.

use std::sync::Arc;

use broker::{BatchLimits, BatchPublisher, Link, PublishError, Publisher};
use tokio_util::sync::CancellationToken;
use verify_core::{Event, EventKind, Topology, VerifyRequest};

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("not connected to the broker")]
    Disconnected,
    #[error("the request queue is full")]
    QueueFull,
    #[error("{0}")]
    Broker(PublishError),
}

/// Requests per message at most: a batch is verified by one worker, so it is
/// kept small enough to spread over several.
const REQUEST_BATCH: BatchLimits = BatchLimits {
    max_items: 32,
    ..BatchLimits::DEFAULT
};

/// The publishing side: a supervised connection with one confirm channel.
#[derive(Clone)]
pub struct Submitter {
    link: Link<Publisher>,
    /// Requests, batched under load into one message per batch.
    requests: BatchPublisher,
    /// `accepted` events, batched the same way.
    events: BatchPublisher,
    identity: Arc<str>,
}

impl Submitter {
    pub fn spawn(
        url: String,
        topology: Arc<Topology>,
        settings: broker::QueueSettings,
        confirm_timeout: std::time::Duration,
        identity: Arc<str>,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let topo = topology.clone();
        let (link, task) = Link::spawn(
            url,
            format!("{identity} publish"),
            shutdown,
            move |session| {
                let topology = topo.clone();
                let settings = settings.clone();
                async move {
                    broker::declare_topology(&session.connection, &topology, &settings).await?;
                    let publisher = Publisher::open(&session.connection, confirm_timeout).await?;
                    session.set_ready(publisher);
                    session.shutdown.cancelled().await;
                    Ok(())
                }
            },
        );
        let requests = BatchPublisher::spawn(
            link.clone(),
            topology.request_queue.clone(),
            "verify-requests",
            REQUEST_BATCH,
        );
        let events = BatchPublisher::spawn(
            link.clone(),
            topology.events_stream.clone(),
            "events",
            BatchLimits::DEFAULT,
        );
        (
            Submitter {
                link,
                requests,
                events,
                identity,
            },
            task,
        )
    }

    pub fn is_ready(&self) -> bool {
        self.link.current().is_some_and(|p| p.is_usable())
    }

    /// Publishes the request and appends its `accepted` event, both
    /// confirmed, in parallel (one confirm round trip, not two). Under load
    /// the request travels in a batch with others; it is confirmed (or
    /// refused) with its batch.
    pub async fn submit(
        &self,
        request: &VerifyRequest,
        idempotency_key: Option<String>,
    ) -> Result<(), SubmitError> {
        if self.link.current().is_none() {
            return Err(SubmitError::Disconnected);
        }
        let accepted = Event::new(
            request.id,
            &self.identity,
            EventKind::Accepted {
                algorithm: request.algorithm,
                key_id: request.key_id.clone(),
                idempotency_key,
            },
        );
        let (request_sent, event_sent) = tokio::join!(
            self.requests.publish(request.encode()),
            self.events.publish(accepted.encode()),
        );
        match request_sent {
            Ok(()) => {}
            Err(PublishError::Nacked) => return Err(SubmitError::QueueFull),
            Err(PublishError::Disconnected) => return Err(SubmitError::Disconnected),
            Err(e) => return Err(SubmitError::Broker(e)),
        }
        if let Err(e) = event_sent {
            // The request itself is persisted and will be verified; only
            // other gateways learn of it later (from its result).
            tracing::warn!(id = %request.id, error = %e, "accepted event not confirmed");
        }
        Ok(())
    }
}
