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
//! - [`http::session`]: one HTTP/1.1 connection as a state machine that
//!   makes no system call: told what happened, it says what to do next
//!   (`Next`). The sans-I/O design of h11, quinn-proto and rustls: written
//!   and tested once, driven by any I/O model;
//! - [`http::parser`]: an incremental parser for the request head that
//!   resumes at any byte and rejects a bad byte at once (414, 431, 505);
//!   [`http::body`]: body framing with the request-smuggling checks (413);
//! - [`http::response`]: every response: error pages, redirects,
//!   conditional (304, 412) and range (206, 416) answers, keep-alive;
//! - [`http::path`] and `sys::Root`: percent-decoding, normalising, and
//!   opening files that the kernel confines to the root (`openat2`);
//! - [`pool`]: buffer pools, and preallocated connection slots (503 when
//!   every slot is taken); [`file_cache`]: a file served in the last second
//!   is served again without opening, stat-ing or reading it; [`log`]: the
//!   access log, written by its own thread through a bounded queue;
//! - timeouts per phase: the header timeout (408, against slowloris) and the
//!   keep-alive timeout; SIGTERM lets responses in flight finish;
//! - `--model`: three drivers of the session over one worker shell
//!   ([`worker`]): a Reactor (the default), the write-ups' simulated
//!   Proactor (a thread pool per worker), and a true Proactor on io_uring.
//!
//! ## What this stage leaves out
//! - Dynamic content, TLS, HTTP/2, compression, directory listings: the
//!   exercises add some; none changes the structure.
//!
//! ## Modules
//! - [`http`]: the protocol, free of I/O: the modules above, dates and
//!   ranges ([`file_cache`] imports it, never the reverse).
//! - [`worker`]: a worker process. [`worker::shell`]: what every model
//!   shares (signals, timers, slots, accepting, the master's channel,
//!   stopping); the three drivers of `--model`: [`worker::reactor`],
//!   [`worker::proactor_sim`], [`worker::uring`].
//! - [`master`], [`channel`], [`accept`]: the master, the pool of workers
//!   and the channel to each, with back-pressure (from stage05), and
//!   accepting (new: the 503 when a worker's slots are all taken). A
//!   connection stays with the worker that took it for its whole life.
//!   Opt-in: `--pin on` keeps worker `i` on the `i`-th CPU (nginx's
//!   `worker_cpu_affinity auto`); `--steer cpu` under `reuseport` gives a
//!   connection to the worker whose listener names the CPU it arrives on.
//! - [`sys`]: the system calls std does not offer, and the stage's `unsafe`:
//!   the calls a connection makes (`accept4`, the timerfd, descriptor
//!   passing, `openat2`, `sendfile`, `send` with `MSG_MORE`);
//!   [`sys::setup`]: listeners, signalfd, `fork`, reaping, limits;
//!   [`sys::uring`]: a safe io_uring; [`sys::cpu`]: CPUs (`--pin`, `--steer`).
//! - [`poller`], [`timer_heap`]: unchanged from stage05; [`pool`],
//!   [`file_cache`], [`log`]: buffers, open files, the access log.
//! - [`trace`]: `--trace FILE`, every process's timeline in one file (the
//!   master's accepts and hand-overs, each worker's loop and its sessions'
//!   steps), for Perfetto.
//!
//! ## Run it
//! ```text
//! cargo run --release -p stage06-full          # the demo site on :8080
//! curl -i http://127.0.0.1:8080/
//! ```
//!
//! ## Next
//! This is the last stage. Its two chapters in the notes measure it against
//! nginx (`scripts/bench-http.sh`), the Reactor vs Proactor chapter sets the
//! three drivers side by side, and the exercises extend it (ETag, directory
//! listings, OPTIONS).

// `unsafe` is refused everywhere but in the sys module.
#![deny(unsafe_code)]

pub mod accept;
pub mod channel;
pub mod file_cache;
pub mod http;
pub mod log;
pub mod master;
pub mod poller;
pub mod pool;
#[allow(unsafe_code)]
pub mod sys;
pub mod timer_heap;
pub mod trace;
pub mod worker;

pub use master::{Dispatch, Master, MasterConfig, Steer, Stopped};
pub use poller::{Interest, Poller, Token, Trigger};
pub use worker::{Buffers, Config, Model};
