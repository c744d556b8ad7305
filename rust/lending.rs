//! Which memory a tensor may share without a copy: the allocations the core's takes made.
//!
//! A take's output is one fresh allocation. A tensor made of it may share that memory, as
//! `torch.from_numpy` shares a numpy array's, however the batch was wrapped on its way
//! (renamed, put in a table, passed through pyarrow and back): what counts is where its
//! buffers lie. Each byte range is lent to one tensor only; converting it again copies, so
//! that two tensors never write into each other. Memory the core did not allocate (a user's
//! arrays, a read-only map) is never shared.
//!
//! An allocation is known from the moment [`registered`] wraps it until its last Arrow
//! reference goes, when it leaves the registry before its memory is freed.

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use arrow_buffer::{Buffer, MutableBuffer};

/// One registered allocation: where it ends, and the byte ranges lent so far.
struct Block {
    end: usize,
    lent: Vec<(usize, usize)>,
}

/// The registered allocations by start address.
static BLOCKS: Mutex<BTreeMap<usize, Block>> = Mutex::new(BTreeMap::new());

fn blocks() -> std::sync::MutexGuard<'static, BTreeMap<usize, Block>> {
    // A panic while the lock was held leaves the map whole (every change is one call).
    BLOCKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The owner of a registered allocation: takes it out of the registry when dropped, before
/// its memory goes.
struct Registered {
    start: usize,
    _buffer: MutableBuffer,
}

impl Drop for Registered {
    fn drop(&mut self) {
        blocks().remove(&self.start);
    }
}

/// `buffer` as an immutable Buffer whose memory a tensor may share (see [`lend`]).
pub fn registered(buffer: MutableBuffer) -> Buffer {
    let len = buffer.len();
    if len == 0 {
        return buffer.into(); // nothing to share
    }
    let ptr = NonNull::new(buffer.as_ptr() as *mut u8).expect("a buffer's pointer");
    let start = ptr.as_ptr() as usize;
    blocks().insert(
        start,
        Block {
            end: start + len,
            lent: Vec::new(),
        },
    );
    let owner = Arc::new(Registered {
        start,
        _buffer: buffer,
    });
    // SAFETY: `owner` holds the allocation behind `ptr` (`len` bytes written) and keeps it
    // alive, unchanged, until the Buffer and all its slices are gone.
    unsafe { Buffer::from_custom_allocation(ptr, len, owner) }
}

/// Lend the bytes `start..start + len` to one tensor: true when they lie in one registered
/// allocation and no tensor shares any of them yet (they are then noted as lent).
pub fn lend(start: usize, len: usize) -> bool {
    if len == 0 {
        return false;
    }
    let Some(end) = start.checked_add(len) else {
        return false;
    };
    let mut blocks = blocks();
    let Some((_, block)) = blocks.range_mut(..=start).next_back() else {
        return false;
    };
    if end > block.end || block.lent.iter().any(|&(a, b)| start < b && a < end) {
        return false;
    }
    block.lent.push((start, end));
    true
}

#[allow(clippy::disallowed_methods)] // tests: sizes of their own
#[cfg(test)]
mod tests {
    use super::*;

    fn block(bytes: usize) -> Buffer {
        let mut b = MutableBuffer::with_capacity(bytes);
        b.resize(bytes, 7);
        registered(b)
    }

    #[test]
    fn each_range_is_lent_once_and_only_inside_a_registered_block() {
        let b = block(64);
        let start = b.as_ptr() as usize;
        assert!(lend(start, 16));
        assert!(!lend(start + 8, 16), "overlaps the first loan");
        assert!(lend(start + 16, 48));
        assert!(!lend(start + 60, 8), "runs past the block");
        let unregistered = [0u8; 32];
        assert!(!lend(unregistered.as_ptr() as usize, 8));
    }

    #[test]
    fn a_block_leaves_the_registry_with_its_last_reference() {
        let b = block(32);
        let start = b.as_ptr() as usize;
        let slice = b.slice(8);
        drop(b);
        assert!(lend(start + 8, 8), "a slice keeps the block");
        drop(slice);
        assert!(!blocks().contains_key(&start));
    }
}
