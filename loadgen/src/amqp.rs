//! The broker connection of the commands that talk to RabbitMQ directly
//! (`seed-events`, `confirm-floor`), not through a gateway.

use lapin::{Connection, ConnectionProperties};

#[derive(Debug, clap::Args)]
pub struct BrokerUrl {
    /// The broker (one node's URL).
    #[arg(
        long = "amqp-url",
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub url: String,
}

impl BrokerUrl {
    pub async fn connect(&self) -> lapin::Result<Connection> {
        Connection::connect(&self.url, ConnectionProperties::default()).await
    }
}
