//! A worker's end of its channel: READY, load reports, batches of
//! connections in.

use std::io::{self, ErrorKind};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::message;
use crate::poller::{Interest, Poller, Token, Trigger};
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

/// A worker's end of its channel. Made by the worker, in `Reactor::new`,
/// from its half of the socketpair the master created before the fork;
/// kept for the worker's life. Dropping it (at exit) is the EOF the master
/// reads.
pub struct WorkerEnd {
    fd: OwnedFd,
    /// Connections received so far, as the master counts them.
    received: u64,
    /// The last load sent, so an unchanged load is not sent again.
    reported: message::Load,
    /// Set when a report finds the channel full, cleared when it goes: the
    /// channel is watched for EPOLLOUT exactly while set.
    waiting: bool,
}

impl WorkerEnd {
    pub fn new(fd: OwnedFd) -> WorkerEnd {
        WorkerEnd {
            fd,
            received: 0,
            reported: message::Load::default(),
            waiting: false,
        }
    }

    /// Tells the master this worker takes connections from now on.
    pub fn ready(&self) -> io::Result<()> {
        sys::send_message(&self.fd, &[message::READY], &[])
    }

    /// Reads one message. `Err` of kind `WouldBlock` means none is waiting.
    pub fn receive(&mut self) -> io::Result<Incoming> {
        let mut buf = [0u8; 16];
        let span = tracing::info_span!("receive", conns = tracing::field::Empty).entered();
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
        span.record("conns", received.fds.len());
        let streams = received.fds.into_iter().map(TcpStream::from).collect();
        Ok(Incoming::Conns(streams))
    }

    /// Tells the master the current load if it changed since the last
    /// report: the worker calls this once per loop iteration, so a batch of
    /// connections costs one report, not one each. `poller` and `token`
    /// are the worker loop's, which watches this channel.
    ///
    /// A report that finds the channel full waits, and the channel is
    /// watched for EPOLLOUT until it goes: the room wakes the loop, which
    /// calls this again. "Report next time" is not enough: a worker that
    /// goes idle after closing its connections has no next time, and the
    /// master would count them open for ever (and pass this worker fewer).
    /// A blocking send would stall every connection of the worker behind a
    /// slow master; a retry timer would guess at a period and wake an idle
    /// worker for nothing.
    pub fn report(&mut self, live: usize, taken: u64, poller: &Poller, token: Token) {
        let load = message::Load {
            live: u32::try_from(live).unwrap_or(u32::MAX),
            taken,
            received: self.received,
        };
        let mut waiting = false;
        while load != self.reported {
            match sys::send_message(&self.fd, &message::load(load), &[]) {
                Ok(()) => self.reported = load,
                // A signal interrupted the call; nothing was sent: again.
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The master is slow to read: wait for room.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    waiting = true;
                    break;
                }
                // The master is gone; the EOF on the channel will stop us.
                Err(_) => break,
            }
        }
        if waiting == self.waiting {
            return;
        }
        // Level-triggered EPOLLOUT left armed on a channel with room would
        // wake the loop on every wait: armed only while a report waits, as
        // the master does for its end (`Channels::set_room`).
        let interest = Interest {
            read: true,
            write: waiting,
        };
        match poller.modify(&self.fd, token, interest, Trigger::Level) {
            Ok(()) => self.waiting = waiting,
            // Tried again at the next report.
            Err(e) => eprintln!("epoll_ctl on the channel: {e}"),
        }
    }
}

impl AsFd for WorkerEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
// ANCHOR_END: worker_end
