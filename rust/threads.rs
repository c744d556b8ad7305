//! When the core may use its thread pool.
//!
//! A process forked after rayon's pool started has the pool's bookkeeping but none of its
//! threads: any parallel call there would wait forever. Python's `os.register_at_fork` calls
//! `mark_forked` in the child, after which all work runs on the calling thread.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;

static FORKED: AtomicBool = AtomicBool::new(false);

/// Whether work of `bytes` bytes should be spread over the thread pool.
pub fn parallel(bytes: usize, threshold: usize) -> bool {
    bytes >= threshold && !FORKED.load(Ordering::Relaxed) && rayon::current_num_threads() > 1
}

/// Whether this process was forked from one that loaded the core.
pub fn forked() -> bool {
    FORKED.load(Ordering::Relaxed)
}

/// Called in a forked child: stop using the thread pool there.
#[pyfunction]
pub fn mark_forked() {
    FORKED.store(true, Ordering::Relaxed);
}
