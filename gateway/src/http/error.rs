//! One error type for every HTTP answer that is not a success, mapped to
//! its status and a stable snake_case code in one place.
//! Body: `{"error":{"code":"…","message":"…"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use verify_core::ErrorBody;

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a specific code (`invalid_json`, `invalid_signature`, ...).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request message would be {size} bytes, more than the broker takes ({limit}); send a smaller document")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("a request with this Idempotency-Key is still being submitted; retry after {RETRY_AFTER_SECS} s")]
    IdempotencyConflict,
    #[error("this Idempotency-Key was used for another request (a different body) within the retention time")]
    IdempotencyKeyReused,
    #[error("no request with this id (unknown, or expired after the retention time)")]
    NotFound,
    /// 503: nothing was accepted; retry after `Retry-After`.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    #[error("a valid API token is required: Authorization: Bearer <token>")]
    Unauthorized,
    #[error("too many calls for this token; retry after {} s", retry_after_secs(*retry_after))]
    RateLimited { retry_after: std::time::Duration },
}

/// Whole seconds to wait, rounded up (a `Retry-After` value).
fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::PayloadTooLarge { .. } | ApiError::MessageTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::IdempotencyConflict => (StatusCode::CONFLICT, "idempotency_conflict"),
            ApiError::IdempotencyKeyReused => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = serde_json::json!({
            "error": ErrorBody { code: code.to_owned(), message: self.to_string() }
        });
        let retry_after = match &self {
            ApiError::RateLimited { retry_after } => Some(retry_after_secs(*retry_after)),
            ApiError::Unavailable { .. } | ApiError::IdempotencyConflict => Some(RETRY_AFTER_SECS),
            _ => None,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"signature-verification\""),
            );
        }
        response
    }
}
