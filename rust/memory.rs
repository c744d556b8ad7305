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

/// The CRC-32 (IEEE, as zlib computes it) of the first `len` bytes of the open file `fd`,
/// read in chunks at their offsets (the file's own position untouched): the node tier's
/// piece checksum, taken without mapping the file.
pub fn crc32_of_file(fd: std::os::fd::RawFd, len: u64) -> std::io::Result<u32> {
    use std::os::unix::fs::FileExt;
    // SAFETY: the caller keeps `fd` open for the call; ManuallyDrop leaves it open after.
    let file = std::mem::ManuallyDrop::new(unsafe {
        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd)
    });
    let mut hasher = crc32fast::Hasher::new();
    #[allow(clippy::disallowed_methods)] // at most 1 MiB, a constant
    let mut chunk = vec![0u8; (1 << 20).min(len as usize)];
    let mut at = 0u64;
    while at < len {
        let n = chunk.len().min((len - at) as usize);
        file.read_exact_at(&mut chunk[..n], at)?;
        hasher.update(&chunk[..n]);
        at += n as u64;
    }
    Ok(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_checksum_is_zlib_crc32_of_its_first_bytes() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let path = std::env::temp_dir().join(format!("lancetorch-crc-{}", std::process::id()));
        let mut file = std::fs::File::create(&path).unwrap();
        // 3 MiB and a bit of a pattern, then a tail left out of the checksum.
        let body: Vec<u8> = (0..(3 << 20) + 7).map(|i: u32| (i % 251) as u8).collect();
        file.write_all(&body).unwrap();
        file.write_all(b"tail").unwrap();
        let reader = std::fs::File::open(&path).unwrap();
        let fd = reader.as_raw_fd();
        assert_eq!(
            crc32_of_file(fd, body.len() as u64).unwrap(),
            crc32fast::hash(&body)
        );
        assert_eq!(crc32_of_file(fd, 0).unwrap(), 0);
        std::fs::write(&path, b"123456789").unwrap();
        let check = std::fs::File::open(&path).unwrap();
        assert_eq!(crc32_of_file(check.as_raw_fd(), 9).unwrap(), 0xCBF4_3926);
        assert!(crc32_of_file(check.as_raw_fd(), 10).is_err()); // past its end
        std::fs::remove_file(&path).unwrap();
    }

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

    /// The `(start..` ranges of `code` collected into a collection whose end is not a
    /// `.len()` of something held, with their line numbers: statements (to the next `;`)
    /// that hold both a range from a literal and a `collect`, unless they say `// bounded:`.
    fn collected_ranges(code: &str) -> Vec<(usize, String)> {
        let mut found = Vec::new();
        let mut offset = 0;
        for statement in code.split_inclusive(';') {
            let mut rest = statement;
            while let Some(at) = rest.find("(0..").or_else(|| rest.find("(1..")) {
                let range = &rest[at + 1..];
                // To the `)` that closes the range's own `(`.
                let mut depth = 0i32;
                let close = range.find(|c| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth < 0
                });
                let end = close.map_or(range, |e| &range[..e]);
                let held = end.trim_end().ends_with(".len()");
                if !held && statement.contains("collect") && !statement.contains("// bounded:") {
                    let line = code[..offset + statement.len() - rest.len() + at]
                        .lines()
                        .count();
                    found.push((line.max(1), end.to_string()));
                }
                rest = &rest[at + 1..];
            }
            offset += statement.len();
        }
        found
    }

    /// Allocations clippy's `disallowed_methods` (clippy.toml) cannot see: a range collected
    /// into a vector, `(0..n).collect()`, allocates `n` items whatever `n` is. Outside tests
    /// each range must run to a length already held (`0..rows.len()`) or say why it is
    /// bounded in a `// bounded:` comment; else reserve with [`reserve`] and `extend`.
    #[test]
    fn ranges_are_collected_only_up_to_lengths_held() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rust");
        let mut offenders = Vec::new();
        for dir in [root.clone(), root.join("py")] {
            for entry in std::fs::read_dir(&dir).expect("the rust sources") {
                let path = entry.expect("a source file").path();
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("a readable source file");
                let code = text
                    .split("#[cfg(test)]\nmod tests")
                    .next()
                    .unwrap_or_default();
                for (line, end) in collected_ranges(code) {
                    offenders.push(format!("{}:{line}: ..{end}", path.display()));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "ranges collected unchecked: {offenders:#?}"
        );
    }

    #[test]
    fn the_range_scan_finds_a_range_to_a_caller_size() {
        let code = "fn f(n: u64) {\n    let v: Vec<u64> = (0..n)\n        .map(|i| i * 2)\n        .collect();\n}";
        assert_eq!(collected_ranges(code), [(2, "0..n".to_string())]);
        assert!(collected_ranges("let v: Vec<_> = (0..rows.len()).collect();").is_empty());
        let bounded = "// bounded: one a column\nlet v: Vec<_> = (0..fields).collect();";
        assert!(collected_ranges(bounded).is_empty());
        assert!(collected_ranges("for i in 0..n { x(i); }").is_empty());
    }

    #[test]
    fn zeroed_bytes_are_zero_or_an_error() {
        assert_eq!(zeroed(0).unwrap(), Vec::<u8>::new());
        let bytes = zeroed(100_000).unwrap();
        assert!(bytes.len() == 100_000 && bytes.iter().all(|&b| b == 0));
        assert!(matches!(zeroed(usize::MAX / 2), Err(Error::Memory(_))));
    }
}
