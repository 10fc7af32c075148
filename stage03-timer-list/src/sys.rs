//! The few system calls std does not offer, in one place: the listener,
//! `accept4`, and (new in this stage) the signal handler, its self-pipe and
//! the `SIGALRM` tick.
//!
//! std's `TcpListener::bind` picks its own listen backlog and its `accept`
//! returns a blocking socket that needs a second call (`fcntl`) to become
//! non-blocking. Here the listener gets the backlog we choose and `accept4`
//! hands back a socket that is already non-blocking and close-on-exec, in one
//! call. Every `unsafe` block of the stage is in this file.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

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

// ANCHOR: handler
/// The write end of the self-pipe, for the signal handler. -1 until
/// [`install_signal_pipe`] runs. An atomic, because a handler may read only
/// what is safe to read at any instant, and a plain `static mut` is not.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The signal handler: it writes the signal's number, one byte, to the
/// self-pipe, and does nothing else.
///
/// A handler interrupts the program between any two instructions, possibly
/// inside `malloc` or while a lock is held; it may call only
/// async-signal-safe functions (signal-safety(7)). `write(2)` is one; taking
/// a lock, allocating, or printing are not. So all the real work happens in
/// the event loop, which sees the byte as the pipe becoming readable: the
/// signal has become an ordinary event (the "unified event source").
///
/// The pipe is non-blocking: if it is full, the byte is dropped and the
/// handler returns at once. That loses nothing that matters: the loop reads
/// the pipe until it is empty, and a tick or a SIGTERM that is already
/// pending is as good as two. (The kernel coalesces a pending standard
/// signal in the same way: two SIGALRMs before delivery are one.)
extern "C" fn on_signal(signal: nix::libc::c_int) {
    // LAB s3-timers BEGIN: the signal number, one byte, to SIGNAL_PIPE; keep errno; nothing more
    // The handler must leave errno as it found it: the code it interrupted
    // may be about to read errno from a call that just failed.
    let saved = Errno::last_raw();
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; `byte` is a live local and
        // the length is 1. The result is ignored on purpose (see above).
        unsafe {
            nix::libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
    Errno::set_raw(saved);
    // LAB END
}
// ANCHOR_END: handler

/// Creates the self-pipe and routes `signals` to it. Returns the read end,
/// which the event loop watches. Call once per process.
pub fn install_signal_pipe(signals: &[Signal]) -> io::Result<File> {
    // LAB s3-timers BEGIN: a non-blocking pipe; write end to SIGNAL_PIPE; sigaction each signal
    let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    // The write end lives as long as the process: the handler may run at
    // any moment, so it must never see a closed (or reused) descriptor.
    SIGNAL_PIPE.store(write.into_raw_fd(), Ordering::Relaxed);
    // SA_RESTART: blocking calls interrupted by the handler restart instead
    // of failing with EINTR. epoll_wait is never restarted (signal(7)), so
    // the loop still wakes; that is what we want.
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for &signal in signals {
        // SAFETY: `on_signal` calls only async-signal-safe functions and
        // touches only an atomic; it is safe to run at any point.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(File::from(read))
    // LAB END
}

/// Reads every signal number waiting in the self-pipe.
pub fn drain_signal_pipe(pipe: &File, mut each: impl FnMut(Signal)) -> io::Result<()> {
    // LAB s3-timers BEGIN: read until WouldBlock; each byte is a signal number
    use std::io::Read;
    let mut buf = [0u8; 64];
    loop {
        match (&*pipe).read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => buf[..n]
                .iter()
                .filter_map(|&b| Signal::try_from(i32::from(b)).ok())
                .for_each(&mut each),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    // LAB END
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

// ANCHOR: tick
/// Starts the tick: `SIGALRM` every `period`, from now on.
///
/// `setitimer(ITIMER_REAL)` rather than `alarm(2)`, which counts whole
/// seconds only and must be re-armed by hand after each signal.
pub fn start_tick(period: Duration) -> io::Result<()> {
    let tv = nix::libc::timeval {
        tv_sec: period.as_secs() as nix::libc::time_t,
        tv_usec: period.subsec_micros() as nix::libc::suseconds_t,
    };
    let timer = nix::libc::itimerval {
        it_interval: tv,
        it_value: tv,
    };
    // SAFETY: `timer` is a valid itimerval; the old value is not wanted, and
    // a null pointer for it is allowed.
    let rc = unsafe { nix::libc::setitimer(nix::libc::ITIMER_REAL, &timer, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
// ANCHOR_END: tick
