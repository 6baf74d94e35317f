//! Live figures for `GET /api/stats`: requests accepted and completed per
//! second (over the last second and the last minute), end-to-end and verify
//! latency percentiles (over the last one to two minutes), the request
//! queue as the broker sees it, and the workers online. Fed by the
//! projection with live events only (a replay does not count), so every
//! gateway shows the same service-wide figures.
//!
//! Also the recent failures for `GET /api/failures`: the last
//! [`MAX_FAILURES`] `failed` verdicts (first results only) and dead letters,
//! in a bounded ring, so the dashboard can list them without a scan of the
//! store.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use verify_core::{now_ms, RequestId};

use crate::store::rfc3339;

/// Seconds of per-second counts kept.
const WINDOW_SECS: u64 = 60;

/// Recent failures kept for `GET /api/failures` (older ones drop out).
pub const MAX_FAILURES: usize = 50;

#[derive(Default)]
pub struct LiveStats {
    window: Mutex<Window>,
    /// The last [`MAX_FAILURES`] failures, oldest first: a bounded ring so
    /// a burst of failures costs no more memory than a quiet hour.
    failures: Mutex<VecDeque<Failure>>,
    /// The request queue, polled from the broker.
    pub queue_depth: AtomicU64,
    pub queue_consumers: AtomicU64,
    pub dead_letters: AtomicU64,
    pub queue_known: AtomicBool,
}

struct Window {
    /// (unix second, accepted, completed), oldest first.
    seconds: VecDeque<(u64, u64, u64)>,
    /// Latencies in µs: this minute's and the last one's.
    end_to_end: [Histogram<u64>; 2],
    verify: [Histogram<u64>; 2],
    /// When the current histograms began (ms since the epoch).
    started_ms: u64,
}

impl Default for Window {
    fn default() -> Self {
        let h = || Histogram::new_with_bounds(1, 600_000_000, 2).expect("static bounds");
        Window {
            seconds: VecDeque::new(),
            end_to_end: [h(), h()],
            verify: [h(), h()],
            started_ms: now_ms(),
        }
    }
}

impl Window {
    fn second(&mut self, now_ms: u64) -> &mut (u64, u64, u64) {
        let now_s = now_ms / 1000;
        if self.seconds.back().is_none_or(|s| s.0 != now_s) {
            self.seconds.push_back((now_s, 0, 0));
        }
        while self
            .seconds
            .front()
            .is_some_and(|s| s.0 + WINDOW_SECS < now_s)
        {
            self.seconds.pop_front();
        }
        self.seconds.back_mut().expect("just pushed")
    }

    fn rotate(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.started_ms) >= WINDOW_SECS * 1000 {
            self.end_to_end.swap(0, 1);
            self.verify.swap(0, 1);
            self.end_to_end[0].reset();
            self.verify[0].reset();
            self.started_ms = now_ms;
        }
    }
}

/// Requests per second over the last second and the last minute.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rate {
    pub last_second: f64,
    pub last_minute: f64,
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub accepted: Rate,
    pub completed: Rate,
    pub end_to_end_ms: Percentiles,
    pub verify_ms: Percentiles,
    /// Requests waiting (messages: under load a message holds several).
    pub queue_depth: Option<u64>,
    pub queue_consumers: Option<u64>,
    pub dead_letters: Option<u64>,
    pub workers_online: usize,
}

/// Which way a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A worker answered with an error (unknown key, disabled algorithm...).
    Failed,
    /// A worker put the request in the dead-letter queue.
    DeadLettered,
}

/// One recent failure as `GET /api/failures` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub id: RequestId,
    #[serde(rename = "type")]
    pub kind: FailureKind,
    /// The error code, or the dead-letter reason.
    pub code: String,
    /// When it happened (RFC 3339, ms).
    pub at: String,
    /// The event's source (the worker's name).
    pub by: String,
}

fn percentiles(histograms: &[Histogram<u64>; 2]) -> Percentiles {
    let mut both = histograms[0].clone();
    let _ = both.add(&histograms[1]);
    let ms = |q: f64| {
        if both.is_empty() {
            0.0
        } else {
            both.value_at_quantile(q) as f64 / 1000.0
        }
    };
    Percentiles {
        p50: ms(0.5),
        p99: ms(0.99),
    }
}

impl LiveStats {
    /// Whether the request queue, as last polled, held no message ready for
    /// a worker (false when it could not be polled).
    pub fn queue_idle(&self) -> bool {
        self.queue_known.load(Ordering::Relaxed) && self.queue_depth.load(Ordering::Relaxed) == 0
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn accepted(&self) {
        self.window().second(now_ms()).1 += 1;
    }

    pub fn completed(&self, end_to_end: Duration, verify: Duration) {
        let now = now_ms();
        let mut window = self.window();
        window.rotate(now);
        window.second(now).2 += 1;
        let micros = |d: Duration| (d.as_micros() as u64).clamp(1, 600_000_000);
        window.end_to_end[0].saturating_record(micros(end_to_end));
        window.verify[0].saturating_record(micros(verify));
    }

    /// Records a failure of request `id` at `at_ms`, reported by `by`.
    pub fn failure(&self, id: RequestId, kind: FailureKind, code: &str, at_ms: u64, by: &str) {
        let failure = Failure {
            id,
            kind,
            code: code.to_owned(),
            at: rfc3339(at_ms),
            by: by.to_owned(),
        };
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() == MAX_FAILURES {
            failures.pop_front();
        }
        failures.push_back(failure);
    }

    /// The recent failures, newest first.
    pub fn recent_failures(&self) -> Vec<Failure> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.iter().rev().cloned().collect()
    }

    pub fn snapshot(&self, workers_online: usize) -> Snapshot {
        let now = now_ms();
        let mut window = self.window();
        window.rotate(now);
        let now_s = now / 1000;
        // Complete seconds only: the current one is still filling.
        let (mut last_a, mut last_c, mut min_a, mut min_c) = (0, 0, 0, 0);
        for &(s, a, c) in &window.seconds {
            if s + 1 == now_s {
                (last_a, last_c) = (a, c);
            }
            if s < now_s && s + WINDOW_SECS >= now_s {
                min_a += a;
                min_c += c;
            }
        }
        let per_minute = |n: u64| n as f64 / WINDOW_SECS as f64;
        let known = self.queue_known.load(Ordering::Relaxed);
        let gauge = |g: &AtomicU64| known.then(|| g.load(Ordering::Relaxed));
        Snapshot {
            accepted: Rate {
                last_second: last_a as f64,
                last_minute: per_minute(min_a),
            },
            completed: Rate {
                last_second: last_c as f64,
                last_minute: per_minute(min_c),
            },
            end_to_end_ms: percentiles(&window.end_to_end),
            verify_ms: percentiles(&window.verify),
            queue_depth: gauge(&self.queue_depth),
            queue_consumers: gauge(&self.queue_consumers),
            dead_letters: gauge(&self.dead_letters),
            workers_online,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_percentiles() {
        let stats = LiveStats::default();
        for i in 0..100u64 {
            stats.accepted();
            stats.completed(
                Duration::from_millis(10 + i % 10),
                Duration::from_micros(20),
            );
        }
        // Counted in the current second: it shows in the minute once it is over.
        let now = stats.snapshot(2);
        assert_eq!(now.workers_online, 2);
        assert!((9.0..=20.0).contains(&now.end_to_end_ms.p50), "{now:?}");
        assert!((0.019..=0.021).contains(&now.verify_ms.p50), "{now:?}");
        assert_eq!(now.queue_depth, None);
    }

    #[test]
    fn failures_ring_keeps_the_last_ones_newest_first() {
        let stats = LiveStats::default();
        assert!(stats.recent_failures().is_empty());
        let ids: Vec<RequestId> = (0..MAX_FAILURES + 7).map(|_| RequestId::new()).collect();
        for (i, id) in ids.iter().enumerate() {
            let kind = if i % 2 == 0 {
                FailureKind::Failed
            } else {
                FailureKind::DeadLettered
            };
            stats.failure(
                *id,
                kind,
                &format!("code_{i}"),
                1_000 + i as u64,
                "worker@h:1",
            );
        }
        let recent = stats.recent_failures();
        assert_eq!(recent.len(), MAX_FAILURES);
        // Newest first; the seven oldest dropped out.
        let newest = MAX_FAILURES + 6;
        assert_eq!(recent[0].id, ids[newest]);
        assert_eq!(recent[0].code, format!("code_{newest}"));
        assert_eq!(recent[MAX_FAILURES - 1].id, ids[7]);
        assert_eq!(recent[0].at, "1970-01-01T00:00:01.056Z");

        let json = serde_json::to_value(&recent[0]).unwrap();
        assert_eq!(json["type"], "failed");
        assert_eq!(json["by"], "worker@h:1");
        assert_eq!(json["id"], ids[newest].to_string());
        let json = serde_json::to_value(&recent[1]).unwrap();
        assert_eq!(json["type"], "dead_lettered");
    }
}
