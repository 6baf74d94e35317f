//! The request consumer. Delivery invariant: a message (one request, or a
//! batch of them from a busy gateway) is acked only after the result event
//! of every request in it is confirmed by the broker; if a result cannot be
//! published the message is requeued, so a crash at any point means
//! redelivery, never loss. An undecodable message is rejected without
//! requeue, which the queue's dead-letter arguments route to `<queue>.dead`.

use std::sync::Arc;
use std::time::Duration;

use broker::{BatchPublisher, Link, Publisher};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use verify_core::{ErrorBody, Event, EventKind, Topology, VerifyRequest};

use crate::pool::VerifyPool;

/// What a request handler needs; cheap to clone per delivery.
#[derive(Clone)]
pub struct Handler {
    pub pool: VerifyPool,
    /// The results connection (readiness; the events go through `events`).
    pub results: Link<Publisher>,
    /// Appends result events to the stream, batched under load.
    pub events: BatchPublisher,
    pub topology: Arc<Topology>,
    pub identity: Arc<str>,
}

/// Starts the supervised consumer. It stops (after finishing what it holds,
/// within `drain_timeout`) when `stop` is cancelled.
pub fn spawn(
    url: String,
    handler: Handler,
    settings: broker::QueueSettings,
    prefetch: u16,
    drain_timeout: Duration,
    stop: CancellationToken,
) -> (Link<()>, tokio::task::JoinHandle<()>) {
    let name = format!("{} consume", handler.identity);
    Link::spawn(url, name, stop, move |session| {
        let handler = handler.clone();
        let settings = settings.clone();
        async move {
            let topology = handler.topology.clone();
            broker::declare_topology(&session.connection, &topology, &settings).await?;
            let channel = session.connection.create_channel().await?;
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await?;
            let tag = format!("{}-{}", handler.identity, session.attempt);
            let mut consumer = channel
                .basic_consume(
                    topology.request_queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            // Results go out on the other connection; wait for it before taking work.
            handler.results.wait_up(Duration::from_secs(30)).await;
            session.set_ready(());
            tracing::info!(queue = %topology.request_queue, prefetch, "consuming requests");

            let in_flight = TaskTracker::new();
            let mut stopping = false;
            loop {
                let next = if stopping {
                    // After basic.cancel the stream ends once the broker has
                    // sent everything already in flight to us: handle those too.
                    consumer.next().await
                } else {
                    tokio::select! {
                        d = consumer.next() => d,
                        _ = session.shutdown.cancelled() => {
                            stopping = true;
                            channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await?;
                            continue;
                        }
                    }
                };
                match next {
                    Some(Ok(delivery)) => {
                        in_flight.spawn(handler.clone().handle(delivery));
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => break,
                }
            }
            in_flight.close();
            if tokio::time::timeout(drain_timeout, in_flight.wait())
                .await
                .is_err()
            {
                tracing::warn!("shutdown deadline passed; unfinished requests will be redelivered");
            }
            Ok(())
        }
    })
}

impl Handler {
    /// One delivery, start to ack. Never panics, never leaves it unsettled
    /// while the channel lives.
    async fn handle(self, delivery: Delivery) {
        if delivery.redelivered {
            metrics::counter!("worker_redeliveries_total").increment(1);
        }
        let requests = match VerifyRequest::decode_batch(&delivery.data) {
            Ok(requests) => requests,
            Err(e) => {
                tracing::warn!(error = %e, bytes = delivery.data.len(), "dead-lettering an undecodable message");
                metrics::counter!("worker_dead_lettered_total").increment(1);
                let _ = delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await;
                return;
            }
        };

        // Every request of the message is verified and its result confirmed
        // before the message is acked; one failure requeues the message.
        let outcomes = futures_util::future::join_all(
            requests
                .into_iter()
                .map(|r| self.verify_and_publish(Arc::new(r))),
        )
        .await;
        match outcomes.into_iter().find_map(Result::err) {
            None => {
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
            Some(e) => {
                metrics::counter!("worker_publish_failures_total").increment(1);
                tracing::warn!(error = %e, "result not confirmed; requeueing the message");
                // Give the results connection a moment to come back, so the
                // requeued message does not spin through this worker.
                self.results.wait_up(Duration::from_secs(1)).await;
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

    /// Verifies one request and appends its result event (confirmed).
    async fn verify_and_publish(
        &self,
        request: Arc<VerifyRequest>,
    ) -> Result<(), broker::PublishError> {
        let kind = match self.pool.verify(request.clone()).await {
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
                }
            }
            Ok((Err(e), _)) => {
                metrics::counter!("worker_verifications_total", "outcome" => e.code(), "algorithm" => request.algorithm.name()).increment(1);
                failed(e.code(), e.to_string(), &request)
            }
            Err(panic) => {
                tracing::error!(id = %request.id, %panic, "verification panicked");
                failed(
                    "internal_error",
                    "the verification failed unexpectedly".into(),
                    &request,
                )
            }
        };
        self.events
            .publish(Event::new(request.id, &self.identity, kind).encode())
            .await
    }
}

fn failed(code: &str, message: String, request: &VerifyRequest) -> EventKind {
    EventKind::Failed {
        error: ErrorBody {
            code: code.to_owned(),
            message,
        },
        submitted_at_ms: request.submitted_at_ms,
    }
}
