//! The gateway serving HTTPS itself (TLS_CERT_FILE / TLS_KEY_FILE): a
//! client that trusts the certificate's CA submits a request and reads its
//! verdict over TLS; a plain-HTTP request to the same port gets no HTTP
//! answer; a certificate without its key stops the start, naming both
//! variables.

use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test]
async fn requests_and_verdicts_over_https() {
    let env = TestEnv::new();
    let ca = TestCa::new("gateway test CA");
    let server = ca.issue("gateway", &["gateway.test", "127.0.0.1"]);
    let cert = env.dir.path().join("gateway.pem");
    let key = env.dir.path().join("gateway.key");
    std::fs::write(&cert, &server.cert_pem).unwrap();
    std::fs::write(&key, &server.key_pem).unwrap();
    let _worker = env.worker("worker", &[]);
    let gw = env.gateway_unready(&[
        ("TLS_CERT_FILE", cert.display().to_string()),
        ("TLS_KEY_FILE", key.display().to_string()),
    ]);
    let port: u16 = gw.base.rsplit(':').next().unwrap().parse().unwrap();
    let https = |method: &'static str, path: String, body: Option<serde_json::Value>| {
        let ca = ca.cert_pem.clone();
        async move { https_request(port, "gateway.test", &ca, method, &path, body.as_ref()).await }
    };

    wait_for(
        "the gateway to answer /readyz over HTTPS",
        Duration::from_secs(30),
        || {
            let ready = https("GET", "/readyz".to_owned(), None);
            async move { matches!(ready.await, Ok((200, _))) }
        },
    )
    .await;

    let signer = Signer2048::new();
    let (status, accepted) = https(
        "POST",
        "/api/signature".to_owned(),
        Some(body_for(&signer, "over https", false)),
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let result = loop {
        let (status, json) = https("GET", format!("/api/signature/{id}?wait=5"), None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{json}");
        if json["status"] != "pending" {
            break json;
        }
        assert!(Instant::now() < deadline, "{id} still pending: {json}");
    };
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["valid"], true, "{result}");

    // The certificate served is the one configured: checked against its
    // name (a client that asks for another name refuses it).
    let wrong_name = https_request(port, "other.test", &ca.cert_pem, "GET", "/readyz", None).await;
    assert!(
        wrong_name
            .as_ref()
            .is_err_and(|e| e.contains("not valid for name")),
        "{wrong_name:?}"
    );
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let plain = gw.http.get(format!("{}/readyz", gw.base)).send().await;
    assert!(
        plain.is_err(),
        "a plain-HTTP request was answered on the HTTPS port: {plain:?}"
    );

    // A certificate without its key: the gateway does not start.
    let mut half = env.gateway_unready(&[("TLS_CERT_FILE", cert.display().to_string())]);
    let exit = half.proc.wait_exit(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| !s.success()), "{exit:?}");
    let port = half.base.rsplit(':').next().unwrap();
    let log = env.log(&format!("gateway-{port}"));
    assert!(
        log.contains("TLS_CERT_FILE and TLS_KEY_FILE go together"),
        "the gateway's log does not say why:\n{log}"
    );
}
