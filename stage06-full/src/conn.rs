//! One HTTP connection: its buffers, the request it is reading, the
//! response it is sending, and what to do when the Reactor says its socket
//! is ready.
//!
//! A connection moves through four phases:
//!
//! ```text
//!          head complete             body skipped
//!  ┌──────┐ ─────────────▶ ┌──────┐ ─────────────▶ ┌──────┐
//!  │ Head │                │ Body │                │ Send │
//!  └──────┘ ◀───────────── └──────┘                └──┬───┘
//!     ▲      (no body: straight to Send)              │ sent
//!     └──────────────── keep-alive ───────────────────┤
//!                                                     │ Connection: close
//!                                nothing unread ◀─────┤
//!                                  → closed        ┌──▼─────┐
//!                                                  │ Linger │ → closed
//!                                                  └────────┘
//! ```
//!
//! Requests that arrive pipelined wait in the read buffer and are parsed
//! one at a time, after the previous response has been sent, so they are
//! answered in order and at most one response is held in memory.

use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::file_cache::{FileCache, OpenFile, Opened};
use crate::http::body::{self, BodySkipper};
use crate::http::parser::{Head, Parser, Version};
use crate::http::range::{self, RangeAnswer};
use crate::http::{date, path, response};
use crate::log::AccessLog;
use crate::poller::{Interest, Readiness};
use crate::pool::BufferPool;
use crate::sys::{self, Root};

/// A read buffer holds a whole head of the largest size accepted (an 8 KiB
/// request line and 16 KiB of fields) with room to spare for pipelining.
pub const READ_BUF: usize = 32 * 1024;
/// Bodies up to this size are read into memory and leave with the head in
/// one `writev`; larger ones go by `sendfile`.
pub const SMALL_BODY: usize = 16 * 1024;
/// The output buffer's size: a head plus a small body.
pub const WRITE_BUF: usize = SMALL_BODY + 4096;
/// How long a closing connection waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(2);

/// What the worker lends a connection while it handles an event.
pub struct Context<'a> {
    pub root: &'a Root,
    /// Recently opened files (see `file_cache`).
    pub files: &'a mut FileCache,
    /// Today's `Date` value, refreshed once a second.
    pub date: &'a str,
    pub inputs: &'a mut BufferPool,
    pub outputs: &'a mut BufferPool,
    pub log: Option<&'a AccessLog>,
    pub now: Instant,
    pub max_body: u64,
    /// SIGTERM arrived: finish the response in hand, keep nothing alive.
    pub stopping: bool,
    /// Give the read buffer back when idle (see `reactor::Buffers`).
    pub pooled: bool,
    pub role: Role,
}

/// The timeouts a connection is subject to.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Idle between requests.
    pub keepalive: Duration,
    /// From a request's first byte to the end of its head (and between
    /// bytes of its body); a slow client gets 408.
    pub header: Duration,
}

/// What a handler wants the Reactor to do with the connection next.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    Keep(Interest),
    Close,
    /// `Role::Io`: there are bytes to process; hand the connection to the
    /// pool (`offload`).
    Offload,
}

/// Who drives a connection (see `--model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The Reactor: the event loop reads, processes and writes.
    Whole,
    /// The simulated Proactor's event thread: reads and writes only.
    Io,
    /// A pool thread of the simulated Proactor: processes only, no I/O.
    Process,
    /// The io_uring Proactor: the kernel does the I/O and reports
    /// completions (`on_received`, `on_sent`, …); `advance` only processes.
    Completion,
}

/// The operation a connection needs from the kernel next (`Role::Completion`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Receive into `recv_space`.
    Recv,
    /// Send `out_slices` (the head and a small body).
    Send,
    /// Read the next piece of the file into `file_target`.
    ReadFile,
    /// Send `file_chunk`.
    SendChunk,
    /// Nothing: the read buffer is full and must be consumed first.
    Nothing,
}

/// Bytes of a large file read per `ReadFile` (`Role::Completion`).
pub const FILE_CHUNK: usize = 64 * 1024;

enum Phase {
    Head,
    Body(BodySkipper),
    Send,
    /// Our side is shut down after a `Connection: close` response. Input is
    /// read and discarded until the client closes: closing a socket with
    /// unread input makes the kernel send a reset, which can destroy the
    /// response still in flight to the client.
    Linger(Instant),
}

/// A response being sent.
struct Response {
    head: Vec<u8>,
    head_sent: usize,
    /// A small body, sent with the head in one `writev`.
    body: Vec<u8>,
    body_sent: usize,
    /// A large body: the file, the next offset, and the end offset.
    file: Option<(Arc<OpenFile>, u64, u64)>,
    close: bool,
    status: u16,
    length: u64,
    /// `METHOD TARGET VERSION`, kept only when there is an access log.
    request_line: Option<String>,
}

pub struct Connection {
    pub stream: TcpStream,
    /// Taken from the pool when bytes arrive, given back when idle.
    /// `input[start..end]` is unconsumed.
    input: Vec<u8>,
    start: usize,
    end: usize,
    parser: Parser,
    phase: Phase,
    response: Option<Response>,
    /// When the current request's first byte arrived.
    request_started: Option<Instant>,
    last_active: Instant,
    requests: u64,
    /// The client has shut down its sending side.
    peer_closed: bool,
    /// Reading stopped because the buffer was full, not because the socket
    /// was drained: edge-triggered, no new event will say so, so `advance`
    /// reads again once it has consumed what it has.
    unread: bool,
    /// An error response threw away the rest of the input: the client may
    /// still be sending, so closing must linger (see `Phase::Linger`).
    cut_short: bool,
    /// TCP_NODELAY is set (on the first keep-alive response).
    nodelay: bool,
    /// `Role::Completion`: a piece of a large file read and not yet sent
    /// (`chunk[chunk_sent..]`); there is no `sendfile` in io_uring.
    chunk: Vec<u8>,
    chunk_sent: usize,
    /// What the poller currently watches.
    pub interest: Interest,
}

impl Connection {
    pub fn new(stream: TcpStream, now: Instant) -> Connection {
        Connection {
            stream,
            input: Vec::new(),
            start: 0,
            end: 0,
            parser: Parser::new(),
            phase: Phase::Head,
            response: None,
            request_started: None,
            last_active: now,
            requests: 0,
            peer_closed: false,
            unread: false,
            cut_short: false,
            nodelay: false,
            chunk: Vec::new(),
            chunk_sent: 0,
            interest: Interest {
                read: true,
                write: false,
            },
        }
    }

    /// Gives the connection's buffers back to the pools as it closes.
    pub fn release(mut self, inputs: &mut BufferPool, outputs: &mut BufferPool) {
        if !self.input.is_empty() {
            inputs.give(std::mem::take(&mut self.input));
        }
        if let Some(r) = self.response.take() {
            outputs.give(r.head);
            outputs.give(r.body);
        }
    }

    /// Idle between requests: nothing read, nothing to send.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head) && !self.parser.started() && self.start == self.end
    }

    // ANCHOR: on_event
    /// Handles one readiness event.
    pub fn on_event(&mut self, ready: Readiness, ctx: &mut Context<'_>) -> Status {
        if ready.error {
            return Status::Close;
        }
        if (ready.readable || ready.read_closed) && self.read_some(ready.read_closed, ctx).is_err()
        {
            return Status::Close;
        }
        // Writable or not, `advance` tries to send whatever is pending.
        self.proceed(ctx)
    }
    // ANCHOR_END: on_event

    /// Runs the phases as far as they go, in whatever `ctx.role` allows:
    /// after a readiness event (the Reactor), in a pool thread and back in
    /// the event thread (`proactor-sim`), after a completion (`uring`).
    pub fn proceed(&mut self, ctx: &mut Context<'_>) -> Status {
        match self.advance(ctx) {
            Ok(status) => status,
            // A reset, a broken pipe, a file that shrank under us.
            Err(_) => Status::Close,
        }
    }

    // ANCHOR: read_some
    /// Reads until the socket is drained, the buffer is full, or EOF.
    /// Draining is what edge-triggered notification requires; the buffer
    /// bound is the back-pressure (a client that pipelines without reading
    /// responses stops being read when the buffer fills). `fin`: the event
    /// said the peer has shut down its side (EPOLLRDHUP).
    fn read_some(&mut self, fin: bool, ctx: &mut Context<'_>) -> std::io::Result<()> {
        if matches!(self.phase, Phase::Linger(_)) {
            return self.discard_input();
        }
        if self.peer_closed {
            return Ok(());
        }
        if self.input.is_empty() {
            // READ_BUF bytes long, from the pool.
            self.input = ctx.inputs.take();
        }
        self.unread = false;
        loop {
            if self.start == self.end {
                (self.start, self.end) = (0, 0);
            } else if self.end == self.input.len() && self.start > 0 {
                self.input.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            if self.end == self.input.len() {
                // Full: the phase must consume first (see `unread`).
                self.unread = true;
                return Ok(());
            }
            match self.stream.read(&mut self.input[self.end..]) {
                // EOF: the client will send nothing more.
                Ok(0) => {
                    self.peer_closed = true;
                    return Ok(());
                }
                Ok(n) => {
                    let room = self.input.len() - self.end;
                    self.end += n;
                    self.last_active = ctx.now;
                    // A short read means the receive queue was empty: it
                    // is drained, and bytes that arrive later raise a new
                    // event, edge-triggered or not. Reading on to see
                    // EAGAIN would cost a system call per request for
                    // nothing. Not so when a FIN came with the data: EOF
                    // raises no new edge, so read on until it is seen.
                    if n < room && !fin {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
    // ANCHOR_END: read_some

    /// Reads what an earlier `read_some` left in the socket for lack of room.
    /// Returns whether there is anything new to look at.
    fn refill(&mut self, ctx: &mut Context<'_>) -> std::io::Result<bool> {
        if !self.unread || matches!(ctx.role, Role::Process | Role::Completion) {
            return Ok(false);
        }
        self.read_some(false, ctx)?;
        Ok(self.start != self.end || self.peer_closed)
    }

    // ANCHOR: completion_api
    /// `Role::Completion`: what to ask the kernel for next.
    pub fn want(&self) -> Want {
        if let (Phase::Send, Some(r)) = (&self.phase, &self.response) {
            if r.head_sent < r.head.len() || r.body_sent < r.body.len() {
                return Want::Send;
            }
            if self.chunk_sent < self.chunk.len() {
                return Want::SendChunk;
            }
            return Want::ReadFile;
        }
        let full = !self.input.is_empty() && self.end == self.input.len() && self.start == 0;
        if full { Want::Nothing } else { Want::Recv }
    }

    /// The free end of the read buffer, taken from the pool if need be.
    pub fn recv_space(&mut self, inputs: &mut BufferPool) -> &mut [u8] {
        if self.input.is_empty() {
            self.input = inputs.take();
            (self.start, self.end) = (0, 0);
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.input.len() && self.start > 0 {
            self.input.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        &mut self.input[self.end..]
    }

    /// The kernel received `n` bytes into `recv_space` (0: EOF).
    pub fn on_received(&mut self, n: usize, now: Instant) {
        if n == 0 {
            self.peer_closed = true;
        } else if matches!(self.phase, Phase::Linger(_)) {
            // Read only to see the client's close; the bytes are dropped.
        } else {
            self.end += n;
            self.last_active = now;
        }
    }

    /// What is left of the head and the small body.
    pub fn out_slices(&self) -> (&[u8], &[u8]) {
        match &self.response {
            Some(r) => (&r.head[r.head_sent..], &r.body[r.body_sent..]),
            None => (&[], &[]),
        }
    }

    /// The kernel sent `n` bytes of `out_slices`.
    pub fn on_sent(&mut self, n: usize, now: Instant) {
        if let Some(r) = self.response.as_mut() {
            let h = n.min(r.head.len() - r.head_sent);
            r.head_sent += h;
            r.body_sent += n - h;
            self.last_active = now;
        }
    }

    /// Where the next piece of the file goes: the file, its offset, and a
    /// buffer of up to `FILE_CHUNK` bytes.
    pub fn file_target(&mut self) -> Option<(&std::fs::File, u64, &mut [u8])> {
        let r = self.response.as_ref()?;
        let (file, offset, end) = r.file.as_ref()?;
        let len = ((*end - *offset) as usize).min(FILE_CHUNK);
        self.chunk.resize(len, 0);
        self.chunk_sent = 0;
        Some((&file.file, *offset, &mut self.chunk[..]))
    }

    /// The kernel read `n` bytes of the file into the chunk. Zero: the file
    /// shrank under us, and the promised length cannot be kept.
    pub fn on_file_read(&mut self, n: usize) -> bool {
        self.chunk.truncate(n);
        if let Some((_, offset, _)) = self.response.as_mut().and_then(|r| r.file.as_mut()) {
            *offset += n as u64;
        }
        n > 0
    }

    /// What is left of the chunk.
    pub fn file_chunk(&self) -> &[u8] {
        &self.chunk[self.chunk_sent..]
    }

    /// The kernel sent `n` bytes of the chunk.
    pub fn on_chunk_sent(&mut self, n: usize, now: Instant) {
        self.chunk_sent += n;
        self.last_active = now;
        if self.chunk_sent == self.chunk.len() {
            self.chunk.clear();
            self.chunk_sent = 0;
        }
    }

    /// The response is all out: head, small body, file.
    fn all_sent(&self) -> bool {
        self.response.as_ref().is_none_or(|r| {
            r.head_sent == r.head.len()
                && r.body_sent == r.body.len()
                && r.file.as_ref().is_none_or(|(_, offset, end)| offset >= end)
        }) && self.chunk_sent == self.chunk.len()
    }
    // ANCHOR_END: completion_api

    /// In `Linger`, input is read into a scratch array and thrown away.
    fn discard_input(&mut self) -> std::io::Result<()> {
        let mut sink = [0u8; 4096];
        loop {
            match self.stream.read(&mut sink) {
                Ok(0) => {
                    self.peer_closed = true;
                    return Ok(());
                }
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    // ANCHOR: advance
    /// Moves the connection through its phases as far as the bytes in hand
    /// and the socket allow.
    fn advance(&mut self, ctx: &mut Context<'_>) -> std::io::Result<Status> {
        loop {
            match &mut self.phase {
                Phase::Head => {
                    if self.start == self.end {
                        if self.peer_closed || (ctx.stopping && self.is_idle()) {
                            return Ok(Status::Close);
                        }
                        if self.refill(ctx)? {
                            continue;
                        }
                        break;
                    }
                    if ctx.role == Role::Io {
                        return Ok(Status::Offload);
                    }
                    let was_started = self.parser.started();
                    let fed = self.parser.feed(&self.input[self.start..self.end]);
                    if !was_started && self.parser.started() {
                        self.request_started = Some(ctx.now);
                    }
                    match fed {
                        Err(e) => {
                            // The rest of the input cannot be trusted.
                            self.start = self.end;
                            self.cut_short = true;
                            self.respond_error(e.status(), None, true, ctx);
                            self.phase = Phase::Send;
                        }
                        Ok(progress) => {
                            self.start += progress.consumed;
                            if progress.done {
                                let head = self.parser.take();
                                self.on_head(head, ctx);
                            }
                        }
                    }
                }
                Phase::Body(_) if ctx.role == Role::Io && self.start != self.end => {
                    return Ok(Status::Offload);
                }
                Phase::Body(skipper) => {
                    let skipped = skipper.skip(&self.input[self.start..self.end]);
                    match skipped {
                        Err(e) => {
                            self.start = self.end;
                            self.cut_short = true;
                            let line = self.response.as_mut().and_then(|r| r.request_line.take());
                            self.respond_error(e.status(), line, true, ctx);
                            self.phase = Phase::Send;
                        }
                        Ok(s) => {
                            self.start += s.consumed;
                            if s.done {
                                self.phase = Phase::Send;
                            } else if self.peer_closed {
                                return Ok(Status::Close);
                            } else if self.refill(ctx)? {
                                continue;
                            } else {
                                break;
                            }
                        }
                    }
                }
                // ANCHOR: send_phase
                Phase::Send if ctx.role == Role::Process => break, // the event thread sends
                Phase::Send => {
                    if ctx.role == Role::Completion {
                        self.keep_nodelay();
                        if !self.all_sent() {
                            break; // the kernel is sending it
                        }
                    } else if !self.flush(ctx)? {
                        break; // the socket is full: wait for EPOLLOUT
                    }
                    let close = self.finish_response(ctx);
                    if close {
                        // Closing with unread bytes in the socket makes the
                        // kernel send RST, and an RST can destroy the
                        // response before the client has read it. So when
                        // bytes may still come, shut our side and linger
                        // until the client closes; when none can (all
                        // consumed, the client's FIN seen or its request
                        // complete), close at once, as nginx does, saving
                        // a shutdown, a read and a wait per connection.
                        let pending = self.start != self.end || self.unread || self.cut_short;
                        if self.peer_closed || !pending {
                            return Ok(Status::Close);
                        }
                        let _ = self.stream.shutdown(Shutdown::Write);
                        self.start = self.end;
                        self.phase = Phase::Linger(ctx.now);
                    } else {
                        self.phase = Phase::Head;
                        self.request_started = None;
                    }
                }
                // ANCHOR_END: send_phase
                Phase::Linger(_) => {
                    self.start = self.end;
                    if self.peer_closed {
                        return Ok(Status::Close);
                    }
                    break;
                }
            }
        }
        if ctx.pooled && self.is_idle() && !self.input.is_empty() {
            // Idle keep-alive connection: give the buffer back.
            ctx.inputs.give(std::mem::take(&mut self.input));
            (self.start, self.end) = (0, 0);
        }
        Ok(Status::Keep(self.wanted()))
    }
    // ANCHOR_END: advance

    /// Read while there is room (or no buffer yet); write while a response
    /// is pending.
    fn wanted(&self) -> Interest {
        let room = self.input.is_empty() || self.end < self.input.len() || self.start > 0;
        Interest {
            read: !self.peer_closed && room,
            write: matches!(self.phase, Phase::Send),
        }
    }

    /// When this connection's timer should fire, given its phase.
    pub fn deadline(&self, t: &Timeouts) -> Instant {
        match self.phase {
            Phase::Head => match self.request_started {
                Some(started) if self.parser.started() => started + t.header,
                // A new connection must start a request within the header
                // timeout; a kept-alive one may idle for the keep-alive one.
                _ if self.requests == 0 => self.last_active + t.header,
                _ => self.last_active + t.keepalive,
            },
            Phase::Body(_) => self.last_active + t.header,
            Phase::Send => self.last_active + t.keepalive,
            Phase::Linger(since) => since + LINGER,
        }
    }

    /// The timer fired. A client in the middle of a request head gets a
    /// 408 (one best-effort write: the connection closes either way).
    pub fn on_timeout(&mut self, date: &str) {
        if matches!(self.phase, Phase::Head) && self.parser.started() {
            let body = response::error_page(408);
            let mut out = Vec::with_capacity(256 + body.len());
            response::begin(&mut out, 408, date);
            response::field(&mut out, "Content-Type", "text/html; charset=utf-8");
            response::field(&mut out, "Content-Length", body.len());
            response::field(&mut out, "Connection", "close");
            response::end(&mut out);
            out.extend_from_slice(body.as_bytes());
            let _ = (&self.stream).write(&out);
            let _ = self.stream.shutdown(Shutdown::Write);
        }
    }

    // ANCHOR: on_head
    /// A complete head arrived: decide the response.
    fn on_head(&mut self, head: Head, ctx: &mut Context<'_>) {
        let line = ctx.log.map(|_| {
            format!(
                "{} {} {}",
                head.method,
                String::from_utf8_lossy(&head.target),
                head.version
            )
        });
        let keep_alive = !ctx.stopping
            && !self.peer_closed
            && match head.version {
                Version::Http11 => !head.has_token("connection", "close"),
                Version::Http10 => head.has_token("connection", "keep-alive"),
            };
        let hosts = head.headers_named("host").count();
        if hosts > 1 || (head.version == Version::Http11 && hosts == 0) {
            return self.refuse(400, line, ctx);
        }
        match head.method.as_str() {
            "GET" | "HEAD" => {}
            "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "TRACE" | "CONNECT" => {
                return self.refuse(405, line, ctx);
            }
            _ => return self.refuse(501, line, ctx),
        }
        let skipper = match body::framing(&head)
            .and_then(|f| BodySkipper::new(f, ctx.max_body).map_err(|e| e.status()))
        {
            Ok(skipper) => skipper,
            Err(status) => return self.refuse(status, line, ctx),
        };
        let mut response = file_response(&head, keep_alive, ctx);
        response.request_line = line;
        self.response = Some(response);
        self.phase = if skipper.is_done() {
            Phase::Send
        } else {
            Phase::Body(skipper)
        };
    }
    // ANCHOR_END: on_head

    /// An error response after which the connection closes: what follows
    /// the head (a body of unknown framing) cannot be trusted.
    fn refuse(&mut self, status: u16, line: Option<String>, ctx: &mut Context<'_>) {
        self.respond_error(status, line, true, ctx);
        self.phase = Phase::Send;
    }

    fn respond_error(
        &mut self,
        status: u16,
        line: Option<String>,
        close: bool,
        ctx: &mut Context<'_>,
    ) {
        let mut r = error_response(status, false, close, ctx);
        r.request_line = line.or_else(|| ctx.log.map(|_| "-".to_string()));
        if let Some(old) = self.response.replace(r) {
            give_back(old, ctx);
        }
    }

    /// Sets TCP_NODELAY once the connection is known to be kept alive.
    fn keep_nodelay(&mut self) {
        // ANCHOR: nodelay
        if self.response.as_ref().is_some_and(|r| !r.close) && !self.nodelay {
            // The connection stays open, so a later response may be written
            // while this one is unacknowledged: Nagle's algorithm would hold
            // it until the client's delayed ACK, 40 ms later. A connection
            // that closes after this response needs no option: closing
            // pushes out whatever Nagle holds. (nginx sets it at the same
            // moment.)
            let _ = self.stream.set_nodelay(true);
            self.nodelay = true;
        }
        // ANCHOR_END: nodelay
    }

    /// Writes as much of the response as the socket takes. True when all
    /// of it has gone.
    fn flush(&mut self, ctx: &mut Context<'_>) -> std::io::Result<bool> {
        self.keep_nodelay();
        let Some(r) = self.response.as_mut() else {
            return Ok(true);
        };
        loop {
            let head = &r.head[r.head_sent..];
            let body = &r.body[r.body_sent..];
            let file_follows = r.file.as_ref().is_some_and(|(_, offset, end)| offset < end);
            if !head.is_empty() || !body.is_empty() {
                // One system call for head and small body: no Nagle stall
                // between two writes, and half the calls. When a file
                // follows, MSG_MORE holds the head back to share its packet
                // with the file's first bytes (TCP_CORK without the two
                // extra setsockopt calls; `sendfile` sets it itself for all
                // but its last page).
                let sent = if file_follows {
                    sys::send_more(&self.stream, head)
                } else {
                    (&self.stream).write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
                };
                match sent {
                    Ok(0) => return Err(ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        let h = n.min(head.len());
                        r.head_sent += h;
                        r.body_sent += n - h;
                        self.last_active = ctx.now;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            if let Some((file, offset, end)) = r.file.as_mut()
                && *offset < *end
            {
                let count = (*end - *offset).min(1 << 30) as usize;
                match sys::send_file(&self.stream, &file.file, offset, count) {
                    // The file shrank under us: the promised length cannot
                    // be kept, so the connection must end.
                    Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                    Ok(_) => self.last_active = ctx.now,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            return Ok(true);
        }
    }

    /// The response has gone: log it and give its buffers back. Returns
    /// whether the connection closes now.
    fn finish_response(&mut self, ctx: &mut Context<'_>) -> bool {
        self.requests += 1;
        let Some(r) = self.response.take() else {
            return true;
        };
        let close = r.close || self.peer_closed || ctx.stopping;
        if let (Some(log), Some(line)) = (ctx.log, r.request_line.as_ref()) {
            let peer = self
                .stream
                .peer_addr()
                .map_or_else(|_| "-".to_string(), |a| a.ip().to_string());
            log.line(format!(
                "{peer} - - [{}] \"{line}\" {} {}\n",
                date::format_clf(SystemTime::now()),
                r.status,
                r.length
            ));
        }
        give_back(r, ctx);
        close
    }
}

fn give_back(r: Response, ctx: &mut Context<'_>) {
    ctx.outputs.give(r.head);
    ctx.outputs.give(r.body);
}

fn error_response(status: u16, head_only: bool, close: bool, ctx: &mut Context<'_>) -> Response {
    let page = response::error_page(status);
    let mut head = ctx.outputs.take();
    response::begin(&mut head, status, ctx.date);
    response::field(&mut head, "Content-Type", "text/html; charset=utf-8");
    response::field(&mut head, "Content-Length", page.len());
    if status == 405 {
        response::field(&mut head, "Allow", "GET, HEAD");
    }
    if close {
        response::field(&mut head, "Connection", "close");
    }
    response::end(&mut head);
    let mut body = ctx.outputs.take();
    if !head_only {
        body.extend_from_slice(page.as_bytes());
    }
    Response {
        head,
        head_sent: 0,
        body,
        body_sent: 0,
        file: None,
        close,
        status,
        length: if head_only { 0 } else { page.len() as u64 },
        request_line: None,
    }
}

// ANCHOR: file_response
/// The response to a GET or HEAD for a file.
fn file_response(head: &Head, keep_alive: bool, ctx: &mut Context<'_>) -> Response {
    let head_only = head.method == "HEAD";
    let close = !keep_alive;
    let resolved = match path::resolve(&head.target) {
        Ok(r) => r,
        Err(e) => return error_response(e.status(), head_only, close, ctx),
    };
    let file = match ctx.files.open(
        ctx.root,
        &resolved.relative,
        resolved.trailing_slash,
        ctx.now,
    ) {
        Opened::File(f) => f,
        Opened::Redirect => {
            return redirect(&format!("{}/", resolved.raw_path), head_only, close, ctx);
        }
        Opened::Status(status) => return error_response(status, head_only, close, ctx),
    };
    if let Some(since) = head.header("if-modified-since").and_then(date::parse) {
        let since_secs = since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if file.modified_secs <= since_secs {
            let mut out = ctx.outputs.take();
            response::begin(&mut out, 304, ctx.date);
            response::field(&mut out, "Last-Modified", &file.last_modified);
            connection_field(&mut out, head.version, close);
            response::end(&mut out);
            return Response {
                head: out,
                head_sent: 0,
                body: ctx.outputs.take(),
                body_sent: 0,
                file: None,
                close,
                status: 304,
                length: 0,
                request_line: None,
            };
        }
    }
    let len = file.len;
    let (status, start, end) = match head.header("range") {
        Some(r) if head.header("if-range").is_none() => match range::answer(r, len) {
            RangeAnswer::Full => (200, 0, len),
            RangeAnswer::Partial { start, end } => (206, start, end + 1),
            RangeAnswer::Unsatisfiable => {
                let mut r = error_response(416, head_only, close, ctx);
                // Insert Content-Range before the blank line.
                r.head.truncate(r.head.len() - 2);
                response::field(&mut r.head, "Content-Range", format!("bytes */{len}"));
                response::end(&mut r.head);
                return r;
            }
        },
        _ => (200, 0, len),
    };
    let mut out = ctx.outputs.take();
    response::begin(&mut out, status, ctx.date);
    response::field(&mut out, "Content-Type", file.content_type);
    response::field(&mut out, "Content-Length", end - start);
    response::field(&mut out, "Last-Modified", &file.last_modified);
    response::field(&mut out, "Accept-Ranges", "bytes");
    if status == 206 {
        response::field(
            &mut out,
            "Content-Range",
            format!("bytes {start}-{}/{len}", end - 1),
        );
    }
    connection_field(&mut out, head.version, close);
    response::end(&mut out);
    let mut body = ctx.outputs.take();
    let mut large = None;
    if !head_only {
        if let Some(contents) = &file.contents {
            // A small file: its bytes are in the cache entry, so the body
            // is a copy, not a read.
            body.extend_from_slice(&contents[start as usize..end as usize]);
        } else {
            large = Some((file, start, end));
        }
    }
    Response {
        head: out,
        head_sent: 0,
        body,
        body_sent: 0,
        file: large,
        close,
        status,
        length: if head_only { 0 } else { end - start },
        request_line: None,
    }
}
// ANCHOR_END: file_response

fn connection_field(out: &mut Vec<u8>, version: Version, close: bool) {
    if close {
        response::field(out, "Connection", "close");
    } else if version == Version::Http10 {
        response::field(out, "Connection", "keep-alive");
    }
}

fn redirect(location: &str, head_only: bool, close: bool, ctx: &mut Context<'_>) -> Response {
    let mut r = error_response(301, head_only, close, ctx);
    r.head.truncate(r.head.len() - 2);
    response::field(&mut r.head, "Location", location);
    response::end(&mut r.head);
    r
}
