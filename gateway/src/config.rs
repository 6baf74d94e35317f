//! Every knob of the gateway: an environment variable and a flag each.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "gateway",
    version,
    about = "HTTP gateway of the signature verification service"
)]
pub struct Config {
    #[command(flatten)]
    pub broker: broker_client::BrokerArgs,

    /// Address the HTTP server listens on (port 0 picks a free port).
    #[arg(long, env = "GATEWAY_ADDR", default_value = "0.0.0.0:8080")]
    pub gateway_addr: SocketAddr,

    /// Directory that `textFile` paths are relative to. Unset: `textFile` is refused.
    #[arg(long, env = "DOCS_DIR")]
    pub docs_dir: Option<PathBuf>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub body_limit_bytes: usize,

    /// How many stream events may be in flight to this gateway unacknowledged.
    #[arg(long, env = "EVENTS_PREFETCH", default_value_t = 2000)]
    pub events_prefetch: u16,

    /// Broker users whose `completed` / `failed` events this gateway believes
    /// (comma-separated; the `user_id` the broker validated on each message).
    /// Default: the user of AMQP_URL, which suits a one-user setup; with
    /// per-role users, name the workers' user here.
    #[arg(long, env = "RESULT_PUBLISHERS", value_delimiter = ',')]
    pub result_publishers: Vec<String>,

    /// Most results (ids) this gateway keeps: when reached, the oldest
    /// expire early (counted in `gateway_results_evicted_total`), so memory
    /// is bounded by this and not only by the retention. Unset: no cap.
    #[arg(long, env = "MAX_RESULTS")]
    pub max_results: Option<usize>,

    /// Largest request message the broker takes (RabbitMQ's `max_message_size`;
    /// 16 MiB is its default since 4.0). A document whose request would be
    /// larger is refused with 413 before anything is published.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// API tokens, one a line: `name:token` or `name:sha256:<hex digest>`.
    /// Set: every `/api/*` call needs `Authorization: Bearer <token>`, and a
    /// request belongs to the token that submitted it. Unset: open.
    #[arg(long, env = "API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,

    /// Calls a second each token (or the anonymous caller) may make to
    /// `/api/*`; over it, 429. Unset: no limit.
    #[arg(long, env = "RATE_LIMIT")]
    pub rate_limit: Option<std::num::NonZeroU32>,

    /// Calls a token may make at once before `RATE_LIMIT` applies.
    /// Default: twice `RATE_LIMIT`.
    #[arg(long, env = "RATE_BURST")]
    pub rate_burst: Option<std::num::NonZeroU32>,

    /// POSTs being submitted at once on this gateway at most; one more is
    /// answered 503 `overloaded` + `Retry-After` before its body is read.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: usize,

    /// Longest a client may take to send a request body; then the request
    /// is answered 400 `invalid_body` and its connection closed.
    #[arg(long, env = "BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_timeout: std::time::Duration,

    /// Longest any call may take (long-polls included, up to 30 s); then it
    /// is answered 503 `timeout`. A backstop: every handler bounds its own
    /// waits under the default.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub request_timeout: std::time::Duration,

    /// Longest a client may take to send a request's header (and, over
    /// HTTPS, its TLS handshake) once its connection waits for one; an idle
    /// keep-alive connection is closed after it too.
    #[arg(long, env = "HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_timeout: std::time::Duration,

    /// PEM certificate chain: with TLS_KEY_FILE, the gateway serves HTTPS
    /// (rustls) instead of plain HTTP.
    #[arg(long, env = "TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of TLS_CERT_FILE.
    #[arg(long, env = "TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// How long an accepted request may wait for its verdict, while the
    /// request queue holds nothing ready, before this gateway publishes it
    /// again (the broker may have lost the verdict in a failover).
    #[arg(long, env = "VERDICT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub verdict_timeout: std::time::Duration,

    /// Most bytes of request bodies kept for publishing again; requests
    /// accepted beyond it are not guarded (`gateway_unguarded_total`).
    #[arg(long, env = "UNANSWERED_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub unanswered_max_bytes: usize,

    /// How long a gateway's `accepted` events gather before they go out
    /// together (0: batched like requests). A 202 never waits for them;
    /// other gateways learn of an id this much later (or from its verdict).
    #[arg(long, env = "ACCEPTED_HOLD", default_value = "10ms", value_parser = humantime::parse_duration)]
    pub accepted_hold: std::time::Duration,

    /// Whether request messages go zstd-compressed (`content-encoding:
    /// zstd`) when that makes them smaller: the broker then writes and
    /// syncs a third of the bytes. Workers read both.
    #[arg(long, env = "COMPRESS_REQUESTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub compress_requests: bool,

    /// Requests for RSA and ECDSA carry the document's digest (under the
    /// algorithm's hash), not the document: that is all the check needs,
    /// so documents never reach the broker or the workers. Ed25519
    /// requests carry their document. `false`: every request carries its
    /// document (for workers older than the digest form).
    #[arg(long, env = "SEND_DIGESTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub send_digests: bool,

    /// Runtime threads serving HTTP and the broker links (default: half
    /// the CPUs, at least one). A gateway mostly hands requests and
    /// results between sockets: each thread more wakes more threads per
    /// request, and on a host it shares with a broker and workers that cost
    /// more CPU than the thread gave. One thread is tokio's current-thread
    /// scheduler: everything, accepting connections included, runs on the
    /// main thread.
    #[arg(long, env = "GATEWAY_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub gateway_threads: Option<u16>,

    /// A token `/metrics` then requires (`Authorization: Bearer`). Unset:
    /// `/metrics` is open.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

impl Config {
    /// The runtime's threads: GATEWAY_THREADS, or half of `cpus` (at least 1).
    pub fn runtime_threads(&self, cpus: usize) -> usize {
        self.gateway_threads
            .map_or(cpus.div_ceil(2), usize::from)
            .max(1)
    }

    /// The broker users whose verdicts count (never empty).
    pub fn trusted_publishers(&self) -> Vec<String> {
        let named: Vec<String> = self
            .result_publishers
            .iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if named.is_empty() {
            let first = self.broker.amqp_url.split(',').next().unwrap_or_default();
            vec![broker_client::url_user(first.trim())]
        } else {
            named
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_batches_of_requests_await_their_confirms_at_once_unless_told() {
        // README, BATCH_IN_FLIGHT.
        let defaults = Config::parse_from(["gateway"]);
        assert_eq!(defaults.broker.batch_limits().in_flight, 2);
        let set = Config::parse_from(["gateway", "--batch-in-flight", "8"]);
        assert_eq!(set.broker.batch_limits().in_flight, 8);
    }

    #[test]
    fn the_runtime_takes_half_the_cpus_unless_told() {
        let defaults = Config::parse_from(["gateway"]);
        assert_eq!(defaults.runtime_threads(1), 1);
        assert_eq!(defaults.runtime_threads(2), 1);
        assert_eq!(defaults.runtime_threads(3), 2);
        assert_eq!(defaults.runtime_threads(8), 4);
        let set = Config::parse_from(["gateway", "--gateway-threads", "3"]);
        assert_eq!(set.runtime_threads(2), 3);
        assert!(Config::try_parse_from(["gateway", "--gateway-threads", "0"]).is_err());
    }
}
