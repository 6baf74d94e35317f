//! The wire messages both binaries share (JSON, versioned).
//!
//! - [`VerifyRequest`]: gateway -> request queue -> one worker.
//! - [`Event`]: the request lifecycle (`accepted` by a gateway, `completed` /
//!   `failed` by a worker), appended to the events stream that every gateway
//!   projects into its status store.
//!
//! A message is one item or a batch of them (a JSON array). Decoding is
//! item by item ([`split_batch`], then [`VerifyRequest::decode_item`] /
//! [`Event::decode_item`]): one unreadable item never spoils the others of
//! its batch. Unknown fields are ignored, so a newer writer can add fields
//! without breaking an older reader; an item of a newer version or an
//! unknown event kind is an error for that item alone.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::{Algorithm, KeyId, Signed};

/// The schema version every message carries in `v`.
pub const SCHEMA_VERSION: u32 = 1;

/// The id a client polls: a hyphenated UUID (v7, so ids sort by time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(Uuid);

/// A request id that is not a hyphenated UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a request id (a hyphenated UUID)")]
pub struct BadRequestId(pub String);

impl RequestId {
    pub fn new() -> Self {
        RequestId(Uuid::now_v7())
    }

    /// Accepts only the hyphenated form (`8-4-4-4-12` hex digits).
    pub fn parse(s: &str) -> Result<Self, BadRequestId> {
        if s.len() != 36 {
            return Err(BadRequestId(s.to_owned()));
        }
        Uuid::try_parse(s)
            .map(RequestId)
            .map_err(|_| BadRequestId(s.to_owned()))
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Milliseconds since the Unix epoch, the timestamp unit of every message.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a message (or one item of it) could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported schema version {0} (this build reads {SCHEMA_VERSION})")]
    UnsupportedVersion(u32),
}

impl DecodeError {
    /// A stable label (metrics, dead-letter headers).
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Json(_) => "malformed",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
        }
    }
}

/// Splits a message into its items: the elements of a JSON array, or the
/// message itself when it is a single JSON value. Only a body that is not
/// JSON at all fails here; each item is decoded on its own afterwards.
pub fn split_batch(bytes: &[u8]) -> Result<Vec<&RawValue>, DecodeError> {
    Ok(match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(bytes)?,
        _ => vec![serde_json::from_slice(bytes)?],
    })
}

/// Joins items (as [`split_batch`] gave them) into one batch message.
pub fn join_batch<'a>(items: impl IntoIterator<Item = &'a RawValue>) -> Vec<u8> {
    let mut body = vec![b'['];
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item.get().as_bytes());
    }
    body.push(b']');
    body
}

/// The fields every item carries, read without the rest: enough to name
/// the request an unreadable item was about, and to check its version.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    v: Option<u32>,
    #[serde(default)]
    id: Option<String>,
}

impl Probe {
    fn of(raw: &RawValue) -> Option<Probe> {
        serde_json::from_str(raw.get()).ok()
    }
}

/// A request-queue item a worker cannot read.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct UnreadableRequest {
    /// The request's id, when at least that much could be read (its client
    /// is then answered `failed`).
    pub id: Option<RequestId>,
    pub error: DecodeError,
}

/// What a request's signature is checked against, as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The signed document itself: any algorithm, and the only form for
    /// Ed25519 (which hashes inside its scheme).
    Document(Vec<u8>),
    /// The document's digest under the algorithm's hash
    /// ([`Algorithm::digest`], checked to have its length when read): all
    /// an RSA or ECDSA check needs, so the document does not travel.
    Digest(Vec<u8>),
}

impl Payload {
    pub fn as_signed(&self) -> Signed<'_> {
        match self {
            Payload::Document(bytes) => Signed::Document(bytes),
            Payload::Digest(bytes) => Signed::Digest(bytes),
        }
    }
}

/// A request to verify one signature, published by a gateway.
///
/// On the wire the payload is `digest` (hex) when it is a digest, else
/// the document: `documentText` (a JSON string) when it is UTF-8, else
/// `document` (base64). Exactly one of the three is there.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "WireRequest")]
pub struct VerifyRequest {
    pub v: u32,
    pub id: RequestId,
    /// What the signature covers: the document or its digest.
    pub payload: Payload,
    /// The signature.
    pub signature: Vec<u8>,
    pub algorithm: Algorithm,
    /// `None`: the worker's `default` key (or its only key).
    pub key_id: Option<KeyId>,
    pub submitted_at_ms: u64,
    /// The W3C `traceparent` of the gateway's span for this request: a
    /// batch holds many requests and so many traces. Not part of the
    /// question asked (not in the fingerprint).
    pub traceparent: Option<String>,
}

/// The wire form as read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
    v: u32,
    id: RequestId,
    #[serde(default)]
    document_text: Option<String>,
    #[serde(default, deserialize_with = "base64_opt::deserialize")]
    document: Option<Vec<u8>>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(with = "crate::hex_text::serde")]
    signature: Vec<u8>,
    algorithm: Algorithm,
    key_id: Option<KeyId>,
    submitted_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
}

/// The wire form as written, borrowing the request: the document is
/// copied once, by serde_json into the message.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequestRef<'a> {
    v: u32,
    id: RequestId,
    #[serde(skip_serializing_if = "Option::is_none")]
    document_text: Option<&'a str>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "base64_opt::serialize"
    )]
    document: Option<&'a [u8]>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "hex_opt::serialize"
    )]
    digest: Option<&'a [u8]>,
    #[serde(serialize_with = "crate::hex_text::serde::serialize")]
    signature: &'a [u8],
    algorithm: Algorithm,
    key_id: Option<&'a KeyId>,
    submitted_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
}

impl Serialize for VerifyRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (document_text, document, digest) = match &self.payload {
            Payload::Document(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => (Some(text), None, None),
                Err(_) => (None, Some(bytes.as_slice()), None),
            },
            Payload::Digest(bytes) => (None, None, Some(bytes.as_slice())),
        };
        WireRequestRef {
            v: self.v,
            id: self.id,
            document_text,
            document,
            digest,
            signature: &self.signature,
            algorithm: self.algorithm,
            key_id: self.key_id.as_ref(),
            submitted_at_ms: self.submitted_at_ms,
            traceparent: self.traceparent.as_deref(),
        }
        .serialize(serializer)
    }
}

impl TryFrom<WireRequest> for VerifyRequest {
    type Error = &'static str;

    fn try_from(w: WireRequest) -> Result<Self, Self::Error> {
        let payload = match (w.document_text, w.document, w.digest) {
            (Some(text), None, None) => Payload::Document(text.into_bytes()),
            (None, Some(bytes), None) => Payload::Document(bytes),
            (None, None, Some(digest)) => {
                let digest = crate::hex_text::decode(digest).map_err(|_| "digest is not hex")?;
                match w.algorithm.digest() {
                    Some(d) if d.output_len() == digest.len() => Payload::Digest(digest),
                    Some(_) => return Err("digest does not have its algorithm's length"),
                    None => return Err("this algorithm signs the document itself, not a digest"),
                }
            }
            _ => return Err("exactly one of documentText, document and digest is required"),
        };
        Ok(VerifyRequest {
            v: w.v,
            id: w.id,
            payload,
            signature: w.signature,
            algorithm: w.algorithm,
            key_id: w.key_id,
            submitted_at_ms: w.submitted_at_ms,
            traceparent: w.traceparent,
        })
    }
}

impl VerifyRequest {
    /// The same request carrying its document's digest instead of the
    /// document, where its algorithm signs a digest (RSA, ECDSA); Ed25519
    /// requests and those already in digest form stay as they are.
    pub fn digested(self) -> Self {
        match (&self.payload, self.algorithm.digest()) {
            (Payload::Document(document), Some(digest)) => VerifyRequest {
                payload: Payload::Digest(digest.hash(document)),
                ..self
            },
            _ => self,
        }
    }

    /// The request as one message item. The buffer is sized for it up
    /// front (a large document is written once, not regrown and copied).
    pub fn encode(&self) -> Vec<u8> {
        let document = self.payload.as_signed().len();
        let estimate = 512 + 2 * self.signature.len() + document + document / 8;
        let mut out = Vec::with_capacity(estimate);
        serde_json::to_writer(&mut out, self).expect("a VerifyRequest always serializes");
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let request: VerifyRequest = serde_json::from_str(json_text(bytes)?)?;
        check_version(request.v)?;
        Ok(request)
    }

    /// Decodes one item of a request-queue message (see [`split_batch`]).
    pub fn decode_item(raw: &RawValue) -> Result<Self, UnreadableRequest> {
        match serde_json::from_str::<VerifyRequest>(raw.get()) {
            Ok(request) => match check_version(request.v) {
                Ok(()) => Ok(request),
                Err(error) => Err(UnreadableRequest {
                    id: Some(request.id),
                    error,
                }),
            },
            // Only an item that does not decode is read a second time, for
            // what can be said of it: its id, and whether it is newer.
            Err(e) => {
                let probe = Probe::of(raw);
                let id = probe
                    .as_ref()
                    .and_then(|p| p.id.as_deref())
                    .and_then(|id| RequestId::parse(id).ok());
                let error = match probe.and_then(|p| p.v) {
                    Some(v) if v != SCHEMA_VERSION => DecodeError::UnsupportedVersion(v),
                    _ => e.into(),
                };
                Err(UnreadableRequest { id, error })
            }
        }
    }

    /// A digest of what was asked (algorithm, key, signature, and the
    /// document or its digest, as the request carries it): two submissions
    /// with the same fingerprint ask the same question. Idempotency keys
    /// are bound to it, and a verdict names the fingerprint of the request
    /// it answers, so a gateway can tell it from a verdict on another
    /// request smuggled in under the same id. The gateway and the worker
    /// both compute it from the request as it travels, so they agree; a
    /// request in digest form has one more part (the word `digest`), so it
    /// never shares a fingerprint with one whose document is those bytes.
    /// 128 bits of SHA-256, as 32 hex digits.
    pub fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        let (signed, form): (&[u8], &[&[u8]]) = match &self.payload {
            Payload::Document(document) => (document, &[]),
            Payload::Digest(digest) => (digest, &[b"digest"]),
        };
        for part in [
            self.algorithm.name().as_bytes(),
            self.key_id
                .as_ref()
                .map_or(&b""[..], |k| k.as_str().as_bytes()),
            &self.signature,
            signed,
        ]
        .into_iter()
        .chain(form.iter().copied())
        {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        crate::hex_text::encode(&hash.finalize()[..16])
    }
}

/// A whole message as text: JSON is UTF-8 (RFC 8259), all of it, fields
/// this build ignores included. serde_json checks only the strings it
/// reads, so without this a whole-message decode would accept a message
/// that [`split_batch`] (the path the binaries read by) refuses.
fn json_text(bytes: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|e| {
        DecodeError::Json(serde::de::Error::custom(format_args!(
            "the message is not UTF-8: {e}"
        )))
    })
}

fn check_version(v: u32) -> Result<(), DecodeError> {
    if v == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion(v))
    }
}

/// A machine-readable error: a stable snake_case code and words for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// One step of a request's lifecycle, as appended to the events stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub v: u32,
    pub id: RequestId,
    /// When the step happened (ms since the epoch).
    pub at_ms: u64,
    /// Which process appended it (`gateway@host:pid`, `worker@host:pid`).
    pub source: String,
    pub kind: EventKind,
    /// The W3C `traceparent` of the span that wrote it, when its trace is
    /// not the one a gateway starts with the request's own id (a caller's
    /// trace). None: the trace whose id is the request id (see
    /// [`Event::traced`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventKind {
    /// A gateway's request was confirmed by the broker and answered 202.
    #[serde(rename_all = "camelCase")]
    Accepted {
        algorithm: Algorithm,
        key_id: Option<KeyId>,
        /// The client's `Idempotency-Key`, so every gateway can dedupe retries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
        /// [`VerifyRequest::fingerprint`], so every gateway can tell a retry
        /// (same key, same request) from a reused key (same key, other
        /// request), and a verdict on this request from one on another.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
        /// The tenant (API token name) that submitted it: only it may read
        /// the request. None on an open gateway.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
    },
    /// A worker checked the signature.
    #[serde(rename_all = "camelCase")]
    Completed {
        valid: bool,
        algorithm: Algorithm,
        key_id: KeyId,
        /// Time spent in the verification itself.
        verify_micros: u64,
        /// When the gateway submitted the request (for end-to-end latency).
        submitted_at_ms: u64,
        /// [`VerifyRequest::fingerprint`] of the request verified.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
        /// Which delivery this was and how long the request waited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delivery: Option<DeliveryInfo>,
    },
    /// A worker could not check the signature (unknown key, disabled
    /// algorithm, unreadable request, delivery limit reached).
    #[serde(rename_all = "camelCase")]
    Failed {
        error: ErrorBody,
        submitted_at_ms: u64,
        /// [`VerifyRequest::fingerprint`] of the request, when it could be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delivery: Option<DeliveryInfo>,
    },
    /// A worker dead-lettered the request (`unreadable_request`,
    /// `delivery_limit`, `expired`): it lies in `<queue>.dead`.
    #[serde(rename_all = "camelCase")]
    DeadLettered {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delivery: Option<DeliveryInfo>,
    },
    /// A gateway's replay marker: it appends one when it starts reading the
    /// stream and is caught up when it reads it back. Carries no state; the
    /// event's `id` is a nonce.
    Checkpoint,
    /// A worker says it is there: on start (`online`), every heartbeat
    /// interval, and on a graceful stop (`offline`). The event's `source` is
    /// the worker's name; its `id` is a nonce.
    Worker(WorkerBeat),
}

/// How a request reached the worker that answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryInfo {
    /// 1 for the first delivery; more after a worker died or gave it back.
    pub attempt: u32,
    /// From submission to the start of its verification.
    pub queue_wait_ms: u64,
}

/// What a worker tells of itself in a [`EventKind::Worker`] event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerBeat {
    pub state: WorkerState,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub started_at_ms: u64,
    /// Requests answered since the start (verdicts and failures).
    pub processed: u64,
    /// Of those, answered `failed`.
    pub failed: u64,
    /// Requests held right now.
    pub in_flight: u64,
    pub verify_threads: u32,
    /// The worker's heartbeat interval: it is offline once it has missed
    /// three.
    pub heartbeat_ms: u64,
    /// The keys it verifies with now (absent from workers older than key
    /// rotation: read as none).
    #[serde(default)]
    pub keys: Vec<crate::KeySummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WorkerState {
    Online,
    Heartbeat,
    Offline,
}

impl Event {
    pub fn new(id: RequestId, source: &str, kind: EventKind) -> Self {
        Event {
            v: SCHEMA_VERSION,
            id,
            at_ms: now_ms(),
            source: source.to_owned(),
            kind,
            traceparent: None,
        }
    }

    /// The same event, naming the span that wrote it, unless its trace id
    /// is the request's id: a gateway starts a request's trace with that id,
    /// so the event need not carry it (most events; 55 bytes each spared in
    /// the stream).
    pub fn traced(self, traceparent: Option<String>) -> Self {
        let own_trace = |tp: &String| {
            let mut hex = [0u8; 32];
            let id = self.id.as_uuid().simple().encode_lower(&mut hex);
            tp.get(3..35) == Some(&*id)
        };
        Event {
            traceparent: traceparent.filter(|tp| !own_trace(tp)),
            ..self
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an Event always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let event: Event = serde_json::from_str(json_text(bytes)?)?;
        check_version(event.v)?;
        Ok(event)
    }

    /// Encodes several events as one stream message (a JSON array): under
    /// load, processes append their events in batches, which costs the
    /// broker one message instead of one per event.
    pub fn encode_batch(events: &[Event]) -> Vec<u8> {
        serde_json::to_vec(events).expect("Events always serialize")
    }

    /// Decodes one item of a stream message (see [`split_batch`]). An event
    /// of a newer version or of a kind this build does not know is an error
    /// for this item alone; unknown fields are ignored.
    pub fn decode_item(raw: &RawValue) -> Result<Self, DecodeError> {
        match serde_json::from_str::<Event>(raw.get()) {
            Ok(event) => check_version(event.v).map(|()| event),
            // A newer version may have a kind this build does not know:
            // say so rather than "malformed".
            Err(e) => match Probe::of(raw).and_then(|p| p.v) {
                Some(v) if v != SCHEMA_VERSION => Err(DecodeError::UnsupportedVersion(v)),
                _ => Err(e.into()),
            },
        }
    }

    /// Decodes every item of a stream message, each on its own.
    pub fn decode_items(bytes: &[u8]) -> Result<Vec<Result<Self, DecodeError>>, DecodeError> {
        Ok(split_batch(bytes)?
            .into_iter()
            .map(Event::decode_item)
            .collect())
    }

    /// `completed` and `failed` end a request; the first one seen wins.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.kind,
            EventKind::Completed { .. } | EventKind::Failed { .. }
        )
    }

    /// Events only a trusted worker may write: verdicts, and what workers
    /// say of themselves.
    pub fn is_from_worker(&self) -> bool {
        self.is_terminal()
            || matches!(
                self.kind,
                EventKind::Worker(_) | EventKind::DeadLettered { .. }
            )
    }
}

/// A process identity for [`Event::source`]: `role@host:pid`.
pub fn process_identity(role: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{role}@{host}:{}", std::process::id())
}

mod hex_opt {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(
        bytes: &Option<&[u8]>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => serializer.serialize_str(&crate::hex_text::encode(b)),
            None => serializer.serialize_none(),
        }
    }
}

mod base64_opt {
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        bytes: &Option<&[u8]>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => serializer.serialize_str(&STANDARD.encode(b)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?;
        text.map(|t| {
            STANDARD
                .decode(t.as_bytes())
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `json` (an object) with an unknown first field whose string value
    /// holds a byte that is not UTF-8.
    fn with_unread_invalid_utf8(json: &[u8]) -> Vec<u8> {
        let mut bytes = br#"{"later":""#.to_vec();
        bytes.push(0x80);
        bytes.extend_from_slice(br#"","#);
        bytes.extend_from_slice(&json[1..]);
        bytes
    }

    #[test]
    fn an_event_names_its_trace_only_when_it_is_not_the_requests_own() {
        let id = RequestId::new();
        let own = format!("00-{}-00f067aa0ba902b7-01", id.as_uuid().simple());
        let theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let event = |tp: &str| Event::new(id, "w", EventKind::Checkpoint).traced(Some(tp.into()));
        assert_eq!(event(&own).traceparent, None);
        assert!(!String::from_utf8(event(&own).encode())
            .unwrap()
            .contains("traceparent"));
        assert_eq!(event(theirs).traceparent.as_deref(), Some(theirs));
    }

    #[test]
    fn request_round_trips_and_rejects_other_versions() {
        let request = VerifyRequest {
            v: SCHEMA_VERSION,
            id: RequestId::new(),
            payload: Payload::Document(b"hello\x00\xff".to_vec()),
            signature: vec![0xde, 0xad],
            algorithm: Algorithm::Sha384WithRsaPss,
            key_id: Some(KeyId::new("k1")),
            submitted_at_ms: 42,
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let bytes = request.encode();
        assert_eq!(VerifyRequest::decode(&bytes).unwrap(), request);
        let text = VerifyRequest {
            payload: Payload::Document("héllo".as_bytes().to_vec()),
            ..request.clone()
        };
        let encoded = String::from_utf8(text.encode()).unwrap();
        assert!(encoded.contains(r#""documentText":"héllo""#), "{encoded}");
        assert_eq!(VerifyRequest::decode(encoded.as_bytes()).unwrap(), text);
        let batch = format!("[{encoded},{encoded}]");
        let decoded: Vec<_> = split_batch(batch.as_bytes())
            .unwrap()
            .into_iter()
            .map(|raw| VerifyRequest::decode_item(raw).unwrap())
            .collect();
        assert_eq!(decoded, [text.clone(), text.clone()]);
        let single = split_batch(encoded.as_bytes()).unwrap();
        assert_eq!(VerifyRequest::decode_item(single[0]).unwrap(), text);
        let both = encoded.replace(
            r#""documentText":"héllo""#,
            r#""documentText":"a","document":"YQ==""#,
        );
        assert!(VerifyRequest::decode(both.as_bytes()).is_err());

        let mut v2: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v2["v"] = 2.into();
        assert!(matches!(
            VerifyRequest::decode(v2.to_string().as_bytes()),
            Err(DecodeError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            VerifyRequest::decode(b"not json"),
            Err(DecodeError::Json(_))
        ));

        // Invalid UTF-8 in a field nobody reads: refused by the whole-message
        // decoders as by split_batch (found by tests/wire_props.rs).
        let unread = with_unread_invalid_utf8(&bytes);
        assert!(split_batch(&unread).is_err());
        assert!(matches!(
            VerifyRequest::decode(&unread),
            Err(DecodeError::Json(e)) if e.to_string().contains("not UTF-8")
        ));
        let event = Event::new(request.id, "w", EventKind::Checkpoint).encode();
        assert!(Event::decode(&event).is_ok());
        assert!(Event::decode(&with_unread_invalid_utf8(&event)).is_err());
    }

    #[test]
    fn digest_form_round_trips_and_is_checked_when_read() {
        let request = sample_request().digested();
        let Payload::Digest(digest) = &request.payload else {
            panic!("{request:?}")
        };
        assert_eq!(digest, &crate::Digest::Sha256.hash(b"doc"));
        let encoded = String::from_utf8(request.encode()).unwrap();
        assert!(
            encoded.contains(&format!(r#""digest":"{}""#, hex::encode(digest))),
            "{encoded}"
        );
        assert!(!encoded.contains("document"), "{encoded}");
        assert_eq!(VerifyRequest::decode(encoded.as_bytes()).unwrap(), request);
        // Digesting twice changes nothing; Ed25519 keeps its document.
        assert_eq!(request.clone().digested(), request);
        let ed = VerifyRequest {
            algorithm: Algorithm::Ed25519,
            ..sample_request()
        };
        assert_eq!(ed.clone().digested(), ed);

        let json: serde_json::Value = serde_json::from_str(&encoded).unwrap();
        let with = |field: &str, value: serde_json::Value| {
            let mut j = json.clone();
            j[field] = value;
            VerifyRequest::decode(j.to_string().as_bytes())
        };
        let short = hex::encode(&digest[..31]);
        for bad in [
            with("digest", short.into()),
            with("digest", "zz".into()),
            with("algorithm", "SHA384withRSA".into()),
            with("algorithm", "Ed25519".into()),
            with("documentText", "doc".into()),
        ] {
            assert!(matches!(bad, Err(DecodeError::Json(_))), "{bad:?}");
        }
    }

    #[test]
    fn events_round_trip() {
        let id = RequestId::new();
        for kind in [
            EventKind::Accepted {
                algorithm: Algorithm::DEFAULT,
                key_id: None,
                idempotency_key: Some("abc".into()),
                fingerprint: Some("00ff".into()),
                tenant: Some("alice".into()),
            },
            EventKind::Completed {
                valid: true,
                algorithm: Algorithm::DEFAULT,
                key_id: KeyId::new("default"),
                verify_micros: 20,
                submitted_at_ms: 1,
                fingerprint: Some("00ff".into()),
                delivery: Some(DeliveryInfo {
                    attempt: 2,
                    queue_wait_ms: 3,
                }),
            },
            EventKind::Failed {
                error: ErrorBody {
                    code: "unknown_key".into(),
                    message: "no key".into(),
                },
                submitted_at_ms: 1,
                fingerprint: None,
                delivery: None,
            },
            EventKind::DeadLettered {
                reason: "expired".into(),
                delivery: None,
            },
            EventKind::Checkpoint,
            EventKind::Worker(WorkerBeat {
                state: WorkerState::Heartbeat,
                host: "h".into(),
                pid: 7,
                version: "0.1.0".into(),
                started_at_ms: 1,
                processed: 10,
                failed: 1,
                in_flight: 2,
                verify_threads: 2,
                heartbeat_ms: 5000,
                keys: vec![crate::KeySummary {
                    key_id: KeyId::new("k"),
                    family: crate::KeyFamily::Ec,
                    detail: "P-256".into(),
                    fingerprint: "ab".repeat(32),
                }],
            }),
        ] {
            let event = Event::new(id, "test", kind).traced(Some(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            ));
            assert_eq!(Event::decode(&event.encode()).unwrap(), event);
            let single = Event::decode_items(&event.encode()).unwrap();
            assert_eq!(single.len(), 1);
            assert_eq!(single[0].as_ref().unwrap(), &event);
            let batch = [event.clone(), event.clone()];
            let decoded: Vec<Event> = Event::decode_items(&Event::encode_batch(&batch))
                .unwrap()
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(decoded, batch);
        }
    }

    fn sample_request() -> VerifyRequest {
        VerifyRequest {
            v: SCHEMA_VERSION,
            id: RequestId::new(),
            payload: Payload::Document(b"doc".to_vec()),
            signature: vec![1, 2],
            algorithm: Algorithm::DEFAULT,
            key_id: None,
            submitted_at_ms: 7,
            traceparent: None,
        }
    }

    #[test]
    fn one_unreadable_item_spoils_only_itself() {
        let good = sample_request();
        let bad_id = RequestId::new();
        let good_json = String::from_utf8(good.encode()).unwrap();
        // Unknown fields are ignored; a bad signature, a newer version and
        // an item with no id are unreadable, each on its own.
        let with_extra = good_json.replacen('{', r#"{"addedLater":[1,2],"#, 1);
        let message = format!(
            r#"[{good_json},{{"v":1,"id":"{bad_id}","signature":"zz"}},{with_extra},{{"v":9,"id":"{bad_id}"}},42]"#
        );
        let items = split_batch(message.as_bytes()).unwrap();
        let decoded: Vec<_> = items
            .iter()
            .map(|r| VerifyRequest::decode_item(r))
            .collect();
        assert_eq!(decoded[0].as_ref().unwrap(), &good);
        assert_eq!(decoded[1].as_ref().unwrap_err().id, Some(bad_id));
        assert_eq!(decoded[2].as_ref().unwrap(), &good);
        let newer = decoded[3].as_ref().unwrap_err();
        assert_eq!(newer.id, Some(bad_id));
        assert!(matches!(newer.error, DecodeError::UnsupportedVersion(9)));
        assert_eq!(decoded[4].as_ref().unwrap_err().id, None);
        // The readable items re-join into a message that decodes the same.
        let rejoined = join_batch([items[0], items[2]]);
        let again = split_batch(&rejoined).unwrap();
        assert_eq!(VerifyRequest::decode_item(again[1]).unwrap(), good);
        assert!(split_batch(b"not json").is_err());
    }

    #[test]
    fn unknown_event_kinds_and_newer_versions_are_skipped_alone() {
        let id = RequestId::new();
        let known = Event::new(id, "w", EventKind::Checkpoint);
        let known_json = String::from_utf8(known.encode()).unwrap();
        let message = format!(
            r#"[{{"v":1,"id":"{id}","atMs":1,"source":"w","kind":{{"rerouted":{{"to":"x"}}}}}},{{"v":2,"id":"{id}","atMs":1,"source":"w","kind":"checkpoint"}},{known_json}]"#
        );
        let items = Event::decode_items(message.as_bytes()).unwrap();
        assert!(matches!(items[0], Err(DecodeError::Json(_))));
        assert!(matches!(items[1], Err(DecodeError::UnsupportedVersion(2))));
        assert_eq!(items[2].as_ref().unwrap(), &known);
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let a = sample_request();
        // The id, the time and the trace are not part of the question asked.
        let same = VerifyRequest {
            id: RequestId::new(),
            submitted_at_ms: 8,
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            ..a.clone()
        };
        assert_eq!(a.fingerprint(), same.fingerprint());
        let other_doc = VerifyRequest {
            payload: Payload::Document(b"doc!".to_vec()),
            ..a.clone()
        };
        let other_key = VerifyRequest {
            key_id: Some(KeyId::new("k")),
            ..a.clone()
        };
        // Length prefixes: moving a byte from one field to the next differs.
        let shifted = VerifyRequest {
            signature: vec![1],
            payload: Payload::Document(b"\x02doc".to_vec()),
            ..a.clone()
        };
        // The digest form: the same for the same document, never the same
        // as a document of those bytes.
        let digested = a.clone().digested();
        assert_eq!(digested.fingerprint(), a.clone().digested().fingerprint());
        let Payload::Digest(digest) = &digested.payload else {
            panic!("{digested:?}")
        };
        let document_of_digest = VerifyRequest {
            payload: Payload::Document(digest.clone()),
            ..a.clone()
        };
        for other in [other_doc.clone(), other_key, shifted, document_of_digest] {
            assert_ne!(a.fingerprint(), other.fingerprint());
            assert_ne!(digested.fingerprint(), other.fingerprint(), "{other:?}");
        }
        assert_ne!(a.fingerprint(), digested.fingerprint());
        assert_ne!(digested.fingerprint(), other_doc.digested().fingerprint());
    }

    #[test]
    fn request_ids_must_be_hyphenated_uuids() {
        let id = RequestId::new();
        assert_eq!(RequestId::parse(&id.to_string()).unwrap(), id);
        let simple = id.as_uuid().simple().to_string();
        assert!(RequestId::parse(&simple).is_err());
        assert!(RequestId::parse(&format!("{{{id}}}")).is_err());
        assert!(RequestId::parse("not-a-uuid-at-all-but-36-chars-long!").is_err());
    }
}
