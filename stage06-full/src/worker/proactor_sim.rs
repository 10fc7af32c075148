//! `--model proactor-sim`: the half-sync/half-reactive thread pool of the
//! write-ups, with a *simulated* Proactor.
//!
//! The loop is the Reactor's ([`super::reactor`]) and does every read and
//! write; a session's CPU work (`Next::Process`, `Next::Open`) goes with
//! its connection through a queue to a fixed pool of threads, and comes
//! back through a second queue and an `eventfd` the loop watches. So the
//! loop learns that a request was *processed*, as in a Proactor, but the
//! I/O is still its own and synchronous, hence "simulated" (`uring` is the
//! real thing). Boost.Asio's "Proactor" on Linux is emulated the same way,
//! over epoll (a reactor) and a thread that completes the operations.
//!
//! What it costs, per request: two queue hand-offs (a mutex and a
//! condition variable each way; a context switch only when the thread was
//! asleep), an `eventfd` write and read, and two `epoll_ctl` to stop and
//! restart watching the socket. What it buys: a slow request (a cold disk
//! read, an expensive page) stalls one pool thread, not the loop's other
//! connections, up to `--threads` of them at once.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::reactor::{Conn, Place, Reactor};
use super::shell::{READ, Resources};
use super::{Config, Counts};
use crate::file_cache::FileCache;
use crate::http::date::DateCache;
use crate::http::session::{Env, Next, SMALL_BODY};
use crate::poller::{Interest, Poller, Token, Trigger};
use crate::pool::Pools;
use crate::sys::Root;
use crate::trace;

/// The eventfd the pool writes when connections come back.
pub const OFFLOAD: Token = Token(u64::MAX - 4);

// ANCHOR: offload
/// The loop's two steps of this model: to the pool, and back.
impl Reactor {
    /// `--model proactor-sim`: sends the connection to the pool. The socket
    /// is not watched while it is away (level-triggered, unread bytes would
    /// report it on every wait; edge-triggered, an edge would be lost with
    /// nobody to record it): `rewatch` restores the interest when it is
    /// back, and the kernel then reports what became ready meanwhile.
    pub(super) fn offload(&mut self, index: usize) {
        let (token, trigger) = (self.shell.token(index), self.shell.config.trigger);
        let _span = tracing::info_span!("offload", slot = index).entered();
        let state = &mut self.shell.slots[index].state;
        let (Some(pool), Place::Here(_)) = (&self.pool, &state) else {
            return;
        };
        let Place::Here(mut conn) = std::mem::replace(state, Place::Away) else {
            return;
        };
        let none = Interest {
            read: false,
            write: false,
        };
        if conn.interest != none {
            conn.interest = none;
            let _ = self.poller.modify(&conn.stream, token, none, trigger);
        }
        // Boxed for the trip, so that each queue moves a pointer, not the
        // connection: one allocation per hand-off, where keeping it boxed
        // in its slot would cost every connection one, in both models.
        if !pool.send(index, Box::new(conn), &mut self.shell.res) {
            // The pool is gone: the connection was dropped with its job.
            self.shell.release(index);
        }
    }

    /// The pool's eventfd: connections come back with their sessions run
    /// as far as they go without I/O, and their loaned buffers.
    pub(super) fn on_processed(&mut self) {
        if let Some(pool) = &self.pool {
            pool.acknowledge();
        }
        let _span = tracing::info_span!("processed").entered();
        while let Some((index, conn, pools)) = self.pool.as_ref().and_then(Pool::next_done) {
            self.shell.res.pools.absorb(pools);
            self.shell.slots[index].state = Place::Here(*conn);
            self.step(index);
        }
    }
}
// ANCHOR_END: offload

/// A connection on its way to a pool thread and back.
struct Job {
    index: usize,
    conn: Box<Conn>,
    /// Buffers lent for the job; they come back with it.
    pools: Pools,
    /// The loop's clock, and whether the worker is stopping, when sent.
    now: Instant,
    stopping: bool,
}

// ANCHOR: pool
/// The loop's end of the thread pool.
pub struct Pool {
    /// Dropped (closed) to tell the threads to finish.
    jobs: Option<Sender<Job>>,
    done: Receiver<Job>,
    /// Written by a thread when it sends a job back.
    wake: Arc<EventFd>,
    threads: Vec<JoinHandle<Counts>>,
}

impl Pool {
    // ANCHOR: pool_start
    /// Starts `config.threads` threads, each with its own open-file cache
    /// (nothing shared, so nothing locked while a file is opened), and
    /// watches their eventfd as `OFFLOAD`.
    pub fn start(config: &Config, res: &Resources, poller: &Poller) -> io::Result<Pool> {
        let flags = EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC;
        let wake = Arc::new(EventFd::from_flags(flags)?);
        let (jobs, queue) = mpsc::channel::<Job>();
        // One queue, many consumers: the receiver behind a mutex, as in the
        // Rust Book's thread pool. A thread holds the lock only while it
        // waits for the next job, not while it works on it.
        let queue = Arc::new(Mutex::new(queue));
        let (finished, done) = mpsc::channel::<Job>();
        let mut threads = Vec::with_capacity(config.threads);
        for i in 0..config.threads {
            let context = Context {
                queue: Arc::clone(&queue),
                finished: finished.clone(),
                wake: Arc::clone(&wake),
                root: Arc::clone(&res.root),
                files: FileCache::new(config.open_file_cache, 128, SMALL_BODY),
                max_body: config.max_body,
                logging: res.log.is_some(),
            };
            let handle = thread::Builder::new()
                .name(format!("pool {i}"))
                .spawn(move || context.serve())?;
            threads.push(handle);
        }
        poller.add(&*wake, OFFLOAD, READ, Trigger::Level)?;
        Ok(Pool {
            jobs: Some(jobs),
            done,
            wake,
            threads,
        })
    }
    // ANCHOR_END: pool_start

    /// Sends the connection of slot `index` to a pool thread, with buffers
    /// lent from the loop's pools. False if the pool is gone (only while
    /// stopping): the connection is dropped, its buffers taken back.
    pub fn send(&self, index: usize, conn: Box<Conn>, res: &mut Resources) -> bool {
        let job = Job {
            index,
            conn,
            pools: res.pools.lend(),
            now: res.now,
            stopping: res.stopping,
        };
        let sent = match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|mpsc::SendError(job)| job),
            None => Err(job),
        };
        let Err(job) = sent else {
            return true;
        };
        res.pools.absorb(job.pools);
        false
    }

    /// Consumes the eventfd's count, before the queue is read: a job sent
    /// back after that writes it again, and wakes the loop again.
    pub fn acknowledge(&self) {
        let _ = self.wake.read();
    }

    /// A connection the pool is done with, with its slot and lent buffers.
    pub fn next_done(&self) -> Option<(usize, Box<Conn>, Pools)> {
        let job = self.done.try_recv().ok()?;
        Some((job.index, job.conn, job.pools))
    }

    /// Ends every thread once its job is done; adds up their cache counts.
    pub fn stop(&mut self) -> Counts {
        self.jobs = None;
        let mut total = Counts::default();
        for handle in self.threads.drain(..) {
            if let Ok(c) = handle.join() {
                total.hits += c.hits;
                total.misses += c.misses;
            }
        }
        total
    }
}

/// What one pool thread owns.
struct Context {
    queue: Arc<Mutex<Receiver<Job>>>,
    finished: Sender<Job>,
    wake: Arc<EventFd>,
    root: Arc<Root>,
    files: FileCache,
    max_body: u64,
    logging: bool,
}

impl Context {
    // ANCHOR: pool_serve
    /// A pool thread: take a job, run its session until it asks for I/O,
    /// send it back, wake the loop.
    fn serve(mut self) -> Counts {
        let mut date = DateCache::default();
        // Its track on the timeline (--trace) is named as the thread is.
        trace::name_thread(thread::current().name().unwrap_or("pool"));
        loop {
            let next = match self.queue.lock() {
                Ok(receiver) => receiver.recv(),
                Err(_) => break, // another thread panicked holding the lock
            };
            let Ok(mut job) = next else {
                break; // the queue is closed: the worker is stopping
            };
            let mut env = Env {
                now: job.now,
                date: date.refresh(),
                pools: &mut job.pools,
                max_body: self.max_body,
                stopping: job.stopping,
                logging: self.logging,
            };
            let fd = job.conn.stream.as_raw_fd();
            let session = &mut job.conn.session;
            loop {
                match session.next() {
                    Next::Process => {
                        let _span = tracing::info_span!("process", fd).entered();
                        session.process(&mut env);
                    }
                    Next::Open { path, dir } => {
                        let _span = tracing::info_span!("open", fd).entered();
                        let opened = self.files.open(&self.root, path, dir, job.now);
                        session.opened(opened, &mut env);
                    }
                    // I/O: the loop's business.
                    _ => break,
                }
            }
            // The hand-off back to the loop, which the eventfd wakes.
            let span = tracing::info_span!("hand_back", fd).entered();
            if self.finished.send(job).is_err() {
                break;
            }
            let _ = self.wake.write(1);
            drop(span);
        }
        Counts {
            hits: self.files.hits,
            misses: self.files.misses,
            ..Counts::default()
        }
    }
    // ANCHOR_END: pool_serve
}
// ANCHOR_END: pool
