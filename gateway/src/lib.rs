//! The HTTP gateway. A request travels through it in this order:
//!
//! 1. [`http::routes`] `POST /api/signature` validates the body
//!    ([`http::submit`]) and hands a [`verify_core::VerifyRequest`] to
//! 2. [`amqp::submit`], which publishes it to the request queue and, once
//!    the broker has confirmed it, answers 202 and appends its `accepted`
//!    event to the events stream ([`idempotency`] keeps one request per
//!    `Idempotency-Key` in flight).
//! 3. Workers append `completed`/`failed` to the events stream;
//!    [`amqp::events`] projects the stream into the [`store`], believing
//!    verdicts only from the trusted worker user; the store
//! 4. `GET /api/signature/{id}` reads, long-polling on the store's waiters.
//!
//! [`startup`] wires it together, [`config`] holds every knob; the broker's
//! client, signals and telemetry come from the shared `broker-client`,
//! `shutdown` and `telemetry` crates.

pub mod amqp;
pub mod auth;
pub mod config;
pub mod http;
pub mod huge_pages;
pub mod idempotency;
pub mod startup;
pub mod stats;
pub mod store;
pub mod workers;
