//! Who may do what: with `API_TOKENS_FILE`, every `/api/*` call needs a
//! known bearer token (401 otherwise); a request, its timeline and its
//! Idempotency-Key belong to the token that submitted it (another token
//! gets 404, exactly as for an unknown id); `RATE_LIMIT` answers 429 per
//! token; health stays open and `/metrics` wants `METRICS_TOKEN` when set.

use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};
use sha2::Digest as _;

const ALICE: &str = "alice-0123456789abcdef";
const BOB: &str = "bob-0123456789abcdef0";

/// A gateway and a worker; tokens for alice (in clear) and bob (digest).
async fn secured(env: &TestEnv, extra: &[(&str, String)]) -> Gateway {
    let bob_digest = hex::encode(sha2::Sha256::digest(BOB.as_bytes()));
    let file = env.dir.path().join("tokens");
    std::fs::write(
        &file,
        format!("# who may call\nalice:{ALICE}\nbob:sha256:{bob_digest}\n"),
    )
    .unwrap();
    let mut vars = vec![("API_TOKENS_FILE", file.display().to_string())];
    vars.extend(extra.iter().cloned());
    env.gateway(&vars).await
}

async fn call(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = format!("{}{path}", gw.base);
    let mut request = match method {
        "POST" => gw.http.post(url),
        _ => gw.http.get(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let json = response.json().await.unwrap_or(Value::Null);
    (status, headers, json)
}

/// `POST /api/signature` with `token`.
async fn post(
    gw: &Gateway,
    token: Option<&str>,
    body: &Value,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    call(gw, "POST", "/api/signature", token, Some(body), extra).await
}

#[tokio::test]
async fn tokens_are_required_and_each_sees_only_its_own_requests() {
    let env = TestEnv::new();
    let (_worker, _) = env.ready_worker("worker-auth", &[]).await;
    let gw = secured(&env, &[]).await;
    let signer = Signer2048::new();
    let body = body_for(&signer, "alice's document", false);

    // No token, a wrong one, another scheme: 401, a challenge, the JSON body.
    for token in [None, Some("not-a-known-token-at-all")] {
        let (status, headers, json) = post(&gw, token, &body, &[]).await;
        assert_eq!(status, 401, "{json}");
        assert_eq!(json["error"]["code"], "unauthorized", "{json}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{headers:?}"
        );
    }
    let (status, _, _) = call(
        &gw,
        "GET",
        "/api/stats",
        None,
        None,
        &[("authorization", &format!("Basic {ALICE}"))],
    )
    .await;
    assert_eq!(status, 401);

    // Alice submits and reads her request; Bob cannot tell it exists.
    let (status, _, json) = post(&gw, Some(ALICE), &body, &[]).await;
    assert_eq!(status, 202, "{json}");
    let id = json["id"].as_str().unwrap().to_owned();
    let path = format!("/api/signature/{id}?wait=10");
    let (status, _, mine) = call(&gw, "GET", &path, Some(ALICE), None, &[]).await;
    assert_eq!((status, &mine["valid"]), (200, &json!(true)), "{mine}");
    let unknown = format!("/api/signature/{}", uuid::Uuid::now_v7().hyphenated());
    let (_, _, not_found) = call(&gw, "GET", &unknown, Some(BOB), None, &[]).await;
    for path in [
        format!("/api/signature/{id}"),
        format!("/api/signature/{id}?wait=0.5"),
        format!("/api/signature/{id}/events"),
    ] {
        let (status, _, json) = call(&gw, "GET", &path, Some(BOB), None, &[]).await;
        assert_eq!(status, 404, "{path}: {json}");
        assert_eq!(json, not_found, "{path}: answered unlike an unknown id");
    }
    let (status, _, events) = call(
        &gw,
        "GET",
        &format!("/api/signature/{id}/events"),
        Some(ALICE),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{events}");

    // An Idempotency-Key is the token's own.
    let key = [("idempotency-key", "order-42")];
    let (_, _, first) = post(&gw, Some(ALICE), &body, &key).await;
    let (_, _, again) = post(&gw, Some(ALICE), &body, &key).await;
    assert_eq!(first["id"], again["id"]);
    let other = body_for(&signer, "bob's document", true);
    let (status, _, bobs) = post(&gw, Some(BOB), &other, &key).await;
    assert_eq!(status, 202, "Bob's key is not Alice's: {bobs}");
    assert_ne!(bobs["id"], first["id"]);
    let (status, _, reused) = post(&gw, Some(ALICE), &other, &key).await;
    assert_eq!(status, 422, "{reused}");

    // Recent failures: each token sees its own.
    let unknown_key = json!({"text": "x", "hexSignature": "abcd", "keyId": "nobody"});
    let (_, _, failing) = post(&gw, Some(BOB), &unknown_key, &[]).await;
    let failing = failing["id"].as_str().unwrap().to_owned();
    let (_, _, result) = call(
        &gw,
        "GET",
        &format!("/api/signature/{failing}?wait=10"),
        Some(BOB),
        None,
        &[],
    )
    .await;
    assert_eq!(result["status"], "failed", "{result}");
    let listed = |json: &Value| {
        json["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == failing.as_str())
    };
    wait_for("Bob sees his failure", Duration::from_secs(10), || async {
        listed(
            &call(&gw, "GET", "/api/failures", Some(BOB), None, &[])
                .await
                .2,
        )
    })
    .await;
    let (_, _, alices) = call(&gw, "GET", "/api/failures", Some(ALICE), None, &[]).await;
    assert!(!listed(&alices), "Alice sees Bob's failure: {alices}");

    // Health and readiness stay open; so do the metrics without METRICS_TOKEN.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let status = gw
            .http
            .get(format!("{}{path}", gw.base))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{path}");
    }
}

#[tokio::test]
async fn each_token_has_its_rate_and_metrics_can_want_a_token() {
    let env = TestEnv::new();
    let gw = secured(
        &env,
        &[
            ("RATE_LIMIT", "2".into()),
            ("RATE_BURST", "3".into()),
            ("METRICS_TOKEN", "metrics-0123456789abcdef".into()),
        ],
    )
    .await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..6 {
        let (status, headers, json) = call(&gw, "GET", "/api/stats", Some(ALICE), None, &[]).await;
        statuses.push(status);
        if status == 429 {
            limited = Some((headers, json));
        }
    }
    // A burst of 3, then refused (the six calls take far less than a second).
    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let (headers, json) = limited.unwrap();
    assert_eq!(json["error"]["code"], "rate_limited", "{json}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Bob's rate is his own.
    let (status, _, _) = call(&gw, "GET", "/api/stats", Some(BOB), None, &[]).await;
    assert_eq!(status, 200);

    let metrics = format!("{}/metrics", gw.base);
    let status = gw.http.get(&metrics).send().await.unwrap().status();
    assert_eq!(status, 401);
    let status = gw
        .http
        .get(&metrics)
        .bearer_auth("metrics-0123456789abcdef")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_bad_token_file_stops_the_start_naming_the_line() {
    let env = TestEnv::new();
    let file = env.dir.path().join("tokens");
    std::fs::write(&file, "alice:0123456789abcdef\nbob\n").unwrap();
    let mut gw = env.gateway_unready(&[("API_TOKENS_FILE", file.display().to_string())]);
    let exit = gw.proc.wait_exit(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| !s.success()), "{exit:?}");
    let log = env.log(&format!("gateway-{}", gw.base.rsplit(':').next().unwrap()));
    assert!(log.contains("token file line 2"), "{log}");
}

/// The demo token of scripts/api-tokens.sh (what scripts/up.sh and
/// compose.yaml run with): the gateway reading its `api-tokens` file takes
/// the token in `api-token` and refuses a call without it; the file holds
/// the token's digest only; a second run keeps the token.
#[tokio::test]
async fn the_demo_token_file_of_the_scripts_works_and_holds_no_secret() {
    let env = TestEnv::new();
    let secrets = env.dir.path().join("secrets");
    let vars = [("SECRETS_DIR", secrets.to_str().unwrap())];
    let printed = run_script("api-tokens.sh", &[], &vars);
    assert_eq!(printed, secrets.join("api-token").display().to_string());
    let token = std::fs::read_to_string(secrets.join("api-token")).unwrap();
    let token = token.trim();
    let tokens = std::fs::read_to_string(secrets.join("api-tokens")).unwrap();
    assert!(
        !tokens.contains(token),
        "the gateways' file holds the token in clear"
    );
    run_script("api-tokens.sh", &[], &vars);
    assert_eq!(
        std::fs::read_to_string(secrets.join("api-token"))
            .unwrap()
            .trim(),
        token,
        "a second run changed the demo token"
    );

    let _worker = env.worker("worker", &[]);
    let gw = env
        .gateway(&[(
            "API_TOKENS_FILE",
            secrets.join("api-tokens").display().to_string(),
        )])
        .await;
    let signer = Signer2048::new();
    let body = body_for(&signer, "with the demo token", false);
    let (status, _, json) = call(&gw, "POST", "/api/signature", None, Some(&body), &[]).await;
    assert_eq!(status, 401, "{json}");
    let (status, _, json) =
        call(&gw, "POST", "/api/signature", Some(token), Some(&body), &[]).await;
    assert_eq!(status, 202, "{json}");
}
