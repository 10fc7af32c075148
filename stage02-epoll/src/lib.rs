//! # Stage 2: a non-blocking Reactor on epoll
//!
//! stage01 needed a thread per client because a blocking `read` holds its
//! thread hostage. Here every socket is non-blocking and one thread asks the
//! kernel, with `epoll_wait`, which of *all* its sockets are ready; it then
//! reads or writes only those, and never sleeps anywhere but in
//! `epoll_wait`. Ten thousand idle clients cost ten thousand small structs,
//! not ten thousand stacks.
//!
//! This stage adds:
//! - the [`Poller`]: epoll behind add / modify / delete / wait, with
//!   level- vs edge-triggered as a visible [`Trigger`];
//! - the [`Reactor`] loop: wait, dispatch by [`Token`], let handlers return
//!   what should happen next ([`conn::Status`]);
//! - per-connection output buffers, with EPOLLOUT armed only while output is
//!   pending, and back-pressure for a client that never reads;
//! - `--max-conns`, and the reserve-descriptor trick for EMFILE.
//!
//! ## What this stage leaves out, and who brings it
//! - Timeouts: an idle client stays forever. stage03 adds idle timers.
//! - Signals: Ctrl-C kills the process outright. stage03 turns signals into
//!   events and shuts down gracefully.
//! - More than one core: stage05 runs one Reactor per worker process.
//!
//! ## Modules
//! - [`sys`]: `listen` with our backlog and `accept4`; the stage's only `unsafe`.
//! - [`poller`]: the narrow epoll wrapper.
//! - [`conn`]: one connection's state and its read/write handlers.
//! - [`reactor`]: the slab of connections and the event loop.
//! - [`trace`]: `--trace FILE`, the loop's timeline for Perfetto.
//!
//! ## Run it
//! ```text
//! cargo run -p stage02-epoll -- --trigger et --listen-trigger et
//! nc 127.0.0.1 8080
//! ```
//!
//! ## Next
//! stage03 gives every connection an idle timer kept in a sorted list,
//! checked on a SIGALRM tick that reaches the loop through a self-pipe.

// `unsafe` is refused everywhere but in the sys module.
#![deny(unsafe_code)]

pub mod conn;
pub mod poller;
pub mod reactor;
#[allow(unsafe_code)]
pub mod sys;
pub mod trace;

pub use poller::{Interest, Poller, Token, Trigger};
pub use reactor::{Config, Reactor};
