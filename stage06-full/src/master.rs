//! The master process: it binds, forks the workers, hands out connections
//! (`pass` mode) and keeps the pool alive, in a small epoll loop of its own
//! over the listener (`pass` only), a signalfd, and each worker's channel
//! ([`crate::channel`]). It never touches a connection's bytes.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::signal::SigSet;
use nix::sys::signal::Signal::{SIGCHLD, SIGINT, SIGKILL, SIGTERM, SIGUSR1, SIGUSR2};
use nix::sys::signalfd::SignalFd;
use nix::unistd::{ForkResult, Pid};

use crate::accept::Acceptor;
use crate::channel::Channels;
use crate::poller::{Events, Interest, Poller, Token, Trigger};
use crate::sys::{self, Exit};
use crate::trace;
use crate::worker;

mod config;
mod listen;
mod status;

pub use config::{Dispatch, MasterConfig, Steer};

const LISTENER: Token = Token(u64::MAX);
const SIGNALS: Token = Token(u64::MAX - 1);
// Worker i's channel has token i.

/// The workers' own grace after SIGTERM plus this, and then SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// A worker that lived this long is restarted at once, one that died sooner
/// after a back-off doubling up to `MAX_BACKOFF`: no fork loop on a crash.
const STABLE: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One place in the pool: its worker process comes and goes, the place
/// stays, and its channel is in [`Channels`] under the same index.
struct Worker {
    /// Set by `spawn`, cleared when the process is reaped.
    pid: Option<Pid>,
    started: Instant,
    backoff: Duration,
    /// When to start a replacement, after a death.
    respawn_at: Option<Instant>,
}

/// How the pool stopped: how each worker still running at SIGTERM/SIGINT
/// ended. Returned by [`Master::run`].
#[derive(Debug, Default)]
pub struct Stopped {
    /// Every worker reaped after the stop began, in the order they ended.
    pub exits: Vec<(Pid, Exit)>,
    /// Some worker was still running when the grace ran out, and got SIGKILL.
    pub grace_ran_out: bool,
}

impl Stopped {
    /// True if every worker finished and exited with status 0.
    pub fn is_clean(&self) -> bool {
        self.exits.iter().all(|(_, exit)| exit.is_clean())
    }
}

pub struct Master {
    config: MasterConfig,
    /// `pass` and `shared`: the listening socket (workers inherit it in
    /// `shared` mode). Closed at shutdown: the first step of stopping.
    listener: Option<TcpListener>,
    /// `reuseport`: the bound, never-listening socket that holds the port.
    port_holder: Option<OwnedFd>,
    /// The CPUs of `--pin on` and `--steer cpu` (worker `i` takes the `i`-th).
    cpus: Vec<usize>,
    addr: SocketAddr,
    poller: Poller,
    signals: SignalFd,
    workers: Vec<Worker>,
    /// Every worker's channel, by the same index as `workers`.
    channels: Channels,
    /// `pass`: accepts from `listener`, and sheds when out of descriptors.
    acceptor: Acceptor,
    /// Accepting stopped with no worker having room, connections perhaps
    /// left in the backlog. The listener is edge-triggered, so no new event
    /// would come for those: `turn` resumes as soon as a channel has room.
    accept_paused: bool,
    events: Option<Events>,
    /// Set by SIGTERM/SIGINT: the time after which workers get SIGKILL.
    stop_deadline: Option<Instant>,
    /// Filled as workers are reaped after the stop began.
    stopped: Stopped,
}

impl Master {
    /// Binds, forks every worker, and returns once all of them are ready, so
    /// that `listening on` is printed only when connections will be served.
    pub fn start(config: MasterConfig) -> io::Result<Master> {
        // Block the signals before the first fork: each worker inherits the
        // mask, so nothing reaches a worker before its own signalfd exists.
        let signals = sys::signal_fd(&[SIGCHLD, SIGTERM, SIGINT, SIGUSR1, SIGUSR2])?;
        sys::ignore_sigpipe()?;
        let (listener, port_holder, addr) = listen::bind(&config)?;
        let cpus = if config.pin || config.steer == Steer::Cpu {
            sys::allowed_cpus()?
        } else {
            Vec::new()
        };
        let poller = Poller::new()?;
        poller.add(&signals, SIGNALS, READ, Trigger::Level)?;
        let places = config.workers.max(1);
        let mut master = Master {
            config,
            listener,
            port_holder,
            cpus,
            addr,
            poller,
            signals,
            workers: (0..places)
                .map(|_| Worker {
                    pid: None,
                    started: Instant::now(),
                    backoff: Duration::ZERO,
                    respawn_at: None,
                })
                .collect(),
            channels: Channels::new(places),
            acceptor: Acceptor::new()?,
            accept_paused: false,
            events: Some(Events::with_capacity(64)),
            stop_deadline: None,
            stopped: Stopped::default(),
        };
        for i in 0..master.workers.len() {
            master.spawn(i)?;
        }
        master.wait_until_ready()?;
        if master.config.dispatch == Dispatch::Pass
            && let Some(listener) = &master.listener
        {
            // Edge-triggered, and drained to EAGAIN on every event.
            master.poller.add(listener, LISTENER, READ, Trigger::Edge)?;
        }
        Ok(master)
    }

    /// The address clients connect to (the real port when asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    // ANCHOR: run
    /// Runs until SIGTERM/SIGINT has stopped every worker, and says how
    /// they ended.
    pub fn run(&mut self) -> io::Result<Stopped> {
        while !(self.stop_deadline.is_some() && self.workers.iter().all(|w| w.pid.is_none())) {
            let timeout = self.next_timeout();
            self.turn(timeout)?;
            self.respawn_due();
            self.enforce_grace();
        }
        Ok(std::mem::take(&mut self.stopped))
    }

    /// One iteration: wait, then dispatch every event.
    fn turn(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = self
            .events
            .take()
            .unwrap_or_else(|| Events::with_capacity(64));
        // With --trace, the last turn's events are written before we sleep.
        trace::flush();
        let waited = self.poller.wait(&mut events, timeout);
        if waited.is_ok() {
            for event in events.iter() {
                match event.token {
                    LISTENER => self.on_acceptable(),
                    SIGNALS => self.on_signals(),
                    // Worker i's reports (READY, its load), or room to send.
                    Token(i) => {
                        let _span = tracing::info_span!("channel", worker = i).entered();
                        self.channels
                            .on_event(i as usize, event.readiness, &self.poller);
                    }
                }
            }
        }
        self.events = Some(events);
        // A channel has room again, or a worker became ready.
        if self.accept_paused && self.channels.has_room() {
            self.on_acceptable();
        }
        match waited {
            Err(e) if e.kind() != ErrorKind::Interrupted => Err(e),
            _ => Ok(()),
        }
    }
    // ANCHOR_END: run

    fn wait_until_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(0..self.workers.len()).all(|i| self.channels.is_ready(i)) {
            let now = Instant::now();
            if now >= deadline || self.stop_deadline.is_some() {
                return Err(io::Error::other("the workers did not start"));
            }
            self.turn(Some(deadline - now))?;
            self.respawn_due();
        }
        Ok(())
    }

    // ANCHOR: spawn
    /// Starts the worker of place `i`, with what it accepts from.
    fn spawn(&mut self, i: usize) -> io::Result<()> {
        let listener = self.listener_for(i)?;
        let (master_end, worker_end) = sys::channel_pair()?;
        match sys::fork()? {
            ForkResult::Child => {
                // The new worker process: it never returns into the master.
                trace::forked(&format!("stage06 worker {i}"));
                drop(master_end);
                let code = self.become_worker(i, listener, worker_end);
                // `exit` runs no destructors: the timeline's last events
                // are written now or never.
                trace::flush();
                std::process::exit(code);
            }
            ForkResult::Parent { child } => {
                // The worker has its own copies of the listener and its
                // channel's end: the master closes its own.
                drop((listener, worker_end));
                let w = &mut self.workers[i];
                w.pid = Some(child);
                w.started = Instant::now();
                w.respawn_at = None;
                self.channels.attach(i, master_end, &self.poller)
            }
        }
    }

    /// In the child: keep what the worker of place `i` needs, close every
    /// other descriptor inherited from the master, run the worker's loop.
    fn become_worker(&mut self, i: usize, listener: Option<TcpListener>, channel: OwnedFd) -> i32 {
        // ANCHOR: pin
        // `--pin on`, as nginx's `worker_cpu_affinity auto`: the worker's
        // caches stay warm on one CPU, and it never competes with another
        // worker for it. Set now, while this is the process's only thread:
        // the threads it starts later inherit it.
        if self.config.pin
            && let Some(cpu) = self.cpu_of(i)
            && let Err(e) = sys::pin_to(&[cpu])
        {
            eprintln!(
                "worker {}: cannot pin to CPU {cpu} ({e})",
                std::process::id()
            );
        }
        // ANCHOR_END: pin
        // Inherited and not ours (stage05's chapter, "Fork pitfalls"): the
        // master's epoll instance, signalfd, listener (under `shared` the
        // worker keeps the duplicate `listener_for` made), port holder and
        // reserve descriptor, the other workers' channels (held, they would
        // hide the master's death: no EOF), and the connections queued in
        // the master (held, they would hide a close from their clients).
        let mut inherited: Vec<RawFd> = vec![self.poller.as_raw_fd(), self.signals.as_raw_fd()];
        inherited.extend(self.listener.as_ref().map(|l| l.as_raw_fd()));
        inherited.extend(self.port_holder.as_ref().map(|f| f.as_raw_fd()));
        inherited.extend(self.acceptor.reserve_fd());
        inherited.extend(self.channels.raw_fds());
        sys::close_in_child(&inherited);
        worker::run_worker(self.config.worker.clone(), listener, channel)
    }
    // ANCHOR_END: spawn

    // ANCHOR: accept
    /// The listener is readable (`pass` mode): accept until EAGAIN while
    /// some worker has room, then send the batches. Past that, the backlog
    /// holds the rest for free (`accept_paused`): accepting and closing them,
    /// as this stage once did, dropped a burst's clients.
    fn on_acceptable(&mut self) {
        self.accept_paused = false;
        let span = tracing::info_span!("accept", accepted = 0u64).entered();
        let mut accepted = 0u64;
        while let Some(listener) = self.listener.as_ref() {
            if !self.channels.has_room() {
                self.accept_paused = true;
                break;
            }
            let Some(stream) = self.acceptor.next(listener) else {
                break;
            };
            accepted += 1;
            span.record("accepted", accepted);
            if self.channels.pass(stream, &self.poller).is_err() {
                // Unreachable: `has_room` and `pass` choose alike, and
                // nothing ran in between. Said aloud if it ever happens.
                eprintln!("no worker had room for an accepted connection; closed it");
            }
        }
        self.channels.flush(&self.poller);
    }
    // ANCHOR_END: accept

    // ANCHOR: signals
    fn on_signals(&mut self) {
        let mut got = SigSet::empty();
        if let Err(e) = sys::drain_signal_fd(&self.signals, |signal| got.add(signal)) {
            eprintln!("signalfd: {e}");
        }
        // SIGCHLD first: a worker that died must not be counted as live.
        if got.contains(SIGCHLD) {
            self.reap();
        }
        if got.contains(SIGTERM) || got.contains(SIGINT) {
            self.begin_stop();
        }
        if got.contains(SIGUSR1) {
            self.print_status();
        }
        if got.contains(SIGUSR2) {
            self.print_channels();
        }
    }

    /// Reaps every exited worker (one SIGCHLD may stand for several deaths),
    /// sends what was queued for it to the others, and schedules its
    /// replacement, or, when stopping, records how it ended.
    fn reap(&mut self) {
        loop {
            let (pid, how) = match sys::reap_one() {
                Ok(Some(exited)) => exited,
                Ok(None) => return,
                Err(e) => {
                    eprintln!("waitpid: {e}");
                    return;
                }
            };
            let Some(i) = self.workers.iter().position(|w| w.pid == Some(pid)) else {
                continue;
            };
            self.channels.detach(i, &self.poller);
            let w = &mut self.workers[i];
            w.pid = None;
            if self.stop_deadline.is_some() {
                self.stopped.exits.push((pid, how));
                continue;
            }
            let lived = w.started.elapsed();
            w.backoff = if lived >= STABLE {
                Duration::ZERO
            } else {
                (w.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF)
            };
            w.respawn_at = Some(Instant::now() + w.backoff);
            eprintln!(
                "worker {pid} ended ({how}) after {lived:.1?}; restarting in {:?}",
                w.backoff
            );
        }
    }
    // ANCHOR_END: signals

    /// Starts the replacements due (none once stopping: `begin_stop` and
    /// `reap` leave every `respawn_at` empty then).
    fn respawn_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.workers.len() {
            if self.workers[i].respawn_at.is_some_and(|at| at <= now)
                && let Err(e) = self.spawn(i)
            {
                eprintln!("cannot start worker {i}: {e}");
                let w = &mut self.workers[i];
                w.backoff = (w.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
                w.respawn_at = Some(now + w.backoff);
            }
        }
    }

    /// SIGTERM/SIGINT: stop accepting, close the connections queued here (as
    /// the workers close their idle ones), and ask every worker to finish its
    /// responses in flight within its grace (and `GRACE` more) before SIGKILL.
    fn begin_stop(&mut self) {
        if self.stop_deadline.is_some() {
            return;
        }
        self.stop_deadline = Some(Instant::now() + self.config.worker.grace + GRACE);
        if let Some(listener) = self.listener.take() {
            let _ = self.poller.delete(&listener);
        }
        self.port_holder = None;
        self.accept_paused = false;
        self.channels.clear_queues();
        for w in &mut self.workers {
            w.respawn_at = None;
            if let Some(pid) = w.pid {
                sys::send_signal(pid, SIGTERM);
            }
        }
    }

    fn enforce_grace(&mut self) {
        if self.stop_deadline.is_some_and(|at| Instant::now() >= at) {
            for w in &self.workers {
                if let Some(pid) = w.pid {
                    sys::send_signal(pid, SIGKILL);
                    self.stopped.grace_ran_out = true;
                }
            }
        }
    }

    fn next_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        self.workers
            .iter()
            .filter_map(|w| w.respawn_at)
            .chain(self.stop_deadline)
            .min()
            .map(|at| at.saturating_duration_since(now))
    }
}

const READ: Interest = Interest {
    read: true,
    write: false,
};
