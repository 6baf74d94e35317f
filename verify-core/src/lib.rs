//! verify-core: what the gateway and the verifier-worker must agree on.
//!
//! - [`algorithm`]: the Java algorithm names clients send, parsed once.
//! - [`keys`]: the key registry (RSA, EC and Ed25519 keys as SPKI / PKCS#1 /
//!   X.509, PEM or DER), parsed once.
//! - [`backend`]: the pure-Rust crates and the fast AWS-LC backend behind one API.
//! - [`signed`]: what a signature is checked against (the document, or its digest).
//! - [`verifier`]: key resolution, legacy policy and the verdict.
//! - [`message`]: the versioned wire messages and the request id.
//! - [`topology`]: queue names derived from the request-queue name.
//!
//! No tokio, no lapin: the crate does no I/O beyond reading key files.

pub mod algorithm;
pub mod backend;
pub mod encoding;
pub mod hex_text;
pub mod keys;
pub mod message;
pub mod signed;
pub mod topology;
pub mod verifier;

pub use algorithm::{
    Algorithm, Curve, Digest, KeyFamily, Padding, Scheme, SignatureEncoding, UnknownAlgorithm,
};
pub use backend::{Backend, Used};
pub use keys::{
    KeyId, KeyLoadError, KeyParseError, KeyRegistry, KeySummary, PublicKey, DEFAULT_MIN_RSA_BITS,
};
pub use message::{
    join_batch, now_ms, process_identity, split_batch, BadRequestId, DecodeError, DeliveryInfo,
    ErrorBody, Event, EventKind, Payload, RequestId, UnreadableRequest, VerifyRequest, WorkerBeat,
    WorkerState, SCHEMA_VERSION,
};
pub use signed::Signed;
pub use topology::{Topology, DEFAULT_REQUEST_QUEUE};
pub use verifier::{Verdict, Verifier, VerifyError};
