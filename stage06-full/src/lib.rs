//! # Stage 6: the complete server, HTTP/1.1 static files
//!
//! stage05's prefork process structure (a master, workers running the
//! Reactor, descriptors passed to the least-loaded worker), now serving
//! HTTP/1.1 GET and HEAD for static files, correctly enough for a browser,
//! curl and wrk, and hardened against the probes that the servers this
//! repository learns from failed: path traversal, pipelining, missing
//! files, client resets, idle and slow clients.
//!
//! This stage adds:
//! - [`http::parser`]: an incremental state-machine parser for the request
//!   head that resumes at any byte and rejects a bad byte at once, with the
//!   limits and their statuses (414, 431, 505);
//! - [`http::body`]: body framing with the request-smuggling checks, and a
//!   chunked decoder that reads past a body up to a limit (413);
//! - [`http::path`] and `sys::Root`: percent-decoding, normalising, and
//!   opening files that the kernel confines to the root (`openat2`);
//! - [`conn`]: the connection's phases (head, body, send, linger), keep-alive
//!   and pipelining, conditional and range requests, `writev` for head and
//!   small body, `sendfile` for large files;
//! - [`pool`]: per-worker buffer pools, and preallocated connection slots
//!   (503 when they are all taken);
//! - [`file_cache`]: the open-file cache: a file served in the last second
//!   is served again without opening, stat-ing or reading it;
//! - [`log`]: the access log, written by its own thread through a bounded
//!   queue;
//! - timeouts per phase: the header timeout (408, against slowloris) and the
//!   keep-alive timeout; SIGTERM lets responses in flight finish;
//! - `--model`: the same server as a Reactor (the default), as the
//!   write-ups' simulated Proactor with a thread pool per worker
//!   ([`offload`]), or as a true Proactor on io_uring (`reactor::uring`).
//!
//! ## What this stage leaves out
//! - Dynamic content, TLS, HTTP/2, compression, directory listings: the
//!   exercises add some; none changes the structure.
//!
//! ## Modules
//! - [`sys`]: the stage's system calls and nearly all of its `unsafe`: the
//!   listener, `accept4`, signalfd, timerfd, `fork`, descriptor passing,
//!   `openat2`, `sendfile`, `send` with `MSG_MORE`. The io_uring submissions
//!   are `unsafe` too, and stay in `reactor/uring.rs` beside the rule that
//!   makes them sound.
//! - [`poller`], [`timer_heap`]: unchanged from stage05.
//! - [`http`]: the protocol, free of I/O: parser, body, dates, paths,
//!   ranges, content types, responses.
//! - [`conn`]: one HTTP connection.
//! - [`pool`], [`file_cache`], [`log`]: buffer pools, the open-file cache
//!   and the access log.
//! - [`reactor`]: a worker's loop (and, in `reactor/uring.rs`, its io_uring
//!   variant); [`offload`]: the simulated Proactor's thread pool;
//!   [`master`]: the master and the pool of workers.
//!
//! ## Run it
//! ```text
//! cargo run --release -p stage06-full          # the demo site on :8080
//! curl -i http://127.0.0.1:8080/
//! ```
//!
//! ## Next
//! This is the last stage. Chapter 6 of the notes measures it against nginx
//! (`scripts/bench-http.sh`); the exercises extend it (ETag, directory
//! listings, OPTIONS).

pub mod file_cache;
pub mod http;
pub mod log;
pub mod master;
pub mod poller;
pub mod pool;
pub mod sys;
pub mod sys_uring;
pub mod timer_heap;
pub mod worker;

pub use master::{Dispatch, Master, MasterConfig};
pub use poller::{Interest, Poller, Token, Trigger};
pub use worker::{Buffers, Config, Intake, Model};
