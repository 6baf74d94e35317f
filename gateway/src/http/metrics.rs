//! Per-route request counting and timing.
//!
//! Invariant: every call is counted once in
//! `gateway_http_requests_total{route, status}` and timed once in
//! `gateway_http_request_seconds{route}` (from the router to the answer's
//! head, a long poll's wait included), by matched route (not raw path, so
//! ids do not explode the label set); a call no route matched is
//! `unmatched`.

use std::time::Duration;

use axum::http::StatusCode;
use dashmap::DashMap;
use metrics::{Counter, Histogram};

/// The metrics of one route, each registered once: a call then counts
/// without building its labels.
struct Route {
    seconds: Histogram,
    /// One counter per status answered so far.
    counters: Vec<(u16, Counter)>,
}

impl Route {
    fn new(route: &str) -> Self {
        Route {
            seconds: metrics::histogram!("gateway_http_request_seconds", "route" => route.to_owned()),
            counters: Vec::new(),
        }
    }

    fn counter(&self, status: u16) -> Option<Counter> {
        let (_, counter) = self.counters.iter().find(|(s, _)| *s == status)?;
        Some(counter.clone())
    }
}

/// The per-route metrics of every call.
#[derive(Default)]
pub struct RequestCounters(DashMap<Box<str>, Route>);

impl RequestCounters {
    /// Counts one call to `route` answered `status` after `took`.
    pub fn count(&self, route: Option<&str>, status: StatusCode, took: Duration) {
        let route = route.unwrap_or("unmatched");
        let status = status.as_u16();
        let known = self
            .0
            .get(route)
            .and_then(|r| Some((r.seconds.clone(), r.counter(status)?)));
        let (seconds, counter) = known.unwrap_or_else(|| {
            // First of its kind (or a race for it): registered once.
            let mut r = self
                .0
                .entry(route.into())
                .or_insert_with(|| Route::new(route));
            let counter = r.counter(status).unwrap_or_else(|| {
                let counter = metrics::counter!(
                    "gateway_http_requests_total",
                    "route" => route.to_owned(),
                    "status" => status.to_string()
                );
                r.counters.push((status, counter.clone()));
                counter
            });
            (r.seconds.clone(), counter)
        });
        counter.increment(1);
        seconds.record(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SLOW: Duration = Duration::from_secs(3);

    #[test]
    fn each_call_counts_and_is_timed_once_under_its_route_and_status() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let counters = RequestCounters::default();
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..3 {
                counters.count(Some("/api/signature"), StatusCode::ACCEPTED, MS);
            }
            counters.count(Some("/api/signature"), StatusCode::BAD_REQUEST, MS);
            counters.count(Some("/api/signature/{id}"), StatusCode::ACCEPTED, SLOW);
            counters.count(None, StatusCode::NOT_FOUND, MS);
            counters.count(None, StatusCode::NOT_FOUND, MS);
        });
        let text = handle.render();
        for line in [
            r#"gateway_http_requests_total{route="/api/signature",status="202"} 3"#,
            r#"gateway_http_requests_total{route="/api/signature",status="400"} 1"#,
            r#"gateway_http_requests_total{route="/api/signature/{id}",status="202"} 1"#,
            r#"gateway_http_requests_total{route="unmatched",status="404"} 2"#,
            r#"gateway_http_request_seconds_count{route="/api/signature"} 4"#,
            r#"gateway_http_request_seconds_sum{route="/api/signature"} 0.004"#,
            r#"gateway_http_request_seconds_count{route="/api/signature/{id}"} 1"#,
            r#"gateway_http_request_seconds_sum{route="/api/signature/{id}"} 3"#,
            r#"gateway_http_request_seconds_count{route="unmatched"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }
}
