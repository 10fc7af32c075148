//! The few system calls std does not offer, and every `unsafe` block of
//! the stage. This file: the calls a connection's life makes, `accept4`
//! (std's `accept` needs an `fcntl` more for a non-blocking socket), the
//! timerfd, the channel's messages with descriptor passing (`SCM_RIGHTS`),
//! and (new in this stage) opening files confined to the document root and
//! sending them (`openat2`, `sendfile`, `MSG_MORE`).

// Three parts in files of their own, named `sys_*` so that the shape check
// (`unsafe` only in files named so) sees them as parts of this module.
#[path = "sys_cpu.rs"]
pub mod cpu;
#[path = "sys_setup.rs"]
pub mod setup;
#[path = "sys_uring.rs"]
pub mod uring;

pub use cpu::{allowed_cpus, label_incoming_cpu, pin_to};
pub use setup::*;

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::libc;
use nix::sys::sendfile::sendfile64;
use nix::sys::socket::{ControlMessage, MsgFlags, SockFlag, accept4, recvmsg, send, sendmsg};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

/// Accepts one connection as a non-blocking, close-on-exec socket. `Err` of
/// kind `WouldBlock` (the queue is empty) is how a drain loop ends.
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
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
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
        Ok(self.fd.set(
            Expiration::OneShot(TimeSpec::from_duration(after)),
            TimerSetTimeFlags::empty(),
        )?)
    }

    pub fn disarm(&self) -> io::Result<()> {
        Ok(self.fd.unset()?)
    }

    /// Consumes the expiration, so a level-triggered registration stops
    /// reporting the descriptor.
    pub fn acknowledge(&self) {
        let mut count = [0u8; 8];
        // EAGAIN: already read, or re-armed since: nothing to consume.
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
/// The most descriptors one message can carry: the kernel's `SCM_MAX_FD`
/// (include/net/scm.h); `scm_fp_copy` in net/core/scm.c refuses more with
/// EINVAL.
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Sends one message with `fds` attached (at most [`MAX_FDS_PER_MESSAGE`]),
/// which the receiver gets as new descriptors, as from `dup`. It goes whole
/// or not at all (`SOCK_SEQPACKET`): `Err` means nothing was sent and every
/// descriptor is still the caller's.
pub fn send_message(channel: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
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
}
// ANCHOR_END: channel

/// One message read from a channel.
pub struct Received {
    /// Bytes of payload; 0 means the peer closed its end (EOF).
    pub len: usize,
    /// The descriptors passed with the message, in the order sent.
    pub fds: Vec<OwnedFd>,
}

/// Reads one message; `Err` of kind `WouldBlock` means none is waiting.
/// All the descriptors attached arrive (room for [`MAX_FDS_PER_MESSAGE`])
/// unless this process is out of them: then the kernel closes the rest
/// (MSG_CTRUNC), and `fds` is shorter than what the sender says it sent.
pub fn recv_message(channel: &OwnedFd, buf: &mut [u8]) -> io::Result<Received> {
    recv_with_room::<MAX_FDS_PER_MESSAGE>(channel, buf)
}

/// [`recv_message`] with room for `N` descriptors (a test gives less room
/// than a message carries, to see the kernel truncate).
fn recv_with_room<const N: usize>(channel: &OwnedFd, buf: &mut [u8]) -> io::Result<Received> {
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
        if int(&head[W..]) == libc::SOL_SOCKET && int(&head[W + 4..]) == libc::SCM_RIGHTS {
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

/// True for ETOOMANYREFS (`too_many_unix_fds` in net/unix/af_unix.c):
/// descriptors sent but not yet received count against the *sending* user,
/// up to its RLIMIT_NOFILE, unless it has CAP_SYS_RESOURCE or CAP_SYS_ADMIN.
pub fn is_too_many_in_flight(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ETOOMANYREFS)
}

// ANCHOR: open_beneath
/// The document root, opened once per worker.
pub struct Root {
    dir: OwnedFd,
    /// The canonical path, for the fallback below.
    path: PathBuf,
    /// openat2(2) is missing (Linux before 5.6) or forbidden here.
    no_openat2: AtomicBool,
}

impl Root {
    pub fn open(path: &Path) -> io::Result<Root> {
        let path = std::fs::canonicalize(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                io::Error::new(e.kind(), format!("{} does not exist", path.display()))
            }
            _ => e,
        })?;
        let dir = File::open(&path)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                path.display()
            )));
        }
        Ok(Root {
            dir: OwnedFd::from(dir),
            path,
            no_openat2: AtomicBool::new(false),
        })
    }

    // ANCHOR: open_beneath_fn
    /// Opens `relative` (already normalised, no `..`) for reading, and
    /// refuses with `EXDEV` any path that leaves the root, links included:
    /// with `openat2`'s `RESOLVE_BENEATH` the kernel checks as it resolves,
    /// so no link can be swapped in between a check and the open, and no
    /// system call per path component is spent as with `realpath`.
    /// `O_NONBLOCK`: a FIFO someone left in the root must not block us.
    pub fn open_beneath(&self, relative: &str) -> io::Result<File> {
        let path = if relative.is_empty() { "." } else { relative };
        if !self.no_openat2.load(Ordering::Relaxed) {
            let how = OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
                .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
            match openat2(&self.dir, path, how) {
                Ok(fd) => return Ok(File::from(fd)),
                // Missing or forbidden here (see `no_openat2`): fall back.
                Err(Errno::ENOSYS | Errno::EPERM) => self.no_openat2.store(true, Ordering::Relaxed),
                Err(e) => return Err(e.into()),
            }
        }
        // Fallback: resolve every link, then check the result is inside.
        let full = std::fs::canonicalize(self.path.join(path))?;
        if !full.starts_with(&self.path) {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(full)
    }
    // ANCHOR_END: open_beneath_fn
}
// ANCHOR_END: open_beneath

// ANCHOR: sendfile
/// Sends up to `count` bytes of `file` from `offset` straight to the
/// socket: the kernel copies page cache to socket buffer, with no trip
/// through this process's memory. Returns how many went; `WouldBlock`
/// means the socket's send buffer is full.
pub fn send_file(socket: &TcpStream, file: &File, offset: u64, count: u64) -> io::Result<usize> {
    let mut off = offset as libc::off64_t;
    // At most 1 GiB a call (the kernel's own limit is about 2 GiB).
    let count = count.min(1 << 30) as usize;
    Ok(sendfile64(socket, file, Some(&mut off), count)?)
}
// ANCHOR_END: sendfile

/// `send` with `MSG_MORE`: the kernel may hold these bytes back until more
/// follow (at most 200 ms), to fill a packet with them.
pub fn send_more(socket: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    // nix names no MSG_MORE, but passes on the bits it is given.
    let flags = MsgFlags::from_bits_retain(libc::MSG_MORE) | MsgFlags::MSG_NOSIGNAL;
    Ok(send(socket.as_raw_fd(), buf, flags)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// A root that is missing, or is a file, is refused naming the path
    /// and saying which of the two it is.
    #[test]
    fn a_missing_root_and_a_file_root_say_which() {
        let missing = Path::new("/nonexistent/www");
        let Err(e) = Root::open(missing) else {
            panic!("a missing root opened");
        };
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(e.to_string(), "/nonexistent/www does not exist");
        let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        let Err(e) = Root::open(file) else {
            panic!("a file opened as the root");
        };
        assert!(
            e.to_string().ends_with("Cargo.toml is not a directory"),
            "{e}"
        );
    }

    /// A message with more descriptors than there is room for: the kernel
    /// installs what fits, closes the rest and sets MSG_CTRUNC. Each one
    /// sent is one end of a socket pair, so the other end reads EOF only
    /// once every copy is closed: a received descriptor left unowned keeps
    /// it open.
    #[test]
    fn a_message_cut_short_leaks_none_of_its_descriptors() {
        use std::io::Read;
        use std::os::unix::net::UnixStream;
        let (ours, theirs) = setup::channel_pair().unwrap();
        let pairs: Vec<(UnixStream, UnixStream)> =
            (0..5).map(|_| UnixStream::pair().unwrap()).collect();
        let sent: Vec<BorrowedFd<'_>> = pairs.iter().map(|(_, far)| far.as_fd()).collect();
        send_message(&ours, b"c", &sent).unwrap();
        let mut buf = [0u8; 4];
        let got = recv_with_room::<2>(&theirs, &mut buf).unwrap();
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

    /// Both ways of opening beneath the root refuse every way out, so the
    /// fallback (old kernels, sandboxes) is as safe as `openat2`.
    #[test]
    fn open_beneath_refuses_links_out_with_and_without_openat2() {
        let top = std::env::temp_dir().join(format!("stage06-beneath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        let root_dir = top.join("root");
        std::fs::create_dir_all(root_dir.join("sub")).unwrap();
        std::fs::write(top.join("secret"), "secret").unwrap();
        std::fs::write(root_dir.join("sub/file"), "inside").unwrap();
        std::os::unix::fs::symlink("sub/file", root_dir.join("link-in")).unwrap();
        std::os::unix::fs::symlink("../secret", root_dir.join("link-out")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root_dir.join("link-abs")).unwrap();
        let root = Root::open(&root_dir).unwrap();
        for fallback in [false, true] {
            root.no_openat2.store(fallback, Ordering::Relaxed);
            let read = |p: &str| {
                root.open_beneath(p).and_then(|mut f| {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut f, &mut s).map(|_| s)
                })
            };
            assert_eq!(read("sub/file").unwrap(), "inside", "fallback {fallback}");
            assert_eq!(read("link-in").unwrap(), "inside", "fallback {fallback}");
            for out in ["link-out", "link-abs"] {
                let e = root.open_beneath(out).expect_err(out);
                assert_eq!(
                    e.raw_os_error(),
                    Some(nix::libc::EXDEV),
                    "{out}, fallback {fallback}"
                );
            }
            assert!(
                root.open_beneath("").is_ok(),
                "the root itself, fallback {fallback}"
            );
        }
        std::fs::remove_dir_all(&top).unwrap();
    }
}
