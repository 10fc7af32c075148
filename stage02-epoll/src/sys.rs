//! The few system calls std does not offer, in one place.
//!
//! std's `TcpListener::bind` picks its own listen backlog and its `accept`
//! returns a blocking socket that needs a second call (`fcntl`) to become
//! non-blocking. Here the listener gets the backlog we choose and `accept4`
//! hands back a socket that is already non-blocking and close-on-exec, in one
//! call. Every `unsafe` block of the stage is in this file.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, accept4, bind, listen, setsockopt,
    socket, sockopt,
};

// ANCHOR: listen
/// Opens a non-blocking listening socket on `addr` with room for `backlog`
/// completed handshakes waiting to be accepted.
///
/// The backlog is what a burst of clients queues in while the loop is busy.
/// A tiny one (the classic `listen(fd, 5)`) makes the kernel drop SYNs in a
/// burst, and a dropped SYN is retried only after a second: latency spikes
/// that no amount of server speed can fix.
pub fn listen_nonblocking(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // Restarting the server must not fail because old connections of the
    // previous run are still in TIME_WAIT on this port.
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    let backlog = Backlog::new(backlog).map_err(io::Error::other)?;
    listen(&fd, backlog)?;
    Ok(TcpListener::from(fd))
}
// ANCHOR_END: listen

/// Accepts one connection as a non-blocking, close-on-exec socket.
///
/// `Err` with kind `WouldBlock` means the accept queue is empty: the expected
/// way for a drain loop to end.
pub fn accept_nonblocking(listener: &TcpListener) -> io::Result<TcpStream> {
    let raw = accept4(
        listener.as_raw_fd(),
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    )?;
    // SAFETY: accept4 succeeded, so `raw` is a new descriptor that nothing
    // else owns; OwnedFd takes sole ownership and closes it exactly once.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    Ok(TcpStream::from(fd))
}

/// True for the errors that mean "out of descriptors" (EMFILE for this
/// process, ENFILE for the whole system).
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE)
    )
}
