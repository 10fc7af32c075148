//! Per-worker pools of buffers. A connection takes a read buffer when bytes
//! arrive and an output buffer when it has a response to send, and gives
//! both back as soon as it is idle: ten thousand idle keep-alive
//! connections hold ten thousand slab entries and no buffers. Reuse also
//! spares the allocator a malloc and a free per request.

/// A free list of equally sized buffers.
pub struct BufferPool {
    free: Vec<Vec<u8>>,
    pub size: usize,
    /// Read buffers are handed out full-length (zeroed once, when first
    /// allocated) so `read` can fill them; zeroing 32 KiB on every request
    /// would cost more than the allocation the pool saves. Output buffers
    /// are handed out empty, to be appended to.
    filled: bool,
    /// At most this many idle buffers are kept; more are freed.
    keep: usize,
    /// Buffers handed out that came from the free list, and that had to be
    /// allocated: the pool's hit rate.
    pub reused: u64,
    pub allocated: u64,
}

impl BufferPool {
    pub fn new(size: usize, keep: usize, filled: bool) -> BufferPool {
        BufferPool {
            free: Vec::new(),
            size,
            filled,
            keep,
            reused: 0,
            allocated: 0,
        }
    }

    /// A buffer, from the free list if one is there (see `filled`).
    pub fn take(&mut self) -> Vec<u8> {
        if let Some(buf) = self.free.pop() {
            self.reused += 1;
            return buf;
        }
        self.allocated += 1;
        if self.filled {
            vec![0; self.size]
        } else {
            Vec::with_capacity(self.size)
        }
    }

    /// Gives a buffer back. One that grew past `size` is freed rather than
    /// kept, so a single huge response cannot pin memory forever.
    pub fn give(&mut self, mut buf: Vec<u8>) {
        if self.free.len() < self.keep && buf.capacity() <= self.size * 2 {
            if self.filled {
                buf.resize(self.size, 0);
            } else {
                buf.clear();
            }
            self.free.push(buf);
        }
    }

    pub fn idle(&self) -> usize {
        self.free.len()
    }

    /// Moves up to `n` idle buffers into a pool of their own, for another
    /// thread to use for a while (the simulated Proactor's pool threads).
    /// A loan is not a use: nothing is counted until it comes back.
    pub fn lend(&mut self, n: usize) -> BufferPool {
        let free = self.free.split_off(self.free.len().saturating_sub(n));
        BufferPool {
            free,
            // Everything goes back to the lender, whose own bound applies.
            ..BufferPool::new(self.size, usize::MAX, self.filled)
        }
    }

    /// Takes a loan back: its buffers, as far as there is room to keep
    /// them, and what was counted while it was out.
    pub fn absorb(&mut self, loan: BufferPool) {
        self.reused += loan.reused;
        self.allocated += loan.allocated;
        for buf in loan.free {
            self.give(buf);
        }
    }
}

/// A worker's pools (read buffers of two sizes, output buffers), and
/// whether an idle connection gives its read buffer back (`--buffers
/// pooled`) or keeps it for life (`per-connection`, the naive design kept
/// for comparison).
pub struct Pools {
    /// Small read buffers (`FIRST_READ`), for a connection's first read.
    pub small: BufferPool,
    /// Read buffers of `READ_BUF`, once a read filled a small one.
    pub inputs: BufferPool,
    pub outputs: BufferPool,
    pub pooled: bool,
}

impl Pools {
    /// A loan for one job of a pool thread: room for a response (a head and
    /// a small body) and none for reading (the session has its buffer).
    pub fn lend(&mut self) -> Pools {
        Pools {
            small: self.small.lend(0),
            inputs: self.inputs.lend(0),
            outputs: self.outputs.lend(2),
            pooled: self.pooled,
        }
    }

    /// Gives a read buffer back to the pool of its size.
    pub fn give_input(&mut self, buf: Vec<u8>) {
        if buf.len() < self.inputs.size {
            self.small.give(buf);
        } else {
            self.inputs.give(buf);
        }
    }

    /// Takes a loan back (see [`BufferPool::absorb`]).
    pub fn absorb(&mut self, loan: Pools) {
        self.small.absorb(loan.small);
        self.inputs.absorb(loan.inputs);
        self.outputs.absorb(loan.outputs);
    }

    /// Buffers handed out so far that had to be allocated, and that came
    /// from a free list.
    pub fn counts(&self) -> (u64, u64) {
        let pools = [&self.small, &self.inputs, &self.outputs];
        (
            pools.iter().map(|p| p.allocated).sum(),
            pools.iter().map(|p| p.reused).sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_what_it_is_given_and_keeps_a_bounded_number() {
        let mut pool = BufferPool::new(1024, 2, false);
        let a = pool.take();
        let b = pool.take();
        let c = pool.take();
        assert_eq!(pool.allocated, 3);
        pool.give(a);
        pool.give(b);
        pool.give(c);
        assert_eq!(pool.idle(), 2, "only `keep` buffers are kept");
        let d = pool.take();
        assert!(d.is_empty() && d.capacity() >= 1024);
        assert_eq!(pool.reused, 1);
        let mut huge = Vec::with_capacity(1 << 20);
        huge.push(1);
        pool.give(huge);
        assert_eq!(pool.idle(), 1, "an overgrown buffer is freed");
    }

    #[test]
    fn a_loan_comes_back_with_its_buffers_and_its_counts() {
        let mut pool = BufferPool::new(64, 8, false);
        let bufs: Vec<Vec<u8>> = (0..3).map(|_| pool.take()).collect();
        for b in bufs {
            pool.give(b);
        }
        let mut loan = pool.lend(2);
        assert_eq!((pool.idle(), loan.idle()), (1, 2));
        let a = loan.take();
        let b = loan.take();
        let c = loan.take();
        loan.give(a);
        loan.give(b);
        loan.give(c);
        pool.absorb(loan);
        assert_eq!(pool.idle(), 4, "the loaned buffers and the new one");
        assert_eq!((pool.allocated, pool.reused), (4, 2));
    }

    #[test]
    fn a_filled_pool_hands_out_full_length_buffers() {
        let mut pool = BufferPool::new(64, 4, true);
        let mut a = pool.take();
        assert_eq!(a.len(), 64);
        a[0] = 9;
        pool.give(a);
        let b = pool.take();
        assert_eq!(b.len(), 64, "no zeroing or resizing on reuse");
    }
}
