//! A worker process: what it is told ([`Config`]), what it lends its HTTP
//! sessions ([`Resources`]), and which of the three I/O models runs it
//! ([`Model`]).
//!
//! Everything a worker does apart from a connection's I/O is written once,
//! in [`shell`]: signals, the timerfd and the timer heap, the connection
//! slots, accepting (and the 503 when every slot is taken,
//! [`crate::accept::Refused`]), the master's channel, load reports,
//! stopping. Each model is a driver around the shell and the sans-I/O
//! [`Session`]:
//!
//! - [`reactor`]: readiness (epoll); the loop reads, processes and writes;
//! - [`proactor_sim`]: the same loop does the I/O, and a thread pool
//!   processes;
//! - [`uring`]: completions (io_uring); the kernel does the I/O.
//!
//! [`Session`]: crate::http::session::Session

pub mod proactor_sim;
pub mod reactor;
pub mod shell;
pub mod uring;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::file_cache::FileCache;
use crate::http::date;
use crate::http::session::{Env, Exchange, FIRST_READ, READ_BUF, SMALL_BODY, Timeouts, WRITE_BUF};
use crate::log::AccessLog;
use crate::poller::Trigger;
use crate::pool::{BufferPool, Pools};
use crate::sys::Root;

/// The listen backlog; the kernel caps it at `net.core.somaxconn`.
pub const BACKLOG: i32 = 1024;

/// What a worker is told on the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// How connection sockets are registered (Reactor models).
    pub trigger: Trigger,
    /// How the listening socket is registered.
    pub listen_trigger: Trigger,
    /// A listener shared with the other workers (`--dispatch shared`) is
    /// registered with EPOLLEXCLUSIVE.
    pub exclusive: bool,
    /// `TCP_DEFER_ACCEPT` on the listening sockets: a connection is
    /// accepted once its request has arrived, or after about this many
    /// seconds; 0 turns it off.
    pub defer_accept: u32,
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
    /// whole life (the naive one, kept for the measurement in the chapter on pools).
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

/// `--model`: who does the I/O, and who runs the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// The event loop is told a socket is ready and does all the work.
    Reactor,
    /// The event loop does the I/O; a thread pool runs the sessions.
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

/// `--buffers`: who owns a connection's buffers.
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

/// At most this many files stay open in a worker's open-file cache: each is
/// a descriptor (counted against the same limit as connections) and up to
/// `SMALL_BODY` bytes of memory, so the bound is 8 MiB and 512 descriptors.
const OPEN_FILES: usize = 512;

/// What a worker lends its sessions: the root and the open-file cache, the
/// buffer pools, the access log, the clock and the `Date` value. A field of
/// the shell of its own, so that lending it (`env`) borrows nothing else:
/// the connection being served sits in another field, `slots`.
pub struct Resources {
    pub root: Arc<Root>,
    pub files: FileCache,
    pub pools: Pools,
    pub log: Option<Arc<AccessLog>>,
    /// The time, read once per loop iteration after the wait returns (nginx
    /// does the same): every event of a batch happened "now" as far as
    /// timers are concerned, and the clock is read once, not per event.
    pub now: Instant,
    /// The `Date` value.
    pub date: DateCache,
    /// SIGTERM, SIGINT or the master's exit: finish, keep nothing alive.
    pub stopping: bool,
    pub max_body: u64,
}

impl Resources {
    /// The root, the open-file cache, the pools and the log of a new worker.
    pub fn new(config: &Config) -> io::Result<Resources> {
        // Without pooling nothing is kept: every buffer is allocated when
        // needed and freed when done.
        let keep = match config.buffers {
            Buffers::Pooled => config.max_conns.min(1024),
            Buffers::PerConnection => 0,
        };
        let log = match &config.access_log {
            Some(path) => Some(Arc::new(AccessLog::open(path)?)),
            None => None,
        };
        let mut res = Resources {
            root: Arc::new(Root::open(&config.root)?),
            files: FileCache::new(config.open_file_cache, OPEN_FILES, SMALL_BODY),
            pools: Pools {
                small: BufferPool::new(FIRST_READ, keep, true),
                inputs: BufferPool::new(READ_BUF, keep, true),
                outputs: BufferPool::new(WRITE_BUF, keep * 2, false),
                pooled: config.buffers == Buffers::Pooled,
            },
            log,
            now: Instant::now(),
            date: DateCache::default(),
            stopping: false,
            max_body: config.max_body,
        };
        res.tick();
        Ok(res)
    }

    /// What a session may use for one call.
    pub fn env(&mut self) -> Env<'_> {
        Env {
            now: self.now,
            date: self.date.current(),
            pools: &mut self.pools,
            max_body: self.max_body,
            stopping: self.stopping,
            logging: self.log.is_some(),
        }
    }

    /// Reads the clock, once per loop iteration.
    pub fn tick(&mut self) {
        self.now = Instant::now();
        self.date.refresh();
    }

    /// Writes one access-log line for a finished exchange (when logging).
    pub fn log(&self, stream: &TcpStream, exchange: Exchange) {
        if let Some(log) = &self.log {
            let peer = stream.peer_addr().ok().map(|a| a.ip());
            log.record(peer, &exchange, SystemTime::now());
        }
    }
}

/// The `Date` field's value. It changes once a second, so it is formatted
/// once a second, not per response.
#[derive(Default)]
pub struct DateCache {
    value: String,
    secs: u64,
}

impl DateCache {
    /// The value for the current second, formatted if the second changed.
    pub fn refresh(&mut self) -> &str {
        let wall = SystemTime::now();
        let secs = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs || self.value.is_empty() {
            self.secs = secs;
            self.value = date::format(wall);
        }
        &self.value
    }

    /// The value as last refreshed.
    pub fn current(&self) -> &str {
        &self.value
    }
}

/// A worker process's whole life: set up the model's loop, run it, and
/// return the exit status for `process::exit`. `listener`: what the worker
/// accepts from, or `None` under `pass`, where connections come down the
/// master's `channel`.
pub fn run_worker(config: Config, listener: Option<TcpListener>, channel: OwnedFd) -> i32 {
    let result = match config.model {
        Model::Reactor | Model::ProactorSim => reactor::run(config, listener, channel),
        Model::Uring => uring::run(config, listener, channel),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("worker {}: {e}", std::process::id());
            1
        }
    }
}
