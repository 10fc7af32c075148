//! # Stage 3: idle timeouts on a sorted list; signals as events
//!
//! stage02's Reactor keeps an idle client forever, and Ctrl-C kills it in the
//! middle of whatever it was doing. This stage gives every connection an
//! idle timer and turns signals into ordinary events of the loop.
//!
//! This stage adds:
//! - a [`TimerList`]: timers sorted by deadline in a doubly linked list (a
//!   slab of nodes linked by index), the classic design: O(1) to find the
//!   earliest, O(n) to insert or move a timer;
//! - the tick: `setitimer` raises `SIGALRM` every `--tick-ms`; the loop then
//!   closes every connection idle for `--idle-timeout-ms` (`expire_timers`);
//! - the self-pipe: the signal handler only writes the signal's number to a
//!   non-blocking pipe that epoll watches, so SIGALRM, SIGTERM and SIGINT
//!   arrive as events, handled in the loop with no async-signal-safety
//!   worries (the "unified event source");
//! - graceful shutdown on SIGTERM/SIGINT: stop accepting, close every
//!   connection, exit 0. SIGPIPE is ignored.
//!
//! ## What this stage leaves out, and who brings it
//! - The tick wakes an idle server ten times a second for nothing, and a
//!   timer fires up to one tick late. stage04 waits exactly until the
//!   nearest deadline instead.
//! - Every read or write moves a timer with an O(n) walk. stage04 uses a
//!   min-heap: O(log n).
//! - Signal handlers at all: stage04 receives signals through `signalfd`.
//!
//! ## Modules
//! - [`sys`]: the listener, `accept4`, the signal handler, self-pipe and
//!   tick; every `unsafe` of the stage.
//! - [`poller`]: the narrow epoll wrapper (unchanged).
//! - [`conn`]: one connection's state and handlers (unchanged).
//! - [`timer_list`]: the sorted timer list.
//! - [`reactor`]: the slab of connections, the loop, timers and signals.
//! - [`trace`]: `--trace FILE`, the loop's timeline for Perfetto; a clean
//!   exit now closes its JSON array ([`trace::finish`]).
//!
//! ## Run it
//! ```text
//! cargo run -p stage03-timer-list -- --idle-timeout-ms 5000
//! nc 127.0.0.1 8080          # say nothing for 5 s: the server hangs up
//! ```
//! With `--trace /tmp/loop.json`, the timeline (open it at ui.perfetto.dev)
//! shows the tick waking the loop every `--tick-ms` while nothing happens:
//! `signals`, then `tick`, and an `expire` for each connection it closes.
//!
//! ## Next
//! stage04 replaces the list with a min-heap, the tick with a wait until the
//! nearest deadline, and the self-pipe with `signalfd`.

// `unsafe` is refused everywhere but in the sys module.
#![deny(unsafe_code)]

pub mod conn;
pub mod poller;
pub mod reactor;
#[allow(unsafe_code)]
pub mod sys;
pub mod timer_list;
pub mod trace;

pub use poller::{Interest, Poller, Token, Trigger};
pub use reactor::{Config, Reactor};
pub use timer_list::{TimerId, TimerList};
