//! The broker settings both binaries take, flattened into each one's
//! `Config` (so the variable names cannot differ between them).

use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// RabbitMQ URL (the vhost is URL-encoded: %2f is "/").
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

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

    /// Bound of the request queue in messages (each holds 1 to 32 requests)
    /// when this process creates it (`x-max-length`, overflow
    /// `reject-publish`: a full queue answers 503). 0: unbounded.
    #[arg(long, env = "MAX_QUEUE_LENGTH", default_value_t = 100_000)]
    pub max_queue_length: u32,
}

impl BrokerArgs {
    pub fn queue_settings(&self) -> crate::QueueSettings {
        crate::QueueSettings {
            max_queue_length: (self.max_queue_length > 0).then_some(self.max_queue_length),
            retention: self.result_retention,
        }
    }

    pub fn topology(&self) -> verify_core::Topology {
        verify_core::Topology::new(&self.request_queue)
    }
}
