//! # Stage 5: prefork, with a master, worker processes and load balancing
//!
//! stage04's Reactor uses one core. This stage runs one copy of it per core,
//! each in its own worker process, under a master that owns the listening
//! socket, hands out connections and keeps the pool alive: the process-pool
//! design of the prefork server this repository compares against (and of
//! nginx).
//!
//! This stage adds:
//! - the [`Master`]: binds, forks `--workers` workers, and runs a small
//!   epoll loop of its own over the listener, a signalfd and one channel
//!   per worker;
//! - three ways to spread connections (`--dispatch`):
//!   - `pass`: the master accepts and passes each connection to the worker
//!     with the fewest live connections, as a descriptor over a socketpair
//!     (`SCM_RIGHTS`, several to a message); workers report their load back
//!     on the same channel. A worker that falls behind gets a bounded queue
//!     in the master, never a closed connection; when every queue is full
//!     the master stops accepting and the listen backlog holds the rest;
//!   - `shared`: every worker accepts from the inherited listener (the
//!     thundering herd; `--exclusive` adds EPOLLEXCLUSIVE, its cure);
//!   - `reuseport`: every worker has its own `SO_REUSEPORT` listener and
//!     the kernel spreads connections;
//! - process management: SIGCHLD reaps and restarts a dead worker (with a
//!   back-off), SIGTERM/SIGINT stops every worker and exits 0 with no
//!   zombie (and says which worker did not exit cleanly, if one did not),
//!   a worker whose master dies exits, SIGUSR1 prints the load, SIGUSR2
//!   the channels' queues.
//!
//! The worker's loop is stage04's Reactor, changed only where connections
//! come from ([`reactor::Intake`]) and to talk to the master.
//!
//! ## What this stage leaves out, and who brings it
//! - HTTP: stage06 turns the echo into a static-file web server.
//!
//! ## Modules
//! - [`sys`]: the listener, `accept4`, signalfd, timerfd, `fork`, sending
//!   and receiving descriptors, reaping; every `unsafe` of the stage.
//! - [`poller`]: the narrow epoll wrapper, plus `add_exclusive`.
//! - [`accept`]: the accept loop's expected conditions and the
//!   reserve-descriptor shed, for the master and the workers alike.
//! - [`channel`]: the master-worker channel: its message format, the
//!   master's queues and back-pressure, the worker's end.
//! - [`conn`]: one connection's state and handlers (unchanged).
//! - [`timer_heap`]: the min-heap of timers (unchanged).
//! - [`reactor`]: a worker's loop.
//! - [`master`]: the master's loop and the pool.
//! - [`trace`]: `--trace FILE`, every process's timeline in one file, for
//!   Perfetto.
//!
//! ## Run it
//! ```text
//! cargo run -p stage05-prefork -- --workers 4 --dispatch pass
//! nc 127.0.0.1 8080
//! kill -USR1 <master pid>    # prints: workers PID:LIVE:TAKEN …
//! kill -USR2 <master pid>    # prints: channels PID:QUEUED:SENT:RECEIVED … accepting
//! ```
//!
//! ## Next
//! stage06 keeps this process structure, master, workers and dispatch
//! unchanged, and turns the echo connection into an HTTP/1.1 static-file
//! connection: an incremental parser, keep-alive and pipelining, `sendfile`,
//! buffer pools, an open-file cache and an access log.

// `unsafe` is refused everywhere but in the sys module.
#![deny(unsafe_code)]

pub mod accept;
pub mod channel;
pub mod conn;
pub mod master;
pub mod poller;
pub mod reactor;
#[allow(unsafe_code)]
pub mod sys;
pub mod timer_heap;
pub mod trace;

pub use master::{Dispatch, Master, MasterConfig, StopReport};
pub use poller::{Interest, Poller, Token, Trigger};
pub use reactor::{Config, Intake, Reactor};
pub use timer_heap::{TimerHeap, TimerId};
