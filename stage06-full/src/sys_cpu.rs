//! Part of [`crate::sys`]: the CPUs of `--pin on` and `--steer cpu`.

use std::io;
use std::net::TcpListener;

use nix::libc;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use super::set_int_option;

// ANCHOR: incoming_cpu
/// Labels a `SO_REUSEPORT` listener with a CPU (`SO_INCOMING_CPU`,
/// socket(7)), which the kernel matches to a new connection's CPU since
/// Linux 6.1 (`reuseport_select_sock_by_hash` in net/core/sock_reuseport.c);
/// older kernels accept the label and keep to the hash.
pub fn label_incoming_cpu(listener: &TcpListener, cpu: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(cpu).map_err(io::Error::other)?;
    set_int_option(listener, libc::SOL_SOCKET, libc::SO_INCOMING_CPU, value)
}
// ANCHOR_END: incoming_cpu

/// The CPUs this process may run on (sched_getaffinity(2)), in order:
/// worker `i` takes the `i`-th (`--pin on`, `--steer cpu`).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Keeps this thread, and the threads it starts later, on `cpus`
/// (sched_setaffinity(2): a new thread inherits its starter's affinity).
pub fn pin_to(cpus: &[usize]) -> io::Result<()> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    Ok(sched_setaffinity(Pid::from_raw(0), &set)?)
}
