//! `--model uring`: the session driven by completions, a true Proactor.
//!
//! The worker asks the kernel to *do* the I/O (accept, receive, send, read
//! a file) and is told when each operation has completed. One
//! `io_uring_enter` submits every queued operation and waits; the loop
//! then reaps the completions: one system call per batch, in place of
//! `epoll_wait` plus a `read` and a `writev` per request.
//!
//! While an operation is in flight the connection is *in the ring*
//! (`sys::uring` owns it), so closing it means cancelling that operation
//! first (`Place::Cancelled`). io_uring has no `sendfile`: a large file is
//! read into a 64 KiB chunk and sent from there, a copy through user
//! memory the Reactor does not pay (`splice` through a pipe would avoid it).

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::libc::{ECANCELED, ENOBUFS};

use super::shell::{ALARM, CHANNEL, LISTENER, Own, SIGNALS, Shell};
use super::{Config, Counts};
use crate::http::session::{Next, Session};
use crate::poller::Token;
use crate::sys;
use crate::sys::uring::{Completion, Op, OpId, Ring};
use crate::trace;

/// Submission queue entries, and bytes of a large file read per operation.
const RING_ENTRIES: u32 = 4096;
const FILE_CHUNK: u64 = 64 * 1024;

// What an operation is about. A connection's operations are tagged with
// its slot index; polls of the worker's own descriptors, with their tokens
// (`SIGNALS`, `ALARM`, `CHANNEL`); the accept, with this.
const ACCEPT: u64 = u64::MAX - 8;
/// A poll of the listener, used only while out of descriptors.
const LISTEN: u64 = LISTENER.0;

/// A connection of the Proactor: its socket, its session, a piece of a
/// large file (`chunk`, from offset `chunk_at`), what it asked the kernel for.
pub struct Conn {
    stream: TcpStream,
    session: Session,
    chunk: Vec<u8>,
    chunk_at: u64,
    pending: Pending,
}

/// The operation a connection has in the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Recv,
    Send,
    /// Reading the file, from this offset, into `chunk`.
    ReadFile(u64),
}

// ANCHOR: uring_slot
/// Where a slot's connection is. A live connection always has one
/// operation in flight, so it is always in the ring; this says how to get
/// it back.
#[derive(Default)]
pub enum Place {
    #[default]
    Free,
    /// In the ring; `idle`: it waits for the next request of a keep-alive
    /// connection (closed at once when the worker stops).
    InRing { op: OpId, idle: bool },
    /// Its operation was cancelled: when it comes back, close it, or, if
    /// its deadline passed (`timed_out`), tell its session and go on (a
    /// client in the middle of a head gets its 408 first).
    Cancelled { timed_out: bool },
}
// ANCHOR_END: uring_slot

/// The Proactor: a shell, a ring, and the accept (or listener poll) in
/// flight, to cancel when stopping.
pub struct Uring {
    shell: Shell<Place>,
    ring: Ring<Box<Conn>>,
    accept: Option<OpId>,
    incoming: Vec<TcpStream>,
    due: Vec<usize>,
}

/// Sets up a worker's Proactor and runs it until it stops.
pub fn run(config: Config, listener: Option<TcpListener>, channel: OwnedFd) -> io::Result<()> {
    let mut uring = Uring {
        shell: Shell::new(config, listener, channel)?,
        ring: Ring::new(RING_ENTRIES)?,
        accept: None,
        incoming: Vec::new(),
        due: Vec::new(),
    };
    for own in [SIGNALS, ALARM, CHANNEL] {
        uring.poll(own)?;
    }
    uring.submit_accept()?;
    uring.shell.ready()?;
    uring.run()
}

impl Uring {
    // ANCHOR: run_uring
    /// The loop: arm the alarm for the nearest deadline, submit and wait
    /// for completions, handle each, report the load.
    fn run(&mut self) -> io::Result<()> {
        let mut completions = Vec::with_capacity(1024);
        while !self.shell.finished() {
            self.shell.arm_alarm();
            // With --trace, the last turn's events are written before we sleep.
            trace::flush();
            let span = tracing::info_span!("io_uring_enter", count = 0u64).entered();
            self.ring.submit_and_wait(&mut completions, None)?;
            span.record("count", completions.len());
            drop(span);
            self.shell.res.tick();
            for completion in completions.drain(..) {
                self.on_completion(completion)?;
            }
            self.shell.report_load();
        }
        self.shell.res.print_totals(Counts::default());
        Ok(()) // what is still in the ring is cancelled and closed with it
    }

    fn on_completion(&mut self, mut c: Completion<Box<Conn>>) -> io::Result<()> {
        match c.tag {
            tag if [SIGNALS, ALARM, CHANNEL].contains(&Token(tag)) => {
                let own = self.shell.on_own(Token(tag), &mut self.incoming);
                // At EOF the channel is readable for ever: stop polling it.
                if !(own == Own::Stop && Token(tag) == CHANNEL) {
                    self.poll(Token(tag))?;
                }
                match own {
                    Own::Done => {}
                    Own::Stop => self.begin_stop(),
                    Own::Expire => self.expire(),
                }
            }
            ACCEPT => self.on_accept(c)?,
            LISTEN => self.submit_accept()?,
            // A connection's operation, which has the connection as owner:
            // what a receive brought is copied into its session.
            index => {
                if let Some(mut conn) = c.owner.take() {
                    let data = self.ring.received(&c);
                    if !data.is_empty() {
                        let buf = conn.session.read_buf(&mut self.shell.res.pools, data.len());
                        let n = data.len().min(buf.len());
                        buf[..n].copy_from_slice(&data[..n]);
                    }
                    self.on_conn(index as usize, c.result, conn);
                }
            }
        }
        while let Some(stream) = self.incoming.pop() {
            self.admit(stream);
        }
        Ok(())
    }
    // ANCHOR_END: run_uring

    /// A new connection: a slot, a session, and its first operation.
    fn admit(&mut self, stream: TcpStream) {
        let Some((index, _, stream)) = self.shell.admit(stream) else {
            return;
        };
        let conn = Conn {
            stream,
            session: Session::new(self.shell.res.now),
            chunk: Vec::new(),
            chunk_at: 0,
            pending: Pending::Recv,
        };
        self.advance(index, Box::new(conn));
    }

    // ANCHOR: on_conn
    // ANCHOR: on_completion
    /// A connection's operation completed: tell its session what the
    /// kernel did, then let it go on.
    fn on_conn(&mut self, index: usize, result: io::Result<usize>, mut conn: Box<Conn>) {
        let cancelled = match self.shell.slots[index].state {
            Place::Cancelled { timed_out } => Some(timed_out),
            _ => None,
        };
        if cancelled == Some(false) {
            return self.close_now(index, conn);
        }
        let res = &mut self.shell.res;
        let fd = conn.stream.as_raw_fd();
        let span = tracing::info_span!("complete", op = ?conn.pending, fd, bytes = tracing::field::Empty, error = tracing::field::Empty).entered();
        trace::recorded(&span, &result);
        match (conn.pending, result) {
            // Cancelled before it did anything: its deadline, below.
            (_, Err(e)) if e.raw_os_error() == Some(ECANCELED) && cancelled.is_some() => {}
            // Every provided buffer was in use: receive again.
            (Pending::Recv, Err(e)) if e.raw_os_error() == Some(ENOBUFS) => {}
            (Pending::Recv, Ok(n)) => conn.session.received(n, res.now),
            (Pending::Send, Ok(n)) if n > 0 => {
                if let Some(exchange) = conn.session.sent(n, &mut res.env()) {
                    res.log(&conn.stream, exchange);
                }
            }
            (Pending::ReadFile(at), Ok(n)) if n > 0 => {
                conn.chunk.truncate(n);
                conn.chunk_at = at;
            }
            // A reset, a broken pipe, a file that cannot be read; nothing
            // sent, or the file shrank under us: the promised length cannot
            // be kept.
            _ => return self.close_now(index, conn),
        }
        if cancelled == Some(true) {
            conn.session.timed_out(&mut res.env());
        }
        self.advance(index, conn);
    }
    // ANCHOR_END: on_completion

    // ANCHOR: advance
    /// Runs the session until it needs the kernel; submits that.
    fn advance(&mut self, index: usize, mut conn: Box<Conn>) {
        let res = &mut self.shell.res;
        let fd = conn.stream.as_raw_fd();
        loop {
            match conn.session.next() {
                Next::Process => {
                    let _span = tracing::info_span!("process", fd).entered();
                    conn.session.process(&mut res.env());
                }
                Next::Open { path, dir } => {
                    let _span = tracing::info_span!("open", fd).entered();
                    let opened = res.files.open(&res.root, path, dir, res.now);
                    conn.session.opened(opened, &mut res.env());
                }
                Next::NoDelay => {
                    let _ = conn.stream.set_nodelay(true);
                    conn.session.nodelay_set();
                }
                Next::Shutdown => {
                    let _ = conn.stream.shutdown(Shutdown::Write);
                    conn.session.shut_down(res.now);
                }
                Next::Close => return self.close_now(index, conn),
                // The kernel's part: start it, hear back when it is done.
                Next::Recv | Next::Send { .. } | Next::SendFile { .. } => break,
            }
        }
        let idle = conn.session.is_idle();
        let deadline = conn.session.deadline(&self.shell.config.timeouts);
        self.shell.set_deadline(index, deadline);
        let _span = tracing::info_span!("submit", fd, op = tracing::field::Empty).entered();
        match self
            .ring
            .submit(index as u64, conn, |c| labelled(c.operation()))
        {
            Ok(op) => self.shell.slots[index].state = Place::InRing { op, idle },
            // The connection was dropped with the failed submission.
            Err(e) => {
                eprintln!("io_uring submit: {e}");
                self.shell.release(index);
            }
        }
    }
    // ANCHOR_END: advance
    // ANCHOR_END: on_conn

    /// Done with: its buffers go back, its socket closes.
    fn close_now(&mut self, index: usize, conn: Box<Conn>) {
        conn.session.release(&mut self.shell.res.pools);
        self.shell.release(index);
    }

    /// Cancels the operation of a connection in the ring; it is closed (or
    /// told its deadline passed) when the cancellation completes.
    fn cancel(&mut self, index: usize, timed_out: bool) {
        if let Place::InRing { op, .. } = self.shell.slots[index].state {
            if let Err(e) = self.ring.cancel(op) {
                eprintln!("io_uring cancel: {e}");
            }
            self.shell.slots[index].state = Place::Cancelled { timed_out };
        }
    }

    fn expire(&mut self) {
        self.shell.on_alarm(&mut self.due);
        while let Some(index) = self.due.pop() {
            self.cancel(index, true);
        }
    }
    // ANCHOR: uring_accept
    fn submit_accept(&mut self) -> io::Result<()> {
        if let Some(listener) = self.shell.listener() {
            self.accept = Some(self.ring.accept(ACCEPT, listener)?);
        }
        Ok(())
    }

    fn on_accept(&mut self, c: Completion<Box<Conn>>) -> io::Result<()> {
        self.accept = None;
        match (c.accepted, c.result) {
            (Some(stream), _) => {
                self.incoming.push(stream);
                self.submit_accept()
            }
            // Out of descriptors. An accept (io_uring's, like accept4)
            // takes a descriptor *before* it looks for a connection, so
            // resubmitting it would spin. The shell's acceptor takes what
            // waits (or sheds it); a poll, which needs none, waits for more.
            (None, Err(e)) if sys::is_out_of_descriptors(&e) => {
                let _ = self.shell.on_own(LISTENER, &mut self.incoming);
                if let Some(listener) = self.shell.listener() {
                    self.accept = Some(self.ring.poll(LISTEN, listener.as_fd())?);
                }
                Ok(())
            }
            // Cancelled: the worker is stopping.
            (None, Err(e)) if e.raw_os_error() == Some(ECANCELED) => Ok(()),
            (None, _) => self.submit_accept(),
        }
    }
    // ANCHOR_END: uring_accept

    /// Polls one of the worker's own descriptors for readability (one-shot).
    fn poll(&mut self, own: Token) -> io::Result<()> {
        let fd = self.shell.own_fd(own).ok_or(io::ErrorKind::InvalidInput)?;
        self.ring.poll(own.0, fd).map(|_| ())
    }

    /// SIGTERM, SIGINT or the master's exit: stop accepting, close the idle
    /// connections (cancel their receive).
    fn begin_stop(&mut self) {
        if let Some(listener) = self.shell.begin_stop() {
            // The accept in flight holds the listener open, and in the
            // reuseport group, until it completes: cancel it.
            if let Some(op) = self.accept.take() {
                let _ = self.ring.cancel(op);
            }
            drop(listener);
        }
        for index in 0..self.shell.slots.len() {
            if let Place::InRing { idle: true, .. } = self.shell.slots[index].state {
                self.cancel(index, false);
            }
        }
    }
}

/// Notes an operation's kind on the current span (`submit`, with
/// `--trace`) as it goes into the ring.
fn labelled(op: Op<'_>) -> Op<'_> {
    let kind = match op {
        Op::Recv { .. } => "recv",
        Op::Send { .. } => "send",
        Op::Read { .. } => "read",
    };
    tracing::Span::current().record("op", kind);
    op
}

impl Conn {
    /// Whether `chunk` holds the file's bytes at `offset`.
    fn holds(&self, offset: u64) -> bool {
        offset >= self.chunk_at && offset < self.chunk_at + self.chunk.len() as u64
    }

    // ANCHOR: operation
    /// The operation the session asks for, in this connection's memory.
    /// Called by the ring once the connection is in it.
    fn operation(&mut self) -> Op<'_> {
        let socket = self.stream.as_fd();
        match self.session.next() {
            Next::SendFile { offset, .. } if self.holds(offset) => {
                self.pending = Pending::Send;
                let from = (offset - self.chunk_at) as usize;
                let (head, body) = (&self.chunk[from..], &[][..]);
                Op::Send { socket, head, body }
            }
            Next::SendFile { file, offset, len } => {
                self.pending = Pending::ReadFile(offset);
                self.chunk.resize(len.min(FILE_CHUNK) as usize, 0);
                let (file, buf) = (file.as_fd(), &mut self.chunk[..]);
                Op::Read { file, offset, buf }
            }
            Next::Send { head, body, .. } => {
                self.pending = Pending::Send;
                Op::Send { socket, head, body }
            }
            // `advance` submits only the three I/O arms: this is `Recv`.
            _ => {
                self.pending = Pending::Recv;
                Op::Recv { socket }
            }
        }
    }
    // ANCHOR_END: operation
}
