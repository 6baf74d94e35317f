//! broker-client: the client side of RabbitMQ that both binaries share
//! (logs, metrics and traces are the `telemetry` crate's, signals the
//! `shutdown` crate's). Invariant: nothing leaves a process through this
//! crate unconfirmed: a publish either ends in the broker's confirm or in an
//! error the caller sees, each wait bounded.
//!
//! - [`link`]: a supervised connection that reconnects with backoff and
//!   publishes its current session (or none) to whoever needs it.
//! - [`topology`]: declares the queues of [`verify_core::Topology`] with the
//!   same arguments from every process.
//! - [`publisher`]: confirmed publishing with a bound on every wait.
//! - [`config`]: the broker settings both binaries take.
//! - [`endpoint`]: the broker URLs with their TLS files (`amqps://`).
//! - [`batch`]: batched confirmed publishing (requests, lifecycle events).
//!
//! lapin 4 notes that shaped this crate: a broker `Nack` is not an `Err`
//! (check the confirmation); with `mandatory`, an unroutable message comes
//! back as an Ack carrying the returned message; a publish in flight when the
//! connection drops fails and is the caller's to retry.

pub mod batch;
pub mod config;
pub mod endpoint;
pub mod link;
pub mod publisher;
pub mod topology;

pub use batch::{BatchLimits, BatchPublisher};
pub use config::BrokerArgs;
pub use endpoint::{Endpoint, TlsFileError, TlsFiles};
pub use link::{url_user, Channels, Link, LinkState, Session, SessionError, SessionResult};
pub use publisher::{PublishError, Publisher};
pub use topology::{declare_topology, QueueSettings, QueueType, TopologyError};
