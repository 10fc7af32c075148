//! `--pin`: where a worker labelled with a CPU (`--steer cpu`) may run.
//! `on` keeps it on its CPU; `off` lets the scheduler move it; `auto`, the
//! default, keeps it on its CPU while every CPU is busy and moves it to an
//! idle CPU while something else saturates its own ([`place`], looked at
//! every [`LOOK_EVERY`] by [`Pinning::look`]).
//!
//! Pinning helps the hand-over (the worker's CPU says nothing about a
//! client's once the worker may be elsewhere) and keeps a worker's caches
//! warm; it hurts when something that never sleeps shares the worker's
//! CPU, because the scheduler may not move a pinned task to the CPU that
//! idles (chapter 6, part 2, "Pinning", measures all three settings).

use std::io;
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::Shell;
use super::pairing::Labels;
use crate::sys;

/// `--pin`: whether a labelled worker is kept on its CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// Always on its CPU.
    On,
    /// Wherever the scheduler puts it.
    Off,
    /// On its CPU while every CPU is busy; on an idle one while something
    /// else saturates its own.
    Auto,
}

impl FromStr for Pin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(Pin::On),
            "off" => Ok(Pin::Off),
            "auto" => Ok(Pin::Auto),
            other => Err(format!("unknown pin {other:?}: use on, off or auto")),
        }
    }
}

// ANCHOR: pin
/// Keeps this worker on the CPU it is labelled with (`--pin on`, and
/// `auto` while every CPU is busy; threads it starts later inherit it).
///
/// The hand-over needs it: on loopback the acknowledgements of a large
/// response are processed on the worker's own CPU, and an unpinned worker
/// that ran on the other CPU for a while hands its connections away after
/// itself; in the crowding loop of chapter 6, part 2, 4 runs in 36 put
/// most connections on one worker unpinned, none pinned. Pinning costs one
/// load: a client thread that never sleeps (a generator polling with a zero
/// timeout) shares its CPU with the worker it is paired with, which waits
/// behind it up to a scheduler tick, about one request in a hundred, while
/// the other CPU idles; the scheduler may not move a pinned worker.
/// `--pin auto` moves the worker to an idle CPU while that load lasts.
pub fn pin(labels: &Labels) -> bool {
    if let Err(e) = sys::pin_process_to(&[labels.mine]) {
        // Served unpinned: slower pairing, not a failure.
        eprintln!(
            "worker {}: cannot pin to CPU {} ({e})",
            std::process::id(),
            labels.mine
        );
        return false;
    }
    true
}
// ANCHOR_END: pin

// ANCHOR: look_every
/// `--pin auto` looks at how idle each CPU was this often, while the
/// worker has events (an idle worker does not look, and needs not).
///
/// `/proc/stat` counts in hundredths of a second, so a look covers ten
/// counts per CPU: fine enough to tell "saturated" from "mostly idle",
/// and a worker away from its CPU when a closed-loop load begins is back
/// within one look. Looking every millisecond would read nothing but
/// zeros and ones; every second would leave a new closed-loop load a
/// second with its workers out of place.
pub const LOOK_EVERY: Duration = Duration::from_millis(100);
// ANCHOR_END: look_every

/// Idle below this share (percent), a CPU counts as saturated.
pub const SATURATED: u32 = 20;
/// Idle at or above this share (percent), a CPU counts as mostly idle.
pub const MOSTLY_IDLE: u32 = 50;
/// Busy at or above this share (percent) of the worker's CPU with anything
/// but the worker itself, the CPU has a busy neighbour.
pub const NEIGHBOUR: u32 = 50;
/// Looks in a row that must find the worker's CPU saturated and another
/// mostly idle before it moves there: one look can straddle the end of a
/// load. Going back to its own CPU takes one look, since that is the safe
/// side (the hand-over and the closed-loop rows are measured there).
pub const MOVE_AFTER: u32 = 2;

/// One CPU's counters from `/proc/stat`, in clock ticks since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTime {
    pub idle: u64,
    pub total: u64,
}

// ANCHOR: place
/// The rule of `--pin auto`: the CPU the worker should run on, from where
/// it runs now (`home`), its label, each labelled CPU's idle share over
/// the last look, and the worker's own use of a CPU over it (`own`; all
/// in percent).
///
/// Its own label's CPU when every CPU is saturated: none is free to move
/// to, and there the hand-over and the caches work best. The most idle
/// other CPU when the worker's CPU is saturated, mostly by something else
/// (a [`NEIGHBOUR`]), and that one is mostly idle: the requests the worker
/// serves would wait behind the neighbour while a CPU idles. Otherwise
/// where it is: the gap between the thresholds is the hysteresis that
/// keeps a worker from flapping at one. A worker that saturates its CPU
/// by itself stays: moved, it would saturate the other one, find its old
/// CPU idle, and move back.
///
/// Moving, not unpinning: a build that let the worker go while the
/// neighbour was there left the p99 at a fixed rate above nginx's in six
/// comparisons of six (chapter 6, part 2); pinned to the idle CPU, the
/// worker is woken where nothing else runs.
///
/// The measured loads (chapter 6, part 2): under wrk's closed loop both
/// CPUs idle 0 to 3%; beside a fixed-rate generator that never sleeps,
/// one idles 0 to 20% and the other 50 to 100%.
pub fn place(home: usize, label: usize, idle: &[(usize, u32)], own: u32) -> usize {
    if idle.iter().all(|&(_, i)| i < SATURATED) {
        return label;
    }
    let here = idle.iter().find(|&&(cpu, _)| cpu == home).map(|&(_, i)| i);
    let freest = idle
        .iter()
        .filter(|&&(cpu, _)| cpu != home)
        .max_by_key(|&&(cpu, i)| (i, cpu == label));
    match (here, freest) {
        (Some(here), Some(&(cpu, i)))
            if here < SATURATED && 100 - here.min(100) >= own + NEIGHBOUR && i >= MOSTLY_IDLE =>
        {
            cpu
        }
        _ => home,
    }
}
// ANCHOR_END: place

/// Each CPU's counters from the text of `/proc/stat` (proc(5)): a line
/// `cpuN user nice system idle iowait irq softirq steal ...` per CPU. Idle
/// is `idle` plus `iowait`; total is the first eight fields (`guest` is
/// already counted in `user`).
pub fn parse_stat(text: &str) -> Vec<(usize, CpuTime)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let cpu = fields.next()?.strip_prefix("cpu")?.parse().ok()?;
            let n: Vec<u64> = fields.take(8).map_while(|f| f.parse().ok()).collect();
            let idle = n.get(3)? + n.get(4).unwrap_or(&0);
            Some((
                cpu,
                CpuTime {
                    idle,
                    total: n.iter().sum(),
                },
            ))
        })
        .collect()
}

/// The idle share (percent) of each CPU in `now` between two readings;
/// a CPU missing from `then`, or with no ticks between, is left out.
pub fn idle_between(then: &[(usize, CpuTime)], now: &[(usize, CpuTime)]) -> Vec<(usize, u32)> {
    now.iter()
        .filter_map(|&(cpu, t)| {
            let (_, before) = then.iter().find(|&&(c, _)| c == cpu)?;
            let total = t.total.checked_sub(before.total).filter(|&d| d > 0)?;
            let idle = t.idle.saturating_sub(before.idle).min(total);
            Some((cpu, u32::try_from(idle * 100 / total).unwrap_or(100)))
        })
        .collect()
}

/// The share (percent) of one CPU that CPU time going from `then` to `now`
/// over `wall` is; `None` without a previous reading.
fn share(then: Option<Duration>, now: Duration, wall: Option<Duration>) -> Option<u32> {
    let used = now.checked_sub(then?)?;
    let wall = wall.filter(|w| !w.is_zero())?;
    Some(
        u32::try_from(used.as_micros() * 100 / wall.as_micros().max(1)).map_or(100, |s| s.min(100)),
    )
}

/// What `--pin auto` needs from the system; [`System`] in a worker, a
/// fake in the tests.
pub trait Cpus {
    /// The text of `/proc/stat`, and the worker's CPU time so far.
    fn read(&mut self) -> io::Result<(String, Duration)>;
    /// Keeps the worker, every thread of it, on `cpus`.
    fn pin(&mut self, cpus: &[usize]) -> io::Result<()>;
}

/// The real one: [`sys::read_cpu_times`], [`sys::process_cpu_time`] and
/// [`sys::pin_process_to`].
pub struct System;

impl Cpus for System {
    fn read(&mut self) -> io::Result<(String, Duration)> {
        Ok((sys::read_cpu_times()?, sys::process_cpu_time()?))
    }
    fn pin(&mut self, cpus: &[usize]) -> io::Result<()> {
        sys::pin_process_to(cpus)
    }
}

/// A labelled worker's pinning: the mode, the CPU it is pinned to now
/// (`None`: not pinned), and under `auto` the last reading and how many
/// looks in a row wanted it elsewhere.
pub struct Pinning {
    labels: Labels,
    mode: Pin,
    home: Option<usize>,
    looked_at: Option<Instant>,
    last: Vec<(usize, CpuTime)>,
    /// The worker's CPU time at the last look.
    last_own: Option<Duration>,
    leaning: u32,
}

impl Pinning {
    /// Pins the worker to its label's CPU unless `--pin off`.
    pub fn start(labels: Labels, mode: Pin) -> Pinning {
        let home = (mode != Pin::Off && pin(&labels)).then_some(labels.mine);
        Pinning {
            labels,
            mode,
            home,
            looked_at: None,
            last: Vec::new(),
            last_own: None,
            leaning: 0,
        }
    }

    // ANCHOR: look
    /// `--pin auto`: at most once per [`LOOK_EVERY`], reads how idle each
    /// labelled CPU was since the last look and how much CPU the worker
    /// used, and moves the worker where [`place`] says: one read of
    /// `/proc/stat` and one `clock_gettime` a look, and a
    /// `sched_setaffinity` per thread only to move.
    pub fn look(&mut self, now: Instant, cpus: &mut impl Cpus) {
        let since = self.looked_at;
        if self.mode != Pin::Auto || since.is_some_and(|at| now < at + LOOK_EVERY) {
            return;
        }
        self.looked_at = Some(now);
        let Ok((text, own)) = cpus.read() else {
            return; // out of descriptors, say: stay where it is
        };
        let reading: Vec<_> = parse_stat(&text)
            .into_iter()
            .filter(|(cpu, _)| self.labels.all.contains(cpu))
            .collect();
        let idle = idle_between(&self.last, &reading);
        self.last = reading;
        let own_share = share(self.last_own.replace(own), own, since.map(|at| now - at));
        let (Some(home), Some(own_share)) = (self.home.filter(|_| !idle.is_empty()), own_share)
        else {
            return; // not pinned, or the first look: nothing to go on
        };
        if let Some(cpu) = self.next(place(home, self.labels.mine, &idle, own_share))
            && cpus.pin(&[cpu]).is_ok()
        {
            // A refusal (the CPU left our cpuset) keeps it where it is.
            self.home = Some(cpu);
        }
    }
    // ANCHOR_END: look

    /// Where to move after a look that placed the worker on `cpu`: back to
    /// its own CPU at once, elsewhere after [`MOVE_AFTER`] such looks in a
    /// row; `None` to stay.
    fn next(&mut self, cpu: usize) -> Option<usize> {
        if Some(cpu) == self.home {
            self.leaning = 0;
            return None;
        }
        self.leaning += 1;
        if cpu != self.labels.mine && self.leaning < MOVE_AFTER {
            return None;
        }
        self.leaning = 0;
        Some(cpu)
    }
}

impl<S: Default> Shell<S> {
    /// Reads the clock after each wait (once per loop iteration) and, under
    /// `--pin auto`, looks at the CPUs when a look is due.
    pub fn tick(&mut self) {
        self.res.tick();
        let now = self.res.now;
        if let Some(p) = self.pinning.as_mut() {
            p.look(now, &mut System);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 0 10 100 0 0 0 0 0 0\n\
                        cpu0 5 0 5 50 2 0 1 0 0 0\n\
                        cpu1 5 0 5 48 0 0 0 0 0 0\n\
                        intr 12345 0 0\n\
                        ctxt 999\n";

    #[test]
    fn the_stat_parser_reads_each_cpu_and_not_the_total() {
        assert_eq!(
            parse_stat(STAT),
            vec![
                (
                    0,
                    CpuTime {
                        idle: 52,
                        total: 63
                    }
                ),
                (
                    1,
                    CpuTime {
                        idle: 48,
                        total: 58
                    }
                ),
            ]
        );
        assert!(parse_stat("cpu0 garbage\nnot a line\n").is_empty());
    }

    #[test]
    fn idle_shares_come_from_the_difference_between_two_readings() {
        let then = [
            (
                0,
                CpuTime {
                    idle: 100,
                    total: 200,
                },
            ),
            (
                1,
                CpuTime {
                    idle: 100,
                    total: 200,
                },
            ),
        ];
        let now = [
            (
                0,
                CpuTime {
                    idle: 101,
                    total: 210,
                },
            ),
            (
                1,
                CpuTime {
                    idle: 109,
                    total: 210,
                },
            ),
            (2, CpuTime { idle: 5, total: 10 }),
        ];
        assert_eq!(idle_between(&then, &now), vec![(0, 10), (1, 90)]);
        assert!(idle_between(&now, &now).is_empty(), "no ticks, no share");
        assert!(
            idle_between(&[], &now).is_empty(),
            "the first look has nothing to compare"
        );
    }

    #[test]
    fn the_rule_moves_away_from_a_saturated_cpu_and_home_when_all_are() {
        // wrk's closed loop: every CPU saturated, each worker at home.
        assert_eq!(place(0, 0, &[(0, 0), (1, 3)], 50), 0);
        assert_eq!(place(1, 0, &[(0, 0), (1, 3)], 50), 0, "away: back home");
        // A generator on this worker's CPU, the other idle: go there.
        assert_eq!(place(0, 0, &[(0, 0), (1, 90)], 30), 1);
        // The worker on the idle CPU has no reason to move.
        assert_eq!(place(1, 1, &[(0, 0), (1, 90)], 10), 1);
        // Saturating its CPU by itself: moving would not help.
        assert_eq!(place(0, 0, &[(0, 0), (1, 90)], 95), 0);
        assert_eq!(place(0, 0, &[(0, 10), (1, 90)], 41), 0);
        assert_eq!(place(0, 0, &[(0, 10), (1, 90)], 40), 1);
        // In the gaps: stay.
        assert_eq!(place(0, 0, &[(0, 10), (1, 30)], 10), 0);
        assert_eq!(place(0, 0, &[(0, 30), (1, 90)], 10), 0);
        assert_eq!(
            place(1, 0, &[(0, 60), (1, 40)], 10),
            1,
            "away, and fine there"
        );
        // The most idle of several, the label first among equals.
        assert_eq!(place(2, 1, &[(0, 70), (1, 80), (2, 5)], 10), 1);
        assert_eq!(place(2, 1, &[(0, 80), (1, 80), (2, 5)], 10), 1);
        assert_eq!(place(2, 0, &[(0, 60), (1, 80), (2, 5)], 10), 1);
    }

    fn pinning(home: Option<usize>) -> Pinning {
        Pinning {
            labels: Labels {
                mine: 0,
                all: vec![0, 1],
            },
            mode: Pin::Auto,
            home,
            looked_at: None,
            last: Vec::new(),
            last_own: None,
            leaning: 0,
        }
    }

    #[test]
    fn the_workers_share_is_its_cpu_time_over_the_wall_time() {
        let ms = Duration::from_millis;
        assert_eq!(share(Some(ms(10)), ms(40), Some(ms(100))), Some(30));
        assert_eq!(
            share(Some(ms(0)), ms(250), Some(ms(100))),
            Some(100),
            "threads on two CPUs: capped"
        );
        assert_eq!(share(None, ms(40), Some(ms(100))), None, "the first look");
        assert_eq!(share(Some(ms(10)), ms(40), None), None);
        assert_eq!(share(Some(ms(10)), ms(40), Some(ms(0))), None);
    }

    #[test]
    fn a_worker_moves_away_after_move_after_looks_in_a_row_and_home_at_once() {
        let mut p = pinning(Some(0));
        for _ in 1..MOVE_AFTER {
            assert_eq!(p.next(1), None);
        }
        assert_eq!(p.next(1), Some(1));
        // A look in between starts the count again.
        let mut p = pinning(Some(0));
        assert_eq!(p.next(1), None);
        assert_eq!(p.next(0), None, "already home");
        assert_eq!(p.next(1), None);
        // Away, home takes one look.
        let mut p = pinning(Some(1));
        assert_eq!(p.next(1), None, "already there");
        assert_eq!(p.next(0), Some(0));
    }

    /// `/proc/stat` text in which each CPU of `cpus` has the given idle and
    /// total ticks.
    fn stat(cpus: &[(usize, u64, u64)]) -> String {
        cpus.iter()
            .map(|&(cpu, idle, total)| {
                format!("cpu{cpu} {} 0 0 {idle} 0 0 0 0 0 0\n", total - idle)
            })
            .collect()
    }

    /// A system whose next reading the test sets, and which records every
    /// move (no real thread moves: other tests run in this process).
    #[derive(Default)]
    struct Fake {
        next: Option<io::Result<(String, Duration)>>,
        reads: u32,
        moves: Vec<Vec<usize>>,
        /// Refuse every move, as when a CPU left the cpuset.
        refuse: bool,
    }

    impl Cpus for Fake {
        fn read(&mut self) -> io::Result<(String, Duration)> {
            self.reads += 1;
            self.next
                .take()
                .unwrap_or_else(|| Err(io::ErrorKind::NotFound.into()))
        }
        fn pin(&mut self, cpus: &[usize]) -> io::Result<()> {
            self.moves.push(cpus.to_vec());
            if self.refuse {
                return Err(io::ErrorKind::InvalidInput.into());
            }
            Ok(())
        }
    }

    #[test]
    fn auto_moves_to_an_idle_cpu_and_home_when_all_are_busy() {
        let mut p = pinning(Some(0));
        let mut cpus = Fake::default();
        let t = Instant::now();
        // Ten ticks per 100 ms, as with USER_HZ = 100, idle ones given for
        // CPU 0 and CPU 1; the worker's own CPU time in ms.
        let mut look = |p: &mut Pinning, ms: u64, idle0: u64, idle1: u64, own: u64| {
            let text = stat(&[(0, idle0, ms / 10), (1, idle1, ms / 10)]);
            cpus.next = Some(Ok((text, Duration::from_millis(own))));
            p.look(t + Duration::from_millis(ms), &mut cpus);
            (cpus.reads, cpus.moves.clone())
        };
        look(&mut p, 0, 0, 0, 0);
        // Its CPU saturated (10% idle), by itself (90% of a CPU): stay.
        look(&mut p, 100, 1, 9, 90);
        assert_eq!(look(&mut p, 200, 2, 18, 180), (3, vec![]));
        // Saturated by a neighbour (the worker used 20%), the other CPU
        // idle (90%): one look is not enough, two in a row are.
        assert_eq!(look(&mut p, 300, 3, 27, 200), (4, vec![]));
        assert_eq!(
            look(&mut p, 400, 4, 36, 220),
            (5, vec![vec![1]]),
            "moved to the idle CPU"
        );
        // Not due yet: not read.
        assert_eq!(look(&mut p, 450, 4, 36, 220).0, 5);
        // Both saturated: home at once.
        assert_eq!(look(&mut p, 550, 4, 36, 240).1, [vec![1], vec![0]]);
        assert_eq!(p.home, Some(0));
    }

    #[test]
    fn a_refused_move_leaves_the_worker_where_it_was_and_is_tried_again() {
        let mut p = pinning(Some(0));
        let mut cpus = Fake {
            refuse: true,
            ..Fake::default()
        };
        let t = Instant::now();
        // Its CPU saturated by a neighbour, the other idle, look after look.
        for (ms, idle0, idle1) in [
            (0, 0, 0),
            (100, 1, 9),
            (200, 2, 18),
            (300, 3, 27),
            (400, 4, 36),
        ] {
            let text = stat(&[(0, idle0, ms / 10), (1, idle1, ms / 10)]);
            cpus.next = Some(Ok((text, Duration::from_millis(ms / 10))));
            p.look(t + Duration::from_millis(ms), &mut cpus);
        }
        assert_eq!(p.home, Some(0), "refused: still home");
        assert_eq!(
            cpus.moves,
            [vec![1], vec![1]],
            "tried after two looks, and again after two more"
        );
    }

    #[test]
    fn an_unreadable_system_or_no_pinning_moves_nothing() {
        let mut cpus = Fake::default();
        let t = Instant::now();
        let mut p = pinning(Some(0));
        for ms in [0, 100, 200, 300] {
            p.look(t + Duration::from_millis(ms), &mut cpus);
        }
        assert_eq!((cpus.reads, cpus.moves.len()), (4, 0));
        // `--pin on`: never looks.
        let mut p = pinning(Some(0));
        p.mode = Pin::On;
        p.look(t, &mut cpus);
        assert_eq!(cpus.reads, 4);
    }

    #[test]
    fn the_kernels_stat_has_a_line_per_cpu_we_may_run_on() {
        let parsed = parse_stat(&sys::read_cpu_times().unwrap());
        for cpu in sys::allowed_cpus().unwrap() {
            let (_, t) = parsed.iter().find(|&&(c, _)| c == cpu).unwrap();
            assert!(t.idle <= t.total && t.total > 0, "cpu{cpu}: {t:?}");
        }
    }

    #[test]
    fn pin_modes_parse() {
        assert_eq!("auto".parse(), Ok(Pin::Auto));
        assert_eq!("on".parse(), Ok(Pin::On));
        assert_eq!("off".parse(), Ok(Pin::Off));
        assert!("yes".parse::<Pin>().is_err());
    }
}
