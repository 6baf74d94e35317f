//! Bytes a gateway holds per retained result: fills a status store with
//! completed requests, as the projection does, and divides the growth of
//! the process's resident memory by their number.
//!
//! Then what the gateway's sweep costs: with nothing due (a store of
//! ENTRIES results inside their retention), and dropping a second's worth
//! of 10,000 expired results.
//!
//!   cargo run --release -p gateway --example store_memory [ENTRIES]

use std::time::Duration;

use gateway::store::{Origin, Store};
use verify_core::{Algorithm, Event, EventKind, KeyId, RequestId};

/// Resident memory of this process, in bytes (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let entries: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("a number of entries"))
        .unwrap_or(1_000_000);
    let store = Store::new(Duration::from_secs(3600));
    let before = rss_bytes();
    fill(&store, entries);
    let after = rss_bytes();
    println!(
        "{entries} results: resident memory grew {:.1} MB, {:.0} bytes per result",
        (after - before) as f64 / 1e6,
        (after - before) as f64 / entries as f64
    );
    let t = std::time::Instant::now();
    let dropped = store.sweep();
    println!(
        "sweep of {} results, none due: {:.3} ms ({dropped} dropped)",
        store.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(store);
    let store = Store::new(Duration::from_secs(1));
    fill(&store, 10_000);
    std::thread::sleep(Duration::from_millis(2100));
    let t = std::time::Instant::now();
    let dropped = store.sweep();
    println!(
        "sweep of 10,000 expired results: {:.2} ms ({dropped} dropped)",
        t.elapsed().as_secs_f64() * 1e3
    );
}

/// Fills `store` with `entries` results, as the projection does: an
/// `accepted` and a `completed` event each.
fn fill(store: &Store, entries: usize) {
    let fingerprint = Some("0123456789abcdef0123456789abcdef".to_owned());
    // Events as workers write them: two workers, one key, some failures.
    let workers = ["worker@host-a:1234", "worker@host-b:5678"];
    for i in 0..entries {
        let id = RequestId::new();
        let accepted = Event::new(
            id,
            "gateway@host:1",
            EventKind::Accepted {
                algorithm: Algorithm::DEFAULT,
                key_id: None,
                idempotency_key: None,
                fingerprint: fingerprint.clone(),
                tenant: None,
            },
        );
        store.apply(&accepted, Origin::Stream);
        let verdict = Event::new(
            id,
            workers[i % 2],
            EventKind::Completed {
                valid: i % 10 != 0,
                algorithm: Algorithm::DEFAULT,
                key_id: KeyId::new("default"),
                verify_micros: 21,
                submitted_at_ms: verify_core::now_ms(),
                fingerprint: fingerprint.clone(),
                delivery: None,
            },
        );
        store.apply(&verdict, Origin::Stream);
    }
}
