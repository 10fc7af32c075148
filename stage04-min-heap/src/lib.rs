//! # Stage 4: min-heap timers; every event is a descriptor
//!
//! stage03 works, but pays for it: every read or write moves a timer with an
//! O(n) walk of a sorted list, a fixed `SIGALRM` tick wakes even an idle
//! server, a timer fires up to a tick late, and a signal handler needs a
//! self-pipe to stay async-signal-safe. This stage keeps the behaviour
//! (the same black-box tests pass unchanged) and changes the machinery:
//!
//! - a [`TimerHeap`]: a binary min-heap with position handles, so a
//!   connection moves, removes or adds its timer in O(log n);
//! - no tick: a `timerfd` is armed for the nearest deadline, so timers fire
//!   on time and an idle server with no connections never wakes up;
//! - `signalfd`: SIGTERM and SIGINT are blocked and read from a descriptor,
//!   with no handler at all.
//!
//! Listener, connections, signals and time are now all descriptors in one
//! epoll set: every event the loop handles is a file descriptor becoming
//! readable.
//!
//! ## What this stage leaves out, and who brings it
//! - More than one core: stage05 forks a worker process per core, each with
//!   its own copy of this loop.
//!
//! ## Modules
//! - [`sys`]: the listener, `accept4`, signalfd and timerfd; every `unsafe`
//!   of the stage.
//! - [`poller`]: the narrow epoll wrapper (unchanged).
//! - [`conn`]: one connection's state and handlers (unchanged).
//! - [`timer_heap`]: the min-heap of timers.
//! - [`reactor`]: the slab of connections, the loop, timers and signals.
//! - [`trace`]: `--trace FILE`, the loop's timeline for Perfetto (unchanged).
//!
//! ## Run it
//! ```text
//! cargo run -p stage04-min-heap -- --idle-timeout-ms 5000
//! nc 127.0.0.1 8080          # say nothing for 5 s: the server hangs up
//! ```
//! With `--trace /tmp/loop.json`, the timeline (open it at ui.perfetto.dev)
//! shows one `epoll_wait` for the whole idle time: the `timerfd` wakes the
//! loop at the deadline, and an `expire` closes the connection.
//!
//! ## Next
//! stage05 runs this loop in N worker processes under a master that accepts
//! connections and passes each to the least-loaded worker.

// `unsafe` is refused everywhere but in the sys module.
#![deny(unsafe_code)]

pub mod conn;
pub mod poller;
pub mod reactor;
#[allow(unsafe_code)]
pub mod sys;
pub mod timer_heap;
pub mod trace;

pub use poller::{Interest, Poller, Token, Trigger};
pub use reactor::{Config, Reactor};
pub use timer_heap::{TimerHeap, TimerId};
