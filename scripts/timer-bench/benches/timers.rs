//! Sorted list (stage03) against min-heap (stage04), at N = 10 … 100,000
//! timers, for the three things an event loop does with them:
//!
//! - `insert`: a connection arrives (insert its timer, with the latest
//!   deadline) and another leaves (remove one), so N stays N;
//! - `adjust`: activity on a random connection pushes its timer to the
//!   latest deadline, which is what every read and write does;
//! - `expire`: the earliest timer fires (popped) and that connection's
//!   replacement arrives (inserted), so N stays N.
//!
//! Run with `cargo bench -p timer-bench`, or `scripts/bench-timers.sh` for
//! the table and chart in the notes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use stage03_timer_list::TimerList;
use stage04_min_heap::TimerHeap;
use timer_bench::{Rng, Timers, filled};

const SIZES: [usize; 5] = [10, 100, 1_000, 10_000, 100_000];

fn insert<T: Timers + Default>(c: &mut Criterion, name: &str) {
    let mut group = c.benchmark_group("insert");
    for n in SIZES {
        group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
            let base = Instant::now();
            let (mut timers, _) = filled::<T>(n, base);
            let mut latest = base + Duration::from_millis(n as u64);
            b.iter(|| {
                latest += Duration::from_millis(1);
                let id = timers.insert(black_box(latest), 0);
                timers.remove(id);
            });
        });
    }
    group.finish();
}

fn adjust<T: Timers + Default>(c: &mut Criterion, name: &str) {
    let mut group = c.benchmark_group("adjust");
    for n in SIZES {
        group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
            let base = Instant::now();
            let (mut timers, ids) = filled::<T>(n, base);
            let mut latest = base + Duration::from_millis(n as u64);
            let mut rng = Rng(0x2545_f491_4f6c_dd1d);
            b.iter(|| {
                latest += Duration::from_millis(1);
                timers.adjust(ids[rng.below(n)], black_box(latest));
            });
        });
    }
    group.finish();
}

fn expire<T: Timers + Default>(c: &mut Criterion, name: &str) {
    let mut group = c.benchmark_group("expire");
    for n in SIZES {
        group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
            let base = Instant::now();
            let (mut timers, _) = filled::<T>(n, base);
            let mut latest = base + Duration::from_millis(n as u64);
            let far = base + Duration::from_secs(1 << 30);
            b.iter(|| {
                let value = timers.pop_expired(far);
                latest += Duration::from_millis(1);
                timers.insert(latest, value.unwrap_or(0));
            });
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    insert::<TimerList<u64>>(c, "list");
    insert::<TimerHeap<u64>>(c, "heap");
    adjust::<TimerList<u64>>(c, "list");
    adjust::<TimerHeap<u64>>(c, "heap");
    expire::<TimerList<u64>>(c, "list");
    expire::<TimerHeap<u64>>(c, "heap");
}

criterion_group! {
    name = timers;
    // Short runs: the differences are orders of magnitude, not percent.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(timers);
