//! The Reactor: one thread, one epoll instance, every socket non-blocking.
//! Each worker process runs one; its connections come from the master
//! (`pass`) or from a listener (`shared`, `reuseport`), see [`Intake`]. In
//! this stage it serves HTTP: it owns the worker's connection slots, its
//! buffer pools, its access log and the cached `Date` value, and lends them
//! to a connection for each event (see [`Context`]).
//!
//! The loop waits until the kernel says some sockets are *ready*, then
//! dispatches each event to the handler of the socket it is for; the handler
//! does the I/O itself, which cannot block because the socket is ready (and
//! non-blocking in case it is not). That is the Reactor pattern: the kernel
//! reports readiness, the application performs the I/O. (A Proactor is the
//! other way round: the application starts the I/O and the kernel reports
//! its completion; see the Reactor vs Proactor chapter.)

use std::fs::File;
use std::io::Write;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use crate::conn::{
    Connection, Context, READ_BUF, Role, SMALL_BODY, Status, Timeouts, WRITE_BUF, Want,
};
use crate::file_cache::FileCache;
use crate::http::{date, response};
use crate::log::AccessLog;
use crate::offload::{Job, Offload, Shared};

/// The [`Context`] a connection needs from its worker, built from the
/// Reactor's fields one by one. A macro rather than a method: a method would
/// borrow the whole Reactor, while the caller already holds one of its slots
/// (the connection) mutably; field by field, the borrows are disjoint.
macro_rules! context {
    ($reactor:expr, role: $role:expr, pooled: $pooled:expr) => {
        Context {
            root: &$reactor.root,
            files: &mut $reactor.files,
            date: &$reactor.date,
            inputs: &mut $reactor.inputs,
            outputs: &mut $reactor.outputs,
            log: $reactor.log.as_deref(),
            now: $reactor.now,
            max_body: $reactor.config.max_body,
            stopping: $reactor.stopping,
            pooled: $pooled,
            role: $role,
        }
    };
}

mod uring;
use crate::poller::{Event, Events, Interest, Poller, Readiness, Token, Trigger};
use crate::pool::BufferPool;
use crate::sys::{self, Alarm, Root};
use crate::timer_heap::{TimerHeap, TimerId};
pub use uring::available as uring_available;

/// The listener's token. Connection tokens are built from slab indices and
/// never reach this value.
const LISTENER: Token = Token(u64::MAX);
/// The signalfd: SIGTERM and SIGINT arrive as reads on it.
const SIGNALS: Token = Token(u64::MAX - 1);
/// The timerfd, armed for the nearest idle deadline.
const ALARM: Token = Token(u64::MAX - 2);
/// The channel to the master: passed connections arrive on it.
const CHANNEL: Token = Token(u64::MAX - 3);
/// The eventfd the simulated Proactor's pool writes when jobs come back.
const OFFLOAD: Token = Token(u64::MAX - 4);
const EMPTY_IOVEC: nix::libc::iovec = nix::libc::iovec {
    iov_base: std::ptr::null_mut(),
    iov_len: 0,
};
/// A timer that fires while its connection is in the pool is put off by
/// this much.
const AWAY_GRACE: Duration = Duration::from_millis(10);

/// Room for events per `epoll_wait`. More ready sockets than this are simply
/// reported by the next call.
const EVENTS_PER_WAIT: usize = 1024;
/// At most this many files stay open in a worker's open-file cache: each is
/// a descriptor (counted against the same limit as connections) and up to
/// `SMALL_BODY` bytes of memory, so the bound is 8 MiB and 512 descriptors.
const OPEN_FILES: usize = 512;

/// The listen backlog; the kernel caps it at `net.core.somaxconn`.
pub const BACKLOG: i32 = 1024;

/// What the Reactor is told on the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// How connection sockets are registered.
    pub trigger: Trigger,
    /// How the listening socket is registered.
    pub listen_trigger: Trigger,
    /// Connection slots, allocated up front; past them a new connection
    /// gets 503 and is closed.
    pub max_conns: usize,
    /// The document root.
    pub root: PathBuf,
    pub timeouts: Timeouts,
    /// Request bodies past this many bytes get 413.
    pub max_body: u64,
    /// Where to append the access log; `None`: no log.
    pub access_log: Option<PathBuf>,
    /// After SIGTERM, how long in-flight responses may take to finish.
    pub grace: Duration,
    /// Pooled buffers (the design), or buffers each connection owns for its
    /// whole life (the naive one, kept for the measurement in chapter 6).
    pub buffers: Buffers,
    /// How long an opened file is served from the open-file cache; zero
    /// turns the cache off.
    pub open_file_cache: Duration,
    /// Who does the I/O and who processes requests (chapter "Reactor vs
    /// Proactor").
    pub model: Model,
    /// `Model::ProactorSim`: the pool's threads.
    pub threads: usize,
}

/// `--model`: where requests are processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// The event loop is told a socket is ready and does all the work.
    Reactor,
    /// The event loop does the I/O; a thread pool processes requests.
    ProactorSim,
    /// The kernel does the I/O (io_uring); the loop reaps completions.
    Uring,
}

impl std::str::FromStr for Model {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reactor" => Ok(Model::Reactor),
            "proactor-sim" => Ok(Model::ProactorSim),
            "uring" => Ok(Model::Uring),
            other => Err(format!(
                "unknown model {other:?}: use reactor, proactor-sim or uring"
            )),
        }
    }
}

/// Who owns a connection's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffers {
    /// Borrowed from the worker's pools while busy, given back when idle.
    Pooled,
    /// The naive design: the read buffer is allocated by each connection,
    /// kept while it lives and freed with it; response buffers are
    /// allocated for each response and freed after it.
    PerConnection,
}

impl std::str::FromStr for Buffers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pooled" => Ok(Buffers::Pooled),
            "per-connection" => Ok(Buffers::PerConnection),
            other => Err(format!(
                "unknown buffers {other:?}: use pooled or per-connection"
            )),
        }
    }
}

// ANCHOR: intake
/// Where a worker's connections come from: the three dispatch modes.
pub enum Intake {
    /// `pass`: the master accepts and passes each connection over the
    /// channel; the worker has no listener at all.
    Passed,
    /// `shared`: the listener inherited from the master, which every worker
    /// watches and accepts from; with `exclusive`, registered with
    /// EPOLLEXCLUSIVE so a connection wakes one worker, not all.
    Shared {
        listener: TcpListener,
        exclusive: bool,
    },
    /// `reuseport`: the worker's own `SO_REUSEPORT` listener on the same
    /// address; the kernel picks a listener per connection.
    ReusePort { addr: SocketAddr },
}
// ANCHOR_END: intake

/// The messages of the master-worker channel (one per `SOCK_SEQPACKET`
/// packet). Worker to master: `READY`, then `LOAD` whenever its load
/// changes. Master to worker: `CONN` with a descriptor attached.
pub mod message {
    pub const READY: u8 = b'R';
    /// Followed by live connections (u32) and connections taken in so far
    /// (u64), little-endian.
    pub const LOAD: u8 = b'L';
    pub const CONN: u8 = b'C';
    pub const LOAD_LEN: usize = 1 + 4 + 8;

    pub fn load(live: u32, total: u64) -> [u8; LOAD_LEN] {
        let mut m = [0u8; LOAD_LEN];
        m[0] = LOAD;
        m[1..5].copy_from_slice(&live.to_le_bytes());
        m[5..13].copy_from_slice(&total.to_le_bytes());
        m
    }

    /// Decodes a `LOAD` message into (live, total).
    pub fn parse_load(m: &[u8]) -> Option<(u32, u64)> {
        if m.len() != LOAD_LEN || m[0] != LOAD {
            return None;
        }
        let live = u32::from_le_bytes(m[1..5].try_into().ok()?);
        let total = u64::from_le_bytes(m[5..13].try_into().ok()?);
        Some((live, total))
    }
}

// ANCHOR: slot
/// A slab entry. `generation` grows each time the slot is reused and is part
/// of the token, so an event meant for a connection that was closed earlier
/// in the same batch (and whose slot was taken by a newer one) is recognised
/// as stale and ignored. nginx keeps one "instance" bit for the same reason.
struct Slot {
    generation: u32,
    conn: Option<Connection>,
    /// The connection's idle timer; set and cleared with `conn`.
    timer: Option<TimerId>,
    /// `proactor-sim`: the connection is in the pool (`conn` is `None`
    /// until it comes back).
    away: bool,
    /// `uring`: an operation is in flight, which one, and the `iovec`s of
    /// a `Writev` (they must outlive the submission, so they live here).
    inflight: bool,
    op: Want,
    iov: [nix::libc::iovec; 2],
    /// `uring`: closed while an operation was in flight; the slot is freed
    /// when that operation completes.
    closing: bool,
}

fn token_of(index: usize, generation: u32) -> Token {
    Token((u64::from(generation) << 32) | index as u64)
}

fn split_token(token: Token) -> (usize, u32) {
    ((token.0 & 0xffff_ffff) as usize, (token.0 >> 32) as u32)
}
// ANCHOR_END: slot

/// The single-threaded echo server a worker runs.
pub struct Reactor {
    config: Config,
    /// `None` in `pass` mode: connections arrive on `channel`.
    listener: Option<TcpListener>,
    /// To the master. Passed connections arrive here; load reports leave
    /// here; EOF means the master is gone and the worker must stop.
    channel: OwnedFd,
    /// The load last reported to the master, and connections taken in.
    reported: (usize, u64),
    taken: u64,
    poller: Poller,
    /// Connections by slab index; `free` lists the empty slots.
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
    /// An open descriptor kept in reserve for the moment the process runs out
    /// (EMFILE): see [`Reactor::shed_one`]. `None` only while it is in use.
    reserve: Option<File>,
    root: Arc<Root>,
    /// Read buffers and output buffers, lent to connections while busy.
    inputs: BufferPool,
    outputs: BufferPool,
    files: FileCache,
    log: Option<Arc<AccessLog>>,
    /// `--model proactor-sim`: the pool that processes requests.
    offload: Option<Offload>,
    /// `--model uring`: the io_uring the worker submits its I/O to.
    ring: Option<uring::Ring>,
    /// The `Date` value, and the second it was made for.
    date: String,
    date_secs: u64,
    /// After SIGTERM: when the loop stops, finished or not.
    drain_until: Option<Instant>,
    /// One idle timer per connection, valued by the connection's token.
    timers: TimerHeap<Token>,
    /// Blocked SIGTERM and SIGINT, readable as events.
    signals: SignalFd,
    /// The timerfd, and the deadline it is armed for (`None`: disarmed or
    /// already fired).
    alarm: Alarm,
    armed_for: Option<Instant>,
    /// The time, read once per loop iteration after `epoll_wait` returns
    /// (nginx does the same): every event of a batch happened "now" as far
    /// as timers are concerned, and the clock is read once, not per event.
    now: Instant,
    /// Set by SIGTERM or SIGINT; the loop ends after the current batch.
    stopping: bool,
}

impl Reactor {
    /// Sets up a worker's loop, after the fork: the epoll instance is
    /// created here, in the worker, so that no two processes share one (an
    /// epoll instance inherited across fork is the *same* instance, and its
    /// events go to whichever process waits first). Tells the master it is
    /// ready. The loop starts with [`run`].
    ///
    /// [`run`]: Reactor::run
    pub fn new(config: Config, intake: Intake, channel: OwnedFd) -> io::Result<Reactor> {
        let poller = Poller::new()?;
        let read_only = Interest {
            read: true,
            write: false,
        };
        let listener = match intake {
            Intake::Passed => None,
            Intake::Shared {
                listener,
                exclusive: true,
            } => {
                poller.add_exclusive(&listener, LISTENER, config.listen_trigger)?;
                Some(listener)
            }
            Intake::Shared { listener, .. } => {
                poller.add(&listener, LISTENER, read_only, config.listen_trigger)?;
                Some(listener)
            }
            Intake::ReusePort { addr } => {
                let listener = sys::listen_reuseport(addr, BACKLOG)?;
                poller.add(&listener, LISTENER, read_only, config.listen_trigger)?;
                Some(listener)
            }
        };
        poller.add(&channel, CHANNEL, read_only, Trigger::Level)?;
        sys::ignore_sigpipe()?;
        let signals = sys::signal_fd(&[Signal::SIGTERM, Signal::SIGINT])?;
        // Level-triggered: the loop reads both until they are empty anyway.
        poller.add(&signals, SIGNALS, read_only, Trigger::Level)?;
        let alarm = Alarm::new()?;
        poller.add(&alarm, ALARM, read_only, Trigger::Level)?;
        let root = Arc::new(Root::open(&config.root)?);
        let files = FileCache::new(config.open_file_cache, OPEN_FILES, SMALL_BODY);
        let log = match &config.access_log {
            Some(path) => Some(Arc::new(AccessLog::open(path)?)),
            None => None,
        };
        let ring = match config.model {
            Model::Uring => Some(uring::Ring::new()?),
            _ => None,
        };
        let offload = match config.model {
            Model::Reactor | Model::Uring => None,
            Model::ProactorSim => {
                let offload = Offload::start(
                    config.threads,
                    Shared {
                        root: Arc::clone(&root),
                        log: log.clone(),
                        max_body: config.max_body,
                        open_file_cache: config.open_file_cache,
                    },
                )?;
                poller.add(offload.wake_fd(), OFFLOAD, read_only, Trigger::Level)?;
                Some(offload)
            }
        };
        // The connection pool: every slot exists before the first client.
        let slots = (0..config.max_conns)
            .map(|_| Slot {
                generation: 0,
                conn: None,
                timer: None,
                away: false,
                inflight: false,
                op: Want::Nothing,
                iov: [EMPTY_IOVEC; 2],
                closing: false,
            })
            .collect();
        let free = (0..config.max_conns).rev().collect();
        // Without pooling nothing is kept: every buffer is allocated when
        // needed and freed when done.
        let pool_keep = match config.buffers {
            Buffers::Pooled => config.max_conns.min(1024),
            Buffers::PerConnection => 0,
        };
        sys::send_message(&channel, &[message::READY], None)?;
        Ok(Reactor {
            config,
            listener,
            channel,
            reported: (0, 0),
            taken: 0,
            poller,
            slots,
            free,
            live: 0,
            reserve: Some(open_reserve()?),
            root,
            inputs: BufferPool::new(READ_BUF, pool_keep, true),
            outputs: BufferPool::new(WRITE_BUF, pool_keep * 2, false),
            files,
            log,
            offload,
            ring,
            date: date::format(SystemTime::now()),
            date_secs: 0,
            drain_until: None,
            timers: TimerHeap::new(),
            signals,
            alarm,
            armed_for: None,
            now: Instant::now(),
            stopping: false,
        })
    }

    // ANCHOR: run
    /// Runs the event loop until SIGTERM, SIGINT or the master's exit: arm
    /// the alarm for the nearest deadline, wait for readiness, dispatch each
    /// event (the alarm firing is one of them, and expires the due timers),
    /// report the load to the master if it changed.
    pub fn run(&mut self) -> io::Result<()> {
        if self.ring.is_some() {
            return self.run_uring();
        }
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        while !self.finished() {
            self.arm_alarm();
            match self.poller.wait(&mut events, None) {
                Ok(()) => {}
                // Signals are blocked, so this is rare (a debugger, SIGSTOP
                // and SIGCONT); nothing is lost, wait again.
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.now = Instant::now();
            self.refresh_date();
            for event in events.iter() {
                self.dispatch(event);
            }
            self.report_load();
        }
        self.shutdown();
        Ok(())
    }

    fn dispatch(&mut self, event: Event) {
        match event.token {
            LISTENER if !self.stopping => self.on_acceptable(),
            LISTENER => {}
            SIGNALS => self.on_signals(),
            ALARM => self.on_alarm(),
            CHANNEL => self.on_channel(),
            OFFLOAD => self.on_offload_done(),
            token => self.on_connection_event(token, event.readiness),
        }
    }
    // ANCHOR_END: run

    /// Stopping, and either every connection is done or the grace period
    /// is over.
    fn finished(&self) -> bool {
        self.stopping && (self.live == 0 || self.drain_until.is_some_and(|t| self.now >= t))
    }

    /// The `Date` field changes once a second; format it once a second.
    fn refresh_date(&mut self) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.date_secs {
            self.date_secs = secs;
            self.date = date::format(now);
        }
    }

    // ANCHOR: stop
    /// SIGTERM, SIGINT or the master's exit: stop taking connections, close
    /// the idle ones now, and let the busy ones finish their response
    /// (their next `finish_response` closes them) within the grace period.
    fn begin_stop(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.drain_until = Some(self.now + self.config.grace);
        if let Some(listener) = self.listener.take() {
            let _ = self.poller.delete(&listener);
        }
        for index in 0..self.slots.len() {
            if self.slots[index]
                .conn
                .as_ref()
                .is_some_and(Connection::is_idle)
            {
                self.close(index);
            }
        }
    }
    // ANCHOR_END: stop

    // ANCHOR: on_channel
    /// The master's channel is readable: passed connections, or EOF.
    fn on_channel(&mut self) {
        let mut buf = [0u8; 16];
        loop {
            match sys::recv_message(&self.channel, &mut buf) {
                // EOF: the master is gone. A worker without a master would
                // serve on with nobody to restart it or stop it: stop now.
                Ok(received) if received.len == 0 => {
                    self.begin_stop();
                    return;
                }
                Ok(received) => {
                    if let Some(fd) = received.fd {
                        self.register(TcpStream::from(fd));
                    }
                }
                // Nothing more waiting.
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // The master died with a message of ours unread: as EOF.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    self.begin_stop();
                    return;
                }
                Err(e) => {
                    eprintln!("worker channel: {e}");
                    self.begin_stop();
                    return;
                }
            }
        }
    }

    /// Tells the master the current load, once per loop iteration at most
    /// and only when it changed: the master picks the least-loaded worker
    /// from these reports.
    fn report_load(&mut self) {
        let load = (self.live, self.taken);
        if load == self.reported {
            return;
        }
        let live = u32::try_from(self.live).unwrap_or(u32::MAX);
        match sys::send_message(&self.channel, &message::load(live, self.taken), None) {
            Ok(()) => self.reported = load,
            // The channel is full (the master is slow): report next time.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // The master is gone; the EOF on the channel will stop us.
            Err(_) => {}
        }
    }
    // ANCHOR_END: on_channel

    // ANCHOR: signals
    /// The signalfd is readable: SIGTERM or SIGINT is pending.
    fn on_signals(&mut self) {
        let mut stop = false;
        let drained = sys::drain_signal_fd(&self.signals, |signal| {
            stop |= matches!(signal, Signal::SIGTERM | Signal::SIGINT);
        });
        if let Err(e) = drained {
            eprintln!("signalfd: {e}");
        }
        if stop {
            self.begin_stop();
        }
    }
    // ANCHOR_END: signals

    // ANCHOR: alarm
    /// Keeps the timerfd armed for the nearest deadline, lazily.
    ///
    /// Re-arming on every change would cost a `timerfd_settime` per event,
    /// because activity on the connection at the top of the heap moves the
    /// nearest deadline later each time. So the alarm is re-armed only when
    /// the nearest deadline is *earlier* than what it is armed for. When the
    /// deadline moved later, the alarm fires early, expires nothing, and is
    /// re-armed here for the new nearest one: one spare wake-up at most per
    /// timeout, not a system call per event. With no timers at all, the
    /// alarm is disarmed and an idle server sleeps until something happens.
    fn arm_alarm(&mut self) {
        // While draining, the end of the grace period is a deadline too.
        let next = match (self.timers.next_deadline(), self.drain_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let result = match (next, self.armed_for) {
            (None, None) => Ok(()),
            (None, Some(_)) => {
                self.armed_for = None;
                self.alarm.disarm()
            }
            (Some(next), Some(armed)) if armed <= next => Ok(()),
            (Some(next), _) => {
                self.armed_for = Some(next);
                self.alarm
                    .arm(next.saturating_duration_since(Instant::now()))
            }
        };
        if let Err(e) = result {
            eprintln!("timerfd: {e}");
        }
    }

    /// The timerfd fired: expire what is due; `arm_alarm` sets the next one.
    fn on_alarm(&mut self) {
        self.alarm.acknowledge();
        self.armed_for = None;
        self.expire_timers();
    }
    // ANCHOR_END: alarm

    // ANCHOR: expire
    /// Closes every connection whose timer is due (a slow client in the
    /// middle of a head gets its 408 first): pop the root while it is due,
    /// O(log n) each.
    fn expire_timers(&mut self) {
        while let Some(token) = self.timers.pop_expired(self.now) {
            let (index, generation) = split_token(token);
            if let Some(slot) = self.slots.get_mut(index)
                && slot.generation == generation
            {
                // The timer has already left the heap.
                slot.timer = None;
                if slot.away {
                    // In the pool, back within microseconds: look again
                    // then (its deadline is recomputed when it returns).
                    slot.timer = Some(self.timers.insert(self.now + AWAY_GRACE, token));
                    continue;
                }
                if let Some(conn) = slot.conn.as_mut() {
                    conn.on_timeout(&self.date);
                }
                self.close(index);
            }
        }
    }

    // ANCHOR_END: expire

    /// The end: close whatever is left (after the grace period, a response
    /// still in flight is cut off), and let `run` return.
    fn shutdown(&mut self) {
        // One write for the whole line: stderr is unbuffered, and the
        // workers exit together, so `eprintln!`'s several writes would
        // interleave with the other workers' (scripts parse this line).
        let line = format!(
            "worker {}: buffers allocated {}, reused {}; open-file cache hits {}, misses {}\n",
            std::process::id(),
            self.inputs.allocated + self.outputs.allocated,
            self.inputs.reused + self.outputs.reused,
            self.files.hits,
            self.files.misses
        );
        let _ = io::stderr().write_all(line.as_bytes());
        if let Some(log) = &self.log
            && log.dropped() > 0
        {
            eprintln!("access log: {} lines dropped", log.dropped());
        }
        if let Some(listener) = &self.listener {
            let _ = self.poller.delete(listener);
        }
        for index in 0..self.slots.len() {
            self.close(index);
        }
    }

    // ANCHOR: accept
    /// The listener is readable: connections are waiting to be accepted.
    fn on_acceptable(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match sys::accept_nonblocking(listener) {
                Ok(stream) => self.register(stream),
                // The queue is empty: under ET this is the drain's end.
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // The client gave up between handshake and accept; next.
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(e) if sys::is_out_of_descriptors(&e) => {
                    if !self.shed_one() {
                        return;
                    }
                }
                Err(e) => {
                    eprintln!("accept: {e}");
                    return;
                }
            }
            // Level-triggered: one accept per event is enough; if more are
            // queued the listener is still readable and the next wait says
            // so. Edge-triggered: keep accepting until WouldBlock, or the
            // rest of a burst waits for a new connection to raise an edge.
            if self.config.listen_trigger == Trigger::Level {
                return;
            }
        }
    }
    // ANCHOR_END: accept

    // ANCHOR: shed
    /// Out of descriptors with connections still queued. Doing nothing is
    /// not an option: under LT the listener stays readable and the loop would
    /// spin at 100% CPU; under ET the queued clients would hang forever. So
    /// free the reserve descriptor, accept the connection with it and close
    /// it at once (the client sees the connection closed, a clear answer),
    /// then take the reserve back. Returns false if that was impossible.
    fn shed_one(&mut self) -> bool {
        drop(self.reserve.take());
        let shed = match self.listener.as_ref().map(sys::accept_nonblocking) {
            Some(Ok(stream)) => {
                drop(stream);
                true
            }
            _ => false,
        };
        self.reserve = open_reserve().ok();
        shed
    }
    // ANCHOR_END: shed

    // ANCHOR: register
    fn register(&mut self, stream: TcpStream) {
        let Some(index) = self.free.pop() else {
            // Every slot is taken: 503, in one best-effort write (it fits
            // an empty socket buffer), and close.
            let _ = (&stream).write(&response::service_unavailable(&self.date));
            return;
        };
        // TCP_NODELAY is set later, by the connection, once it knows it
        // will be kept alive (`Connection::flush`).
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        let conn = Connection::new(stream, self.now);
        let token = token_of(index, slot.generation);
        // The timer starts now: a client that connects and says nothing is
        // closed after the header timeout.
        slot.timer = Some(
            self.timers
                .insert(conn.deadline(&self.config.timeouts), token),
        );
        if self.ring.is_some() {
            // The Proactor: ask the kernel to receive the first request.
            let interest = conn.interest;
            slot.conn = Some(conn);
            self.live += 1;
            self.taken += 1;
            self.apply_completion(index, Status::Keep(interest));
            return;
        }
        if let Err(e) = self
            .poller
            .add(&conn.stream, token, conn.interest, self.config.trigger)
        {
            eprintln!("epoll add: {e}");
            if let Some(timer) = slot.timer.take() {
                self.timers.remove(timer);
            }
            self.free.push(index);
            return;
        }
        slot.conn = Some(conn);
        self.live += 1;
        self.taken += 1;
    }
    // ANCHOR_END: register

    fn on_connection_event(&mut self, token: Token, readiness: Readiness) {
        let (index, generation) = split_token(token);
        let Some(slot) = self.slots.get_mut(index) else {
            return; // stale: never handed out
        };
        if slot.generation != generation {
            return; // stale: the slot now holds a newer connection
        }
        let Some(conn) = slot.conn.as_mut() else {
            return; // stale: closed earlier in this batch (or in the pool)
        };
        let mut ctx = context!(self, role: if self.offload.is_some() { Role::Io } else { Role::Whole }, pooled: self.config.buffers == Buffers::Pooled);
        let status = conn.on_event(readiness, &mut ctx);
        self.apply(index, token, status);
    }

    /// Carries out what a connection asked for after an event.
    fn apply(&mut self, index: usize, token: Token, status: Status) {
        let slot = &mut self.slots[index];
        let Some(conn) = slot.conn.as_mut() else {
            return;
        };
        // ANCHOR: touch
        // The connection's deadline depends on its phase (header timeout,
        // keep-alive timeout, linger): move its timer there, one O(log n)
        // sift per event.
        if let (Some(timer), Status::Keep(_)) = (slot.timer, &status) {
            self.timers
                .adjust(timer, conn.deadline(&self.config.timeouts));
        }
        // ANCHOR_END: touch
        match status {
            Status::Keep(interest) if interest == conn.interest => {}
            Status::Keep(interest) => {
                conn.interest = interest;
                if self
                    .poller
                    .modify(conn.stream.as_fd(), token, interest, self.config.trigger)
                    .is_err()
                {
                    self.close(index);
                }
            }
            Status::Close => self.close(index),
            Status::Offload => self.offload(index, token),
        }
    }

    // ANCHOR: offload
    /// `proactor-sim`: stop watching the socket (level-triggered, unread
    /// bytes would report it on every wait) and send the connection to the
    /// pool.
    fn offload(&mut self, index: usize, token: Token) {
        let slot = &mut self.slots[index];
        let (Some(offload), Some(mut conn)) = (self.offload.as_mut(), slot.conn.take()) else {
            return;
        };
        let none = Interest {
            read: false,
            write: false,
        };
        if conn.interest != none {
            conn.interest = none;
            let _ = self
                .poller
                .modify(conn.stream.as_fd(), token, none, self.config.trigger);
        }
        slot.away = true;
        let job = Job {
            index,
            generation: slot.generation,
            conn,
            now: self.now,
            stopping: self.stopping,
            status: None,
        };
        if let Err(job) = offload.send(job) {
            // The pool is gone (only while stopping): drop the connection.
            slot.away = false;
            drop(job);
            self.release_slot(index);
        }
    }

    /// The pool's eventfd: connections come back with their responses.
    fn on_offload_done(&mut self) {
        let Some(offload) = self.offload.as_mut() else {
            return;
        };
        for job in offload.take_done() {
            let Job {
                index,
                generation,
                mut conn,
                status,
                ..
            } = job;
            let slot = &mut self.slots[index];
            slot.away = false;
            let token = token_of(index, generation);
            if status == Some(Status::Close) {
                slot.conn = Some(conn);
                self.close(index);
                continue;
            }
            let mut ctx =
                context!(self, role: Role::Io, pooled: self.config.buffers == Buffers::Pooled);
            // Send what the pool prepared; read on if the socket says so.
            let status = conn.proceed(&mut ctx);
            slot.conn = Some(conn);
            self.apply(index, token, status);
        }
    }
    // ANCHOR_END: offload

    fn close(&mut self, index: usize) {
        if self.slots[index].inflight {
            if !self.slots[index].closing {
                self.close_inflight(index);
            }
            return;
        }
        if let Some(timer) = self.slots[index].timer.take() {
            self.timers.remove(timer);
        }
        if let Some(conn) = self.slots[index].conn.take() {
            // No EPOLL_CTL_DEL: closing the last descriptor of a socket
            // removes it from every epoll set, and ours is the last (the
            // master closed its copy after passing it; no fork happens while
            // a worker holds connections). Were a copy left somewhere, its
            // events would carry this slot's old generation and be ignored.
            conn.release(&mut self.inputs, &mut self.outputs);
            self.release_slot(index);
        }
    }

    /// The slot is empty again.
    fn release_slot(&mut self, index: usize) {
        if let Some(timer) = self.slots[index].timer.take() {
            self.timers.remove(timer);
        }
        self.free.push(index);
        self.live -= 1;
    }
}

fn open_reserve() -> io::Result<File> {
    File::open("/dev/null")
}

/// A worker process's whole life: set up the loop, run it, and return the
/// exit status for `process::exit`.
pub fn run_worker(config: Config, intake: Intake, channel: OwnedFd) -> i32 {
    let result = Reactor::new(config, intake, channel).and_then(|mut r| r.run());
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("worker {}: {e}", std::process::id());
            1
        }
    }
}
