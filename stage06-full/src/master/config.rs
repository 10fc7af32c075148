//! What the master is told: how many workers, how connections reach
//! them (`Dispatch`), and whether the CPU a connection arrives on picks
//! its worker (`Steer`).

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
/// Whether the CPU a connection's packets arrive on picks its worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// Worker `i` is labelled with the `i`-th CPU the server may run on
    /// and kept on it while every CPU is busy (`--pin`). Under `reuseport`
    /// the kernel gives a new connection to the worker labelled with the
    /// CPU that received it (`SO_INCOMING_CPU`); under `pass` the master
    /// does, within a bound on the imbalance; under `shared` whichever
    /// worker wakes first takes it. Then, in every mode, an idle connection
    /// whose client sends from another worker's CPU is handed to that
    /// worker (`worker::shell::pairing`).
    /// On loopback that CPU is the client thread's: each client thread
    /// then talks to one worker. With `hash`, a client's connections are
    /// spread over every worker, and every worker is woken by every client
    /// thread: on two cores, about two thirds of the keep-alive rate
    /// (chapter 6, part 2, measures both).
    Cpu,
    /// `reuseport`: a hash of the connection's addresses and ports alone;
    /// `pass`: the least-loaded worker alone; no pinning, no hand-over.
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
    /// Whether a connection's CPU counts.
    pub steer: Steer,
    /// Each worker's loop; `max_conns` applies per worker.
    pub worker: worker::Config,
}
