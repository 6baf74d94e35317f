//! Every knob of the worker: an environment variable and a flag each.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

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

/// The worker's own batching defaults (BATCH_IDLE, BATCH_GATHER,
/// BATCH_LINGER, BATCH_IN_FLIGHT; the gateway keeps the shared ones). A
/// worker's verdicts come in bunches, one per request message, so its
/// verdict batch goes 1 ms after a bunch ends instead of after a fixed 2
/// ms: about 2 ms less at the median at a fixed rate, no more CPU
/// (docs/benchmarks.md, "Batches that close when their items pause"). Its
/// verdict batches keep 8 in flight: 2 made no difference for them
/// (docs/benchmarks.md, "Two request batches in flight").
const BATCH_DEFAULTS: [(&str, &str); 4] = [
    ("batch_idle", "1ms"),
    ("batch_gather", "0ms"),
    ("batch_linger", "2ms"),
    ("batch_in_flight", "8"),
];

impl Config {
    /// The configuration from the command line and the environment, with
    /// the worker's batching defaults.
    pub fn load() -> Self {
        Self::load_from(std::env::args_os())
    }

    pub fn load_from<I, T>(args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = BATCH_DEFAULTS
            .iter()
            .fold(Self::command(), |command, &(id, default)| {
                command.mut_arg(id, |arg| arg.default_value(default))
            });
        let matches = command.get_matches_from(args);
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    pub fn threads(&self) -> usize {
        self.verify_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_batches_close_when_a_bunch_ends_unless_set() {
        let config = Config::load_from(["verifier-worker", "--verifier-keys-dir", "k"]);
        let limits = config.broker.event_limits();
        assert_eq!(limits.idle, Duration::from_millis(1));
        assert_eq!(limits.gather, Duration::ZERO);
        assert_eq!(limits.linger, Duration::from_millis(2));
        assert_eq!(limits.in_flight, 8);
        let set = Config::load_from([
            "verifier-worker",
            "--verifier-keys-dir",
            "k",
            "--batch-idle",
            "0ms",
            "--batch-gather",
            "2ms",
            "--batch-in-flight",
            "2",
        ]);
        assert_eq!(set.broker.batch_limits().idle, Duration::ZERO);
        assert_eq!(set.broker.batch_limits().in_flight, 2);
        assert_eq!(set.broker.batch_limits().gather, Duration::from_millis(2));
    }
}
