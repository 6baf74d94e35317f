//! Idempotency keys held while their first request is in flight.
//!
//! Invariant: on one gateway, at most one request per `Idempotency-Key` is
//! being submitted at any moment. A second POST with the key waits for the
//! first to settle and then reads its outcome from the store (the same id,
//! or 422 for another body); if the first was refused, the second submits
//! afresh. Across gateways the key is known once the first request's
//! `accepted` event has reached them (see the README).

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{Mutex, OwnedMutexGuard};

#[derive(Default)]
pub struct KeyLocks {
    held: DashMap<String, Arc<Mutex<()>>>,
}

/// The right to submit under one key; released when dropped. Owned, so a
/// submission can keep it after its client has gone away.
pub struct KeyGuard {
    locks: Arc<KeyLocks>,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    /// Waits (at most `timeout`) until no other request with `key` is in
    /// flight on this gateway; `None` if it still is then.
    pub async fn lock(self: &Arc<Self>, key: &str, timeout: Duration) -> Option<KeyGuard> {
        let mutex = self.held.entry(key.to_owned()).or_default().clone();
        let guard = tokio::time::timeout(timeout, mutex.lock_owned()).await;
        let guard = KeyGuard {
            locks: self.clone(),
            key: key.to_owned(),
            guard: guard.ok(),
        };
        // On timeout the guard is dropped here, cleaning up as it goes.
        guard.guard.is_some().then_some(guard)
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        // The last one out removes the entry: the map holds only keys in use.
        self.locks
            .held
            .remove_if(&self.key, |_, m| Arc::strong_count(m) == 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_nothing_left_behind() {
        let locks = Arc::new(KeyLocks::default());
        let first = locks.lock("k", Duration::from_secs(1)).await.unwrap();
        assert!(locks.lock("k", Duration::from_millis(50)).await.is_none());
        let other = locks.lock("other", Duration::from_millis(50)).await;
        assert!(other.is_some());
        drop(other);
        drop(first);
        assert!(locks.lock("k", Duration::from_millis(50)).await.is_some());
        assert!(locks.is_empty());
    }
}
