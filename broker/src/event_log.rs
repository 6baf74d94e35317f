//! Appending lifecycle events to the events stream, batched.
//!
//! Every caller waits for its own event's confirmation, but events that
//! arrive while earlier batches await their confirms are sent together as
//! one stream message. There is no timer: at low load a batch is one event
//! and nothing waits; under load the batches grow by themselves, and the
//! broker handles one message per batch instead of one per event.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};
use verify_core::Event;

use crate::{Link, PublishError, Publisher};

/// Most events in one stream message.
const MAX_BATCH: usize = 256;
/// Batches awaiting their confirms at once (more events queue meanwhile).
const IN_FLIGHT_BATCHES: usize = 4;

type Reply = oneshot::Sender<Result<(), String>>;

/// A handle to append events; cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    tx: mpsc::UnboundedSender<(Event, Reply)>,
}

impl EventLog {
    /// Starts the batching task publishing to `stream` over `link`.
    pub fn spawn(link: Link<Publisher>, stream: String) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(link, stream, rx));
        EventLog { tx }
    }

    /// Appends `event`; resolves once the broker confirmed it (or failed to).
    pub async fn append(&self, event: Event) -> Result<(), PublishError> {
        let (reply, confirmed) = oneshot::channel();
        self.tx
            .send((event, reply))
            .map_err(|_| PublishError::Closed)?;
        match confirmed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(PublishError::Batch(e)),
            Err(_) => Err(PublishError::Closed),
        }
    }
}

async fn run(
    link: Link<Publisher>,
    stream: String,
    mut rx: mpsc::UnboundedReceiver<(Event, Reply)>,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_BATCHES));
    let stream: Arc<str> = stream.into();
    loop {
        // Take a slot first: while all are busy, events pile up into the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let link = link.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            let (events, replies): (Vec<Event>, Vec<Reply>) = batch.into_iter().unzip();
            let result = match link.current() {
                Some(publisher) => publisher
                    .publish(&stream, &Event::encode_batch(&events), "events")
                    .await
                    .map_err(|e| e.to_string()),
                None => Err("not connected to the broker".to_owned()),
            };
            metrics::histogram!("event_batch_size").record(events.len() as f64);
            for reply in replies {
                let _ = reply.send(result.clone());
            }
            drop(slot);
        });
    }
}
