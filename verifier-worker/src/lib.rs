//! The verifier-worker. A request travels through it in this order:
//!
//! 1. [`amqp::consume`] receives a message from the request queue (prefetch
//!    bounds how many are held; none is taken while results cannot be
//!    published) and hands it to
//! 2. [`amqp::handler`], which reads its items one by one (an unreadable
//!    one is dead-lettered alone), counts its deliveries, and has
//! 3. [`pool`] verify each request on a bounded set of blocking threads,
//!    off the async reactor (RSA is CPU work); then
//! 4. [`amqp::handler`] appends the `completed` / `failed` events to the
//!    events stream and acks the message only once every request in it is
//!    settled (verdict confirmed, or dead-lettered).
//!
//! [`startup`] wires it together, [`config`] holds every knob, [`http`]
//! serves health and metrics when `WORKER_HTTP_ADDR` is set, [`heartbeat`]
//! tells the gateways and the other workers it is there and which keys it
//! serves, [`peers`] hears the other workers' keys, [`reload`] reads the
//! keys directory again when it changes or on SIGHUP.

pub mod amqp;
pub mod config;
pub mod heartbeat;
pub mod http;
pub mod peers;
pub mod pool;
pub mod reload;
pub mod startup;
