//! What the master listens on, and what each worker accepts from.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;

use super::{Dispatch, Master, MasterConfig, Steer};
use crate::sys;
use crate::worker::BACKLOG;

/// Binds the address: a listening socket under `pass` and `shared` (with
/// `TCP_DEFER_ACCEPT` if asked), and under `reuseport` a bound socket that
/// never listens and only holds the port, the group's first member, while
/// workers and their listeners come and go.
pub(super) fn bind(
    config: &MasterConfig,
) -> io::Result<(Option<TcpListener>, Option<OwnedFd>, SocketAddr)> {
    match config.dispatch {
        Dispatch::Pass | Dispatch::Shared => {
            let listener = sys::listen_nonblocking(config.addr, BACKLOG)?;
            if config.worker.defer_accept > 0 {
                sys::defer_accept(&listener, config.worker.defer_accept)?;
            }
            let addr = listener.local_addr()?;
            Ok((Some(listener), None, addr))
        }
        Dispatch::ReusePort => {
            let holder = sys::bind_reuseport(config.addr)?;
            let addr = sys::bound_addr(&holder)?;
            Ok((None, Some(holder), addr))
        }
    }
}

impl Master {
    /// What worker `i` accepts from: nothing under `pass` (connections come
    /// down its channel), the master's listener under `shared`, and under
    /// `reuseport` a listener of its own in the port's group, made here
    /// before the fork as nginx's master makes them (a respawned worker
    /// gets a new one: the kernel closed the old one, and reset what waited
    /// in it, when its worker died). With `--steer cpu` that listener is
    /// labelled with the worker's CPU.
    pub(super) fn listener_for(&self, i: usize) -> io::Result<Option<TcpListener>> {
        let listener = match self.config.dispatch {
            Dispatch::Pass => return Ok(None),
            Dispatch::Shared => {
                return self
                    .listener
                    .as_ref()
                    .map(TcpListener::try_clone)
                    .transpose();
            }
            Dispatch::ReusePort => sys::listen_reuseport(self.addr, BACKLOG)?,
        };
        if self.config.worker.defer_accept > 0 {
            sys::defer_accept(&listener, self.config.worker.defer_accept)?;
        }
        if let (Steer::Cpu, Some(cpu)) = (self.config.steer, self.cpu_of(i))
            && let Err(e) = sys::label_incoming_cpu(&listener, cpu)
        {
            // A kernel without the option: the hash still works.
            eprintln!(
                "cannot label worker {i}'s listener with CPU {cpu} ({e}); connections spread by hash"
            );
        }
        Ok(Some(listener))
    }

    /// The CPU of place `i` under `--pin on` and `--steer cpu`: a respawned
    /// worker takes the same place, so the same CPU.
    pub(super) fn cpu_of(&self, i: usize) -> Option<usize> {
        (!self.cpus.is_empty()).then(|| self.cpus[i % self.cpus.len()])
    }
}
