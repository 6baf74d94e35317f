//! The batch publisher's gathering rule, against the real broker on
//! 127.0.0.1:5672 (AMQP_URL to change it), on queues of its own: an item
//! with nothing in flight goes at once; one that comes while another batch
//! awaits its confirm waits at least `gather` (BATCH_GATHER) before it is
//! sent, and with `gather` 0 it goes as soon as that batch settles (the
//! `idle` rule is tested in the crate, in virtual time). With
//! `hold` every batch waits that long for more items, in flight or not, so
//! items that come within it go as one message. A batch that opens while
//! every slot is busy (items waiting for one) takes up to `backlog_items`.

use std::time::{Duration, Instant};

use broker_client::{BatchLimits, BatchPublisher, Endpoint, Link, QueueSettings, QueueType};
use tokio_util::sync::CancellationToken;
use verify_core::Topology;

fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A publisher to queues of their own (unique names, as in every test of
/// the workspace).
async fn publisher(
    topology: Topology,
    limits: BatchLimits,
    stop: &CancellationToken,
) -> BatchPublisher {
    let settings = QueueSettings {
        queue_type: QueueType::Classic,
        max_queue_length: None,
        retention: Duration::from_secs(60),
        delivery_limit: 5,
    };
    let queue = topology.request_queue.clone();
    let (link, _task) = Link::spawn(
        Endpoint::plain(&url()),
        "batch test".into(),
        stop.clone(),
        move |session| {
            let topology = topology.clone();
            let settings = settings.clone();
            async move {
                broker_client::declare_topology(&session.connection, &topology, &settings).await?;
                broker_client::publisher::serve(session, Duration::from_secs(5)).await
            }
        },
    );
    assert!(
        link.wait_usable(Duration::from_secs(20)).await,
        "no broker at {}",
        url()
    );
    BatchPublisher::spawn(link, queue, "test", limits)
}

/// What became of two items, the second published `gap` after the first
/// (back to back when zero), a warm-up item before them.
struct Sent {
    /// How long the first took to be confirmed.
    first: Duration,
    /// How long after the first was published the second was confirmed.
    second: Duration,
    /// Messages the request queue then held, the warm-up item's included.
    messages: u32,
}

async fn two_items(limits: BatchLimits, gap: Duration) -> Sent {
    let stop = CancellationToken::new();
    let topology = Topology::new(&format!("batch-test.{}", uuid::Uuid::new_v4()));
    let publisher = publisher(topology.clone(), limits, &stop).await;
    // The first publish of a channel is the slowest: not measured.
    publisher.publish(&b"{}"[..]).await.unwrap();
    let started = Instant::now();
    let first = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            publisher.publish(&b"{\"n\":1}"[..]).await.unwrap();
            started.elapsed()
        })
    };
    if gap.is_zero() {
        // Queued right behind the first, which is then in flight.
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(gap).await;
    }
    publisher.publish(&b"{\"n\":2}"[..]).await.unwrap();
    let second = started.elapsed();
    let first = first.await.unwrap();
    stop.cancel();
    let messages = queue_length(&topology).await;
    delete_queues(&topology).await;
    Sent {
        first,
        second,
        messages,
    }
}

async fn queue_length(topology: &Topology) -> u32 {
    let connection = lapin::Connection::connect(&url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            topology.request_queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
    queue.message_count()
}

/// Leaves nothing behind on the shared broker.
async fn delete_queues(topology: &Topology) {
    let connection = lapin::Connection::connect(&url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for queue in [
        &topology.request_queue,
        &topology.dead_letter_queue,
        &topology.events_stream,
    ] {
        let _ = channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await;
    }
    let _ = connection.close(200, "done".into()).await;
}

const GATHER: Duration = Duration::from_millis(400);

#[tokio::test]
async fn an_item_behind_a_batch_in_flight_waits_the_gather_time() {
    let Sent { first, second, .. } = two_items(
        BatchLimits {
            gather: GATHER,
            linger: Duration::from_secs(1),
            idle: Duration::ZERO,
            ..BatchLimits::DEFAULT
        },
        Duration::ZERO,
    )
    .await;
    assert!(first < GATHER, "the first item waited: {first:?}");
    assert!(second >= GATHER, "the second went after {second:?}");
}

#[tokio::test]
async fn without_gather_an_item_goes_once_the_batch_ahead_settles() {
    let Sent { first, second, .. } = two_items(
        BatchLimits {
            gather: Duration::ZERO,
            linger: Duration::from_secs(1),
            idle: Duration::ZERO,
            ..BatchLimits::DEFAULT
        },
        Duration::ZERO,
    )
    .await;
    // Well under the gather time of the test above, on a loaded machine too.
    assert!(first < GATHER && second < GATHER, "{first:?} {second:?}");
}

const HOLD: Duration = Duration::from_millis(400);
const GAP: Duration = Duration::from_millis(100);

#[tokio::test]
async fn items_within_the_hold_go_as_one_message() {
    let Sent {
        first, messages, ..
    } = two_items(
        BatchLimits {
            hold: HOLD,
            ..BatchLimits::DEFAULT
        },
        GAP,
    )
    .await;
    assert_eq!(messages, 2, "the warm-up item, then both items in one");
    assert!(first >= HOLD, "the first item went after {first:?}");
}

#[tokio::test]
async fn without_hold_spaced_items_go_as_messages_of_their_own() {
    let Sent { messages, .. } = two_items(BatchLimits::DEFAULT, GAP).await;
    assert_eq!(messages, 3, "the warm-up item, then one message per item");
}

/// Messages the queue holds after a warm-up item, then one item in flight
/// (the only slot busy) and, behind it, `behind` items at once.
async fn behind_one_in_flight(limits: BatchLimits, behind: usize) -> u32 {
    let stop = CancellationToken::new();
    let topology = Topology::new(&format!("batch-test.{}", uuid::Uuid::new_v4()));
    let publisher = publisher(topology.clone(), limits, &stop).await;
    publisher.publish(&b"{}"[..]).await.unwrap();
    let ahead = {
        let publisher = publisher.clone();
        tokio::spawn(async move { publisher.publish(&b"{\"n\":0}"[..]).await.unwrap() })
    };
    tokio::task::yield_now().await;
    let waiting: Vec<_> = (1..=behind)
        .map(|n| {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                publisher
                    .publish(format!("{{\"n\":{n}}}").into_bytes())
                    .await
                    .unwrap()
            })
        })
        .collect();
    ahead.await.unwrap();
    for item in waiting {
        item.await.unwrap();
    }
    stop.cancel();
    let messages = queue_length(&topology).await;
    delete_queues(&topology).await;
    messages
}

fn one_slot(max_items: usize, backlog_items: usize) -> BatchLimits {
    BatchLimits {
        max_items,
        backlog_items,
        in_flight: 1,
        gather: Duration::ZERO,
        linger: Duration::from_secs(1),
        idle: Duration::ZERO,
        ..BatchLimits::DEFAULT
    }
}

#[tokio::test]
async fn items_waiting_for_a_slot_go_in_batches_of_up_to_backlog_items() {
    let messages = behind_one_in_flight(one_slot(2, 8), 8).await;
    assert_eq!(
        messages, 3,
        "the warm-up item, the one in flight (or it and one more), then the rest in one"
    );
}

#[tokio::test]
async fn without_a_larger_backlog_size_they_go_max_items_at_a_time() {
    let messages = behind_one_in_flight(one_slot(2, 2), 8).await;
    assert!(
        messages >= 5,
        "9 items two at a time after the warm-up item: {messages} messages"
    );
}
