//! A worker's end of its channel: READY, load reports, batches of
//! connections in, connections handed back, and HOLD when one could not go.

use std::io::{self, ErrorKind};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::message;
use crate::sys;

// ANCHOR: worker_end
/// What one read of the channel brought a worker.
pub enum Incoming {
    /// A `CONN` message's connections. Fewer than the master sent if this
    /// process ran out of descriptors: the kernel closed the rest.
    Conns(Vec<TcpStream>),
    /// `HOLD`: the worker labelled with this CPU could not take a
    /// connection handed over (`--steer cpu`).
    Hold(usize),
    /// The master closed its end: it is gone.
    Closed,
    /// A message a worker does not expect; ignored.
    Other,
}

/// A worker's end of its channel. Made by the worker, in `Reactor::new`,
/// from its half of the socketpair the master created before the fork;
/// kept for the worker's life. Dropping it (at exit) is the EOF the master
/// reads.
pub struct WorkerEnd {
    fd: OwnedFd,
    /// Connections received so far, as the master counts them.
    received: u64,
    /// The last load sent, so an unchanged load is not sent again, and when.
    reported: message::Load,
    reported_at: Option<Instant>,
}

/// Load reports go at most this often (stage06's own lever; stage05 reports
/// once per loop turn).
const REPORT_EVERY: Duration = Duration::from_millis(1);

impl WorkerEnd {
    pub fn new(fd: OwnedFd) -> WorkerEnd {
        WorkerEnd {
            fd,
            received: 0,
            reported: message::Load::default(),
            reported_at: None,
        }
    }

    /// Tells the master this worker takes connections from now on.
    pub fn ready(&self) -> io::Result<()> {
        sys::send_message(&self.fd, &[message::READY], &[])
    }

    /// Reads one message. `Err` of kind `WouldBlock` means none is waiting.
    pub fn receive(&mut self) -> io::Result<Incoming> {
        let mut buf = [0u8; 16];
        let received = sys::recv_message(&self.fd, &mut buf)?;
        if received.len == 0 {
            return Ok(Incoming::Closed);
        }
        let m = &buf[..received.len];
        if let Some(cpu) = message::parse_hold(m) {
            return Ok(Incoming::Hold(cpu));
        }
        let Some(count) = message::parse_conn(m) else {
            return Ok(Incoming::Other);
        };
        // Counted as the master counts them, lost ones included: the
        // master subtracts this from what it sent to know what is in flight.
        self.received += count as u64;
        let streams = received.fds.into_iter().map(TcpStream::from).collect();
        Ok(Incoming::Conns(streams))
    }

    /// Hands the idle connection `stream` back to the master, for the
    /// worker labelled with `cpu` (`--steer cpu`). The master's copy keeps
    /// the socket open once ours is closed.
    pub fn hand_over(&self, stream: &TcpStream, cpu: usize) -> io::Result<()> {
        sys::send_message(&self.fd, &message::moved(cpu), &[stream.as_fd()])
    }

    /// Tells the master the current load if it changed since the last
    /// report and that was at least `REPORT_EVERY` ago: the worker calls
    /// this once per loop iteration.
    pub fn report(&mut self, live: usize, taken: u64, now: Instant) {
        let load = message::Load {
            live: u32::try_from(live).unwrap_or(u32::MAX),
            taken,
            received: self.received,
        };
        let recent = self.reported_at.is_some_and(|at| now < at + REPORT_EVERY);
        if load == self.reported || recent {
            return;
        }
        match sys::send_message(&self.fd, &message::load(load), &[]) {
            Ok(()) => (self.reported, self.reported_at) = (load, Some(now)),
            // The master is slow to read: report next time.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // The master is gone; the EOF on the channel will stop us.
            Err(_) => {}
        }
    }
}

impl AsFd for WorkerEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
// ANCHOR_END: worker_end
