//! A safe io_uring for the Proactor (`worker::uring`).
//!
//! The kernel writes into a buffer (or reads from one) *after* the call
//! that asked for it has returned, until the completion says it is done:
//! freeing, moving or reusing the buffer in between is a use-after-free by
//! the kernel, which no borrow checker sees. Here that cannot be written:
//!
//! - an operation that points into memory takes the *owner* of that memory
//!   ([`Ring::submit`]), here the whole connection, and hands it back only
//!   with the completion ([`Completion::owner`]); a poll, an accept or a
//!   cancel points into none and needs no owner;
//! - a receive takes no buffer of its own: the kernel picks one from a ring
//!   of provided buffers (`IORING_REGISTER_PBUF_RING`, Linux 5.19) when
//!   data arrives, so a receive waiting on an idle connection holds none;
//! - a dropped ring leaks, never frees, an owner whose operation it did not
//!   see complete.
//!
//! tokio-uring and monoio take the same "owned buffer" approach.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use nix::libc::{self, EBUSY, EINTR, ETIME};

/// An operation, built from the memory of its owner.
pub enum Op<'a> {
    /// Receive into a provided buffer (see [`Ring::received`]).
    Recv { socket: BorrowedFd<'a> },
    /// `writev` of `head` then `body`.
    Send {
        socket: BorrowedFd<'a>,
        head: &'a [u8],
        body: &'a [u8],
    },
    /// `pread` of `buf.len()` bytes of `file` at `offset`.
    Read {
        file: BorrowedFd<'a>,
        offset: u64,
        buf: &'a mut [u8],
    },
}

/// Names an operation in flight, to cancel it: from its submission until
/// its completion is reaped, after which the number may name another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpId(usize);

/// A finished operation.
pub struct Completion<T> {
    /// What the caller tagged the operation with.
    pub tag: u64,
    /// Bytes moved, or the error.
    pub result: io::Result<usize>,
    /// The owner given to [`Ring::submit`], back in the caller's hands.
    pub owner: Option<T>,
    /// The connection an [`Ring::accept`] accepted.
    pub accepted: Option<TcpStream>,
    /// The provided buffer a receive's bytes are in.
    provided: Option<u16>,
}

/// What the kernel may be using: the owner, and the `iovec`s of a
/// `writev`. Boxed, so its address is stable while the operation runs.
struct InFlight<T> {
    tag: u64,
    owner: Option<T>,
    iov: [libc::iovec; 2],
    kind: Kind,
}

/// What an operation's result means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Bytes moved (or a poll's events).
    Bytes,
    /// A new descriptor.
    Accept,
    /// A cancellation, whose own completion nobody wants.
    Cancel,
}

/// An io_uring, its provided buffers, and the operations it has in
/// flight, by user data.
pub struct Ring<T> {
    ring: IoUring,
    /// `None` only once leaked, in `Drop`.
    provided: Option<Provided>,
    ops: Vec<Option<Box<InFlight<T>>>>,
    free: Vec<usize>,
}

/// Whether this kernel (and its sandbox) lets a process use io_uring, with
/// provided-buffer rings.
pub fn available() -> io::Result<()> {
    Ring::<()>::new(8).map(|_| ())
}

// ANCHOR: provided
// ANCHOR: provided_ring
/// Provided buffers: how many, and how large. A receive gets at most one
/// buffer's worth; a larger request arrives in several. 64 of 16 KiB is
/// 1 MiB a worker, against 32 KiB for every connection when each receive
/// brought its own buffer.
const PROVIDED: u16 = 64;
const PROVIDED_SIZE: usize = 16 * 1024;
const GROUP: u16 = 0;

/// A ring of buffers the kernel picks from as data arrives. The ring of
/// entries (page-aligned, as the kernel wants) and the buffers are
/// allocated here and registered once; a buffer the kernel filled is *lent*
/// to the caller until `give_back` puts it in the ring again.
struct Provided {
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    memory: NonNull<u8>,
    memory_layout: Layout,
    /// Entries added so far, wrapping: the ring's tail.
    tail: u16,
    /// Filled by the kernel and not yet given back.
    lent: Vec<u16>,
}
// ANCHOR_END: provided_ring

impl Provided {
    fn new(ring: &IoUring) -> io::Result<Provided> {
        let size = PROVIDED as usize * std::mem::size_of::<BufRingEntry>();
        let entries_layout = Layout::from_size_align(size, 4096).map_err(io::Error::other)?;
        let memory_layout = Layout::from_size_align(PROVIDED as usize * PROVIDED_SIZE, 64)
            .map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size.
        let (entries, memory) =
            unsafe { (alloc_zeroed(entries_layout), alloc_zeroed(memory_layout)) };
        let (Some(entries), Some(memory)) = (NonNull::new(entries), NonNull::new(memory)) else {
            return Err(io::ErrorKind::OutOfMemory.into());
        };
        let mut provided = Provided {
            entries: entries.cast(),
            entries_layout,
            memory,
            memory_layout,
            tail: 0,
            lent: (0..PROVIDED).collect(),
        };
        // SAFETY: the entries are allocated for PROVIDED entries and stay
        // allocated until this `Provided` is dropped, which `Ring::drop`
        // lets happen only after unregistering them (or never).
        unsafe {
            let addr = provided.entries.as_ptr() as u64;
            ring.submitter()
                .register_buf_ring_with_flags(addr, PROVIDED, GROUP, 0)?;
        }
        provided.give_back();
        Ok(provided)
    }

    // ANCHOR: give_back
    /// Puts every lent buffer back in the ring, where the kernel may fill it
    /// again, and publishes the new tail.
    fn give_back(&mut self) {
        if self.lent.is_empty() {
            return;
        }
        for bid in self.lent.drain(..) {
            let slot = usize::from(self.tail & (PROVIDED - 1));
            // SAFETY: `slot` < PROVIDED, inside the entries' allocation; the
            // kernel reads no entry past the tail it was last given, and
            // this one is past it until the store below.
            let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
            // SAFETY: `bid` < PROVIDED: the buffer lies inside `memory`.
            let addr = unsafe { self.memory.as_ptr().add(usize::from(bid) * PROVIDED_SIZE) };
            entry.set_addr(addr as u64);
            entry.set_len(PROVIDED_SIZE as u32);
            entry.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
        }
        // SAFETY: `tail` points at a u16 inside the first entry, aligned,
        // which the kernel reads as the ring's tail; a release store makes
        // the entries written above visible before it.
        let tail =
            unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.entries.as_ptr()) as *mut u16) };
        tail.store(self.tail, Ordering::Release);
    }
    // ANCHOR_END: give_back

    /// The first `n` bytes of lent buffer `bid`.
    fn bytes(&self, bid: u16, n: usize) -> &[u8] {
        let n = n.min(PROVIDED_SIZE);
        let start = usize::from(bid % PROVIDED) * PROVIDED_SIZE;
        // SAFETY: `bid` came from a completion, so it is < PROVIDED and the
        // buffer is lent: the kernel wrote it and will not touch it again
        // until `give_back`, which needs `&mut self`.
        unsafe { std::slice::from_raw_parts(self.memory.as_ptr().add(start), n) }
    }
}

impl Drop for Provided {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts.
        unsafe {
            dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            dealloc(self.memory.as_ptr(), self.memory_layout);
        }
    }
}
// ANCHOR_END: provided

fn iovec(bytes: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: bytes.as_ptr() as *mut _,
        iov_len: bytes.len(),
    }
}

impl<T> Ring<T> {
    /// A ring of `entries` submissions (and twice as many completions).
    pub fn new(entries: u32) -> io::Result<Ring<T>> {
        let ring = IoUring::new(entries)?;
        let provided = Provided::new(&ring)?;
        Ok(Ring {
            ring,
            provided: Some(provided),
            ops: Vec::new(),
            free: Vec::new(),
        })
    }

    /// The bytes a receive brought, in its provided buffer: readable until
    /// the next [`Ring::submit_and_wait`].
    pub fn received(&self, c: &Completion<T>) -> &[u8] {
        match (c.provided, &c.result, &self.provided) {
            (Some(bid), Ok(n), Some(provided)) => provided.bytes(bid, *n),
            _ => &[],
        }
    }

    // ANCHOR: submit
    /// Starts the I/O that `build` describes in the memory of `owner`. The
    /// ring keeps `owner`, boxed and untouched, until the operation
    /// completes; `build` gets it once it is in the box, so the operation
    /// can point nowhere else.
    pub fn submit(
        &mut self,
        tag: u64,
        owner: T,
        build: impl FnOnce(&mut T) -> Op<'_>,
    ) -> io::Result<OpId> {
        let mut flight = Self::plain(tag, Kind::Bytes);
        let entry = match build(flight.owner.insert(owner)) {
            Op::Recv { socket } => {
                let fd = types::Fd(socket.as_raw_fd());
                opcode::Recv::new(fd, std::ptr::null_mut(), PROVIDED_SIZE as u32)
                    .buf_group(GROUP)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)
            }
            Op::Send { socket, head, body } => {
                flight.iov = [iovec(head), iovec(body)];
                let count = if body.is_empty() { 1 } else { 2 };
                let fd = types::Fd(socket.as_raw_fd());
                opcode::Writev::new(fd, flight.iov.as_ptr(), count).build()
            }
            Op::Read { file, offset, buf } => {
                let fd = types::Fd(file.as_raw_fd());
                opcode::Read::new(fd, buf.as_mut_ptr(), buf.len() as u32)
                    .offset(offset)
                    .build()
            }
        };
        self.push(entry, flight)
    }
    // ANCHOR_END: submit

    /// Waits for `fd` to be readable (one-shot).
    pub fn poll(&mut self, tag: u64, fd: BorrowedFd<'_>) -> io::Result<OpId> {
        let entry = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), libc::POLLIN as u32).build();
        self.push(entry, Self::plain(tag, Kind::Bytes))
    }

    /// Accepts one connection, non-blocking and close-on-exec.
    pub fn accept(&mut self, tag: u64, listener: &TcpListener) -> io::Result<OpId> {
        let fd = types::Fd(listener.as_raw_fd());
        let entry = opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build();
        self.push(entry, Self::plain(tag, Kind::Accept))
    }

    /// Asks the kernel to cancel an operation in flight; it then completes
    /// (with `ECANCELED`, unless it finished first).
    pub fn cancel(&mut self, op: OpId) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(op.0 as u64).build();
        self.push(entry, Self::plain(0, Kind::Cancel)).map(|_| ())
    }

    /// Operations in flight that hold an owner.
    pub fn owners_in_flight(&self) -> usize {
        let held = |f: &Option<Box<InFlight<T>>>| f.as_ref().is_some_and(|f| f.owner.is_some());
        self.ops.iter().filter(|f| held(f)).count()
    }

    fn plain(tag: u64, kind: Kind) -> Box<InFlight<T>> {
        Box::new(InFlight {
            tag,
            owner: None,
            iov: [iovec(&[]); 2],
            kind,
        })
    }

    /// Queues `entry`, with the index of `flight` as its user data,
    /// submitting what is queued first if the submission queue is full.
    fn push(&mut self, entry: squeue::Entry, flight: Box<InFlight<T>>) -> io::Result<OpId> {
        let index = self.free.pop().unwrap_or(self.ops.len());
        let entry = entry.user_data(index as u64);
        // SAFETY: the entry points into memory owned by `flight` (the
        // owner's buffers, and the `iovec`s in the box itself), or into
        // none. `flight` is stored below, at `index`, and stays there,
        // neither moved nor touched, until the completion with this user
        // data is reaped; if it never is, `Drop` leaks it.
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            if let Err(e) = self.ring.submit() {
                self.free.push(index);
                return Err(e);
            }
        }
        if index == self.ops.len() {
            self.ops.push(Some(flight));
        } else {
            self.ops[index] = Some(flight);
        }
        Ok(OpId(index))
    }

    // ANCHOR: reap
    /// Submits what is queued, waits for at least one completion (or, with
    /// a `timeout`, until it passes), and returns every completion there is.
    pub fn submit_and_wait(
        &mut self,
        out: &mut Vec<Completion<T>>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        if let Some(provided) = self.provided.as_mut() {
            provided.give_back();
        }
        let waited = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match waited {
            Ok(_) => {}
            // The timeout passed, a signal came (blocked ones go to the
            // signalfd), or the completion queue is full: reap what there
            // is and go round again.
            Err(e) if matches!(e.raw_os_error(), Some(ETIME | EINTR | EBUSY)) => {}
            Err(e) => return Err(e),
        }
        self.reap(out);
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completion<T>>) {
        for cqe in self.ring.completion() {
            let bid = cqueue::buffer_select(cqe.flags());
            // A filled provided buffer is lent, whoever reads it.
            if let (Some(bid), Some(p)) = (bid, self.provided.as_mut()) {
                p.lent.push(bid);
            }
            let index = cqe.user_data() as usize;
            let Some(flight) = self.ops.get_mut(index).and_then(Option::take) else {
                continue;
            };
            self.free.push(index);
            if flight.kind == Kind::Cancel {
                continue;
            }
            out.push(complete(*flight, cqe.result(), bid));
        }
    }
    // ANCHOR_END: reap
}

/// Turns a raw result into a [`Completion`].
fn complete<T>(flight: InFlight<T>, result: i32, provided: Option<u16>) -> Completion<T> {
    let (result, accepted) = match result {
        r if r < 0 => (Err(io::Error::from_raw_os_error(-r)), None),
        fd if flight.kind == Kind::Accept => {
            // SAFETY: a successful accept's result is a new descriptor that
            // the kernel installed for us and nothing else owns.
            let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
            (Ok(0), Some(stream))
        }
        n => (Ok(n as usize), None),
    };
    Completion {
        tag: flight.tag,
        result,
        owner: flight.owner,
        accepted,
        provided,
    }
}

impl<T> Drop for Ring<T> {
    /// Cancels what is in flight and waits up to a second for it; an owner
    /// whose operation is still running after that is leaked, because the
    /// kernel may yet write into it.
    fn drop(&mut self) {
        let running: Vec<usize> = (0..self.ops.len())
            .filter(|&i| self.ops[i].as_ref().is_some_and(|f| f.kind != Kind::Cancel))
            .collect();
        for op in running {
            let _ = self.cancel(OpId(op));
        }
        let until = Instant::now() + Duration::from_secs(1);
        let (mut out, step) = (Vec::new(), Duration::from_millis(10));
        while self.owners_in_flight() > 0 && Instant::now() < until {
            if self.submit_and_wait(&mut out, Some(step)).is_err() {
                break;
            }
            out.clear();
        }
        if self.ops.iter().flatten().any(|f| f.kind != Kind::Cancel) {
            // The kernel may yet fill a provided buffer: leak them too.
            std::mem::forget(self.provided.take());
        } else if self.provided.is_some() {
            let _ = self.ring.submitter().unregister_buf_ring(GROUP);
        }
        for flight in self.ops.iter_mut().filter_map(Option::take) {
            if flight.owner.is_some() {
                std::mem::forget(flight);
            }
        }
    }
}
