//! Bytes a gateway holds per retained result: fills a status store with
//! completed requests, as the projection does, and divides the growth of
//! the process's resident memory by their number.
//!
//! While it fills, the longest single result applied: a hash map grows by
//! moving its items into a table twice the size, and in the gateway that
//! holds up the runtime thread serving every request.
//!
//! Then what the gateway's sweep costs: with nothing due (a store of
//! ENTRIES results inside their retention), and dropping a second's worth
//! of 10,000 expired results.
//!
//!   cargo run --release -p gateway --example store_memory [ENTRIES]
//!
//! With the gateway's allocator (mimalloc) and, as in the gateway, without
//! transparent huge pages (`MIMALLOC_ALLOW_THP=1` keeps them).

use std::time::{Duration, Instant};

use gateway::store::{Origin, Store};
use verify_core::{Algorithm, Event, EventKind, KeyId, RequestId};

/// Resident memory of this process, in bytes (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

// The gateway's allocator: a table's growth takes fresh memory from it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // As the gateway's process does (MIMALLOC_ALLOW_THP=1 keeps them).
    gateway::huge_pages::turn_off().expect("prctl");
    let entries: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("a number of entries"))
        .unwrap_or(1_000_000);
    let store = Store::new(Duration::from_secs(3600));
    let before = rss_bytes();
    let slowest = fill(&store, entries, RATE);
    let after = rss_bytes();
    println!(
        "{entries} results: resident memory grew {:.1} MB, {:.0} bytes per result",
        (after - before) as f64 / 1e6,
        (after - before) as f64 / entries as f64
    );
    println!(
        "longest result applied while filling: {:.2} ms (at {} results); {} over 1 ms",
        slowest.longest.as_secs_f64() * 1e3,
        slowest.at,
        slowest.over_1ms
    );
    let t = Instant::now();
    let dropped = store.sweep();
    println!(
        "sweep of {} results, none due: {:.3} ms ({dropped} dropped)",
        store.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(store);
    let store = Store::new(Duration::from_secs(1));
    fill(&store, 10_000, 1_000_000);
    std::thread::sleep(Duration::from_millis(2100));
    let t = Instant::now();
    let dropped = store.sweep();
    println!(
        "sweep of 10,000 expired results: {:.2} ms ({dropped} dropped)",
        t.elapsed().as_secs_f64() * 1e3
    );
}

/// The slowest results applied while a store filled.
#[derive(Default)]
struct Slowest {
    longest: Duration,
    /// How many results the store held when the longest was applied.
    at: usize,
    over_1ms: usize,
}

/// Requests a second the results are stamped at, oldest first and the last
/// one now: the store files each id under the second it expires in, so a
/// second holds what a live gateway's would, not the whole store.
const RATE: u64 = 6_000;

/// Fills `store` with `entries` results, as the projection does: an
/// `accepted` and a `completed` event each, stamped `rate` a second.
fn fill(store: &Store, entries: usize, rate: u64) -> Slowest {
    let mut slowest = Slowest::default();
    let first_ms = verify_core::now_ms() - entries as u64 * 1000 / rate;
    let fingerprint = Some("0123456789abcdef0123456789abcdef".to_owned());
    // Events as workers write them: two workers, one key, some failures.
    let workers = ["worker@host-a:1234", "worker@host-b:5678"];
    for i in 0..entries {
        let id = RequestId::new();
        let at_ms = first_ms + i as u64 * 1000 / rate;
        let mut accepted = Event::new(
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
        accepted.at_ms = at_ms;
        let started = Instant::now();
        store.apply(&accepted, Origin::Stream);
        let mut verdict = Event::new(
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
        verdict.at_ms = at_ms;
        store.apply(&verdict, Origin::Stream);
        let took = started.elapsed();
        if took > Duration::from_millis(1) {
            slowest.over_1ms += 1;
        }
        if took > slowest.longest {
            slowest.longest = took;
            slowest.at = i;
        }
    }
    slowest
}
