use clap::Parser;
use gateway::{config::Config, startup::Application};
use mimalloc::MiMalloc;

/// mimalloc: the request path allocates a lot of small, short-lived
/// objects, and glibc's malloc spent a sixth of the gateway's CPU on them
/// (perf, closed-loop load; see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> anyhow::Result<()> {
    let huge_pages = gateway::huge_pages::turn_off();
    let config = Config::parse();
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = config.runtime_threads(cpus);
    // One thread: the current-thread scheduler, on which the accept loop
    // (in `block_on`) and every connection share the main thread. A
    // multi-thread runtime of one worker would run them on two threads,
    // one waking the other for every connection.
    let mut runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    runtime
        .enable_all()
        .build()?
        .block_on(serve(config, huge_pages))
}

async fn serve(config: Config, huge_pages: Result<bool, std::io::Error>) -> anyhow::Result<()> {
    let telemetry = telemetry::init("gateway")?;
    match huge_pages {
        Ok(off) => tracing::debug!(off, "transparent huge pages"),
        Err(error) => tracing::warn!(%error, "could not turn transparent huge pages off"),
    }
    let app = Application::build(config).await?;
    let scheme = if app.serves_https() { "https" } else { "http" };
    tracing::info!(addr = %app.local_addr(), scheme, "gateway listening");
    let stopped = app.run_until_stopped(shutdown::on_signal()).await;
    // The last spans are exported before the process ends.
    telemetry.shutdown();
    stopped
}
