//! How much memory there is, and allocations sized by a caller's arguments that fail with an
//! error instead of an abort, or of the kernel killing the process once the pages are touched.

use crate::error::{Error, Result};

/// Free memory as the kernel reports it, when it does.
pub fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Below this many bytes an allocation is granted without asking the kernel what is free:
/// reading /proc/meminfo costs more than a batch's padding, and a batch-sized request cannot
/// be what takes a machine down.
const ASK_FROM: usize = 64 << 20;

/// Whether `bytes` is more than the memory the kernel reports free (asked only from
/// [`ASK_FROM`] bytes on).
fn over_free(bytes: usize) -> bool {
    bytes >= ASK_FROM && available_bytes().is_some_and(|free| bytes as u64 > free)
}

/// An error unless `bytes` more fit in the memory the kernel reports free: for a result made
/// of several allocations, checked for all of them before the first.
pub fn check(bytes: usize, what: &str) -> Result<()> {
    if over_free(bytes) {
        return Err(Error::Memory(format!(
            "{what} would take {bytes} bytes, more than the memory free; ask for a smaller size"
        )));
    }
    Ok(())
}

/// An empty vector with room for `n` items, or `Error::Memory` (a MemoryError) when they
/// would not fit: over the memory the kernel reports free (an allocation the kernel grants
/// lazily would be filled, and the process killed, only later), or refused by the allocator.
pub fn reserve<T>(n: usize) -> Result<Vec<T>> {
    let size = std::mem::size_of::<T>();
    let refuse = || {
        Error::Memory(format!(
            "{n} values of {size} bytes do not fit in memory; ask for a smaller size"
        ))
    };
    let bytes = n.checked_mul(size).ok_or_else(refuse)?;
    if over_free(bytes) {
        return Err(refuse());
    }
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| refuse())?;
    Ok(v)
}

/// `n` zero bytes, refused as [`reserve`] refuses them. The allocator's zeroed memory (calloc)
/// is not written here: the kernel maps its pages as they are first written, so a buffer that
/// a decoder leaves mostly unwritten (a file that ends early) costs only what it writes.
pub fn zeroed(n: usize) -> Result<Vec<u8>> {
    let refuse = || {
        Error::Memory(format!(
            "{n} bytes do not fit in memory; ask for a smaller size"
        ))
    };
    if over_free(n) {
        return Err(refuse());
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(n).map_err(|_| refuse())?;
    // SAFETY: the layout's size is not zero.
    #[allow(clippy::disallowed_methods)] // checked against the memory free above
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        return Err(refuse());
    }
    // SAFETY: `ptr` comes from the global allocator with the layout of `n` bytes (a u8's
    // alignment), and its `n` bytes are initialized (zero): a Vec of length and capacity `n`.
    Ok(unsafe { Vec::from_raw_parts(ptr, n, n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_the_machine_has_is_an_error() {
        assert!(matches!(
            reserve::<u64>(usize::MAX / 4),
            Err(Error::Memory(_))
        ));
        if let Some(free) = available_bytes() {
            let over = (free / 8 + 1) as usize;
            assert!(matches!(reserve::<u64>(over), Err(Error::Memory(_))));
        }
        assert_eq!(reserve::<u8>(16).unwrap().capacity(), 16);
    }

    #[test]
    fn zeroed_bytes_are_zero_or_an_error() {
        assert_eq!(zeroed(0).unwrap(), Vec::<u8>::new());
        let bytes = zeroed(100_000).unwrap();
        assert!(bytes.len() == 100_000 && bytes.iter().all(|&b| b == 0));
        assert!(matches!(zeroed(usize::MAX / 2), Err(Error::Memory(_))));
    }
}
