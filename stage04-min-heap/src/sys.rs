//! The few system calls std does not offer, in one place: the listener,
//! `accept4`, and the two descriptors that turn signals and time into events
//! (signalfd and timerfd).
//!
//! std's `TcpListener::bind` picks its own listen backlog and its `accept`
//! returns a blocking socket that needs a second call (`fcntl`) to become
//! non-blocking. Here the listener gets the backlog we choose and `accept4`
//! hands back a socket that is already non-blocking and close-on-exec, in one
//! call. Every `unsafe` block of the stage is in this file.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, accept4, bind, listen, setsockopt,
    socket, sockopt,
};

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

// ANCHOR: signalfd
/// Blocks `signals` and returns a descriptor that reads them.
///
/// A blocked signal is not delivered; it stays pending, and a signalfd for
/// it becomes readable. No handler runs, so there is nothing to be
/// async-signal-safe about and no self-pipe to manage: the loop reads a
/// `signalfd_siginfo` (with the sender's pid, which a self-pipe loses) like
/// any other event. The mask must be set before any thread is started, or a
/// thread with the signal unblocked would receive it instead.
pub fn signal_fd(signals: &[Signal]) -> io::Result<SignalFd> {
    let mut mask = SigSet::empty();
    for &signal in signals {
        mask.add(signal);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    Ok(SignalFd::with_flags(
        &mask,
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )?)
}
// ANCHOR_END: signalfd

/// Reads every signal waiting on `fd`.
pub fn drain_signal_fd(fd: &SignalFd, mut each: impl FnMut(Signal)) -> io::Result<()> {
    loop {
        match fd.read_signal() {
            Ok(Some(info)) => {
                if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                    each(signal);
                }
            }
            // Nothing more pending.
            Ok(None) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Ignores SIGPIPE, so that writing to a connection the peer has closed
/// fails with EPIPE instead of killing the process. (Rust binaries already
/// start with SIGPIPE ignored; a server should not depend on who started it.)
pub fn ignore_sigpipe() -> io::Result<()> {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_IGN runs no code of ours.
    unsafe { sigaction(Signal::SIGPIPE, &ignore) }?;
    Ok(())
}

// ANCHOR: timerfd
/// A one-shot timer as a descriptor: readable once it expires.
pub struct Alarm {
    fd: TimerFd,
}

impl Alarm {
    pub fn new() -> io::Result<Alarm> {
        // CLOCK_MONOTONIC, like `Instant`: setting the wall clock must not
        // fire (or delay) idle timeouts.
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        Ok(Alarm { fd })
    }

    /// Arms the timer to fire once, `after` from now (replacing any earlier
    /// setting). A zero duration would disarm a timerfd, so it is rounded up
    /// to a nanosecond: "due now" fires at once.
    pub fn arm(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        self.fd.set(
            Expiration::OneShot(TimeSpec::from_duration(after)),
            TimerSetTimeFlags::empty(),
        )?;
        Ok(())
    }

    pub fn disarm(&self) -> io::Result<()> {
        Ok(self.fd.unset()?)
    }

    /// Consumes the expiration, so a level-triggered registration stops
    /// reporting the descriptor.
    pub fn acknowledge(&self) {
        let mut count = [0u8; 8];
        // EAGAIN: already read, or re-armed before we got here. Either way
        // there is nothing to consume.
        let _ = nix::unistd::read(&self.fd, &mut count);
    }
}

impl AsFd for Alarm {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
// ANCHOR_END: timerfd
