//! Batched, confirmed publishing to one queue.
//!
//! Every caller waits for its own item's confirmation, but items that arrive
//! while earlier batches await their confirms are sent together, as one
//! message holding a JSON array (a batch of one is sent as that item
//! alone, uncopied; readers take both, see `verify_core::split_batch`). When nothing is in flight an item goes at
//! once (at low load a batch is one item and nothing waits). When batches
//! are in flight, the next one gathers items until one of them is confirmed
//! or `linger` passes, whichever is first, but no sooner than `gather`
//! (BATCH_GATHER); with `idle` (BATCH_IDLE) it goes instead once no item
//! has come for that long, or at `linger`, or full: under load the batches grow by
//! themselves and the broker handles one message (one publish, one delivery,
//! one ack) per batch instead of one per item, while a single slow confirm
//! holds up only its own batch, never the ones after it. A batch that opens
//! while every slot is busy (items were waiting for one) may take up to
//! `backlog_items` instead of `max_items`: a backlog drains in fewer, larger
//! messages, each costing the broker what one small one does. The gateway batches
//! requests this way and every process batches its lifecycle events. Items
//! nobody waits on (the gateway's `accepted` events) may also be held for a
//! fixed time, in flight or not (`hold`): then at most one message goes per
//! `hold`. With `compress`, a message goes zstd-compressed when that makes
//! it smaller (`verify_core::encoding`; its readers decode it by its
//! `content-encoding`).
//!
//! A batch whose connection went away before its confirm (a broker node
//! died) is published again on the next connection, within `retry_for`:
//! it may then be stored twice, which ids make harmless (the first verdict
//! per id wins, and the projection ignores a second `accepted`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use crate::{Link, PublishError, Publisher};

/// Bounds of one batch message.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_items: usize,
    /// Items a batch may take when it opened on a backlog (every in-flight
    /// slot was busy, so items were waiting for one): they would otherwise
    /// wait for the next slot, and one message carries them for the broker's
    /// cost of one. At least `max_items`.
    pub backlog_items: usize,
    /// Largest message (the JSON array); an item larger than this still
    /// goes, alone.
    pub max_bytes: usize,
    /// Batches awaiting their confirms at once (more items queue meanwhile).
    pub in_flight: usize,
    /// Longest a batch gathers items while others are in flight.
    pub linger: Duration,
    /// Shortest a batch gathers items while others are in flight (0: it
    /// goes as soon as one of them settles). Up to `linger`.
    pub gather: Duration,
    /// With others in flight, a batch that has gathered for `gather` goes
    /// as soon as no item has come for this long (or at `linger`, or when
    /// full), instead of when one of them settles (0: that rule is off).
    /// Clients that come in bursts get their batch at the burst's end; a
    /// steady stream fills batches up to `linger`.
    pub idle: Duration,
    /// How long every batch waits for more items after its first, whatever
    /// is in flight (0: never). For items nobody waits on, such as the
    /// gateway's `accepted` events: the broker then handles at most one
    /// message per `hold`, and no caller's answer is later for it.
    pub hold: Duration,
    /// Whether messages go zstd-compressed (`content-encoding: zstd`, see
    /// `verify_core::encoding`): for the gateway's requests, whose bodies
    /// are mostly documents.
    pub compress: bool,
    /// How long a batch whose connection dropped may wait for the next
    /// connection to be published again (then it fails).
    pub retry_for: Duration,
    /// Items waiting for a batch at most; a caller beyond waits for room
    /// (memory is bounded by this, not by how fast callers come).
    pub queued: usize,
}

impl BatchLimits {
    pub const DEFAULT: BatchLimits = BatchLimits {
        max_items: 256,
        backlog_items: 256,
        max_bytes: 1 << 20,
        in_flight: 8,
        linger: Duration::from_millis(2),
        gather: Duration::from_millis(2),
        idle: Duration::ZERO,
        hold: Duration::ZERO,
        compress: false,
        retry_for: Duration::from_secs(5),
        queued: 4096,
    };
}

type Reply = oneshot::Sender<Result<(), PublishError>>;

/// One item to publish: its JSON, its `traceparent` (set as the message's
/// AMQP header when the message holds this item alone), the caller's span
/// (a `confirm` span opens in it while the broker's confirm is awaited),
/// whom to answer.
struct Item {
    json: Bytes,
    traceparent: Option<String>,
    span: tracing::Span,
    reply: Reply,
}

/// A handle to publish items (each already JSON-encoded); cheap to clone.
#[derive(Clone)]
pub struct BatchPublisher {
    tx: mpsc::Sender<Item>,
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
        let (tx, rx) = mpsc::channel(limits.queued.max(1));
        tokio::spawn(run(link, queue, kind, limits, rx));
        BatchPublisher { tx }
    }

    /// Publishes one JSON value; resolves once the broker confirmed the
    /// message carrying it (or refused it, or failed).
    pub async fn publish(&self, item: impl Into<Bytes>) -> Result<(), PublishError> {
        self.publish_traced(item.into(), None, tracing::Span::none())
            .await
    }

    /// [`BatchPublisher::publish`] for an item that carries a trace: a
    /// message holding this item alone also carries its `traceparent` as an
    /// AMQP header (a batch's items carry theirs inside), and the wait for
    /// the broker's confirm is a `confirm` span inside `span` (none when
    /// `span` is disabled).
    pub async fn publish_traced(
        &self,
        json: Bytes,
        traceparent: Option<String>,
        span: tracing::Span,
    ) -> Result<(), PublishError> {
        let (reply, confirmed) = oneshot::channel();
        self.tx
            .send(Item {
                span,
                json,
                traceparent,
                reply,
            })
            .await
            .map_err(|_| PublishError::Closed)?;
        confirmed.await.unwrap_or(Err(PublishError::Closed))
    }
}

async fn run(
    link: Link<Publisher>,
    queue: String,
    kind: &'static str,
    limits: BatchLimits,
    mut rx: mpsc::Receiver<Item>,
) {
    let slots = Arc::new(Semaphore::new(limits.in_flight.max(1)));
    // Signalled whenever a batch is settled.
    let settled = Arc::new(Notify::new());
    let queue: Arc<str> = queue.into();
    // An item that did not fit the previous batch opens the next one.
    let mut carried: Option<Item> = None;
    loop {
        // Take a slot first: while all are busy, items pile up into the next
        // batch, which may then take up to `backlog_items` of them.
        let backlogged = slots.available_permits() == 0;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let limits = BatchLimits {
            max_items: if backlogged {
                limits.backlog_items.max(limits.max_items)
            } else {
                limits.max_items
            },
            ..limits
        };
        let first = match carried.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => return,
            },
        };
        let in_flight = slots.available_permits() + 1 < limits.in_flight.max(1);
        let (batch, bytes) = gather(
            first,
            &mut rx,
            &mut carried,
            &limits,
            in_flight,
            &settled,
            |item| item.json.len(),
        )
        .await;
        let link = link.clone();
        let queue = queue.clone();
        let settled = settled.clone();
        tokio::spawn(async move {
            // One item goes as it is (a message may be a single value): a
            // large request is not copied again here.
            let joined;
            let body: &[u8] = match batch.as_slice() {
                [only] => &only.json,
                _ => {
                    let mut body = Vec::with_capacity(bytes);
                    body.push(b'[');
                    for (i, item) in batch.iter().enumerate() {
                        if i > 0 {
                            body.push(b',');
                        }
                        body.extend_from_slice(&item.json);
                    }
                    body.push(b']');
                    joined = body;
                    &joined
                }
            };
            let compressed = limits
                .compress
                .then(|| verify_core::encoding::compress(body))
                .flatten();
            let (body, encoding) = match &compressed {
                Some(compressed) => (compressed.as_slice(), Some(verify_core::encoding::ZSTD)),
                None => (body, None),
            };
            let headers = match batch.as_slice() {
                [Item {
                    traceparent: Some(traceparent),
                    ..
                }] => Some(traceparent_header(traceparent)),
                _ => None,
            };
            let message = Message {
                queue: &queue,
                body,
                kind,
                headers,
                encoding,
            };
            // Each traced item's wait for the confirm, once the message is sent.
            let mut confirming: Vec<tracing::Span> = Vec::new();
            let mut on_sent = || {
                confirming = batch
                    .iter()
                    .filter(|item| !item.span.is_disabled())
                    .map(|item| tracing::info_span!(parent: &item.span, "confirm"))
                    .collect();
            };
            let result = publish_retrying(&link, &message, limits.retry_for, &mut on_sent).await;
            drop(confirming);
            metrics::histogram!("batch_size", "kind" => kind).record(batch.len() as f64);
            for item in batch {
                let _ = item.reply.send(result.clone());
            }
            drop(slot);
            settled.notify_waiters();
        });
    }
}

/// Gathers one batch after `first` by the module's rule (`in_flight`:
/// others await their confirms); an item that does not fit is left in
/// `carried`. The batch and its size as sent (items, commas, brackets).
async fn gather<T>(
    first: T,
    rx: &mut mpsc::Receiver<T>,
    carried: &mut Option<T>,
    limits: &BatchLimits,
    in_flight: bool,
    settled: &Notify,
    size: impl Fn(&T) -> usize,
) -> (Vec<T>, usize) {
    let opened = tokio::time::Instant::now();
    let mut bytes = size(&first) + 2;
    let mut batch = vec![first];
    // Adds `item` if it fits; gives it back if not.
    let mut take = |batch: &mut Vec<T>, item: T| {
        if bytes + size(&item) + 1 > limits.max_bytes {
            return Err(item);
        }
        bytes += size(&item) + 1;
        batch.push(item);
        Ok(())
    };
    if in_flight && !limits.idle.is_zero() {
        // Until a pause of `idle` (after `gather`), `linger`, or full; one
        // timer, moved on as items come.
        let last = opened + limits.linger;
        let earliest = opened + limits.gather.min(limits.linger);
        let until =
            |quiet_from: tokio::time::Instant| (quiet_from + limits.idle).max(earliest).min(last);
        let pause = tokio::time::sleep_until(until(opened));
        tokio::pin!(pause);
        while batch.len() < limits.max_items {
            tokio::select! {
                biased;
                item = rx.recv() => match item.map(|item| take(&mut batch, item)) {
                    Some(Ok(())) => pause.as_mut().reset(until(tokio::time::Instant::now())),
                    Some(Err(item)) => {
                        *carried = Some(item);
                        break;
                    }
                    None => break,
                },
                () = &mut pause => break,
            }
        }
    } else if in_flight {
        // Until one of them settles (bounded), no sooner than `gather`.
        let _ = tokio::time::timeout(limits.linger, settled.notified()).await;
        // No timer at all with gather 0.
        let gather = limits.gather.min(limits.linger);
        if !gather.is_zero() {
            tokio::time::sleep_until(opened + gather).await;
        }
    }
    if !limits.hold.is_zero() {
        tokio::time::sleep_until(opened + limits.hold).await;
    }
    while carried.is_none() && batch.len() < limits.max_items {
        let Ok(item) = rx.try_recv() else { break };
        if let Err(item) = take(&mut batch, item) {
            *carried = Some(item);
        }
    }
    (batch, bytes)
}

/// One message of a batch.
struct Message<'a> {
    queue: &'a str,
    body: &'a [u8],
    kind: &'static str,
    headers: Option<FieldTable>,
    /// `content-encoding` of `body` (`None`: as it is).
    encoding: Option<&'static str>,
}

fn traceparent_header(traceparent: &str) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("traceparent"),
        AMQPValue::LongString(LongString::from(traceparent)),
    );
    headers
}

/// Publishes `message`; if its connection goes away before the confirm,
/// waits for the link to come back (on any node) and publishes it again,
/// until `retry_for` has passed.
async fn publish_retrying(
    link: &Link<Publisher>,
    message: &Message<'_>,
    retry_for: Duration,
    on_sent: &mut (dyn FnMut() + Send),
) -> Result<(), PublishError> {
    let Message {
        queue,
        body,
        kind,
        ref headers,
        encoding,
    } = *message;
    let deadline = tokio::time::Instant::now() + retry_for;
    let mut first = true;
    loop {
        let (result, lost) = match link.current() {
            Some(publisher) => {
                let publish = publisher.publish_observed(
                    queue,
                    body,
                    kind,
                    headers.clone(),
                    encoding,
                    on_sent,
                );
                // A copy published again gets what is left of `retry_for`,
                // so a caller waits at most about CONFIRM_TIMEOUT + retry_for.
                let result = if first {
                    publish.await
                } else {
                    tokio::time::timeout_at(deadline, publish)
                        .await
                        .unwrap_or(Err(PublishError::Timeout(retry_for)))
                };
                (result, publisher.connection_lost())
            }
            None => (Err(PublishError::Disconnected), true),
        };
        first = false;
        let retry = matches!(
            result,
            Err(PublishError::Connection(_) | PublishError::Disconnected)
        ) && lost;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        // Not `wait_usable`: the link may still offer the publisher that
        // just failed, and publishing on it again fails at once, a loop that
        // never yields (it held a gateway's one runtime thread for the whole
        // `retry_for` when a cluster node died).
        if !retry
            || remaining.is_zero()
            || !link
                .wait_usable_where(remaining, |publisher| !publisher.connection_lost())
                .await
        {
            return result;
        }
        metrics::counter!("republished_total", "kind" => kind).increment(1);
        tracing::info!(kind, "connection lost before the confirm; publishing again");
    }
}

#[cfg(test)]
mod tests {
    //! The `idle` rule in virtual time (the clock only moves when every
    //! task waits): items sent at set moments behind a batch in flight.
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limits(idle: Duration, gather: Duration, linger: Duration) -> BatchLimits {
        BatchLimits {
            idle,
            gather,
            linger,
            ..BatchLimits::DEFAULT
        }
    }

    /// Items `1..` sent at `offsets` (ms after item 0 opens the batch); the
    /// batches gathered in turn, with the moment each went.
    async fn batches(limits: BatchLimits, offsets: &[u64]) -> Vec<(Vec<u64>, Duration)> {
        let (tx, mut rx) = mpsc::channel(64);
        let start = tokio::time::Instant::now();
        let sending = offsets.to_vec();
        tokio::spawn(async move {
            for (n, at) in sending.into_iter().enumerate() {
                tokio::time::sleep_until(start + MS * at as u32).await;
                tx.send(n as u64 + 1).await.unwrap();
            }
            // Open long after: a closed channel ends a batch at once.
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tx);
        });
        let settled = Notify::new();
        let mut carried = None;
        let mut first = Some(0);
        let mut out = Vec::new();
        loop {
            let head = match (first.take(), carried.take()) {
                (Some(item), _) | (None, Some(item)) => item,
                (None, None) => match rx.recv().await {
                    Some(item) => item,
                    None => return out,
                },
            };
            let (batch, _) =
                gather(head, &mut rx, &mut carried, &limits, true, &settled, |_| 1).await;
            out.push((batch, start.elapsed()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_goes_once_its_items_pause_for_idle() {
        // Items 10 ms apart, then a pause: one batch, gone 30 ms after the
        // last, long before the linger.
        let got = batches(limits(30 * MS, Duration::ZERO, 1000 * MS), &[10, 20, 30]).await;
        assert_eq!(got, vec![(vec![0, 1, 2, 3], 60 * MS)]);
    }

    #[tokio::test(start_paused = true)]
    async fn items_that_never_pause_go_at_the_linger() {
        // One every 10 ms for 200 ms, idle 30 ms, linger 100 ms: batches
        // of a linger's worth each, never waiting for the stream to end.
        let offsets: Vec<u64> = (1..=20).map(|n| n * 10).collect();
        let got = batches(limits(30 * MS, Duration::ZERO, 100 * MS), &offsets).await;
        assert_eq!(got[0], ((0..=9).collect(), 100 * MS));
        assert_eq!(got[1].1, 200 * MS, "{got:?}");
        let all: Vec<u64> = got.iter().flat_map(|(b, _)| b.clone()).collect();
        assert_eq!(all, (0..=20).collect::<Vec<_>>(), "lost or reordered");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_at_least_gather_and_goes_when_full() {
        // A pause right away still waits for `gather` (50 ms).
        let got = batches(limits(5 * MS, 50 * MS, 1000 * MS), &[]).await;
        assert_eq!(got, vec![(vec![0], 50 * MS)]);
        // Full (max_items) goes at once, whatever is still to come.
        let full = BatchLimits {
            max_items: 3,
            ..limits(30 * MS, Duration::ZERO, 1000 * MS)
        };
        let got = batches(full, &[1, 2, 3, 4]).await;
        assert_eq!(got[0], (vec![0, 1, 2], 2 * MS));
        assert_eq!(got[1].0, vec![3, 4]);
    }
}
