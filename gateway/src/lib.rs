//! The HTTP gateway. A request travels through it in this order:
//!
//! 1. [`http::routes`] `POST /api/signature` validates the body
//!    ([`http::submit`]) and hands a [`verify_core::VerifyRequest`] to
//! 2. [`amqp::submit`], which publishes it to the request queue and an
//!    `accepted` event to the events stream, and answers 202 only once the
//!    broker has confirmed the request.
//! 3. Workers append `completed`/`failed` to the events stream;
//!    [`amqp::events`] projects the stream into the [`store`], which
//! 4. `GET /api/signature/{id}` reads, long-polling on the store's waiters.
//!
//! [`startup`] wires it together, [`config`] holds every knob; signals and
//! telemetry come from the shared `broker` crate.

pub mod amqp;
pub mod config;
pub mod http;
pub mod idempotency;
pub mod startup;
pub mod store;
