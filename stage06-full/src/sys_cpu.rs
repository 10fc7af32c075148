//! Which CPU a connection arrives on, for `--steer cpu`: the CPUs the
//! server may run on, a listener's label, a connection's CPU, the CPU this
//! thread runs on, where a worker may run and how busy each CPU is. Part of
//! [`crate::sys`], in a file of its own.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

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

/// The CPU that last processed a packet of `stream` (`SO_INCOMING_CPU`,
/// socket(7)); `None` if the kernel does not say.
pub fn incoming_cpu(stream: &TcpStream) -> Option<usize> {
    let mut value: nix::libc::c_int = -1;
    let mut len = std::mem::size_of::<nix::libc::c_int>() as nix::libc::socklen_t;
    // SAFETY: the descriptor is open while `stream` is borrowed, and the
    // pointer and length describe `value`, which outlives the call.
    let rc = unsafe {
        nix::libc::getsockopt(
            stream.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_INCOMING_CPU,
            (&mut value as *mut nix::libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return None;
    }
    usize::try_from(value).ok()
}

/// The CPU this thread is running on now (sched_getcpu(3): glibc reads it
/// from memory the kernel keeps current, rseq(2), with no system call);
/// `None` if it cannot say.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: no arguments, no memory of ours; it returns -1 on failure.
    let cpu = unsafe { nix::libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// The CPUs this process may run on (sched_getaffinity(2)), in order: the
/// labels `--steer cpu` hands out, one per worker.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = nix::sched::sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..nix::sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Keeps this thread (and the threads it starts later) on `cpus`
/// (sched_setaffinity(2)).
pub fn pin_to(cpus: &[usize]) -> io::Result<()> {
    Ok(nix::sched::sched_setaffinity(
        Pid::from_raw(0),
        &cpu_set(cpus)?,
    )?)
}

/// Keeps this thread, and every other thread of the process, on `cpus`:
/// the affinity belongs to a thread, not a process (sched_setaffinity(2)),
/// so this thread is set first (its error is the answer), then each other
/// task listed in `/proc/self/task`, as far as it lets itself be moved. A
/// thread that ends meanwhile is gone; one started meanwhile inherits its
/// starter's set, and the next move catches it; the kernel's io_uring
/// workers (`iou-wrk-*`) refuse any set and keep the ring's own
/// (`io_init_new_worker` in io_uring/io-wq.c marks them
/// `PF_NO_SETAFFINITY`, which `sched_setaffinity` in
/// kernel/sched/syscalls.c answers with `EINVAL`).
pub fn pin_process_to(cpus: &[usize]) -> io::Result<()> {
    let set = cpu_set(cpus)?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set)?;
    let me = nix::unistd::gettid();
    for entry in std::fs::read_dir("/proc/self/task")? {
        let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if Pid::from_raw(tid) != me {
            let _ = nix::sched::sched_setaffinity(Pid::from_raw(tid), &set);
        }
    }
    Ok(())
}

fn cpu_set(cpus: &[usize]) -> io::Result<nix::sched::CpuSet> {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    Ok(set)
}

/// The CPU time this process (all its threads) has used so far
/// (`CLOCK_PROCESS_CPUTIME_ID`, clock_gettime(2)).
pub fn process_cpu_time() -> io::Result<std::time::Duration> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)?;
    Ok(std::time::Duration::from(t))
}

/// The kernel's time counters per CPU, as text (`/proc/stat`, proc(5)):
/// how long each CPU has been idle and busy since boot.
pub fn read_cpu_times() -> io::Result<String> {
    std::fs::read_to_string("/proc/stat")
}
