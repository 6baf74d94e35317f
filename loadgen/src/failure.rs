//! Why one request of a run did not end in the verdict it was sent for.
//! The report counts failures by their text, so two of the same kind (a
//! status and an error code) add up under one line.

use thiserror::Error;

/// One request's failure, as the report counts it.
#[derive(Debug, Error)]
pub enum Failure {
    /// The request never got an answer (connection refused or reset, timeout).
    #[error("{method} failed: {source}")]
    Send {
        method: &'static str,
        source: reqwest::Error,
    },
    /// An answer came whose body was not the JSON the contract names.
    #[error("{method} answer: {source}")]
    Body {
        method: &'static str,
        source: reqwest::Error,
    },
    /// The POST was refused (an error code from the contract, or none).
    #[error("POST answered {status}: {code}")]
    Refused {
        status: u16,
        code: serde_json::Value,
    },
    /// A 202 without the id every acceptance carries.
    #[error("POST answer without id")]
    NoId,
    /// The GET answered something other than 200.
    #[error("GET answered {status}: {code}")]
    Status {
        status: u16,
        code: serde_json::Value,
    },
    /// Still pending after the run's patience.
    #[error("still pending after 60 s")]
    Pending,
    /// A verdict other than the one the case was built for.
    #[error("wrong verdict: valid={got} expected {expected}")]
    WrongVerdict {
        got: serde_json::Value,
        expected: bool,
    },
    /// A state the contract does not name (or `failed`, with its code).
    #[error("status {status:?}: {code}")]
    Unexpected {
        status: Option<String>,
        code: serde_json::Value,
    },
    /// Not sent: the open loop had `max_in_flight` requests outstanding.
    #[error("over max in-flight")]
    OverMaxInFlight,
}
