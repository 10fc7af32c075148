//! A worker process: what it is told ([`Config`]), and which of the three
//! I/O models runs it ([`Model`]). Everything a worker does apart from a
//! connection's I/O is written once, in [`shell`]; each model is a driver
//! around the shell and the sans-I/O [`Session`]:
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

use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::file_cache::FileCache;
use crate::http::date::DateCache;
use crate::http::session::{FIRST_READ, READ_BUF, SMALL_BODY, Timeouts, WRITE_BUF};
use crate::log::AccessLog;
use crate::poller::Trigger;
use crate::pool::{BufferPool, Pools};
use crate::sys::Root;
use shell::Resources;

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
    pub root: PathBuf,
    pub timeouts: Timeouts,
    /// Request bodies past this many bytes get 413.
    pub max_body: u64,
    /// Where to append the access log; `None`: no log.
    pub access_log: Option<PathBuf>,
    /// After SIGTERM, how long in-flight responses may take to finish.
    pub grace: Duration,
    /// Pooled, or the naive design, kept for the chapter on pools.
    pub buffers: Buffers,
    /// How long an opened file is served from the open-file cache; zero
    /// turns the cache off.
    pub open_file_cache: Duration,
    /// Who does the I/O (chapter "Reactor vs Proactor").
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
    /// The naive design: each connection allocates its read buffer for its
    /// whole life, and each response its own buffers.
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

impl Resources {
    /// The root, the open-file cache, the pools and the log of a new worker.
    pub fn new(config: &Config) -> io::Result<Resources> {
        // Without pooling nothing is kept: every buffer is freed when done.
        let keep = match config.buffers {
            Buffers::Pooled => config.max_conns.min(1024),
            Buffers::PerConnection => 0,
        };
        let log = config.access_log.as_deref().map(AccessLog::open);
        let mut res = Resources {
            log: log.transpose()?.map(Arc::new),
            root: Arc::new(Root::open(&config.root)?),
            files: FileCache::new(config.open_file_cache, OPEN_FILES, SMALL_BODY),
            pools: Pools {
                small: BufferPool::new(FIRST_READ, keep, true),
                inputs: BufferPool::new(READ_BUF, keep, true),
                outputs: BufferPool::new(WRITE_BUF, keep * 2, false),
                pooled: config.buffers == Buffers::Pooled,
            },
            now: Instant::now(),
            date: DateCache::default(),
            stopping: false,
            max_body: config.max_body,
        };
        res.tick();
        Ok(res)
    }

    /// The worker's last words, in one write: stderr is unbuffered, and the
    /// workers exit together, so several writes would interleave with the
    /// other workers' lines (scripts parse this one). `extra`: buffers and
    /// cache lookups counted outside the shell (the pool threads').
    pub fn print_totals(&self, extra: Counts) {
        let (allocated, reused) = self.pools.counts();
        let line = format!(
            "worker {}: buffers allocated {}, reused {}; open-file cache hits {}, misses {}\n",
            std::process::id(),
            allocated + extra.allocated,
            reused + extra.reused,
            self.files.hits + extra.hits,
            self.files.misses + extra.misses,
        );
        let _ = io::stderr().write_all(line.as_bytes());
        if let Some(log) = &self.log
            && log.dropped() > 0
        {
            eprintln!("access log: {} lines dropped", log.dropped());
        }
    }
}

/// Buffer and cache counts kept outside the shell.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub allocated: u64,
    pub reused: u64,
    pub hits: u64,
    pub misses: u64,
}

/// A worker process's whole life: run the model's loop, and return the
/// exit status for `process::exit`. `listener`: `None` under `pass`, where
/// connections come down the master's `channel`.
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
