//! `--model reactor` and `--model proactor-sim`: the session driven by
//! readiness. One thread, one epoll instance, every socket non-blocking:
//! the loop waits until the kernel says some sockets are *ready*, then does
//! for each what its session asks (`Session::next`: read, parse, open,
//! `writev`, `sendfile`) until a call would block. That is the Reactor
//! pattern: the kernel reports readiness, the application does the I/O.
//!
//! `--model proactor-sim` runs this same loop with a thread pool for the
//! sessions' CPU work ([`super::proactor_sim`]): `drive` stops before it
//! (`Processing`), and connections come back as one more event.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use tracing::field::Empty;

use super::proactor_sim::{OFFLOAD, Pool};
use super::shell::{ALARM, CHANNEL, LISTENER, Own, READ, Resources, SIGNALS, Shell};
use super::{Config, Model};
use crate::http::session::{Next, Session};
use crate::poller::{Events, Interest, Poller, Readiness, Token, Trigger};
use crate::sys;
use crate::trace;

/// Room for events per `epoll_wait`; more are reported by the next call.
const EVENTS_PER_WAIT: usize = 1024;
/// A timer that fires while its connection is in the pool is put off by
/// this much: the connection is back within microseconds.
const AWAY_GRACE: Duration = Duration::from_millis(10);

/// A connection of a readiness model: its socket, its session, and the
/// readiness the kernel reported that is not used up yet (edge-triggered
/// epoll says "ready" once, and a read the session stopped must resume
/// without it).
pub struct Conn {
    pub stream: TcpStream,
    pub session: Session,
    /// A read may find bytes (or EOF): set by an event, cleared by EAGAIN or
    /// a short read.
    readable: bool,
    /// A write may go through: set by an event, cleared by EAGAIN.
    writable: bool,
    /// The client's FIN was reported (EPOLLRDHUP): read on to EOF, because
    /// EOF raises no new edge.
    fin: bool,
    /// What epoll watches for this socket now.
    pub interest: Interest,
}

/// What became of a connection after `drive`: it waits (for its socket or
/// its timer), has CPU work for the pool, or is done.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Wait,
    Offload,
    Close,
}

/// Where a session's CPU work (parsing, deciding, opening the file) runs:
/// in the loop (the Reactor), or in the simulated Proactor's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processing {
    InLoop,
    Elsewhere,
}

impl Conn {
    /// A new connection waits for its first request: reading is watched,
    /// and the request assumed to be there already (see `Reactor::admit`).
    pub fn new(stream: TcpStream, session: Session) -> Conn {
        Conn {
            stream,
            session,
            readable: true,
            // A new socket's send buffer is empty.
            writable: true,
            fin: false,
            interest: READ,
        }
    }

    /// Records an event's readiness.
    pub fn on_event(&mut self, ready: Readiness) {
        self.readable |= ready.readable || ready.read_closed || ready.hangup;
        self.writable |= ready.writable;
        self.fin |= ready.read_closed;
    }

    // ANCHOR: wanted
    /// What to watch while the connection waits. Edge-triggered, both,
    /// always, as nginx registers its connections: an edge comes only when
    /// the socket *becomes* ready, so watching writes costs nothing while
    /// sends go through, and no response that fills the buffer costs an
    /// `epoll_ctl`. Level-triggered, only what the session waits for, or
    /// every wait would report a socket with unread bytes or room to write.
    pub fn wanted(&self, trigger: Trigger) -> Interest {
        let (edge, next) = (trigger == Trigger::Edge, self.session.next());
        Interest {
            read: edge || matches!(next, Next::Recv),
            write: edge || matches!(next, Next::Send { .. } | Next::SendFile { .. }),
        }
    }
    // ANCHOR_END: wanted

    // ANCHOR: recv
    /// One read into the session's buffer.
    fn recv(&mut self, res: &mut Resources) -> io::Result<()> {
        let buf = self.session.read_buf(&mut res.pools, 0);
        let room = buf.len();
        let span = tracing::info_span!(
            "recv",
            fd = self.stream.as_raw_fd(),
            bytes = Empty,
            error = Empty
        )
        .entered();
        let read = (&self.stream).read(buf);
        trace::recorded(&span, &read);
        match read {
            // EOF: the client will send nothing more.
            Ok(0) => self.session.received(0, res.now),
            Ok(n) => {
                self.session.received(n, res.now);
                // A short read emptied the receive queue: later bytes raise
                // a new event, so reading on to EAGAIN would cost a system
                // call per request. Not after a FIN: EOF raises no new edge.
                if n < room && !self.fin {
                    self.readable = false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset: the connection is over.
            Err(e) => return Err(e),
        }
        Ok(())
    }
    // ANCHOR_END: recv

    /// Tells the session what a send did; logs a finished exchange.
    fn sent(&mut self, result: io::Result<usize>, res: &mut Resources) -> io::Result<()> {
        match result {
            // Nothing went with bytes to send: for `sendfile`, the file
            // shrank under us, and the promised length cannot be kept.
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                if let Some(exchange) = self.session.sent(n, &mut res.env()) {
                    res.log(&self.stream, exchange);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset or a broken pipe.
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

// ANCHOR: drive
/// Does what the session asks, one system call per arm, until the socket
/// would block or the session is done.
pub fn drive(conn: &mut Conn, res: &mut Resources, processing: Processing) -> Step {
    // Each step that does something is a span on the timeline (--trace).
    let fd = conn.stream.as_raw_fd();
    loop {
        let done = match conn.session.next() {
            Next::Process | Next::Open { .. } if processing == Processing::Elsewhere => {
                return Step::Offload;
            }
            Next::Process => {
                let _span = tracing::info_span!("process", fd).entered();
                conn.session.process(&mut res.env());
                Ok(())
            }
            Next::Open { path, dir } => {
                let _span = tracing::info_span!("open", fd).entered();
                let opened = res.files.open(&res.root, path, dir, res.now);
                conn.session.opened(opened, &mut res.env());
                Ok(())
            }
            Next::NoDelay => {
                // Kept alive: Nagle would hold a later response for the
                // client's delayed ACK (40 ms or more). nginx sets it here.
                let _ = conn.stream.set_nodelay(true);
                conn.session.nodelay_set();
                Ok(())
            }
            Next::Recv if !conn.readable => return Step::Wait,
            Next::Recv => conn.recv(res),
            Next::Send { .. } | Next::SendFile { .. } if !conn.writable => return Step::Wait,
            Next::Send { head, body, more } => {
                let span = tracing::info_span!("send", fd, bytes = Empty, error = Empty).entered();
                let result = send(&conn.stream, head, body, more);
                trace::recorded(&span, &result);
                conn.sent(result, res)
            }
            Next::SendFile { file, offset, len } => {
                let span =
                    tracing::info_span!("sendfile", fd, bytes = Empty, error = Empty).entered();
                let result = sys::send_file(&conn.stream, file, offset, len);
                trace::recorded(&span, &result);
                conn.sent(result, res)
            }
            Next::Shutdown => {
                let _span = tracing::info_span!("shutdown", fd).entered();
                let _ = conn.stream.shutdown(Shutdown::Write);
                conn.session.shut_down(res.now);
                Ok(())
            }
            Next::Close => return Step::Close,
        };
        if done.is_err() {
            return Step::Close;
        }
    }
}
// ANCHOR_END: drive

/// Head and small body in one system call: no Nagle stall between two
/// writes, and half the calls. Before a file (`more`), `MSG_MORE` holds the
/// head back to share a packet with the file's first bytes (`TCP_CORK`
/// without its two `setsockopt` calls).
pub fn send(stream: &TcpStream, head: &[u8], body: &[u8], more: bool) -> io::Result<usize> {
    if more {
        sys::send_more(stream, head)
    } else {
        (&*stream).write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
    }
}

// ANCHOR: place
/// Where a slot's connection is.
// The variants differ in size by the whole connection, and clippy would
// box it; boxed, every connection would cost an allocation, and the slots
// allocated at start would hold pointers instead of connections.
#[allow(clippy::large_enum_variant)]
#[derive(Default)]
pub enum Place {
    #[default]
    Free,
    /// In the loop, which does its I/O. Inline: the slots are allocated
    /// once, at start, and a connection taking one allocates nothing
    /// (chapter 6, part 2, "Pools"); it is boxed only for its trips to the
    /// pool (`offload`).
    Here(Conn),
    /// In the pool (`--model proactor-sim`), being processed; it comes
    /// back through the pool's queue, and is not watched meanwhile.
    Away,
}
// ANCHOR_END: place

/// The loop: a shell (its slots hold the connections), an epoll instance,
/// and the pool of `--model proactor-sim`.
pub struct Reactor {
    pub(super) shell: Shell<Place>,
    pub(super) poller: Poller,
    /// `Some` under `--model proactor-sim` (see `proactor_sim.rs`).
    pub(super) pool: Option<Pool>,
    /// Accepted or passed connections waiting for a slot.
    incoming: Vec<TcpStream>,
    /// Slots whose deadline passed.
    due: Vec<usize>,
}

/// Sets up a worker's loop (and pool) and runs it until it stops.
pub fn run(config: Config, listener: Option<TcpListener>, channel: OwnedFd) -> io::Result<()> {
    // The epoll instance is created here, after the fork, so that no two
    // processes share one (an epoll instance inherited across fork is the
    // *same* instance, and its events go to whichever process waits first).
    let shell = Shell::new(config, listener, channel)?;
    let poller = Poller::new()?;
    shell.watch(&poller)?;
    let pool = match shell.config.model {
        Model::ProactorSim => Some(Pool::start(&shell.config, &shell.res, &poller)?),
        Model::Reactor | Model::Uring => None,
    };
    shell.ready()?;
    let mut reactor = Reactor {
        shell,
        poller,
        pool,
        incoming: Vec::new(),
        due: Vec::new(),
    };
    reactor.run()
}

impl Reactor {
    // ANCHOR: run
    /// The loop: arm the alarm for the nearest deadline, wait for
    /// readiness, dispatch each event (the alarm firing is one of them),
    /// report the load to the master.
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        while !self.shell.finished() {
            self.wait(&mut events)?;
            for event in events.iter() {
                match event.token {
                    own @ (LISTENER | CHANNEL | SIGNALS | ALARM) => {
                        match self.shell.on_own(own, &mut self.incoming) {
                            Own::Done => {}
                            Own::Stop => self.begin_stop(),
                            Own::Expire => self.expire(),
                        }
                    }
                    OFFLOAD => self.on_processed(),
                    token => self.on_ready(token, event.readiness),
                }
                while let Some(stream) = self.incoming.pop() {
                    self.admit(stream);
                }
            }
            self.shell.report_load();
        }
        let counts = self.pool.as_mut().map(Pool::stop).unwrap_or_default();
        self.shell.res.print_totals(counts);
        // After the grace period, a response still in flight is cut off.
        for index in 0..self.shell.slots.len() {
            self.close(index);
        }
        Ok(())
    }
    // ANCHOR_END: run

    /// Arms the alarm, waits, and reads the clock once for the whole batch.
    fn wait(&mut self, events: &mut Events) -> io::Result<()> {
        self.shell.arm_alarm();
        // With --trace, the last turn's events are written before we sleep.
        trace::flush();
        loop {
            match self.poller.wait(events, None) {
                Ok(()) => break,
                // Signals are blocked, so this is rare (a debugger, SIGSTOP
                // and SIGCONT); nothing is lost, wait again.
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.shell.res.tick();
        Ok(())
    }

    /// Where sessions' CPU work runs: here, or in the pool.
    fn processing(&self) -> Processing {
        match self.pool {
            Some(_) => Processing::Elsewhere,
            None => Processing::InLoop,
        }
    }

    // ANCHOR: admit
    /// A new connection: a slot and a session, one `drive` before epoll
    /// hears of it, then a registration and a timer. The drive reads at once
    /// (`readable` is assumed): a client sends its request right after
    /// connecting, so it is usually there, and a `Connection: close` request
    /// costs no `epoll_ctl` and no wake-up; when it is not, one `EAGAIN`.
    fn admit(&mut self, stream: TcpStream) {
        let (processing, trigger) = (self.processing(), self.shell.config.trigger);
        let Some((index, token, stream)) = self.shell.admit(stream) else {
            return; // refused with 503: every slot is taken
        };
        let mut conn = Conn::new(stream, Session::new(self.shell.res.now));
        let step = drive(&mut conn, &mut self.shell.res, processing);
        conn.interest = conn.wanted(trigger);
        let added = match step {
            Step::Close => Ok(()),
            _ => self.poller.add(&conn.stream, token, conn.interest, trigger),
        };
        let deadline = conn.session.deadline(&self.shell.config.timeouts);
        self.shell.slots[index].state = Place::Here(conn);
        match (step, added) {
            (Step::Close, _) => self.close(index),
            (_, Err(e)) => {
                eprintln!("epoll add: {e}");
                self.close(index);
            }
            (step, Ok(())) => {
                self.shell.set_deadline(index, deadline);
                if step == Step::Offload {
                    self.offload(index);
                }
            }
        }
    }
    // ANCHOR_END: admit

    fn on_ready(&mut self, token: Token, ready: Readiness) {
        let Some(index) = self.shell.find(token) else {
            return; // stale: the slot holds a newer connection
        };
        let Place::Here(conn) = &mut self.shell.slots[index].state else {
            return; // stale (closed earlier in this batch), or in the pool
        };
        let _span = tracing::info_span!("event", fd = conn.stream.as_raw_fd()).entered();
        if ready.error {
            return self.close(index);
        }
        conn.on_event(ready);
        self.step(index);
    }

    // ANCHOR: step
    /// Drives a connection as far as its socket allows, then re-arms what it
    /// waits for and its timer; or hands it to the pool, or closes it.
    pub(super) fn step(&mut self, index: usize) {
        let (token, processing) = (self.shell.token(index), self.processing());
        let trigger = self.shell.config.trigger;
        let Place::Here(conn) = &mut self.shell.slots[index].state else {
            return;
        };
        match drive(conn, &mut self.shell.res, processing) {
            Step::Close => self.close(index),
            Step::Offload => self.offload(index),
            Step::Wait => {
                if rewatch(&self.poller, conn, token, trigger).is_err() {
                    return self.close(index);
                }
                let deadline = conn.session.deadline(&self.shell.config.timeouts);
                self.shell.set_deadline(index, deadline);
            }
        }
    }
    // ANCHOR_END: step

    // ANCHOR: expire
    /// Tells every session whose deadline has passed, and drives it: most
    /// close at once; a client in the middle of a head is sent its 408 first.
    fn expire(&mut self) {
        self.shell.on_alarm(&mut self.due);
        while let Some(index) = self.due.pop() {
            match &mut self.shell.slots[index].state {
                Place::Here(conn) => {
                    conn.session.timed_out(&mut self.shell.res.env());
                    self.step(index);
                }
                // In the pool: put off; `step` sets it anew when it is back.
                Place::Away => {
                    let later = self.shell.res.now + AWAY_GRACE;
                    self.shell.set_deadline(index, later);
                }
                Place::Free => {}
            }
        }
    }
    // ANCHOR_END: expire

    /// SIGTERM, SIGINT or the master's exit: stop accepting and close the
    /// idle connections now; busy ones finish within the grace period.
    fn begin_stop(&mut self) {
        if let Some(listener) = self.shell.begin_stop() {
            let _ = self.poller.delete(&listener);
        }
        for index in 0..self.shell.slots.len() {
            if let Place::Here(conn) = &self.shell.slots[index].state
                && conn.session.is_idle()
            {
                self.close(index);
            }
        }
    }

    /// Closes a connection in the loop; one in the pool is closed when the
    /// worker exits (its job is dropped with the pool).
    fn close(&mut self, index: usize) {
        // No EPOLL_CTL_DEL: closing a socket's last descriptor removes it
        // from every epoll set, and ours is the last (the master closed its
        // copy after passing it; no fork happens while a worker holds
        // connections). A copy left somewhere would report a stale token.
        let state = &mut self.shell.slots[index].state;
        if let Place::Here(_) = state
            && let Place::Here(conn) = std::mem::take(state)
        {
            conn.session.release(&mut self.shell.res.pools);
            self.shell.release(index);
        }
    }
}

/// After `drive` said `Wait`: watch what the connection now waits for.
fn rewatch(poller: &Poller, conn: &mut Conn, token: Token, trigger: Trigger) -> io::Result<()> {
    let wanted = conn.wanted(trigger);
    if wanted != conn.interest {
        conn.interest = wanted;
        poller.modify(&conn.stream, token, wanted, trigger)?;
    }
    Ok(())
}
