//! A narrow poller: epoll behind four calls (add, modify, delete, wait).
//!
//! The Reactor never touches epoll flags itself. It says which [`Interest`]
//! it has in a descriptor and which [`Trigger`] to use, and gets back
//! [`Event`]s carrying the [`Token`] it registered and a decoded
//! [`Readiness`]. A `select` or `poll` backend would fit behind the same
//! four calls; only their cost differs (chapter 2).

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Which readiness changes the loop wants to hear about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

// ANCHOR: trigger
/// Level- or edge-triggered notification.
///
/// - [`Trigger::Level`]: `epoll_wait` reports a descriptor on *every* call
///   while it is ready. Reading part of the data is safe: the rest is
///   reported again next time.
/// - [`Trigger::Edge`]: `epoll_wait` reports a descriptor when it *becomes*
///   ready, once. The contract: after an event, read (or accept, or write)
///   until the call fails with `EAGAIN`; stop early and the leftover data
///   sits unreported until the peer sends more, which it may never do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Level,
    Edge,
}
// ANCHOR_END: trigger

impl std::str::FromStr for Trigger {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lt" | "level" => Ok(Trigger::Level),
            "et" | "edge" => Ok(Trigger::Edge),
            other => Err(format!("unknown trigger {other:?}: use lt or et")),
        }
    }
}

/// The number the Reactor registers with a descriptor and gets back with
/// each of its events; epoll stores it untouched in `epoll_event.data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token(pub u64);

/// What `epoll_wait` said about one descriptor, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// EPOLLIN: a read will not block (data, EOF or an error is waiting).
    pub readable: bool,
    /// EPOLLOUT: a write will not block.
    pub writable: bool,
    /// EPOLLRDHUP: the peer shut down its sending side (a FIN arrived).
    pub read_closed: bool,
    /// EPOLLHUP: both directions are closed; nothing more can be sent.
    pub hangup: bool,
    /// EPOLLERR: a socket error is pending (a reset, typically).
    pub error: bool,
}

/// One event from [`Poller::wait`].
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub token: Token,
    pub readiness: Readiness,
}

/// The buffer `epoll_wait` fills; reused on every iteration.
pub struct Events {
    raw: Vec<EpollEvent>,
    len: usize,
}

impl Events {
    pub fn with_capacity(capacity: usize) -> Events {
        Events {
            raw: vec![EpollEvent::empty(); capacity.max(1)],
            len: 0,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.raw[..self.len].iter().map(|e| Event {
            token: Token(e.data()),
            readiness: decode(e.events()),
        })
    }
}

/// An epoll instance. Dropping it closes the epoll descriptor, which removes
/// every registration.
pub struct Poller {
    epoll: Epoll,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        Ok(Poller {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
        })
    }

    /// The epoll descriptor itself, so a forked worker can close its copy
    /// (see `sys::close_in_child`).
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.epoll.0)
    }

    /// Starts watching `fd`.
    pub fn add(
        &self,
        fd: impl AsFd,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        let event = EpollEvent::new(encode(interest, trigger), token.0);
        Ok(self.epoll.add(fd, event)?)
    }

    /// Starts watching a listening socket that other processes watch too,
    /// with `EPOLLEXCLUSIVE`: when a connection arrives, the kernel wakes
    /// one (or a few) of the waiting epoll instances instead of all of them.
    /// Without it, every worker wakes for every connection and all but one
    /// find the accept queue empty: the thundering herd.
    pub fn add_exclusive(&self, fd: impl AsFd, token: Token, trigger: Trigger) -> io::Result<()> {
        // EPOLLEXCLUSIVE combines only with EPOLLIN, EPOLLOUT, EPOLLWAKEUP
        // and EPOLLET (epoll_ctl(2)); EPOLLRDHUP would make it EINVAL.
        let mut flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
        if trigger == Trigger::Edge {
            flags |= EpollFlags::EPOLLET;
        }
        Ok(self.epoll.add(fd, EpollEvent::new(flags, token.0))?)
    }

    /// Changes what `fd` is watched for. Under edge triggering this also
    /// re-arms it: if `fd` is already ready for the new interest, the next
    /// wait reports it, even though no new edge happened.
    pub fn modify(
        &self,
        fd: impl AsFd,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        let _span = tracing::info_span!(
            "epoll_ctl_mod",
            fd = fd.as_fd().as_raw_fd(),
            read = interest.read,
            write = interest.write
        )
        .entered();
        let mut event = EpollEvent::new(encode(interest, trigger), token.0);
        Ok(self.epoll.modify(fd, &mut event)?)
    }

    /// Stops watching `fd`. Closing a descriptor also removes it, but only
    /// once every duplicate of it is closed; deleting first is explicit.
    pub fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        Ok(self.epoll.delete(fd)?)
    }

    /// Waits until at least one event is ready or `timeout` passes (`None`:
    /// wait forever). `Err` of kind `Interrupted` means a signal arrived.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            // Round up, so a 0.4 ms deadline waits 1 ms instead of spinning.
            Some(t) => {
                let ms = t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
            }
        };
        events.len = 0;
        let span = tracing::info_span!("epoll_wait", events = tracing::field::Empty).entered();
        events.len = self.epoll.wait(&mut events.raw, timeout)?;
        span.record("events", events.len);
        Ok(())
    }
}

fn encode(interest: Interest, trigger: Trigger) -> EpollFlags {
    let mut flags = EpollFlags::empty();
    if interest.read {
        // RDHUP comes with read interest only: once the peer's FIN has been
        // read we drop read interest, and a level-triggered RDHUP left armed
        // would be reported on every wait, a busy loop.
        flags |= EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
    }
    if interest.write {
        flags |= EpollFlags::EPOLLOUT;
    }
    if trigger == Trigger::Edge {
        flags |= EpollFlags::EPOLLET;
    }
    // EPOLLERR and EPOLLHUP are always reported; no need to ask.
    flags
}

fn decode(flags: EpollFlags) -> Readiness {
    Readiness {
        readable: flags.contains(EpollFlags::EPOLLIN),
        writable: flags.contains(EpollFlags::EPOLLOUT),
        read_closed: flags.contains(EpollFlags::EPOLLRDHUP),
        hangup: flags.contains(EpollFlags::EPOLLHUP),
        error: flags.contains(EpollFlags::EPOLLERR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn level_reports_again_edge_reports_once() {
        for (trigger, expected) in [(Trigger::Level, 2), (Trigger::Edge, 1)] {
            let poller = Poller::new().unwrap();
            let (mut a, b) = UnixStream::pair().unwrap();
            let read_only = Interest {
                read: true,
                write: false,
            };
            poller.add(&b, Token(7), read_only, trigger).unwrap();
            a.write_all(b"x").unwrap();
            let mut events = Events::with_capacity(4);
            let mut seen = 0;
            for _ in 0..2 {
                poller
                    .wait(&mut events, Some(Duration::from_millis(20)))
                    .unwrap();
                for e in events.iter() {
                    assert_eq!(e.token, Token(7));
                    assert!(e.readiness.readable);
                    seen += 1;
                }
            }
            // Nobody read the byte: level keeps saying so, edge said it once.
            assert_eq!(seen, expected, "{trigger:?}");
        }
    }

    #[test]
    fn modify_rearms_an_edge_triggered_descriptor() {
        let poller = Poller::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let read = Interest {
            read: true,
            write: false,
        };
        poller.add(&b, Token(1), read, Trigger::Edge).unwrap();
        a.write_all(b"x").unwrap();
        let mut events = Events::with_capacity(4);
        poller.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(events.iter().count(), 1);
        poller.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(events.iter().count(), 0);
        poller.modify(&b, Token(1), read, Trigger::Edge).unwrap();
        poller.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(events.iter().count(), 1, "MOD re-checks readiness");
    }
}
