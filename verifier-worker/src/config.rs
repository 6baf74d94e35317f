//! Every knob of the worker: an environment variable and a flag each.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "verifier-worker",
    version,
    about = "Verifies RSA signatures requested over RabbitMQ"
)]
pub struct Config {
    /// RabbitMQ URL (the vhost is URL-encoded: %2f is "/").
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Name of the request queue (also names `<name>.dead` and `<name>.events`).
    #[arg(long, env = "REQUEST_QUEUE", default_value = verify_core::DEFAULT_REQUEST_QUEUE)]
    pub request_queue: String,

    /// Directory of public keys (*.pem, *.der, *.crt, *.cer); keyId = file name
    /// without extension. Every file must load, or the worker does not start.
    #[arg(long, env = "VERIFIER_KEYS_DIR")]
    pub verifier_keys_dir: PathBuf,

    /// Verify SHA1withRSA and MD5withRSA (otherwise they fail with
    /// `algorithm_disabled`). Only for migrating signatures of the old system.
    #[arg(long, env = "VERIFIER_ALLOW_LEGACY", default_value_t = false, action = ArgAction::Set)]
    pub verifier_allow_legacy: bool,

    /// Verification backend: `fast` (AWS-LC where it applies, `rsa` elsewhere) or `rust`.
    #[arg(long, env = "VERIFY_BACKEND", default_value = "fast")]
    pub verify_backend: verify_core::Backend,

    /// How many requests the broker may hand this worker before it acks.
    #[arg(long, env = "PREFETCH", default_value_t = 256)]
    pub prefetch: u16,

    /// Threads verifying at once (default: the number of CPUs).
    #[arg(long, env = "VERIFY_THREADS")]
    pub verify_threads: Option<usize>,

    /// Serve /healthz, /readyz and /metrics on this address. Unset: no
    /// listener, so several workers on one host never collide.
    #[arg(long, env = "WORKER_HTTP_ADDR")]
    pub worker_http_addr: Option<SocketAddr>,

    /// Longest wait for the broker's confirm of a result before requeueing the request.
    #[arg(long, env = "CONFIRM_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub confirm_timeout: Duration,

    /// Events stream `x-max-age`, used only if this process creates the stream.
    #[arg(long, env = "RESULT_RETENTION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub result_retention: Duration,

    /// Request queue `x-max-length`, used only if this process creates the queue. 0: unbounded.
    #[arg(long, env = "MAX_QUEUE_LENGTH", default_value_t = 100_000)]
    pub max_queue_length: u32,

    /// Longest time a graceful shutdown may take to finish held requests.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

impl Config {
    pub fn queue_settings(&self) -> broker::QueueSettings {
        broker::QueueSettings {
            max_queue_length: (self.max_queue_length > 0).then_some(self.max_queue_length),
            retention: self.result_retention,
        }
    }

    pub fn threads(&self) -> usize {
        self.verify_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1)
    }
}
