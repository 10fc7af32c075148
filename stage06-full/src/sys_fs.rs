//! Files: opening them confined to the document root (`openat2` with
//! `RESOLVE_BENEATH`), and sending them (`sendfile`, and `send` with
//! `MSG_MORE` for the head before a small file).

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// ANCHOR: open_beneath
/// The document root, opened once per worker.
pub struct Root {
    dir: OwnedFd,
    /// The canonical path, for the fallback below.
    path: std::path::PathBuf,
    /// openat2(2) is missing (Linux before 5.6) or forbidden here.
    no_openat2: std::sync::atomic::AtomicBool,
}

impl Root {
    pub fn open(path: &std::path::Path) -> io::Result<Root> {
        let path = std::fs::canonicalize(path)?;
        let dir = std::fs::File::open(&path)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                path.display()
            )));
        }
        Ok(Root {
            dir: OwnedFd::from(dir),
            path,
            no_openat2: std::sync::atomic::AtomicBool::new(false),
        })
    }

    // ANCHOR: open_beneath_fn
    /// Opens `relative` (already normalised, no `..`) for reading, and
    /// refuses with `EXDEV` any path that leaves the root, symbolic links
    /// included.
    ///
    /// `openat2` with `RESOLVE_BENEATH` makes the kernel enforce it during
    /// path resolution, in the same system call as the open: there is no
    /// window between a check and the open for a link to be swapped in, and
    /// no extra system call per path component as with `realpath`.
    /// `O_NONBLOCK`: opening a FIFO someone left in the root must not block
    /// the worker (only regular files are served anyway).
    pub fn open_beneath(&self, relative: &str) -> io::Result<std::fs::File> {
        use std::sync::atomic::Ordering;
        let path = if relative.is_empty() { "." } else { relative };
        let c_path = std::ffi::CString::new(path).map_err(|_| io::ErrorKind::InvalidInput)?;
        let flags = nix::libc::O_RDONLY
            | nix::libc::O_CLOEXEC
            | nix::libc::O_NONBLOCK
            | nix::libc::O_NOCTTY;
        if !self.no_openat2.load(Ordering::Relaxed) {
            // SAFETY: open_how is a plain C struct; all-zero is valid and
            // means "no flags" for the fields we do not set.
            let mut how: nix::libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = flags as u64;
            how.resolve = nix::libc::RESOLVE_BENEATH | nix::libc::RESOLVE_NO_MAGICLINKS;
            // SAFETY: the pointers are to a live NUL-terminated string and a
            // live open_how of the size passed.
            let fd = unsafe {
                nix::libc::syscall(
                    nix::libc::SYS_openat2,
                    self.dir.as_raw_fd(),
                    c_path.as_ptr(),
                    &how as *const nix::libc::open_how,
                    std::mem::size_of::<nix::libc::open_how>(),
                )
            };
            if fd >= 0 {
                // SAFETY: a new descriptor that nothing else owns.
                return Ok(std::fs::File::from(unsafe {
                    OwnedFd::from_raw_fd(fd as RawFd)
                }));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(nix::libc::ENOSYS) | Some(nix::libc::EPERM) => {
                    self.no_openat2.store(true, Ordering::Relaxed);
                }
                _ => return Err(err),
            }
        }
        // Fallback: resolve every link, then check the result is inside.
        let full = std::fs::canonicalize(self.path.join(path))?;
        if !full.starts_with(&self.path) {
            return Err(io::Error::from_raw_os_error(nix::libc::EXDEV));
        }
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
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
pub fn send_file(
    socket: &TcpStream,
    file: &std::fs::File,
    offset: u64,
    count: u64,
) -> io::Result<usize> {
    let mut off = offset as nix::libc::off64_t;
    // One call sends at most about 2 GiB; the rest goes on the next call.
    let count = count.min(1 << 30) as usize;
    Ok(nix::sys::sendfile::sendfile64(
        socket,
        file,
        Some(&mut off),
        count,
    )?)
}
// ANCHOR_END: sendfile

/// `send` with `MSG_MORE`: the kernel may hold these bytes back until more
/// follow (at most 200 ms), to fill a packet with them.
pub fn send_more(socket: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // nix has no MSG_MORE. SAFETY: the pointer and length describe `buf`,
    // which outlives the call; the descriptor is open while `socket` is.
    let n = unsafe {
        nix::libc::send(
            socket.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            nix::libc::MSG_MORE | nix::libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

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
