//! The master process: it binds the listening socket, forks the workers,
//! hands out connections (in `pass` mode), and keeps the pool alive.
//!
//! The master runs its own small epoll loop over: the listener (`pass` mode
//! only), a signalfd (SIGCHLD, SIGTERM, SIGINT, SIGUSR1), and one channel
//! per worker, on which workers report their load. It never touches a
//! connection's bytes.

use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::unistd::{ForkResult, Pid};

use crate::accept::Acceptor;
use crate::poller::{Events, Interest, Poller, Token, Trigger};
use crate::reactor::{self, BACKLOG, Intake, message};
use crate::sys::{self, Exit};

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
struct Worker {
    /// Set by `spawn`, cleared when the process is reaped.
    pid: Option<Pid>,
    /// The master's end of the socketpair; dropped (closed) on EOF or reap.
    channel: Option<OwnedFd>,
    /// Set when the worker sends READY.
    ready: bool,
    /// Live connections and connections taken in so far: the worker's last
    /// report, plus what the master passed since (reports are snapshots).
    live: u32,
    taken: u64,
    started: Instant,
    backoff: Duration,
    /// When to start a replacement, after a death.
    respawn_at: Option<Instant>,
}

impl Worker {
    fn empty() -> Worker {
        Worker {
            pid: None,
            channel: None,
            ready: false,
            live: 0,
            taken: 0,
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
    /// `pass`: accepts from `listener`, and sheds when out of descriptors.
    acceptor: Acceptor,
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
        let workers = (0..config.workers.max(1))
            .map(|_| Worker::empty())
            .collect();
        let mut master = Master {
            config,
            listener,
            port_holder,
            addr,
            poller,
            signals,
            workers,
            acceptor: Acceptor::new()?,
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
        let waited = self.poller.wait(&mut events, timeout);
        if waited.is_ok() {
            for event in events.iter() {
                match event.token {
                    LISTENER => self.on_acceptable(),
                    SIGNALS => self.on_signals(),
                    Token(i) => self.on_worker_message(i as usize),
                }
            }
        }
        self.events = Some(events);
        match waited {
            Err(e) if e.kind() != ErrorKind::Interrupted => Err(e),
            _ => Ok(()),
        }
    }
    // ANCHOR_END: run

    fn wait_until_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.workers.iter().all(|w| w.ready) {
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
                drop(master_end);
                let code = self.become_worker(i, worker_end);
                std::process::exit(code);
            }
            ForkResult::Parent { child } => {
                drop(worker_end);
                self.poller
                    .add(&master_end, Token(i as u64), READ, Trigger::Level)?;
                let w = &mut self.workers[i];
                w.pid = Some(child);
                w.channel = Some(master_end);
                w.ready = false;
                w.live = 0;
                w.taken = 0;
                w.started = Instant::now();
                w.respawn_at = None;
                Ok(())
            }
        }
    }

    /// In the child: keep what the worker needs, close every other
    /// descriptor inherited from the master, run the worker's loop.
    fn become_worker(&mut self, i: usize, channel: OwnedFd) -> i32 {
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
        // and the other workers' channels (holding one would keep that
        // worker's channel open after the master dies: no EOF, no exit).
        let mut inherited: Vec<RawFd> = vec![self.poller.as_raw_fd(), self.signals.as_raw_fd()];
        inherited.extend(self.listener.as_ref().map(|l| l.as_raw_fd()));
        inherited.extend(self.port_holder.as_ref().map(|f| f.as_raw_fd()));
        inherited.extend(self.acceptor.reserve_fd());
        for (j, w) in self.workers.iter().enumerate() {
            if j != i {
                inherited.extend(w.channel.as_ref().map(|c| c.as_raw_fd()));
            }
        }
        sys::close_in_child(&inherited);
        reactor::run_worker(self.config.worker.clone(), intake, channel)
    }
    // ANCHOR_END: spawn

    // ANCHOR: pass
    /// The listener is readable (`pass` mode): accept until EAGAIN and hand
    /// each connection to the least-loaded worker.
    fn on_acceptable(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let Some(stream) = self.acceptor.next(listener) else {
                return;
            };
            self.pass(stream);
        }
    }

    /// Sends `stream` to the worker with the fewest live connections, then
    /// closes the master's copy (when `stream` is dropped at the end): from
    /// then on the worker's descriptor is the only one, and the master holds
    /// nothing per connection.
    fn pass(&mut self, stream: TcpStream) {
        let Some(i) = self.least_loaded() else {
            // No worker is ready (all are restarting): closing is the answer.
            return;
        };
        let w = &mut self.workers[i];
        let Some(channel) = w.channel.as_ref() else {
            return;
        };
        match sys::send_message(channel, &[message::CONN], Some(stream.as_fd())) {
            Ok(()) => {
                // Counted at once, not at the worker's next report, so a
                // burst spreads evenly instead of all going to one worker.
                w.live += 1;
                w.taken += 1;
            }
            // WouldBlock: the worker's channel is full (it is stuck or very
            // slow); closing this connection beats queueing it there.
            Err(e) => eprintln!("passing a connection to worker {i}: {e}"),
        }
    }

    /// The ready worker with the fewest live connections. Ties go to the
    /// one that has taken the fewest so far: with short connections every
    /// worker is often at zero, and "lowest index wins" would send every
    /// connection to worker 0 while the others sleep.
    fn least_loaded(&self) -> Option<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.ready && w.channel.is_some())
            .min_by_key(|(i, w)| (w.live, w.taken, *i))
            .map(|(i, _)| i)
    }
    // ANCHOR_END: pass

    /// A worker's channel is readable: READY, LOAD, or EOF.
    fn on_worker_message(&mut self, i: usize) {
        let mut buf = [0u8; 32];
        loop {
            let Some(w) = self.workers.get_mut(i) else {
                return; // stale: not a worker's token
            };
            let Some(channel) = w.channel.as_ref() else {
                return; // stale: the channel was closed earlier
            };
            match sys::recv_message(channel, &mut buf) {
                // EOF: the worker closed its end, so it is exiting. SIGCHLD
                // will reap it; stop watching the channel now.
                Ok(received) if received.len == 0 => {
                    if let Some(channel) = w.channel.take() {
                        let _ = self.poller.delete(&channel);
                    }
                    w.ready = false;
                    return;
                }
                Ok(received) => match buf[0] {
                    message::READY => w.ready = true,
                    message::LOAD => {
                        if let Some((live, taken)) = message::parse_load(&buf[..received.len]) {
                            w.live = live;
                            w.taken = taken;
                        }
                    }
                    _ => {}
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("worker {i} channel: {e}");
                    return;
                }
            }
        }
    }

    // ANCHOR: signals
    fn on_signals(&mut self) {
        let (mut child, mut stop, mut status) = (false, false, false);
        let drained = sys::drain_signal_fd(&self.signals, |signal| match signal {
            Signal::SIGCHLD => child = true,
            Signal::SIGTERM | Signal::SIGINT => stop = true,
            Signal::SIGUSR1 => status = true,
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
    }

    /// Reaps every exited worker (signals coalesce: one SIGCHLD may stand
    /// for several deaths, so loop until none is left) and schedules its
    /// replacement, or, when stopping, records how it ended. An unreaped
    /// child stays a zombie.
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
            let w = &mut self.workers[i];
            w.pid = None;
            w.ready = false;
            w.live = 0;
            if let Some(channel) = w.channel.take() {
                let _ = self.poller.delete(&channel);
            }
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
    /// them `GRACE` before SIGKILL.
    fn begin_stop(&mut self) {
        if self.stop_deadline.is_some() {
            return;
        }
        self.stop_deadline = Some(Instant::now() + GRACE);
        if let Some(listener) = self.listener.take() {
            let _ = self.poller.delete(&listener);
        }
        self.port_holder = None;
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

    /// SIGUSR1: one line on stdout, `workers PID:LIVE:TAKEN …`, after reading
    /// every pending load report so the figures are current.
    fn print_status(&mut self) {
        for i in 0..self.workers.len() {
            self.on_worker_message(i);
        }
        let line: Vec<String> = self
            .workers
            .iter()
            .map(|w| {
                let pid = w.pid.map_or(0, Pid::as_raw);
                format!("{pid}:{}:{}", w.live, w.taken)
            })
            .collect();
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "workers {}", line.join(" "));
        let _ = out.flush();
    }
}

const READ: Interest = Interest {
    read: true,
    write: false,
};
