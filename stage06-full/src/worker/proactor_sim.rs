//! `--model proactor-sim`: the half-sync/half-reactive thread pool of the
//! write-ups, with a *simulated* Proactor.
//!
//! The event loop is the Reactor's, and it does every read and write
//! itself; what it hands off is the session's CPU work. When a session asks
//! to parse (`Next::Process`) or to open a file (`Next::Open`), the loop
//! stops watching the socket and sends the whole connection to a fixed pool
//! of threads through a queue. A pool thread runs the session until it asks
//! for I/O again, then sends the connection back through a second queue and
//! writes to an `eventfd` that the loop watches. The loop, woken, puts the
//! connection back in its slot and does the I/O.
//!
//! From the loop's side this looks like a Proactor: it learns that a
//! request has been *processed*, not that a socket is ready. But the I/O is
//! still synchronous and still done by the loop, which is why it is called
//! simulated; `uring` is the real thing.
//!
//! What it costs, per request: two queue hand-offs (a mutex, a condition
//! variable wake-up, a context switch each way), an `eventfd` write and
//! read, and two `epoll_ctl` calls to stop and restart watching the socket.
//! What it buys: a slow request (a cold disk read, an expensive page) does
//! not stall the other connections of the loop, up to `--threads` of them
//! at once.

use std::io;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::reactor::{self, Conn, Processing, Step};
use super::shell::{ALARM, CHANNEL, Counts, LISTENER, Own, SIGNALS, Shell};
use super::{Config, DateCache, Intake, Resources};
use crate::file_cache::FileCache;
use crate::http::session::{Env, Next, SMALL_BODY};
use crate::poller::{Events, Interest, Poller, Readiness, Token, Trigger};
use crate::pool::Pools;
use crate::sys::Root;

/// The eventfd the pool writes when connections come back.
const OFFLOAD: Token = Token(u64::MAX - 4);
/// A timer that fires while its connection is in the pool is put off by
/// this much: the connection is back within microseconds.
const AWAY_GRACE: Duration = Duration::from_millis(10);
/// Room for events per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 1024;

// ANCHOR: sim_slot
/// A slot of the simulated Proactor.
#[derive(Default)]
pub enum Slot {
    #[default]
    Free,
    /// In the loop: the loop does its I/O. Boxed, so that the hand-off to
    /// the pool and back moves a pointer, not the connection.
    Here(Box<Conn>),
    /// In the pool, being processed; it comes back through `done`.
    Away,
}
// ANCHOR_END: sim_slot

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

/// The simulated Proactor: the Reactor's loop, and a pool of threads.
pub struct ProactorSim {
    shell: Shell<Slot>,
    poller: Poller,
    pool: Pool,
    incoming: Vec<TcpStream>,
    due: Vec<usize>,
}

/// Sets up a worker's simulated Proactor and runs it until it stops.
pub fn run(config: Config, intake: Intake, channel: OwnedFd) -> io::Result<()> {
    let shell = Shell::new(config, intake, channel)?;
    let poller = Poller::new()?;
    shell.watch(&poller)?;
    let pool = Pool::start(&shell.config, &shell.res)?;
    let read = Interest {
        read: true,
        write: false,
    };
    poller.add(&*pool.wake, OFFLOAD, read, Trigger::Level)?;
    shell.ready()?;
    let mut sim = ProactorSim {
        shell,
        poller,
        pool,
        incoming: Vec::new(),
        due: Vec::new(),
    };
    sim.run()
}

impl ProactorSim {
    // ANCHOR: sim_run
    /// The Reactor's loop, with one more event: connections coming back
    /// from the pool.
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        while !self.shell.finished() {
            reactor::wait(&mut self.shell, &self.poller, &mut events)?;
            for event in events.iter() {
                match event.token {
                    OFFLOAD => self.on_done(),
                    own @ (LISTENER | CHANNEL | SIGNALS | ALARM) => {
                        match self.shell.on_own(own, &mut self.incoming) {
                            Own::Done => {}
                            Own::Stop => self.begin_stop(),
                            Own::Expire => self.expire(),
                        }
                    }
                    token => self.on_ready(token, event.readiness),
                }
                while let Some(stream) = self.incoming.pop() {
                    let (shell, poller) = (&mut self.shell, &self.poller);
                    let here = |conn| Slot::Here(Box::new(conn));
                    let admitted =
                        reactor::admit(shell, poller, stream, Processing::Elsewhere, here);
                    if let Some((index, Step::Offload)) = admitted {
                        self.offload(index, self.shell.token(index));
                    }
                }
            }
            self.shell.report_load();
        }
        let counts = self.pool.stop();
        self.shell.report(counts);
        for index in 0..self.shell.slots.len() {
            self.close(index);
        }
        Ok(())
    }
    // ANCHOR_END: sim_run

    fn on_ready(&mut self, token: Token, ready: Readiness) {
        let Some(index) = self.shell.find(token) else {
            return; // stale: the slot holds a newer connection
        };
        let Slot::Here(conn) = &mut self.shell.slots[index].state else {
            return; // stale, or in the pool (it is not watched then)
        };
        if ready.error {
            return self.close(index);
        }
        conn.on_event(ready);
        self.step(index);
    }

    // ANCHOR: sim_step
    // ANCHOR: sim_offload
    /// Does the connection's I/O; hands it to the pool when its session
    /// has work for the CPU.
    fn step(&mut self, index: usize) {
        let token = self.shell.token(index);
        let trigger = self.shell.config.trigger;
        let Slot::Here(conn) = &mut self.shell.slots[index].state else {
            return;
        };
        match reactor::drive(conn, &mut self.shell.res, Processing::Elsewhere) {
            Step::Close => self.close(index),
            Step::Offload => self.offload(index, token),
            Step::Wait => {
                if reactor::rewatch(&self.poller, conn, token, trigger).is_err() {
                    return self.close(index);
                }
                let deadline = conn.session.deadline(&self.shell.config.timeouts);
                if conn.session.between_requests()
                    && self.shell.pairing_due()
                    && self.hand_over(index)
                {
                    return;
                }
                self.shell.set_deadline(index, deadline);
            }
        }
    }

    /// `--steer cpu`: as the Reactor's (`reactor::hand_over_idle`).
    fn hand_over(&mut self, index: usize) -> bool {
        let Slot::Here(conn) = &self.shell.slots[index].state else {
            return false;
        };
        let moved = reactor::hand_over_idle(&self.shell, &self.poller, conn);
        if moved {
            self.close(index);
        }
        moved
    }

    /// Sends the connection to the pool. The socket is not watched while it
    /// is away (level-triggered, unread bytes would report it on every
    /// wait; edge-triggered, an edge would be lost with nobody to record
    /// it): `rewatch` restores the interest when it is back, and the kernel
    /// then reports what became ready meanwhile.
    fn offload(&mut self, index: usize, token: Token) {
        let slot = &mut self.shell.slots[index].state;
        let Slot::Here(mut conn) = std::mem::replace(slot, Slot::Away) else {
            return;
        };
        let none = Interest {
            read: false,
            write: false,
        };
        if conn.interest != none {
            conn.interest = none;
            let trigger = self.shell.config.trigger;
            let _ = self.poller.modify(&conn.stream, token, none, trigger);
        }
        let res = &mut self.shell.res;
        let job = Job {
            index,
            conn,
            pools: res.pools.lend(),
            now: res.now,
            stopping: res.stopping,
        };
        let sent = match &self.pool.jobs {
            Some(jobs) => jobs.send(job).map_err(|mpsc::SendError(job)| job),
            None => Err(job),
        };
        if let Err(job) = sent {
            // The pool is gone (only while stopping): drop the connection.
            self.shell.res.pools.absorb(job.pools);
            self.shell.release(index);
        }
    }
    // ANCHOR_END: sim_offload

    // ANCHOR: sim_done
    /// The pool's eventfd: connections come back with their sessions run
    /// as far as they go without I/O, and their loaned buffers.
    fn on_done(&mut self) {
        let _ = self.pool.wake.read();
        while let Ok(job) = self.pool.done.try_recv() {
            self.shell.res.pools.absorb(job.pools);
            self.shell.slots[job.index].state = Slot::Here(job.conn);
            self.step(job.index);
        }
    }
    // ANCHOR_END: sim_done
    // ANCHOR_END: sim_step

    fn expire(&mut self) {
        self.shell.on_alarm(&mut self.due);
        while let Some(index) = self.due.pop() {
            match &mut self.shell.slots[index].state {
                // In the pool: look again when it is back (its deadline is
                // recomputed then).
                Slot::Away => {
                    let later = self.shell.res.now + AWAY_GRACE;
                    self.shell.set_deadline(index, later);
                }
                Slot::Here(conn) => {
                    conn.session.timed_out(&mut self.shell.res.env());
                    self.step(index);
                }
                Slot::Free => {}
            }
        }
    }

    fn begin_stop(&mut self) {
        if let Some(listener) = self.shell.begin_stop() {
            let _ = self.poller.delete(&listener);
        }
        for index in 0..self.shell.slots.len() {
            if let Slot::Here(conn) = &self.shell.slots[index].state
                && conn.session.is_idle()
            {
                self.close(index);
            }
        }
    }

    /// Closes a connection in the loop; one in the pool is closed when the
    /// worker exits (its job is dropped with the pool).
    fn close(&mut self, index: usize) {
        let slot = &mut self.shell.slots[index].state;
        if let Slot::Here(_) = slot
            && let Slot::Here(conn) = std::mem::take(slot)
        {
            conn.session.release(&mut self.shell.res.pools);
            self.shell.release(index);
        }
    }
}

// ANCHOR: pool
/// The loop's end of the thread pool.
struct Pool {
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
    /// (nothing shared, so nothing locked while a file is opened).
    fn start(config: &Config, res: &Resources) -> io::Result<Pool> {
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
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
        Ok(Pool {
            jobs: Some(jobs),
            done,
            wake,
            threads,
        })
    }
    // ANCHOR_END: pool_start

    /// Ends every thread once it has finished its job, and adds up what
    /// their caches and loans counted.
    fn stop(&mut self) -> Counts {
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
            let session = &mut job.conn.session;
            loop {
                match session.next() {
                    Next::Process => session.process(&mut env),
                    Next::Open { path, dir } => {
                        let opened = self.files.open(&self.root, path, dir, job.now);
                        session.opened(opened, &mut env);
                    }
                    // I/O: the loop's business.
                    _ => break,
                }
            }
            if self.finished.send(job).is_err() {
                break;
            }
            let _ = self.wake.write(1);
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
