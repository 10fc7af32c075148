//! Idle timers in a sorted doubly linked list, the classic design of
//! TinyWebServer's `sort_timer_lst`.
//!
//! The list is a slab: a `Vec` of nodes linked by indices, not
//! `Rc<RefCell<…>>` nodes, so there is one allocation for the whole list,
//! no reference counting, and a handle ([`TimerId`]) is just an index.

use std::time::Instant;

const NIL: usize = usize::MAX;

/// A handle to one timer, returned by [`TimerList::insert`]. Valid until the
/// timer is removed or popped; the owner must then forget it, because its
/// index may be reused by a later insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerId(usize);

struct Node<T> {
    deadline: Instant,
    value: T,
    prev: usize,
    next: usize,
    linked: bool,
}

// ANCHOR: list
/// Timers sorted by deadline, earliest at the head.
///
/// The trade-off, at the decision point: a sorted list makes finding and
/// popping the earliest timer O(1) (it is the head), which is what the tick
/// does most, but inserting or moving a timer O(n), a walk to find its
/// place. Every read or write on a connection moves its timer, so with n
/// connections every event costs up to n steps. stage04 trades this for a
/// binary heap: O(log n) for everything but peeking at the earliest.
pub struct TimerList<T> {
    nodes: Vec<Node<T>>,
    head: usize,
    tail: usize,
    /// Indices of removed nodes, reused by the next inserts.
    free: Vec<usize>,
    len: usize,
}
// ANCHOR_END: list

impl<T: Copy> Default for TimerList<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy> TimerList<T> {
    pub fn new() -> Self {
        TimerList {
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            free: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a timer. O(n): walks from the head to its place. Timers with
    /// equal deadlines expire in the order they were inserted.
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        // LAB s3-timers BEGIN: reuse a free node or push one, then link it in deadline order
        let node = Node {
            deadline,
            value,
            prev: NIL,
            next: NIL,
            linked: false,
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.nodes[index] = node;
                index
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.link_after_search(index, self.head);
        TimerId(index)
        // LAB END
    }

    // ANCHOR: adjust
    /// Moves a timer to a new deadline. O(n). A later deadline (the usual
    /// case: activity pushes an idle timer back) searches forward from the
    /// timer's current place; an earlier one searches from the head.
    pub fn adjust(&mut self, id: TimerId, deadline: Instant) {
        // LAB s3-timers BEGIN: unlink, set, relink; a later deadline searches from its old place
        let index = id.0;
        if !self.is_linked(index) {
            return;
        }
        let later = deadline >= self.nodes[index].deadline;
        let next = self.nodes[index].next;
        self.unlink(index);
        self.nodes[index].deadline = deadline;
        // Read the head only after unlinking: the node may have been the
        // head itself. The old successor is still linked, and everything
        // before it is no later than the new deadline; NIL means "append".
        let start = if later { next } else { self.head };
        self.link_after_search(index, start);
        // LAB END
    }
    // ANCHOR_END: adjust

    /// Removes a timer and returns its value. O(1): a doubly linked node
    /// unlinks itself.
    pub fn remove(&mut self, id: TimerId) -> Option<T> {
        // LAB s3-timers BEGIN: O(1): unlink a linked node and free its index; None if not linked
        let index = id.0;
        if !self.is_linked(index) {
            return None;
        }
        self.unlink(index);
        self.free.push(index);
        Some(self.nodes[index].value)
        // LAB END
    }

    /// The earliest deadline. O(1).
    pub fn next_deadline(&self) -> Option<Instant> {
        // LAB s3-timers BEGIN: the head's deadline
        (self.head != NIL).then(|| self.nodes[self.head].deadline)
        // LAB END
    }

    /// Removes and returns the earliest timer if it is due at `now`. O(1).
    pub fn pop_expired(&mut self, now: Instant) -> Option<T> {
        // LAB s3-timers BEGIN: remove the head if its deadline is not after now
        if self.head == NIL || self.nodes[self.head].deadline > now {
            return None;
        }
        self.remove(TimerId(self.head))
        // LAB END
    }

    fn is_linked(&self, index: usize) -> bool {
        self.nodes.get(index).is_some_and(|n| n.linked)
    }

    /// Links the unlinked node `index` before the first node, from `start`
    /// on, whose deadline is later than its own.
    fn link_after_search(&mut self, index: usize, start: usize) {
        // LAB s3-timers BEGIN: walk from start past deadlines <= its own; link it before that node
        let deadline = self.nodes[index].deadline;
        let mut at = start;
        while at != NIL && self.nodes[at].deadline <= deadline {
            at = self.nodes[at].next;
        }
        // Insert before `at` (or at the tail when `at` is NIL).
        let prev = if at == NIL {
            self.tail
        } else {
            self.nodes[at].prev
        };
        self.nodes[index].prev = prev;
        self.nodes[index].next = at;
        self.nodes[index].linked = true;
        if prev == NIL {
            self.head = index;
        } else {
            self.nodes[prev].next = index;
        }
        if at == NIL {
            self.tail = index;
        } else {
            self.nodes[at].prev = index;
        }
        self.len += 1;
        // LAB END
    }

    fn unlink(&mut self, index: usize) {
        // LAB s3-timers BEGIN: fix the neighbours (or head, tail); reset the node; len -= 1
        let (prev, next) = (self.nodes[index].prev, self.nodes[index].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next].prev = prev;
        }
        let node = &mut self.nodes[index];
        node.prev = NIL;
        node.next = NIL;
        node.linked = false;
        self.len -= 1;
        // LAB END
    }

    /// The values in order, earliest first (for tests and debugging).
    pub fn values_in_order(&self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        let mut at = self.head;
        while at != NIL {
            out.push(self.nodes[at].value);
            at = self.nodes[at].next;
        }
        out
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
        let mut list = TimerList::new();
        list.insert(at(base, 30), 'c');
        list.insert(at(base, 10), 'a');
        list.insert(at(base, 20), 'b');
        let order = list.values_in_order();
        assert!(
            order == vec!['a', 'b', 'c'],
            "timers due at 30, 10 and 20 ms, inserted in that order, are linked as {order:?}: \
             insert must link each before the first later deadline"
        );
        assert_eq!(list.next_deadline(), Some(at(base, 10)));
        assert!(
            list.pop_expired(at(base, 5)).is_none(),
            "a timer due at 10 ms was popped at 5 ms: the timer fired early"
        );
        assert_eq!(list.pop_expired(at(base, 20)), Some('a'));
        assert_eq!(list.pop_expired(at(base, 20)), Some('b'));
        assert_eq!(list.pop_expired(at(base, 20)), None);
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn adjust_moves_both_ways_and_remove_unlinks() {
        let base = Instant::now();
        let mut list = TimerList::new();
        let a = list.insert(at(base, 10), 'a');
        let b = list.insert(at(base, 20), 'b');
        let c = list.insert(at(base, 30), 'c');
        list.adjust(a, at(base, 40));
        let order = list.values_in_order();
        assert!(
            order == vec!['b', 'c', 'a'],
            "after moving a from 10 to 40 ms the list reads {order:?}: adjust must relink the \
             timer at its new place"
        );
        list.adjust(c, at(base, 5));
        let order = list.values_in_order();
        assert!(
            order == vec!['c', 'b', 'a'],
            "after moving c from 30 to 5 ms the list reads {order:?}: adjust must relink the \
             timer at its new place"
        );
        assert_eq!(list.remove(b), Some('b'));
        assert_eq!(list.remove(b), None, "a removed timer stays removed");
        assert_eq!(list.values_in_order(), vec!['c', 'a']);
    }

    #[test]
    fn a_removed_last_timer_moves_the_tail_back() {
        let base = Instant::now();
        let mut list = TimerList::new();
        list.insert(at(base, 10), 'a');
        let b = list.insert(at(base, 20), 'b');
        assert_eq!(list.remove(b), Some('b'));
        list.insert(at(base, 30), 'c');
        let order = list.values_in_order();
        assert!(
            order == vec!['a', 'c'],
            "after removing the last timer and inserting a later one the list reads {order:?}: \
             unlink must move the tail back to the removed node's predecessor"
        );
    }

    #[test]
    fn a_removed_timers_node_is_reused() {
        let base = Instant::now();
        let mut list = TimerList::new();
        for i in 0..1000 {
            let id = list.insert(at(base, i), i);
            assert_eq!(list.remove(id), Some(i));
        }
        let nodes = list.nodes.len();
        assert!(
            nodes == 1,
            "a thousand timers, each removed before the next was inserted, left {nodes} nodes: \
             remove must free its node for the next insert to reuse"
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
            let mut list = TimerList::new();
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
                prop_assert_eq!(list.values_in_order(), expected);
                prop_assert_eq!(list.len(), model.len());
                prop_assert_eq!(list.next_deadline(), model.first().map(|e| at(base, e.0)));
            }
        }
    }
}
