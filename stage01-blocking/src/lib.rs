//! # Stage 1: a blocking echo server
//!
//! The simplest server that is still correct: every byte a client sends comes
//! back, in order, until the client closes. Each socket is *blocking*: a
//! `read` puts the calling thread to sleep until data arrives. That one fact
//! decides everything here, because a thread that sleeps in `read` for one
//! client cannot serve another. The three [`Mode`]s are the three classic
//! answers:
//!
//! | mode | who serves a connection | what it costs |
//! |---|---|---|
//! | [`Mode::Iterative`] | the accepting thread itself | a second client waits until the first leaves |
//! | [`Mode::Threads`] | a new thread per connection | a stack and a kernel task per client |
//! | [`Mode::Pool`] | one of N threads fed by a channel | client N+1 waits, as in iterative mode |
//!
//! ## What this stage leaves out, and who brings it
//! - Non-blocking sockets and readiness (epoll): stage02, which serves
//!   thousands of clients on one thread.
//! - Idle timeouts: stage03 (a sorted timer list) and stage04 (a heap).
//! - Signals and graceful shutdown: stage03. Here Ctrl-C simply ends the process.
//! - Raw system calls: none are needed, so this stage has no `sys` module and
//!   no `unsafe`; std's blocking sockets are thin wrappers over the calls a C
//!   server would make.
//!
//! ## Modules
//! - [`echo`]: the per-connection loop, read then write back, until EOF.
//! - [`pool`]: a fixed thread pool fed by a channel (the Rust Book's design).
//! - this file: [`Mode`] and [`serve`], the accept loop.
//!
//! ## Run it
//! ```text
//! cargo run -p stage01-blocking -- --mode threads
//! nc 127.0.0.1 8080
//! ```
//!
//! ## Next
//! stage02 keeps the echo but makes every socket non-blocking and waits for
//! all of them at once with epoll, on a single thread: the Reactor.

pub mod echo;
pub mod pool;

use std::io;
use std::net::TcpListener;
use std::str::FromStr;
use std::thread;
use std::time::Duration;

/// How connections are served. See the table in the crate docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One client at a time, on the accepting thread.
    Iterative,
    /// A new thread for every connection.
    Threads,
    /// A fixed number of threads taking connections from a channel.
    Pool,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iterative" => Ok(Mode::Iterative),
            "threads" => Ok(Mode::Threads),
            "pool" => Ok(Mode::Pool),
            other => Err(format!(
                "unknown mode {other:?}: use iterative, threads or pool"
            )),
        }
    }
}

// ANCHOR: serve
/// Accepts connections forever and serves each according to `mode`.
///
/// `threads` is the pool size and only matters in [`Mode::Pool`].
pub fn serve(listener: TcpListener, mode: Mode, threads: usize) -> io::Result<()> {
    let pool = match mode {
        Mode::Pool => Some(pool::ThreadPool::new(threads)?),
        _ => None,
    };
    loop {
        // `accept` blocks until the kernel has completed a handshake. While
        // this thread is in `echo::serve` (iterative mode), new clients queue
        // in the listen backlog: connected, but nobody reads from them.
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) => {
                accept_failed(&e);
                continue;
            }
        };
        match mode {
            Mode::Iterative => echo::serve(stream, peer),
            Mode::Threads => {
                // A thread per connection: simple, and each client is served
                // at once. The cost is a stack (8 MiB reserved by default for
                // the main thread, 2 MiB for std's spawned threads, touched
                // only as used) and a kernel task the scheduler must juggle.
                let spawned = thread::Builder::new()
                    .name(format!("conn {peer}"))
                    .spawn(move || echo::serve(stream, peer));
                if let Err(e) = spawned {
                    // Out of threads or memory: the stream was moved into the
                    // closure and is dropped (closed) with it, so the client
                    // sees the connection closed rather than a hang.
                    eprintln!("cannot spawn a thread for {peer}: {e}");
                }
            }
            Mode::Pool => {
                if let Some(pool) = &pool {
                    pool.execute(move || echo::serve(stream, peer));
                }
            }
        }
    }
}
// ANCHOR_END: serve

/// What to do when `accept` fails. Most failures concern one connection and
/// the loop goes on. Running out of descriptors (EMFILE/ENFILE) is different:
/// the pending connection stays queued, so the next `accept` fails at once
/// and the loop would spin at 100% CPU. A blocking server can only back off
/// and retry; stage02 shows the better trick of a reserve descriptor.
fn accept_failed(e: &io::Error) {
    eprintln!("accept: {e}");
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    if matches!(e.raw_os_error(), Some(EMFILE | ENFILE)) {
        thread::sleep(Duration::from_millis(100));
    }
}
