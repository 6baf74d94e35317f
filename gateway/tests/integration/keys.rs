//! The worker's key-size policy, on the real binaries: a 1024-bit key in
//! VERIFIER_KEYS_DIR stops the start by default with an error naming the
//! file, its size, the minimum and VERIFIER_MIN_RSA_BITS; with the minimum
//! lowered to 1024 the same key loads and its signatures verify.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use serde_json::json;

/// Copies the committed 1024-bit test key into the worker's key directory
/// as `legacy.pem` (keyId `legacy`).
fn add_legacy_key(env: &TestEnv) {
    let k1024 =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../verify-core/tests/vectors/keys/k1024.pem");
    std::fs::copy(k1024, env.keys_dir().join("legacy.pem")).unwrap();
}

#[tokio::test]
async fn a_worker_with_a_1024_bit_key_exits_at_start_naming_it() {
    let env = TestEnv::new();
    add_legacy_key(&env);
    let mut worker = env.worker("worker-legacy", &[]);
    let exit = worker.wait_exit(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| !s.success()), "{exit:?}");
    let log = env.log("worker-legacy");
    for part in [
        "legacy.pem",
        "1024-bit RSA key",
        "minimum of 2048 bits",
        "VERIFIER_MIN_RSA_BITS=1024",
    ] {
        assert!(
            log.contains(part),
            "{part:?} not in the worker's log:\n{log}"
        );
    }
}

#[tokio::test]
async fn with_the_minimum_lowered_a_1024_bit_key_loads_and_verifies() {
    let env = TestEnv::new();
    add_legacy_key(&env);
    let _worker = env.worker(
        "worker-legacy",
        &[("VERIFIER_MIN_RSA_BITS", "1024".to_owned())],
    );
    let gw = env.gateway(&[]).await;
    let signer = Signer2048::with_key("k1024");
    let document = "signed long ago with a 1024-bit key";
    let signature = signer.sign_hex(document.as_bytes());
    let valid = gw
        .submit(&json!({ "text": document, "hexSignature": signature, "keyId": "legacy" }))
        .await;
    let tampered = gw
        .submit(&json!({ "text": format!("{document}!"), "hexSignature": signature, "keyId": "legacy" }))
        .await;
    for (id, expected) in [(valid, true), (tampered, false)] {
        let result = gw.result(&id, Duration::from_secs(20)).await;
        assert_eq!(result["status"], "completed", "{result}");
        assert_eq!(result["valid"], expected, "{result}");
        assert_eq!(result["keyId"], "legacy", "{result}");
    }
    let log = env.log("worker-legacy");
    assert!(
        log.contains("VERIFIER_MIN_RSA_BITS is under 2048"),
        "no warning about the lowered minimum:\n{log}"
    );
}
