//! A three-node RabbitMQ cluster that loses a node, under load, and nothing
//! else: two gateways and two workers given all three URLs, a steady load,
//! the node leading the request queue SIGKILLed, started again, and then a
//! second node killed the same way. Every 202 ends in the right verdict;
//! every gateway is ready again within 10 s; POSTs in between are answered
//! (202 or 503 + Retry-After), never left hanging; results a gateway had
//! projected survive the loss of its node.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

#[derive(Default)]
struct Load {
    /// (id, expected verdict) of every 202.
    accepted: Mutex<Vec<(String, bool)>>,
    refused: AtomicU64,
    /// Answers that were neither 202 nor 503 + Retry-After.
    wrong: Mutex<Vec<String>>,
    /// The slowest POST: its time (ms), answer, gateway and trace (to find
    /// it in the logs).
    slowest: Mutex<(u64, String)>,
    stop: AtomicBool,
}

impl Load {
    fn accepted(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }
}

/// Posts bodies round-robin to the gateways, `clients` at a time, until stopped.
async fn drive(
    bases: Vec<String>,
    bodies: Arc<Vec<(Value, bool)>>,
    load: Arc<Load>,
    client: usize,
) {
    let http = http_client(Duration::from_secs(60));
    let mut i = client;
    while !load.stop.load(Ordering::Relaxed) {
        let (body, valid) = &bodies[i % bodies.len()];
        let base = &bases[i % bases.len()];
        i += 7;
        let started = Instant::now();
        let answer = http
            .post(format!("{base}/api/signature"))
            .json(body)
            .send()
            .await;
        let took = started.elapsed().as_millis() as u64;
        {
            let mut slowest = load.slowest.lock().unwrap();
            if slowest.0 < took {
                *slowest = (
                    took,
                    match &answer {
                        Ok(r) => format!(
                            "{} from {base}, traceparent {:?}",
                            r.status(),
                            r.headers().get("traceparent")
                        ),
                        Err(e) => format!("{e} from {base}"),
                    },
                );
            }
        }
        match answer {
            Ok(r) if r.status() == 202 => {
                let json: Value = r.json().await.unwrap();
                let id = json["id"].as_str().unwrap().to_owned();
                load.accepted.lock().unwrap().push((id, *valid));
            }
            Ok(r) if r.status() == 503 && r.headers().contains_key("retry-after") => {
                load.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(r) => load.wrong.lock().unwrap().push(format!("{}", r.status())),
            Err(e) => load.wrong.lock().unwrap().push(e.to_string()),
        }
    }
}

async fn accepted_at_least(load: &Load, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while load.accepted() < n {
        assert!(
            Instant::now() < deadline,
            "{n} requests not accepted within 120 s: {} accepted, {} refused with 503, \
             other answers: {:?}",
            load.accepted(),
            load.refused.load(Ordering::Relaxed),
            load.wrong.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills `node`, then watches every gateway's /readyz for 12 s; the time
/// after the kill at which the last of them was last seen not ready.
async fn kill_and_watch(cluster: &Cluster, node: u8, gateways: &[String]) -> Duration {
    let http = http_client(Duration::from_secs(2));
    off_runtime(|| cluster.kill(node));
    let killed = Instant::now();
    let mut last_unready = Duration::ZERO;
    while killed.elapsed() < Duration::from_secs(12) {
        for base in gateways {
            let ok = http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if !ok {
                last_unready = killed.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last_unready
}

/// SIGKILLs the node leading `queue` and asserts every gateway is ready
/// again within 10 s; the node killed.
async fn kill_the_leader(cluster: &Cluster, queue: &str, gateways: &[String]) -> u8 {
    let leader = off_runtime(|| cluster.leader(queue));
    let unready = kill_and_watch(cluster, leader, gateways).await;
    eprintln!("killed node {leader} (leader): gateways last unready {unready:?} after the kill");
    assert!(
        unready < Duration::from_secs(10),
        "not ready again within 10 s: {unready:?}"
    );
    leader
}

/// Runs a blocking call (the cluster script: seconds for a node to start)
/// without stopping the clients: on a current-thread runtime it would
/// freeze them too, and a POST they had sent would be timed as long as
/// the script took, however soon the gateway answered it.
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_any_one_node_under_load_loses_nothing() {
    let cluster = Cluster::start();
    let env = TestEnv::with_broker(cluster.url());
    // Each request's steps in the logs, to tell where one went if it is lost.
    let worker_log = [("RUST_LOG", "info,verifier_worker::amqp=debug".to_owned())];
    // A verdict the broker loses in a failover is asked for again after 10 s.
    let gateway_log = [
        ("RUST_LOG", "info,gateway::http=debug".to_owned()),
        ("VERDICT_TIMEOUT", "10s".to_owned()),
    ];
    let (_w1, _) = env.ready_worker("worker-1", &worker_log).await;
    let (_w2, _) = env.ready_worker("worker-2", &worker_log).await;
    let a = env.gateway(&gateway_log).await;
    let b = env.gateway(&gateway_log).await;
    let gateways = vec![a.base.clone(), b.base.clone()];

    let signer = Signer2048::new();
    let bodies: Arc<Vec<(Value, bool)>> = Arc::new(
        (0..40)
            .map(|i| {
                let tampered = i % 8 == 0;
                (
                    body_for(&signer, &format!("clustered {i}"), tampered),
                    !tampered,
                )
            })
            .collect(),
    );
    let load = Arc::new(Load::default());
    let clients: Vec<_> = (0..8)
        .map(|c| tokio::spawn(drive(gateways.clone(), bodies.clone(), load.clone(), c)))
        .collect();

    accepted_at_least(&load, 300).await;
    // Results both gateways have projected before any node dies.
    let before: Vec<(String, bool)> = load.accepted.lock().unwrap()[..100].to_vec();
    for (id, valid) in &before {
        assert_eq!(a.result(id, Duration::from_secs(30)).await["valid"], *valid);
        assert_eq!(b.result(id, Duration::from_secs(30)).await["valid"], *valid);
    }

    let first = kill_the_leader(&cluster, &env.queue, &gateways).await;
    let after_first = load.accepted();
    accepted_at_least(&load, after_first + 300).await;

    off_runtime(|| {
        cluster.start_node(first);
        cluster.script(&["wait"]);
    });
    kill_the_leader(&cluster, &env.queue, &gateways).await;
    let after_second = load.accepted();
    accepted_at_least(&load, (after_second + 300).max(1_100)).await;
    load.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let wrong = load.wrong.lock().unwrap().clone();
    assert!(
        wrong.is_empty(),
        "answers other than 202 / 503 + Retry-After: {wrong:?}"
    );
    let (slowest, slowest_answer) = load.slowest.lock().unwrap().clone();
    // A request's publish, and its copy on another node, share one
    // CONFIRM_TIMEOUT (5 s): twice that is the most any answer may take.
    assert!(
        slowest < 10_000,
        "a POST took {slowest} ms: {slowest_answer}"
    );
    let accepted = load.accepted.lock().unwrap().clone();
    let mut unknown = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (id, valid) in &accepted {
        loop {
            let (status, _, json) = a.get(&format!("/api/signature/{id}?wait=5")).await;
            if status == 200 && json["status"] != "pending" {
                assert_eq!(json["status"], "completed", "{json}");
                assert_eq!(json["valid"], *valid, "{json}");
                break;
            }
            if Instant::now() > deadline {
                unknown.push(format!("{id}: {status} {json}"));
                break;
            }
        }
    }
    if !unknown.is_empty() {
        let ids: Vec<String> = unknown
            .iter()
            .map(|u| u[..u.find(':').unwrap()].to_owned())
            .collect();
        let mut report = String::new();
        let in_stream = env.stream_events(&ids).await;
        for (line, id) in unknown.iter().zip(&ids) {
            let (_, _, other) = b.get(&format!("/api/signature/{id}")).await;
            let (_, _, timeline) = a.get(&format!("/api/signature/{id}/events")).await;
            report.push_str(&format!(
                "\n  gateway a: {line}\n  its timeline there: {timeline}\n  gateway b: {other}\n  \
                 the events stream holds: {:?}",
                in_stream[id]
            ));
        }
        report.push_str(&format!(
            "\n  messages in the request queue: {}, dead letters: {}",
            env.queue_depth(&env.queue).await,
            env.queue_depth(&format!("{}.dead", env.queue)).await
        ));
        panic!(
            "{} of {} accepted requests without a verdict at gateway a 60 s after the load:{report}",
            unknown.len(),
            accepted.len()
        );
    }
    // What the gateways had projected before the kills is still there.
    for gw in [&a, &b] {
        for (id, valid) in &before {
            let (status, _, json) = gw.get(&format!("/api/signature/{id}")).await;
            assert_eq!(
                (status, json["valid"].as_bool()),
                (200, Some(*valid)),
                "{json}"
            );
        }
    }
    let mut republished = 0.0;
    for gw in [&a, &b] {
        republished += counter(
            &gw.get_text("/metrics").await.1,
            "gateway_republished_total",
        );
    }
    eprintln!(
        "{} accepted, all verified; {} refused with 503; slowest POST {slowest} ms \
         ({slowest_answer}); {republished} requests published again for want of a verdict",
        accepted.len(),
        load.refused.load(Ordering::Relaxed)
    );
}
