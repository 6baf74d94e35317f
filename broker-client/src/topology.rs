//! Declares the service's queues, identically from every process.
//!
//! RabbitMQ refuses a re-declaration whose arguments differ from the
//! existing queue's (PRECONDITION_FAILED, which closes the channel). Each
//! queue is declared on a channel of its own; a refusal is logged and the
//! existing queue used as it is. So the first process to start fixes the
//! arguments, and a later one with another `--retention` or
//! `--max-queue-length` still starts (it warns about what it cannot apply).
//! A queue this user may not declare (RabbitMQ asks read permission to
//! declare a queue with a dead-letter exchange, and the gateways' user must
//! not read requests) is checked passively: if it exists, it is used; if
//! not, [`TopologyError::NotCreatedYet`] until a worker has made it.
//! A queue of the other type (classic where `QUEUE_TYPE` says quorum, or
//! the reverse) is not used: the declaration fails with
//! [`TopologyError::QueueType`], which says how to migrate.
//!
//! Quorum queues follow RabbitMQ's production guidance: `x-delivery-limit`
//! as a backstop behind the workers' own count, at-least-once
//! dead-lettering (which needs `x-overflow: reject-publish`), replicated
//! over the cluster's nodes.

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Connection;
use std::time::Duration;
use verify_core::Topology;

/// The type of the request queue and its dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    Quorum,
    Classic,
}

impl QueueType {
    pub fn name(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

impl std::fmt::Display for QueueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the topology could not be declared.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(
        "queue {queue:?} exists with another type than QUEUE_TYPE={wanted}; RabbitMQ cannot \
         change a queue's type. To migrate: stop the gateways, let the workers drain {queue:?} \
         (and read {queue:?}.dead if you need it), delete both queues (rabbitmqctl delete_queue), \
         then start with QUEUE_TYPE={wanted}; or keep the old type with QUEUE_TYPE={other} \
         (broker said: {detail})"
    )]
    QueueType {
        queue: String,
        wanted: QueueType,
        other: QueueType,
        detail: String,
    },
    #[error(
        "queue {0:?} does not exist yet, and this broker user may not create it (the request \
         queue needs read permission to declare; with per-role users the workers' user \
         creates it): waiting for a worker"
    )]
    NotCreatedYet(String),
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
}

/// Arguments of the queues this process creates when they do not exist yet.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// The request and dead-letter queues' type.
    pub queue_type: QueueType,
    /// Bound of the request queue; when full the broker nacks new requests
    /// (`x-overflow: reject-publish`). `None`: unbounded.
    pub max_queue_length: Option<u32>,
    /// How long the events stream keeps events (`x-max-age`), and how long
    /// a request may wait in its queue (`x-message-ttl`).
    pub retention: Duration,
    /// A quorum queue's `x-delivery-limit`.
    pub delivery_limit: u32,
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
    let kind: Vec<(&str, AMQPValue)> = match settings.queue_type {
        // Classic queue v2 (RabbitMQ 3.10+; older brokers ignore it): far
        // less broker CPU per persistent message than v1.
        QueueType::Classic => vec![("x-queue-version", AMQPValue::LongLongInt(2))],
        QueueType::Quorum => vec![("x-queue-type", long("quorum"))],
    };
    let mut request = kind.clone();
    request.extend([
        // Dead letters go to `<queue>.dead` through the default exchange:
        // never requeued forever, never lost.
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
    ]);
    if let Some(max) = settings.max_queue_length {
        request.push(("x-max-length", AMQPValue::LongLongInt(i64::from(max))));
    }
    match settings.queue_type {
        QueueType::Classic => {
            if settings.max_queue_length.is_some() {
                request.push(("x-overflow", long("reject-publish")));
            }
        }
        QueueType::Quorum => request.extend([
            ("x-overflow", long("reject-publish")),
            ("x-dead-letter-strategy", long("at-least-once")),
            (
                "x-delivery-limit",
                AMQPValue::LongLongInt(i64::from(settings.delivery_limit)),
            ),
        ]),
    }
    let events = [
        ("x-queue-type", long("stream")),
        (
            "x-max-age",
            long(&format!("{}s", settings.retention.as_secs().max(1))),
        ),
    ];
    vec![
        (topology.dead_letter_queue.clone(), table(&kind)),
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
) -> Result<(), TopologyError> {
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
            Err(e)
                if connection.status().connected() && e.to_string().contains("ACCESS_REFUSED") =>
            {
                let channel = connection.create_channel().await?;
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::durable()
                };
                match channel
                    .queue_declare(name.as_str().into(), passive, FieldTable::default())
                    .await
                {
                    Ok(_) => {
                        let _ = channel.close(200, "ok".into()).await;
                    }
                    Err(_) if connection.status().connected() => {
                        return Err(TopologyError::NotCreatedYet(name));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) if connection.status().connected() => {
                let detail = e.to_string();
                // RabbitMQ names the first argument that differs; between a
                // classic (v2) and a quorum queue that is x-queue-version
                // (only classic queues carry it) or x-queue-type.
                let type_differs =
                    detail.contains("'x-queue-type'") || detail.contains("'x-queue-version'");
                if type_differs && name != topology.events_stream {
                    let other = match settings.queue_type {
                        QueueType::Quorum => QueueType::Classic,
                        QueueType::Classic => QueueType::Quorum,
                    };
                    return Err(TopologyError::QueueType {
                        queue: name,
                        wanted: settings.queue_type,
                        other,
                        detail,
                    });
                }
                tracing::warn!(
                    queue = %name,
                    wanted = %settings.queue_type,
                    error = %e,
                    "queue exists with other arguments; using it as it is (if it is of the other \
                     type, set QUEUE_TYPE to match or migrate it: see the README)"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(queue_type: QueueType) -> QueueSettings {
        QueueSettings {
            queue_type,
            max_queue_length: Some(100),
            retention: Duration::from_secs(900),
            delivery_limit: 5,
        }
    }

    fn arg<'a>(table: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
        table.inner().get(key)
    }

    #[test]
    fn a_quorum_request_queue_follows_rabbitmqs_guidance() {
        let topology = Topology::new("q");
        let queues = queue_arguments(&topology, &settings(QueueType::Quorum));
        let (name, request) = &queues[1];
        assert_eq!(name, "q");
        assert_eq!(arg(request, "x-queue-type"), Some(&long("quorum")));
        // The broker's backstop behind the workers' own count.
        assert_eq!(
            arg(request, "x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(5))
        );
        assert_eq!(
            arg(request, "x-dead-letter-strategy"),
            Some(&long("at-least-once"))
        );
        assert_eq!(arg(request, "x-overflow"), Some(&long("reject-publish")));
        assert_eq!(
            arg(request, "x-message-ttl"),
            Some(&AMQPValue::LongLongInt(900_000))
        );
        assert_eq!(
            arg(request, "x-dead-letter-routing-key"),
            Some(&long("q.dead"))
        );
        assert_eq!(arg(&queues[0].1, "x-queue-type"), Some(&long("quorum")));
        assert_eq!(arg(&queues[2].1, "x-queue-type"), Some(&long("stream")));
    }

    #[test]
    fn a_classic_request_queue_is_version_2_with_the_same_ttl_and_bound() {
        let queues = queue_arguments(&Topology::new("q"), &settings(QueueType::Classic));
        let request = &queues[1].1;
        assert_eq!(
            arg(request, "x-queue-version"),
            Some(&AMQPValue::LongLongInt(2))
        );
        assert_eq!(arg(request, "x-queue-type"), None);
        assert_eq!(
            arg(request, "x-message-ttl"),
            Some(&AMQPValue::LongLongInt(900_000))
        );
        assert_eq!(
            arg(request, "x-max-length"),
            Some(&AMQPValue::LongLongInt(100))
        );
        assert_eq!(arg(request, "x-delivery-limit"), None);
    }
}
