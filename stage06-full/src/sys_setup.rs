//! Part of [`crate::sys`]: what a server sets up before its first
//! connection and tears down after its last (listeners, signalfd, the
//! channel's socketpair, `fork`, reaping, the descriptor limit).

use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::libc;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    socketpair, sockopt,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

/// A non-blocking listening socket on `addr` with room for `backlog`
/// completed handshakes. A tiny one (the classic `listen(fd, 5)`) drops
/// SYNs in a burst, each retried only after a second (stage01's chapter).
pub fn listen_nonblocking(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    listening(bound_socket(addr, false)?, backlog)
}

// ANCHOR: reuseport
/// A socket bound to `addr` with `SO_REUSEPORT` that never listens, so the
/// kernel never hands it a connection (it spreads them over the group's
/// *listening* sockets): it learns the port (port 0 picks one) and holds it
/// while the workers bind theirs.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<OwnedFd> {
    bound_socket(addr, true)
}
// ANCHOR_END: reuseport

/// A worker's own `SO_REUSEPORT` listener on the master's address.
pub fn listen_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    listening(bound_socket(addr, true)?, backlog)
}

fn listening(fd: OwnedFd, backlog: i32) -> io::Result<TcpListener> {
    listen(&fd, Backlog::new(backlog).map_err(io::Error::other)?)?;
    Ok(TcpListener::from(fd))
}

/// The local address a socket is bound to.
pub fn bound_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    let addr: SockaddrStorage = nix::sys::socket::getsockname(fd.as_raw_fd())?;
    match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
        (Some(v4), _) => Ok(SocketAddrV4::from(*v4).into()),
        (_, Some(v6)) => Ok(SocketAddrV6::from(*v6).into()),
        _ => Err(io::Error::other("not an IP socket")),
    }
}

fn bound_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<OwnedFd> {
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
    if reuse_port {
        setsockopt(&fd, sockopt::ReusePort, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(fd)
}

// ANCHOR: signalfd
/// Blocks `signals` and returns a descriptor that reads them: no handler
/// runs (nothing to keep async-signal-safe, no self-pipe). Call it before
/// any thread starts, or a thread with the signals unblocked gets them.
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

/// A connected pair of Unix sockets for one master-worker channel, both
/// ends non-blocking and close-on-exec. `SOCK_SEQPACKET` rather than
/// `SOCK_STREAM`: it keeps message boundaries, so a load report or a batch
/// of passed connections is read whole, one per `recvmsg`, with no framing.
pub fn channel_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    )?)
}

// ANCHOR: fork
/// Forks the process. The master never starts a thread: the child gets
/// only the calling thread, so another's lock would stay locked forever.
pub fn fork() -> io::Result<ForkResult> {
    // SAFETY: the master is single-threaded whenever it forks (see above),
    // and the child only closes descriptors and runs the worker's loop.
    Ok(unsafe { nix::unistd::fork() }?)
}
// ANCHOR_END: fork

/// Closes, in a freshly forked child, its copies of the master's
/// descriptors. The child ends in `process::exit`, so the `OwnedFd`s in its
/// copy of the master's memory are never dropped: nothing is closed twice.
pub fn close_in_child(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: see above: each `fd` is a master-owned descriptor that this
        // child will never use or close again.
        unsafe {
            libc::close(fd);
        }
    }
}

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(Signal),
}

impl Exit {
    /// Exited with status 0: it finished what it was doing and left.
    pub fn is_clean(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit {code}"),
            Exit::Signal(signal) => write!(f, "killed by {signal}"),
        }
    }
}

/// Reaps one child that has exited, if any: `Ok(None)` when none has.
pub fn reap_one() -> io::Result<Option<(Pid, Exit)>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => return Ok(Some((pid, Exit::Code(code)))),
            Ok(WaitStatus::Signaled(pid, signal, _)) => {
                return Ok(Some((pid, Exit::Signal(signal))));
            }
            Ok(WaitStatus::StillAlive) => return Ok(None),
            // Stopped or continued: not an exit; look for another child.
            Ok(_) => continue,
            Err(nix::errno::Errno::ECHILD) => return Ok(None),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends `signal` to process `pid`; a process already gone is not an error.
pub fn send_signal(pid: Pid, signal: Signal) {
    let _ = nix::sys::signal::kill(pid, signal);
}

// ANCHOR: nofile
/// Raises this process's soft limit on open descriptors (RLIMIT_NOFILE) to
/// `want`, or up to the hard limit, and returns both as now in force. The
/// soft one needs no privilege to raise, and is often left low (1024) for
/// programs that use `select`, whose descriptor sets stop at 1024.
pub fn raise_nofile(want: u64) -> io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= want {
        return Ok((soft, hard));
    }
    let raised = want.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, raised, hard)?;
    Ok((raised, hard))
}
// ANCHOR_END: nofile

// ANCHOR: defer_accept
/// Asks the kernel to hand a connection to `accept` only once its first
/// bytes have arrived, or after about `secs` seconds without any
/// (`TCP_DEFER_ACCEPT`, tcp(7)). The client cannot tell: its handshake
/// completes as usual; only the server's accept waits for the request.
pub fn defer_accept(listener: &TcpListener, secs: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    set_int_option(listener, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, value)
}
// ANCHOR_END: defer_accept

/// Sets an integer socket option that nix has no wrapper for.
pub(crate) fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the descriptor is open while `socket` is borrowed, and the
    // pointer and length describe `value`, which outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
