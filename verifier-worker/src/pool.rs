//! Where verifications run. A digest or a small document is verified on the runtime's
//! own thread: the check (an RSA-2048 verification is ~20 µs with AWS-LC,
//! hashing 16 KiB ~10 µs) costs less than handing it to another thread and
//! back, which was a quarter of a worker's CPU in futex wake-ups
//! (docs/benchmarks.md, flame graphs). A larger one goes to tokio's blocking
//! threads, at most `threads` at once, so the consume loop and acks never
//! wait behind it. Either way a panic in the check is caught and reported,
//! never taking the worker down.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use verify_core::{Verdict, Verifier, VerifyError, VerifyRequest};

/// Largest document verified inline.
pub const INLINE_MAX_BYTES: usize = 16 * 1024;

/// The check panicked (a bug); its message.
#[derive(Debug, thiserror::Error)]
#[error("the verification panicked: {0}")]
pub struct Panicked(String);

#[derive(Clone)]
pub struct VerifyPool {
    verifier: Arc<Verifier>,
    permits: Arc<Semaphore>,
}

impl VerifyPool {
    pub fn new(verifier: Arc<Verifier>, threads: usize) -> Self {
        VerifyPool {
            verifier,
            permits: Arc::new(Semaphore::new(threads)),
        }
    }

    /// Verifies `request`; returns the outcome and the time the check took.
    /// `Err` only if the check panicked (a bug, reported as a failed result
    /// rather than taking the worker down).
    pub async fn verify(
        &self,
        request: Arc<VerifyRequest>,
    ) -> Result<(Result<Verdict, VerifyError>, Duration), Panicked> {
        if request.payload.as_signed().len() <= INLINE_MAX_BYTES {
            return check(&self.verifier, &request);
        }
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let verifier = self.verifier.clone();
        tokio::task::spawn_blocking(move || check(&verifier, &request))
            .await
            .unwrap_or_else(|e| Err(Panicked(e.to_string())))
    }
}

fn check(
    verifier: &Verifier,
    request: &VerifyRequest,
) -> Result<(Result<Verdict, VerifyError>, Duration), Panicked> {
    let started = Instant::now();
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        verifier.verify_signed(
            request.key_id.as_ref(),
            request.algorithm,
            request.payload.as_signed(),
            &request.signature,
        )
    }))
    .map(|outcome| (outcome, started.elapsed()))
    .map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        Panicked(message)
    })
}
