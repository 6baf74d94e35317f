//! Hostile bodies against a real gateway (and one worker): a few thousand
//! random POST /api/signature bodies (random bytes, truncated and mutated
//! valid bodies, huge numbers, deep nesting, wrong types, invalid UTF-8,
//! bodies over the limit), with and without a JSON content type, 16 at a
//! time. Every answer is a 4xx with the contract's error body, or a 202 for
//! a body that happened to be valid: never a 5xx, never a dropped
//! connection. Afterwards the gateway is alive, healthy and ready, and a
//! valid request still gets its verdict.
//!
//! The bodies come from one seed, printed; `HOSTILE_SEED=<n>` replays a run.
//!
//! The first runs found dropped connections (5 in 3,000 with this seed):
//! an answer to a body over the limit (a 413, or a 415 when the content
//! type was wrong too) is sent before the rest of the body is read, hyper
//! then closes the connection, and it did so without `connection: close`,
//! so keep-alive clients sent their next request into a closed connection.
//! The second test pins that down deterministically.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const SEED: u64 = 0x1202_5eed;
const BODIES: usize = 3000;
const CONCURRENCY: usize = 16;
/// The gateway's BODY_LIMIT_BYTES here: small, so some bodies exceed it.
const BODY_LIMIT: usize = 64 * 1024;

/// Every code a POST may answer with a 4xx, by status (README's contract;
/// `invalid_body` is a body the server could not read).
const CODES: &[(u16, &[&str])] = &[
    (
        400,
        &[
            "invalid_json",
            "missing_field",
            "conflicting_fields",
            "invalid_signature",
            "invalid_base64",
            "unknown_algorithm",
            "invalid_key_id",
            "invalid_text_file",
            "invalid_body",
        ],
    ),
    (413, &["payload_too_large"]),
    (415, &["unsupported_media_type"]),
];

const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("application/json"),
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("APPLICATION/JSON"),
    None,
    Some("text/plain"),
    Some("application/x-www-form-urlencoded"),
    Some("multipart/form-data; boundary=x"),
    Some("application/jsonx"),
];

/// One hostile request: what was sent, and why (for the failure message).
struct Case {
    kind: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn valid_body(rng: &mut StdRng) -> Value {
    let text: String = (0..rng.gen_range(0..64))
        .map(|_| rng.gen_range(' '..='~'))
        .collect();
    let signature: Vec<u8> = (0..rng.gen_range(1..300)).map(|_| rng.gen()).collect();
    let mut body = json!({ "text": text, "hexSignature": hex::encode(signature) });
    if rng.gen_bool(0.3) {
        body["algorithm"] =
            json!(["SHA256withRSA", "sha512withrsa/pss", "SHA384withRSA"][rng.gen_range(0..3)]);
    }
    if rng.gen_bool(0.3) {
        body["keyId"] = json!("other");
    }
    body
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    (0..rng.gen_range(0..max)).map(|_| rng.gen()).collect()
}

fn mutate(rng: &mut StdRng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.gen_range(1..6) {
        if bytes.is_empty() {
            bytes.push(rng.gen());
            continue;
        }
        let i = rng.gen_range(0..bytes.len());
        match rng.gen_range(0..4) {
            0 => bytes[i] ^= 1 << rng.gen_range(0..8),
            1 => bytes[i] = rng.gen(),
            2 => {
                bytes.remove(i);
            }
            _ => {
                let b = [b'"', b'{', b'}', b'[', b']', b',', b':', b'\\', 0xff, 0]
                    [rng.gen_range(0..10)];
                bytes.insert(i, b);
            }
        }
    }
    bytes
}

/// A value of a wrong type for any field.
fn wrong_type(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..7) {
        0 => json!(rng.gen::<i64>()),
        1 => json!(rng.gen::<bool>()),
        2 => json!(null),
        3 => json!([1, "two", null]),
        4 => json!({ "hexSignature": "ab" }),
        5 => json!(rng.gen::<f64>()),
        _ => json!([]),
    }
}

fn nested(depth: usize, open: &str, close: &str, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

fn case(rng: &mut StdRng) -> Case {
    let valid = valid_body(rng);
    let valid_bytes = valid.to_string().into_bytes();
    let (kind, body): (&'static str, Vec<u8>) = match rng.gen_range(0..14) {
        0 => ("random bytes", random_bytes(rng, 2048)),
        1 => {
            let cut = rng.gen_range(0..valid_bytes.len());
            ("truncated", valid_bytes[..cut].to_vec())
        }
        2 | 3 => ("mutated", mutate(rng, valid_bytes)),
        4 => {
            let huge = [
                "1e999999",
                "-1e-999999",
                "123456789012345678901234567890123456789",
                "18446744073709551616",
                "-0",
                "0.0000000000000000000000000001",
            ][rng.gen_range(0..6)];
            let digits = "9".repeat(rng.gen_range(1..20_000));
            let field =
                ["hexSignature", "text", "algorithm", "keyId", "textBase64"][rng.gen_range(0..5)];
            let number = if rng.gen_bool(0.5) { huge } else { &digits };
            (
                "huge number",
                format!(r#"{{"hexSignature":"abcd","{field}":{number}}}"#).into_bytes(),
            )
        }
        5 => {
            let depth = [10, 127, 128, 129, 1_000, 30_000][rng.gen_range(0..6)];
            let body = match rng.gen_range(0..3) {
                0 => nested(depth, "[", "]", ""),
                1 => nested(depth, r#"{"a":"#, "}", "1"),
                _ => format!(
                    r#"{{"hexSignature":"abcd","text":{}}}"#,
                    nested(depth, "[", "]", "\"x\"")
                ),
            };
            ("deep nesting", body.into_bytes())
        }
        6 => {
            let mut body = valid;
            let field = ["hexSignature", "text", "algorithm", "keyId"][rng.gen_range(0..4)];
            body[field] = wrong_type(rng);
            ("wrong type", body.to_string().into_bytes())
        }
        7 => {
            // Bytes that are not UTF-8, inside a string or outside one.
            let bad: &[u8] = [
                &b"\xff\xfe"[..],
                b"\xc3\x28",
                b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80",
                b"\x80",
            ][rng.gen_range(0..5)];
            let mut body = br#"{"hexSignature":"abcd","text":""#.to_vec();
            body.extend_from_slice(bad);
            body.extend_from_slice(br#""}"#);
            if rng.gen_bool(0.3) {
                body = bad.to_vec();
            }
            ("invalid utf-8", body)
        }
        8 => {
            let escape = [
                r"\ud800", r"\udfff", r"\u0000", r"\uZZZZ", r"\x41", "\u{0}", "\t",
            ][rng.gen_range(0..7)];
            (
                "escapes",
                format!(r#"{{"hexSignature":"abcd","text":"a{escape}b"}}"#).into_bytes(),
            )
        }
        9 => {
            let body = [
                "",
                " ",
                "null",
                "[]",
                "{}",
                "\"\"",
                "0",
                r#"{"hexSignature":"ab","text":"x","text":"y"}"#,
                r#"{"hexSignature":"ab","text":"x","extra":1}"#,
                r#"{"hexSignature":"","text":"x"}"#,
                r#"{"hexSignature":"ab","textBase64":"!!!"}"#,
                r#"{"hexSignature":"ab","textFile":"../../etc/passwd"}"#,
                r#"{"hexSignature":"ab","text":"x","textBase64":"eA=="}"#,
            ][rng.gen_range(0..13)];
            ("edge", body.as_bytes().to_vec())
        }
        10 => {
            // Over BODY_LIMIT (413), or just under it.
            let len = if rng.gen_bool(0.5) {
                BODY_LIMIT + rng.gen_range(1..BODY_LIMIT)
            } else {
                BODY_LIMIT - 100
            };
            let body = format!(
                r#"{{"hexSignature":"abcd","text":"{}"}}"#,
                "a".repeat(len.saturating_sub(35))
            );
            ("large", body.into_bytes())
        }
        11 => {
            let key = ["keyId", "algorithm", "hexSignature"][rng.gen_range(0..3)];
            let mut body = valid;
            body[key] = json!("k".repeat(rng.gen_range(200..400)));
            ("long field", body.to_string().into_bytes())
        }
        _ => ("valid", valid_bytes),
    };
    let content_type = CONTENT_TYPES[rng.gen_range(0..CONTENT_TYPES.len())];
    Case {
        kind,
        content_type,
        body,
    }
}

/// Sends one case; what was wrong with the answer, if anything.
async fn send(gw: &Gateway, case: &Case) -> Result<u16, String> {
    let mut request = gw
        .http
        .post(format!("{}/api/signature", gw.base))
        .body(case.body.clone());
    if let Some(ct) = case.content_type {
        request = request.header("content-type", ct);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("no answer (connection dropped?): {e:?}"))?;
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .map_err(|e| format!("{status} with an unreadable body: {e:?}"))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|_| format!("{status} with a non-JSON body: {text}"))?;
    let is_json = case.content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap()
            .trim()
            .eq_ignore_ascii_case("application/json")
    });
    match status {
        202 => {
            if !is_json {
                return Err(format!("202 without a JSON content type: {json}"));
            }
            let id = json["id"].as_str().unwrap_or_default();
            if json["status"] != "pending" || verify_core::RequestId::parse(id).is_err() {
                return Err(format!("202 without an id: {json}"));
            }
        }
        400..=499 => {
            let codes = CODES
                .iter()
                .find(|(s, _)| *s == status)
                .map(|(_, c)| *c)
                .ok_or_else(|| format!("unexpected status {status}: {json}"))?;
            let code = json["error"]["code"].as_str().unwrap_or_default();
            let message = json["error"]["message"].as_str().unwrap_or_default();
            if !codes.contains(&code) || message.is_empty() {
                return Err(format!(
                    "{status} without the contract's error body: {json}"
                ));
            }
            if (status == 415) == is_json {
                return Err(format!("{status} for content type {:?}", case.content_type));
            }
        }
        _ => return Err(format!("status {status}: {json}")),
    }
    Ok(status)
}

#[tokio::test]
async fn thousands_of_hostile_bodies_get_4xx_or_202_and_the_gateway_stays_up() {
    let seed = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    eprintln!("hostile bodies from seed {seed} (replay: HOSTILE_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let cases: Vec<Case> = (0..BODIES).map(|_| case(&mut rng)).collect();

    let env = TestEnv::new();
    let _worker = env.worker("worker", &[]);
    let mut gw = env
        .gateway(&[("BODY_LIMIT_BYTES", BODY_LIMIT.to_string())])
        .await;

    let answers: Vec<(usize, Result<u16, String>)> =
        futures_util::stream::iter(cases.iter().enumerate())
            .map(|(i, case)| {
                let gw = &gw;
                async move { (i, send(gw, case).await) }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;

    // What was sent and answered, by kind: printed on failure (and with --nocapture).
    let mut tally: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (i, answer) in &answers {
        let case = &cases[*i];
        match answer {
            Ok(status) => *tally.entry((case.kind, *status)).or_default() += 1,
            Err(why) => failures.push(format!(
                "case {i} ({}, content type {:?}, {} bytes: {:?}): {why}",
                case.kind,
                case.content_type,
                case.body.len(),
                String::from_utf8_lossy(&case.body[..case.body.len().min(120)])
            )),
        }
    }
    eprintln!("answers by (kind, status): {tally:?}");
    assert_eq!(answers.len(), BODIES);
    assert!(
        failures.is_empty(),
        "seed {seed}: {} of {BODIES} answers broke the contract; first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    // The run reached every kind of answer the contract has.
    for status in [202, 400, 413, 415] {
        assert!(
            tally.keys().any(|(_, s)| *s == status),
            "seed {seed}: no {status} in {tally:?}"
        );
    }

    // Still alive, healthy, ready, and verifying.
    assert_alive(&mut gw, seed);
    for path in ["/healthz", "/readyz"] {
        let (status, _) = gw.get_text(path).await;
        assert_eq!(status, 200, "seed {seed}: {path}");
    }
    let signer = Signer2048::new();
    let id = gw
        .submit(&body_for(&signer, "after the storm", false))
        .await;
    let result = gw.result(&id, Duration::from_secs(30)).await;
    assert_eq!(result["status"], "completed", "seed {seed}: {result}");
    assert_eq!(result["valid"], true, "seed {seed}: {result}");
    assert_alive(&mut gw, seed);
}

fn assert_alive(gw: &mut Gateway, seed: u64) {
    let exited = gw.proc.child.try_wait().expect("gateway process status");
    assert!(
        exited.is_none(),
        "seed {seed}: the gateway exited: {exited:?}"
    );
}

/// Reads one HTTP/1.1 response (head and `content-length` body) from
/// `stream`: its head, lower-cased, and its body; `None` if the connection
/// ends first.
fn read_response(stream: &mut TcpStream) -> Option<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&bytes[end + 4..end + 4 + length]);
                return Some((head, body.into_owned()));
            }
        }
        assert!(Instant::now() < deadline, "no whole response within 10 s");
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A body over the limit is refused before it has all arrived, with a 413,
/// or a 415 when its content type is wrong as well. The gateway then cannot
/// read another request on that connection, so its answer must say
/// `connection: close` (a keep-alive client would otherwise send its next
/// request into a closed connection); an answer that does not say so must
/// be followed by an answer to the next request.
#[tokio::test]
async fn an_unread_body_closes_its_connection_and_says_so() {
    let env = TestEnv::new();
    let gw = env
        .gateway(&[("BODY_LIMIT_BYTES", BODY_LIMIT.to_string())])
        .await;
    let addr = gw.base.trim_start_matches("http://").to_owned();
    for (content_type, status, code) in [
        ("application/json", 413, "payload_too_large"),
        ("text/plain", 415, "unsupported_media_type"),
    ] {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The head announces twice the limit; the limit and a KiB are sent
        // (the gateway reads up to the limit before it refuses).
        let head = format!(
            "POST /api/signature HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\n\
             content-length: {}\r\n\r\n",
            2 * BODY_LIMIT
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&vec![b' '; BODY_LIMIT + 1024]).unwrap();
        let (head, body) = read_response(&mut stream).expect("an answer to the oversize body");
        assert!(head.starts_with(&format!("http/1.1 {status}")), "{head}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["code"], code, "{json}");

        let says_close = head.lines().any(|l| l == "connection: close");
        assert!(
            says_close,
            "a {status} to a body not read whole must say connection: close:\n{head}"
        );
        let next = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n");
        // Writing may already fail on a closed connection.
        let answered = stream
            .write_all(next.as_bytes())
            .ok()
            .and_then(|()| read_response(&mut stream));
        match answered {
            Some((head, _)) => assert!(head.starts_with("http/1.1 200"), "{head}"),
            None => assert!(
                says_close,
                "the gateway closed the connection after its {status} without saying so:\n{head}"
            ),
        }
    }
}

/// A client that sends a head and then trickles (here: stops sending) its
/// body holds one of `MAX_IN_FLIGHT` places: with one place, the next POST
/// is refused at once with 503 `overloaded` + `Retry-After` rather than
/// queued; after `BODY_TIMEOUT` the slow one is answered 400 `invalid_body`
/// with `connection: close`, its place is free, and a POST is accepted.
/// `gateway_submitting` in `/metrics` counts the places held.
#[tokio::test]
async fn a_slow_client_holds_one_place_for_body_timeout_at_most() {
    let env = TestEnv::new();
    let gw = env
        .gateway(&[
            ("MAX_IN_FLIGHT", "1".to_owned()),
            ("BODY_TIMEOUT", "5s".to_owned()),
        ])
        .await;
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let signer = Signer2048::new();
    let body = body_for(&signer, "while a slow client holds the place", false);
    let head = format!(
        "POST /api/signature HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"text\":"
    );
    // The slow client sends its head and part of its body, then nothing;
    // once the gateway counts it as submitting, it holds the one place.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    wait_for(
        "the slow client holds the place (gateway_submitting)",
        Duration::from_secs(5),
        || async { counter(&gw.get_text("/metrics").await.1, "gateway_submitting") >= 1.0 },
    )
    .await;
    let (status, headers, json) = gw.post_json(&body).await;
    assert_eq!(status, 503, "{json}");
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(json["error"]["code"], "overloaded", "{json}");
    assert_eq!(headers.get("retry-after").map(String::as_str), Some("1"));

    let (head, answer) = read_response(&mut slow).expect("the slow client is answered");
    let waited = started.elapsed();
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert!(head.lines().any(|l| l == "connection: close"), "{head}");
    let json: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(json["error"]["code"], "invalid_body", "{json}");
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(12),
        "answered after {waited:?} (BODY_TIMEOUT 5 s)"
    );
    let (status, _, json) = gw.post_json(&body).await;
    assert_eq!(status, 202, "the place is free again: {json}");
}

/// A client that opens connections and sends no request, or half a
/// request header, holds none of them past `HEADER_TIMEOUT`: the gateway
/// closes each one (an idle keep-alive connection too), and answers the
/// clients that send their requests meanwhile.
#[tokio::test]
async fn connections_without_a_whole_request_header_are_closed_after_header_timeout() {
    let env = TestEnv::new();
    let gw = env.gateway(&[("HEADER_TIMEOUT", "2s".to_owned())]).await;
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let opened = Instant::now();
    let silent = TcpStream::connect(&addr).unwrap();
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"POST /api/signature HTTP/1.1\r\nhost: x\r\ncontent-ty")
        .unwrap();
    // A keep-alive connection that sent one request and then nothing.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (head, _) = read_response(&mut idle).expect("an answer on the keep-alive connection");
    assert!(head.starts_with("http/1.1 200"), "{head}");

    // Meanwhile a client that sends its request is answered at once.
    let (status, _) = gw.get_text("/healthz").await;
    assert_eq!(status, 200);

    for (name, mut stream) in [("silent", silent), ("half a header", half), ("idle", idle)] {
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut rest = Vec::new();
        // EOF (the gateway closed it), or a reset; a timeout means still open.
        let closed = match stream.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        let after = opened.elapsed();
        assert!(
            closed,
            "{name}: connection still open after {after:?} (HEADER_TIMEOUT 2 s)"
        );
        assert!(
            after >= Duration::from_millis(1900),
            "{name}: closed after {after:?}, before HEADER_TIMEOUT"
        );
        // Nothing but, perhaps, a 408 for the half-sent header.
        let answer = String::from_utf8_lossy(&rest);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{name}: {answer}"
        );
    }
}
