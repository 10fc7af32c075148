// ANCHOR: format
//! The messages of the master-worker channel, one per `SOCK_SEQPACKET`
//! packet (the socket keeps packet boundaries: no framing code).
//!
//! | message | direction | bytes | descriptors |
//! |---|---|---|---|
//! | `READY` | worker → master | `R` | none |
//! | `LOAD` | worker → master | `L`, live u32, taken u64, received u64 | none |
//! | `CONN` | master → worker | `C`, count u16 | `count` connections, 1 to [`BATCH`](super::BATCH) |
//!
//! Numbers are little-endian. In `LOAD`, *live* is the worker's open
//! connections, *taken* every connection it has taken in, and *received*
//! every connection the master has passed it (`CONN` counts summed), so the
//! master knows how many are still in flight.
// ANCHOR_END: format

pub const READY: u8 = b'R';
pub const LOAD: u8 = b'L';
pub const CONN: u8 = b'C';
pub const LOAD_LEN: usize = 1 + 4 + 8 + 8;
pub const CONN_LEN: usize = 1 + 2;

/// A worker's load, as reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    pub live: u32,
    pub taken: u64,
    pub received: u64,
}

pub fn load(l: Load) -> [u8; LOAD_LEN] {
    let mut m = [0u8; LOAD_LEN];
    m[0] = LOAD;
    m[1..5].copy_from_slice(&l.live.to_le_bytes());
    m[5..13].copy_from_slice(&l.taken.to_le_bytes());
    m[13..21].copy_from_slice(&l.received.to_le_bytes());
    m
}

pub fn parse_load(m: &[u8]) -> Option<Load> {
    if m.len() != LOAD_LEN || m[0] != LOAD {
        return None;
    }
    Some(Load {
        live: u32::from_le_bytes(m[1..5].try_into().ok()?),
        taken: u64::from_le_bytes(m[5..13].try_into().ok()?),
        received: u64::from_le_bytes(m[13..21].try_into().ok()?),
    })
}

pub fn conn(count: usize) -> [u8; CONN_LEN] {
    let count = u16::try_from(count).unwrap_or(u16::MAX);
    let mut m = [CONN; CONN_LEN];
    m[1..3].copy_from_slice(&count.to_le_bytes());
    m
}

/// The number of connections a `CONN` message says it carries.
pub fn parse_conn(m: &[u8]) -> Option<usize> {
    if m.len() != CONN_LEN || m[0] != CONN {
        return None;
    }
    Some(usize::from(u16::from_le_bytes(m[1..3].try_into().ok()?)))
}
