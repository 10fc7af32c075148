//! Idle timers in a binary min-heap with position handles.
//!
//! The heap holds entry indices ordered by deadline; each entry remembers
//! where it sits in the heap, so a connection's [`TimerId`] finds its timer
//! in O(1) and moving or removing it costs one sift, O(log n). This is the
//! design of the prefork server this repository compares against, and of
//! libev (which uses a 4-ary heap for fewer cache misses).

use std::time::Instant;

/// A handle to one timer, returned by [`TimerHeap::insert`]. Valid until the
/// timer is removed or popped; the owner must then forget it, because its
/// index may be reused by a later insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerId(usize);

const NOT_IN_HEAP: usize = usize::MAX;

struct Entry<T> {
    deadline: Instant,
    /// Breaks ties: among equal deadlines the timer set first expires
    /// first, as in stage03's list, so both behave the same.
    seq: u64,
    value: T,
    /// Where this entry sits in `heap`, or NOT_IN_HEAP once removed.
    pos: usize,
}

// ANCHOR: heap
/// Timers ordered by deadline, earliest at the root.
///
/// The trade-off against stage03's sorted list: finding the earliest stays
/// O(1) (the root), popping it becomes O(log n) instead of O(1), and moving
/// a timer (the common operation: every read or write moves one) becomes
/// O(log n) instead of O(n). Beyond a few dozen connections the heap wins.
pub struct TimerHeap<T> {
    /// Entry indices in heap order: `heap[i]` is no later than its children
    /// `heap[2i+1]` and `heap[2i+2]`.
    heap: Vec<usize>,
    /// The entries, by index (a slab); `free` lists the unused ones.
    entries: Vec<Entry<T>>,
    free: Vec<usize>,
    next_seq: u64,
}
// ANCHOR_END: heap

impl<T: Copy> Default for TimerHeap<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy> TimerHeap<T> {
    pub fn new() -> Self {
        TimerHeap {
            heap: Vec::new(),
            entries: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Adds a timer. O(log n).
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        let seq = self.bump_seq();
        let entry = Entry {
            deadline,
            seq,
            value,
            pos: self.heap.len(),
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.entries[index] = entry;
                index
            }
            None => {
                self.entries.push(entry);
                self.entries.len() - 1
            }
        };
        self.heap.push(index);
        self.sift_up(self.heap.len() - 1);
        TimerId(index)
    }

    // ANCHOR: adjust
    /// Moves a timer to a new deadline. O(log n): the handle gives its
    /// position at once, and one sift restores the order.
    pub fn adjust(&mut self, id: TimerId, deadline: Instant) {
        let Some(pos) = self.position(id) else {
            return;
        };
        let seq = self.bump_seq();
        let entry = &mut self.entries[id.0];
        entry.deadline = deadline;
        entry.seq = seq;
        // A later deadline (the usual case) can only move down, an earlier
        // one only up; each sift stops at once if there is nothing to do.
        self.sift_up(pos);
        self.sift_down(self.entries[id.0].pos);
    }
    // ANCHOR_END: adjust

    /// Removes a timer and returns its value. O(log n): the last leaf takes
    /// its place and is sifted to where it belongs.
    pub fn remove(&mut self, id: TimerId) -> Option<T> {
        let pos = self.position(id)?;
        let last = self.heap.len() - 1;
        self.swap(pos, last);
        self.heap.pop();
        if pos < self.heap.len() {
            self.sift_up(pos);
            self.sift_down(self.entries[self.heap[pos]].pos);
        }
        let entry = &mut self.entries[id.0];
        entry.pos = NOT_IN_HEAP;
        self.free.push(id.0);
        Some(entry.value)
    }

    /// The earliest deadline. O(1).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.first().map(|&i| self.entries[i].deadline)
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    /// O(log n).
    pub fn pop_expired(&mut self, now: Instant) -> Option<T> {
        let &root = self.heap.first()?;
        if self.entries[root].deadline > now {
            return None;
        }
        self.remove(TimerId(root))
    }

    fn bump_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn position(&self, id: TimerId) -> Option<usize> {
        let pos = self.entries.get(id.0)?.pos;
        (pos != NOT_IN_HEAP).then_some(pos)
    }

    fn key(&self, pos: usize) -> (Instant, u64) {
        let e = &self.entries[self.heap[pos]];
        (e.deadline, e.seq)
    }

    /// Swaps two heap slots and keeps both entries' positions right.
    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.entries[self.heap[a]].pos = a;
        self.entries[self.heap[b]].pos = b;
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.key(parent) <= self.key(pos) {
                break;
            }
            self.swap(parent, pos);
            pos = parent;
        }
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let left = 2 * pos + 1;
            if left >= self.heap.len() {
                break;
            }
            let right = left + 1;
            let child = if right < self.heap.len() && self.key(right) < self.key(left) {
                right
            } else {
                left
            };
            if self.key(pos) <= self.key(child) {
                break;
            }
            self.swap(pos, child);
            pos = child;
        }
    }

    /// The values in expiry order, earliest first (for tests and debugging;
    /// O(n log n)).
    pub fn values_in_order(&self) -> Vec<T> {
        let mut all: Vec<&Entry<T>> = self.heap.iter().map(|&i| &self.entries[i]).collect();
        all.sort_by_key(|e| (e.deadline, e.seq));
        all.into_iter().map(|e| e.value).collect()
    }

    /// Checks the heap order and that every handle points at its entry.
    /// For tests; panics on a broken invariant.
    pub fn check_invariants(&self) {
        for (pos, &index) in self.heap.iter().enumerate() {
            let said = self.entries[index].pos;
            assert_eq!(
                said, pos,
                "stale position: entry {index} sits at heap[{pos}] but its pos says {said} \
                 (a swap must update both entries' pos)"
            );
            if pos > 0 {
                assert!(
                    self.key((pos - 1) / 2) <= self.key(pos),
                    "heap order broken at heap[{pos}]: its parent is due later"
                );
            }
        }
        let live = self.entries.iter().filter(|e| e.pos != NOT_IN_HEAP).count();
        assert_eq!(live, self.heap.len(), "entries in the heap");
        assert_eq!(
            self.entries.len(),
            self.heap.len() + self.free.len(),
            "leaked entries: {} entries, {} in the heap and {} free \
             (remove must put the entry on the free list)",
            self.entries.len(),
            self.heap.len(),
            self.free.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use std::time::Duration;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let base = Instant::now();
        let mut list = TimerHeap::new();
        list.insert(at(base, 30), 'c');
        list.insert(at(base, 10), 'a');
        list.insert(at(base, 20), 'b');
        assert_eq!(list.next_deadline(), Some(at(base, 10)));
        assert_eq!(list.pop_expired(at(base, 5)), None);
        assert_eq!(list.pop_expired(at(base, 20)), Some('a'));
        assert_eq!(
            list.pop_expired(at(base, 20)),
            Some('b'),
            "a timer due exactly now was not popped: due means deadline <= now"
        );
        assert_eq!(list.pop_expired(at(base, 20)), None);
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn adjust_moves_both_ways_and_remove_unlinks() {
        let base = Instant::now();
        let mut list = TimerHeap::new();
        let a = list.insert(at(base, 10), 'a');
        let b = list.insert(at(base, 20), 'b');
        let c = list.insert(at(base, 30), 'c');
        list.adjust(a, at(base, 40));
        list.check_invariants();
        assert_eq!(list.values_in_order(), vec!['b', 'c', 'a']);
        list.adjust(c, at(base, 5));
        list.check_invariants();
        assert_eq!(list.values_in_order(), vec!['c', 'b', 'a']);
        assert_eq!(list.remove(b), Some('b'));
        assert_eq!(list.remove(b), None, "a removed timer stays removed");
        list.check_invariants();
        assert_eq!(list.values_in_order(), vec!['c', 'a']);
    }

    /// Deadlines 1, 4, 2, 5, 3 make a heap whose right child (2) is due
    /// before the left (3) once the root is popped: sifting down must swap
    /// with the smaller child, or 3 comes out before 2.
    #[test]
    fn sift_down_swaps_with_the_smaller_child() {
        let base = Instant::now();
        let mut list = TimerHeap::new();
        for ms in [1, 4, 2, 5, 3] {
            list.insert(at(base, ms), ms);
        }
        let mut popped = Vec::new();
        while let Some(ms) = list.pop_expired(at(base, 10)) {
            list.check_invariants();
            popped.push(ms);
        }
        assert_eq!(
            popped,
            vec![1, 2, 3, 4, 5],
            "timers came out of deadline order: sift down must swap with the smaller child"
        );
    }

    /// Every insert of a timer due before the others sifts it up to the
    /// root: each swap on the way must leave every entry's `pos` right.
    #[test]
    fn every_position_handle_stays_right_as_timers_sift() {
        let base = Instant::now();
        let mut list = TimerHeap::new();
        let ids: Vec<TimerId> = (0..8)
            .rev()
            .map(|ms| list.insert(at(base, ms), ms))
            .collect();
        list.check_invariants();
        // Each handle still finds its own timer.
        for (k, &id) in ids.iter().enumerate().rev() {
            assert_eq!(
                list.remove(id),
                Some(7 - k as u64),
                "the handle of timer {k}"
            );
            list.check_invariants();
        }
    }

    /// A server inserts and removes a timer per connection for as long as
    /// it runs: the entries of removed timers must be reused, or memory
    /// grows with every connection ever made.
    #[test]
    fn insert_and_remove_cycles_reuse_the_entries() {
        let base = Instant::now();
        let mut list = TimerHeap::new();
        for round in 0..1000 {
            let a = list.insert(at(base, 10), round);
            let b = list.insert(at(base, 5), round);
            assert_eq!(list.remove(a), Some(round));
            assert_eq!(list.pop_expired(at(base, 5)), Some(round));
            assert_eq!(list.remove(b), None);
        }
        list.check_invariants();
        assert!(
            list.entries.len() <= 2,
            "leaked entries: {} entries after 1000 insert/remove cycles of 2 timers \
             (remove must put the entry on the free list)",
            list.entries.len()
        );
    }

    /// Timers due at the same instant expire in the order they were last
    /// set, as in stage03's list: an adjust counts as setting one anew.
    #[test]
    fn equal_deadlines_expire_in_the_order_they_were_last_set() {
        let base = Instant::now();
        let mut list = TimerHeap::new();
        let a = list.insert(at(base, 10), 'a');
        list.insert(at(base, 10), 'b');
        list.adjust(a, at(base, 10));
        assert_eq!(
            list.values_in_order(),
            vec!['b', 'a'],
            "an adjusted timer kept its old place among equal deadlines: \
             adjust must take a fresh seq"
        );
    }

    /// One step of the property test below.
    #[derive(Clone, Debug)]
    enum Op {
        /// A new timer, due `in_ms` from now.
        Insert { in_ms: u64 },
        /// One of the live timers (picked by `which`) moved to `in_ms` from
        /// now; nothing if there is none.
        Adjust { which: Index, in_ms: u64 },
        /// One of the live timers removed; nothing if there is none.
        Remove { which: Index },
        /// `ms` pass, then every timer due is popped.
        Expire { ms: u64 },
    }

    /// Operations in the proportions of a busy server: inserts and adjusts
    /// most often, then expiry, then removal.
    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..50u64).prop_map(|in_ms| Op::Insert { in_ms }),
            3 => (any::<Index>(), 0..50u64).prop_map(|(which, in_ms)| Op::Adjust { which, in_ms }),
            1 => any::<Index>().prop_map(|which| Op::Remove { which }),
            2 => (0..20u64).prop_map(|ms| Op::Expire { ms }),
        ]
    }

    proptest! {
        /// Property: after any sequence of insert / adjust / remove / expire,
        /// the list holds exactly what a naive model holds, in the model's
        /// order (by deadline, ties in order of their last insert or adjust).
        /// A failure shrinks to the shortest sequence that still fails, and
        /// its seed is saved in proptest-regressions/ and replayed first.
        #[test]
        fn matches_a_naive_model_under_random_operations(ops in prop::collection::vec(op(), 1..200)) {
            let base = Instant::now();
            let mut list = TimerHeap::new();
            // Model: (deadline ms, order stamp, value); handles by value.
            let mut model: Vec<(u64, u64, u32)> = Vec::new();
            let mut ids: Vec<(u32, TimerId)> = Vec::new();
            let mut stamp = 0u64;
            let mut next_value = 0u32;
            let mut now_ms = 0u64;
            for op in ops {
                stamp += 1;
                match op {
                    Op::Insert { in_ms } => {
                        let d = now_ms + in_ms;
                        let id = list.insert(at(base, d), next_value);
                        model.push((d, stamp, next_value));
                        ids.push((next_value, id));
                        next_value += 1;
                    }
                    // No live timer: nothing to adjust or remove.
                    Op::Adjust { .. } | Op::Remove { .. } if ids.is_empty() => {}
                    Op::Adjust { which, in_ms } => {
                        let (value, id) = ids[which.index(ids.len())];
                        let d = now_ms + in_ms;
                        list.adjust(id, at(base, d));
                        let entry = model.iter_mut().find(|e| e.2 == value).unwrap();
                        *entry = (d, stamp, value);
                    }
                    Op::Remove { which } => {
                        let (value, id) = ids.swap_remove(which.index(ids.len()));
                        prop_assert_eq!(list.remove(id), Some(value));
                        model.retain(|e| e.2 != value);
                    }
                    Op::Expire { ms } => {
                        now_ms += ms;
                        model.sort_by_key(|e| (e.0, e.1));
                        while let Some(v) = list.pop_expired(at(base, now_ms)) {
                            let first = model.remove(0);
                            prop_assert_eq!(v, first.2);
                            prop_assert!(first.0 <= now_ms);
                            ids.retain(|e| e.0 != v);
                        }
                        prop_assert!(model.first().is_none_or(|e| e.0 > now_ms));
                    }
                }
                model.sort_by_key(|e| (e.0, e.1));
                let expected: Vec<u32> = model.iter().map(|e| e.2).collect();
                list.check_invariants();
                prop_assert_eq!(list.values_in_order(), expected);
                prop_assert_eq!(list.len(), model.len());
                prop_assert_eq!(list.next_deadline(), model.first().map(|e| at(base, e.0)));
            }
        }
    }
}
