//! The common face of the two timer structures, so one benchmark drives both.
//! See `benches/timers.rs` and `scripts/bench-timers.sh`.

use std::time::{Duration, Instant};

use stage03_timer_list::{TimerId as ListId, TimerList};
use stage04_min_heap::{TimerHeap, TimerId as HeapId};

/// The operations the event loop performs on its timers.
pub trait Timers {
    type Id: Copy;
    fn insert(&mut self, deadline: Instant, value: u64) -> Self::Id;
    fn adjust(&mut self, id: Self::Id, deadline: Instant);
    fn remove(&mut self, id: Self::Id);
    fn pop_expired(&mut self, now: Instant) -> Option<u64>;
}

impl Timers for TimerList<u64> {
    type Id = ListId;
    fn insert(&mut self, deadline: Instant, value: u64) -> ListId {
        TimerList::insert(self, deadline, value)
    }
    fn adjust(&mut self, id: ListId, deadline: Instant) {
        TimerList::adjust(self, id, deadline)
    }
    fn remove(&mut self, id: ListId) {
        TimerList::remove(self, id);
    }
    fn pop_expired(&mut self, now: Instant) -> Option<u64> {
        TimerList::pop_expired(self, now)
    }
}

impl Timers for TimerHeap<u64> {
    type Id = HeapId;
    fn insert(&mut self, deadline: Instant, value: u64) -> HeapId {
        TimerHeap::insert(self, deadline, value)
    }
    fn adjust(&mut self, id: HeapId, deadline: Instant) {
        TimerHeap::adjust(self, id, deadline)
    }
    fn remove(&mut self, id: HeapId) {
        TimerHeap::remove(self, id);
    }
    fn pop_expired(&mut self, now: Instant) -> Option<u64> {
        TimerHeap::pop_expired(self, now)
    }
}

/// `n` timers one millisecond apart from `base`, as n idle connections
/// accepted one a millisecond would have. Inserted latest first, so the
/// list's walk from the head ends at once and filling it is O(n), not
/// O(n²): the set-up must not be what takes the time.
pub fn filled<T: Timers + Default>(n: usize, base: Instant) -> (T, Vec<T::Id>) {
    let mut timers = T::default();
    let mut ids = Vec::with_capacity(n);
    for i in (0..n).rev() {
        ids.push(timers.insert(base + Duration::from_millis(i as u64), i as u64));
    }
    ids.reverse();
    (timers, ids)
}

/// A tiny deterministic generator, so every run picks the same connections.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expires_in_order<T: Timers + Default>() {
        let base = Instant::now();
        let (mut timers, _) = filled::<T>(100, base);
        let later = base + Duration::from_secs(1);
        let got: Vec<u64> = std::iter::from_fn(|| timers.pop_expired(later)).collect();
        assert_eq!(got, (0..100).collect::<Vec<u64>>());
    }

    #[test]
    fn both_structures_fill_and_expire_in_deadline_order() {
        expires_in_order::<TimerList<u64>>();
        expires_in_order::<TimerHeap<u64>>();
    }
}
