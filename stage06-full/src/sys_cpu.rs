//! CPUs, for `--pin on` and `--steer cpu`: the CPUs the server may run
//! on, keeping a worker on one of them, and labelling a worker's
//! `SO_REUSEPORT` listener with its CPU. Part of [`crate::sys`], in a file
//! of its own.

use std::io;
use std::net::TcpListener;

use nix::unistd::Pid;

use super::set_int_option;

// ANCHOR: incoming_cpu
/// Labels a `SO_REUSEPORT` listener with a CPU (`SO_INCOMING_CPU`,
/// socket(7)). Since Linux 6.1, when any listener of the group carries a
/// label, the kernel gives a new connection to the listener labelled with
/// the CPU that is processing the connection's packets, and falls back to
/// the hash when none is (`reuseport_select_sock_by_hash` in
/// net/core/sock_reuseport.c). Older kernels accept the label and keep to
/// the hash.
pub fn label_incoming_cpu(listener: &TcpListener, cpu: usize) -> io::Result<()> {
    let value = nix::libc::c_int::try_from(cpu).map_err(io::Error::other)?;
    set_int_option(
        listener,
        nix::libc::SOL_SOCKET,
        nix::libc::SO_INCOMING_CPU,
        value,
    )
}
// ANCHOR_END: incoming_cpu

/// The CPUs this process may run on (sched_getaffinity(2)), in order:
/// worker `i` takes the `i`-th (`--pin on`, `--steer cpu`).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = nix::sched::sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..nix::sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Keeps this thread, and the threads it starts later, on `cpus`
/// (sched_setaffinity(2): the affinity belongs to a thread, and a new
/// thread inherits its starter's). A worker calls it right after the fork,
/// while its only thread is the one that will start the others.
pub fn pin_to(cpus: &[usize]) -> io::Result<()> {
    Ok(nix::sched::sched_setaffinity(
        Pid::from_raw(0),
        &cpu_set(cpus)?,
    )?)
}

fn cpu_set(cpus: &[usize]) -> io::Result<nix::sched::CpuSet> {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    Ok(set)
}
