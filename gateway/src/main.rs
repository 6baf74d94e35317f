use broker::{shutdown, telemetry};
use clap::Parser;
use gateway::{config::Config, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init();
    let app = Application::build(config).await?;
    tracing::info!(addr = %app.local_addr(), "gateway listening");
    app.run_until_stopped(shutdown::on_signal()).await
}
