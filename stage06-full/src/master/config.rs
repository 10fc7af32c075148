//! What the master is told on the command line, and the choices it names.

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
/// `--steer`, under `reuseport`: how the kernel picks a worker's listener
/// for a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// A hash of the connection's addresses and ports.
    Hash,
    /// The listener labelled with the CPU that processes the connection's
    /// packets (`SO_INCOMING_CPU`, Linux 6.1 and later), worker `i`'s with
    /// the `i`-th: over a network, the CPU its receive queue interrupts (RSS,
    /// Documentation/networking/scaling.rst), on loopback the client's. With
    /// `--pin on`, a connection is served on the CPU its packets arrive on.
    Cpu,
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
    /// Under `reuseport`, whether a connection's CPU picks its worker.
    pub steer: Steer,
    /// Worker `i` kept on the `i`-th CPU the server may run on.
    pub pin: bool,
    /// Each worker's loop; `max_conns` applies per worker.
    pub worker: worker::Config,
}
