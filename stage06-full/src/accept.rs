//! Taking connections off a listener, and turning away those that cannot
//! be served: [`Acceptor`], an accept loop's expected conditions and
//! stage02's reserve descriptor, and [`Refused`], a worker's 503s when
//! every slot is taken, lingering so that the answer is not lost.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::http::response;
use crate::sys;

/// Accepts connections, and sheds them when out of descriptors. Created by
/// whoever owns a listener (the master under `pass`, a worker's shell under
/// `shared` and `reuseport`), and dropped with it.
pub struct Acceptor {
    /// A descriptor kept open for the moment the process runs out (EMFILE):
    /// see [`Acceptor::shed_one`]. `None` only while it is in use, or if it
    /// could not be reopened.
    reserve: Option<File>,
}

impl Acceptor {
    pub fn new() -> io::Result<Acceptor> {
        Ok(Acceptor {
            reserve: Some(open_reserve()?),
        })
    }

    /// The reserve descriptor, so a forked worker can close the master's.
    pub fn reserve_fd(&self) -> Option<RawFd> {
        self.reserve.as_ref().map(File::as_raw_fd)
    }

    // ANCHOR: next
    /// The next connection waiting on `listener`, or `None` when there is
    /// nothing more to take now: the queue is empty, or the process cannot
    /// shed, or `accept` failed in a way retrying will not fix (logged).
    pub fn next(&mut self, listener: &TcpListener) -> Option<TcpStream> {
        loop {
            match sys::accept_nonblocking(listener) {
                Ok(stream) => return Some(stream),
                // The queue is empty: under ET this is the drain's end.
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                // A signal arrived first; nothing was accepted, try again.
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // The client gave up between handshake and accept; next.
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(e) if sys::is_out_of_descriptors(&e) => {
                    if !self.shed_one(listener) {
                        return None;
                    }
                }
                Err(e) => {
                    eprintln!("accept: {e}");
                    return None;
                }
            }
        }
    }
    // ANCHOR_END: next

    // ANCHOR: shed
    /// Out of descriptors with connections still queued. Doing nothing is
    /// not an option: under LT the listener stays readable and the loop
    /// would spin at 100% CPU; under ET the queued clients would hang
    /// forever. So free the reserve descriptor, accept the connection with
    /// it and close it at once (a clear answer), then take the reserve
    /// back. False if that was impossible.
    fn shed_one(&mut self, listener: &TcpListener) -> bool {
        drop(self.reserve.take());
        // The accepted stream, if any, is a temporary: closed at once.
        let shed = sys::accept_nonblocking(listener).is_ok();
        self.reserve = open_reserve().ok();
        shed
    }
    // ANCHOR_END: shed
}

fn open_reserve() -> io::Result<File> {
    File::open("/dev/null")
}

/// At most this many refused connections linger at once; past it, one is
/// closed at once (and may be reset). Each holds a descriptor.
const MAX_LINGERING: usize = 64;
/// How long a refused connection lingers.
const LINGER: Duration = Duration::from_secs(2);

// ANCHOR: refused
/// Closing a socket whose request is still unread makes the kernel send a
/// reset, which can destroy the 503 before the client has read it. So a
/// refused connection gets the 503 in one best-effort write (it fits an
/// empty socket buffer), its sending side is shut down, and it is kept,
/// without a slot, for `LINGER`; then what it sent is read and it is
/// closed with a FIN, as nginx closes whenever the client may still be
/// sending (`ngx_http_set_lingering_close`, src/http/ngx_http_request.c).
///
/// The refused connections, oldest first, each with the end of its linger.
#[derive(Default)]
pub struct Refused {
    lingering: VecDeque<(TcpStream, Instant)>,
}

impl Refused {
    /// Answers `stream` with 503 and lets it linger.
    pub fn refuse(&mut self, stream: TcpStream, date: &str, now: Instant) {
        let _ = (&stream).write(&response::complete(503, date));
        let _ = stream.shutdown(Shutdown::Write);
        if self.lingering.len() < MAX_LINGERING {
            self.lingering.push_back((stream, now + LINGER));
        }
    }

    /// When the oldest linger ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lingering.front().map(|(_, until)| *until)
    }

    /// Closes the connections whose linger is over, after reading what they
    /// sent (so the close is a FIN, not a reset).
    pub fn close_due(&mut self, now: Instant) {
        while let Some((stream, until)) = self.lingering.front() {
            if *until > now {
                return;
            }
            let mut sink = [0u8; 4096];
            // Bounded: a client that sends for ever gets its reset.
            for _ in 0..64 {
                match (&*stream).read(&mut sink) {
                    Ok(n) if n > 0 => continue,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // EOF, EAGAIN (drained) or an error: done.
                    _ => break,
                }
            }
            self.lingering.pop_front();
        }
    }
}
// ANCHOR_END: refused
