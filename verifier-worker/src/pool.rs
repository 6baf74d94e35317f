//! Verification off the reactor: at most `threads` verifications run at
//! once, on tokio's blocking threads, so the consume loop and acks never
//! wait behind RSA arithmetic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use verify_core::{Verdict, Verifier, VerifyError, VerifyRequest};

#[derive(Clone)]
pub struct VerifyPool {
    verifier: Arc<Verifier>,
    permits: Arc<Semaphore>,
}

impl VerifyPool {
    pub fn new(verifier: Verifier, threads: usize) -> Self {
        VerifyPool {
            verifier: Arc::new(verifier),
            permits: Arc::new(Semaphore::new(threads)),
        }
    }

    /// Verifies `request`; returns the outcome and the time the check took.
    /// `Err` only if the verification thread panicked (a bug, reported as a
    /// failed result rather than taking the worker down).
    pub async fn verify(
        &self,
        request: Arc<VerifyRequest>,
    ) -> Result<(Result<Verdict, VerifyError>, Duration), tokio::task::JoinError> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let verifier = self.verifier.clone();
        let job = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let outcome = verifier.verify(
                request.key_id.as_ref(),
                request.algorithm,
                &request.document,
                &request.signature,
            );
            (outcome, started.elapsed())
        });
        job.await
    }
}
