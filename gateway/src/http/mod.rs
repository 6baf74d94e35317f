//! The HTTP surface: routes, request validation, errors, metrics.

pub mod error;
pub mod metrics;
pub mod routes;
pub mod submit;

pub use routes::{router, AppState};
