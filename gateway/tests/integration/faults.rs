//! The fault-injection suite: several gateways, restarts, a broker restart,
//! process kills, backpressure and idempotent submits, each counting
//! requests accepted against requests completed.

use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

/// Polls `gw` until `id` is known there (the stream carries it across).
async fn wait_known(gw: &Gateway, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, json) = gw.get(&format!("/api/signature/{id}")).await;
        if status == 200 {
            return json;
        }
        assert_eq!(status, 404, "{json}");
        assert!(Instant::now() < deadline, "{id} never reached {}", gw.base);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn any_gateway_answers_for_any_id_even_after_a_gateway_is_killed() {
    let env = TestEnv::new();
    let mut a = env.gateway(&[]).await;
    let b = env.gateway(&[]).await;
    let signer = Signer2048::new();

    // No worker yet: B sees A's request as pending, and A sees B's.
    let from_a = a.submit(&body_for(&signer, "accepted by A", false)).await;
    let from_b = b.submit(&body_for(&signer, "accepted by B", true)).await;
    assert_eq!(wait_known(&b, &from_a).await["status"], "pending");
    assert_eq!(wait_known(&a, &from_b).await["status"], "pending");

    // More accepted by A, then A dies before anything is verified.
    let bodies: Vec<Value> = (0..50)
        .map(|i| body_for(&signer, &format!("doc {i}"), i % 10 == 0))
        .collect();
    let ids = submit_all(&a, &bodies, 16).await;
    a.proc.signal(Signal::SIGKILL);
    a.proc
        .wait_exit(Duration::from_secs(5))
        .expect("A did not die");

    let _worker = env.worker("worker", &[]);
    assert_eq!(
        b.result(&from_a, Duration::from_secs(20)).await["valid"],
        true
    );
    assert_eq!(
        b.result(&from_b, Duration::from_secs(20)).await["valid"],
        false
    );
    let mut completed = 0;
    for (i, id) in ids.iter().enumerate() {
        let result = b.result(id, Duration::from_secs(20)).await;
        assert_eq!(result["valid"], i % 10 != 0, "{result}");
        completed += 1;
    }
    assert_eq!(
        completed,
        ids.len(),
        "accepted {} completed {completed}",
        ids.len()
    );
}

#[tokio::test]
async fn a_restarted_gateway_replays_what_it_missed() {
    let env = TestEnv::new();
    let a = env.gateway(&[]).await;
    let _worker = env.worker("worker", &[]);
    let signer = Signer2048::new();
    let bodies: Vec<Value> = (0..40)
        .map(|i| body_for(&signer, &format!("before {i}"), i % 4 == 0))
        .collect();
    let ids = submit_all(&a, &bodies, 16).await;
    for id in &ids {
        a.result(id, Duration::from_secs(20)).await;
    }

    // A gateway started now knows everything within the retention window,
    // accepted by another gateway and completed while it did not exist.
    let c = env.gateway(&[]).await;
    for (i, id) in ids.iter().enumerate() {
        let (status, _, json) = c.get(&format!("/api/signature/{id}")).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["status"], "completed");
        assert_eq!(json["valid"], i % 4 != 0);
    }
    let (_, metrics) = c.get_text("/metrics").await;
    assert!(
        counter(&metrics, "gateway_replay_seconds") > 0.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn broker_restart_503_then_recovery_and_nothing_lost() {
    let broker = PrivateBroker::start();
    let env = TestEnv::with_broker(broker.url());
    let (_worker, worker_port) = env.worker_with_http("worker");
    let gw = env.gateway(&[]).await;
    let signer = Signer2048::new();
    let before: Vec<Value> = (0..100)
        .map(|i| body_for(&signer, &format!("before {i}"), i % 10 == 0))
        .collect();
    let mut accepted = submit_all(&gw, &before, 16).await;
    for id in &accepted {
        gw.result(id, Duration::from_secs(30)).await;
    }

    broker.down();
    let readyz = format!("{}/readyz", gw.base);
    wait_status(&gw.http, &readyz, 503, Duration::from_secs(15)).await;
    // The worker cannot publish results either, and says so.
    let worker_readyz = format!("http://127.0.0.1:{worker_port}/readyz");
    wait_status(&gw.http, &worker_readyz, 503, Duration::from_secs(15)).await;
    let (status, headers, json) = gw.post_json(&body_for(&signer, "while down", false)).await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(json["error"]["code"], "broker_unavailable");
    assert_no_internals(&json);
    assert_eq!(gw.get("/healthz").await.0, 200, "the process must stay up");

    broker.up();
    let gateway_back = wait_status(&gw.http, &readyz, 200, Duration::from_secs(10)).await;
    let worker_back = wait_status(
        &gw.http,
        &format!("http://127.0.0.1:{worker_port}/readyz"),
        200,
        Duration::from_secs(10),
    )
    .await;
    eprintln!(
        "recovered after the broker's return: gateway {gateway_back:?}, worker {worker_back:?}"
    );
    // On reconnecting, the projection read the stream's tail again: the
    // verdicts it had are applied once more, as duplicates.
    wait_for(
        "the stream's tail read again",
        Duration::from_secs(10),
        || async {
            let (_, metrics) = gw.get_text("/metrics").await;
            counter(&metrics, "gateway_duplicate_results_total") >= 100.0
        },
    )
    .await;

    let after: Vec<Value> = (0..100)
        .map(|i| body_for(&signer, &format!("after {i}"), i % 10 == 0))
        .collect();
    accepted.extend(submit_all(&gw, &after, 16).await);
    let mut completed = 0;
    for (i, id) in accepted.iter().enumerate() {
        let result = gw.result(id, Duration::from_secs(30)).await;
        assert_eq!(result["status"], "completed", "{result}");
        assert_eq!(result["valid"], i % 10 != 0, "{result}");
        completed += 1;
    }
    assert_eq!(completed, 200, "accepted 200, completed {completed}");
}

#[tokio::test]
async fn a_full_queue_refuses_with_503_and_never_accepts_what_the_broker_refused() {
    let env = TestEnv::new();
    let gw = env.gateway(&[("MAX_QUEUE_LENGTH", "20".into())]).await;
    let signer = Signer2048::new();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..30 {
        let (status, headers, json) = gw
            .post_json(&body_for(&signer, &format!("doc {i}"), false))
            .await;
        match status {
            202 => accepted.push(json["id"].as_str().unwrap().to_owned()),
            503 => {
                assert_eq!(json["error"]["code"], "queue_full", "{json}");
                assert_eq!(headers["retry-after"], "1");
                refused += 1;
            }
            other => panic!("unexpected {other}: {json}"),
        }
    }
    // A quorum queue (the default) may take one message past its bound;
    // whatever it took was answered 202, whatever it refused 503.
    assert!(
        (20..=21).contains(&accepted.len()) && accepted.len() + refused == 30,
        "accepted {}, refused {refused}",
        accepted.len()
    );
    let (_, metrics) = gw.get_text("/metrics").await;
    assert_eq!(
        counter(&metrics, "gateway_refused_total"),
        refused as f64,
        "{metrics}"
    );
    assert_eq!(env.queue_depth(&env.queue).await, accepted.len() as u32);

    let _worker = env.worker("worker", &[]);
    for id in &accepted {
        assert_eq!(gw.result(id, Duration::from_secs(20)).await["valid"], true);
    }
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_id_on_any_gateway() {
    let env = TestEnv::new();
    let a = env.gateway(&[]).await;
    let b = env.gateway(&[]).await;
    let signer = Signer2048::new();
    let body = body_for(&signer, "submitted twice", false)
        .to_string()
        .into_bytes();
    let post = |gw: &Gateway, key: &'static str| {
        let body = body.clone();
        let gw_base = gw.base.clone();
        let http = gw.http.clone();
        async move {
            let r = http
                .post(format!("{gw_base}/api/signature"))
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let first = post(&a, "order-42").await;
    assert_eq!(post(&a, "order-42").await, first, "same gateway");
    wait_known(&b, &first).await;
    assert_eq!(post(&b, "order-42").await, first, "other gateway");
    let other = post(&a, "order-43").await;
    assert_ne!(other, first);

    // One request per key reached the queue.
    assert_eq!(env.queue_depth(&env.queue).await, 2);
    let (status, _, json) = a
        .post_raw(
            Some("application/json"),
            body.clone(),
            &[("idempotency-key", "")],
        )
        .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (400, Some("invalid_idempotency_key"))
    );
}

#[tokio::test]
async fn a_channel_the_broker_closes_is_reopened() {
    // A broker that takes messages of 64 KiB at most, and a gateway that
    // believes it takes more: the oversized request closes the publishing
    // channel (PRECONDITION_FAILED) while the connection lives on.
    let broker = PrivateBroker::start_with_conf("max_message_size = 65536");
    let env = TestEnv::with_broker(broker.url());
    let _worker = env.worker("worker", &[]);
    // Requests that carry their documents (an RSA request's digest is small).
    let documents = || ("SEND_DIGESTS", "false".to_string());
    let gw = env.gateway(&[documents()]).await;
    let signer = Signer2048::new();
    // Text that does not compress below the limit: requests go compressed.
    let big = {
        use base64::Engine as _;
        use rand::RngCore as _;
        let mut noise = vec![0u8; 100_000];
        rand::thread_rng().fill_bytes(&mut noise);
        base64::engine::general_purpose::STANDARD.encode(noise)
    };
    let (status, _, json) = gw.post_json(&body_for(&signer, &big, false)).await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["error"]["code"], "broker_unavailable", "{json}");

    // The gateway opens a new channel by itself and goes on accepting.
    let readyz = format!("{}/readyz", gw.base);
    wait_status(&gw.http, &readyz, 200, Duration::from_secs(10)).await;
    let id = gw.submit(&body_for(&signer, "small enough", false)).await;
    assert_eq!(gw.result(&id, Duration::from_secs(20)).await["valid"], true);
    let log = env.log(&gw.proc.name);
    assert!(log.contains("closed the publishing channel"), "{log}");

    // Told the broker's limit, it refuses such a document itself: 413.
    let careful = env
        .gateway(&[("MAX_MESSAGE_BYTES", "65536".into()), documents()])
        .await;
    let (status, _, json) = careful.post_json(&body_for(&signer, &big, false)).await;
    assert_eq!(status, 413, "{json}");
    assert_eq!(json["error"]["code"], "payload_too_large");
    assert_eq!(
        env.queue_depth(&env.queue).await,
        0,
        "nothing was published"
    );
}

#[tokio::test]
async fn a_broker_alarm_pauses_the_worker_instead_of_spinning() {
    let broker = PrivateBroker::start();
    let env = TestEnv::with_broker(broker.url());
    let gw = env.gateway(&[]).await;
    let signer = Signer2048::new();
    let bodies: Vec<Value> = (0..20)
        .map(|i| body_for(&signer, &format!("held {i}"), i % 5 == 0))
        .collect();
    let ids = submit_all(&gw, &bodies, 4).await;

    // A memory alarm: the broker blocks every publishing connection.
    broker.ctl(&["set_vm_memory_high_watermark", "0"]);
    let (_worker, port) = env.worker_with_http("worker");
    let worker_readyz = format!("http://127.0.0.1:{port}/readyz");
    wait_status(&env.http, &worker_readyz, 503, Duration::from_secs(20)).await;
    // Held for a while: nothing is given back or dead-lettered meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = env.worker_metrics(port).await;
    assert_eq!(counter(&metrics, "worker_requeued_total"), 0.0, "{metrics}");
    assert_eq!(
        counter(&metrics, "worker_dead_lettered_total"),
        0.0,
        "{metrics}"
    );

    broker.ctl(&["set_vm_memory_high_watermark", "0.4"]);
    wait_status(&env.http, &worker_readyz, 200, Duration::from_secs(20)).await;
    for (i, id) in ids.iter().enumerate() {
        let result = gw.result(id, Duration::from_secs(30)).await;
        assert_eq!(result["valid"], i % 5 != 0, "{result}");
    }
    let metrics = env.worker_metrics(port).await;
    assert_eq!(counter(&metrics, "worker_requeued_total"), 0.0, "{metrics}");
}

#[tokio::test]
async fn a_queue_of_the_other_type_is_refused_with_the_way_to_migrate() {
    let env = TestEnv::new();
    let classic = env.gateway(&[("QUEUE_TYPE", "classic".into())]).await;
    drop(classic);
    // QUEUE_TYPE defaults to quorum: the classic queue is not used as it is.
    let gw = env.gateway_unready(&[]);
    wait_for("the migration message", Duration::from_secs(20), || async {
        env.log(&gw.proc.name)
            .contains("RabbitMQ cannot change a queue's type")
    })
    .await;
    let log = env.log(&gw.proc.name);
    assert!(log.contains("QUEUE_TYPE=classic"), "{log}");
    assert_eq!(gw.get("/readyz").await.0, 503);
}
