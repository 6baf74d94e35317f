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
    pub broker: broker::BrokerArgs,

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
}
