//! Batched, confirmed publishing to one queue.
//!
//! Every caller waits for its own item's confirmation, but items that arrive
//! while earlier batches await their confirms are sent together, as one
//! message holding a JSON array. When nothing is in flight an item goes at
//! once (at low load a batch is one item and nothing waits). When batches
//! are in flight, the next one gathers items until one of them is confirmed
//! or `linger` passes, whichever is first: under load the batches grow by
//! themselves and the broker handles one message (one publish, one delivery,
//! one ack) per batch instead of one per item, while a single slow confirm
//! holds up only its own batch, never the ones after it. The gateway batches
//! requests this way and every process batches its lifecycle events.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use crate::{Link, PublishError, Publisher};

/// Bounds of one batch message.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_items: usize,
    /// An item larger than this still goes, alone.
    pub max_bytes: usize,
    /// Batches awaiting their confirms at once (more items queue meanwhile).
    pub in_flight: usize,
    /// Longest a batch gathers items while others are in flight.
    pub linger: Duration,
}

impl BatchLimits {
    pub const DEFAULT: BatchLimits = BatchLimits {
        max_items: 256,
        max_bytes: 1 << 20,
        in_flight: 8,
        linger: Duration::from_millis(2),
    };
}

type Reply = oneshot::Sender<Result<(), PublishError>>;

/// A handle to publish items (each already JSON-encoded); cheap to clone.
#[derive(Clone)]
pub struct BatchPublisher {
    tx: mpsc::UnboundedSender<(Vec<u8>, Reply)>,
}

impl BatchPublisher {
    /// Starts the batching task publishing to `queue` over `link`; `kind`
    /// becomes the messages' `type` property.
    pub fn spawn(
        link: Link<Publisher>,
        queue: String,
        kind: &'static str,
        limits: BatchLimits,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(link, queue, kind, limits, rx));
        BatchPublisher { tx }
    }

    /// Publishes one JSON value; resolves once the broker confirmed the
    /// message carrying it (or refused it, or failed).
    pub async fn publish(&self, item: Vec<u8>) -> Result<(), PublishError> {
        let (reply, confirmed) = oneshot::channel();
        self.tx
            .send((item, reply))
            .map_err(|_| PublishError::Closed)?;
        confirmed.await.unwrap_or(Err(PublishError::Closed))
    }
}

async fn run(
    link: Link<Publisher>,
    queue: String,
    kind: &'static str,
    limits: BatchLimits,
    mut rx: mpsc::UnboundedReceiver<(Vec<u8>, Reply)>,
) {
    let slots = Arc::new(Semaphore::new(limits.in_flight.max(1)));
    // Signalled whenever a batch is settled.
    let settled = Arc::new(Notify::new());
    let queue: Arc<str> = queue.into();
    // An item that did not fit the previous batch opens the next one.
    let mut carried: Option<(Vec<u8>, Reply)> = None;
    loop {
        // Take a slot first: while all are busy, items pile up into the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => return,
            },
        };
        // Others in flight: gather until one of them settles (bounded).
        if slots.available_permits() + 1 < limits.in_flight.max(1) {
            let _ = tokio::time::timeout(limits.linger, settled.notified()).await;
        }
        let mut bytes = first.0.len();
        let mut batch = vec![first];
        while batch.len() < limits.max_items {
            match rx.try_recv() {
                Ok(item) if bytes + item.0.len() > limits.max_bytes => {
                    carried = Some(item);
                    break;
                }
                Ok(item) => {
                    bytes += item.0.len();
                    batch.push(item);
                }
                Err(_) => break,
            }
        }
        let link = link.clone();
        let queue = queue.clone();
        let settled = settled.clone();
        tokio::spawn(async move {
            let mut body = Vec::with_capacity(bytes + batch.len() + 1);
            body.push(b'[');
            for (i, (item, _)) in batch.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(item);
            }
            body.push(b']');
            let result = match link.current() {
                Some(publisher) => publisher.publish(&queue, &body, kind).await,
                None => Err(PublishError::Disconnected),
            };
            metrics::histogram!("batch_size", "kind" => kind).record(batch.len() as f64);
            for (_, reply) in batch {
                let _ = reply.send(result.clone());
            }
            drop(slot);
            settled.notify_waiters();
        });
    }
}
