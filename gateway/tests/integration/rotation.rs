//! ECDSA and Ed25519 through the whole service, and live key rotation, on
//! the real binaries: the known-answer vectors (verify-core/tests/vectors/
//! modern.tsv, made by openssl and Java) get their verdicts over HTTP; a
//! key file added is in use within 2 s and one removed stops being used,
//! with requests flowing meanwhile; SIGHUP reloads when the directory is
//! not watched; a worker lacking a key another live worker serves hands
//! the request over, while a key nobody serves is `unknown_key` at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

struct Row {
    source: String,
    key: String,
    algorithm: String,
    document: String,
    signature: String,
    valid: bool,
}

fn modern_rows() -> Vec<Row> {
    std::fs::read_to_string(vectors().join("modern.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Row {
                source: f[0].to_owned(),
                key: f[1].to_owned(),
                algorithm: f[2].to_owned(),
                document: f[3].to_owned(),
                signature: f[4].to_owned(),
                valid: f[5] == "true",
            }
        })
        .collect()
}

fn doc_text(name: &str) -> String {
    std::fs::read_to_string(vectors().join("docs").join(name)).unwrap()
}

fn fingerprints() -> HashMap<String, String> {
    std::fs::read_to_string(vectors().join("fingerprints.tsv"))
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Copies vector key `file` into `dir`.
fn add_key(dir: &std::path::Path, file: &str) {
    std::fs::copy(vectors().join("keys").join(file), dir.join(file)).unwrap();
}

/// `GET /api/keys`: (keyId, fingerprint) -> the workers serving it.
async fn keys_listed(gw: &Gateway) -> HashMap<(String, String), Vec<String>> {
    let (status, _, body) = gw.get("/api/keys").await;
    assert_eq!(status, 200, "{body}");
    body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let workers = k["workers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_str().unwrap().to_owned())
                .collect();
            (
                (
                    k["keyId"].as_str().unwrap().to_owned(),
                    k["fingerprint"].as_str().unwrap().to_owned(),
                ),
                workers,
            )
        })
        .collect()
}

async fn lists_key(gw: &Gateway, key: &str) -> bool {
    keys_listed(gw).await.keys().any(|(id, _)| id == key)
}

/// Submits one request for `key` signed as row `row` and returns its result.
async fn verdict(gw: &Gateway, row: &Row, key: &str) -> Value {
    let id = gw
        .submit(&json!({
            "text": doc_text(&row.document),
            "hexSignature": row.signature,
            "algorithm": row.algorithm,
            "keyId": key,
        }))
        .await;
    gw.result(&id, Duration::from_secs(30)).await
}

/// A request's last timeline event (its answer), and the whole timeline.
async fn last_event(gw: &Gateway, id: &str) -> (Value, Value) {
    let (_, _, timeline) = gw.get(&format!("/api/signature/{id}/events")).await;
    let answer = timeline["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    (answer, timeline)
}

fn valid_row(key: &str, algorithm: &str) -> Row {
    modern_rows()
        .into_iter()
        .find(|r| r.key == key && r.algorithm == algorithm && r.valid && r.document == "text.txt")
        .unwrap()
}

#[tokio::test]
async fn ecdsa_and_ed25519_vectors_get_their_verdicts_through_the_service() {
    let env = TestEnv::new();
    for file in ["ec256.pem", "ec384.der", "ec521.crt", "ed25519.pem"] {
        add_key(&env.keys_dir(), file);
    }
    let _worker = env.worker("worker-modern", &[]);
    let gw = env.gateway(&[]).await;

    // Every text-document vector; an empty hexSignature is the contract's
    // 400 (a missing signature), not a verdict, so those rows are left out.
    let rows: Vec<Row> = modern_rows()
        .into_iter()
        .filter(|r| r.document != "big.bin" && r.document != "empty.bin" && !r.signature.is_empty())
        .collect();
    assert!(rows.len() > 150, "{} rows", rows.len());
    assert!(rows.iter().any(|r| !r.valid) && rows.iter().any(|r| r.source.ends_with("high-s")));
    let bodies: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "text": doc_text(&r.document),
                "hexSignature": r.signature,
                "algorithm": r.algorithm,
                "keyId": r.key,
            })
        })
        .collect();
    let ids = submit_all(&gw, &bodies, 16).await;
    for (row, id) in rows.iter().zip(&ids) {
        let result = gw.result(id, Duration::from_secs(60)).await;
        let what = format!(
            "{} {} {} {}",
            row.source, row.key, row.algorithm, row.document
        );
        assert_eq!(result["status"], "completed", "{what}: {result}");
        assert_eq!(result["valid"], row.valid, "{what}: {result}");
        // `EdDSA` is reported by its canonical name.
        let canonical = if row.algorithm == "EdDSA" {
            "Ed25519"
        } else {
            &row.algorithm
        };
        assert_eq!(result["algorithm"], canonical, "{what}: {result}");
    }

    // A key of another family than the algorithm: failed, named.
    let ec = valid_row("ec256", "SHA256withECDSA");
    for (key, algorithm) in [
        ("ec256", "SHA256withRSA"),
        ("default", "SHA256withECDSA"),
        ("ed25519", "SHA256withECDSAinP1363Format"),
    ] {
        let result = verdict(
            &gw,
            &Row {
                algorithm: algorithm.into(),
                ..valid_row(&ec.key, &ec.algorithm)
            },
            key,
        )
        .await;
        assert_eq!(result["status"], "failed", "{key} {algorithm}: {result}");
        assert_eq!(
            result["error"]["code"], "key_algorithm_mismatch",
            "{result}"
        );
    }

    // GET /api/keys: what the worker serves, with openssl's fingerprints.
    let expected = fingerprints();
    wait_for(
        "the worker's keys listed",
        Duration::from_secs(20),
        || async { lists_key(&gw, "ec521").await },
    )
    .await;
    let (_, _, body) = gw.get("/api/keys").await;
    let keys = body["keys"].as_array().unwrap();
    for (id, family, detail) in [
        ("ec256", "EC", "P-256"),
        ("ec384", "EC", "P-384"),
        ("ec521", "EC", "P-521"),
        ("ed25519", "Ed25519", "Ed25519"),
        ("default", "RSA", "2048-bit"),
    ] {
        let key = keys
            .iter()
            .find(|k| k["keyId"] == id)
            .unwrap_or_else(|| panic!("{id} not in {body}"));
        assert_eq!(key["family"], family, "{key}");
        assert_eq!(key["detail"], detail, "{key}");
        assert_eq!(key["workers"].as_array().unwrap().len(), 1, "{key}");
        if let Some(fp) = expected.get(id) {
            assert_eq!(key["fingerprint"], fp.as_str(), "{key}");
        }
    }
}

#[tokio::test]
async fn a_key_added_is_used_within_two_seconds_and_a_removed_one_stops_being_used() {
    let env = TestEnv::new();
    let (_worker, port) = env.worker_with_http("worker-rotate");
    let gw = env.gateway(&[]).await;
    let ec = valid_row("ec256", "SHA256withECDSA");

    // Not there yet, and no other worker serves it: unknown_key at once.
    let result = verdict(&gw, &ec, "ec256").await;
    assert_eq!(result["error"]["code"], "unknown_key", "{result}");

    // Requests keep flowing through the rotation: none is lost or failed.
    let signer = Signer2048::new();
    let bodies: Vec<Value> = (0..300)
        .map(|i| body_for(&signer, &format!("during rotation {i}"), false))
        .collect();
    let flowing = async {
        let ids = submit_all(&gw, &bodies, 4).await;
        let mut results = Vec::new();
        for id in &ids {
            results.push(gw.result(id, Duration::from_secs(60)).await);
        }
        results
    };

    let rotation = async {
        let added = Instant::now();
        add_key(&env.keys_dir(), "ec256.pem");
        wait_for(
            "ec256 listed by the worker",
            Duration::from_secs(2),
            || async { lists_key(&gw, "ec256").await },
        )
        .await;
        let in_use_after = added.elapsed();
        let result = verdict(&gw, &ec, "ec256").await;
        assert_eq!(result["status"], "completed", "{result}");
        assert_eq!(result["valid"], true, "{result}");

        // A file that does not load leaves the keys as they were.
        std::fs::write(env.keys_dir().join("broken.pem"), "not a key").unwrap();
        wait_for(
            "the failed reload counted",
            Duration::from_secs(5),
            || async {
                counter(
                    &env.worker_metrics(port).await,
                    "worker_key_reloads_total{outcome=\"failed\"}",
                ) >= 1.0
            },
        )
        .await;
        assert_eq!(verdict(&gw, &ec, "ec256").await["valid"], true);
        std::fs::remove_file(env.keys_dir().join("broken.pem")).unwrap();

        let removed = Instant::now();
        std::fs::remove_file(env.keys_dir().join("ec256.pem")).unwrap();
        wait_for("ec256 no longer listed", Duration::from_secs(2), || async {
            !lists_key(&gw, "ec256").await
        })
        .await;
        let gone_after = removed.elapsed();
        let result = verdict(&gw, &ec, "ec256").await;
        assert_eq!(result["error"]["code"], "unknown_key", "{result}");
        eprintln!("key in use {in_use_after:?} after its file appeared; out of use {gone_after:?} after removal");
    };
    let (results, ()) = tokio::join!(flowing, rotation);
    assert_eq!(results.len(), 300);
    for result in &results {
        assert_eq!(result["status"], "completed", "{result}");
        assert_eq!(result["valid"], true, "{result}");
    }
    let log = env.log("worker-rotate");
    assert!(log.contains("keys reloaded"), "{log}");
    assert!(
        log.contains("broken.pem"),
        "the failed reload names the file: {log}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_keys_when_the_directory_is_not_watched() {
    let env = TestEnv::new();
    let worker = env.worker(
        "worker-hup",
        &[
            ("VERIFIER_KEYS_WATCH", "false".into()),
            ("HEARTBEAT_INTERVAL", "200ms".into()),
        ],
    );
    let gw = env.gateway(&[]).await;
    wait_for(
        "the worker's keys listed",
        Duration::from_secs(20),
        || async { lists_key(&gw, "default").await },
    )
    .await;
    add_key(&env.keys_dir(), "ed25519.pem");
    // Unwatched, the new file is not read: several beats later it is
    // still not listed.
    let mut beats = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while beats.len() <= 3 {
        assert!(Instant::now() < deadline, "no heartbeats");
        let (_, _, body) = gw.get("/api/workers").await;
        beats.insert(body["workers"][0]["lastSeen"].to_string());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!lists_key(&gw, "ed25519").await);

    let signalled = Instant::now();
    worker.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for(
        "ed25519 listed after SIGHUP",
        Duration::from_secs(2),
        || async { lists_key(&gw, "ed25519").await },
    )
    .await;
    eprintln!("key in use {:?} after SIGHUP", signalled.elapsed());
    let result = verdict(&gw, &valid_row("ed25519", "Ed25519"), "ed25519").await;
    assert_eq!(result["valid"], true, "{result}");
}

#[tokio::test]
async fn a_worker_lacking_a_key_hands_the_request_to_a_worker_that_serves_it() {
    let env = TestEnv::new();
    // Worker A has ec256; worker B does not (a rotation that reached A first).
    let keys_a: PathBuf = env.dir.path().join("keys-a");
    std::fs::create_dir(&keys_a).unwrap();
    std::fs::copy(
        env.keys_dir().join("default.pem"),
        keys_a.join("default.pem"),
    )
    .unwrap();
    add_key(&keys_a, "ec256.pem");
    let fast_beats = ("HEARTBEAT_INTERVAL", "500ms".to_owned());
    let (_a, _) = env
        .ready_worker(
            "worker-a",
            &[
                ("VERIFIER_KEYS_DIR", keys_a.display().to_string()),
                fast_beats.clone(),
            ],
        )
        .await;
    let (_b, port_b) = env.ready_worker("worker-b", &[fast_beats]).await;
    let gw = env.gateway(&[]).await;
    wait_for("B has heard A", Duration::from_secs(10), || async {
        counter(&env.worker_metrics(port_b).await, "worker_peers_heard") >= 1.0
    })
    .await;

    // Requests for ec256 until B has taken (and handed over) some: every
    // one is answered by A, valid; those B took show a later attempt.
    let ec = valid_row("ec256", "SHA256withECDSA");
    let body = json!({
        "text": doc_text(&ec.document), "hexSignature": ec.signature,
        "algorithm": ec.algorithm, "keyId": "ec256",
    });
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter(
        &env.worker_metrics(port_b).await,
        "worker_key_handoffs_total",
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "B never took an ec256 request");
        ids.extend(submit_all(&gw, &vec![body.clone(); 8], 8).await);
    }
    let mut handed = 0;
    for id in &ids {
        let result = gw.result(id, Duration::from_secs(30)).await;
        assert_eq!(result["status"], "completed", "{result}");
        assert_eq!(result["valid"], true, "{result}");
        let (answer, timeline) = last_event(&gw, id).await;
        assert!(
            answer["by"].as_str().unwrap().starts_with("worker@"),
            "{timeline}"
        );
        if answer["attempt"].as_u64().unwrap_or(1) >= 2 {
            handed += 1;
        }
    }
    assert!(handed >= 1, "no request shows a second attempt");

    // A key no live worker serves: unknown_key on its first delivery.
    let id = gw
        .submit(&json!({ "text": "x", "hexSignature": "abcd", "keyId": "nobody" }))
        .await;
    let result = gw.result(&id, Duration::from_secs(30)).await;
    assert_eq!(result["error"]["code"], "unknown_key", "{result}");
    let (answer, timeline) = last_event(&gw, &id).await;
    assert_eq!(answer["attempt"].as_u64().unwrap_or(1), 1, "{timeline}");
}
