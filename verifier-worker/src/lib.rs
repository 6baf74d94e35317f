//! The verifier-worker. A request travels through it in this order:
//!
//! 1. [`amqp::consume`] receives it from the request queue (prefetch bounds
//!    how many are held) and decodes it; an undecodable one is rejected to
//!    the dead-letter queue.
//! 2. [`pool`] verifies it on a bounded set of blocking threads, off the
//!    async reactor (RSA is CPU work).
//! 3. [`amqp::consume`] appends the `completed` / `failed` event to the
//!    events stream and acks the request only once that event is confirmed.
//!
//! [`startup`] wires it together, [`config`] holds every knob, [`http`]
//! serves health and metrics when `WORKER_HTTP_ADDR` is set.

pub mod amqp;
pub mod config;
pub mod http;
pub mod pool;
pub mod startup;
