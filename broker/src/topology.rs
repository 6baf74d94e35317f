//! Declares the service's queues, identically from every process.
//!
//! RabbitMQ refuses a re-declaration whose arguments differ from the
//! existing queue's (PRECONDITION_FAILED, which closes the channel). Each
//! queue is declared on a channel of its own; a refusal is logged and the
//! existing queue used as it is. So the first process to start fixes the
//! arguments, and a later one with another `--retention` or
//! `--max-queue-length` still starts (it warns about what it cannot apply).

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Connection;
use std::time::Duration;
use verify_core::Topology;

/// Arguments of the queues this process creates when they do not exist yet.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Bound of the request queue; when full the broker nacks new requests
    /// (`x-overflow: reject-publish`). `None`: unbounded.
    pub max_queue_length: Option<u32>,
    /// How long the events stream keeps events (`x-max-age`), and how long
    /// a request may wait in its queue (`x-message-ttl`).
    pub retention: Duration,
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(ShortString::from(*key), value.clone());
    }
    table
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// The arguments of each queue of `topology`, in declaration order.
pub fn queue_arguments(topology: &Topology, settings: &QueueSettings) -> Vec<(String, FieldTable)> {
    let mut request = vec![
        // Classic queue v2 (RabbitMQ 3.10+; older brokers ignore it): far
        // less broker CPU per persistent message than v1.
        ("x-queue-version", AMQPValue::LongLongInt(2)),
        // Rejected (undecodable) requests go to `<queue>.dead` through the
        // default exchange: never requeued forever, never lost.
        ("x-dead-letter-exchange", long("")),
        (
            "x-dead-letter-routing-key",
            long(&topology.dead_letter_queue),
        ),
        // A request lives no longer than its id: after the retention nobody
        // can read its verdict, so the broker dead-letters it (reason
        // `expired`) instead of having it verified.
        (
            "x-message-ttl",
            AMQPValue::LongLongInt(settings.retention.as_millis().clamp(1, i64::MAX as u128) as i64),
        ),
    ];
    if let Some(max) = settings.max_queue_length {
        request.push(("x-max-length", AMQPValue::LongLongInt(i64::from(max))));
        request.push(("x-overflow", long("reject-publish")));
    }
    let events = [
        ("x-queue-type", long("stream")),
        (
            "x-max-age",
            long(&format!("{}s", settings.retention.as_secs().max(1))),
        ),
    ];
    vec![
        (
            topology.dead_letter_queue.clone(),
            table(&[("x-queue-version", AMQPValue::LongLongInt(2))]),
        ),
        (topology.request_queue.clone(), table(&request)),
        (topology.events_stream.clone(), table(&events)),
    ]
}

/// Makes sure every queue exists, each declared on a short-lived channel
/// because a refused declaration closes its channel.
pub async fn declare_topology(
    connection: &Connection,
    topology: &Topology,
    settings: &QueueSettings,
) -> lapin::Result<()> {
    for (name, arguments) in queue_arguments(topology, settings) {
        let channel = connection.create_channel().await?;
        match channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await
        {
            Ok(_) => {
                let _ = channel.close(200, "ok".into()).await;
            }
            Err(e) if connection.status().connected() => {
                tracing::warn!(queue = %name, error = %e, "queue exists with other arguments; using it as it is");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
