use broker::shutdown;
use clap::Parser;
use verifier_worker::{config::Config, startup::Worker};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = telemetry::init("verifier-worker")?;
    let worker = Worker::build(config).await?;
    let stopped = worker.run_until_stopped(shutdown::on_signal()).await;
    // The last spans are exported before the process ends.
    telemetry.shutdown();
    stopped
}
