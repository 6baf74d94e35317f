//! Optional health and metrics listener (`WORKER_HTTP_ADDR`).

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use broker_client::Link;
use broker_client::Publisher;
use metrics_exporter_prometheus::PrometheusHandle;

/// Health paths (compose.yaml's health checks use them; a test holds the two together).
pub const HEALTH_PATH: &str = "/healthz";
pub const READY_PATH: &str = "/readyz";

/// `/readyz` is 200 only while both broker connections are up and results
/// can be published (the channel is open and the broker does not block it).
pub fn router(consuming: Link<()>, results: Link<Publisher>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route(HEALTH_PATH, get(|| async { "ok" }))
        .route(
            READY_PATH,
            get(move || async move {
                let ready = consuming.is_up() && results.current().is_some_and(|p| p.is_usable());
                let code = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (code, if ready { "ready" } else { "not ready" })
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics.render(),
                )
                    .into_response()
            }),
        )
}
