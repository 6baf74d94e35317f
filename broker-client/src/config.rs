//! The broker settings both binaries take, flattened into each one's
//! `Config` (so the variable names cannot differ between them).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::BatchLimits;

#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// RabbitMQ URL (the vhost is URL-encoded: %2f is "/"), or a
    /// comma-separated list of the URLs of one cluster's nodes: a process
    /// connects to the first that answers, starting at a random one, and
    /// moves on to the next when its connection drops.
    #[arg(
        long,
        env = "AMQP_URL",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Type of the request queue and its dead-letter queue: `quorum`
    /// (replicated over the cluster, RabbitMQ's choice for data safety) or
    /// `classic` (one node). The events stream is replicated either way.
    #[arg(long, env = "QUEUE_TYPE", value_enum, default_value_t = crate::QueueType::Quorum)]
    pub queue_type: crate::QueueType,

    /// How many times a request message may come back (its worker died, or
    /// its verdict could not be published) before it is answered `failed`
    /// (`delivery_limit`) and dead-lettered: at most DELIVERY_LIMIT + 1
    /// deliveries, as RabbitMQ's `x-delivery-limit` counts (a quorum queue
    /// gets it as its `x-delivery-limit`).
    #[arg(long, env = "DELIVERY_LIMIT", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub delivery_limit: u32,

    /// Name of the request queue; the dead-letter queue (`<name>.dead`) and
    /// the events stream (`<name>.events`) are named after it.
    #[arg(long, env = "REQUEST_QUEUE", default_value = verify_core::DEFAULT_REQUEST_QUEUE)]
    pub request_queue: String,

    /// How long results (and idempotency keys) are kept, e.g. `15m`, `90s`.
    /// Also the events stream's `x-max-age` when this process creates it.
    #[arg(long, env = "RESULT_RETENTION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub result_retention: Duration,

    /// Longest wait for the broker's publisher confirm (then: 503 / requeue).
    #[arg(long, env = "CONFIRM_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub confirm_timeout: Duration,

    /// Bound of the request queue in messages (each holds 1 to 32 requests,
    /// up to 128 under a backlog)
    /// when this process creates it (`x-max-length`, overflow
    /// `reject-publish`: a full queue answers 503). 0: unbounded.
    #[arg(long, env = "MAX_QUEUE_LENGTH", default_value_t = 100_000)]
    pub max_queue_length: u32,

    /// Longest a batch of requests or events gathers items while other
    /// batches await their confirms (more: bigger batches, fewer broker
    /// messages, a longer wait for each item).
    #[arg(long, env = "BATCH_LINGER", default_value = "2ms", value_parser = humantime::parse_duration)]
    pub batch_linger: Duration,

    /// Shortest a batch gathers items while others await their confirms
    /// (0: it goes as soon as one of them settles); at most BATCH_LINGER.
    /// Nothing in flight, an item goes at once whatever this says.
    #[arg(long, env = "BATCH_GATHER", default_value = "2ms", value_parser = humantime::parse_duration)]
    pub batch_gather: Duration,

    /// With other batches awaiting their confirms, a batch that has
    /// gathered for BATCH_GATHER goes once no item has come for this long
    /// (or at BATCH_LINGER, or full), instead of when one of them settles
    /// (0: off). Clients that come in bursts get their batch at the
    /// burst's end; a steady stream fills batches up to BATCH_LINGER. For
    /// running near capacity: with BATCH_GATHER=0ms BATCH_LINGER=5ms it
    /// cut the CPU a request at a fixed rate by 6-14 % and the broker's
    /// messages by a quarter, for 2-5 ms more at the median
    /// (docs/benchmarks.md, "Batches that close when their items pause").
    #[arg(long, env = "BATCH_IDLE", default_value = "0ms", value_parser = humantime::parse_duration)]
    pub batch_idle: Duration,

    /// Batches of one kind awaiting their confirms at once (fewer: bigger
    /// batches, but a slow confirm holds up more behind it). 2 here, the
    /// gateway's: a batch then goes when the other settles, and while both
    /// await their confirms the next takes the backlog (BatchLimits::
    /// backlog_items); at a fixed rate that gave the best tails
    /// (docs/benchmarks.md, "Two request batches in flight"). A worker
    /// sets its own default.
    #[arg(long, env = "BATCH_IN_FLIGHT", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch_in_flight: u16,

    /// Whether event messages (`accepted` events, verdicts) go
    /// zstd-compressed (`content-encoding: zstd`) when that makes them
    /// smaller: the broker writes about a third of the bytes to the events
    /// stream, whose pages the kernel writes out in bursts that delay the
    /// request queue's syncs. Gateways read both forms; one older than this
    /// setting reads only `false`.
    #[arg(long, env = "COMPRESS_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub compress_events: bool,

    /// PEM file of the CA(s) that signed the broker's certificate, trusted
    /// for `amqps://` URLs besides the system's roots (a private CA).
    #[arg(long, env = "AMQP_CA_FILE")]
    pub amqp_ca_file: Option<PathBuf>,

    /// PEM certificate this process presents to the broker over `amqps://`
    /// (for a broker that requires client certificates); needs
    /// AMQP_CLIENT_KEY_FILE.
    #[arg(long, env = "AMQP_CLIENT_CERT_FILE")]
    pub amqp_client_cert_file: Option<PathBuf>,

    /// PEM private key of AMQP_CLIENT_CERT_FILE.
    #[arg(long, env = "AMQP_CLIENT_KEY_FILE")]
    pub amqp_client_key_file: Option<PathBuf>,
}

impl BrokerArgs {
    /// The broker URLs (one, or a cluster's nodes).
    pub fn urls(&self) -> Vec<String> {
        crate::link::split_urls(&self.amqp_url)
    }

    /// The URLs with their TLS files, read and checked.
    pub fn endpoint(&self) -> Result<crate::Endpoint, crate::TlsFileError> {
        crate::Endpoint::with_tls(
            &self.amqp_url,
            &crate::TlsFiles {
                ca: self.amqp_ca_file.clone(),
                client_cert: self.amqp_client_cert_file.clone(),
                client_key: self.amqp_client_key_file.clone(),
            },
        )
    }

    pub fn queue_settings(&self) -> crate::QueueSettings {
        crate::QueueSettings {
            queue_type: self.queue_type,
            max_queue_length: (self.max_queue_length > 0).then_some(self.max_queue_length),
            retention: self.result_retention,
            delivery_limit: self.delivery_limit,
        }
    }

    /// [`BatchLimits::DEFAULT`] with this process's linger, gather time and
    /// batches in flight.
    pub fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            linger: self.batch_linger,
            gather: self.batch_gather,
            idle: self.batch_idle,
            in_flight: usize::from(self.batch_in_flight),
            ..BatchLimits::DEFAULT
        }
    }

    /// [`Self::batch_limits`] for event messages: compressed per
    /// COMPRESS_EVENTS.
    pub fn event_limits(&self) -> BatchLimits {
        BatchLimits {
            compress: self.compress_events,
            ..self.batch_limits()
        }
    }

    pub fn topology(&self) -> verify_core::Topology {
        verify_core::Topology::new(&self.request_queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        broker: BrokerArgs,
    }

    #[test]
    fn batching_knobs_reach_the_batch_limits() {
        let defaults = Cli::parse_from(["x"]).broker.batch_limits();
        assert_eq!(defaults.linger, Duration::from_millis(2));
        assert_eq!(defaults.gather, Duration::from_millis(2));
        assert_eq!(defaults.in_flight, 2);
        assert_eq!(defaults.idle, Duration::ZERO);
        let set = Cli::parse_from([
            "x",
            "--batch-linger",
            "6ms",
            "--batch-gather",
            "4ms",
            "--batch-in-flight",
            "5",
            "--batch-idle",
            "1500us",
        ])
        .broker
        .batch_limits();
        assert_eq!(set.linger, Duration::from_millis(6));
        assert_eq!(set.gather, Duration::from_millis(4));
        assert_eq!(set.in_flight, 5);
        assert_eq!(set.idle, Duration::from_micros(1500));
        assert_eq!(set.max_items, BatchLimits::DEFAULT.max_items);
        assert!(Cli::try_parse_from(["x", "--batch-in-flight", "0"]).is_err());
    }

    #[test]
    fn events_go_compressed_unless_turned_off() {
        let defaults = Cli::parse_from(["x"]).broker;
        assert!(defaults.event_limits().compress);
        assert!(!defaults.batch_limits().compress);
        assert_eq!(
            defaults.event_limits().gather,
            defaults.batch_limits().gather
        );
        let off = Cli::parse_from(["x", "--compress-events", "false"]).broker;
        assert!(!off.event_limits().compress);
    }
}
