//! `--steer cpu`, after the connection is made: a kept-alive connection
//! whose client now sends from another worker's CPU is handed to that
//! worker, between two requests. Where the worker itself may run is
//! [`super::pinning`]'s.
//!
//! The label picks a worker once, by the CPU the connection arrived on.
//! A client thread that connected from one CPU and then moved to another
//! (the scheduler spreads threads after they start) keeps talking to the
//! worker of its first CPU; if every client thread started on one CPU,
//! one worker holds every connection while the others idle (chapter 6,
//! part 2, counts both). The kernel's own answer for packets is RFS,
//! Receive Flow Steering, which steers a flow's packets to the CPU where
//! the thread reading them last ran (Documentation/networking/scaling.rst);
//! this is the same idea one level up, for whole connections.
//!
//! Only an idle connection moves: nothing read and not yet answered,
//! nothing to send, so the worker that takes it starts a fresh session and
//! loses nothing. Bytes already waiting in the socket go with it.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::Shell;
use crate::sys;

/// `--steer cpu`: the CPU this worker is labelled with, and the labels of
/// all the workers (several workers may share one when there are more
/// workers than CPUs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    pub mine: usize,
    pub all: Vec<usize>,
}

/// A worker looks at one idle connection's CPU at most this often: one
/// `getsockopt` a millisecond, however many requests it serves. Looking
/// after every request would add a system call to each (about two per
/// keep-alive request would become three, syscalls-http in chapter 6,
/// part 2); a connection's client changes CPU far more rarely than that.
pub const CHECK_EVERY: Duration = Duration::from_millis(1);

// ANCHOR: hold_for
/// After the master says the worker labelled with a CPU could not take a
/// connection (`HOLD`: it holds more than the bound of `Channels::labelled`,
/// or has no free slot), this worker offers it none for this long.
///
/// Loads change when connections open and close, so a refusal is news for
/// a while, not for ever. A tenth of a second keeps the refusals to about
/// ten a second for a worker whose connections all belong to a client
/// thread on a full worker's CPU (up to one a millisecond without it), and
/// delays pairing by at most as long when the load does change. Doubling
/// the wait after each refusal would cut them further, for state and a
/// reset rule that ten refusals a second do not pay for.
pub const HOLD_FOR: Duration = Duration::from_millis(100);
// ANCHOR_END: hold_for

/// Where a worker stands on pairing: its labels, when it last looked, and
/// until when each refusing CPU is held.
pub struct Pairing {
    labels: Labels,
    checked_at: Option<Instant>,
    held: Vec<(usize, Instant)>,
}

impl Pairing {
    pub fn new(labels: Labels) -> Pairing {
        Pairing {
            labels,
            checked_at: None,
            held: Vec::new(),
        }
    }

    /// The worker labelled with `cpu` refused a connection: offer it none
    /// until `HOLD_FOR` after `now`.
    pub fn hold(&mut self, cpu: usize, now: Instant) {
        self.held.retain(|&(c, _)| c != cpu);
        self.held.push((cpu, now + HOLD_FOR));
    }

    /// True if connections for `cpu` are not to be offered at `now`.
    fn is_held(&self, cpu: usize, now: Instant) -> bool {
        self.held.iter().any(|&(c, until)| c == cpu && now < until)
    }

    /// True if it is time to look at an idle connection (and counts this
    /// as the look).
    pub fn due(&mut self, now: Instant) -> bool {
        if self.checked_at.is_some_and(|at| now < at + CHECK_EVERY) {
            return false;
        }
        self.checked_at = Some(now);
        true
    }

    // ANCHOR: moved_to
    /// The CPU `stream`'s client sends from now, if another worker is
    /// labelled with it and that CPU is not held (`HOLD_FOR`).
    ///
    /// The kernel says which CPU processed the connection's last packet.
    /// That is the client's when the packet was the client's (on loopback,
    /// the sender's CPU processes it; over a network, the CPU of the
    /// receive queue that steers it). But sending a response makes packets
    /// too: on loopback the acknowledgements of a large response are
    /// processed on the CPU that sent it, this one. A packet processed on
    /// the CPU this worker runs on is no evidence, and moving on it would
    /// send the connection after the worker, not after its client: a worker
    /// that the scheduler ran on the other CPU for a moment would hand away
    /// every connection it served there.
    pub fn moved_to(&self, stream: &TcpStream, now: Instant) -> Option<usize> {
        let cpu = sys::incoming_cpu(stream)?;
        let elsewhere = cpu != self.labels.mine && Some(cpu) != sys::current_cpu();
        (elsewhere && self.labels.all.contains(&cpu) && !self.is_held(cpu, now)).then_some(cpu)
    }
    // ANCHOR_END: moved_to
}

impl<S: Default> Shell<S> {
    // ANCHOR: hand_over
    /// `--steer cpu`: true if it is time to look at where an idle
    /// connection's client sends from (at most once per
    /// [`CHECK_EVERY`]), and the worker is not
    /// stopping.
    pub fn pairing_due(&mut self) -> bool {
        let now = self.res.now;
        self.drain_until.is_none() && self.pairing.as_mut().is_some_and(|p| p.due(now))
    }

    /// Sends the idle connection `stream` to the master for the worker
    /// labelled with the CPU its client sends from now, if that is another
    /// worker's. True if it went: the driver then forgets it (and takes it
    /// out of its epoll set by hand, the socket staying open elsewhere).
    /// A full channel keeps it here.
    pub fn hand_over(&self, stream: &TcpStream) -> bool {
        let now = self.res.now;
        let Some(cpu) = self.pairing.as_ref().and_then(|p| p.moved_to(stream, now)) else {
            return false;
        };
        self.channel.hand_over(stream, cpu).is_ok()
    }

    /// The master says the worker labelled with `cpu` could not take a
    /// connection handed over: hold that CPU (`HOLD_FOR`).
    pub fn hold_pairing(&mut self, cpu: usize) {
        let now = self.res.now;
        if let Some(p) = self.pairing.as_mut() {
            p.hold(cpu, now);
        }
    }
    // ANCHOR_END: hand_over
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn a_worker_looks_at_most_once_per_period() {
        let mut p = Pairing::new(Labels {
            mine: 0,
            all: vec![0, 1],
        });
        let t = Instant::now();
        assert!(p.due(t));
        assert!(!p.due(t));
        assert!(!p.due(t + CHECK_EVERY / 2));
        assert!(p.due(t + CHECK_EVERY));
    }

    #[test]
    fn a_refusing_cpu_is_held_for_hold_for_and_others_are_not() {
        let mut p = Pairing::new(Labels {
            mine: 0,
            all: vec![0, 1, 2],
        });
        let t = Instant::now();
        assert!(!p.is_held(1, t));
        p.hold(1, t);
        assert!(p.is_held(1, t) && p.is_held(1, t + HOLD_FOR / 2));
        assert!(!p.is_held(2, t), "only the CPU that refused");
        assert!(!p.is_held(1, t + HOLD_FOR));
        // A second refusal restarts the hold, and is kept once.
        p.hold(1, t + HOLD_FOR);
        assert!(p.is_held(1, t + HOLD_FOR + HOLD_FOR / 2));
        assert_eq!(p.held.len(), 1);
    }

    #[test]
    fn a_held_cpu_is_not_offered_until_its_hold_ends() {
        let cpus = sys::allowed_cpus().unwrap();
        let (Some(&here), Some(&there)) = (cpus.first(), cpus.get(1)) else {
            println!("skipped: needs two CPUs");
            return;
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A client on `there`: on loopback its packets are processed on
        // its own CPU.
        let _client = thread::spawn(move || {
            sys::pin_to(&[there]).unwrap();
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"x").unwrap();
            c
        })
        .join()
        .unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server.read_exact(&mut [0u8; 1]).unwrap();
        if sys::incoming_cpu(&server) != Some(there) {
            println!("skipped: loopback packets are not processed on the sender's CPU here");
            return;
        }
        // The worker's side, on `here` (a packet processed on the CPU the
        // worker runs on is no evidence).
        thread::spawn(move || {
            sys::pin_to(&[here]).unwrap();
            let mut p = Pairing::new(Labels {
                mine: here,
                all: vec![here, there],
            });
            let t = Instant::now();
            assert_eq!(p.moved_to(&server, t), Some(there));
            p.hold(there, t);
            assert_eq!(p.moved_to(&server, t + HOLD_FOR / 2), None);
            assert_eq!(p.moved_to(&server, t + HOLD_FOR), Some(there));
        })
        .join()
        .unwrap();
    }
}
