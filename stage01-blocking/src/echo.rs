//! The per-connection echo loop, on a blocking socket.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Size of the buffer one read fills. Larger buffers mean fewer system calls
/// for bulk data; 16 KiB is plenty for an echo and cheap per thread.
const BUF_SIZE: usize = 16 * 1024;

// ANCHOR: echo
/// Echoes everything `stream` sends until it closes. Never panics: whatever
/// the client does (including resetting the connection), the worst outcome is
/// this connection closing, never the process ending.
pub fn serve(mut stream: TcpStream, peer: SocketAddr) {
    let mut buf = [0u8; BUF_SIZE];
    loop {
        match stream.read(&mut buf) {
            // EOF: the client has shut down its sending side. Everything it
            // sent has been echoed, so close by returning (drop closes).
            Ok(0) => return,
            // `write_all` loops over partial writes: `write` may accept fewer
            // bytes than asked when the send buffer is nearly full, and a
            // blocking socket then sleeps until there is room again.
            Ok(n) => {
                if let Err(e) = stream.write_all(&buf[..n]) {
                    // EPIPE or ECONNRESET: the client is gone. std ignores
                    // SIGPIPE in Rust binaries, so this is an error value and
                    // not a signal that would kill the process.
                    log_gone(peer, &e);
                    return;
                }
            }
            // A signal arrived while `read` slept: nothing happened to the
            // socket, so simply read again.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // ECONNRESET and friends: the client vanished mid-stream.
            Err(e) => {
                log_gone(peer, &e);
                return;
            }
        }
    }
}
// ANCHOR_END: echo

fn log_gone(peer: SocketAddr, e: &std::io::Error) {
    // A reset is an everyday event for a server, not worth shouting about.
    if !matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    ) {
        eprintln!("{peer}: {e}");
    }
}
