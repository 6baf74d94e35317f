//! Live workers: every worker announces itself, sends heartbeats with its
//! counts, and says goodbye on a graceful stop; `GET /api/workers` lists
//! them, and a worker that dies without a word is shown offline once it has
//! missed three heartbeats (within 20 s at the default 5 s). `/api/stats`
//! shows the service-wide figures. Also: the batching defaults each binary
//! starts with (a worker's differ from a gateway's).

use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

async fn workers(gw: &Gateway) -> Vec<Value> {
    let (status, _, json) = gw.get("/api/workers").await;
    assert_eq!(status, 200, "{json}");
    json["workers"].as_array().unwrap().clone()
}

/// The listed worker whose pid is `pid`.
async fn worker(gw: &Gateway, pid: u32) -> Option<Value> {
    workers(gw).await.into_iter().find(|w| w["pid"] == pid)
}

async fn wait_status_of(gw: &Gateway, pid: u32, status: &str, timeout: Duration) {
    wait_for(&format!("worker {pid} {status}"), timeout, || async {
        worker(gw, pid).await.is_some_and(|w| w["status"] == status)
    })
    .await;
}

#[tokio::test]
async fn workers_are_listed_live_and_a_killed_one_goes_offline() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    let mut killed = env.worker("worker-killed", &[]);
    let stopped = env.worker("worker-stopped", &[]);
    let (killed_pid, stopped_pid) = (killed.child.id(), stopped.child.id());
    for pid in [killed_pid, stopped_pid] {
        wait_status_of(&gw, pid, "online", Duration::from_secs(20)).await;
    }

    let signer = Signer2048::new();
    let bodies: Vec<Value> = (0..20)
        .map(|i| body_for(&signer, &format!("counted {i}"), i % 4 == 0))
        .collect();
    for id in submit_all(&gw, &bodies, 8).await {
        gw.result(&id, Duration::from_secs(20)).await;
    }
    // The next heartbeats carry the counts.
    wait_for("20 requests counted", Duration::from_secs(20), || async {
        let listed = workers(&gw).await;
        listed
            .iter()
            .filter_map(|w| w["processed"].as_u64())
            .sum::<u64>()
            == 20
    })
    .await;
    // The service-wide figures, as the dashboard will show them.
    wait_for("live stats", Duration::from_secs(20), || async {
        let (_, _, stats) = gw.get("/api/stats").await;
        stats["queueConsumers"] == 2 && stats["completed"]["lastMinute"].as_f64() > Some(0.0)
    })
    .await;
    let (_, _, stats) = gw.get("/api/stats").await;
    assert_eq!(stats["workersOnline"], 2, "{stats}");
    assert_eq!(stats["queueDepth"], 0, "{stats}");
    assert_eq!(stats["deadLetters"], 0, "{stats}");
    assert!(
        stats["accepted"]["lastMinute"].as_f64() > Some(0.0),
        "{stats}"
    );
    assert!(stats["endToEndMs"]["p99"].as_f64() > Some(0.0), "{stats}");
    assert!(stats["verifyMs"]["p50"].as_f64() > Some(0.0), "{stats}");

    let listed = worker(&gw, stopped_pid).await.unwrap();
    for field in [
        "name",
        "lastSeen",
        "host",
        "version",
        "startedAt",
        "inFlight",
        "verifyThreads",
    ] {
        assert!(!listed[field].is_null(), "{field} missing: {listed}");
    }
    assert!(
        listed["name"].as_str().unwrap().starts_with("worker@"),
        "{listed}"
    );

    // Killed without a word: offline after three missed heartbeats.
    let died = Instant::now();
    killed.signal(Signal::SIGKILL);
    killed
        .wait_exit(Duration::from_secs(5))
        .expect("did not die");
    wait_status_of(&gw, killed_pid, "offline", Duration::from_secs(25)).await;
    let after = died.elapsed();
    assert!(after < Duration::from_secs(20), "offline after {after:?}");
    assert!(
        after > Duration::from_secs(5),
        "offline too early ({after:?}): not from missed beats"
    );

    // Stopped gracefully: offline at once, from its goodbye.
    let stopping = Instant::now();
    stopped.signal(Signal::SIGTERM);
    wait_status_of(&gw, stopped_pid, "offline", Duration::from_secs(10)).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );

    // A gateway started later knows both from the stream.
    let late = env.gateway(&[]).await;
    for pid in [killed_pid, stopped_pid] {
        assert_eq!(worker(&late, pid).await.unwrap()["status"], "offline");
    }
    let (_, metrics) = gw.get_text("/metrics").await;
    assert_eq!(
        counter(&metrics, "gateway_workers_online"),
        0.0,
        "{metrics}"
    );
}

/// A worker announces itself as soon as it can publish, not one heartbeat
/// interval later.
#[tokio::test]
async fn a_starting_worker_is_listed_before_its_first_heartbeat() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    let worker = env.worker("worker-slow-beat", &[("HEARTBEAT_INTERVAL", "60s".into())]);
    let started = Instant::now();
    wait_status_of(&gw, worker.child.id(), "online", Duration::from_secs(30)).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "listed only after {:?}",
        started.elapsed()
    );
}

/// The default a binary's `--help` gives for environment variable `var`.
fn help_default(program: &str, var: &str) -> String {
    let out = std::process::Command::new(binary(program))
        .arg("--help")
        .env_remove(var)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let line = help
        .lines()
        .find(|l| l.contains(&format!("[env: {var}=")))
        .unwrap_or_else(|| panic!("{program} --help names no {var}:\n{help}"));
    let default = line
        .split("[default: ")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("no default for {var}: {line}"));
    default.to_owned()
}

#[test]
fn workers_close_verdict_batches_when_a_bunch_ends_gateways_keep_the_fixed_gather() {
    // README, BATCH_IDLE: the worker binary's own defaults, the gateway's shared ones.
    for (program, idle, gather, linger) in [
        ("verifier-worker", "1ms", "0ms", "2ms"),
        ("gateway", "0ms", "2ms", "2ms"),
    ] {
        assert_eq!(help_default(program, "BATCH_IDLE"), idle, "{program}");
        assert_eq!(help_default(program, "BATCH_GATHER"), gather, "{program}");
        assert_eq!(help_default(program, "BATCH_LINGER"), linger, "{program}");
    }
}
