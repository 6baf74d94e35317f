//! Latency histograms and the final report. This module knows nothing of
//! how a run is driven: the run describes itself with a [`Setup`].

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::failure::Failure;

pub enum Outcome {
    Ok { accept: Duration, total: Duration },
    Error(Failure),
}

pub struct Stats {
    accept: Histogram<u64>,
    total: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        // Microseconds, 1 µs to 120 s, 3 significant digits.
        let h = || Histogram::new_with_bounds(1, 120_000_000, 3).expect("static bounds");
        Stats {
            accept: h(),
            total: h(),
            errors: BTreeMap::new(),
        }
    }
}

impl Stats {
    pub fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok { accept, total } => {
                self.accept.saturating_record(accept.as_micros() as u64);
                self.total.saturating_record(total.as_micros() as u64);
            }
            Outcome::Error(e) => *self.errors.entry(e.to_string()).or_default() += 1,
        }
    }

    pub fn report(&self, elapsed: Duration, setup: Setup) -> Report {
        let ok = self.total.len();
        let errors: u64 = self.errors.values().sum();
        Report {
            mode: if setup.rate.is_some() {
                "open".into()
            } else {
                "closed".into()
            },
            concurrency: setup.concurrency,
            rate: setup.rate,
            poll: setup.poll,
            doc_size: setup.doc_size,
            elapsed_s: elapsed.as_secs_f64(),
            verified: ok,
            errors,
            throughput_per_s: ok as f64 / elapsed.as_secs_f64(),
            accept_ms: Percentiles::of(&self.accept),
            end_to_end_ms: Percentiles::of(&self.total),
            error_kinds: self.errors.clone(),
        }
    }
}

/// What a run was, as its report states it.
pub struct Setup {
    pub concurrency: usize,
    /// Open loop: requests started a second; None: closed loop.
    pub rate: Option<f64>,
    /// How results were fetched (`long`, `plain`).
    pub poll: String,
    pub doc_size: usize,
}

#[derive(Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            max: h.max() as f64 / 1000.0,
        }
    }
}

#[derive(Serialize)]
pub struct Report {
    pub mode: String,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub poll: String,
    pub doc_size: usize,
    pub elapsed_s: f64,
    pub verified: u64,
    pub errors: u64,
    pub throughput_per_s: f64,
    pub accept_ms: Percentiles,
    pub end_to_end_ms: Percentiles,
    pub error_kinds: BTreeMap<String, u64>,
}

impl Report {
    pub fn print(&self) {
        let load = match self.rate {
            Some(r) => format!("open loop at {r}/s"),
            None => format!("closed loop, {} clients", self.concurrency),
        };
        println!(
            "{load}, {} polling, {}-byte documents",
            self.poll, self.doc_size
        );
        println!(
            "verified      {} in {:.2} s: {:.0} requests/s",
            self.verified, self.elapsed_s, self.throughput_per_s
        );
        println!("errors        {}", self.errors);
        for (kind, n) in &self.error_kinds {
            println!("  {n:>8}  {kind}");
        }
        println!("                 p50       p90       p99       max   (ms)");
        for (name, p) in [
            ("accept", &self.accept_ms),
            ("end-to-end", &self.end_to_end_ms),
        ] {
            println!(
                "{name:<12}{:>8.2}  {:>8.2}  {:>8.2}  {:>8.2}",
                p.p50, p.p90, p.p99, p.max
            );
        }
    }
}
