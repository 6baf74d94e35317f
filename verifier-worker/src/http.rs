//! Optional health and metrics listener (`WORKER_HTTP_ADDR`).

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use broker::Link;
use broker::Publisher;
use metrics_exporter_prometheus::PrometheusHandle;

/// `/readyz` is 200 only while both broker connections are up.
pub fn router(consuming: Link<()>, results: Link<Publisher>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                let ready = consuming.is_up() && results.is_up();
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
