//! The Reactor: one thread, one epoll instance, every socket non-blocking.
//! In this stage it is what each worker process runs; its connections come
//! from the master (`pass`) or from a listener (`shared`, `reuseport`), see
//! [`Intake`].
//!
//! The loop waits until the kernel says some sockets are *ready*, then
//! dispatches each event to the handler of the socket it is for; the handler
//! does the I/O itself, which cannot block because the socket is ready (and
//! non-blocking in case it is not). That is the Reactor pattern: the kernel
//! reports readiness, the application performs the I/O. (A Proactor is the
//! other way round: the application starts the I/O and the kernel reports
//! its completion; see the Reactor vs Proactor chapter.)

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use crate::accept::Acceptor;
use crate::channel::{Incoming, WorkerEnd};
use crate::conn::{Connection, Status};
use crate::poller::{Event, Events, Interest, Poller, Readiness, Token, Trigger};
use crate::sys::{self, Alarm};
use crate::timer_heap::{TimerHeap, TimerId};
use crate::trace;

/// The listener's token. Connection tokens are built from slab indices and
/// never reach this value.
const LISTENER: Token = Token(u64::MAX);
/// The signalfd: SIGTERM and SIGINT arrive as reads on it.
const SIGNALS: Token = Token(u64::MAX - 1);
/// The timerfd, armed for the nearest idle deadline.
const ALARM: Token = Token(u64::MAX - 2);
/// The channel to the master: passed connections arrive on it.
const CHANNEL: Token = Token(u64::MAX - 3);

/// Room for events per `epoll_wait`. More ready sockets than this are simply
/// reported by the next call.
const EVENTS_PER_WAIT: usize = 1024;

/// The listen backlog; the kernel caps it at `net.core.somaxconn`.
pub const BACKLOG: i32 = 1024;

/// Size of the shared read buffer.
const READ_BUF: usize = 64 * 1024;

/// What the Reactor is told on the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// How connection sockets are registered.
    pub trigger: Trigger,
    /// How the listening socket is registered.
    pub listen_trigger: Trigger,
    /// Connections past this many are accepted and closed at once.
    pub max_conns: usize,
    /// A connection with no read or write for this long is closed.
    pub idle_timeout: Duration,
}

// ANCHOR: intake
/// Where a worker's connections come from: the three dispatch modes.
pub enum Intake {
    /// `pass`: the master accepts and passes each connection over the
    /// channel; the worker has no listener at all.
    Passed,
    /// `shared`: the listener inherited from the master, which every worker
    /// watches and accepts from; with `exclusive`, registered with
    /// EPOLLEXCLUSIVE so a connection wakes one worker, not all.
    Shared {
        listener: TcpListener,
        exclusive: bool,
    },
    /// `reuseport`: the worker's own `SO_REUSEPORT` listener on the same
    /// address; the kernel picks a listener per connection.
    ReusePort { addr: SocketAddr },
}
// ANCHOR_END: intake

// ANCHOR: slot
/// A slab entry. `generation` grows each time the slot is reused and is part
/// of the token, so an event meant for a connection that was closed earlier
/// in the same batch (and whose slot was taken by a newer one) is recognised
/// as stale and ignored. nginx keeps one "instance" bit for the same reason.
struct Slot {
    generation: u32,
    conn: Option<Connection>,
    /// The connection's idle timer; set and cleared with `conn`.
    timer: Option<TimerId>,
}

fn token_of(index: usize, generation: u32) -> Token {
    Token((u64::from(generation) << 32) | index as u64)
}

fn split_token(token: Token) -> (usize, u32) {
    ((token.0 & 0xffff_ffff) as usize, (token.0 >> 32) as u32)
}
// ANCHOR_END: slot

/// The single-threaded echo server a worker runs.
pub struct Reactor {
    config: Config,
    /// `None` in `pass` mode: connections arrive on `channel`.
    listener: Option<TcpListener>,
    /// To the master. Passed connections arrive here; load reports leave
    /// here; EOF means the master is gone and the worker must stop.
    channel: WorkerEnd,
    /// Connections taken in so far, for the load reports.
    taken: u64,
    poller: Poller,
    /// Connections by slab index; `free` lists the empty slots.
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
    /// Accepts from `listener`, and sheds when out of descriptors.
    acceptor: Acceptor,
    scratch: Vec<u8>,
    /// One idle timer per connection, valued by the connection's token.
    timers: TimerHeap<Token>,
    /// Blocked SIGTERM and SIGINT, readable as events.
    signals: SignalFd,
    /// The timerfd, and the deadline it is armed for (`None`: disarmed or
    /// already fired).
    alarm: Alarm,
    armed_for: Option<Instant>,
    /// The time, read once per loop iteration after `epoll_wait` returns
    /// (nginx does the same): every event of a batch happened "now" as far
    /// as timers are concerned, and the clock is read once, not per event.
    now: Instant,
    /// Set by SIGTERM or SIGINT; the loop ends after the current batch.
    stopping: bool,
}

impl Reactor {
    /// Sets up a worker's loop, after the fork: the epoll instance is
    /// created here, in the worker, so that no two processes share one (an
    /// epoll instance inherited across fork is the *same* instance, and its
    /// events go to whichever process waits first). Tells the master it is
    /// ready. The loop starts with [`run`].
    ///
    /// [`run`]: Reactor::run
    pub fn new(config: Config, intake: Intake, channel: OwnedFd) -> io::Result<Reactor> {
        let poller = Poller::new()?;
        let read_only = Interest {
            read: true,
            write: false,
        };
        let listener = match intake {
            Intake::Passed => None,
            Intake::Shared {
                listener,
                exclusive: true,
            } => {
                poller.add_exclusive(&listener, LISTENER, config.listen_trigger)?;
                Some(listener)
            }
            Intake::Shared { listener, .. } => {
                poller.add(&listener, LISTENER, read_only, config.listen_trigger)?;
                Some(listener)
            }
            Intake::ReusePort { addr } => {
                let listener = sys::listen_reuseport(addr, BACKLOG)?;
                poller.add(&listener, LISTENER, read_only, config.listen_trigger)?;
                Some(listener)
            }
        };
        let channel = WorkerEnd::new(channel);
        poller.add(&channel, CHANNEL, read_only, Trigger::Level)?;
        sys::ignore_sigpipe()?;
        let signals = sys::signal_fd(&[Signal::SIGTERM, Signal::SIGINT])?;
        // Level-triggered: the loop reads both until they are empty anyway.
        poller.add(&signals, SIGNALS, read_only, Trigger::Level)?;
        let alarm = Alarm::new()?;
        poller.add(&alarm, ALARM, read_only, Trigger::Level)?;
        channel.ready()?;
        Ok(Reactor {
            config,
            listener,
            channel,
            taken: 0,
            poller,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            acceptor: Acceptor::new()?,
            scratch: vec![0; READ_BUF],
            timers: TimerHeap::new(),
            signals,
            alarm,
            armed_for: None,
            now: Instant::now(),
            stopping: false,
        })
    }

    // ANCHOR: run
    /// Runs the event loop until SIGTERM, SIGINT or the master's exit: arm
    /// the alarm for the nearest deadline, wait for readiness, dispatch each
    /// event (the alarm firing is one of them, and expires the due timers),
    /// report the load to the master if it changed.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        while !self.stopping {
            self.arm_alarm();
            // With --trace, the last turn's events are written before we sleep.
            trace::flush();
            match self.poller.wait(&mut events, None) {
                Ok(()) => {}
                // Signals are blocked, so this is rare (a debugger, SIGSTOP
                // and SIGCONT); nothing is lost, wait again.
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.now = Instant::now();
            for event in events.iter() {
                self.dispatch(event);
            }
            self.report_load();
        }
        self.shutdown();
        Ok(())
    }

    fn dispatch(&mut self, event: Event) {
        match event.token {
            LISTENER if !self.stopping => self.on_acceptable(),
            LISTENER => {}
            SIGNALS => self.on_signals(),
            ALARM => self.on_alarm(),
            CHANNEL => self.on_channel(),
            token => self.on_connection_event(token, event.readiness),
        }
    }
    // ANCHOR_END: run

    // ANCHOR: on_channel
    /// The master's channel is readable: batches of passed connections, or
    /// EOF. (Or writable, while a report waits for room: `report_load`
    /// sends it at the end of this iteration.)
    fn on_channel(&mut self) {
        loop {
            match self.channel.receive() {
                Ok(Incoming::Conns(streams)) => {
                    for stream in streams {
                        self.register(stream);
                    }
                }
                // EOF: the master is gone. A worker without a master would
                // serve on with nobody to restart it or stop it: stop now.
                Ok(Incoming::Closed) => {
                    self.stopping = true;
                    return;
                }
                Ok(Incoming::Other) => {}
                // Nothing more waiting.
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // The master died with a message of ours unread: as EOF.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    self.stopping = true;
                    return;
                }
                Err(e) => {
                    eprintln!("worker channel: {e}");
                    self.stopping = true;
                    return;
                }
            }
        }
    }

    /// Tells the master the current load, once per loop iteration at most
    /// and only when it changed: the master picks the least-loaded worker
    /// from these reports. A batch of connections passed together is
    /// registered in one iteration, so it costs one report, not one each.
    /// A report that finds the channel full waits for EPOLLOUT on it.
    fn report_load(&mut self) {
        self.channel
            .report(self.live, self.taken, &self.poller, CHANNEL);
    }
    // ANCHOR_END: on_channel

    // ANCHOR: signals
    /// The signalfd is readable: SIGTERM or SIGINT is pending.
    fn on_signals(&mut self) {
        let mut stop = false;
        let drained = sys::drain_signal_fd(&self.signals, |signal| {
            stop |= matches!(signal, Signal::SIGTERM | Signal::SIGINT);
        });
        if let Err(e) = drained {
            eprintln!("signalfd: {e}");
        }
        self.stopping |= stop;
    }
    // ANCHOR_END: signals

    // ANCHOR: alarm
    /// Keeps the timerfd armed for the nearest deadline, lazily.
    ///
    /// Re-arming on every change would cost a `timerfd_settime` per event,
    /// because activity on the connection at the top of the heap moves the
    /// nearest deadline later each time. So the alarm is re-armed only when
    /// the nearest deadline is *earlier* than what it is armed for. When the
    /// deadline moved later, the alarm fires early, expires nothing, and is
    /// re-armed here for the new nearest one: one spare wake-up at most per
    /// timeout, not a system call per event. With no timers at all, the
    /// alarm is disarmed and an idle server sleeps until something happens.
    fn arm_alarm(&mut self) {
        let result = match (self.timers.next_deadline(), self.armed_for) {
            (None, None) => Ok(()),
            (None, Some(_)) => {
                self.armed_for = None;
                self.alarm.disarm()
            }
            (Some(next), Some(armed)) if armed <= next => Ok(()),
            (Some(next), _) => {
                self.armed_for = Some(next);
                self.alarm
                    .arm(next.saturating_duration_since(Instant::now()))
            }
        };
        if let Err(e) = result {
            eprintln!("timerfd: {e}");
        }
    }

    /// The timerfd fired: expire what is due; `arm_alarm` sets the next one.
    fn on_alarm(&mut self) {
        self.alarm.acknowledge();
        self.armed_for = None;
        self.expire_timers();
    }
    // ANCHOR_END: alarm

    // ANCHOR: expire
    /// Closes every connection whose idle timer is due: pop the root while
    /// it is due, O(log n) each.
    fn expire_timers(&mut self) {
        while let Some(token) = self.timers.pop_expired(self.now) {
            let (index, generation) = split_token(token);
            if let Some(slot) = self.slots.get_mut(index)
                && slot.generation == generation
            {
                // The timer has already left the list.
                slot.timer = None;
                self.close(index);
            }
        }
    }

    // ANCHOR_END: expire

    /// Graceful shutdown: stop accepting, close every connection (each
    /// client sees EOF), and let `run` return so the process exits 0.
    fn shutdown(&mut self) {
        if let Some(listener) = &self.listener {
            let _ = self.poller.delete(listener);
        }
        for index in 0..self.slots.len() {
            self.close(index);
        }
    }

    // ANCHOR: accept
    /// The listener is readable: connections are waiting to be accepted.
    fn on_acceptable(&mut self) {
        let span = tracing::info_span!("accept", accepted = 0u64).entered();
        let mut accepted = 0u64;
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let Some(stream) = self.acceptor.next(listener) else {
                return;
            };
            accepted += 1;
            span.record("accepted", accepted);
            self.register(stream);
            // Level-triggered: one accept per event is enough; if more are
            // queued the listener is still readable and the next wait says
            // so. Edge-triggered: keep accepting until WouldBlock, or the
            // rest of a burst waits for a new connection to raise an edge.
            if self.config.listen_trigger == Trigger::Level {
                return;
            }
        }
    }
    // ANCHOR_END: accept

    fn register(&mut self, stream: TcpStream) {
        if self.live >= self.config.max_conns {
            // Over the limit: closing at once is the answer the client gets.
            return;
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                    timer: None,
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        let conn = Connection::new(stream);
        let token = token_of(index, slot.generation);
        // The timer starts now: a client that connects and says nothing is
        // closed after the idle timeout like any other.
        slot.timer = Some(
            self.timers
                .insert(self.now + self.config.idle_timeout, token),
        );
        if let Err(e) = self
            .poller
            .add(&conn.stream, token, conn.interest, self.config.trigger)
        {
            eprintln!("epoll add: {e}");
            if let Some(timer) = slot.timer.take() {
                self.timers.remove(timer);
            }
            self.free.push(index);
            return;
        }
        slot.conn = Some(conn);
        self.live += 1;
        self.taken += 1;
    }

    fn on_connection_event(&mut self, token: Token, readiness: Readiness) {
        let (index, generation) = split_token(token);
        let Some(slot) = self.slots.get_mut(index) else {
            return; // stale: never handed out
        };
        if slot.generation != generation {
            return; // stale: the slot now holds a newer connection
        }
        let Some(conn) = slot.conn.as_mut() else {
            return; // stale: closed earlier in this batch
        };
        let fd = conn.stream.0.as_raw_fd();
        let _span = tracing::info_span!("event", fd).entered();
        let status = conn.on_event(readiness, self.config.trigger, &mut self.scratch);
        // ANCHOR: touch
        // Any event is activity (a read, or a write the peer made room
        // for): push the idle timer back. With a heap this is one
        // O(log n) sift, paid on every event of every connection.
        if let (Some(timer), Status::Keep(_) | Status::Yield(_)) = (slot.timer, &status) {
            self.timers
                .adjust(timer, self.now + self.config.idle_timeout);
        }
        // ANCHOR_END: touch
        match status {
            Status::Keep(interest) if interest == conn.interest => {}
            // A new interest, or a yield that must re-arm the socket.
            Status::Keep(interest) | Status::Yield(interest) => {
                conn.interest = interest;
                if self
                    .poller
                    .modify(&conn.stream, token, interest, self.config.trigger)
                    .is_err()
                {
                    self.close(index);
                }
            }
            Status::Close => self.close(index),
        }
    }

    fn close(&mut self, index: usize) {
        if let Some(timer) = self.slots[index].timer.take() {
            self.timers.remove(timer);
        }
        if let Some(conn) = self.slots[index].conn.take() {
            // Deregister before the drop closes the socket.
            let _ = self.poller.delete(&conn.stream);
            self.free.push(index);
            self.live -= 1;
        }
    }
}

/// A worker process's whole life: set up the loop, run it, and return the
/// exit status for `process::exit`.
pub fn run_worker(config: Config, intake: Intake, channel: OwnedFd) -> i32 {
    let result = Reactor::new(config, intake, channel).and_then(|mut r| r.run());
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("worker {}: {e}", std::process::id());
            1
        }
    }
}
