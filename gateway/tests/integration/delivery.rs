//! Delivery guarantees over the real broker: load sharing, redelivery after a
//! SIGKILL, dead-lettering, expiry, graceful shutdown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// `n` bodies, every tenth tampered, and the verdict each must get.
fn mixed_bodies(signer: &Signer2048, n: usize, key_id: Option<&str>) -> (Vec<Value>, Vec<bool>) {
    (0..n)
        .map(|i| {
            let tampered = i % 10 == 3;
            let mut body = body_for(signer, &format!("document number {i}"), tampered);
            if let Some(k) = key_id {
                body["keyId"] = json!(k);
            }
            (body, !tampered)
        })
        .collect()
}

async fn assert_all_complete(
    gw: &Gateway,
    ids: &[String],
    expected: &[bool],
) -> HashMap<String, usize> {
    let mut by_worker = HashMap::new();
    for (id, valid) in ids.iter().zip(expected) {
        let result = gw.result(id, Duration::from_secs(60)).await;
        assert_eq!(result["status"], "completed", "{result}");
        assert_eq!(result["valid"], *valid, "{id}: {result}");
        *by_worker
            .entry(result["worker"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    by_worker
}

#[tokio::test]
async fn several_workers_share_the_load() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    // Small prefetch so no single worker can take the whole backlog at once.
    let workers: Vec<Proc> = (0..3)
        .map(|i| {
            env.worker(
                &format!("worker{i}"),
                &[("PREFETCH", "5".into()), ("VERIFY_BACKEND", "rust".into())],
            )
        })
        .collect();
    let signer = Signer2048::new();
    let (bodies, expected) = mixed_bodies(&signer, 300, None);
    let ids = submit_all(&gw, &bodies, 32).await;
    let by_worker = assert_all_complete(&gw, &ids, &expected).await;
    assert_eq!(
        by_worker.len(),
        3,
        "not every worker took a share: {by_worker:?}"
    );
    assert!(by_worker.values().all(|&n| n > 0), "{by_worker:?}");
    drop(workers);
}

#[tokio::test]
async fn verdicts_in_batches_go_compressed_and_are_read() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    let _worker = env.worker("worker", &[]);
    let signer = Signer2048::new();
    let (bodies, expected) = mixed_bodies(&signer, 200, None);
    // 64 at a time: verdicts gather into batches (a lone one is too small
    // to be worth compressing and goes as JSON).
    let ids = submit_all(&gw, &bodies, 64).await;
    assert_all_complete(&gw, &ids, &expected).await;
    let encodings = env.stream_encodings().await;
    let compressed = encodings
        .iter()
        .filter(|e| e.as_deref() == Some("zstd"))
        .count();
    assert!(
        compressed > 0,
        "no event message went compressed (COMPRESS_EVENTS): {encodings:?}"
    );
    assert!(
        encodings
            .iter()
            .all(|e| e.is_none() || e.as_deref() == Some("zstd")),
        "{encodings:?}"
    );
}

#[tokio::test]
async fn a_sigkilled_workers_requests_complete_elsewhere() {
    // A quorum queue counts the returns itself: nothing is given back.
    let metrics = sigkill_a_worker_holding_hundreds("quorum").await;
    assert_eq!(counter(&metrics, "worker_requeued_total"), 0.0, "{metrics}");
}

#[tokio::test]
async fn on_a_classic_queue_the_workers_count_the_redeliveries() {
    // A classic queue does not count: each redelivered message is published
    // again with its count raised (and then verified from that copy).
    let metrics = sigkill_a_worker_holding_hundreds("classic").await;
    let redelivered = counter(&metrics, "worker_redeliveries_total");
    assert_eq!(
        counter(&metrics, "worker_requeued_total"),
        redelivered,
        "{metrics}"
    );
}

/// 1,000 requests, a slow worker SIGKILLed holding hundreds, a second one
/// finishing: every id completes with its verdict. The survivor's metrics.
async fn sigkill_a_worker_holding_hundreds(queue_type: &str) -> String {
    let env = TestEnv::new();
    let queue_type = ("QUEUE_TYPE", queue_type.to_owned());
    let gw = env.gateway(std::slice::from_ref(&queue_type)).await;
    // Requests under the 4096-bit key with the slow backend on one thread:
    // the victim takes 500 at once and holds hundreds unacked.
    let signer = Signer2048::with_key("k4096");
    let slow = [
        ("VERIFY_BACKEND", "rust".to_owned()),
        ("VERIFY_THREADS", "1".to_owned()),
        ("PREFETCH", "500".to_owned()),
        queue_type.clone(),
    ];
    let (bodies, expected) = mixed_bodies(&signer, 1000, Some("big"));
    let ids = submit_all(&gw, &bodies, 64).await;
    assert_eq!(ids.len(), 1000);
    // The victim runs in slices of 20 ms, stopped in between, until the
    // gateway has its first verdict: a slice verifies a few dozen (at most
    // ~150 on a fast machine), so it is caught mid-batch. After each slice
    // the gateway gets a while to show what the stopped victim already sent:
    // a loaded machine delays the verdicts' way to it, not the victim's
    // progress, and the victim must not run on meanwhile.
    let mut victim = env.worker("victim", &slow);
    victim.signal(Signal::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(90);
    let answered = || async {
        let (_, metrics) = gw.get_text("/metrics").await;
        counter(&metrics, "gateway_results_total") > 0.0
    };
    loop {
        let settle = Instant::now() + Duration::from_millis(250);
        let mut seen = answered().await;
        while !seen && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(25)).await;
            seen = answered().await;
        }
        if seen {
            break;
        }
        assert!(Instant::now() < deadline, "the victim never answered");
        victim.signal(Signal::SIGCONT);
        tokio::time::sleep(Duration::from_millis(20)).await;
        victim.signal(Signal::SIGSTOP);
    }
    // A quorum queue's counts reach rabbitmqctl on its stats tick, seconds
    // late: wait for the broker to count what the stopped victim holds.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ready, unacked, consumers) = env.queue_counts(&env.queue);
        if unacked > 0 {
            break;
        }
        let (_, metrics) = gw.get_text("/metrics").await;
        assert!(
            Instant::now() < deadline,
            "the broker counts no message the stopped victim holds unacked within 20 s: \
             {ready} ready, {unacked} unacked, {consumers} consumers; the gateway has {} \
             results of {} accepted",
            counter(&metrics, "gateway_results_total"),
            counter(&metrics, "gateway_accepted_total"),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Pending only falls as verdicts land, towards what the victim never
    // answered: any reading now is at least that.
    let (_, metrics) = gw.get_text("/metrics").await;
    assert!(
        counter(&metrics, "gateway_pending") > 0.0,
        "the stopped victim left nothing pending"
    );
    victim.signal(Signal::SIGKILL);
    victim
        .wait_exit(Duration::from_secs(5))
        .expect("victim did not die");

    let (_survivor, port) = env.worker_with_http_env("survivor", &[queue_type]);
    let by_worker = assert_all_complete(&gw, &ids, &expected).await;
    assert_eq!(by_worker.values().sum::<usize>(), ids.len());
    assert_eq!(by_worker.len(), 2, "{by_worker:?}");

    // What the victim held comes back to the survivor redelivered.
    wait_for(
        "some of what the victim held comes back redelivered",
        Duration::from_secs(30),
        || async {
            let metrics = env.worker_metrics(port).await;
            counter(&metrics, "worker_redeliveries_total") > 0.0
        },
    )
    .await;
    let metrics = env.worker_metrics(port).await;
    // No id got two different answers: the gateway keeps the first, and a
    // redelivered request's second verdict is the same anyway.
    let (_, gw_metrics) = gw.get_text("/metrics").await;
    assert_eq!(
        counter(&gw_metrics, "gateway_accepted_total"),
        ids.len() as f64
    );

    // The timelines show the second attempts, made by the survivor.
    let mut second_attempts = 0;
    for id in &ids {
        let (status, _, timeline) = gw.get(&format!("/api/signature/{id}/events")).await;
        assert_eq!(status, 200, "{timeline}");
        let steps = timeline["events"].as_array().unwrap();
        assert_eq!(steps[0]["type"], "accepted", "{timeline}");
        assert!(
            steps[0]["by"].as_str().unwrap().starts_with("gateway@"),
            "{timeline}"
        );
        let answer = steps.last().unwrap();
        assert_eq!(answer["type"], "completed", "{timeline}");
        if answer["redelivered"] == true {
            assert!(answer["attempt"].as_u64().unwrap() >= 2, "{timeline}");
            second_attempts += 1;
        }
    }
    assert!(second_attempts > 0, "no timeline shows a second attempt");
    metrics
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_the_service_keeps_answering() {
    let env = TestEnv::new();
    let (_worker, port) = env.worker_with_http("worker");
    let gw = env.gateway(&[]).await;
    env.publish_raw(b"this is not json").await;
    env.publish_raw(br#"{"v":99,"id":"x"}"#).await;
    let dead = format!("{}.dead", env.queue);
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.queue_depth(&dead).await < 2 {
        assert!(Instant::now() < deadline, "poison not dead-lettered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signer = Signer2048::new();
    let id = gw
        .submit(&body_for(&signer, "after the poison", false))
        .await;
    let result = gw.result(&id, Duration::from_secs(20)).await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(env.queue_depth(&env.queue).await, 0, "poison was requeued");
    let metrics = env.worker_metrics(port).await;
    assert_eq!(
        counter(&metrics, "worker_dead_lettered_total"),
        2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn results_expire_after_the_retention_time() {
    let env = TestEnv::new();
    let _worker = env.worker("worker", &[]);
    let gw = env.gateway(&[("RESULT_RETENTION", "3s".into())]).await;
    let signer = Signer2048::new();
    let accepted_at = Instant::now();
    let id = gw.submit(&body_for(&signer, "short-lived", false)).await;
    let result = gw.result(&id, Duration::from_secs(20)).await;
    assert_eq!(result["status"], "completed");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, json) = gw.get(&format!("/api/signature/{id}")).await;
        if status == 404 {
            assert_eq!(json["error"]["code"], "not_found");
            break;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "result never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        accepted_at.elapsed() >= Duration::from_secs(3),
        "expired early: {:?}",
        accepted_at.elapsed()
    );
    // And the gateway lets go of it: the store's sweep drops it within a
    // few of its one-second ticks.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = gw.get_text("/metrics").await;
        if counter(&metrics, "gateway_store_entries") == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the expired result is still held: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sigterm_worker_finishes_what_it_holds() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    let signer = Signer2048::with_key("k4096");
    let (bodies, expected) = mixed_bodies(&signer, 200, Some("big"));
    let ids = submit_all(&gw, &bodies, 32).await;
    let slow = [
        ("VERIFY_BACKEND", "rust".to_owned()),
        ("VERIFY_THREADS", "1".to_owned()),
        ("PREFETCH", "200".to_owned()),
    ];
    let mut worker = env.worker("worker", &slow);
    gw.result(&ids[0], Duration::from_secs(30)).await;
    let logged = env.log("worker").len();
    worker.signal(Signal::SIGTERM);
    let status = worker
        .wait_exit(Duration::from_secs(30))
        .expect("worker did not stop");
    assert!(status.success(), "{status:?}: {}", env.log("worker"));
    env.assert_no_errors_since("worker", logged);
    // No other worker exists: everything it held was finished before it left.
    assert_all_complete(&gw, &ids, &expected).await;
    assert_eq!(env.queue_depth(&env.queue).await, 0);
}

#[tokio::test]
async fn sigterm_gateway_answers_long_polls_at_once() {
    let env = TestEnv::new();
    let mut gw = env.gateway(&[]).await;
    let signer = Signer2048::new();
    let id = gw.submit(&body_for(&signer, "no worker", false)).await;
    let poll = {
        let http = gw.http.clone();
        let url = format!("{}/api/signature/{id}?wait=30", gw.base);
        tokio::spawn(async move {
            let started = Instant::now();
            let r = http.get(url).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap(),
                started.elapsed(),
            )
        })
    };
    // Shut down only once the long-poll is being held.
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(&gw.get_text("/metrics").await.1, "gateway_long_polls") < 1.0 {
        assert!(Instant::now() < deadline, "the long-poll never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.proc.signal(Signal::SIGTERM);
    let (status, json, elapsed) = poll.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(json["status"], "pending");
    assert!(
        elapsed < Duration::from_secs(10),
        "held {elapsed:?} after SIGTERM"
    );
    let exit = gw
        .proc
        .wait_exit(Duration::from_secs(15))
        .expect("gateway did not stop");
    assert!(exit.success(), "{exit:?}");
}

/// Takes the next message of `queue` off the broker (acked: as a worker that
/// then lost its verdict would have), waiting up to `timeout` for one; its
/// body decoded, and whether it came compressed.
async fn take_message(env: &TestEnv, queue: &str, timeout: Duration) -> Option<(Vec<u8>, bool)> {
    let conn = env.connect().await;
    let channel = conn.create_channel().await.unwrap();
    let deadline = Instant::now() + timeout;
    let taken = loop {
        let got = channel
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        if let Some(message) = got {
            let encoding = message.delivery.properties.content_encoding().clone();
            let encoding = encoding.as_ref().map(|e| e.as_str());
            let body = verify_core::encoding::decode(encoding, &message.delivery.data)
                .unwrap()
                .into_owned();
            break Some((body, encoding == Some("zstd")));
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = conn.close(200, "done".into()).await;
    taken
}

#[tokio::test]
async fn a_request_whose_verdict_never_comes_is_published_again() {
    let env = TestEnv::new();
    let gw = env.gateway(&[("VERDICT_TIMEOUT", "2s".to_owned())]).await;
    let signer = Signer2048::new();
    let id = gw.submit(&body_for(&signer, "a verdict lost", false)).await;

    // A "worker" takes the request and never answers.
    let first = take_message(&env, &env.queue, Duration::from_secs(10))
        .await
        .expect("the request is queued");
    // Requests go compressed (COMPRESS_REQUESTS, on by default).
    let (first, compressed) = first;
    assert!(compressed, "the request went uncompressed");
    assert!(String::from_utf8_lossy(&first).contains(&id));
    // Not published again before VERDICT_TIMEOUT: the queue stays empty a while.
    assert_eq!(
        take_message(&env, &env.queue, Duration::from_secs(1)).await,
        None
    );

    let again = take_message(&env, &env.queue, Duration::from_secs(15))
        .await
        .expect("the gateway publishes the request again once VERDICT_TIMEOUT has passed");
    assert_eq!(again.0, first, "the same request, same id");
    let (_, metrics) = gw.get_text("/metrics").await;
    let confirmed = metrics
        .lines()
        .any(|l| l.starts_with("gateway_republished_total{confirmed=\"yes\"} "));
    assert!(confirmed, "{metrics}");

    // The third copy is answered by a real worker, and that is the end of it.
    let _worker = env.ready_worker("worker", &[]).await;
    let result = gw.result(&id, Duration::from_secs(30)).await;
    assert_eq!(
        (&result["status"], &result["valid"]),
        (&json!("completed"), &json!(true))
    );
    wait_for(
        "the guard lets the answered request go",
        Duration::from_secs(10),
        || async {
            let (_, metrics) = gw.get_text("/metrics").await;
            metrics.contains("\ngateway_unanswered 0\n")
        },
    )
    .await;
}

#[tokio::test]
async fn sigterm_gateway_publishes_the_accepted_events_it_holds() {
    let env = TestEnv::new();
    // Held far longer than the test takes to send SIGTERM.
    let mut gw = env.gateway(&[("ACCEPTED_HOLD", "2s".to_owned())]).await;
    let signer = Signer2048::new();
    let bodies: Vec<Value> = (0..20)
        .map(|n| body_for(&signer, &format!("held {n}"), false))
        .collect();
    let ids = submit_all(&gw, &bodies, 8).await;
    let logged = env.log(&gw.proc.name).len();
    gw.proc.signal(Signal::SIGTERM);
    let exit = gw
        .proc
        .wait_exit(Duration::from_secs(15))
        .expect("gateway did not stop");
    assert!(exit.success(), "{exit:?}");
    env.assert_no_errors_since(&gw.proc.name, logged);
    // Every id answered 202 is in the stream: other gateways learn of it.
    let in_stream = env.stream_events(&ids).await;
    for id in &ids {
        assert!(
            in_stream[id].iter().any(|e| e.contains("accepted")),
            "{id}: {:?}",
            in_stream[id]
        );
    }
}
