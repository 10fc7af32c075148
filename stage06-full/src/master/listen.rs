//! What the master listens on, and what each worker accepts from.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;

use super::{Dispatch, Master, MasterConfig, Steer};
use crate::sys;
use crate::worker::BACKLOG;

/// Binds the address: a listening socket under `pass` and `shared`, and
/// under `reuseport` a socket that only holds the port
/// (`sys::bind_reuseport`) while workers and their listeners come and go.
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
    /// What worker `i` accepts from: nothing under `pass` (its channel
    /// brings connections), the master's listener under `shared`, and under
    /// `reuseport` its own listener, made before the fork as nginx's master
    /// does (new for a respawned worker: the old one, and what waited in it,
    /// died with its worker), labelled with its CPU under `--steer cpu`.
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
