//! The gateway's system tests, in one test binary: real `gateway` and
//! `verifier-worker` processes (from target/debug) against a real RabbitMQ,
//! one module per concern. One binary rather than one per file: the harness
//! in `common` is compiled and the dependency graph linked once, and the
//! test threads stay busy across modules instead of waiting for the slowest
//! test of each file. Run one module with its path as the filter, e.g.
//! `cargo test -p gateway --test integration faults::`.

mod common;

mod auth;
mod broker_tls;
mod broker_tune;
mod broker_users;
mod cluster;
mod compose;
mod dashboard;
mod delivery;
mod faults;
mod hostile;
mod http_contract;
mod https;
mod keys;
mod process;
mod rotation;
mod timeline;
mod traces;
mod trust;
mod workers;
