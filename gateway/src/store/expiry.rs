//! Which ids expire when: the status store files each new entry's id under
//! the second it expires in, so expiring (and `MAX_RESULTS`'s early
//! expiry) reads only the seconds that are due, never the whole store.
//!
//! Invariant: every entry of the store is filed here under its own expiry
//! second until a sweep or an eviction takes that second; an id taken is
//! removed only if the entry found still expires then.

use std::collections::BTreeMap;

use verify_core::RequestId;

/// Ids by the second they expire in (seconds since [`super::Store`]'s epoch).
/// A filing is taken with its second; the entry found for it then may be
/// gone or another one (an id accepted again), so every removal checks
/// the entry it finds.
#[derive(Default)]
pub(super) struct ExpiryIndex {
    seconds: std::sync::Mutex<BTreeMap<u32, Vec<RequestId>>>,
}

impl ExpiryIndex {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Vec<RequestId>>> {
        self.seconds.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn add(&self, second: u32, id: RequestId) {
        let mut seconds = self.lock();
        let mut newest = seconds.last_entry();
        match newest.as_mut() {
            Some(newest) if *newest.key() == second => newest.get_mut().push(id),
            _ => {
                // A later second begins: the one before is (nearly always)
                // complete, so it gives back what its growth left spare.
                if let Some(mut newest) = newest.filter(|n| *n.key() < second) {
                    newest.get_mut().shrink_to_fit();
                }
                seconds.entry(second).or_default().push(id);
            }
        }
    }

    /// Takes the ids of every second up to `second`, inclusive.
    pub(super) fn take_due(&self, second: u32) -> Vec<Vec<RequestId>> {
        let mut seconds = self.lock();
        let later = seconds.split_off(&second.saturating_add(1));
        std::mem::replace(&mut *seconds, later)
            .into_values()
            .collect()
    }

    /// Takes up to `n` ids from the oldest seconds (the first filed first),
    /// each with its second.
    pub(super) fn take_oldest(&self, n: usize) -> Vec<(u32, RequestId)> {
        let mut seconds = self.lock();
        let mut taken = Vec::with_capacity(n);
        while taken.len() < n {
            let Some(mut oldest) = seconds.first_entry() else {
                break;
            };
            let second = *oldest.key();
            let ids = oldest.get_mut();
            let k = ids.len().min(n - taken.len());
            taken.extend(ids.drain(..k).map(|id| (second, id)));
            if ids.is_empty() {
                oldest.remove();
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_seconds_are_taken_whole_and_the_oldest_ids_first() {
        let index = ExpiryIndex::default();
        let ids: Vec<RequestId> = (0..6).map(|_| RequestId::new()).collect();
        // Filed out of order too: an event stamped a little earlier.
        index.add(10, ids[0]);
        index.add(10, ids[1]);
        index.add(12, ids[2]);
        index.add(11, ids[3]);
        index.add(12, ids[4]);
        index.add(13, ids[5]);

        assert_eq!(
            index.take_oldest(3),
            vec![(10, ids[0]), (10, ids[1]), (11, ids[3])]
        );
        assert!(index.take_due(9).is_empty(), "nothing is due before 10");
        assert_eq!(index.take_due(12), vec![vec![ids[2], ids[4]]]);
        assert_eq!(index.take_oldest(5), vec![(13, ids[5])]);
        assert!(index.lock().is_empty());
    }
}
