//! Connections refused with 503 because every slot is taken, lingering so
//! that the answer is not lost.
//!
//! Closing a socket whose request is still unread makes the kernel send a
//! reset, and a reset can destroy the 503 before the client has read it.
//! So a refused connection gets the 503 in one best-effort write (it fits
//! an empty socket buffer), its sending side is shut down, and the socket
//! is kept, without a slot, for `LINGER`; then what it sent is read and it
//! is closed, with a FIN. nginx closes that way whenever the client may
//! still be sending (its `lingering_close`; `ngx_http_set_lingering_close`
//! in src/http/ngx_http_request.c).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::http::response;

/// At most this many refused connections linger at once; past it, one is
/// closed at once (and may be reset). Each holds a descriptor.
const MAX: usize = 64;
/// How long a refused connection lingers.
const LINGER: Duration = Duration::from_secs(2);

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
        if self.lingering.len() < MAX {
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
