//! Output buffers handed out again once every batch made in them is gone.
//!
//! A loader makes batches of one size over and over. Allocated afresh, they sit in the
//! producing thread's malloc arena after another thread frees them, and the arena keeps
//! growing (by megabytes for embedding batches; by a few dozen small tensors before it starts
//! reusing them); from a pool, an epoch holds only the batches in flight.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use arrow_buffer::{Buffer, MutableBuffer};

#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<Vec<MutableBuffer>>,
    /// The most buffers kept for reuse.
    keep: usize,
}

impl BufferPool {
    pub fn new(keep: usize) -> Arc<Self> {
        Arc::new(BufferPool {
            free: Mutex::new(Vec::new()),
            keep,
        })
    }

    /// An empty buffer with room for at least `capacity` bytes: one kept for reuse when there
    /// is one large enough, else a new one.
    pub fn take(&self, capacity: usize) -> MutableBuffer {
        let mut free = self.free.lock().expect("buffer pool lock");
        if let Some(k) = free.iter().position(|b| b.capacity() >= capacity) {
            let mut buffer = free.swap_remove(k);
            buffer.clear();
            return buffer;
        }
        drop(free);
        #[allow(clippy::disallowed_methods)] // callers check the size with memory::check
        MutableBuffer::with_capacity(capacity)
    }

    /// `buffer` as an immutable Buffer whose memory comes back to this pool when the last
    /// reference to it goes.
    pub fn share(self: &Arc<Self>, buffer: MutableBuffer) -> Buffer {
        let ptr = NonNull::new(buffer.as_ptr() as *mut u8).expect("a buffer's pointer");
        let len = buffer.len();
        let lent = Arc::new(Lent {
            buffer: Some(buffer),
            pool: self.clone(),
        });
        // SAFETY: `lent` owns the allocation behind `ptr` (`len` bytes written) and keeps it
        // alive, unchanged, until the Buffer and all its slices are gone.
        unsafe { Buffer::from_custom_allocation(ptr, len, lent) }
    }

    /// Buffers kept for reuse now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.lock().expect("buffer pool lock").len()
    }
}

/// A pool's buffer while batches use it.
struct Lent {
    buffer: Option<MutableBuffer>,
    pool: Arc<BufferPool>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        let Some(buffer) = self.buffer.take() else {
            return;
        };
        // Never waits: a lock held elsewhere (by a thread that panicked, by a producer at
        // this moment, or in a forked child by a thread that no longer exists) only means
        // the buffer is freed instead.
        if let Ok(mut free) = self.pool.free.try_lock() {
            if free.len() < self.pool.keep {
                free.push(buffer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_their_last_user_goes() {
        let pool = BufferPool::new(2);
        let mut a = pool.take(1000);
        a.extend_from_slice(&[7u8; 1000]);
        let first = a.as_ptr();
        let shared = pool.share(a);
        let slice = shared.slice_with_length(10, 20);
        drop(shared);
        assert_eq!(pool.kept(), 0, "a slice still uses it");
        assert_eq!(slice.as_slice(), &[7u8; 20]);
        drop(slice);
        assert_eq!(pool.kept(), 1);
        // Reused for a request it can hold, emptied; a larger one gets a new buffer.
        let b = pool.take(800);
        assert_eq!((b.as_ptr(), b.len()), (first, 0));
        let c = pool.take(5000);
        assert_ne!(c.as_ptr(), first);
        // No more than `keep` are kept.
        for buffer in [b, c, pool.take(10)] {
            drop(pool.share(buffer));
        }
        assert_eq!(pool.kept(), 2);
    }
}
