//! The broker's own latency floor: one persistent message at a time,
//! published to a fresh queue and waited on until the broker confirms it,
//! with nothing else from this project running. Every `202` waits for one
//! such confirm (a request queue's) and every verdict for another (the
//! events stream's), so what this prints is the least a request can take on
//! this machine and broker, whatever the gateway and the workers do.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation};

use crate::amqp::BrokerUrl;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub broker: BrokerUrl,
    /// Queue types to measure, one after the other (quorum, stream, classic).
    #[arg(long, value_delimiter = ',', default_value = "quorum,stream")]
    pub queue_types: Vec<String>,
    /// Messages published (one at a time) per queue type.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Pause between a confirm and the next publish.
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    pub pause: Duration,
    /// Body size in bytes (a request message of a digest is ~300).
    #[arg(long, default_value_t = 300)]
    pub bytes: usize,
    /// The measured queues are named `<prefix>.<uuid>` (and deleted after).
    #[arg(long, default_value = "loadgen.floor")]
    pub prefix: String,
}

pub async fn measure(args: Args) -> anyhow::Result<()> {
    let conn = args.broker.connect().await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let body = vec![b'x'; args.bytes];
    for queue_type in &args.queue_types {
        let queue = format!("{}.{}", args.prefix, uuid::Uuid::new_v4());
        let mut arguments = FieldTable::default();
        arguments.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString(LongString::from(queue_type.as_str())),
        );
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await?;
        let result = publish_serially(&channel, &queue, &body, &args).await;
        // The queue goes whatever happened, so runs leave nothing behind.
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
        let h = result?;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{queue_type:8} publish to confirm, {} messages of {} bytes one at a time: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms",
            h.len(),
            args.bytes,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            h.max() as f64 / 1000.0
        );
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

async fn publish_serially(
    channel: &lapin::Channel,
    queue: &str,
    body: &[u8],
    args: &Args,
) -> anyhow::Result<Histogram<u64>> {
    let mut h = Histogram::<u64>::new(3)?;
    for _ in 0..args.count {
        let sent = Instant::now();
        let confirmation = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?
            .await?;
        if !matches!(confirmation, Confirmation::Ack(_)) {
            anyhow::bail!("the broker did not confirm a message to {queue}: {confirmation:?}");
        }
        h.record(sent.elapsed().as_micros().max(1) as u64)?;
        tokio::time::sleep(args.pause).await;
    }
    Ok(h)
}
