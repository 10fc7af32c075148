//! A worker's end of its channel: READY, load reports, batches of
//! connections in.

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
    /// The master closed its end: it is gone.
    Closed,
    /// A message a worker does not expect; ignored.
    Other,
}

/// A worker's end of its channel. Made by the worker, in `Shell::new`,
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
/// once per loop turn, which under short connections woke the master for
/// nearly every one). The master counts what it sends meanwhile, so a
/// report a millisecond old misleads it little.
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
        let Some(count) = message::parse_conn(&buf[..received.len]) else {
            return Ok(Incoming::Other);
        };
        // Counted as the master counts them, lost ones included: the
        // master subtracts this from what it sent to know what is in flight.
        self.received += count as u64;
        let streams = received.fds.into_iter().map(TcpStream::from).collect();
        Ok(Incoming::Conns(streams))
    }

    // ANCHOR: report
    /// Tells the master the current load if it changed since the last
    /// report, at most once per `REPORT_EVERY`: the worker calls this once
    /// per loop iteration. Returns when to call again if a change is still
    /// untold: the worker's alarm must wake it then, even if nothing else
    /// happens. Without that deadline, the last change of a busy moment
    /// (the closes that left the worker idle) fell inside the limit and was
    /// never sent, and the master went on choosing by loads long gone.
    pub fn report(&mut self, live: usize, taken: u64, now: Instant) -> Option<Instant> {
        let load = message::Load {
            live: u32::try_from(live).unwrap_or(u32::MAX),
            taken,
            received: self.received,
        };
        if load == self.reported {
            return None;
        }
        if let Some(due) = self.reported_at.map(|at| at + REPORT_EVERY)
            && now < due
        {
            return Some(due);
        }
        match sys::send_message(&self.fd, &message::load(load), &[]) {
            Ok(()) => {
                (self.reported, self.reported_at) = (load, Some(now));
                None
            }
            // The master is slow to read: try again a period later.
            Err(e) if e.kind() == ErrorKind::WouldBlock => Some(now + REPORT_EVERY),
            // The master is gone; the EOF on the channel will stop us.
            Err(_) => None,
        }
    }
    // ANCHOR_END: report
}

impl AsFd for WorkerEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
// ANCHOR_END: worker_end
