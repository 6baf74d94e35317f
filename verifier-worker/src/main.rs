use mimalloc::MiMalloc;
use verifier_worker::{config::Config, startup::Worker};

/// mimalloc: the request path allocates a lot of small, short-lived
/// objects, and glibc's malloc spent a sixth of the gateway's CPU on them
/// (perf, closed-loop load; see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load();
    let telemetry = telemetry::init("verifier-worker")?;
    let worker = Worker::build(config).await?;
    let stopped = worker.run_until_stopped(shutdown::on_signal()).await;
    // The last spans are exported before the process ends.
    telemetry.shutdown();
    stopped
}
