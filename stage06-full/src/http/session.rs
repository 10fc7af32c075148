//! One HTTP/1.1 connection as a state machine that does no I/O.
//!
//! A [`Session`] is told what happened (bytes arrived, bytes went out, a
//! file was opened, a deadline passed) and says what should happen next
//! ([`Session::next`]); it never touches a socket or a clock. This is the
//! sans-I/O design of h11 (`Connection.receive_data`, `next_event`),
//! quinn-proto and rustls: the protocol is written once, tested without
//! sockets, and driven by `worker::reactor`, `worker::proactor_sim` and
//! `worker::uring`, each a loop of `match session.next()` arms.
//!
//! A session moves through these phases:
//!
//! ```text
//!        head parsed          file opened        body skipped
//! ┌──────┐ ──────────▶ ┌──────┐ ──────────▶ ┌──────┐ ─────────▶ ┌──────┐
//! │ Head │             │ Open │             │ Body │            │ Send │
//! └──────┘             └──────┘             └──────┘            └──┬───┘
//!    ▲  (a refused request goes straight to Send; no body: Open → Send)  │
//!    └────────────────────────── keep-alive ◀────────────────────────────┤
//!                                                        close, nothing │
//!                              ┌────────┐  shut down  ┌──────────┐ more │
//!                   closed ◀── │ Linger │ ◀────────── │ Shutdown │ ◀────┤
//!                              └────────┘             └──────────┘      ▼
//!                                                                    closed
//! ```
//!
//! Pipelined requests wait in the read buffer and are parsed one at a time,
//! each after the previous response has gone: they are answered in order,
//! one response is held at most, and a client that pipelines without
//! reading its answers stops being read (back-pressure).

use std::fs::File;
use std::time::{Duration, Instant};

mod decide;

use super::body::BodySkipper;
use super::parser::Parser;
pub use super::response::Exchange;
use super::response::Response;
pub use super::{FIRST_READ, READ_BUF, SMALL_BODY, WRITE_BUF};
use crate::pool::Pools;
use decide::{CONTINUE, Request};

/// How long a closing connection waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(2);

/// The timeouts a session is subject to.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Idle between requests.
    pub keepalive: Duration,
    /// From a request's first byte to the end of its head (and between
    /// bytes of its body); a slow client gets 408.
    pub header: Duration,
}

/// What a session borrows from its worker for one call, each borrow named.
pub struct Env<'a> {
    /// The worker's clock, read once per loop iteration.
    pub now: Instant,
    /// Today's `Date` value, formatted once a second.
    pub date: &'a str,
    /// Where read and output buffers come from and go back to.
    pub pools: &'a mut Pools,
    /// Request bodies past this many bytes get 413.
    pub max_body: u64,
    /// SIGTERM arrived: finish the response in hand, keep nothing alive.
    pub stopping: bool,
    /// Keep each request line, for the access log.
    pub logging: bool,
}

// ANCHOR: next
/// What the session needs done next. Each arm is one thing a driver does.
#[derive(Debug)]
pub enum Next<'a> {
    /// Receive bytes into [`Session::read_buf`], then call
    /// [`Session::received`] (with 0 for end of stream).
    Recv,
    /// Bytes wait to be parsed: call [`Session::process`] (CPU only).
    Process,
    /// Open `path` beneath the root (`dir`: it ended with `/`), then call
    /// [`Session::opened`].
    Open { path: &'a str, dir: bool },
    /// The connection will be kept alive: set `TCP_NODELAY`, then call
    /// [`Session::nodelay_set`].
    NoDelay,
    /// Send `head` then `body` (one `writev`); `more`: a file follows, so
    /// the kernel may hold a partial packet back (`MSG_MORE`). Then call
    /// [`Session::sent`].
    Send {
        head: &'a [u8],
        body: &'a [u8],
        more: bool,
    },
    /// Send `len` bytes of `file` from `offset`; then [`Session::sent`].
    SendFile {
        file: &'a File,
        offset: u64,
        len: u64,
    },
    /// Shut down the sending side (a lingering close begins), then call
    /// [`Session::shut_down`].
    Shutdown,
    /// Close the connection, and give the session's buffers back with
    /// [`Session::release`].
    Close,
}
// ANCHOR_END: next

enum Phase {
    /// Reading a request head; the parser keeps what it has seen.
    Head,
    /// A head asked for a file: the driver must open it.
    Open(Box<Request>),
    /// Reading past the request's body; the response waits.
    Body(BodySkipper),
    /// Sending the response.
    Send,
    /// The connection closes and input may still come: our side must be
    /// shut down first.
    Shutdown,
    /// Our side is shut down. Input is read and thrown away until the
    /// client closes: closing a socket with unread input makes the kernel
    /// send a reset, which can destroy the response still in flight.
    Linger(Instant),
    /// Nothing more to do.
    Closed,
}

/// One connection's HTTP state.
pub struct Session {
    /// Taken from the pool when bytes arrive, given back when idle.
    /// `input[start..end]` is unconsumed.
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// The last receive filled the buffer: more may wait in the socket.
    filled: bool,
    /// The head being parsed: made at a request's first byte, dropped
    /// once its head is taken, so an idle connection holds none.
    parser: Option<Box<Parser>>,
    phase: Phase,
    /// Boxed, like the parser: only a connection with a response to send
    /// holds one.
    response: Option<Box<Response>>,
    /// The request line of the response in hand, when logging.
    line: Option<String>,
    /// When the current request's first byte arrived.
    request_started: Option<Instant>,
    /// When the connection last became idle (opened, or a response done):
    /// the header and keep-alive timeouts count from here, and bytes that
    /// start no request (empty lines) do not move it.
    idle_since: Instant,
    last_active: Instant,
    requests: u64,
    /// The client has shut down its sending side.
    peer_closed: bool,
    /// An error response threw away the rest of the input: the client may
    /// still be sending, so closing must linger.
    cut_short: bool,
    /// `TCP_NODELAY` is set (before the first kept-alive response).
    nodelay: bool,
    /// Bytes of `100 Continue` sent, while it is owed (see `opened`).
    continue_sent: Option<usize>,
}

impl Session {
    pub fn new(now: Instant) -> Session {
        Session {
            input: Vec::new(),
            start: 0,
            end: 0,
            filled: false,
            parser: None,
            phase: Phase::Head,
            response: None,
            line: None,
            request_started: None,
            idle_since: now,
            last_active: now,
            requests: 0,
            peer_closed: false,
            cut_short: false,
            nodelay: false,
            continue_sent: None,
        }
    }

    // ANCHOR: session_next
    /// What to do next. Asking changes nothing: a driver may ask again.
    pub fn next(&self) -> Next<'_> {
        let unparsed = self.start < self.end;
        match &self.phase {
            Phase::Body(_) if self.continue_sent.is_some() => {
                let sent = self.continue_sent.unwrap_or(0);
                let (head, body, more) = (&CONTINUE[sent..], &[][..], false);
                Next::Send { head, body, more }
            }
            Phase::Head | Phase::Body(_) if unparsed => Next::Process,
            Phase::Head | Phase::Body(_) if self.peer_closed => Next::Close,
            Phase::Head | Phase::Body(_) => Next::Recv,
            Phase::Open(request) => Next::Open {
                path: &request.path.relative,
                dir: request.path.trailing_slash,
            },
            Phase::Send => self.next_to_send(),
            Phase::Shutdown => Next::Shutdown,
            Phase::Linger(_) if self.peer_closed => Next::Close,
            Phase::Linger(_) => Next::Recv,
            Phase::Closed => Next::Close,
        }
    }

    fn next_to_send(&self) -> Next<'_> {
        let Some(r) = &self.response else {
            return Next::Close;
        };
        if !r.close && !self.nodelay {
            return Next::NoDelay;
        }
        let (head, body) = (&r.head[r.head_sent..], &r.body[r.body_sent..]);
        let file = r.file.as_ref().filter(|f| f.offset < f.end);
        if !head.is_empty() || !body.is_empty() {
            // Before a file the head waits for it (`MSG_MORE`) and leaves in
            // the file's first packet, as nginx's head does under its
            // `tcp_nopush` (`TCP_CORK`). Sent alone before a large file, it
            // ran the 1 MiB row half as fast one CPU each; the gain it had
            // shown came only with the client on the server's CPUs (chapter
            // 6, part 2, "The head before a large file").
            let more = file.is_some();
            return Next::Send { head, body, more };
        }
        match file {
            Some(f) => Next::SendFile {
                file: &f.file.file,
                offset: f.offset,
                len: f.end - f.offset,
            },
            // `sent` moves on as soon as the last byte has gone.
            None => Next::Close,
        }
    }
    // ANCHOR_END: session_next

    // ANCHOR: session_input
    /// Where the next bytes go: the read buffer's free end, with room for
    /// at least `at_least` bytes (0: whatever suits, as `FIRST_READ` says).
    pub fn read_buf(&mut self, pools: &mut Pools, at_least: usize) -> &mut [u8] {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.start > 0 {
            self.input.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let large = self.filled || at_least > FIRST_READ;
        if self.input.is_empty() {
            self.input = if large {
                pools.inputs.take()
            } else {
                pools.small.take()
            };
        } else if self.input.len() < READ_BUF && (large || self.end == self.input.len()) {
            let mut bigger = pools.inputs.take();
            bigger[..self.end].copy_from_slice(&self.input[..self.end]);
            pools.give_input(std::mem::replace(&mut self.input, bigger));
        }
        &mut self.input[self.end..]
    }

    /// `n` bytes arrived in [`read_buf`](Session::read_buf); 0 means the
    /// client closed its sending side.
    pub fn received(&mut self, n: usize, now: Instant) {
        if n == 0 {
            self.peer_closed = true;
            return;
        }
        self.filled = self.end + n == self.input.len();
        if matches!(self.phase, Phase::Linger(_)) {
            return; // read only to see the client's close; dropped
        }
        self.end += n;
        self.last_active = now;
    }
    // ANCHOR_END: session_input

    // ANCHOR: process
    /// Parses what has arrived: a head (then the response is decided, or
    /// the file to open is named), or more of a body being skipped.
    pub fn process(&mut self, env: &mut Env<'_>) {
        match self.phase {
            Phase::Head => self.parse_head(env),
            Phase::Body(_) => self.skip_body(env),
            _ => {}
        }
        self.give_back_if_consumed(env.pools);
    }

    fn parse_head(&mut self, env: &mut Env<'_>) {
        let was_started = self.started();
        let parser = self.parser.get_or_insert_with(Box::default);
        let fed = parser.feed(&self.input[self.start..self.end]);
        if !was_started && parser.started() {
            self.request_started = Some(env.now);
        }
        match fed {
            // The rest of the input cannot be trusted.
            Err(e) => self.refuse(e.status(), None, env),
            Ok(progress) => {
                self.start += progress.consumed;
                if progress.done
                    && let Some(mut parser) = self.parser.take()
                {
                    self.on_head(parser.take(), env);
                }
            }
        }
    }

    // ANCHOR_END: process

    /// `TCP_NODELAY` is set now.
    pub fn nodelay_set(&mut self) {
        self.nodelay = true;
    }

    // ANCHOR: sent
    /// `n` more bytes of what [`Next::Send`] or [`Next::SendFile`] named
    /// have gone. When the response is complete, returns it for the access
    /// log and moves on: to the next request, or to closing.
    pub fn sent(&mut self, n: usize, env: &mut Env<'_>) -> Option<Exchange> {
        if let Some(sent) = self.continue_sent.as_mut() {
            *sent += n;
            if *sent >= CONTINUE.len() {
                self.continue_sent = None;
            }
            return None;
        }
        let r = self.response.as_mut()?;
        r.advance(n);
        self.last_active = env.now;
        if !r.all_sent() {
            return None;
        }
        let r = *self.response.take()?;
        self.requests += 1;
        let exchange = self.line.take().map(|request_line| Exchange {
            request_line,
            status: r.status,
            length: r.length,
        });
        let close = r.close || self.peer_closed || env.stopping;
        r.give_back(&mut env.pools.outputs);
        self.phase = if !close {
            self.request_started = None;
            self.idle_since = env.now;
            Phase::Head
        } else if self.peer_closed || !(self.start < self.end || self.filled || self.cut_short) {
            // Nothing more can come: close at once, as nginx does, saving a
            // shutdown, a read and a wait per connection.
            Phase::Closed
        } else {
            Phase::Shutdown
        };
        self.give_back_if_consumed(env.pools);
        exchange
    }
    // ANCHOR_END: sent

    /// Our side is shut down: drop input until the client closes or the
    /// linger deadline passes.
    pub fn shut_down(&mut self, now: Instant) {
        self.start = self.end;
        self.phase = Phase::Linger(now);
    }

    /// When this session's timer should fire, given its phase.
    pub fn deadline(&self, t: &Timeouts) -> Instant {
        match self.phase {
            Phase::Head => match self.request_started {
                Some(started) if self.started() => started + t.header,
                // A new connection must start a request within the header
                // timeout; a kept-alive one may idle for the keep-alive one.
                _ if self.requests == 0 => self.idle_since + t.header,
                _ => self.idle_since + t.keepalive,
            },
            Phase::Open(_) | Phase::Body(_) => self.last_active + t.header,
            Phase::Send | Phase::Shutdown | Phase::Closed => self.last_active + t.keepalive,
            Phase::Linger(since) => since + LINGER,
        }
    }

    /// The deadline passed. A client in the middle of a request head gets a
    /// 408 and a lingering close (see `Phase::Linger`); else, just close.
    pub fn timed_out(&mut self, env: &mut Env<'_>) {
        if matches!(self.phase, Phase::Head) && self.started() {
            self.refuse(408, None, env);
        } else {
            self.phase = Phase::Closed;
        }
    }

    /// A request's first byte has arrived and its head is not complete.
    fn started(&self) -> bool {
        self.parser.as_ref().is_some_and(|p| p.started())
    }

    /// Idle between requests: nothing read, nothing to send.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head) && !self.started() && self.start == self.end
    }

    /// Gives the session's buffers back as its connection closes.
    pub fn release(mut self, pools: &mut Pools) {
        if !self.input.is_empty() {
            pools.give_input(std::mem::take(&mut self.input));
        }
        if let Some(r) = self.response.take() {
            r.give_back(&mut pools.outputs);
        }
    }

    /// Once every byte of it is consumed, the read buffer goes back to the
    /// pool, even in the middle of a slow head (the parser keeps what it
    /// has seen): a byte of a head costs a few hundred bytes, not 32 KiB.
    fn give_back_if_consumed(&mut self, pools: &mut Pools) {
        if pools.pooled && self.start == self.end && !self.input.is_empty() {
            pools.give_input(std::mem::take(&mut self.input));
            (self.start, self.end) = (0, 0);
        }
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
