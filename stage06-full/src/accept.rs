//! Taking connections off a listener, for the master (`pass`) and for a
//! worker's Reactor (`shared`, `reuseport`): one accept loop's worth of
//! expected conditions, and the reserve-descriptor trick of stage02 for the
//! moment the process runs out of descriptors.

use std::fs::File;
use std::io::{self, ErrorKind};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

use crate::sys;

/// Accepts connections, and sheds them when out of descriptors.
///
/// Created by whoever owns a listener (the master, or a worker's Reactor),
/// and dropped with it.
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
    /// nothing more to take now: the queue is empty (EAGAIN, the end of an
    /// edge-triggered drain), or the process is out of descriptors and
    /// cannot even shed, or `accept` failed in a way retrying will not fix
    /// (logged).
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
    /// it and close it at once (the client sees the connection closed, a
    /// clear answer), then take the reserve back. Returns false if that was
    /// impossible.
    fn shed_one(&mut self, listener: &TcpListener) -> bool {
        drop(self.reserve.take());
        let shed = match sys::accept_nonblocking(listener) {
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
}

fn open_reserve() -> io::Result<File> {
    File::open("/dev/null")
}
