//! `--model uring`: a true Proactor on io_uring.
//!
//! The Reactor asks the kernel "tell me when this socket is ready" and then
//! does the I/O itself. Here the worker asks the kernel to *do* the I/O
//! (accept, receive, send, read a file) and is told when each operation has
//! completed, with its result. Requests go into the submission queue, one
//! `io_uring_enter` submits them all and waits for at least one completion,
//! and the loop reaps the completion queue: one system call per batch, in
//! place of `epoll_wait` plus a `read` and a `writev` per request.
//!
//! Everything else is the Reactor's: the slots, the timer heap (its timerfd,
//! the signalfd and the master's channel are *polled* through the ring), the
//! HTTP connection, which in `Role::Completion` only processes what the
//! kernel has delivered and says which operation it wants next.
//!
//! The rules that keep this sound, and that a Reactor never needs:
//! - A buffer handed to the kernel must stay where it is until its
//!   completion arrives. Connections live in preallocated slots that never
//!   move; a connection has at most one operation in flight (`Slot::inflight`),
//!   and its slot is not freed while it has one: closing a busy connection
//!   shuts the socket down, which completes the operation, and the slot is
//!   freed then (`Slot::closing`).
//! - There is no `sendfile` in io_uring: a large file is read into a 64 KiB
//!   chunk and sent from there, one copy through user memory that the
//!   Reactor does not pay (`splice` through a pipe would avoid it; it is an
//!   exercise).
//! - An accept takes a descriptor before it looks for a connection: out of
//!   descriptors, it fails at once, so it must not simply be resubmitted
//!   (see the `ACCEPT` arm of `on_completion`).
//! - Accepting needs a listener in the worker: `--model uring` uses
//!   `--dispatch reuseport` (or `shared`), never `pass`.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};

use super::Reactor;
use crate::conn::{Context, Role, Status, Want};

/// Submission queue entries; the completion queue gets twice as many.
const RING_ENTRIES: u32 = 4096;

// What a completion is about: the top byte of its user data. For a
// connection's operation, the rest is the slot's generation (24 bits) and
// index (32 bits).
const SIGNALS: u64 = 1;
const ALARM: u64 = 2;
const CHANNEL: u64 = 3;
const ACCEPT: u64 = 4;
const CONN: u64 = 5;
/// A poll of the listener, used only while out of descriptors.
const LISTEN: u64 = 6;

fn user_data(kind: u64, index: usize, generation: u32) -> u64 {
    (kind << 56) | ((u64::from(generation) & 0xff_ffff) << 32) | index as u64
}

/// The ring, and a submission that did not fit.
pub struct Ring {
    ring: IoUring,
}

/// Whether this kernel (and its sandbox) lets a process use io_uring.
pub fn available() -> io::Result<()> {
    IoUring::new(8).map(|_| ())
}

impl Ring {
    pub fn new() -> io::Result<Ring> {
        Ok(Ring {
            ring: IoUring::new(RING_ENTRIES)?,
        })
    }

    /// Queues one operation, submitting what is queued first if the
    /// submission queue is full.
    ///
    /// # Safety
    /// Every buffer, `iovec` and descriptor the entry points to must stay
    /// valid until its completion is reaped.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the caller keeps what the entry points to alive.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Submits the queue and waits for at least one completion, then
    /// returns every completion there is as (user data, result).
    fn submit_and_reap(&mut self, out: &mut Vec<(u64, i32)>) -> io::Result<()> {
        match self.ring.submit_and_wait(1) {
            Ok(_) => {}
            // A signal (blocked ones go to the signalfd) or a full
            // completion queue: reap what there is and go round again.
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EINTR | nix::libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        out.clear();
        out.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result())),
        );
        Ok(())
    }
}

impl Reactor {
    // ANCHOR: run_uring
    /// The Proactor's loop: arm the alarm for the nearest deadline, submit
    /// and wait for completions, handle each, report the load.
    pub(super) fn run_uring(&mut self) -> io::Result<()> {
        self.poll(SIGNALS)?;
        self.poll(ALARM)?;
        self.poll(CHANNEL)?;
        self.submit_accept()?;
        let mut completions = Vec::with_capacity(1024);
        let mut accept_cancelled = false;
        while !self.finished() {
            if self.stopping && !accept_cancelled {
                // The accept (or listener poll) in flight holds the listener
                // open, and in the reuseport group, until it completes:
                // cancel it.
                accept_cancelled = true;
                self.cancel(ACCEPT << 56)?;
                self.cancel(LISTEN << 56)?;
            }
            self.arm_alarm();
            let Some(ring) = self.ring.as_mut() else {
                return Ok(());
            };
            ring.submit_and_reap(&mut completions)?;
            self.now = Instant::now();
            self.refresh_date();
            for &(data, result) in &completions {
                self.on_completion(data, result)?;
            }
            self.report_load();
        }
        self.drain_inflight();
        self.shutdown();
        Ok(())
    }
    // ANCHOR_END: run_uring

    fn on_completion(&mut self, data: u64, result: i32) -> io::Result<()> {
        match data >> 56 {
            SIGNALS => {
                self.on_signals();
                self.poll(SIGNALS)?;
            }
            ALARM => {
                self.on_alarm();
                self.poll(ALARM)?;
            }
            CHANNEL => {
                self.on_channel();
                // At EOF the channel is readable for ever: stop polling it.
                if !self.stopping {
                    self.poll(CHANNEL)?;
                }
            }
            ACCEPT => {
                if result >= 0 {
                    // SAFETY: the kernel created this descriptor for us and
                    // nothing else owns it.
                    let stream = unsafe { TcpStream::from_raw_fd(result) };
                    self.register(stream);
                    if !self.stopping {
                        self.submit_accept()?;
                    }
                } else if -result == nix::libc::EMFILE || -result == nix::libc::ENFILE {
                    // Out of descriptors. An accept (io_uring's, like
                    // accept4) takes a descriptor *before* it looks for a
                    // connection, so it fails at once whether one is waiting
                    // or not: resubmitting it would spin. Shed the waiting
                    // connection if there is one; if there is none, wait
                    // for one with a poll, which needs no descriptor.
                    let next = if self.shed_one() { ACCEPT } else { LISTEN };
                    if !self.stopping {
                        self.poll_or_accept(next)?;
                    }
                } else if !self.stopping && -result != nix::libc::ECANCELED {
                    self.submit_accept()?;
                }
            }
            LISTEN if !self.stopping => self.submit_accept()?,
            CONN => {
                let index = (data & 0xffff_ffff) as usize;
                self.on_conn_completion(index, result);
            }
            _ => {}
        }
        Ok(())
    }

    // ANCHOR: on_conn_completion
    /// A connection's operation completed: tell the connection what the
    /// kernel did, let it process, and submit what it wants next.
    fn on_conn_completion(&mut self, index: usize, result: i32) {
        let slot = &mut self.slots[index];
        slot.inflight = false;
        if slot.closing {
            slot.closing = false;
            if let Some(conn) = slot.conn.take() {
                conn.release(&mut self.inputs, &mut self.outputs);
            }
            self.release_slot(index);
            return;
        }
        let Some(conn) = slot.conn.as_mut() else {
            return;
        };
        let op = slot.op;
        let Ok(n) = usize::try_from(result) else {
            // A reset, a broken pipe, a file that cannot be read.
            self.close(index);
            return;
        };
        match op {
            Want::Recv => conn.on_received(n, self.now),
            Want::Send => conn.on_sent(n, self.now),
            Want::ReadFile if conn.on_file_read(n) => {}
            Want::ReadFile => {
                // The file shrank under us: the promised length cannot be
                // kept, so the connection must end.
                self.close(index);
                return;
            }
            Want::SendChunk => conn.on_chunk_sent(n, self.now),
            Want::Nothing => {}
        }
        // The read buffer stays with the connection (`pooled: false`): a
        // receive is always in flight into it. Provided buffers would fix
        // that (see the chapter's "going further").
        let mut ctx = context!(self, role: Role::Completion, pooled: false);
        let status = conn.proceed(&mut ctx);
        self.apply_completion(index, status);
    }
    // ANCHOR_END: on_conn_completion

    /// After the connection processed a completion (or was registered):
    /// move its timer, and submit its next operation or close it.
    pub(super) fn apply_completion(&mut self, index: usize, status: Status) {
        let slot = &mut self.slots[index];
        let Some(conn) = slot.conn.as_ref() else {
            return;
        };
        if let (Some(timer), Status::Keep(_)) = (slot.timer, &status) {
            self.timers
                .adjust(timer, conn.deadline(&self.config.timeouts));
        }
        match status {
            Status::Keep(_) | Status::Offload => {
                if self.submit_next(index).is_err() {
                    self.close(index);
                }
            }
            Status::Close => self.close(index),
        }
    }

    // ANCHOR: submit_next
    /// Asks the kernel for the operation the connection wants next.
    fn submit_next(&mut self, index: usize) -> io::Result<()> {
        let slot = &mut self.slots[index];
        let (Some(conn), Some(ring)) = (slot.conn.as_mut(), self.ring.as_mut()) else {
            return Ok(());
        };
        let fd = types::Fd(conn.stream.as_raw_fd());
        let want = conn.want();
        let entry = match want {
            Want::Recv => {
                let buf = conn.recv_space(&mut self.inputs);
                opcode::Recv::new(fd, buf.as_mut_ptr(), buf.len() as u32).build()
            }
            Want::Send => {
                let (head, body) = conn.out_slices();
                slot.iov = [iovec(head), iovec(body)];
                let count = if body.is_empty() { 1 } else { 2 };
                opcode::Writev::new(fd, slot.iov.as_ptr(), count).build()
            }
            Want::ReadFile => {
                let Some((file, offset, buf)) = conn.file_target() else {
                    return Ok(());
                };
                opcode::Read::new(
                    types::Fd(file.as_raw_fd()),
                    buf.as_mut_ptr(),
                    buf.len() as u32,
                )
                .offset(offset)
                .build()
            }
            Want::SendChunk => {
                let chunk = conn.file_chunk();
                opcode::Send::new(fd, chunk.as_ptr(), chunk.len() as u32)
                    .flags(nix::libc::MSG_NOSIGNAL)
                    .build()
            }
            // The read buffer is full and nothing is being sent: only the
            // timer can end this (it cannot happen with a parser that
            // consumes every byte it is given).
            Want::Nothing => return Ok(()),
        };
        slot.op = want;
        slot.inflight = true;
        let entry = entry.user_data(user_data(CONN, index, slot.generation));
        // SAFETY: the buffers are the connection's (or the slot's `iov`,
        // pointing into them); the connection stays in this slot, which
        // never moves, and is neither freed nor given another operation
        // until this one's completion has been reaped (`inflight`). The
        // file stays open while the response holds it.
        unsafe { ring.push(&entry) }
    }
    // ANCHOR_END: submit_next

    /// Polls one of the loop's own descriptors for readability (one-shot).
    fn poll(&mut self, kind: u64) -> io::Result<()> {
        let fd = match kind {
            SIGNALS => self.signals.as_fd().as_raw_fd(),
            ALARM => self.alarm.as_fd().as_raw_fd(),
            LISTEN => match &self.listener {
                Some(listener) => listener.as_raw_fd(),
                None => return Ok(()),
            },
            _ => self.channel.as_fd().as_raw_fd(),
        };
        let entry = opcode::PollAdd::new(types::Fd(fd), nix::libc::POLLIN as u32)
            .build()
            .user_data(kind << 56);
        let Some(ring) = self.ring.as_mut() else {
            return Ok(());
        };
        // SAFETY: the descriptors live as long as the Reactor.
        unsafe { ring.push(&entry) }
    }

    fn cancel(&mut self, data: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(data).build().user_data(0);
        let Some(ring) = self.ring.as_mut() else {
            return Ok(());
        };
        // SAFETY: a cancellation points to nothing.
        unsafe { ring.push(&entry) }
    }

    fn poll_or_accept(&mut self, next: u64) -> io::Result<()> {
        if next == LISTEN {
            self.poll(LISTEN)
        } else {
            self.submit_accept()
        }
    }

    fn submit_accept(&mut self) -> io::Result<()> {
        let (Some(listener), Some(ring)) = (self.listener.as_ref(), self.ring.as_mut()) else {
            return Ok(());
        };
        let entry = opcode::Accept::new(
            types::Fd(listener.as_raw_fd()),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(nix::libc::SOCK_NONBLOCK | nix::libc::SOCK_CLOEXEC)
        .build()
        .user_data(ACCEPT << 56);
        // SAFETY: no buffers; the listener lives as long as the Reactor (an
        // accept still in flight when it is dropped completes with an error).
        unsafe { ring.push(&entry) }
    }

    /// `close` for a connection with an operation in flight: shut the
    /// socket down, which makes the operation complete at once; the slot is
    /// freed when it does.
    pub(super) fn close_inflight(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if let Some(conn) = slot.conn.as_ref() {
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        }
        slot.closing = true;
        if let Some(timer) = slot.timer.take() {
            self.timers.remove(timer);
        }
    }

    /// After the loop: wait (briefly) for the operations still in flight,
    /// so that no buffer is freed while the kernel may write into it.
    fn drain_inflight(&mut self) {
        for index in 0..self.slots.len() {
            if self.slots[index].inflight && !self.slots[index].closing {
                self.close_inflight(index);
            }
        }
        let until = Instant::now() + Duration::from_secs(1);
        let mut completions = Vec::new();
        while self.slots.iter().any(|s| s.inflight) && Instant::now() < until {
            let Some(ring) = self.ring.as_mut() else {
                return;
            };
            if ring.submit_and_reap(&mut completions).is_err() {
                return;
            }
            for &(data, _) in &completions {
                if data >> 56 == CONN {
                    let index = (data & 0xffff_ffff) as usize;
                    self.slots[index].inflight = false;
                }
            }
        }
    }
}

fn iovec(bytes: &[u8]) -> nix::libc::iovec {
    nix::libc::iovec {
        iov_base: bytes.as_ptr() as *mut _,
        iov_len: bytes.len(),
    }
}
