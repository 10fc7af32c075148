//! The master-worker channel, with back-pressure.
//!
//! Each worker has one `SOCK_SEQPACKET` socketpair to the master
//! ([`sys::channel_pair`]). In `pass` mode the master sends accepted
//! connections down it as descriptors (`SCM_RIGHTS`), several to a message;
//! in every mode the worker sends back `READY` once and its load whenever it
//! changes. This module is both ends of that conversation:
//!
//! - [`message`]: the format, in one place;
//! - [`Channels`]: the master's end of every worker's channel: which worker
//!   gets a connection, a bounded queue per worker, and what happens when a
//!   channel is full or broken;
//! - [`WorkerEnd`]: the worker's end: `READY`, load reports, batches in.
//!
//! ## Back-pressure
//! A worker that falls behind stops reading its channel, and the kernel
//! buffers what the master sends until the channel is full; then `sendmsg`
//! fails with EAGAIN. The master never closes a connection for that. It
//! keeps the connection in that worker's queue and arms EPOLLOUT on the
//! channel, and it gives new connections to workers whose channels have
//! room. When every queue is full it stops accepting: the listen backlog
//! holds the rest, in the kernel, at no cost to the master. A channel that
//! breaks (the worker died) is dropped, and its queue goes to the others.
//!
//! What the kernel counts (Linux 6.18, net/unix/af_unix.c):
//! - A socketpair's peer is connected back to us, so `unix_dgram_sendmsg`
//!   skips the receive-queue length check (`net.unix.max_dgram_qlen` applies
//!   only when `unix_peer(other) != sk`). What limits a channel is the
//!   sender's socket buffer: each message is charged to the *master's*
//!   `sk_sndbuf` (`sock_alloc_send_pskb`) until the worker reads it. So a
//!   channel holds a number of *messages*, a few hundred with the default
//!   `net.core.wmem_default`, however many descriptors each carries.
//! - EPOLLOUT comes back when at most a quarter of that buffer is in use
//!   (`unix_writable`): room for many batches at once.
//! - Descriptors in flight count against the sending user, up to the
//!   sender's RLIMIT_NOFILE (`too_many_unix_fds`): past it, `sendmsg` fails
//!   with ETOOMANYREFS (unless the master has CAP_SYS_RESOURCE). That is a
//!   full channel by another name, and handled like one, except that no
//!   EPOLLOUT will say when it clears: a worker's next report (it received
//!   something, so fewer are in flight) is the signal to retry.
//! - A worker that dies with messages unread makes the master's end fail
//!   with ECONNRESET rather than read EOF (`unix_release_sock`); either way
//!   the channel is broken. The descriptors it had not read are closed by
//!   the kernel with it: those clients are lost, as are its live ones.

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::poller::{Interest, Poller, Readiness, Token, Trigger};
use crate::sys;

pub mod message;
mod worker_end;

pub use worker_end::{Incoming, WorkerEnd};

// ANCHOR: bounds
/// Connections per `CONN` message, at most.
///
/// The kernel takes up to 253 descriptors a message
/// ([`sys::MAX_FDS_PER_MESSAGE`]), and a batch is what gets sent when a
/// queue fills or an accept drain ends. Against one message per connection,
/// 32 already saves 31 `sendmsg` and `recvmsg` of every 32 in a burst, and
/// it keeps a channel's capacity (a few hundred *messages*) at thousands of
/// connections, so a burst no longer fills it. A larger batch saves
/// little more, and makes the first connection of a long drain wait longer
/// for the batch to fill before it is sent.
pub const BATCH: usize = 32;

/// Connections the master holds for one worker, at most, beyond what its
/// channel holds.
///
/// A queue grows only while the worker's channel is full, that is, with a
/// few hundred messages the worker has not read yet. A worker that far
/// behind gains nothing from a longer queue, and every queued connection
/// costs the master a descriptor; past the bound the listen backlog holds
/// connections instead, at no cost to the master. Four batches let the
/// queue refill the channel in one go when EPOLLOUT comes back.
pub const QUEUE_BOUND: usize = 4 * BATCH;
// ANCHOR_END: bounds

const _: () = assert!(BATCH <= sys::MAX_FDS_PER_MESSAGE && BATCH <= QUEUE_BOUND);

/// Whether a channel takes more messages now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Room {
    /// The last send went through.
    Open,
    /// The last send got EAGAIN: the worker's unread messages fill the
    /// socket buffer. EPOLLOUT is armed and says when there is room again.
    Full,
    /// The last send got ETOOMANYREFS: too many descriptors in flight. No
    /// event will say when this clears; retried after any worker's report.
    TooManyInFlight,
}

/// The master's end of one live worker's channel, and what the master
/// knows through it. Created by [`Channels::attach`] after the fork;
/// dropped (closing the master's end) when the channel breaks or the worker
/// is reaped.
struct Link {
    fd: OwnedFd,
    /// Set when the worker sends READY; connections go only to ready ones.
    ready: bool,
    room: Room,
    /// The worker's last report. A snapshot: what the master sent since is
    /// `sent - report.received`.
    report: message::Load,
    /// Connections whose descriptors went into this channel.
    sent: u64,
}

/// One place in the pool, as the channels see it. It outlives the worker
/// processes that come and go in it: connections queued for a worker that
/// died stay here, for the others or for its replacement.
struct Slot {
    link: Option<Link>,
    /// Connections chosen for this slot and not yet in its channel, oldest
    /// first. Each is the master's descriptor, dropped (closing the
    /// master's copy) once sent: the worker has its own copy by then.
    queue: VecDeque<TcpStream>,
}

/// The result of trying to empty one slot's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flushed {
    /// Nothing left to send, or nothing can be sent now.
    Done,
    /// Connections moved to other slots (the channel broke, or the slot has
    /// no worker): those slots need a flush of their own.
    Moved,
}

// ANCHOR: channels
/// The master's end of every worker's channel, by slot (worker `i`'s
/// channel is registered with the poller as `Token(i)`).
pub struct Channels {
    slots: Vec<Slot>,
}

/// One slot's figures, for the master's status lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct SlotStatus {
    pub ready: bool,
    /// Connections the worker has, or that are on their way to it.
    pub live: u64,
    /// Connections it has taken in so far, plus those on their way.
    pub taken: u64,
    pub queued: usize,
    pub sent: u64,
    pub received: u64,
}
// ANCHOR_END: channels

impl Channels {
    pub fn new(slots: usize) -> Channels {
        Channels {
            slots: (0..slots)
                .map(|_| Slot {
                    link: None,
                    queue: VecDeque::new(),
                })
                .collect(),
        }
    }

    /// Takes the master's end of slot `i`'s new channel (after the fork)
    /// and watches it for reports. The worker is not ready until it says so.
    pub fn attach(&mut self, i: usize, fd: OwnedFd, poller: &Poller) -> io::Result<()> {
        poller.add(&fd, Token(i as u64), READ, Trigger::Level)?;
        self.slots[i].link = Some(Link {
            fd,
            ready: false,
            room: Room::Open,
            report: message::Load::default(),
            sent: 0,
        });
        Ok(())
    }

    /// Slot `i`'s worker is gone (reaped): drop its channel, if still open,
    /// and send what was queued for it to the others.
    pub fn detach(&mut self, i: usize, poller: &Poller) {
        self.break_link(i, poller, "the worker exited");
        self.flush(poller);
    }

    /// True if some ready worker can take one more connection: only then
    /// should the master accept one.
    pub fn has_room(&self) -> bool {
        self.choose().is_some()
    }

    // ANCHOR: pass
    /// Gives `stream` to a worker: queued for the least-loaded ready worker
    /// with room, preferring one whose channel is not full, and sent once a
    /// batch is ready (or at the next [`Channels::flush`]). Gives `stream`
    /// back if no worker has room: accept only when [`Channels::has_room`].
    pub fn pass(&mut self, stream: TcpStream, poller: &Poller) -> Result<(), TcpStream> {
        let Some(i) = self.choose() else {
            return Err(stream);
        };
        let slot = &mut self.slots[i];
        slot.queue.push_back(stream);
        if slot.queue.len() >= BATCH {
            self.flush_slot(i, poller);
        }
        Ok(())
    }

    /// The slot for the next connection: a ready worker with room in its
    /// queue, preferring one whose channel takes messages now, then the
    /// least loaded.
    ///
    /// Blocked channels come last: by load alone, a stopped worker with few
    /// connections would keep collecting a queue it cannot read while the
    /// others idle. Its load counts what it reported, what is on its way to
    /// it and what is queued for it. Ties go to the one that has taken the
    /// fewest: with short connections every worker is often at zero, and
    /// "lowest index wins" would send every connection to worker 0 while
    /// the others sleep.
    fn choose(&self) -> Option<usize> {
        // LAB s5-pass BEGIN: ready, queue not full; least (blocked, live, taken, index)
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.link.as_ref().is_some_and(|l| l.ready))
            .filter(|(_, s)| s.queue.len() < QUEUE_BOUND)
            .min_by_key(|(i, s)| {
                let st = s.status();
                let blocked = s.link.as_ref().is_some_and(|l| l.room != Room::Open);
                (blocked, st.live, st.taken, *i)
            })
            .map(|(i, _)| i)
        // LAB END
    }
    // ANCHOR_END: pass

    // ANCHOR: flush
    // ANCHOR: flush_queue
    /// Sends what is queued to every worker whose channel has room; the
    /// end of an accept drain, and after every channel event.
    pub fn flush(&mut self, poller: &Poller) {
        // Connections that move (from a broken channel, or a slot whose
        // worker is gone) land in queues that may have been flushed
        // already this round: go round again until nothing moves.
        loop {
            let mut moved = false;
            for i in 0..self.slots.len() {
                moved |= self.flush_slot(i, poller) == Flushed::Moved;
            }
            if !moved {
                return;
            }
        }
    }

    /// Sends slot `i`'s queue, a batch per message, until it is empty or
    /// the channel takes no more.
    fn flush_slot(&mut self, i: usize, poller: &Poller) -> Flushed {
        loop {
            let slot = &mut self.slots[i];
            let Some(link) = slot.link.as_mut() else {
                // No worker here: another may have room by now.
                return self.rehome(i);
            };
            if !link.ready || link.room != Room::Open || slot.queue.is_empty() {
                return Flushed::Done;
            }
            let n = slot.queue.len().min(BATCH);
            let fds: Vec<BorrowedFd<'_>> = slot.queue.iter().take(n).map(AsFd::as_fd).collect();
            let _span = tracing::info_span!("pass", worker = i, fds = n).entered();
            match sys::send_message(&link.fd, &message::conn(n), &fds) {
                Ok(()) => {
                    // The worker holds its own copies now: close ours.
                    slot.queue.drain(..n);
                    link.sent += n as u64;
                }
                // A signal interrupted the call; nothing was sent.
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Full: keep the queue and wait for EPOLLOUT.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.set_room(i, Room::Full, poller);
                    return Flushed::Done;
                }
                // Too many descriptors in flight: as full, but no event.
                Err(e) if sys::is_too_many_in_flight(&e) => {
                    self.set_room(i, Room::TooManyInFlight, poller);
                    return Flushed::Done;
                }
                // EPIPE or ECONNRESET: the worker is gone. Anything else
                // would fail the same way next time: the channel is useless.
                Err(e) => {
                    self.break_link(i, poller, &e.to_string());
                    return Flushed::Moved;
                }
            }
        }
    }
    // ANCHOR_END: flush_queue

    // ANCHOR: set_room
    /// Records whether slot `i`'s channel takes more, and watches for
    /// EPOLLOUT exactly while it is full. (Level-triggered EPOLLOUT left
    /// armed on a channel with room would wake the master on every wait.)
    fn set_room(&mut self, i: usize, room: Room, poller: &Poller) {
        let Some(link) = self.slots.get_mut(i).and_then(|s| s.link.as_mut()) else {
            return; // stale: not a channel's token, or already closed
        };
        if link.room == room {
            return;
        }
        let was_full = link.room == Room::Full;
        link.room = room;
        if was_full || room == Room::Full {
            let interest = if room == Room::Full { READ_WRITE } else { READ };
            if let Err(e) = poller.modify(&link.fd, Token(i as u64), interest, Trigger::Level) {
                self.break_link(i, poller, &format!("epoll_ctl: {e}"));
            }
        }
    }
    // ANCHOR_END: set_room
    // ANCHOR_END: flush

    // ANCHOR: rehome
    /// Drops slot `i`'s channel and sends its queue to the other workers.
    fn break_link(&mut self, i: usize, poller: &Poller, why: &str) {
        let Some(link) = self.slots[i].link.take() else {
            return;
        };
        // Deregister before the drop closes it; a dead worker's channel
        // would otherwise report EPOLLHUP on every wait until then.
        let _ = poller.delete(&link.fd);
        drop(link);
        let queued = self.slots[i].queue.len();
        if queued > 0 {
            eprintln!("worker {i}'s channel closed ({why}) with {queued} connections queued");
        }
        self.rehome(i);
    }

    /// Moves slot `i`'s queue, oldest first, to the ready workers that have
    /// room. What none can take stays, for the next flush or for the slot's
    /// replacement: the master never closes a queued connection for want of
    /// a worker.
    ///
    /// Only a slot without a channel is re-homed. Moving a merely *full*
    /// channel's queue to another worker would rescue its few connections
    /// from a stuck worker sooner, at the cost of reordering and of moving
    /// connections back and forth between slow workers; a full channel
    /// keeps its queue, and new connections go elsewhere (see `choose`).
    fn rehome(&mut self, i: usize) -> Flushed {
        let mut moved = Flushed::Done;
        while !self.slots[i].queue.is_empty() {
            // `choose` never picks slot i: it has no channel.
            let Some(home) = self.choose() else {
                break;
            };
            if let Some(stream) = self.slots[i].queue.pop_front() {
                self.slots[home].queue.push_back(stream);
                moved = Flushed::Moved;
            }
        }
        moved
    }
    // ANCHOR_END: rehome

    // ANCHOR: on_event
    /// An event on slot `i`'s channel: reports to read (READY, LOAD, or EOF
    /// when the worker closed its end), or room to send again.
    pub fn on_event(&mut self, i: usize, readiness: Readiness, poller: &Poller) {
        if readiness.readable || readiness.hangup || readiness.error {
            self.read_reports(i, poller);
        }
        if readiness.writable {
            // EPOLLOUT: the worker read enough for a quarter of the buffer
            // to be free. (Stale, if the channel was replaced meanwhile.)
            self.set_room(i, Room::Open, poller);
        }
        self.flush(poller);
    }

    /// Reads every report waiting on slot `i`'s channel.
    pub fn read_reports(&mut self, i: usize, poller: &Poller) {
        let mut buf = [0u8; 32];
        loop {
            let Some(link) = self.slots.get_mut(i).and_then(|s| s.link.as_mut()) else {
                return; // stale: not a channel's token, or already closed
            };
            match sys::recv_message(&link.fd, &mut buf) {
                // EOF: the worker closed its end, so it is exiting.
                Ok(received) if received.len == 0 => {
                    self.break_link(i, poller, "EOF");
                    return;
                }
                Ok(received) => match buf[0] {
                    message::READY => link.ready = true,
                    message::LOAD => {
                        // Kept whole, with `sent` beside it: overwriting a running count
                        // with the report would forget what was sent after the worker
                        // wrote it, and a burst would pile onto whoever reported last.
                        if let Some(load) = message::parse_load(&buf[..received.len]) {
                            link.report = load;
                        }
                        // It received something: fewer descriptors are in
                        // flight, and a refused send may go through now. (A
                        // timer would do too, at the cost of a guess at the
                        // period and a wake-up per tick while refused.)
                        self.retry_too_many_in_flight(poller);
                    }
                    _ => {}
                },
                // Nothing more waiting.
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ECONNRESET: the worker died with messages of ours unread.
                Err(e) => {
                    self.break_link(i, poller, &e.to_string());
                    return;
                }
            }
        }
    }

    fn retry_too_many_in_flight(&mut self, poller: &Poller) {
        for i in 0..self.slots.len() {
            if self.slots[i]
                .link
                .as_ref()
                .is_some_and(|l| l.room == Room::TooManyInFlight)
            {
                self.set_room(i, Room::Open, poller);
            }
        }
    }
    // ANCHOR_END: on_event

    /// Slot `i`'s figures; all zero for a slot with no worker.
    pub fn status(&self, i: usize) -> SlotStatus {
        self.slots.get(i).map(Slot::status).unwrap_or_default()
    }

    /// True once slot `i`'s worker has said READY.
    pub fn is_ready(&self, i: usize) -> bool {
        self.status(i).ready
    }

    /// Closes every queued connection: the master is stopping, and its
    /// workers close theirs too.
    pub fn clear_queues(&mut self) {
        for slot in &mut self.slots {
            slot.queue.clear();
        }
    }

    /// Every descriptor this holds: channels and queued connections. A
    /// newly forked worker closes its copies, or a queued connection would
    /// stay open in it after the worker it is passed to has closed it.
    pub fn raw_fds(&self) -> Vec<RawFd> {
        let mut fds = Vec::new();
        for slot in &self.slots {
            fds.extend(slot.link.as_ref().map(|l| l.fd.as_raw_fd()));
            fds.extend(slot.queue.iter().map(AsRawFd::as_raw_fd));
        }
        fds
    }
}

impl Slot {
    fn status(&self) -> SlotStatus {
        let queued = self.queue.len();
        let Some(link) = self.link.as_ref() else {
            return SlotStatus {
                queued,
                ..SlotStatus::default()
            };
        };
        let in_flight = link.sent.saturating_sub(link.report.received);
        SlotStatus {
            ready: link.ready,
            live: u64::from(link.report.live) + in_flight + queued as u64,
            taken: link.report.taken + in_flight + queued as u64,
            queued,
            sent: link.sent,
            received: link.report.received,
        }
    }
}

const READ: Interest = Interest {
    read: true,
    write: false,
};
const READ_WRITE: Interest = Interest {
    read: true,
    write: true,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poller::Events;
    use nix::sys::socket::{setsockopt, sockopt};
    use std::net::{SocketAddr, TcpListener};
    use std::time::Duration;

    /// A master's `Channels` with real socketpairs to workers that are this
    /// test, and real TCP connections to pass.
    struct Rig {
        poller: Poller,
        channels: Channels,
        workers: Vec<Option<WorkerEnd>>,
        listener: TcpListener,
        /// The client end of every connection made, by its local address.
        clients: Vec<TcpStream>,
    }

    /// A send buffer this small holds a handful of messages, so a test
    /// fills a channel in a few sends (the kernel raises it to its minimum).
    const SMALL_SNDBUF: usize = 4096;

    fn rig(workers: usize) -> Rig {
        let poller = Poller::new().unwrap();
        let mut channels = Channels::new(workers);
        let mut ends = Vec::new();
        for i in 0..workers {
            let (master, worker) = sys::channel_pair().unwrap();
            setsockopt(&master, sockopt::SndBuf, &SMALL_SNDBUF).unwrap();
            channels.attach(i, master, &poller).unwrap();
            ends.push(Some(WorkerEnd::new(worker)));
        }
        Rig {
            poller,
            channels,
            workers: ends,
            listener: TcpListener::bind("127.0.0.1:0").unwrap(),
            clients: Vec::new(),
        }
    }

    impl Rig {
        fn ready(&mut self, i: usize) {
            self.workers[i].as_ref().unwrap().ready().unwrap();
            self.channels.read_reports(i, &self.poller);
            assert!(self.channels.is_ready(i));
        }

        /// A new connection's server end, as `accept` would return it.
        fn connection(&mut self) -> TcpStream {
            let client = TcpStream::connect(self.listener.local_addr().unwrap()).unwrap();
            let (server, _) = self.listener.accept().unwrap();
            self.clients.push(client);
            server
        }

        /// Passes one connection and sends it at once: one per message.
        fn pass_one(&mut self) {
            let stream = self.connection();
            assert!(self.channels.pass(stream, &self.poller).is_ok());
            self.channels.flush(&self.poller);
        }

        /// Reads everything waiting on worker `i`'s end: the connections'
        /// peer addresses, message by message.
        fn drain(&mut self, i: usize) -> Vec<Vec<SocketAddr>> {
            let end = self.workers[i].as_mut().unwrap();
            let mut messages = Vec::new();
            loop {
                match end.receive() {
                    Ok(Incoming::Conns(streams)) => {
                        messages.push(streams.iter().map(|s| s.peer_addr().unwrap()).collect())
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return messages,
                    Ok(_) => panic!("not a CONN message"),
                    Err(e) => panic!("receive: {e}"),
                }
            }
        }

        /// Waits (briefly) for the master's channel events and handles them.
        /// Returns how many there were.
        fn turn(&mut self) -> usize {
            let mut events = Events::with_capacity(8);
            self.poller
                .wait(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            let mut n = 0;
            for event in events.iter() {
                self.channels
                    .on_event(event.token.0 as usize, event.readiness, &self.poller);
                n += 1;
            }
            n
        }

        fn client_addr(&self, k: usize) -> SocketAddr {
            self.clients[k].local_addr().unwrap()
        }
    }

    /// Fills worker 0's channel one connection per message, then its
    /// queue to the bound. Returns how many went into the channel.
    fn fill(rig: &mut Rig) -> u64 {
        while rig.channels.status(0).queued == 0 {
            rig.pass_one();
        }
        let sent = rig.channels.status(0).sent;
        let mut passed = 0;
        while rig.channels.has_room() {
            assert!(
                passed < QUEUE_BOUND,
                "worker 0's queue holds {} connections, past its bound of {QUEUE_BOUND}, \
                 and still has room: choose must skip a worker whose queue is full",
                rig.channels.status(0).queued
            );
            rig.pass_one();
            passed += 1;
        }
        sent
    }

    #[test]
    fn a_full_channel_queues_up_to_the_bound_then_refuses() {
        // Some 300 sockets here, and as many in the test beside this one.
        if !testkit::enough_descriptors(1024) {
            return;
        }
        let mut rig = rig(1);
        rig.ready(0);
        let sent = fill(&mut rig);
        let st = rig.channels.status(0);
        assert!(sent > 0);
        assert_eq!(st.queued, QUEUE_BOUND);
        assert_eq!(st.sent, sent, "nothing more went in while full");
        assert_eq!(rig.clients.len() as u64, sent + QUEUE_BOUND as u64);
        // No room: a connection is given back, not closed.
        let extra = rig.connection();
        assert!(rig.channels.pass(extra, &rig.poller).is_err());
        // Nothing is sent until the channel says it has room.
        assert_eq!(rig.turn(), 0, "EPOLLOUT before the worker read anything");
    }

    #[test]
    fn epollout_flushes_the_queue_in_batches_in_order() {
        // Some 300 sockets here, and as many in the test beside this one.
        if !testkit::enough_descriptors(1024) {
            return;
        }
        let mut rig = rig(1);
        rig.ready(0);
        let sent = fill(&mut rig);
        // The worker reads the one-connection messages that filled it.
        let first = rig.drain(0);
        assert_eq!(first.len() as u64, sent);
        assert!(first.iter().all(|m| m.len() == 1));
        // EPOLLOUT: the queue goes out BATCH at a time, oldest first, as
        // fast as the worker reads.
        let mut batches = Vec::new();
        while rig.channels.status(0).queued > 0 {
            assert!(rig.turn() > 0, "no EPOLLOUT with a queue waiting");
            batches.extend(rig.drain(0));
        }
        batches.extend(rig.drain(0));
        assert_eq!(batches.len(), QUEUE_BOUND / BATCH);
        assert!(batches.iter().all(|m| m.len() == BATCH), "{batches:?}");
        let expected: Vec<SocketAddr> = (sent as usize..rig.clients.len())
            .map(|k| rig.client_addr(k))
            .collect();
        assert_eq!(batches.concat(), expected);
        assert!(rig.channels.has_room());
        assert_eq!(rig.turn(), 0, "EPOLLOUT left armed with nothing queued");
    }

    #[test]
    fn a_broken_channel_rehomes_its_queue_to_the_others() {
        let mut rig = rig(2);
        rig.ready(0);
        // Worker 1 is not ready yet: everything goes to worker 0.
        while rig.channels.status(0).queued < 10 {
            rig.pass_one();
        }
        let st = rig.channels.status(0);
        rig.ready(1);
        // Worker 0 dies with messages unread.
        rig.workers[0] = None;
        while rig.turn() > 0 {}
        assert_eq!(rig.channels.status(0).queued, 0);
        assert!(!rig.channels.is_ready(0));
        // Worker 1 got exactly what was queued for worker 0, in order; what
        // was in worker 0's channel died with it.
        let got = rig.drain(1).concat();
        let expected: Vec<SocketAddr> = (st.sent as usize..rig.clients.len())
            .map(|k| rig.client_addr(k))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(rig.channels.status(1).sent, st.queued as u64);
        // A connection sent to worker 0 and never read is closed with it.
        let mut lost = rig.clients[0].try_clone().unwrap();
        lost.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(std::io::Read::read(&mut lost, &mut [0u8; 1]).unwrap(), 0);
    }

    #[test]
    fn load_counts_what_is_in_flight_and_queued() {
        let mut rig = rig(2);
        rig.ready(0);
        rig.ready(1);
        for _ in 0..4 {
            rig.pass_one();
        }
        // Ties go to the one that has taken fewest: two each.
        let (a, b) = (rig.channels.status(0).live, rig.channels.status(1).live);
        assert_eq!(
            (a, b),
            (2, 2),
            "four connections went {a} / {b}: choose must pick the least loaded"
        );
        // Worker 0 reads its two and reports them; one client has left.
        assert_eq!(rig.drain(0).concat().len(), 2);
        let worker_poller = Poller::new().unwrap();
        rig.workers[0]
            .as_mut()
            .unwrap()
            .report(1, 2, &worker_poller, Token(0));
        rig.channels.read_reports(0, &rig.poller);
        let st = rig.channels.status(0);
        assert_eq!((st.live, st.taken, st.received), (1, 2, 2));
        // Worker 1 has not read: its two are still in flight, and counted.
        assert_eq!(rig.channels.status(1).live, 2);
        rig.pass_one();
        assert_eq!(
            rig.channels.status(0).live,
            2,
            "worker 0 (1 live) did not get the next connection over worker 1 \
             (2 in flight): choose must pick the least loaded, counting what is in flight"
        );
    }

    #[test]
    fn a_worker_whose_channel_is_full_comes_last() {
        let mut rig = rig(2);
        rig.ready(0);
        // Worker 0 reads nothing: its channel fills, and a queue starts.
        while rig.channels.status(0).queued == 0 {
            rig.pass_one();
        }
        rig.ready(1);
        // Worker 1 reports far more connections than worker 0 holds.
        let worker_poller = Poller::new().unwrap();
        rig.workers[1]
            .as_mut()
            .unwrap()
            .report(1000, 1000, &worker_poller, Token(0));
        rig.channels.read_reports(1, &rig.poller);
        let queued = rig.channels.status(0).queued;
        rig.pass_one();
        assert_eq!(
            rig.channels.status(0).queued,
            queued,
            "chose worker 0, whose channel is full, over worker 1, whose channel takes \
             messages: a blocked channel comes last, whatever the loads"
        );
        assert_eq!(rig.channels.status(1).sent, 1, "worker 1 got it at once");
    }

    /// True if `poller` reports a descriptor writable now.
    fn writable(poller: &Poller) -> bool {
        let mut events = Events::with_capacity(1);
        poller.wait(&mut events, Some(Duration::ZERO)).unwrap();
        events.iter().any(|e| e.readiness.writable)
    }

    #[test]
    fn a_report_that_finds_the_channel_full_waits_for_epollout_then_goes() {
        let mut rig = rig(1);
        rig.ready(0);
        let end = rig.workers[0].as_mut().unwrap();
        setsockopt(&*end, sockopt::SndBuf, &SMALL_SNDBUF).unwrap();
        // The worker's loop, watching its end of the channel.
        let worker_loop = Poller::new().unwrap();
        worker_loop
            .add(&*end, Token(0), READ, Trigger::Level)
            .unwrap();
        // The master reads nothing: a thousand changes overfill a buffer of
        // a few KiB, and the last reports find it full.
        for taken in 1..=1000 {
            end.report(1, taken, &worker_loop, Token(0));
        }
        assert!(
            !writable(&worker_loop),
            "EPOLLOUT while the channel is full"
        );
        // The worker's connection closes while a report waits.
        end.report(0, 1000, &worker_loop, Token(0));
        rig.channels.read_reports(0, &rig.poller);
        assert_eq!(rig.channels.status(0).live, 1, "a report found room");
        // The master has read: EPOLLOUT wakes the worker, whose next call
        // sends the load as it is now, and stops watching for room.
        assert!(writable(&worker_loop), "no EPOLLOUT once the master read");
        end.report(0, 1000, &worker_loop, Token(0));
        assert!(
            !writable(&worker_loop),
            "EPOLLOUT still watched with nothing waiting"
        );
        rig.channels.read_reports(0, &rig.poller);
        let st = rig.channels.status(0);
        assert_eq!((st.live, st.taken), (0, 1000));
    }

    #[test]
    fn load_and_conn_messages_round_trip() {
        let load = message::Load {
            live: 7,
            taken: 1 << 40,
            received: 3,
        };
        assert_eq!(message::parse_load(&message::load(load)), Some(load));
        assert_eq!(message::parse_conn(&message::conn(BATCH)), Some(BATCH));
        assert_eq!(message::parse_conn(&message::load(load)), None);
    }
}
