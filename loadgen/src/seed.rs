//! Fills an events stream with request lifecycles (half `accepted`, half
//! `completed`), as fast as confirms allow, for replay measurements.

use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use verify_core::{Algorithm, Event, EventKind, KeyId, RequestId, Topology};

use crate::amqp::BrokerUrl;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub broker: BrokerUrl,
    /// The request queue name; events go to `<queue>.events`.
    #[arg(long)]
    pub queue: String,
    /// Events to append.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Events per stream message (the gateway and workers batch under load).
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// The stream's x-max-age if it has to be created.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub retention: Duration,
}

pub async fn seed(args: Args) -> anyhow::Result<()> {
    let topology = Topology::new(&args.queue);
    let conn = args.broker.connect().await?;
    let channel = conn.create_channel().await?;
    let mut stream_args = FieldTable::default();
    stream_args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("stream")),
    );
    stream_args.insert(
        ShortString::from("x-max-age"),
        AMQPValue::LongString(LongString::from(format!("{}s", args.retention.as_secs()))),
    );
    channel
        .queue_declare(
            topology.events_stream.as_str().into(),
            QueueDeclareOptions::durable(),
            stream_args,
        )
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let started = Instant::now();
    let mut sent = 0u64;
    let mut batch = Vec::with_capacity(args.batch);
    let mut in_flight = 0;
    while sent < args.events {
        let id = RequestId::new();
        for kind in [
            EventKind::Accepted {
                algorithm: Algorithm::DEFAULT,
                key_id: None,
                idempotency_key: None,
                fingerprint: None,
                tenant: None,
            },
            EventKind::Completed {
                valid: true,
                algorithm: Algorithm::DEFAULT,
                key_id: KeyId::new("default"),
                verify_micros: 20,
                submitted_at_ms: verify_core::now_ms(),
                fingerprint: None,
                delivery: None,
            },
        ] {
            batch.push(Event::new(id, "seed", kind));
            sent += 1;
        }
        if batch.len() >= args.batch || sent >= args.events {
            channel
                .basic_publish(
                    "".into(),
                    topology.events_stream.as_str().into(),
                    BasicPublishOptions::default(),
                    &Event::encode_batch(&batch),
                    // Verdicts count only from a trusted broker user: sign
                    // them as this connection's user, as a worker does.
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_user_id(ShortString::from(broker_client::url_user(&args.broker.url))),
                )
                .await?;
            batch.clear();
            in_flight += 1;
            // Pipelined confirms, settled every few thousand messages.
            if in_flight >= 5000 {
                channel.wait_for_confirms().await?;
                in_flight = 0;
            }
        }
    }
    channel.wait_for_confirms().await?;
    let elapsed = started.elapsed();
    println!(
        "appended {sent} events in batches of {} to {} in {:.1} s ({:.0} events/s)",
        args.batch,
        topology.events_stream,
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
