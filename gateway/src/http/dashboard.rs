//! `GET /dashboard`: one self-contained HTML page (inline CSS and
//! JavaScript, charts drawn by hand on `<canvas>`) compiled into the binary.
//! It polls `/api/stats`, `/api/workers` and `/api/failures` every second
//! and reads a request's timeline from `/api/signature/{id}/events`.
//!
//! Invariant: the page loads nothing from another host; its
//! Content-Security-Policy tells the browser so (scripts and styles inline
//! only, requests to this gateway only).

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The page, from `gateway/assets/dashboard.html`.
const PAGE: &str = include_str!("../../assets/dashboard.html");

/// Inline script and style, fetches to this origin, nothing else.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            // Small and compiled in: always fresh after an upgrade.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_page_is_html_with_its_stable_ids_and_no_other_host() {
        let response = page().await;
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(response
            .headers()
            .contains_key(header::CONTENT_SECURITY_POLICY));
        for id in [
            "accepted-rate",
            "completed-rate",
            "e2e-p50",
            "e2e-p99",
            "verify-p50",
            "verify-p99",
            "queue-depth",
            "queue-consumers",
            "dead-letters",
            "workers-online",
            "workers-body",
            "failures-body",
            "search-id",
            "timeline",
            "throughput-chart",
            "latency-chart",
        ] {
            assert!(PAGE.contains(&format!("id=\"{id}\"")), "no element {id}");
        }
        for polled in ["/api/stats", "/api/workers", "/api/failures", "/events"] {
            assert!(PAGE.contains(polled), "does not poll {polled}");
        }
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
        assert!(!PAGE.contains("<script src") && !PAGE.contains("<link rel=\"stylesheet\""));
    }
}
