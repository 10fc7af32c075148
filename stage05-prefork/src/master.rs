//! The master process: it binds the listening socket, forks the workers,
//! hands out connections (in `pass` mode), and keeps the pool alive.
//!
//! The master runs its own small epoll loop over: the listener (`pass` mode
//! only), a signalfd (SIGCHLD, SIGTERM, SIGINT, SIGUSR1, SIGUSR2), and one
//! channel per worker, on which workers report their load (see
//! [`crate::channel`]). It never touches a connection's bytes.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::unistd::{ForkResult, Pid};

use crate::accept::Acceptor;
use crate::channel::Channels;
use crate::poller::{Events, Interest, Poller, Token, Trigger};
use crate::reactor::{self, BACKLOG, Intake};
use crate::sys::{self, Exit};
use crate::trace;

mod status;

/// How connections reach the workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// The master accepts and passes each connection to the worker with the
    /// fewest live connections, over a socketpair with `SCM_RIGHTS`.
    Pass,
    /// Every worker watches the inherited listener and accepts for itself.
    Shared,
    /// Every worker has its own `SO_REUSEPORT` listener; the kernel chooses.
    ReusePort,
}

impl FromStr for Dispatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pass" => Ok(Dispatch::Pass),
            "shared" => Ok(Dispatch::Shared),
            "reuseport" => Ok(Dispatch::ReusePort),
            other => Err(format!(
                "unknown dispatch {other:?}: use pass, shared or reuseport"
            )),
        }
    }
}

/// What the master is told on the command line.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    pub addr: SocketAddr,
    pub workers: usize,
    pub dispatch: Dispatch,
    /// In `shared` mode, register the listener with EPOLLEXCLUSIVE.
    pub exclusive: bool,
    /// Each worker's loop; `max_conns` applies per worker.
    pub worker: reactor::Config,
}

const LISTENER: Token = Token(u64::MAX);
const SIGNALS: Token = Token(u64::MAX - 1);
// Worker i's channel has token i.

/// How long workers may take to finish after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);
/// A worker that ran at least this long before dying is restarted at once;
/// one that died sooner is restarted after a back-off that doubles up to
/// `MAX_BACKOFF`, so a worker that crashes on start cannot spin the master.
const STABLE: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One place in the pool. Its worker process comes and goes; the slot stays.
/// Its channel, readiness and load are in [`Channels`], under the same index.
struct Worker {
    /// Set by `spawn`, cleared when the process is reaped.
    pid: Option<Pid>,
    started: Instant,
    backoff: Duration,
    /// When to start a replacement, after a death.
    respawn_at: Option<Instant>,
}

impl Worker {
    fn empty() -> Worker {
        Worker {
            pid: None,
            started: Instant::now(),
            backoff: Duration::ZERO,
            respawn_at: None,
        }
    }
}

/// How the pool stopped: how each worker still running at SIGTERM/SIGINT
/// ended. Returned by [`Master::run`].
#[derive(Debug, Default)]
pub struct StopReport {
    /// Every worker reaped after the stop began, in the order they ended.
    pub exits: Vec<(Pid, Exit)>,
    /// Set if some worker was still running when the grace ran out, and so
    /// got SIGKILL.
    pub grace_ran_out: bool,
}

impl StopReport {
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
    addr: SocketAddr,
    poller: Poller,
    signals: SignalFd,
    workers: Vec<Worker>,
    /// Every worker's channel, by the same index as `workers`.
    channels: Channels,
    /// `pass`: accepts from `listener`, and sheds when out of descriptors.
    acceptor: Acceptor,
    /// Set when accepting stopped because no worker had room, with
    /// connections perhaps left in the listen backlog. The listener is
    /// edge-triggered, so no new event would come for those: `turn`
    /// resumes accepting as soon as a channel has room.
    accept_paused: bool,
    events: Option<Events>,
    /// Set by SIGTERM/SIGINT: the time after which workers get SIGKILL.
    stop_deadline: Option<Instant>,
    /// Filled as workers are reaped after the stop began.
    stop_report: StopReport,
}

impl Master {
    /// Binds, forks every worker, and returns once all of them are ready, so
    /// that `listening on` is printed only when connections will be served.
    pub fn start(config: MasterConfig) -> io::Result<Master> {
        // Block the signals before the first fork: each worker inherits the
        // mask, so nothing reaches a worker before its own signalfd exists.
        let signals = sys::signal_fd(&[
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
        ])?;
        sys::ignore_sigpipe()?;
        let (listener, port_holder, addr) = match config.dispatch {
            Dispatch::Pass | Dispatch::Shared => {
                let listener = sys::listen_nonblocking(config.addr, BACKLOG)?;
                let addr = listener.local_addr()?;
                (Some(listener), None, addr)
            }
            Dispatch::ReusePort => {
                let holder = sys::bind_reuseport(config.addr)?;
                let addr = sys::bound_addr(&holder)?;
                (None, Some(holder), addr)
            }
        };
        let poller = Poller::new()?;
        poller.add(&signals, SIGNALS, READ, Trigger::Level)?;
        let slots = config.workers.max(1);
        let mut master = Master {
            config,
            listener,
            port_holder,
            addr,
            poller,
            signals,
            workers: (0..slots).map(|_| Worker::empty()).collect(),
            channels: Channels::new(slots),
            acceptor: Acceptor::new()?,
            accept_paused: false,
            events: Some(Events::with_capacity(64)),
            stop_deadline: None,
            stop_report: StopReport::default(),
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
    pub fn run(&mut self) -> io::Result<StopReport> {
        while !(self.stop_deadline.is_some() && self.workers.iter().all(|w| w.pid.is_none())) {
            let timeout = self.next_timeout();
            self.turn(timeout)?;
            self.respawn_due();
            self.enforce_grace();
        }
        Ok(std::mem::take(&mut self.stop_report))
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
        // A channel has room again, or a worker became ready: take the
        // connections that waited in the backlog while accepting paused.
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
    /// Starts the worker of slot `i`.
    fn spawn(&mut self, i: usize) -> io::Result<()> {
        let (master_end, worker_end) = sys::channel_pair()?;
        match sys::fork()? {
            ForkResult::Child => {
                // From here on this is the new worker process. It never
                // returns into the master's code.
                trace::forked(&format!("stage05 worker {i}"));
                drop(master_end);
                let code = self.become_worker(worker_end);
                // `exit` runs no destructors: what the timeline holds is
                // written now or never.
                trace::flush();
                std::process::exit(code);
            }
            ForkResult::Parent { child } => {
                drop(worker_end);
                let w = &mut self.workers[i];
                w.pid = Some(child);
                w.started = Instant::now();
                w.respawn_at = None;
                self.channels.attach(i, master_end, &self.poller)
            }
        }
    }

    /// In the child: keep what the worker needs, close every other
    /// descriptor inherited from the master, run the worker's loop.
    fn become_worker(&mut self, channel: OwnedFd) -> i32 {
        let intake = match self.config.dispatch {
            Dispatch::Pass => Intake::Passed,
            Dispatch::Shared => match self.listener.as_ref().map(TcpListener::try_clone) {
                Some(Ok(listener)) => Intake::Shared {
                    listener,
                    exclusive: self.config.exclusive,
                },
                _ => return 1,
            },
            Dispatch::ReusePort => Intake::ReusePort { addr: self.addr },
        };
        // Inherited and not ours: the master's epoll instance (sharing it
        // would deliver our events to the master and its to us), its
        // signalfd, the listener (in `shared` mode the worker keeps its own
        // duplicate, made above), the port holder, the reserve descriptor,
        // the other workers' channels (holding one would keep that worker's
        // channel open after the master dies: no EOF, no exit), and the
        // connections queued in the master (holding one would keep it open
        // after the worker it goes to has closed it: the client would never
        // see the close).
        let mut inherited: Vec<RawFd> = vec![self.poller.as_raw_fd(), self.signals.as_raw_fd()];
        inherited.extend(self.listener.as_ref().map(|l| l.as_raw_fd()));
        inherited.extend(self.port_holder.as_ref().map(|f| f.as_raw_fd()));
        inherited.extend(self.acceptor.reserve_fd());
        inherited.extend(self.channels.raw_fds());
        sys::close_in_child(&inherited);
        reactor::run_worker(self.config.worker.clone(), intake, channel)
    }
    // ANCHOR_END: spawn

    // ANCHOR: accept
    /// The listener is readable (`pass` mode): accept until EAGAIN, give
    /// each connection to a worker, then send the batches. Accept only
    /// while some worker has room: once none has, leave the rest in the
    /// listen backlog and remember it (`accept_paused`). Accepting anyway
    /// and closing what no worker could take, as this stage once did,
    /// answers a burst by dropping hundreds of clients that the backlog
    /// would have held for free.
    fn on_acceptable(&mut self) {
        self.accept_paused = false;
        let span = tracing::info_span!("accept", accepted = 0u64).entered();
        let mut accepted = 0u64;
        loop {
            if !self.channels.has_room() {
                self.accept_paused = true;
                break;
            }
            let Some(listener) = self.listener.as_ref() else {
                break;
            };
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
    // ANCHOR: on_signals
    fn on_signals(&mut self) {
        let (mut child, mut stop, mut status, mut queues) = (false, false, false, false);
        let drained = sys::drain_signal_fd(&self.signals, |signal| match signal {
            Signal::SIGCHLD => child = true,
            Signal::SIGTERM | Signal::SIGINT => stop = true,
            Signal::SIGUSR1 => status = true,
            Signal::SIGUSR2 => queues = true,
            _ => {}
        });
        if let Err(e) = drained {
            eprintln!("signalfd: {e}");
        }
        // SIGCHLD first: a worker that died must not be counted as live.
        if child {
            self.reap();
        }
        if stop {
            self.begin_stop();
        }
        if status {
            self.print_status();
        }
        if queues {
            self.print_channels();
        }
    }
    // ANCHOR_END: on_signals

    // ANCHOR: reap
    /// Reaps every exited worker (signals coalesce: one SIGCHLD may stand
    /// for several deaths, so loop until none is left), sends what was
    /// queued for it to the others, and schedules its replacement, or, when
    /// stopping, records how it ended. An unreaped child stays a zombie.
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
                self.stop_report.exits.push((pid, how));
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
    // ANCHOR_END: reap
    // ANCHOR_END: signals

    fn respawn_due(&mut self) {
        if self.stop_deadline.is_some() {
            return;
        }
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

    /// SIGTERM/SIGINT: stop accepting, ask every worker to finish, and give
    /// them `GRACE` before SIGKILL. Connections still queued in the master
    /// are closed, as the workers close theirs.
    fn begin_stop(&mut self) {
        if self.stop_deadline.is_some() {
            return;
        }
        self.stop_deadline = Some(Instant::now() + GRACE);
        if let Some(listener) = self.listener.take() {
            let _ = self.poller.delete(&listener);
        }
        self.port_holder = None;
        self.accept_paused = false;
        self.channels.clear_queues();
        for w in &mut self.workers {
            w.respawn_at = None;
            if let Some(pid) = w.pid {
                sys::send_signal(pid, Signal::SIGTERM);
            }
        }
    }

    fn enforce_grace(&mut self) {
        if self.stop_deadline.is_some_and(|at| Instant::now() >= at) {
            for w in &self.workers {
                if let Some(pid) = w.pid {
                    sys::send_signal(pid, Signal::SIGKILL);
                    self.stop_report.grace_ran_out = true;
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
