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

/// `n` copies of `value` (what `vec![value; n]` makes), or `Error::Memory` as [`reserve`].
pub fn filled<T: Clone>(n: usize, value: T) -> Result<Vec<T>> {
    let mut v = reserve(n)?;
    #[allow(clippy::disallowed_methods)] // the room is reserved above
    v.resize(n, value);
    Ok(v)
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
        assert!(matches!(
            filled(usize::MAX / 4, 0u64),
            Err(Error::Memory(_))
        ));
        assert_eq!(filled(3, 7u8).unwrap(), [7, 7, 7]);
    }
}
