//! `--steer cpu`: under `pass`, the master gives a connection to the worker
//! labelled with the CPU it arrived on, while that worker's load stays
//! within a bound of the least loaded's; in every mode, it places the idle
//! connections workers hand back (`take_back`), and tells a worker when
//! one could not go (`hold`).

use std::io::ErrorKind;
use std::net::TcpStream;
use std::os::fd::OwnedFd;

use super::{Channels, QUEUE_BOUND, Room, message};
use crate::poller::Poller;
use crate::sys;

/// `--steer cpu` under `pass`: a worker labelled with a connection's CPU
/// gets it while its load is at most `STEER_RATIO` times the least
/// loaded's plus `STEER_SLACK` (see `Channels::labelled`).
pub(super) const STEER_RATIO: u64 = 2;
pub(super) const STEER_SLACK: u64 = 32;

impl Channels {
    /// `--steer cpu`: slot `i`'s worker takes the connections that arrive
    /// on CPU `cpus[i % cpus.len()]`, within the bound of [`Channels::pass`]
    /// and while it has fewer than `slots` connections (its `--max-conns`:
    /// past them it answers 503, and no client may get a 503 while another
    /// worker has a free slot).
    pub fn label(&mut self, cpus: &[usize], slots: u64) {
        for (i, label) in self.labels.iter_mut().enumerate() {
            *label = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
        }
        self.conn_slots = slots;
    }

    /// The slot for a connection that arrived on `cpu` (if known), when
    /// `least` is the least loaded.
    pub(super) fn steered(&self, cpu: Option<usize>, least: usize) -> usize {
        cpu.and_then(|cpu| self.labelled(cpu, least))
            .unwrap_or(least)
    }

    // ANCHOR: labelled
    /// `--steer cpu`: the least-loaded worker labelled with `cpu`, if it can
    /// take the connection and holds at most twice the load of `least`
    /// (the least loaded of all) and `STEER_SLACK` more.
    ///
    /// The bound is the price of pairing. Without one, a client whose
    /// threads all connected from one CPU puts every connection on one
    /// worker (half the rate); a tight one (a few connections) splits each
    /// client thread's burst over the workers before the other thread's
    /// burst arrives, and the pairs never form. Measured in chapter 6,
    /// part 2.
    fn labelled(&self, cpu: usize, least: usize) -> Option<usize> {
        let bound = STEER_RATIO * self.slots[least].status().live + STEER_SLACK;
        self.slots
            .iter()
            .enumerate()
            .filter(|(i, _)| self.labels[*i] == Some(cpu))
            .filter(|(_, s)| {
                s.link
                    .as_ref()
                    .is_some_and(|l| l.ready && l.room == Room::Open)
            })
            .filter(|(_, s)| s.queue.len() < QUEUE_BOUND)
            .map(|(i, s)| (s.status().live, i))
            .min()
            .filter(|&(live, _)| live <= bound && live < self.conn_slots)
            .map(|(_, i)| i)
    }
    // ANCHOR_END: labelled

    // ANCHOR: take_back
    /// A worker handed back an idle connection whose client now sends from
    /// `cpu` (`--steer cpu`): it goes to the worker labelled with `cpu` if
    /// that one can take it (within the bound of `Channels::labelled`, and a
    /// free slot), and back to the worker it came from otherwise.
    ///
    /// Not to the least loaded, as a new connection would: that one may have
    /// no free slot, and the connection would get a 503, while the worker
    /// it came from has just freed one. The master's count of that worker
    /// still includes it (the worker's `LOAD` that leaves it out comes
    /// after the `MOVE`, on the same channel), so nothing else has been
    /// given that slot under `pass`.
    pub(super) fn take_back(
        &mut self,
        from: usize,
        cpu: Option<usize>,
        fds: Vec<OwnedFd>,
        poller: &Poller,
    ) {
        for fd in fds {
            let to = match (cpu, self.choose()) {
                (Some(cpu), Some(least)) => self.labelled(cpu, least).unwrap_or(from),
                _ => from,
            };
            self.slots[to].queue.push_back(TcpStream::from(fd));
            // Refused by the worker labelled with `cpu` (not merely a CPU
            // no worker is labelled with, which no worker offers).
            if let Some(cpu) = cpu.filter(|&c| to == from && self.labels.contains(&Some(c))) {
                self.hold(from, cpu);
            }
        }
        // Sent now, not when a batch fills: this client is waiting.
        self.flush(poller);
    }
    // ANCHOR_END: take_back

    // ANCHOR: hold
    /// Tells worker `i` that the worker labelled with `cpu` could not take
    /// the connection it handed over (`HOLD`): it stops offering that CPU's
    /// connections for a while (`pairing::HOLD_FOR`).
    ///
    /// Without it the refusal was silent. The connection came back in a
    /// `CONN` like any other, and the worker, seeing the same client on the
    /// same other CPU a millisecond later, handed it over again: under one
    /// client thread at a fixed rate, hundreds of refusals a second, each
    /// holding a connection's next request up while the descriptor went to
    /// the master and back (chapter 6, part 2). Nothing is lost if this
    /// message is: the worker asks again, and is told again.
    fn hold(&self, i: usize, cpu: usize) {
        let Some(link) = self.slots[i].link.as_ref() else {
            return; // the worker is gone; its queue goes to the others
        };
        match sys::send_message(&link.fd, &message::hold(cpu), &[]) {
            Ok(()) => {}
            // The channel is full: the worker will ask again, and be told.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // Broken: the flush that follows finds out and moves its queue.
            Err(_) => {}
        }
    }
    // ANCHOR_END: hold
}
