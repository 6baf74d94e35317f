//! The HTTP surface: routes, request validation, errors, metrics, the dashboard.

pub mod dashboard;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod serve;
pub mod submit;

pub use routes::{router, App, AppState};
