//! The worker shell: everything a worker does that is not a connection's
//! I/O, written once for the three models. It owns the listener (or the
//! master's channel that brings connections), the signalfd, the timerfd
//! and the timer heap, the connection slots, and the [`Resources`] that
//! sessions borrow; a driver owns a shell and calls it.
//!
//! The shell knows nothing of a connection's state: a slot holds whatever
//! the model keeps there (`S`, each driver's `Place`: where the connection
//! is), and `S::default()` is the empty slot.

use std::io::{self, ErrorKind};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use super::Config;
use crate::accept::{Acceptor, Refused};
use crate::channel::{Incoming, WorkerEnd};
use crate::file_cache::FileCache;
use crate::http::date::DateCache;
use crate::http::session::{Env, Exchange};
use crate::log::AccessLog;
use crate::poller::{Interest, Poller, Token, Trigger};
use crate::pool::Pools;
use crate::sys::{self, Alarm, Root};
use crate::timer_heap::{TimerHeap, TimerId};

/// The listener's token. Connection tokens are built from slot indices and
/// never reach these values.
pub const LISTENER: Token = Token(u64::MAX);
/// The signalfd: SIGTERM and SIGINT arrive as reads on it.
pub const SIGNALS: Token = Token(u64::MAX - 1);
/// The timerfd, armed for the nearest deadline.
pub const ALARM: Token = Token(u64::MAX - 2);
/// The channel to the master: passed connections arrive on it.
pub const CHANNEL: Token = Token(u64::MAX - 3);

/// What the worker's own descriptors are watched for.
pub const READ: Interest = Interest {
    read: true,
    write: false,
};

// ANCHOR: slot
/// A connection slot. `generation` grows each time the slot is reused and is
/// part of the token, so an event meant for a connection that was closed
/// earlier in the same batch (and whose slot was taken by a newer one) is
/// recognised as stale and ignored. nginx keeps one "instance" bit for the
/// same reason.
#[derive(Default)]
pub struct Slot<S> {
    generation: u32,
    /// The connection's timer; set while the slot is taken.
    timer: Option<TimerId>,
    /// What the model keeps for the connection.
    pub state: S,
}

fn token_of(index: usize, generation: u32) -> Token {
    Token((u64::from(generation) << 32) | index as u64)
}

fn split_token(token: Token) -> (usize, u32) {
    ((token.0 & 0xffff_ffff) as usize, (token.0 >> 32) as u32)
}
// ANCHOR_END: slot

/// Everything of a worker but its connections' I/O.
pub struct Shell<S> {
    pub config: Config,
    /// Given under `shared` and `reuseport`; `None` under `pass`
    /// (connections arrive on `channel`), and once stopping has begun.
    listener: Option<TcpListener>,
    /// `shared` or `reuseport`: the worker accepts for itself, and the
    /// master, which chooses no worker, needs no load reports.
    listener_mode: bool,
    acceptor: Acceptor,
    /// To the master. Passed connections arrive here; load reports leave
    /// here; EOF means the master is gone and the worker must stop.
    channel: WorkerEnd,
    /// When a load report that found the channel full is tried again: a
    /// deadline like the connections', so an idle worker still sends it.
    report_due: Option<Instant>,
    /// The connection slots, every one allocated before the first client;
    /// `free` lists the empty ones.
    pub slots: Vec<Slot<S>>,
    free: Vec<usize>,
    live: usize,
    /// Connections taken in so far.
    taken: u64,
    /// One timer per connection, valued by the connection's token.
    timers: TimerHeap<Token>,
    /// Connections refused with 503 (no free slot), lingering.
    refused: Refused,
    /// Blocked SIGTERM and SIGINT, readable as events.
    signals: SignalFd,
    /// The timerfd, and the deadline it is armed for (`None`: disarmed or
    /// already fired).
    alarm: Alarm,
    armed_for: Option<Instant>,
    /// After SIGTERM: when the loop stops, finished or not.
    drain_until: Option<Instant>,
    pub res: Resources,
}

impl<S: Default> Shell<S> {
    /// Sets up a worker, after the fork: its signalfd and timerfd, its
    /// [`Resources`], and every connection slot. The driver registers the
    /// descriptors with its poller or ring, then calls [`Shell::ready`].
    pub fn new(
        config: Config,
        listener: Option<TcpListener>,
        channel: OwnedFd,
    ) -> io::Result<Shell<S>> {
        sys::ignore_sigpipe()?;
        Ok(Shell {
            signals: sys::signal_fd(&[Signal::SIGTERM, Signal::SIGINT])?,
            res: Resources::new(&config)?,
            listener_mode: listener.is_some(),
            listener,
            acceptor: Acceptor::new()?,
            channel: WorkerEnd::new(channel),
            report_due: None,
            slots: (0..config.max_conns).map(|_| Slot::default()).collect(),
            free: (0..config.max_conns).rev().collect(),
            live: 0,
            taken: 0,
            timers: TimerHeap::new(),
            refused: Refused::default(),
            alarm: Alarm::new()?,
            armed_for: None,
            drain_until: None,
            config,
        })
    }

    /// Registers the worker's own descriptors with epoll (the Reactor
    /// models), level-triggered but for the listener (`--listen-trigger`).
    pub fn watch(&self, poller: &Poller) -> io::Result<()> {
        let trigger = self.config.listen_trigger;
        match &self.listener {
            Some(listener) if self.config.exclusive => {
                poller.add_exclusive(listener, LISTENER, trigger)?
            }
            Some(listener) => poller.add(listener, LISTENER, READ, trigger)?,
            None => {}
        }
        poller.add(&self.channel, CHANNEL, READ, Trigger::Level)?;
        poller.add(&self.signals, SIGNALS, READ, Trigger::Level)?;
        poller.add(&self.alarm, ALARM, READ, Trigger::Level)
    }

    /// The descriptor behind one of the worker's own tokens, for io_uring.
    pub fn own_fd(&self, token: Token) -> Option<BorrowedFd<'_>> {
        match token {
            SIGNALS => Some(self.signals.as_fd()),
            ALARM => Some(self.alarm.as_fd()),
            CHANNEL => Some(self.channel.as_fd()),
            _ => None,
        }
    }

    /// The listener, while the worker accepts for itself.
    pub fn listener(&self) -> Option<&TcpListener> {
        self.listener.as_ref()
    }

    /// Tells the master this worker is ready for connections.
    pub fn ready(&self) -> io::Result<()> {
        self.channel.ready()
    }

    // ANCHOR: admit
    /// Takes a free slot for `stream` and gives it back with the slot, or
    /// refuses it with 503 when every slot is taken.
    pub fn admit(&mut self, stream: TcpStream) -> Option<(usize, Token, TcpStream)> {
        let Some(index) = self.free.pop() else {
            self.refused
                .refuse(stream, self.res.date.current(), self.res.now);
            return None;
        };
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        self.live += 1;
        self.taken += 1;
        Some((index, token_of(index, slot.generation), stream))
    }
    // ANCHOR_END: admit

    /// The slot an event's token is for, unless the token is stale: the
    /// slot was reused by a newer connection. (A slot that was freed and not
    /// reused keeps its generation: its state, empty, says so.)
    pub fn find(&self, token: Token) -> Option<usize> {
        let (index, generation) = split_token(token);
        let slot = self.slots.get(index)?;
        (slot.generation == generation).then_some(index)
    }

    /// The token of the connection in slot `index` now.
    pub fn token(&self, index: usize) -> Token {
        token_of(index, self.slots[index].generation)
    }

    // ANCHOR: touch
    /// Sets the connection's timer to `deadline`: its session's deadline
    /// depends on its phase (header timeout, keep-alive timeout, linger),
    /// so this runs after every event, one O(log n) sift.
    pub fn set_deadline(&mut self, index: usize, deadline: Instant) {
        let token = self.token(index);
        let slot = &mut self.slots[index];
        match slot.timer {
            Some(timer) => self.timers.adjust(timer, deadline),
            None => slot.timer = Some(self.timers.insert(deadline, token)),
        }
    }
    // ANCHOR_END: touch

    /// The slot is empty again: its timer goes, its state is reset.
    pub fn release(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if let Some(timer) = slot.timer.take() {
            self.timers.remove(timer);
        }
        slot.state = S::default();
        self.free.push(index);
        self.live -= 1;
    }

    // ANCHOR: alarm
    /// Keeps the timerfd armed for the nearest deadline, lazily: re-armed
    /// only when that is *earlier* than what it is armed for. Re-arming on
    /// every change would cost a `timerfd_settime` per event (activity on
    /// the connection at the top of the heap moves the nearest deadline
    /// later each time); armed too early, the alarm fires, expires nothing
    /// and is re-armed here: one spare wake-up at most per timeout. With no
    /// deadline it is disarmed, and an idle worker sleeps.
    pub fn arm_alarm(&mut self) {
        let next = [
            self.timers.next_deadline(),
            self.drain_until,
            self.refused.next_deadline(),
            self.report_due,
        ]
        .into_iter()
        .flatten()
        .min();
        let result = match (next, self.armed_for) {
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

    /// The timerfd fired: the slots whose deadline has passed go into `due`
    /// (their timers have left the heap); `arm_alarm` sets the next one.
    pub fn on_alarm(&mut self, due: &mut Vec<usize>) {
        self.alarm.acknowledge();
        self.armed_for = None;
        self.refused.close_due(self.res.now);
        while let Some(token) = self.timers.pop_expired(self.res.now) {
            let (index, generation) = split_token(token);
            if let Some(slot) = self.slots.get_mut(index)
                && slot.generation == generation
            {
                slot.timer = None;
                due.push(index);
            }
        }
    }
    // ANCHOR_END: alarm

    // ANCHOR: on_own
    /// An event on one of the worker's own descriptors: accepted or passed
    /// connections go into `incoming`; the answer says what the driver does.
    pub fn on_own(&mut self, token: Token, incoming: &mut Vec<TcpStream>) -> Own {
        match token {
            LISTENER => self.accept(incoming),
            CHANNEL if !self.on_channel(incoming) => return Own::Stop,
            SIGNALS if self.on_signals() => return Own::Stop,
            ALARM => return Own::Expire,
            _ => {}
        }
        Own::Done
    }
    // ANCHOR_END: on_own

    /// The signalfd is readable: true if SIGTERM or SIGINT was pending.
    fn on_signals(&mut self) -> bool {
        let mut stop = false;
        let drained = sys::drain_signal_fd(&self.signals, |signal| {
            stop |= matches!(signal, Signal::SIGTERM | Signal::SIGINT);
        });
        if let Err(e) = drained {
            eprintln!("signalfd: {e}");
        }
        stop
    }

    // ANCHOR: stop
    /// SIGTERM, SIGINT or the master's exit: stop taking connections and
    /// give the busy ones the grace period; the driver closes the idle ones.
    /// Returns the listener, for the driver to unregister before dropping it
    /// (a listener shared with other processes stays registered while any
    /// of them holds it).
    pub fn begin_stop(&mut self) -> Option<TcpListener> {
        if self.res.stopping {
            return None;
        }
        self.res.stopping = true;
        self.drain_until = Some(self.res.now + self.config.grace);
        self.listener.take()
    }

    /// Stopping, and every connection done or the grace period over.
    pub fn finished(&self) -> bool {
        self.res.stopping && (self.live == 0 || self.drain_until.is_some_and(|t| self.res.now >= t))
    }
    // ANCHOR_END: stop

    // ANCHOR: on_channel
    /// The master's channel is readable: passed connections go into
    /// `incoming`. False when the master is gone: the worker must stop. One
    /// message per event: the channel is level-triggered (polled again under
    /// io_uring), so the next wait reports a second; reading on to EAGAIN,
    /// as stage05 does, costs a `recvmsg` per wake-up, mostly for nothing.
    fn on_channel(&mut self, incoming: &mut Vec<TcpStream>) -> bool {
        loop {
            match self.channel.receive() {
                Ok(Incoming::Conns(streams)) => {
                    incoming.extend(streams);
                    return true;
                }
                // EOF: the master is gone. A worker without a master would
                // serve on with nobody to restart it or stop it.
                Ok(Incoming::Closed) => return false,
                Ok(Incoming::Other) => return true,
                // Nothing waiting after all.
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // The master died with a message of ours unread: as EOF.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return false,
                Err(e) => {
                    eprintln!("worker channel: {e}");
                    return false;
                }
            }
        }
    }

    /// Tells the master the current load, once per loop iteration, under
    /// `pass` (where the master chooses): sent when it changed, or, if the
    /// channel was full, tried again at `report_due`.
    pub fn report_load(&mut self) {
        if self.listener_mode {
            return;
        }
        self.report_due = self.channel.report(self.live, self.taken, self.res.now);
    }
    // ANCHOR_END: on_channel

    // ANCHOR: accept
    /// The listener is readable: accept into `incoming` until the queue is
    /// empty (edge-triggered), or one (level-triggered: the next wait
    /// reports the rest). Out of descriptors, the acceptor sheds.
    fn accept(&mut self, incoming: &mut Vec<TcpStream>) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        while let Some(stream) = self.acceptor.next(listener) {
            incoming.push(stream);
            if self.config.listen_trigger == Trigger::Level {
                return;
            }
        }
    }
    // ANCHOR_END: accept
}

/// What a worker lends its sessions: the root and the open-file cache, the
/// buffer pools, the access log, the clock and the `Date` value. A field of
/// the shell of its own, so that lending it (`env`) borrows nothing else:
/// the connection being served sits in another field, `slots`.
pub struct Resources {
    pub root: Arc<Root>,
    pub files: FileCache,
    pub pools: Pools,
    pub log: Option<Arc<AccessLog>>,
    /// The time, read once per loop iteration after the wait (as nginx
    /// does): every event of a batch happens "now", for one clock read.
    pub now: Instant,
    pub date: DateCache,
    /// SIGTERM, SIGINT or the master's exit: finish, keep nothing alive.
    pub stopping: bool,
    pub max_body: u64,
}

impl Resources {
    /// What a session may use for one call.
    pub fn env(&mut self) -> Env<'_> {
        Env {
            now: self.now,
            date: self.date.current(),
            pools: &mut self.pools,
            max_body: self.max_body,
            stopping: self.stopping,
            logging: self.log.is_some(),
        }
    }

    /// Reads the clock, once per loop iteration, after the wait.
    pub(super) fn tick(&mut self) {
        self.now = Instant::now();
        self.date.refresh();
    }

    /// Writes one access-log line for a finished exchange (when logging).
    pub fn log(&self, stream: &TcpStream, exchange: Exchange) {
        if let Some(log) = &self.log {
            let peer = stream.peer_addr().ok().map(|a| a.ip());
            log.record(peer, &exchange, SystemTime::now());
        }
    }
}

/// What an event on one of the worker's own descriptors asks of its driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Own {
    /// Nothing more (new connections, if any, are in `incoming`).
    Done,
    /// SIGTERM, SIGINT or the master's exit: stop.
    Stop,
    /// The timerfd fired: expire what is due (`on_alarm`).
    Expire,
}
