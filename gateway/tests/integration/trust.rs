//! Verdicts that can be trusted, and requests that always end in one:
//! forged verdicts, refused POSTs retried, batches with an unreadable item,
//! events this build cannot read, idempotency under concurrency, waiting
//! for ids another gateway accepted, the delivery limit and request expiry.
//! Real broker, real binaries.

use std::time::{Duration, Instant};

use crate::common::*;
use lapin::types::AMQPValue;
use lapin::types::ShortString;
use lapin::BasicProperties;
use serde_json::{json, Value};

/// A `completed` event as a worker writes it (camelCase JSON).
fn completed_event(id: &str, valid: bool, source: &str) -> Value {
    json!({
        "v": 1, "id": id, "atMs": now_ms(), "source": source,
        "kind": {"completed": {
            "valid": valid, "algorithm": "SHA256withRSA", "keyId": "default",
            "verifyMicros": 1, "submittedAtMs": now_ms()
        }}
    })
}

fn event_properties(user_id: Option<&str>) -> BasicProperties {
    let properties = BasicProperties::default().with_delivery_mode(2);
    match user_id {
        Some(user) => properties.with_user_id(ShortString::from(user)),
        None => properties,
    }
}

async fn metric(gw: &Gateway, name: &str) -> f64 {
    counter(&gw.get_text("/metrics").await.1, name)
}

/// Waits (up to 20 s each) for these requests' verdicts and checks them.
async fn assert_verdicts(gw: &Gateway, expected: &[(&str, bool)]) {
    for (id, valid) in expected {
        let result = gw.result(id, Duration::from_secs(20)).await;
        assert_eq!(result["valid"], *valid, "{result}");
    }
}

#[tokio::test]
async fn a_verdict_forged_with_the_gateways_credentials_is_ignored() {
    let worker_user = BrokerUser::create("worker");
    let env = TestEnv::new();
    let trusted = [("RESULT_PUBLISHERS", worker_user.name.clone())];
    let gw = env.gateway(&trusted).await;
    let signer = Signer2048::new();
    // No worker yet: both stay pending.
    let genuine = gw.submit(&body_for(&signer, "genuine", false)).await;
    let tampered = gw.submit(&body_for(&signer, "tampered", true)).await;
    let events = format!("{}.events", env.queue);

    // The gateway's own credentials (guest) write "valid" for the tampered
    // request: once stamped with guest's user_id, once with none.
    let forged = serde_json::to_vec(&completed_event(&tampered, true, "worker@forged:1")).unwrap();
    publish_to(AMQP_URL, &events, &forged, event_properties(Some("guest")))
        .await
        .unwrap();
    publish_to(AMQP_URL, &events, &forged, event_properties(None))
        .await
        .unwrap();
    // Claiming to be the worker user is refused by the broker itself.
    let impersonated = publish_to(
        AMQP_URL,
        &events,
        &forged,
        event_properties(Some(&worker_user.name)),
    )
    .await;
    assert!(
        impersonated.is_err(),
        "the broker let guest claim another user_id"
    );

    wait_for(
        "two forged verdicts rejected",
        Duration::from_secs(20),
        || async { metric(&gw, "gateway_events_rejected_total").await >= 2.0 },
    )
    .await;
    let (_, _, json) = gw.get(&format!("/api/signature/{tampered}")).await;
    assert_eq!(
        json["status"], "pending",
        "a forged verdict was believed: {json}"
    );

    // The gateway's credentials can also slip a request of their own into
    // the queue under the victim's id (a document and signature that do
    // verify): the worker's verdict on it names another request, and no
    // gateway takes it for the victim's.
    let smuggled = wire_request(
        &tampered,
        "smuggled",
        &signer.sign_hex(b"smuggled"),
        now_ms(),
    );
    publish_to(
        AMQP_URL,
        &env.queue,
        &serde_json::to_vec(&smuggled).unwrap(),
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .unwrap();

    // The real worker, logged in as the trusted user, decides.
    let _worker = env.worker("worker", &[("AMQP_URL", worker_user.url())]);
    let result = gw.result(&tampered, Duration::from_secs(20)).await;
    assert_eq!(result["valid"], false, "{result}");
    wait_for(
        "the smuggled verdict rejected",
        Duration::from_secs(20),
        || async {
            let (_, metrics) = gw.get_text("/metrics").await;
            metrics.lines().any(|l| {
                l.starts_with("gateway_events_rejected_total{reason=\"fingerprint_mismatch\"} 1")
            })
        },
    )
    .await;
    assert_eq!(
        gw.result(&tampered, Duration::from_secs(5)).await["valid"],
        false
    );
    assert_eq!(
        gw.result(&genuine, Duration::from_secs(20)).await["valid"],
        true
    );
    assert_eq!(metric(&gw, "gateway_events_rejected_total").await, 3.0);
    // The two forged ones under their own reason (README: "counted in
    // gateway_events_rejected_total{reason="untrusted_publisher"}").
    let (_, metrics) = gw.get_text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "gateway_events_rejected_total{reason=\"untrusted_publisher\"} 2"),
        "{metrics}"
    );

    // A gateway started later replays the stream and ignores them too.
    let late = env.gateway(&trusted).await;
    let (_, _, json) = late.get(&format!("/api/signature/{tampered}")).await;
    assert_eq!(json["valid"], false, "{json}");
    assert_eq!(metric(&late, "gateway_events_rejected_total").await, 3.0);
}

#[tokio::test]
async fn events_this_build_cannot_read_are_skipped_alone() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    let id = uuid::Uuid::now_v7().to_string();
    let other = uuid::Uuid::now_v7().to_string();
    let mut newer = completed_event(&other, true, "worker@future:1");
    newer["v"] = json!(2);
    let mut with_extra = completed_event(&id, true, "worker@test:1");
    with_extra["addedInAFutureRelease"] = json!({"anything": [1, 2]});
    // One stream message: an unknown kind, a newer version, a good verdict.
    let batch = json!([
        {"v": 1, "id": other, "atMs": now_ms(), "source": "x", "kind": {"rerouted": {"to": "y"}}},
        newer,
        with_extra,
    ]);
    let events = format!("{}.events", env.queue);
    publish_to(
        AMQP_URL,
        &events,
        &serde_json::to_vec(&batch).unwrap(),
        event_properties(Some("guest")),
    )
    .await
    .unwrap();
    let result = gw.result(&id, Duration::from_secs(20)).await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(gw.get(&format!("/api/signature/{other}")).await.0, 404);
    let (_, metrics) = gw.get_text("/metrics").await;
    assert_eq!(
        counter(&metrics, "gateway_events_rejected_total"),
        2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn compressed_events_are_read_and_undecodable_ones_rejected() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    let ids: Vec<String> = (0..4).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let batch = Value::Array(
        ids.iter()
            .enumerate()
            .map(|(i, id)| completed_event(id, i % 2 == 0, "worker@test:1"))
            .collect(),
    );
    let body = verify_core::encoding::compress(&serde_json::to_vec(&batch).unwrap())
        .expect("a batch of four verdicts compresses");
    let events = format!("{}.events", env.queue);
    let zstd = || event_properties(Some("guest")).with_content_encoding(ShortString::from("zstd"));
    publish_to(AMQP_URL, &events, &body, zstd()).await.unwrap();
    // Not zstd at all, though it says so: dropped whole, counted.
    publish_to(AMQP_URL, &events, b"[{\"v\": 1}]", zstd())
        .await
        .unwrap();
    for (i, id) in ids.iter().enumerate() {
        let result = gw.result(id, Duration::from_secs(20)).await;
        assert_eq!(result["valid"], i % 2 == 0, "{result}");
    }
    wait_for(
        "the undecodable message counted",
        Duration::from_secs(10),
        || async {
            gw.get_text("/metrics")
                .await
                .1
                .lines()
                .any(|l| l.starts_with("gateway_events_rejected_total{reason=\"malformed\"} 1"))
        },
    )
    .await;
}

#[tokio::test]
async fn a_refused_post_leaves_no_trace_a_retry_could_find() {
    let env = TestEnv::new();
    let limit = [("MAX_QUEUE_LENGTH", "2".to_owned())];
    let a = env.gateway(&limit).await;
    let b = env.gateway(&limit).await;
    let signer = Signer2048::new();
    // Fill the queue (a quorum queue may take one message past its bound).
    let mut accepted = Vec::new();
    for i in 0..4 {
        let (status, _, json) = a
            .post_json(&body_for(&signer, &format!("fills {i}"), false))
            .await;
        match status {
            202 => accepted.push(json["id"].as_str().unwrap().to_owned()),
            503 => break,
            other => panic!("{other}: {json}"),
        }
    }
    assert!((2..=3).contains(&accepted.len()), "{accepted:?}");
    let body = body_for(&signer, "retried", false).to_string().into_bytes();
    async fn post(
        gw: &Gateway,
        body: &[u8],
    ) -> (u16, std::collections::HashMap<String, String>, Value) {
        gw.post_raw(
            Some("application/json"),
            body.to_vec(),
            &[("idempotency-key", "order-7")],
        )
        .await
    }
    let (status, headers, json) = post(&a, &body).await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (503, Some("queue_full"))
    );
    assert_eq!(headers["retry-after"], "1");
    // Retried while the queue is still full, on either gateway: 503 again,
    // never a 202 for an id that was never queued.
    for gw in [&a, &b, &a] {
        let (status, _, json) = post(gw, &body).await;
        assert_eq!(status, 503, "{json}");
    }
    assert_eq!(
        metric(&a, "gateway_accepted_total").await,
        accepted.len() as f64
    );

    // Room again: the retry is accepted afresh, and it completes.
    let _worker = env.worker("worker", &[]);
    for id in &accepted {
        a.result(id, Duration::from_secs(20)).await;
    }
    let (status, _, json) = post(&a, &body).await;
    assert_eq!(status, 202, "{json}");
    let id = json["id"].as_str().unwrap().to_owned();
    assert_eq!(a.result(&id, Duration::from_secs(20)).await["valid"], true);
    assert_eq!(
        metric(&a, "gateway_accepted_total").await,
        accepted.len() as f64 + 1.0
    );
}

#[tokio::test]
async fn concurrent_posts_with_one_key_give_one_id_and_another_body_gets_422() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    let signer = Signer2048::new();
    let body = body_for(&signer, "once", false).to_string().into_bytes();
    let posts = (0..20).map(|_| {
        gw.post_raw(
            Some("application/json"),
            body.clone(),
            &[("idempotency-key", "same-key")],
        )
    });
    let answers = futures_util::future::join_all(posts).await;
    let mut ids: Vec<&str> = answers
        .iter()
        .map(|(status, _, json)| {
            assert_eq!(*status, 202, "{json}");
            json["id"].as_str().unwrap()
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one key, several ids: {ids:?}");
    assert_eq!(env.queue_depth(&env.queue).await, 1, "one request queued");

    let other = body_for(&signer, "another document", false)
        .to_string()
        .into_bytes();
    let (status, _, json) = gw
        .post_raw(
            Some("application/json"),
            other,
            &[("idempotency-key", "same-key")],
        )
        .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{json}"
    );
    assert_eq!(env.queue_depth(&env.queue).await, 1);
}

#[tokio::test]
async fn a_long_poll_waits_for_an_id_this_gateway_has_not_seen_yet() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    // A request this gateway has never heard of (as if another gateway had
    // just accepted it and its `accepted` event were still on the way).
    let signer = Signer2048::new();
    let id = uuid::Uuid::now_v7().to_string();
    let request = wire_request(&id, "elsewhere", &signer.sign_hex(b"elsewhere"), now_ms());
    env.publish_raw(&serde_json::to_vec(&request).unwrap())
        .await;
    let path = format!("/api/signature/{id}?wait=20");
    let poll = gw.get(&path);
    let worker = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        env.worker("worker", &[])
    };
    let ((status, _, json), _worker) = tokio::join!(poll, worker);
    assert_eq!(
        (status, json["valid"].as_bool()),
        (200, Some(true)),
        "{json}"
    );

    // An id nobody accepted: 404, but only once the wait is over.
    let started = Instant::now();
    let unknown = uuid::Uuid::now_v7();
    let (status, _, _) = gw.get(&format!("/api/signature/{unknown}?wait=1")).await;
    assert_eq!(status, 404);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn one_unreadable_item_is_dead_lettered_alone_and_answered_failed() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    let signer = Signer2048::new();
    let [good, tampered, unreadable] = [0; 3].map(|_| uuid::Uuid::now_v7().to_string());
    let batch = json!([
        wire_request(&good, "good", &signer.sign_hex(b"good"), now_ms()),
        {"v": 1, "id": unreadable, "signature": "not hex", "documentText": "x"},
        42,
        wire_request(&tampered, "tampered!", &signer.sign_hex(b"tampered"), now_ms()),
    ]);
    env.publish_raw(&serde_json::to_vec(&batch).unwrap()).await;
    let (_worker, port) = env.worker_with_http("worker");

    assert_verdicts(&gw, &[(&good, true), (&tampered, false)]).await;
    let failed = gw.result(&unreadable, Duration::from_secs(20)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "unreadable_request", "{failed}");
    // Its timeline says it was dead-lettered, and why.
    wait_for(
        "the dead_lettered step",
        Duration::from_secs(20),
        || async {
            let (_, _, timeline) = gw.get(&format!("/api/signature/{unreadable}/events")).await;
            timeline["events"].as_array().is_some_and(|steps| {
                steps
                    .iter()
                    .any(|s| s["type"] == "dead_lettered" && s["reason"] == "unreadable_request")
            })
        },
    )
    .await;

    // Each unreadable item is its own dead letter, unchanged, with its reason.
    let dead = format!("{}.dead", env.queue);
    let letters = env.wait_dead_letters(2).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    let bodies: Vec<Value> = letters
        .iter()
        .map(|(headers, body)| {
            assert_eq!(
                header_text(headers, "x-dead-reason").as_deref(),
                Some("unreadable_request")
            );
            assert_eq!(
                header_text(headers, "x-original-queue"),
                Some(env.queue.clone())
            );
            serde_json::from_slice(body).unwrap()
        })
        .collect();
    assert!(bodies.contains(&json!(42)), "{bodies:?}");
    assert!(
        bodies.iter().any(|b| b["id"] == unreadable.as_str()),
        "{bodies:?}"
    );
    // Nothing consumes them away.
    assert_eq!(env.queue_depth(&dead).await, 2);
    assert_eq!(env.queue_depth(&env.queue).await, 0);
    let metrics = env.worker_metrics(port).await;
    assert_eq!(
        counter(&metrics, "worker_dead_lettered_total"),
        2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn compressed_requests_are_verified_and_undecodable_ones_dead_lettered_as_they_came() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    let signer = Signer2048::new();
    let zstd = |body: &[u8]| {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_encoding(ShortString::from("zstd"));
        let url = env.amqp_url.clone();
        let queue = env.queue.clone();
        let body = body.to_vec();
        async move { publish_to(&url, &queue, &body, properties).await.unwrap() }
    };
    // Poison first: bytes that are not zstd, and a few kilobytes that would
    // decode to 2 MiB (past what a worker decodes).
    let corrupt = b"these bytes are not zstd".to_vec();
    let bomb = zstd::bulk::compress(&vec![b' '; 2 << 20], 19).unwrap();
    zstd(&corrupt).await;
    zstd(&bomb).await;
    // Then a compressed batch, as a gateway sends it.
    let [good, tampered] = [0; 2].map(|_| uuid::Uuid::now_v7().to_string());
    let batch = json!([
        wire_request(&good, "good", &signer.sign_hex(b"good"), now_ms()),
        wire_request(
            &tampered,
            "tampered!",
            &signer.sign_hex(b"tampered"),
            now_ms()
        ),
    ]);
    let compressed = verify_core::encoding::compress(&serde_json::to_vec(&batch).unwrap()).unwrap();
    zstd(&compressed).await;
    let _worker = env.worker("worker", &[]);

    assert_verdicts(&gw, &[(&good, true), (&tampered, false)]).await;
    // The two undecodable messages are dead-lettered unchanged, with why.
    let letters = env.wait_dead_letters(2).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    let mut details: Vec<String> = letters
        .iter()
        .map(|(headers, body)| {
            assert_eq!(
                header_text(headers, "x-dead-reason").as_deref(),
                Some("unreadable_request")
            );
            assert!(body == &corrupt || body == &bomb, "{body:?}");
            header_text(headers, "x-dead-detail").unwrap_or_default()
        })
        .collect();
    details.sort();
    assert!(details[0].starts_with("corrupt zstd body"), "{details:?}");
    assert!(details[1].contains("decodes to more than"), "{details:?}");
    assert_eq!(env.queue_depth(&env.queue).await, 0);
}

#[tokio::test]
async fn the_last_delivery_answers_failed_and_dead_letters() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    let signer = Signer2048::new();
    let id = uuid::Uuid::now_v7().to_string();
    let request = wire_request(
        &id,
        "crashes workers",
        &signer.sign_hex(b"crashes workers"),
        now_ms(),
    );
    // Delivered three times before (DELIVERY_LIMIT=3): this is the last.
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers(&[("x-requeue-count", AMQPValue::LongUInt(3))]));
    publish_to(
        AMQP_URL,
        &env.queue,
        &serde_json::to_vec(&request).unwrap(),
        properties,
    )
    .await
    .unwrap();
    let _worker = env.worker("worker", &[("DELIVERY_LIMIT", "3".into())]);
    let result = gw.result(&id, Duration::from_secs(20)).await;
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["error"]["code"], "delivery_limit", "{result}");
    let letters = env.wait_dead_letters(1).await;
    assert_eq!(
        header_text(&letters[0].0, "x-dead-reason").as_deref(),
        Some("delivery_limit")
    );
}

#[tokio::test]
async fn a_request_whose_verdict_cannot_be_published_comes_back_a_bounded_number_of_times() {
    let env = TestEnv::new();
    let (_worker, port) = env
        .ready_worker("worker", &[("DELIVERY_LIMIT", "2".to_owned())])
        .await;
    // Take the events stream away: no verdict can be published (mandatory
    // publishes to a missing queue come back unroutable).
    env.delete_queue(&format!("{}.events", env.queue)).await;
    let signer = Signer2048::new();
    let id = uuid::Uuid::now_v7().to_string();
    let request = wire_request(
        &id,
        "unanswerable",
        &signer.sign_hex(b"unanswerable"),
        now_ms(),
    );
    env.publish_raw(&serde_json::to_vec(&request).unwrap())
        .await;

    let dead = format!("{}.dead", env.queue);
    wait_for(
        "the request dead-lettered",
        Duration::from_secs(60),
        || async { env.queue_depth(&dead).await >= 1 },
    )
    .await;
    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), 1);
    let (headers, body) = &letters[0];
    assert_eq!(
        header_text(headers, "x-dead-reason").as_deref(),
        Some("delivery_limit")
    );
    assert_eq!(
        headers.inner().get("x-requeue-count"),
        Some(&AMQPValue::LongUInt(2))
    );
    assert!(String::from_utf8_lossy(body).contains(&id));
    let metrics = env.worker_metrics(port).await;
    assert_eq!(counter(&metrics, "worker_requeued_total"), 2.0, "{metrics}");
    assert_eq!(env.queue_depth(&env.queue).await, 0, "still cycling");
}

#[tokio::test]
async fn requests_do_not_outlive_their_ids() {
    let env = TestEnv::new();
    // The gateway creates the queue with a 2 s retention (x-message-ttl).
    let gw = env.gateway(&[("RESULT_RETENTION", "2s".into())]).await;
    let signer = Signer2048::new();
    let id = gw.submit(&body_for(&signer, "never verified", false)).await;
    let dead = format!("{}.dead", env.queue);
    wait_for("the request expired", Duration::from_secs(20), || async {
        env.queue_depth(&dead).await >= 1
    })
    .await;
    assert_eq!(env.queue_depth(&env.queue).await, 0);
    let letters = env.dead_letters().await;
    assert_eq!(
        header_text(&letters[0].0, "x-first-death-reason").as_deref(),
        Some("expired")
    );
    assert!(String::from_utf8_lossy(&letters[0].1).contains(&id));

    // A request older than the retention that still reaches a worker (its
    // queue made without a TTL, say) is dead-lettered, not verified.
    let (_worker, port) = env
        .ready_worker("worker", &[("RESULT_RETENTION", "2s".to_owned())])
        .await;
    let old = uuid::Uuid::now_v7().to_string();
    let request = wire_request(&old, "old", &signer.sign_hex(b"old"), now_ms() - 60_000);
    env.publish_raw(&serde_json::to_vec(&request).unwrap())
        .await;
    wait_for(
        "the old request dead-lettered",
        Duration::from_secs(20),
        || async { env.queue_depth(&dead).await >= 2 },
    )
    .await;
    let letters = env.dead_letters().await;
    assert!(letters.iter().any(|(h, body)| {
        header_text(h, "x-dead-reason").as_deref() == Some("expired")
            && String::from_utf8_lossy(body).contains(&old)
    }));
    let metrics = env.worker_metrics(port).await;
    assert_eq!(
        counter(&metrics, "worker_verifications_total"),
        0.0,
        "{metrics}"
    );
}
