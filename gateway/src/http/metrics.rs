//! Per-route request counting.
//!
//! Invariant: every call is counted once in
//! `gateway_http_requests_total{route, status}`, by matched route (not raw
//! path, so ids do not explode the label set); a call no route matched is
//! `unmatched`.

use axum::http::StatusCode;
use dashmap::DashMap;
use metrics::Counter;

/// The counters of `gateway_http_requests_total`, one per route and status,
/// each registered once: a call then counts without building its labels.
#[derive(Default)]
pub struct RequestCounters(DashMap<Box<str>, Vec<(u16, Counter)>>);

impl RequestCounters {
    /// Counts one call to `route` answered `status`.
    pub fn count(&self, route: Option<&str>, status: StatusCode) {
        let route = route.unwrap_or("unmatched");
        let status = status.as_u16();
        let find = |counters: &[(u16, Counter)]| {
            let (_, counter) = counters.iter().find(|(s, _)| *s == status)?;
            Some(counter.clone())
        };
        let counter = match self.0.get(route).and_then(|counters| find(&counters)) {
            Some(counter) => counter,
            None => {
                // First of its kind (or a race for it): registered once.
                let mut counters = self.0.entry(route.into()).or_default();
                find(&counters).unwrap_or_else(|| {
                    let counter = metrics::counter!(
                        "gateway_http_requests_total",
                        "route" => route.to_owned(),
                        "status" => status.to_string()
                    );
                    counters.push((status, counter.clone()));
                    counter
                })
            }
        };
        counter.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_counts_once_under_its_route_and_status() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let counters = RequestCounters::default();
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..3 {
                counters.count(Some("/api/signature"), StatusCode::ACCEPTED);
            }
            counters.count(Some("/api/signature"), StatusCode::BAD_REQUEST);
            counters.count(Some("/api/signature/{id}"), StatusCode::ACCEPTED);
            counters.count(None, StatusCode::NOT_FOUND);
            counters.count(None, StatusCode::NOT_FOUND);
        });
        let text = handle.render();
        for line in [
            r#"gateway_http_requests_total{route="/api/signature",status="202"} 3"#,
            r#"gateway_http_requests_total{route="/api/signature",status="400"} 1"#,
            r#"gateway_http_requests_total{route="/api/signature/{id}",status="202"} 1"#,
            r#"gateway_http_requests_total{route="unmatched",status="404"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }
}
