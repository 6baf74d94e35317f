//! The request consumer: a supervised connection that takes messages off
//! the request queue (at most `PREFETCH` held) and hands each to the
//! [`Handler`], which settles it (see its module for the delivery
//! invariants).
//!
//! Invariant: while results cannot be published (connection down, or the
//! broker blocks publishers during an alarm) no new message is taken: what
//! is held waits, nothing spins. On shutdown the consumer is cancelled and
//! everything already delivered is settled before the session ends.

use std::time::Duration;

use broker_client::{Link, SessionError};
use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handler::Handler;

/// Starts the supervised consumer. It stops (after finishing what it holds,
/// within `drain_timeout`) when `stop` is cancelled.
pub fn spawn(
    endpoint: broker_client::Endpoint,
    handler: Handler,
    settings: broker_client::QueueSettings,
    prefetch: u16,
    drain_timeout: Duration,
    stop: CancellationToken,
) -> (Link<()>, tokio::task::JoinHandle<()>) {
    let name = format!("{} consume", handler.identity);
    Link::spawn(endpoint, name, stop, move |session| {
        let handler = handler.clone();
        let settings = settings.clone();
        async move {
            let topology = handler.topology.clone();
            broker_client::declare_topology(&session.connection, &topology, &settings).await?;
            let channel = session.channels.create().await?;
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
            let mut paused = false;
            loop {
                let next = if stopping {
                    // After basic.cancel the stream ends once the broker has
                    // sent everything already in flight to us: handle those too.
                    consumer.next().await
                } else {
                    let publishable = handler.results.is_up();
                    if publishable == paused {
                        paused = !publishable;
                        if paused {
                            tracing::warn!("results cannot be published: taking no new requests");
                        } else {
                            tracing::info!("results can be published again: resuming");
                        }
                        metrics::gauge!("worker_paused").set(if paused { 1.0 } else { 0.0 });
                    }
                    tokio::select! {
                        d = consumer.next(), if !paused => d,
                        // Look again now and then: the broker may block us
                        // while we wait for a delivery.
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
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
            if stopping {
                Ok(())
            } else {
                Err(SessionError::Ended(
                    "the broker cancelled the consumer or closed its channel",
                ))
            }
        }
    })
}
