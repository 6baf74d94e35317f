//! The names of the broker topology, derived from one request-queue name so
//! the gateway and the worker cannot drift apart (and tests can isolate
//! themselves by choosing a unique request-queue name).

/// The request queue of the original system, kept for its users.
pub const DEFAULT_REQUEST_QUEUE: &str = "verifySignature";

/// Every queue the service uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Durable queue of [`crate::VerifyRequest`]s; workers compete on it.
    pub request_queue: String,
    /// Where undecodable requests are dead-lettered: `<request_queue>.dead`.
    pub dead_letter_queue: String,
    /// The lifecycle event log (a RabbitMQ stream): `<request_queue>.events`.
    pub events_stream: String,
    /// The fanout exchange over which workers hear each other's heartbeats
    /// (which keys each serves): `<request_queue>.workers`; each worker
    /// binds an exclusive queue `<request_queue>.workers.<uuid>` to it.
    pub workers_exchange: String,
}

impl Topology {
    pub fn new(request_queue: &str) -> Self {
        Topology {
            request_queue: request_queue.to_owned(),
            dead_letter_queue: format!("{request_queue}.dead"),
            events_stream: format!("{request_queue}.events"),
            workers_exchange: format!("{request_queue}.workers"),
        }
    }
}

impl Default for Topology {
    fn default() -> Self {
        Topology::new(DEFAULT_REQUEST_QUEUE)
    }
}
