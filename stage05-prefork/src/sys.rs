//! The few system calls std does not offer, in one place: the listener,
//! `accept4`, signalfd and timerfd, and (new in this stage) `fork`, the
//! master-worker channel with descriptor passing (`SCM_RIGHTS`), reaping
//! children, and `SO_REUSEPORT` listeners.
//!
//! std's `TcpListener::bind` picks its own listen backlog and its `accept`
//! returns a blocking socket that needs a second call (`fcntl`) to become
//! non-blocking. Here the listener gets the backlog we choose and `accept4`
//! hands back a socket that is already non-blocking and close-on-exec, in one
//! call. Every `unsafe` block of the stage is in this file.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{ControlMessage, MsgFlags, recvmsg, sendmsg, socketpair};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

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
    let fd = bound_socket(addr, false)?;
    let backlog = Backlog::new(backlog).map_err(io::Error::other)?;
    listen(&fd, backlog)?;
    Ok(TcpListener::from(fd))
}

// ANCHOR: reuseport
/// A socket bound to `addr` with `SO_REUSEPORT`, not yet listening.
///
/// With `SO_REUSEPORT` several sockets, one per worker, bind the same
/// address and port, and the kernel spreads new connections across the
/// *listening* ones by a hash of the connection's addresses. The master
/// binds one first, without listening, to learn the port (port 0 picks one)
/// and to hold it while the workers bind theirs; as it never listens, the
/// kernel never hands it a connection.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<OwnedFd> {
    bound_socket(addr, true)
}
// ANCHOR_END: reuseport

/// A worker's own `SO_REUSEPORT` listener on the master's address.
pub fn listen_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let fd = bound_socket(addr, true)?;
    let backlog = Backlog::new(backlog).map_err(io::Error::other)?;
    listen(&fd, backlog)?;
    Ok(TcpListener::from(fd))
}

/// The local address a socket is bound to.
pub fn bound_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    let addr: SockaddrStorage = nix::sys::socket::getsockname(fd.as_raw_fd())?;
    if let Some(v4) = addr.as_sockaddr_in() {
        return Ok(SocketAddr::from(std::net::SocketAddrV4::from(*v4)));
    }
    if let Some(v6) = addr.as_sockaddr_in6() {
        return Ok(SocketAddr::from(std::net::SocketAddrV6::from(*v6)));
    }
    Err(io::Error::other("not an IP socket"))
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

// ANCHOR: channel
/// A connected pair of Unix sockets for one master-worker channel.
///
/// `SOCK_SEQPACKET` rather than `SOCK_STREAM`: it keeps message boundaries,
/// so a worker's load report or a batch of passed connections is always
/// read whole, one message per `recvmsg`, with no framing code. Both ends
/// are non-blocking and close-on-exec.
pub fn channel_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    )?)
}

/// The most descriptors one message can carry: the kernel's `SCM_MAX_FD`
/// (include/net/scm.h); `scm_fp_copy` in net/core/scm.c refuses more with
/// EINVAL.
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Sends one message, with `fds` attached (none, or up to
/// [`MAX_FDS_PER_MESSAGE`]).
///
/// Passing a descriptor with `SCM_RIGHTS` makes the kernel install a new
/// descriptor in the receiving process that refers to the same open socket,
/// as `dup` does within one process. The sender's copy stays open until it
/// closes it; the connection lives while either copy does. On a
/// `SOCK_SEQPACKET` socket the message goes whole or not at all: `Err`
/// means nothing was sent and every descriptor is still the caller's.
pub fn send_message(channel: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    // LAB s5-pass BEGIN: sendmsg the bytes, with SCM_RIGHTS when fds is not empty; no SIGPIPE
    let iov = [IoSlice::new(bytes)];
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &rights };
    // MSG_NOSIGNAL: a dead peer gives EPIPE, not SIGPIPE.
    sendmsg::<()>(
        channel.as_raw_fd(),
        &iov,
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
    // LAB END
}
// ANCHOR_END: channel

/// One message read from a channel.
pub struct Received {
    /// Bytes of payload; 0 means the peer closed its end (EOF).
    pub len: usize,
    /// The descriptors passed with the message, in the order sent.
    pub fds: Vec<OwnedFd>,
}

/// Reads one message. `Err` of kind `WouldBlock` means none is waiting.
///
/// The control buffer has room for [`MAX_FDS_PER_MESSAGE`] descriptors, so
/// whatever the sender attached arrives. If this process is out of
/// descriptors, the kernel installs what it can, closes the rest and sets
/// MSG_CTRUNC: those clients see their connection close, and `fds` is
/// shorter than what the sender says it sent.
pub fn recv_message(channel: &OwnedFd, buf: &mut [u8]) -> io::Result<Received> {
    recv_with_room::<MAX_FDS_PER_MESSAGE>(channel, buf)
}

/// [`recv_message`] with room for `N` descriptors (a test gives less room
/// than a message carries, to see the kernel truncate).
fn recv_with_room<const N: usize>(channel: &OwnedFd, buf: &mut [u8]) -> io::Result<Received> {
    // LAB s5-pass BEGIN: recvmsg with room for N descriptors, close-on-exec; own what arrived (rights_in)
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; N]);
    // MSG_CMSG_CLOEXEC: a received descriptor is close-on-exec at once.
    let msg = recvmsg::<()>(
        channel.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let len = msg.bytes;
    // Not `msg.cmsgs()`: under MSG_CTRUNC it returns an error, and what the
    // kernel did install here would stay open, owned by nobody.
    let fds = rights_in(&space);
    Ok(Received { len, fds })
    // LAB END
}

/// Owns every descriptor in the SCM_RIGHTS messages of `control`, the zeroed
/// buffer `recvmsg` filled: whole headers, even under MSG_CTRUNC
/// (`scm_detach_fds` in net/core/scm.c), then zeroes, a length of 0.
fn rights_in(control: &[u8]) -> Vec<OwnedFd> {
    const W: usize = std::mem::size_of::<usize>();
    // cmsg_len (a size_t), cmsg_level, cmsg_type (ints); data at CMSG_LEN(0).
    const HEADER: usize = (W + 8).next_multiple_of(W);
    let int = |b: &[u8]| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let (mut fds, mut at) = (Vec::new(), 0);
    while let Some(head) = control.get(at..at + HEADER) {
        let len = usize::from_ne_bytes(head[..W].try_into().unwrap_or([0; W]));
        let Some(data) = control.get(at + HEADER..at.saturating_add(len)) else {
            break; // a length of 0: no more headers
        };
        if int(&head[W..]) == nix::libc::SOL_SOCKET && int(&head[W + 4..]) == nix::libc::SCM_RIGHTS
        {
            for raw in data.chunks_exact(4) {
                // SAFETY: the kernel just installed this descriptor in this
                // process for us; nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(int(raw)) });
            }
        }
        at += len.next_multiple_of(W);
    }
    fds
}

/// True for the error a send of descriptors gets when too many are in
/// flight: ETOOMANYREFS, from `too_many_unix_fds` in net/unix/af_unix.c.
/// Descriptors sent but not yet received count against the *sending*
/// user, up to the sender's RLIMIT_NOFILE, unless it has CAP_SYS_RESOURCE
/// or CAP_SYS_ADMIN.
pub fn is_too_many_in_flight(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::ETOOMANYREFS)
}

// ANCHOR: fork
/// Forks the process. Call only while the process has a single thread: the
/// child gets a copy of the whole address space but only the calling
/// thread, so a lock held by another thread would stay locked forever in the
/// child. The master never starts a thread.
pub fn fork() -> io::Result<ForkResult> {
    // SAFETY: the master is single-threaded whenever it forks (see above),
    // and the child only closes descriptors and runs the worker's loop.
    Ok(unsafe { nix::unistd::fork() }?)
}
// ANCHOR_END: fork

/// Closes, in a freshly forked child, descriptors that belong to the master.
///
/// The child inherited a copy of every descriptor the master had: its epoll
/// instance, its signalfd, the listener, the other workers' channels.
/// Closing the child's copies leaves the master's untouched. The child never
/// returns into the master's code (it ends in `process::exit`), so the
/// `OwnedFd`s in its copy of the master's memory are never dropped and
/// nothing is closed twice.
pub fn close_in_child(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: see above: each `fd` is a master-owned descriptor that this
        // child will never use or close again.
        unsafe {
            nix::libc::close(fd);
        }
    }
}

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It called `exit` with this status.
    Code(i32),
    /// A signal killed it.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// `n` socket pairs: the far ends to pass, the near ones to see them by.
    fn pairs(n: usize) -> Vec<(UnixStream, UnixStream)> {
        (0..n).map(|_| UnixStream::pair().unwrap()).collect()
    }

    /// A batch of descriptors goes in one message and arrives whole, in the
    /// order sent: each received one is the same socket as the one sent.
    #[test]
    fn a_batch_of_descriptors_arrives_whole_and_in_order() {
        use std::io::{Read, Write};
        let (ours, theirs) = channel_pair().unwrap();
        let pairs = pairs(32);
        let sent: Vec<BorrowedFd<'_>> = pairs.iter().map(|(_, far)| far.as_fd()).collect();
        send_message(&ours, b"c", &sent).unwrap();
        let mut buf = [0u8; 4];
        let got = recv_message(&theirs, &mut buf).unwrap();
        assert_eq!(
            got.fds.len(),
            32,
            "sent 32 descriptors with SCM_RIGHTS, received {}: send_message must attach \
             them all, and recv_message must have room for MAX_FDS_PER_MESSAGE",
            got.fds.len()
        );
        for (i, fd) in got.fds.into_iter().enumerate() {
            let mut far = UnixStream::from(fd);
            far.write_all(&[i as u8]).unwrap();
            let mut b = [0u8; 1];
            (&pairs[i].0).read_exact(&mut b).unwrap();
            assert_eq!(b[0], i as u8, "descriptor {i} is not the one sent {i}th");
        }
    }

    /// A worker may one day exec a helper: a connection it received must
    /// not leak into that program, so it is close-on-exec from the moment
    /// it arrives (not after a second call, which a fork in another thread
    /// could beat).
    #[test]
    fn a_received_descriptor_is_close_on_exec() {
        let (ours, theirs) = channel_pair().unwrap();
        let pairs = pairs(2);
        let sent: Vec<BorrowedFd<'_>> = pairs.iter().map(|(_, far)| far.as_fd()).collect();
        send_message(&ours, b"c", &sent).unwrap();
        let got = recv_message(&theirs, &mut [0u8; 4]).unwrap();
        assert_eq!(got.fds.len(), 2);
        for fd in &got.fds {
            // fdinfo's flags, in octal, carry O_CLOEXEC for FD_CLOEXEC.
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| i32::from_str_radix(f.trim(), 8).ok())
                .unwrap();
            assert!(
                flags & nix::libc::O_CLOEXEC != 0,
                "a received descriptor is not close-on-exec: recvmsg needs MSG_CMSG_CLOEXEC"
            );
        }
    }

    /// A message with more descriptors than there is room for: the kernel
    /// installs what fits, closes the rest and sets MSG_CTRUNC. Each one
    /// sent is one end of a socket pair, so the other end reads EOF only
    /// once every copy is closed: a received descriptor left unowned keeps
    /// it open.
    #[test]
    fn a_message_cut_short_leaks_none_of_its_descriptors() {
        use std::io::Read;
        let (ours, theirs) = channel_pair().unwrap();
        let pairs = pairs(5);
        let sent: Vec<BorrowedFd<'_>> = pairs.iter().map(|(_, far)| far.as_fd()).collect();
        send_message(&ours, b"c", &sent).unwrap();
        let mut buf = [0u8; 4];
        let got = recv_with_room::<2>(&theirs, &mut buf).unwrap_or_else(|e| {
            panic!(
                "recv_message failed on a message cut short ({e}): the descriptors that \
                 did arrive are then owned by nobody; own what arrived (rights_in)"
            )
        });
        assert_eq!(
            (got.len, got.fds.len()),
            (1, 2),
            "one byte, and the two descriptors there was room for"
        );
        drop(got);
        for (i, (mut near, far)) in pairs.into_iter().enumerate() {
            drop(far);
            near.set_nonblocking(true).unwrap();
            let r = near.read(&mut [0u8; 1]);
            assert!(
                matches!(r, Ok(0)),
                "descriptor {i} of 5: its peer is still open ({r:?}), so a descriptor \
                 received under MSG_CTRUNC was never closed"
            );
        }
    }
}
