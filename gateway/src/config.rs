//! Every knob of the gateway: an environment variable and a flag each.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "gateway",
    version,
    about = "HTTP gateway of the signature verification service"
)]
pub struct Config {
    /// RabbitMQ URL (the vhost is URL-encoded: %2f is "/").
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Address the HTTP server listens on (port 0 picks a free port).
    #[arg(long, env = "GATEWAY_ADDR", default_value = "0.0.0.0:8080")]
    pub gateway_addr: SocketAddr,

    /// Directory that `textFile` paths are relative to. Unset: `textFile` is refused.
    #[arg(long, env = "DOCS_DIR")]
    pub docs_dir: Option<PathBuf>,

    /// Name of the request queue; the dead-letter queue (`<name>.dead`) and
    /// the events stream (`<name>.events`) are named after it.
    #[arg(long, env = "REQUEST_QUEUE", default_value = verify_core::DEFAULT_REQUEST_QUEUE)]
    pub request_queue: String,

    /// How long results (and idempotency keys) are kept, e.g. `15m`, `90s`.
    /// Also the events stream's `x-max-age` when this process creates it.
    #[arg(long, env = "RESULT_RETENTION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub result_retention: Duration,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub body_limit_bytes: usize,

    /// Longest wait for the broker's publisher confirm before answering 503.
    #[arg(long, env = "CONFIRM_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub confirm_timeout: Duration,

    /// Bound of the request queue when this process creates it (`x-max-length`,
    /// overflow `reject-publish`: a full queue answers 503). 0: unbounded.
    #[arg(long, env = "MAX_QUEUE_LENGTH", default_value_t = 100_000)]
    pub max_queue_length: u32,

    /// How many stream events may be in flight to this gateway unacknowledged.
    #[arg(long, env = "EVENTS_PREFETCH", default_value_t = 2000)]
    pub events_prefetch: u16,
}

impl Config {
    pub fn queue_settings(&self) -> broker::QueueSettings {
        broker::QueueSettings {
            max_queue_length: (self.max_queue_length > 0).then_some(self.max_queue_length),
            retention: self.result_retention,
        }
    }
}
