//! Every knob of the worker: an environment variable and a flag each.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "verifier-worker",
    version,
    about = "Verifies RSA, ECDSA and Ed25519 signatures requested over RabbitMQ"
)]
pub struct Config {
    #[command(flatten)]
    pub broker: broker_client::BrokerArgs,

    /// Directory of public keys (*.pem, *.der, *.crt, *.cer); keyId = file name
    /// without extension. Every file must load, or the worker does not start.
    /// It is read again when it changes and on SIGHUP (a directory that
    /// does not load then leaves the keys in use as they were).
    #[arg(long, env = "VERIFIER_KEYS_DIR")]
    pub verifier_keys_dir: PathBuf,

    /// Watch VERIFIER_KEYS_DIR for changes. Off (for file systems without
    /// change notification, such as some network mounts): only SIGHUP
    /// reloads the keys.
    #[arg(long, env = "VERIFIER_KEYS_WATCH", default_value_t = true, action = ArgAction::Set)]
    pub verifier_keys_watch: bool,

    /// Smallest RSA key (modulus bits) the worker loads: a smaller key in
    /// VERIFIER_KEYS_DIR stops the start, naming the file. Lower it (to
    /// 1024) only to verify signatures of legacy keys.
    #[arg(long, env = "VERIFIER_MIN_RSA_BITS", default_value_t = verify_core::DEFAULT_MIN_RSA_BITS)]
    pub verifier_min_rsa_bits: usize,

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

    /// How often the worker tells the gateways it is there (with its
    /// counts); it is shown offline after missing three.
    #[arg(long, env = "HEARTBEAT_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,

    /// Longest time a graceful shutdown may take to finish held requests.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

impl Config {
    pub fn threads(&self) -> usize {
        self.verify_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1)
    }
}
