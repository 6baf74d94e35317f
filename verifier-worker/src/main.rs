use broker::{shutdown, telemetry};
use clap::Parser;
use verifier_worker::{config::Config, startup::Worker};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init();
    let worker = Worker::build(config).await?;
    worker.run_until_stopped(shutdown::on_signal()).await
}
