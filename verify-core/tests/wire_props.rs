//! Property tests of the wire decoders ([`VerifyRequest::decode`],
//! [`VerifyRequest::decode_item`], [`split_batch`], [`Event::decode`],
//! [`Event::decode_item`], [`Event::decode_items`]): whatever the bytes
//! (arbitrary bytes, JSON-like text, JSON values built from the real field
//! names, valid messages with random damage) they answer `Ok` or a typed
//! error and never panic; what decodes re-encodes to the same value; and
//! valid messages round-trip, alone and in batches.
//!
//! A failure prints the minimal input; proptest stores its seed in
//! `wire_props.proptest-regressions` (committed) so every later run tries
//! it first. The first one found: a message whose unknown field held bytes
//! that are not UTF-8 was read by `VerifyRequest::decode` but refused by
//! `split_batch` (fixed: the whole-message decoders now require UTF-8 too).

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Value};
use verify_core::{
    join_batch, split_batch, Algorithm, DecodeError, DeliveryInfo, ErrorBody, Event, EventKind,
    KeyId, Payload, RequestId, VerifyRequest, WorkerBeat, WorkerState, SCHEMA_VERSION,
};

/// Field names the decoders look for, so generated objects reach past the
/// first "missing field" error into each field's own parsing.
const FIELDS: &[&str] = &[
    "v",
    "id",
    "documentText",
    "document",
    "signature",
    "algorithm",
    "keyId",
    "submittedAtMs",
    "traceparent",
    "atMs",
    "source",
    "kind",
    "accepted",
    "completed",
    "failed",
    "deadLettered",
    "checkpoint",
    "worker",
    "valid",
    "error",
    "code",
    "message",
    "fingerprint",
    "delivery",
    "attempt",
    "queueWaitMs",
    "reason",
    "state",
];

fn request_id() -> impl Strategy<Value = RequestId> {
    any::<u128>().prop_map(|n| {
        RequestId::parse(&uuid::Uuid::from_u128(n).hyphenated().to_string())
            .expect("a hyphenated UUID")
    })
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec())
}

fn key_id() -> impl Strategy<Value = KeyId> {
    any::<String>().prop_map(KeyId::new)
}

fn request() -> impl Strategy<Value = VerifyRequest> {
    // Documents: arbitrary bytes (sent as base64) or text (sent as a string).
    let document = prop_oneof![
        vec(any::<u8>(), 0..256),
        any::<String>().prop_map(String::into_bytes),
    ];
    (
        request_id(),
        document,
        vec(any::<u8>(), 0..64),
        algorithm(),
        proptest::option::of(key_id()),
        any::<u64>(),
        proptest::option::of(any::<String>()),
        any::<bool>(),
    )
        .prop_map(
            |(id, document, signature, algorithm, key_id, submitted_at_ms, traceparent, digest)| {
                let request = VerifyRequest {
                    v: SCHEMA_VERSION,
                    id,
                    payload: Payload::Document(document),
                    signature,
                    algorithm,
                    key_id,
                    submitted_at_ms,
                    traceparent,
                };
                // Half in digest form (a gateway's default for RSA and ECDSA).
                if digest {
                    request.digested()
                } else {
                    request
                }
            },
        )
}

fn delivery() -> impl Strategy<Value = Option<DeliveryInfo>> {
    proptest::option::of(
        (any::<u32>(), any::<u64>()).prop_map(|(attempt, queue_wait_ms)| DeliveryInfo {
            attempt,
            queue_wait_ms,
        }),
    )
}

fn event_kind() -> impl Strategy<Value = EventKind> {
    let text = || proptest::option::of(any::<String>());
    prop_oneof![
        (
            algorithm(),
            proptest::option::of(key_id()),
            text(),
            text(),
            text()
        )
            .prop_map(
                |(algorithm, key_id, idempotency_key, fingerprint, tenant)| {
                    EventKind::Accepted {
                        algorithm,
                        key_id,
                        idempotency_key,
                        fingerprint,
                        tenant,
                    }
                }
            ),
        (
            any::<bool>(),
            algorithm(),
            key_id(),
            any::<u64>(),
            any::<u64>(),
            text(),
            delivery()
        )
            .prop_map(
                |(
                    valid,
                    algorithm,
                    key_id,
                    verify_micros,
                    submitted_at_ms,
                    fingerprint,
                    delivery,
                )| {
                    EventKind::Completed {
                        valid,
                        algorithm,
                        key_id,
                        verify_micros,
                        submitted_at_ms,
                        fingerprint,
                        delivery,
                    }
                }
            ),
        (
            any::<String>(),
            any::<String>(),
            any::<u64>(),
            text(),
            delivery()
        )
            .prop_map(|(code, message, submitted_at_ms, fingerprint, delivery)| {
                EventKind::Failed {
                    error: ErrorBody { code, message },
                    submitted_at_ms,
                    fingerprint,
                    delivery,
                }
            }),
        (any::<String>(), delivery())
            .prop_map(|(reason, delivery)| EventKind::DeadLettered { reason, delivery }),
        Just(EventKind::Checkpoint),
        (
            prop::sample::select(vec![
                WorkerState::Online,
                WorkerState::Heartbeat,
                WorkerState::Offline
            ]),
            any::<String>(),
            any::<u32>(),
            any::<String>(),
            any::<[u64; 5]>(),
            any::<u32>(),
            any::<u64>()
        )
            .prop_map(
                |(state, host, pid, version, counts, verify_threads, heartbeat_ms)| {
                    let [started_at_ms, processed, failed, in_flight, _] = counts;
                    EventKind::Worker(WorkerBeat {
                        state,
                        host,
                        pid,
                        version,
                        started_at_ms,
                        processed,
                        failed,
                        in_flight,
                        verify_threads,
                        heartbeat_ms,
                        keys: Vec::new(),
                    })
                }
            ),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (
        request_id(),
        any::<u64>(),
        any::<String>(),
        event_kind(),
        proptest::option::of(any::<String>()),
    )
        .prop_map(|(id, at_ms, source, kind, traceparent)| Event {
            v: SCHEMA_VERSION,
            id,
            at_ms,
            source,
            kind,
            traceparent,
        })
}

/// Arbitrary JSON, its object keys mostly the decoders' own field names.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[0-9a-fA-F]{0,16}".prop_map(Value::String),
        algorithm().prop_map(|a| Value::String(a.name().to_owned())),
        request_id().prop_map(|id| Value::String(id.to_string())),
    ];
    let key = prop_oneof![
        4 => prop::sample::select(FIELDS).prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            btree_map(key.clone(), inner, 0..10)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text made of JSON's punctuation, literals and digits: mostly invalid
/// JSON, but often close to it.
fn json_ish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(vec![
            "{", "}", "[", "]", ":", ",", "\"", "\\", "\\u", "\\ud800", "null", "true", "false",
            "-", ".", "e", "E+", "0", "1e999", "-0", " ", "\n",
        ])
        .prop_map(str::to_owned),
        prop::sample::select(FIELDS).prop_map(|f| format!("\"{f}\"")),
        "[0-9]{1,30}",
        any::<String>(),
    ];
    vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

/// One way to damage a message's bytes.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(prop::sample::Index),
    FlipBit(prop::sample::Index, u8),
    SetByte(prop::sample::Index, u8),
    Delete(prop::sample::Index, usize),
    Insert(prop::sample::Index, Vec<u8>),
    Duplicate(prop::sample::Index, usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    let at = any::<prop::sample::Index>;
    prop_oneof![
        at().prop_map(Damage::Truncate),
        (at(), 0u8..8).prop_map(|(i, bit)| Damage::FlipBit(i, bit)),
        (at(), any::<u8>()).prop_map(|(i, b)| Damage::SetByte(i, b)),
        (at(), 1usize..16).prop_map(|(i, n)| Damage::Delete(i, n)),
        (at(), vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Damage::Insert(i, b)),
        (at(), 1usize..32).prop_map(|(i, n)| Damage::Duplicate(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, damage: &Damage) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match damage {
        Damage::Truncate(i) => bytes.truncate(i.index(len)),
        Damage::FlipBit(i, bit) => bytes[i.index(len)] ^= 1 << bit,
        Damage::SetByte(i, b) => bytes[i.index(len)] = *b,
        Damage::Delete(i, n) => {
            let start = i.index(len);
            bytes.drain(start..(start + n).min(len));
        }
        Damage::Insert(i, b) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Damage::Duplicate(i, n) => {
            let start = i.index(len);
            let copy = bytes[start..(start + n).min(len)].to_vec();
            bytes.splice(start..start, copy);
        }
    }
}

/// Runs every decoder on `bytes` and checks what each answers. A panic in
/// any of them fails the property (proptest catches it).
fn decode_everything(bytes: &[u8]) -> Result<(), TestCaseError> {
    let request = VerifyRequest::decode(bytes);
    if let Ok(request) = &request {
        prop_assert_eq!(request.v, SCHEMA_VERSION);
        prop_assert_eq!(&VerifyRequest::decode(&request.encode()).unwrap(), request);
    }
    let event = Event::decode(bytes);
    if let Ok(event) = &event {
        prop_assert_eq!(event.v, SCHEMA_VERSION);
        prop_assert_eq!(&Event::decode(&event.encode()).unwrap(), event);
    }
    for error in [request.as_ref().err(), event.as_ref().err()]
        .into_iter()
        .flatten()
    {
        prop_assert!(matches!(
            (error, error.reason()),
            (DecodeError::Json(_), "malformed")
                | (DecodeError::UnsupportedVersion(_), "unsupported_version")
        ));
    }

    let items = split_batch(bytes);
    let events = Event::decode_items(bytes);
    // Both split the same way: the same count of items, or both fail.
    prop_assert_eq!(
        items.as_ref().map(Vec::len).ok(),
        events.as_ref().map(Vec::len).ok()
    );
    let (Ok(items), Ok(events)) = (items, events) else {
        // Not JSON at all: then neither whole-message decoder read it either.
        prop_assert!(
            request.is_err() && event.is_err(),
            "{:?} decodes whole but does not split: {:?} {:?}",
            bytes,
            request,
            event
        );
        return Ok(());
    };
    let is_array = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if !is_array {
        prop_assert_eq!(items.len(), 1);
        // A single item decodes as the whole message does.
        prop_assert_eq!(
            VerifyRequest::decode_item(items[0]).ok(),
            request.as_ref().ok().cloned()
        );
        prop_assert_eq!(events[0].as_ref().ok(), event.as_ref().ok());
    }
    for (raw, from_items) in items.iter().zip(&events) {
        let item = Event::decode_item(raw);
        prop_assert_eq!(item.as_ref().ok(), from_items.as_ref().ok());
        match VerifyRequest::decode_item(raw) {
            Ok(request) => {
                prop_assert_eq!(request.v, SCHEMA_VERSION);
                let again = VerifyRequest::decode(&request.encode()).unwrap();
                prop_assert_eq!(again, request);
            }
            // The id it names, if any, is the one the item carries: its
            // `id` field, or the second element of serde's positional form
            // of a struct (an array of the fields in order, which serde
            // accepts too), in any form of UUID serde reads. (An item with
            // a number out of f64's range has no `Value`: not checked.)
            Err(unreadable) => {
                let value = serde_json::from_str::<Value>(raw.get());
                if let (Some(id), Ok(value)) = (unreadable.id, value) {
                    let carried = match &value {
                        Value::Object(fields) => fields.get("id"),
                        Value::Array(elements) => elements.get(1),
                        _ => None,
                    };
                    let carried = carried
                        .and_then(Value::as_str)
                        .and_then(|s| uuid::Uuid::parse_str(s).ok());
                    prop_assert_eq!(carried.as_ref(), Some(id.as_uuid()));
                }
            }
        }
    }
    // The items re-join into a message that splits into the same items.
    let rejoined = join_batch(items.iter().copied());
    let again = split_batch(&rejoined).unwrap();
    prop_assert_eq!(
        again.iter().map(|r| r.get()).collect::<Vec<_>>(),
        items.iter().map(|r| r.get()).collect::<Vec<_>>()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_decode_or_fail_typed(bytes in vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes)?;
    }

    #[test]
    fn json_like_text_decodes_or_fails_typed(text in json_ish()) {
        decode_everything(text.as_bytes())?;
    }

    #[test]
    fn arbitrary_json_values_decode_or_fail_typed(value in json_value()) {
        decode_everything(value.to_string().as_bytes())?;
        // The same value as the middle item of a batch.
        let batch = format!("[{},{value},{}]", json!(1), json!(null));
        decode_everything(batch.as_bytes())?;
    }

    #[test]
    fn damaged_requests_decode_or_fail_typed(
        requests in vec(request(), 1..4),
        damages in vec(damage(), 1..4),
        batched in any::<bool>(),
    ) {
        let mut bytes = if batched {
            serde_json::to_vec(&requests).unwrap()
        } else {
            requests[0].encode()
        };
        for d in &damages {
            apply(&mut bytes, d);
        }
        decode_everything(&bytes)?;
    }

    #[test]
    fn damaged_events_decode_or_fail_typed(
        events in vec(event(), 1..4),
        damages in vec(damage(), 1..4),
    ) {
        let mut bytes = Event::encode_batch(&events);
        for d in &damages {
            apply(&mut bytes, d);
        }
        decode_everything(&bytes)?;
    }

    #[test]
    fn requests_round_trip(request in request()) {
        let bytes = request.encode();
        prop_assert_eq!(&VerifyRequest::decode(&bytes).unwrap(), &request);
        let items = split_batch(&bytes).unwrap();
        prop_assert_eq!(items.len(), 1);
        prop_assert_eq!(&VerifyRequest::decode_item(items[0]).unwrap(), &request);
        // Digests travel as hex, text documents as text, others as base64.
        let wire: Value = serde_json::from_slice(&bytes).unwrap();
        let (text, base64, digest) = match &request.payload {
            Payload::Digest(d) => {
                let hex = hex::encode(d);
                prop_assert_eq!(wire["digest"].as_str(), Some(hex.as_str()));
                (false, false, true)
            }
            Payload::Document(d) => {
                let is_text = std::str::from_utf8(d).is_ok();
                (is_text, !is_text, false)
            }
        };
        prop_assert_eq!(wire["documentText"].is_string(), text);
        prop_assert_eq!(wire["document"].is_string(), base64);
        prop_assert_eq!(wire["digest"].is_string(), digest);
    }

    #[test]
    fn request_batches_round_trip(requests in vec(request(), 0..6)) {
        let bytes = serde_json::to_vec(&requests).unwrap();
        let decoded: Vec<VerifyRequest> = split_batch(&bytes)
            .unwrap()
            .into_iter()
            .map(|raw| VerifyRequest::decode_item(raw).unwrap())
            .collect();
        prop_assert_eq!(decoded, requests);
    }

    #[test]
    fn events_round_trip(events in vec(event(), 1..6)) {
        for event in &events {
            prop_assert_eq!(&Event::decode(&event.encode()).unwrap(), event);
        }
        let decoded: Vec<Event> = Event::decode_items(&Event::encode_batch(&events))
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        prop_assert_eq!(decoded, events);
    }

    /// Unknown fields are ignored; another version is refused, naming the
    /// request; a missing required field is refused, naming it if it can.
    #[test]
    fn field_edits_of_a_valid_request(
        request in request(),
        extra in "[a-z]{1,12}",
        extra_value in json_value(),
        version in any::<u32>(),
        drop in prop::sample::select(vec!["v", "id", "signature", "algorithm", "submittedAtMs"]),
    ) {
        let wire: Value = serde_json::from_slice(&request.encode()).unwrap();

        let mut added = wire.clone();
        if !FIELDS.contains(&extra.as_str()) {
            added[extra.as_str()] = extra_value;
            let bytes = added.to_string();
            prop_assert_eq!(&VerifyRequest::decode(bytes.as_bytes()).unwrap(), &request);
        }

        let mut other_version = wire.clone();
        other_version["v"] = version.into();
        let bytes = other_version.to_string();
        if version == SCHEMA_VERSION {
            prop_assert_eq!(&VerifyRequest::decode(bytes.as_bytes()).unwrap(), &request);
        } else {
            let is_unsupported = matches!(
                VerifyRequest::decode(bytes.as_bytes()),
                Err(DecodeError::UnsupportedVersion(v)) if v == version
            );
            prop_assert!(is_unsupported);
            let items = split_batch(bytes.as_bytes()).unwrap();
            let unreadable = VerifyRequest::decode_item(items[0]).unwrap_err();
            prop_assert_eq!(unreadable.id, Some(request.id));
            prop_assert!(matches!(unreadable.error, DecodeError::UnsupportedVersion(v) if v == version));
        }

        let mut missing = wire;
        missing.as_object_mut().unwrap().remove(drop);
        let bytes = missing.to_string();
        let items = split_batch(bytes.as_bytes()).unwrap();
        let unreadable = VerifyRequest::decode_item(items[0]).unwrap_err();
        let expected_id = (drop != "id").then_some(request.id);
        prop_assert_eq!(unreadable.id, expected_id);
        prop_assert!(VerifyRequest::decode(bytes.as_bytes()).is_err());
    }
}
