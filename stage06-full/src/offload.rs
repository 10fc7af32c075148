//! `--model proactor-sim`: the half-sync/half-reactive thread pool of the
//! write-ups, with a *simulated* Proactor.
//!
//! The worker's event thread does every read and write itself, as in the
//! Reactor; what it hands off is the processing. When a connection has
//! bytes to parse, the event thread stops watching it (interest none) and
//! sends the whole connection to a fixed pool of threads through a queue.
//! A pool thread parses the request and builds the response (opening the
//! file, reading a small body), then sends the connection back through a
//! second queue and writes to an `eventfd` that the event loop watches. The
//! event thread, woken, puts the connection back in its slot and sends the
//! response.
//!
//! From the event thread's side this looks like a Proactor: it learns that
//! a request has been *processed*, not that a socket is ready. But the I/O
//! is still synchronous and still done by the event thread, which is why
//! it is called simulated; `--model uring` is the real thing.
//!
//! What it costs, per request: two queue hand-offs (a mutex, a condition
//! variable wake-up, a context switch each way), an `eventfd` write and
//! read, and two `epoll_ctl` calls to stop and restart watching the socket.
//! What it buys: a slow request (a cold disk read, an expensive page) does
//! not stall the other connections of the loop, up to `--threads` of them
//! at once.

use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::conn::{Connection, Context, READ_BUF, Role, SMALL_BODY, Status, WRITE_BUF};
use crate::file_cache::FileCache;
use crate::http::date;
use crate::log::AccessLog;
use crate::pool::BufferPool;
use crate::sys::Root;

/// A connection on its way to a pool thread and back.
pub struct Job {
    pub index: usize,
    pub generation: u32,
    pub conn: Connection,
    /// The event loop's clock when it sent the job.
    pub now: Instant,
    pub stopping: bool,
    /// Set by the pool thread: what the connection wants next.
    pub status: Option<Status>,
}

/// What every pool thread shares with the event thread.
pub struct Shared {
    pub root: Arc<Root>,
    pub log: Option<Arc<AccessLog>>,
    pub max_body: u64,
    pub open_file_cache: Duration,
}

/// The event thread's end of the pool.
pub struct Offload {
    jobs: Option<Sender<Job>>,
    done: Receiver<Job>,
    wake: Arc<EventFd>,
    threads: Vec<JoinHandle<()>>,
    /// Connections currently in the pool.
    pub away: usize,
}

// ANCHOR: offload_start
impl Offload {
    /// Starts `threads` pool threads.
    pub fn start(threads: usize, shared: Shared) -> io::Result<Offload> {
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
        let (jobs, queue) = mpsc::channel::<Job>();
        // One queue, many consumers: the receiver behind a mutex, as in the
        // Rust Book's thread pool. A thread holds the lock only while it
        // waits for the next job, not while it works on it.
        let queue = Arc::new(Mutex::new(queue));
        let (finished, done) = mpsc::channel::<Job>();
        let shared = Arc::new(shared);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            let finished = finished.clone();
            let wake = Arc::clone(&wake);
            let shared = Arc::clone(&shared);
            handles.push(
                thread::Builder::new()
                    .name(format!("pool {i}"))
                    .spawn(move || pool_thread(&queue, &finished, &wake, &shared))?,
            );
        }
        Ok(Offload {
            jobs: Some(jobs),
            done,
            wake,
            threads: handles,
            away: 0,
        })
    }
    // ANCHOR_END: offload_start

    /// The descriptor that becomes readable when jobs come back.
    pub fn wake_fd(&self) -> &EventFd {
        &self.wake
    }

    /// Hands a connection to the pool.
    pub fn send(&mut self, job: Job) -> Result<(), Box<Job>> {
        let Some(jobs) = &self.jobs else {
            return Err(Box::new(job));
        };
        match jobs.send(job) {
            Ok(()) => {
                self.away += 1;
                Ok(())
            }
            Err(mpsc::SendError(job)) => Err(Box::new(job)),
        }
    }

    /// The jobs that have come back (after the `eventfd` said so).
    pub fn take_done(&mut self) -> Vec<Job> {
        // Reset the eventfd's counter first: a job finished after this
        // read writes it again, so none is missed.
        let _ = self.wake.read();
        let back: Vec<Job> = self.done.try_iter().collect();
        self.away -= back.len();
        back
    }
}

impl Drop for Offload {
    fn drop(&mut self) {
        // Closing the queue ends every thread once it has finished its job.
        self.jobs = None;
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

// ANCHOR: pool_thread
/// A pool thread: take a job, process it, send it back, wake the loop.
fn pool_thread(
    queue: &Mutex<Receiver<Job>>,
    finished: &Sender<Job>,
    wake: &EventFd,
    shared: &Shared,
) {
    // Each thread has its own cache and pools: nothing here is shared, so
    // nothing here needs a lock.
    let mut files = FileCache::new(shared.open_file_cache, 128, SMALL_BODY);
    let mut inputs = BufferPool::new(READ_BUF, 0, true);
    let mut outputs = BufferPool::new(WRITE_BUF, 64, false);
    let mut date = String::new();
    let mut date_secs = u64::MAX;
    loop {
        let next = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return, // another thread panicked holding the lock
        };
        let Ok(mut job) = next else {
            return; // the queue is closed: the worker is stopping
        };
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != date_secs {
            date_secs = secs;
            date = date::format(now);
        }
        let mut ctx = Context {
            root: &shared.root,
            files: &mut files,
            date: &date,
            inputs: &mut inputs,
            outputs: &mut outputs,
            log: shared.log.as_deref(),
            now: job.now,
            max_body: shared.max_body,
            stopping: job.stopping,
            pooled: false,
            role: Role::Process,
        };
        job.status = Some(job.conn.proceed(&mut ctx));
        if finished.send(job).is_err() {
            return;
        }
        let _ = wake.write(1);
    }
}
// ANCHOR_END: pool_thread
