// ANCHOR: format
//! The messages of the master-worker channel, one per `SOCK_SEQPACKET`
//! packet (the socket keeps packet boundaries: no framing code).
//!
//! | message | direction | bytes | descriptors |
//! |---|---|---|---|
//! | `READY` | worker → master | `R` | none |
//! | `LOAD` | worker → master | `L`, live u32, taken u64, received u64 | none |
//! | `CONN` | master → worker | `C`, count u16 | `count` connections, 1 to [`BATCH`](super::BATCH) |
//!
//! Numbers are little-endian. In `LOAD`, *live* is the worker's open
//! connections, *taken* every connection it has taken in, and *received*
//! every connection the master has passed it (`CONN` counts summed), so the
//! master knows how many are still in flight.
// ANCHOR_END: format
//!
//! Beside the format, the worker's end of the channel ([`WorkerEnd`]),
//! which sends `READY` and `LOAD` and reads `CONN`; the master's end is
//! [`Channels`](super::Channels).

use std::io::{self, ErrorKind};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sys;

pub const READY: u8 = b'R';
pub const LOAD: u8 = b'L';
pub const CONN: u8 = b'C';
pub const LOAD_LEN: usize = 1 + 4 + 8 + 8;
pub const CONN_LEN: usize = 1 + 2;

/// A worker's load, as reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    pub live: u32,
    pub taken: u64,
    pub received: u64,
}

pub fn load(l: Load) -> [u8; LOAD_LEN] {
    let mut m = [0u8; LOAD_LEN];
    m[0] = LOAD;
    m[1..5].copy_from_slice(&l.live.to_le_bytes());
    m[5..13].copy_from_slice(&l.taken.to_le_bytes());
    m[13..21].copy_from_slice(&l.received.to_le_bytes());
    m
}

pub fn parse_load(m: &[u8]) -> Option<Load> {
    if m.len() != LOAD_LEN || m[0] != LOAD {
        return None;
    }
    Some(Load {
        live: u32::from_le_bytes(m[1..5].try_into().ok()?),
        taken: u64::from_le_bytes(m[5..13].try_into().ok()?),
        received: u64::from_le_bytes(m[13..21].try_into().ok()?),
    })
}

pub fn conn(count: usize) -> [u8; CONN_LEN] {
    let count = u16::try_from(count).unwrap_or(u16::MAX);
    let mut m = [CONN; CONN_LEN];
    m[1..3].copy_from_slice(&count.to_le_bytes());
    m
}

/// The number of connections a `CONN` message says it carries.
pub fn parse_conn(m: &[u8]) -> Option<usize> {
    if m.len() != CONN_LEN || m[0] != CONN {
        return None;
    }
    Some(usize::from(u16::from_le_bytes(m[1..3].try_into().ok()?)))
}

// ANCHOR: worker_end
/// What one read of the channel brought a worker.
pub enum Incoming {
    /// A `CONN` message's connections (fewer if out of descriptors).
    Conns(Vec<TcpStream>),
    /// The master closed its end: it is gone.
    Closed,
    /// A message a worker does not expect; ignored.
    Other,
}

/// A worker's end of its channel: made in `Shell::new` from the worker's
/// half of the socketpair the master created before the fork, kept for the
/// worker's life; dropping it (at exit) is the EOF the master reads.
pub struct WorkerEnd {
    fd: OwnedFd,
    /// Connections received so far, as the master counts them.
    received: u64,
    /// The last load sent, so an unchanged load is not sent again, and when.
    reported: Load,
}

/// How long a report that found the channel full waits before it is
/// tried again.
const RETRY_FULL: Duration = Duration::from_millis(1);

impl WorkerEnd {
    pub fn new(fd: OwnedFd) -> WorkerEnd {
        WorkerEnd {
            fd,
            received: 0,
            reported: Load::default(),
        }
    }

    /// Tells the master this worker takes connections from now on.
    pub fn ready(&self) -> io::Result<()> {
        sys::send_message(&self.fd, &[READY], &[])
    }

    /// Reads one message. `Err` of kind `WouldBlock` means none is waiting.
    pub fn receive(&mut self) -> io::Result<Incoming> {
        let mut buf = [0u8; 16];
        let span = tracing::info_span!("receive", conns = tracing::field::Empty).entered();
        let received = sys::recv_message(&self.fd, &mut buf)?;
        if received.len == 0 {
            return Ok(Incoming::Closed);
        }
        let Some(count) = parse_conn(&buf[..received.len]) else {
            return Ok(Incoming::Other);
        };
        // Counted as the master counts them, lost ones included: the
        // master subtracts this from what it sent to know what is in flight.
        self.received += count as u64;
        span.record("conns", received.fds.len());
        let streams = received.fds.into_iter().map(TcpStream::from).collect();
        Ok(Incoming::Conns(streams))
    }

    // ANCHOR: report
    /// Tells the master the load if it changed: the worker calls this once
    /// per loop iteration, so a batch of connections costs one report, not
    /// one each. Returns when to call again if the report could not go (the
    /// master has not read the channel for a while): a deadline for the
    /// worker's alarm, which wakes an idle worker to send it. "Report next
    /// time" instead would lose the last change of a busy moment, the
    /// closes that left the worker idle, and the master would go on
    /// choosing by loads long gone (chapter 6, part 2, "The load report").
    pub fn report(&mut self, live: usize, taken: u64, now: Instant) -> Option<Instant> {
        let now_load = Load {
            live: u32::try_from(live).unwrap_or(u32::MAX),
            taken,
            received: self.received,
        };
        if now_load == self.reported {
            return None;
        }
        match sys::send_message(&self.fd, &load(now_load), &[]) {
            Ok(()) => {
                self.reported = now_load;
                None
            }
            // The master is slow to read: try again a little later. (Its
            // EPOLLOUT would say when exactly, as in stage05, but only to
            // an epoll loop: io_uring's worker has none.)
            Err(e) if e.kind() == ErrorKind::WouldBlock => Some(now + RETRY_FULL),
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
