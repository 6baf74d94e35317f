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
        let known = self.0.get(route).and_then(|counters| {
            counters
                .iter()
                .find(|(s, _)| *s == status)
                .map(|(_, counter)| counter.clone())
        });
        let counter = known.unwrap_or_else(|| {
            let mut counters = self.0.entry(route.into()).or_default();
            match counters.iter().find(|(s, _)| *s == status) {
                Some((_, counter)) => counter.clone(),
                None => {
                    let counter = metrics::counter!(
                        "gateway_http_requests_total",
                        "route" => route.to_owned(),
                        "status" => status.to_string()
                    );
                    counters.push((status, counter.clone()));
                    counter
                }
            }
        });
        counter.increment(1);
    }
}
