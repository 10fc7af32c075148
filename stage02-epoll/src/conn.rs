//! One client connection: its socket, its pending output, and what to do
//! when the Reactor says the socket is ready.
//!
//! Handlers return a [`Status`] instead of closing anything themselves; the
//! Reactor owns the slab and the poller, so it alone removes a connection.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;

use crate::poller::{Interest, Readiness, Trigger};
use crate::trace::Traced;

// ANCHOR: high_water
/// Back-pressure bound. A client that sends but never reads fills its
/// connection's pending output; past this many bytes we stop reading from it
/// (drop read interest), the kernel's receive buffer fills, and TCP flow
/// control makes the client's own `write` block. Memory per connection stays
/// below this plus one read, however much the client tries to send, and the
/// loop spends no time on a client that cannot make progress.
pub const OUTPUT_HIGH_WATER: usize = 1 << 20;
// ANCHOR_END: high_water

// ANCHOR: budget
/// Reads one edge-triggered event may do before the connection yields.
///
/// "Read until EAGAIN" has a trap: a client that sends as fast as we echo
/// always has data waiting, so the drain never ends and every other client
/// starves (seen first under strace, which slows the server enough to make it
/// happen every time). So a drain stops after this many reads and the
/// Reactor re-arms the socket with `EPOLL_CTL_MOD`, which makes the next
/// `epoll_wait` report it again, after everybody else's events of this turn.
pub const READS_PER_EVENT: usize = 16;
// ANCHOR_END: budget

/// What a handler wants the Reactor to do with the connection next.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    /// Keep it, watching for this interest.
    Keep(Interest),
    /// Keep it, but it stopped with data possibly still waiting (its read
    /// budget ran out): re-arm it even if the interest is unchanged, so an
    /// edge-triggered registration reports it again.
    Yield(Interest),
    /// Deregister and close it.
    Close,
}

/// A connection's state. Created by the Reactor when `accept` returns it,
/// dropped by the Reactor when a handler returns [`Status::Close`]; dropping
/// closes the socket.
pub struct Connection {
    /// The socket; its reads and writes show on the timeline (`--trace`).
    pub stream: Traced,
    /// Bytes read but not yet echoed. `out[sent..]` is still to be written.
    out: Vec<u8>,
    sent: usize,
    /// Set when `read` returned 0: the client will send nothing more. We
    /// still owe it `out`; once that is written the connection closes.
    peer_closed: bool,
    /// What the poller currently watches, so the Reactor calls
    /// `epoll_ctl(MOD)` only when it changes.
    pub interest: Interest,
}

impl Connection {
    pub fn new(stream: TcpStream) -> Connection {
        Connection {
            stream: Traced(stream),
            out: Vec::new(),
            sent: 0,
            peer_closed: false,
            interest: Interest {
                read: true,
                write: false,
            },
        }
    }

    fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    // ANCHOR: on_event
    /// Handles one event for this connection. `scratch` is the Reactor's
    /// read buffer, shared by every connection because only one runs at once.
    pub fn on_event(&mut self, ready: Readiness, trigger: Trigger, scratch: &mut [u8]) -> Status {
        if ready.error {
            // EPOLLERR: typically a reset. Anything we might still read or
            // write would fail with the same error, so close now.
            return Status::Close;
        }
        // EPOLLRDHUP arrives with EPOLLIN set, but test both: the FIN must be
        // *read* (as a 0-byte read) after any data that came before it.
        let mut budget_spent = false;
        if ready.readable || ready.read_closed {
            match self.on_readable(trigger, scratch) {
                Ok(drained) => budget_spent = !drained,
                Err(_) => return Status::Close,
            }
        }
        if ready.writable && self.flush().is_err() {
            return Status::Close;
        }
        if ready.hangup && !ready.readable {
            // EPOLLHUP without data: both directions are shut; nothing we
            // hold can be delivered.
            return Status::Close;
        }
        match self.next_status() {
            Status::Keep(interest) if budget_spent => Status::Yield(interest),
            status => status,
        }
    }
    // ANCHOR_END: on_event

    // ANCHOR: on_readable
    /// Reads what the socket has and echoes it.
    ///
    /// Under [`Trigger::Edge`] this must drain: read until `WouldBlock`,
    /// because epoll will not report data that was already there when it
    /// last reported this socket. Under [`Trigger::Level`] one read per event
    /// is enough (and fairer to other clients): if more is waiting, the next
    /// `epoll_wait` says so again.
    ///
    /// Returns `Ok(false)` when an edge-triggered drain stopped because its
    /// [`READS_PER_EVENT`] budget ran out, `Ok(true)` otherwise.
    fn on_readable(&mut self, trigger: Trigger, scratch: &mut [u8]) -> io::Result<bool> {
        // LAB s2-drain BEGIN: LT: read once; ET: read to WouldBlock, within READS_PER_EVENT
        let mut reads = 0;
        loop {
            if self.peer_closed || self.pending() >= OUTPUT_HIGH_WATER {
                // Back-pressure: stop reading. `next_status` drops read
                // interest; under ET the later MOD that restores it re-checks
                // readiness, so data left in the socket is not forgotten.
                return Ok(true);
            }
            if reads == READS_PER_EVENT {
                return Ok(false);
            }
            reads += 1;
            match self.stream.read(scratch) {
                // EOF: the client half-closed. Echo what is pending, then close.
                Ok(0) => self.peer_closed = true,
                Ok(n) => {
                    self.out.extend_from_slice(&scratch[..n]);
                    self.flush()?;
                    if trigger == Trigger::Level {
                        return Ok(true);
                    }
                }
                // Drained: the edge-triggered contract is met.
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                // A signal interrupted the call; nothing was read, try again.
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ECONNRESET and the like: the client is gone.
                Err(e) => return Err(e),
            }
        }
        // LAB END
    }
    // ANCHOR_END: on_readable

    /// Writes as much pending output as the socket takes now.
    fn flush(&mut self) -> io::Result<()> {
        // LAB s2-drain BEGIN: write until all is sent or WouldBlock, then reclaim the buffer
        while self.pending() > 0 {
            match self.stream.write(&self.out[self.sent..]) {
                // A zero-length write on a stream socket means it cannot take
                // more; treat it as an error rather than loop on it.
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                // The send buffer is full: keep the rest, and let
                // `next_status` arm EPOLLOUT to hear when there is room.
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // EPIPE or ECONNRESET: the client is gone.
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.out.len() {
            // Everything went out: reuse the allocation from the start.
            self.out.clear();
            self.sent = 0;
        } else if self.sent > self.out.len() / 2 {
            // Mostly sent: move the tail down so the buffer does not creep.
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        Ok(())
        // LAB END
    }

    // ANCHOR: next_status
    /// The interest this connection needs now, or `Close` if it is done.
    ///
    /// EPOLLOUT is wanted only while output is pending: a socket with room
    /// in its send buffer is writable almost always, so a level-triggered
    /// EPOLLOUT left armed would wake the loop on every iteration for
    /// nothing.
    fn next_status(&self) -> Status {
        // LAB s2-drain BEGIN: read unless closed or past high water; write while output pends
        let interest = Interest {
            read: !self.peer_closed && self.pending() < OUTPUT_HIGH_WATER,
            write: self.pending() > 0,
        };
        if !interest.read && !interest.write {
            // The client closed its side and has all its bytes back.
            return Status::Close;
        }
        Status::Keep(interest)
        // LAB END
    }
    // ANCHOR_END: next_status
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    const READABLE: Readiness = Readiness {
        readable: true,
        writable: false,
        read_closed: false,
        hangup: false,
        error: false,
    };

    #[test]
    fn an_edge_triggered_drain_yields_when_its_budget_runs_out() {
        let (mut client, server) = pair();
        // 64 reads' worth with a 1 KiB buffer: more than one budget.
        client.write_all(&[7u8; 64 * 1024]).unwrap();
        let mut conn = Connection::new(server);
        let mut scratch = [0u8; 1024];
        let mut events = 0;
        loop {
            events += 1;
            match conn.on_event(READABLE, Trigger::Edge, &mut scratch) {
                Status::Yield(_) => continue,
                Status::Keep(_) => break,
                Status::Close => panic!("closed"),
            }
        }
        assert!(
            events == 64 / READS_PER_EVENT + 1,
            "64 reads' worth took {events} edge-triggered event(s), not {}: each event must \
             read until WouldBlock, and yield after READS_PER_EVENT ({READS_PER_EVENT}) reads",
            64 / READS_PER_EVENT + 1
        );
        let mut back = vec![0u8; 64 * 1024];
        client.read_exact(&mut back).unwrap();
        assert!(back.iter().all(|&b| b == 7));
    }

    /// Drives `conn` until `client` has its whole echo of `len` bytes
    /// back, as a loop that is told "readable and writable" every turn.
    /// The client stays open throughout: this echo has no EOF.
    fn echo_through(conn: &mut Connection, client: &TcpStream, len: usize) {
        let mut writer = client.try_clone().unwrap();
        let sender = std::thread::spawn(move || writer.write_all(&vec![5u8; len]).unwrap());
        let mut reader = client.try_clone().unwrap();
        let receiver = std::thread::spawn(move || {
            let mut back = vec![0u8; len];
            reader.read_exact(&mut back).map(|()| back.len())
        });
        let both = Readiness {
            writable: true,
            ..READABLE
        };
        let mut scratch = [0u8; 64 * 1024];
        while !receiver.is_finished() {
            let status = conn.on_event(both, Trigger::Edge, &mut scratch);
            assert!(status != Status::Close, "closed mid-echo");
        }
        assert_eq!(receiver.join().unwrap().unwrap(), len);
        sender.join().unwrap();
    }

    /// The client sends 512 KiB, half-closes and reads nothing. With both
    /// kernel buffers on the way back shrunk to a few KiB, most of the echo
    /// is still owed, in `out`, when the read returns 0.
    #[test]
    fn eof_with_output_owed_keeps_the_connection_to_write_it() {
        use nix::sys::socket::{setsockopt, sockopt};
        let (client, server) = pair();
        setsockopt(&client, sockopt::RcvBuf, &4096).unwrap();
        setsockopt(&server, sockopt::SndBuf, &4096).unwrap();
        let len = 512 * 1024;
        let mut writer = client.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            writer.write_all(&vec![3u8; len]).unwrap();
            writer.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut conn = Connection::new(server);
        let mut scratch = [0u8; 64 * 1024];
        let status = loop {
            let status = conn.on_event(READABLE, Trigger::Edge, &mut scratch);
            if conn.peer_closed || status == Status::Close {
                break status;
            }
        };
        sender.join().unwrap();
        let owed = conn.pending();
        assert!(owed > 0, "nothing was owed at EOF: the test proves nothing");
        assert!(
            status != Status::Close,
            "the connection closed on reading EOF with {owed} bytes of its echo still owed: \
             read returning 0 is the client's half-close, not an error; write what is owed, \
             then close"
        );
    }

    #[test]
    fn flushed_output_is_reclaimed() {
        let (client, server) = pair();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut conn = Connection::new(server);
        let len = 8 << 20;
        echo_through(&mut conn, &client, len);
        // Pending output stays under the high-water mark plus one read;
        // the allocation may be up to twice that (a Vec doubles).
        let bound = 2 * (OUTPUT_HIGH_WATER + 64 * 1024);
        assert!(
            conn.out.capacity() <= bound,
            "after an 8 MiB echo, all of it sent, the output buffer `out` holds {} bytes in an \
             allocation of {}: a flush must reclaim what it sent, or `out` keeps growing",
            conn.out.len(),
            conn.out.capacity()
        );
    }

    #[test]
    fn a_level_triggered_event_reads_once() {
        let (mut client, server) = pair();
        client.write_all(&[1u8; 4096]).unwrap();
        let mut conn = Connection::new(server);
        let mut scratch = [0u8; 1024];
        let status = conn.on_event(READABLE, Trigger::Level, &mut scratch);
        assert!(
            status
                == Status::Keep(Interest {
                    read: true,
                    write: false
                }),
            "with its echo all written, the connection asked for {status:?}, not to read only: \
             EPOLLOUT armed with nothing to send wakes a level-triggered loop on every turn"
        );
        let mut back = [0u8; 1024];
        client.read_exact(&mut back).unwrap();
        assert!(client.set_nonblocking(true).is_ok());
        assert!(
            client.read(&mut back).is_err(),
            "only one read's worth came back"
        );
    }
}
