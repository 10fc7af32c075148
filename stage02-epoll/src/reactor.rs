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

use crate::conn::{Connection, Status};
use crate::poller::{Event, Events, Interest, Poller, Readiness, Token, Trigger};
use crate::sys;
use crate::trace;

/// The listener's token. Connection tokens are built from slab indices and
/// never reach this value.
const LISTENER: Token = Token(u64::MAX);

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
}

// ANCHOR: slot
/// A slab entry. `generation` grows each time the slot is reused and is part
/// of the token, so an event meant for a connection that was closed earlier
/// in the same batch (and whose slot was taken by a newer one) is recognised
/// as stale and ignored. nginx keeps one "instance" bit for the same reason.
struct Slot {
    generation: u32,
    conn: Option<Connection>,
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
        Ok(Reactor {
            config,
            listener,
            poller,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            reserve: Some(open_reserve()?),
            scratch: vec![0; READ_BUF],
        })
    }

    /// The address actually bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    // ANCHOR: run
    /// Runs the event loop forever: wait for readiness, dispatch each event.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        loop {
            // With --trace, what the last turn recorded is written out now,
            // before the loop sleeps.
            trace::flush();
            match self.poller.wait(&mut events, None) {
                Ok(()) => {}
                // A signal interrupted the wait: nothing is lost, wait again.
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                self.dispatch(event);
            }
        }
    }

    fn dispatch(&mut self, event: Event) {
        if event.token == LISTENER {
            self.on_acceptable();
        } else {
            self.on_connection_event(event.token, event.readiness);
        }
    }
    // ANCHOR_END: run

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
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        let conn = Connection::new(stream);
        let token = token_of(index, slot.generation);
        if let Err(e) = self
            .poller
            .add(&conn.stream, token, conn.interest, self.config.trigger)
        {
            eprintln!("epoll add: {e}");
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
        // LAB s2-drain BEGIN: run the handler; MOD the poller on a new interest or a yield
        match conn.on_event(readiness, self.config.trigger, &mut self.scratch) {
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
        // LAB END
    }

    fn close(&mut self, index: usize) {
        if let Some(conn) = self.slots[index].conn.take() {
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
    use std::io::{Read, Write};
    use std::time::Duration;

    /// Under ET, a connection that yields (its read budget spent, data still
    /// waiting) gets no new edge from that data: only the re-arm,
    /// `EPOLL_CTL_MOD`, makes epoll report it again. With the read buffer
    /// shrunk to 1 KiB, 48 KiB sent at once is three budgets' worth; the
    /// client then neither sends more nor closes, so nothing else raises an
    /// edge, and every turn of the loop is driven by hand.
    #[test]
    fn a_yield_rearms_the_socket_so_the_rest_is_read() {
        let config = Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            trigger: Trigger::Edge,
            listen_trigger: Trigger::Edge,
            max_conns: 16,
        };
        let mut reactor = Reactor::bind(config).unwrap();
        reactor.scratch = vec![0; 1024];
        let mut client = TcpStream::connect(reactor.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let len = 48 * 1024;
        client.write_all(&vec![9u8; len]).unwrap();

        // Turns of the loop until a wait reports nothing: every event the
        // kernel had to report has been handled.
        let mut events = Events::with_capacity(16);
        for turn in 0.. {
            assert!(turn < 1000, "the loop never went quiet");
            reactor
                .poller
                .wait(&mut events, Some(Duration::from_millis(500)))
                .unwrap();
            if events.iter().next().is_none() {
                break;
            }
            for event in events.iter() {
                reactor.dispatch(event);
            }
        }
        let conn = reactor.slots[0]
            .conn
            .as_ref()
            .expect("the connection was closed");
        let mut rest = vec![0u8; len];
        let unread = conn.stream.0.peek(&mut rest).unwrap_or(0);
        assert!(
            unread == 0,
            "the connection yielded with {unread} of {len} bytes unread in its socket, and epoll \
             never reported it again: a yield must re-arm the socket with EPOLL_CTL_MOD, since \
             under ET no new edge comes for data already there"
        );
        let mut back = vec![0u8; len];
        client.read_exact(&mut back).unwrap();
        assert!(back.iter().all(|&b| b == 9), "echo differs");
    }
}
