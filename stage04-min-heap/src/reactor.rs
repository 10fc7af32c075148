//! The Reactor: one thread, one epoll instance, every socket non-blocking.
//!
//! The loop waits until the kernel says some sockets are *ready*, then
//! dispatches each event to the handler of the socket it is for; the handler
//! does the I/O itself, which cannot block because the socket is ready (and
//! non-blocking in case it is not). That is the Reactor pattern: the kernel
//! reports readiness, the application performs the I/O. (A Proactor is the
//! other way round: the application starts the I/O and the kernel reports
//! its completion; see the Reactor vs Proactor chapter.)

use std::fs::File;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

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

/// Room for events per `epoll_wait`. More ready sockets than this are simply
/// reported by the next call.
const EVENTS_PER_WAIT: usize = 1024;

/// The listen backlog; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 1024;

/// Size of the shared read buffer.
const READ_BUF: usize = 64 * 1024;

/// What the Reactor is told on the command line.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    /// How connection sockets are registered.
    pub trigger: Trigger,
    /// How the listening socket is registered.
    pub listen_trigger: Trigger,
    /// Connections past this many are accepted and closed at once.
    pub max_conns: usize,
    /// A connection with no read or write for this long is closed.
    pub idle_timeout: Duration,
}

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

/// The single-threaded echo server.
pub struct Reactor {
    config: Config,
    listener: TcpListener,
    poller: Poller,
    /// Connections by slab index; `free` lists the empty slots.
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
    /// An open descriptor kept in reserve for the moment the process runs out
    /// (EMFILE): see [`Reactor::shed_one`]. `None` only while it is in use.
    reserve: Option<File>,
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
    /// Binds the listener and registers it. The loop starts with [`run`].
    ///
    /// [`run`]: Reactor::run
    pub fn bind(config: Config) -> io::Result<Reactor> {
        let listener = sys::listen_nonblocking(config.addr, BACKLOG)?;
        let poller = Poller::new()?;
        let read_only = Interest {
            read: true,
            write: false,
        };
        poller.add(&listener, LISTENER, read_only, config.listen_trigger)?;
        sys::ignore_sigpipe()?;
        let signals = sys::signal_fd(&[Signal::SIGTERM, Signal::SIGINT])?;
        // Level-triggered: the loop reads both until they are empty anyway.
        poller.add(&signals, SIGNALS, read_only, Trigger::Level)?;
        let alarm = Alarm::new()?;
        poller.add(&alarm, ALARM, read_only, Trigger::Level)?;
        Ok(Reactor {
            config,
            listener,
            poller,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            reserve: Some(open_reserve()?),
            scratch: vec![0; READ_BUF],
            timers: TimerHeap::new(),
            signals,
            alarm,
            armed_for: None,
            now: Instant::now(),
            stopping: false,
        })
    }

    /// The address actually bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    // ANCHOR: run
    /// Runs the event loop until SIGTERM or SIGINT: arm the alarm for the
    /// nearest deadline, wait for readiness, dispatch each event (the alarm
    /// firing is one of them, and expires the due timers).
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        while !self.stopping {
            self.arm_alarm();
            // With --trace, what the last turn recorded is written out now,
            // before the loop sleeps.
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
            token => self.on_connection_event(token, event.readiness),
        }
    }
    // ANCHOR_END: run

    // ANCHOR: signals
    /// The signalfd is readable: SIGTERM or SIGINT is pending.
    fn on_signals(&mut self) {
        let mut stop = false;
        let mut count = 0u64;
        let span = tracing::info_span!("signals", count = tracing::field::Empty).entered();
        let drained = sys::drain_signal_fd(&self.signals, |signal| {
            count += 1;
            stop |= matches!(signal, Signal::SIGTERM | Signal::SIGINT);
        });
        span.record("count", count);
        drop(span);
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
                let _span = tracing::info_span!("timerfd_settime", disarm = true).entered();
                self.alarm.disarm()
            }
            (Some(next), Some(armed)) if armed <= next => Ok(()),
            (Some(next), _) => {
                self.armed_for = Some(next);
                let after = next.saturating_duration_since(Instant::now());
                let after_us = after.as_micros() as u64;
                let _span = tracing::info_span!("timerfd_settime", after_us).entered();
                self.alarm.arm(after)
            }
        };
        if let Err(e) = result {
            eprintln!("timerfd: {e}");
        }
    }

    /// The timerfd fired: expire what is due; `arm_alarm` sets the next one.
    fn on_alarm(&mut self) {
        let _span = tracing::info_span!("timerfd").entered();
        self.alarm.acknowledge();
        self.armed_for = None;
        self.expire_timers();
    }
    // ANCHOR_END: alarm

    // ANCHOR: expire
    /// Closes every connection whose idle timer is due: pop the root while
    /// it is due, O(log n) each.
    fn expire_timers(&mut self) {
        // LAB s4-heap BEGIN: pop what is due; close its slot unless the generation moved on
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
        // LAB END
    }

    // ANCHOR_END: expire

    /// Graceful shutdown: stop accepting, close every connection (each
    /// client sees EOF), and let `run` return so the process exits 0.
    fn shutdown(&mut self) {
        let _ = self.poller.delete(&self.listener);
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
            match sys::accept_nonblocking(&self.listener) {
                Ok(stream) => {
                    accepted += 1;
                    span.record("accepted", accepted);
                    self.register(stream);
                }
                // The queue is empty: under ET this is the drain's end.
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // The client gave up between handshake and accept; next.
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(e) if sys::is_out_of_descriptors(&e) => {
                    if !self.shed_one() {
                        return;
                    }
                }
                Err(e) => {
                    eprintln!("accept: {e}");
                    return;
                }
            }
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

    // ANCHOR: shed
    /// Out of descriptors with connections still queued. Doing nothing is
    /// not an option: under LT the listener stays readable and the loop would
    /// spin at 100% CPU; under ET the queued clients would hang forever. So
    /// free the reserve descriptor, accept the connection with it and close
    /// it at once (the client sees the connection closed, a clear answer),
    /// then take the reserve back. Returns false if that was impossible.
    fn shed_one(&mut self) -> bool {
        drop(self.reserve.take());
        let shed = match sys::accept_nonblocking(&self.listener) {
            Ok(stream) => {
                drop(stream);
                true
            }
            Err(_) => false,
        };
        self.reserve = open_reserve().ok();
        shed
    }
    // ANCHOR_END: shed

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
        // `expire_timers` pops a due timer off the heap before it closes the
        // slot: a connection closed with no timer left is closed by its
        // timer. (The `expire` span is here, not there, so that it shows
        // whoever writes `expire_timers`: the s4-heap lab.)
        let expired = self.slots[index].timer.is_none();
        if let Some(timer) = self.slots[index].timer.take() {
            self.timers.remove(timer);
        }
        if let Some(conn) = self.slots[index].conn.take() {
            let fd = conn.stream.0.as_raw_fd();
            let _span = expired.then(|| tracing::info_span!("expire", fd).entered());
            // Deregister before the drop closes the socket.
            let _ = self.poller.delete(&conn.stream);
            self.free.push(index);
            self.live -= 1;
        }
    }
}

fn open_reserve() -> io::Result<File> {
    File::open("/dev/null")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generation token: a slot's index and generation come back out of
    /// its token, and a reused slot (a new generation) gets a new token, so
    /// an event or a timer left by the slot's previous connection is told
    /// apart from the new one's.
    #[test]
    fn a_token_round_trips_and_a_reused_slot_gets_a_new_one() {
        for (index, generation) in [(0, 1), (7, 3), (65_535, u32::MAX)] {
            let token = token_of(index, generation);
            assert_eq!(split_token(token), (index, generation), "{token:?}");
        }
        assert_ne!(token_of(5, 1), token_of(5, 2), "same slot, new connection");
        assert_ne!(
            token_of(5, 1),
            token_of(6, 1),
            "same generation, other slot"
        );
        for fixed in [LISTENER, SIGNALS, ALARM] {
            assert_ne!(token_of(0, 1), fixed);
            assert_ne!(token_of(1 << 20, u32::MAX), fixed);
        }
    }

    /// A Reactor on a free port, with a long idle timeout: only the timers
    /// a test sets expire.
    fn reactor() -> Reactor {
        Reactor::bind(Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            trigger: Trigger::Level,
            listen_trigger: Trigger::Level,
            max_conns: 10,
            idle_timeout: Duration::from_secs(60),
        })
        .unwrap()
    }

    /// A connection's server end, registered as `accept` would have it;
    /// the client end is returned to keep it open.
    fn connect(reactor: &mut Reactor, listener: &TcpListener) -> TcpStream {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        reactor.register(server);
        client
    }

    /// `close` removes a connection's timer, so in this Reactor no timer
    /// outlives its connection; `expire_timers` checks the generation all
    /// the same, as `on_connection_event` does for events: a timer left by
    /// a slot's previous connection (say, by a later `close` path that
    /// forgets it) must not close the connection that holds the slot now.
    /// The test leaves such a timer by hand.
    #[test]
    fn an_expired_timer_of_a_slot_s_previous_connection_leaves_the_new_one_open() {
        let mut reactor = reactor();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _first = connect(&mut reactor, &listener);
        let stale = token_of(0, reactor.slots[0].generation);
        reactor.close(0);
        let _second = connect(&mut reactor, &listener);
        assert_eq!(
            reactor.slots[0].generation, 2,
            "the second connection reuses slot 0"
        );
        // The first connection's timer, still in the heap and due now.
        reactor.timers.insert(reactor.now, stale);
        reactor.expire_timers();
        assert!(
            reactor.slots[0].conn.is_some(),
            "a stale timer (generation 1) closed slot 0's new connection (generation 2): \
             expire_timers must close a slot only if the generation still matches"
        );
        assert_eq!(
            reactor.timers.len(),
            1,
            "the new connection keeps its own timer"
        );
    }
}
