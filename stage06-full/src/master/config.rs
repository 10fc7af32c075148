//! What the master is told: how many workers, how connections reach
//! them (`Dispatch`), and under `reuseport` how the kernel picks one
//! (`Steer`).

use std::net::SocketAddr;
use std::str::FromStr;

use crate::worker;

/// How connections reach the workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// The master accepts and passes each connection to the worker with the
    /// fewest live connections, over a socketpair with `SCM_RIGHTS`.
    Pass,
    /// Every worker watches the inherited listener and accepts for itself.
    Shared,
    /// Every worker has its own `SO_REUSEPORT` listener; the kernel chooses.
    ReusePort,
}

impl FromStr for Dispatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pass" => Ok(Dispatch::Pass),
            "shared" => Ok(Dispatch::Shared),
            "reuseport" => Ok(Dispatch::ReusePort),
            other => Err(format!(
                "unknown dispatch {other:?}: use pass, shared or reuseport"
            )),
        }
    }
}

// ANCHOR: steer
/// With `reuseport`: how the kernel chooses a worker's listener for a new
/// connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// Worker `i`'s listener is labelled with the `i`-th CPU the server may
    /// run on (`SO_INCOMING_CPU`): a connection goes to the worker labelled
    /// with the CPU that received it, and all of one client thread's
    /// connections to the same worker while that thread stays on its CPU.
    /// On loopback that CPU is the client's: each client thread then talks
    /// to one worker. With `hash`, a client's connections are spread over
    /// every worker, and every worker is woken by every client thread: on
    /// two cores, about two thirds of the keep-alive rate (chapter 6, part
    /// 2, measures both).
    Cpu,
    /// A hash of the connection's addresses and ports alone.
    Hash,
}
// ANCHOR_END: steer

impl FromStr for Steer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Steer::Cpu),
            "hash" => Ok(Steer::Hash),
            other => Err(format!("unknown steer {other:?}: use cpu or hash")),
        }
    }
}

/// What the master is told on the command line.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    pub addr: SocketAddr,
    pub workers: usize,
    pub dispatch: Dispatch,
    /// In `shared` mode, register the listener with EPOLLEXCLUSIVE.
    pub exclusive: bool,
    /// In `reuseport` mode, how the kernel picks a worker.
    pub steer: Steer,
    /// Each worker's loop; `max_conns` applies per worker.
    pub worker: worker::Config,
}
