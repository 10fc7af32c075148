//! A fixed pool of threads fed through a channel, the design of the Rust
//! Book's web server (chapter 21).
//!
//! The accept loop is the only producer; every worker thread takes the next
//! job from the shared receiver. The pool bounds the number of threads, which
//! bounds memory, but a blocking worker serves one connection from accept to
//! EOF: with N workers busy, connection N+1 waits in the channel exactly as a
//! second client waits in iterative mode. Bounding threads without that
//! head-of-line blocking needs non-blocking I/O (stage02).

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

type Job = Box<dyn FnOnce() + Send + 'static>;

// ANCHOR: pool
// ANCHOR: pool_type
/// N worker threads and the sending half of their job channel.
pub struct ThreadPool {
    /// Created in [`ThreadPool::new`]; taken and dropped first in `Drop`,
    /// which closes the channel and tells every worker to finish.
    sender: Option<Sender<Job>>,
    /// Joined in `Drop`, after the channel is closed.
    workers: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    /// Starts `size` worker threads (at least one).
    pub fn new(size: usize) -> io::Result<ThreadPool> {
        // LAB s1-pool BEGIN: size.max(1) workers sharing one Arc<Mutex<Receiver>>
        let (sender, receiver) = mpsc::channel::<Job>();
        // std's Receiver has a single owner; a Mutex lets the workers take
        // turns. The lock is held only while taking a job, not while running
        // it, because `recv()`'s guard is dropped at the end of the `let`.
        let receiver = Arc::new(Mutex::new(receiver));
        let mut workers = Vec::with_capacity(size.max(1));
        for id in 0..size.max(1) {
            let receiver = Arc::clone(&receiver);
            let handle = thread::Builder::new()
                .name(format!("pool worker {id}"))
                .spawn(move || worker_loop(&receiver))?;
            workers.push(handle);
        }
        Ok(ThreadPool {
            sender: Some(sender),
            workers,
        })
        // LAB END
    }

    /// Queues `job` for the next free worker.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) {
        // LAB s1-pool BEGIN: send the boxed job; if no worker is left, drop it quietly
        if let Some(sender) = &self.sender {
            // Fails only if every worker has exited, which happens only in
            // `Drop`; the job (and the connection it owns) is then dropped.
            let _ = sender.send(Box::new(job));
        }
        // LAB END
    }
}
// ANCHOR_END: pool_type

// ANCHOR: worker_loop
fn worker_loop(receiver: &Mutex<Receiver<Job>>) {
    // LAB s1-pool BEGIN: jobs until the channel closes; survive poison and panics
    loop {
        let job = match receiver.lock() {
            Ok(guard) => guard.recv(),
            // A job panicked while a worker held the lock; the receiver
            // itself is intact, so keep serving.
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            // A job that panics must not take its worker with it, or the pool
            // would shrink by one thread per bad connection until it served
            // nobody. The panic message still reaches stderr.
            Ok(job) => {
                let _ = panic::catch_unwind(AssertUnwindSafe(job));
            }
            // The sender was dropped: the pool is shutting down.
            Err(_) => return,
        }
    }
    // LAB END
}
// ANCHOR_END: worker_loop
// ANCHOR_END: pool

impl Drop for ThreadPool {
    fn drop(&mut self) {
        // LAB s1-pool BEGIN: close the channel, then join every worker
        drop(self.sender.take());
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        // LAB END
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Drops `pool` on another thread and waits up to 10 s for the drop to
    /// return: a `Drop` that never returns fails the test, not the run.
    fn drop_within_10_s(pool: ThreadPool) {
        let (done, dropped) = mpsc::channel();
        thread::spawn(move || {
            drop(pool);
            let _ = done.send(());
        });
        assert!(
            dropped.recv_timeout(Duration::from_secs(10)).is_ok(),
            "dropping the pool did not return within 10 s: Drop must close the channel \
             before it joins the workers, or they wait in recv for ever"
        );
    }

    #[test]
    fn runs_every_job_before_drop_returns() {
        let done = Arc::new(AtomicUsize::new(0));
        let pool = ThreadPool::new(3).unwrap();
        for _ in 0..100 {
            let done = Arc::clone(&done);
            pool.execute(move || {
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        drop_within_10_s(pool);
        let done = done.load(Ordering::SeqCst);
        assert!(
            done == 100,
            "{done} of 100 jobs had run when drop returned: Drop must join every worker"
        );
    }

    /// A job still running when the pool is dropped finishes first: the
    /// drop waits for it (joins its worker) rather than leaving it behind.
    #[test]
    fn drop_waits_for_a_job_still_running() {
        let done = Arc::new(AtomicUsize::new(0));
        let pool = ThreadPool::new(1).unwrap();
        let counter = Arc::clone(&done);
        pool.execute(move || {
            thread::sleep(Duration::from_millis(200));
            counter.fetch_add(1, Ordering::SeqCst);
        });
        drop_within_10_s(pool);
        assert!(
            done.load(Ordering::SeqCst) == 1,
            "drop returned while a job was still running: Drop must join every worker"
        );
    }

    /// Waits up to 10 s for a job to say it ran.
    fn ran_within_10_s(ran: &mpsc::Receiver<()>) -> bool {
        ran.recv_timeout(Duration::from_secs(10)).is_ok()
    }

    #[test]
    fn a_panicking_job_does_not_stop_the_pool() {
        let pool = ThreadPool::new(1).unwrap();
        pool.execute(|| panic!("job failed"));
        let (tx, ran) = mpsc::channel();
        pool.execute(move || tx.send(()).unwrap());
        // The single worker survived the panic and ran the second job.
        assert!(
            ran_within_10_s(&ran),
            "the job after a panicking one never ran: the panic took the pool's only worker \
             with it (catch it with catch_unwind)"
        );
        // Dropped on the side: this test is not about Drop.
        thread::spawn(move || drop(pool));
    }

    #[test]
    fn a_pool_of_size_zero_still_runs_jobs() {
        let pool = ThreadPool::new(0).unwrap();
        let (tx, ran) = mpsc::channel();
        pool.execute(move || tx.send(()).unwrap());
        assert!(
            ran_within_10_s(&ran),
            "a pool asked for 0 workers ran no job: new must start at least one"
        );
        thread::spawn(move || drop(pool));
    }
}
