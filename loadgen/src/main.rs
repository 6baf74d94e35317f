//! loadgen: drives the gateway the way clients do and checks every answer.
//!
//! `loadgen run`: virtual clients `POST /api/signature`, then `GET` the id
//! (long-poll `?wait=` by default, or plain polling) until it is no longer
//! pending, and compare the verdict with what it must be (about 10% of the
//! document pool is tampered after signing). Closed loop (N clients, each
//! waits for its answer) or open loop (a fixed arrival rate, latency
//! measured from the scheduled start, so no coordinated omission).
//!
//! `loadgen chart`: turns the CSV of scripts/scale.sh into an SVG chart.
//!
//! `loadgen seed-events`: appends lifecycle events to an events stream, to
//! measure how long a gateway takes to replay them (scripts/replay-bench.sh).
//!
//! `loadgen confirm-floor`: the broker alone, one confirmed message at a
//! time: the least any request can take on this machine (scripts/latency-floor.sh).

mod amqp;
mod chart;
mod failure;
mod floor;
mod pool;
mod report;
mod run;
mod seed;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for the signature verification service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run load against a gateway and report throughput, latency and errors.
    Run(run::Args),
    /// Draw throughput and p99 against workers from a scale.sh CSV.
    Chart(chart::Args),
    /// Append N accepted/completed events to `<queue>.events`.
    SeedEvents(seed::Args),
    /// Publish one persistent message at a time to fresh queues and report
    /// the broker's publish-to-confirm latency by queue type.
    ConfirmFloor(floor::Args),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run::run(args).await,
        Command::Chart(args) => chart::draw(&args),
        Command::SeedEvents(args) => seed::seed(args).await,
        Command::ConfirmFloor(args) => floor::measure(args).await,
    }
}
