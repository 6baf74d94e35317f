//! Every row of the HTTP contract, against a real gateway, worker and broker.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::*;
use base64::Engine as _;
use serde_json::{json, Value};

#[tokio::test]
async fn submit_and_read_results_for_every_document_source() {
    let env = TestEnv::new();
    let _worker = env.worker("worker", &[]);
    let gw = env.gateway(&[]).await;
    let signer = Signer2048::new();
    let document = "The quick brown fox\nassinatura digital";
    let signature = signer.sign_hex(document.as_bytes());
    std::fs::write(env.docs_dir().join("doc.txt"), document).unwrap();

    let bodies = [
        json!({ "text": document, "hexSignature": signature }),
        json!({ "textBase64": base64::engine::general_purpose::STANDARD.encode(document), "hexSignature": signature.to_uppercase() }),
        json!({ "textFile": "doc.txt", "hexSignature": signature, "algorithm": "sha256withrsa", "keyId": "default" }),
    ];
    for body in bodies {
        let (status, headers, json) = gw.post_json(&body).await;
        assert_eq!(status, 202, "{json}");
        let id = json["id"].as_str().unwrap().to_owned();
        assert_eq!(json["status"], "pending");
        assert_eq!(headers["location"], format!("/api/signature/{id}"));
        let result = gw.result(&id, Duration::from_secs(20)).await;
        assert_eq!(result["id"], id.as_str());
        assert_eq!(result["status"], "completed", "{result}");
        assert_eq!(result["valid"], true, "{body} -> {result}");
        assert_eq!(result["algorithm"], "SHA256withRSA");
        assert_eq!(result["keyId"], "default");
    }

    // Tampered document, wrong key: a verdict of false, not an error.
    let tampered = gw
        .submit(&json!({ "text": format!("{document}."), "hexSignature": signature }))
        .await;
    let wrong_key = gw
        .submit(&json!({ "text": document, "hexSignature": signature, "keyId": "other" }))
        .await;
    for id in [tampered, wrong_key] {
        let result = gw.result(&id, Duration::from_secs(20)).await;
        assert_eq!(result["status"], "completed");
        assert_eq!(result["valid"], false, "{result}");
    }

    // Decodable requests the worker cannot check: failed with a code.
    let unknown = gw
        .submit(&json!({ "text": document, "hexSignature": signature, "keyId": "nobody" }))
        .await;
    let legacy = gw
        .submit(&json!({ "text": document, "hexSignature": signature, "algorithm": "MD5withRSA" }))
        .await;
    for (id, code) in [(unknown, "unknown_key"), (legacy, "algorithm_disabled")] {
        let result = gw.result(&id, Duration::from_secs(20)).await;
        assert_eq!(result["status"], "failed", "{result}");
        assert_eq!(result["error"]["code"], code, "{result}");
        assert!(result["error"]["message"].as_str().unwrap().len() > 5);
    }

    // Metrics name what happened.
    let (status, metrics) = gw.get_text("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "gateway_http_requests_total",
        "gateway_accepted_total",
        "gateway_results_total",
        "gateway_end_to_end_seconds_bucket",
        "gateway_pending",
        r#"gateway_http_request_seconds_bucket{route="/api/signature",le="#,
        r#"broker_confirm_seconds_bucket{kind="verify-requests",le="#,
        r#"batch_size_count{kind="verify-requests"}"#,
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    assert!(
        metrics.contains(r#"route="/api/signature",status="202""#),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_input_gets_its_status_and_code() {
    let env = TestEnv::new();
    let gw = env.gateway(&[("BODY_LIMIT_BYTES", "4096".into())]).await;
    std::fs::create_dir(env.docs_dir().join("subdir")).unwrap();
    let outside = env.dir.path().join("secret.txt");
    std::fs::write(&outside, "secret").unwrap();
    std::os::unix::fs::symlink(&outside, env.docs_dir().join("escape.txt")).unwrap();

    // (what, Content-Type, body, status, error code)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no content type",
            None,
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "text/plain",
            Some("text/plain"),
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "not json",
            Some("application/json"),
            b"{nope".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "json array",
            Some("application/json"),
            b"[1]".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "no signature",
            Some("application/json"),
            br#"{"text":"x"}"#.to_vec(),
            400,
            "missing_field",
        ),
        (
            "no document",
            Some("application/json"),
            br#"{"hexSignature":"ab"}"#.to_vec(),
            400,
            "missing_field",
        ),
        (
            "two documents",
            Some("application/json"),
            br#"{"hexSignature":"ab","text":"x","textBase64":"eA=="}"#.to_vec(),
            400,
            "conflicting_fields",
        ),
        (
            "odd hex",
            Some("application/json"),
            br#"{"hexSignature":"abc","text":"x"}"#.to_vec(),
            400,
            "invalid_signature",
        ),
        (
            "non-hex",
            Some("application/json"),
            br#"{"hexSignature":"zz","text":"x"}"#.to_vec(),
            400,
            "invalid_signature",
        ),
        (
            "bad base64",
            Some("application/json"),
            br#"{"hexSignature":"ab","textBase64":"***"}"#.to_vec(),
            400,
            "invalid_base64",
        ),
        (
            "unknown algorithm",
            Some("application/json"),
            br#"{"hexSignature":"ab","text":"x","algorithm":"SHA256withDSA"}"#.to_vec(),
            400,
            "unknown_algorithm",
        ),
        (
            "absolute textFile",
            Some("application/json"),
            br#"{"hexSignature":"ab","textFile":"/etc/passwd"}"#.to_vec(),
            400,
            "invalid_text_file",
        ),
        (
            "escaping textFile",
            Some("application/json"),
            br#"{"hexSignature":"ab","textFile":"../secret.txt"}"#.to_vec(),
            400,
            "invalid_text_file",
        ),
        (
            "symlink out",
            Some("application/json"),
            br#"{"hexSignature":"ab","textFile":"escape.txt"}"#.to_vec(),
            400,
            "invalid_text_file",
        ),
        (
            "missing textFile",
            Some("application/json"),
            br#"{"hexSignature":"ab","textFile":"nope.txt"}"#.to_vec(),
            400,
            "invalid_text_file",
        ),
        (
            "directory textFile",
            Some("application/json"),
            br#"{"hexSignature":"ab","textFile":"subdir"}"#.to_vec(),
            400,
            "invalid_text_file",
        ),
        (
            "too large",
            Some("application/json"),
            format!(r#"{{"hexSignature":"ab","text":"{}"}}"#, "x".repeat(5000)).into_bytes(),
            413,
            "payload_too_large",
        ),
    ];
    for (what, content_type, body, status, code) in cases {
        let (got, _, json) = gw.post_raw(content_type, body, &[]).await;
        assert_eq!(got, status, "{what}: {json}");
        assert_eq!(json["error"]["code"], code, "{what}: {json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {json}"
        );
    }
    // charset is still JSON: this one passes the media-type check (and fails later, on content).
    let (got, _, json) = gw
        .post_raw(
            Some("application/json; charset=utf-8"),
            br#"{"text":"x"}"#.to_vec(),
            &[],
        )
        .await;
    assert_eq!(
        (got, json["error"]["code"].as_str()),
        (400, Some("missing_field"))
    );

    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    let simple = uuid::Uuid::new_v4().simple().to_string();
    for (path, status, code) in [
        (format!("/api/signature/{id}"), 404, "not_found"),
        (format!("/api/signature/{simple}"), 400, "invalid_id"),
        ("/api/signature/not-an-id".to_owned(), 400, "invalid_id"),
        (format!("/api/signature/{id}?wait=31"), 400, "invalid_wait"),
        (
            format!("/api/signature/{id}?wait=soon"),
            400,
            "invalid_wait",
        ),
    ] {
        let (got, _, json) = gw.get(&path).await;
        assert_eq!(got, status, "{path}: {json}");
        assert_eq!(json["error"]["code"], code, "{path}: {json}");
    }
    // Nothing malformed was accepted.
    let (_, metrics) = gw.get_text("/metrics").await;
    assert!(!metrics.contains("gateway_accepted_total"), "{metrics}");
}

#[tokio::test]
async fn text_file_is_refused_without_docs_dir() {
    let env = TestEnv::new();
    let gw = env.gateway(&[("DOCS_DIR", String::new())]).await;
    std::fs::write(env.docs_dir().join("doc.txt"), "x").unwrap();
    let (status, _, json) = gw
        .post_json(&json!({"hexSignature": "ab", "textFile": "doc.txt"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(json["error"]["code"], "invalid_text_file");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("DOCS_DIR"),
        "{json}"
    );
}

#[tokio::test]
async fn pending_then_long_poll_wakes_on_the_result() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    let signer = Signer2048::new();
    // No worker yet: the request stays pending.
    let id = gw.submit(&body_for(&signer, "wait for me", false)).await;
    let (status, _, json) = gw.get(&format!("/api/signature/{id}")).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("pending")),
        "{json}"
    );
    // A long-poll with nothing to wake it is held for the whole wait.
    let started = Instant::now();
    let (_, _, json) = gw.get(&format!("/api/signature/{id}?wait=1.5")).await;
    assert_eq!(json["status"], "pending");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    // A long-poll registered before the worker exists wakes when it answers.
    let poll = {
        let http = gw.http.clone();
        let url = format!("{}/api/signature/{id}?wait=30", gw.base);
        tokio::spawn(async move {
            let started = Instant::now();
            let json: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
            (json, started.elapsed())
        })
    };
    let _worker = env.worker("worker", &[]);
    let (json, elapsed) = poll.await.unwrap();
    assert_eq!(json["status"], "completed", "{json}");
    assert_eq!(json["valid"], true);
    assert!(
        elapsed < Duration::from_secs(25),
        "long-poll answered after {elapsed:?}"
    );
}

#[tokio::test]
async fn health_readiness_and_broker_down_503() {
    let env = TestEnv::new();
    // A port with no broker behind it.
    let dead = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let gw = env.gateway_unready(&[("AMQP_URL", dead)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, _) = loop {
        if let Ok(r) = gw.http.get(format!("{}/healthz", gw.base)).send().await {
            break (r.status().as_u16(), r.text().await.unwrap());
        }
        assert!(Instant::now() < deadline, "gateway never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 200);
    let (status, _, _) = gw.get("/readyz").await;
    assert_eq!(status, 503);
    let signer = Signer2048::new();
    let (status, headers, json) = gw.post_json(&body_for(&signer, "nobody home", false)).await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["error"]["code"], "broker_unavailable");
    assert_no_internals(&json);
    assert_eq!(headers["retry-after"], "1");
    let (_, metrics) = gw.get_text("/metrics").await;
    assert!(metrics.contains("gateway_refused_total"), "{metrics}");
}

#[tokio::test]
async fn worker_serves_health_and_metrics_when_asked() {
    let env = TestEnv::new();
    let (_worker, port) = env.worker_with_http("worker");
    let gw = env.gateway(&[]).await;
    let signer = Signer2048::new();
    let id = gw.submit(&body_for(&signer, "count me", false)).await;
    gw.result(&id, Duration::from_secs(20)).await;
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = gw
            .http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if ready.as_ref().ok() == Some(&200) {
            break;
        }
        assert!(Instant::now() < deadline, "worker never ready: {ready:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = env.fetch_text(&format!("{base}/metrics")).await;
    assert!(
        metrics
            .contains(r#"worker_verifications_total{outcome="valid",algorithm="SHA256withRSA"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("worker_verify_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"broker_confirm_seconds_bucket{kind="events",le="#),
        "{metrics}"
    );
}

/// REQUEST_TIMEOUT is a backstop on every call: a long-poll longer than it
/// (no worker here, so the id stays pending) is answered 503 `timeout`
/// with `Retry-After` once it has passed, and the gateway goes on serving.
#[tokio::test]
async fn a_call_longer_than_request_timeout_is_answered_503_timeout() {
    let env = TestEnv::new();
    let gw = env.gateway(&[("REQUEST_TIMEOUT", "1s".to_owned())]).await;
    let signer = Signer2048::new();
    let id = gw
        .submit(&body_for(&signer, "nobody verifies this", false))
        .await;
    let asked = Instant::now();
    let (status, headers, json) = gw.get(&format!("/api/signature/{id}?wait=10")).await;
    let took = asked.elapsed();
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["error"]["code"], "timeout", "{json}");
    assert_eq!(headers["retry-after"], "1");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "answered after {took:?} (REQUEST_TIMEOUT 1 s, wait 10 s)"
    );
    let (status, _, json) = gw.get(&format!("/api/signature/{id}")).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["status"], "pending", "{json}");
}

/// Documents on both sides of the worker's inline limit (16 KiB: smaller
/// ones are verified on the runtime's thread, larger ones on the blocking
/// pool) get the same verdicts: valid as signed, invalid when tampered.
/// RSA and ECDSA requests travel as their document's digest: the document
/// itself never reaches the broker, nor so a worker. `SEND_DIGESTS=false`
/// sends it (for older workers); both forms get their verdicts.
#[tokio::test]
async fn requests_carry_the_documents_digest_and_not_the_document() {
    let env = TestEnv::new();
    let signer = Signer2048::new();
    let document = "a contract whose text must stay with the gateway";
    let digesting = env.gateway(&[]).await;
    let plain = env.gateway(&[("SEND_DIGESTS", "false".into())]).await;
    let digested_id = digesting.submit(&body_for(&signer, document, false)).await;
    let plain_id = plain.submit(&body_for(&signer, document, false)).await;

    // No worker yet: both requests wait in the queue, readable there.
    let mut items = HashMap::new();
    for (_, body) in env.queued(&env.queue).await {
        let text = String::from_utf8(body).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        for item in value.as_array().cloned().unwrap_or_else(|| vec![value]) {
            items.insert(
                item["id"].as_str().unwrap().to_owned(),
                (item, text.clone()),
            );
        }
    }
    let (digested, raw) = &items[&digested_id];
    let sha256 = verify_core::Digest::Sha256.hash(document.as_bytes());
    assert_eq!(digested["digest"], hex::encode(sha256), "{digested}");
    assert!(digested.get("documentText").is_none(), "{digested}");
    assert!(digested.get("document").is_none(), "{digested}");
    assert!(!raw.contains("contract"), "{raw}");
    let (plain_item, _) = &items[&plain_id];
    assert_eq!(plain_item["documentText"], document, "{plain_item}");
    assert!(plain_item.get("digest").is_none(), "{plain_item}");

    let _worker = env.worker("worker", &[]);
    for (gw, id) in [(&digesting, &digested_id), (&plain, &plain_id)] {
        let result = gw.result(id, Duration::from_secs(20)).await;
        assert_eq!(result["status"], "completed", "{result}");
        assert_eq!(result["valid"], true, "{result}");
    }
    // A tampered document's digest is another digest: invalid.
    let tampered = digesting.submit(&body_for(&signer, document, true)).await;
    let result = digesting.result(&tampered, Duration::from_secs(20)).await;
    assert_eq!(result["valid"], false, "{result}");
}

#[tokio::test]
async fn small_and_large_documents_get_their_verdicts() {
    let env = TestEnv::new();
    let _worker = env.worker("worker", &[]);
    let gw = env.gateway(&[]).await;
    let signer = Signer2048::new();
    let mut ids = Vec::new();
    for size in [100, 16 * 1024, 16 * 1024 + 1, 300_000] {
        let document: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        for tampered in [false, true] {
            let id = gw.submit(&body_for(&signer, &document, tampered)).await;
            ids.push((size, tampered, id));
        }
    }
    for (size, tampered, id) in ids {
        let result = gw.result(&id, Duration::from_secs(30)).await;
        assert_eq!(result["status"], "completed", "{size} bytes: {result}");
        assert_eq!(
            result["valid"], !tampered,
            "{size} bytes, tampered {tampered}: {result}"
        );
    }
}
