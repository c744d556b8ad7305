//! When and how the core uses its thread pool.
//!
//! A process forked after rayon's pool started has the pool's bookkeeping but none of its
//! threads: any parallel call there would wait forever. Python's `os.register_at_fork` calls
//! `mark_forked` in the child, after which all work runs on the calling thread.
//!
//! Work split on behalf of a Python call goes through `share`, where the calling thread works
//! from the start instead of waiting for a pool thread to wake.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
pub fn mark_forked() {
    FORKED.store(true, Ordering::Relaxed);
}

/// Progress of one `share`: the next item to claim, and the items finished.
struct Claims {
    next: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
}

/// The work of one `share`, as the pool thread sees it: a pointer it may follow only after
/// claiming an item.
struct Work(*const (dyn Fn(usize) + Sync));

// SAFETY: the pointee is `Sync`; `share` keeps it alive while any claimed item runs.
unsafe impl Send for Work {}

impl Claims {
    /// Claim and run items until none is left, noting a panic in any of them.
    ///
    /// # Safety
    /// `work` must point to a live closure for as long as an item claimed here runs.
    unsafe fn run(&self, n: usize, work: &Work) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return;
            }
            // SAFETY: item `i` is claimed, so the caller keeps `work` alive until it is done.
            let run = unsafe { &*work.0 };
            if catch_unwind(AssertUnwindSafe(|| run(i))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

/// `work` applied to every item, by this thread and by one thread of the pool, which joins in
/// when it wakes up. Returns once every item is done.
///
/// Handing the whole job to the pool (as `par_iter` does from outside it) leaves this thread
/// waiting until a pool thread wakes, which on an idle machine (a virtual one most of all)
/// can take longer than a small job itself. Here this thread starts at once and does whatever
/// the pool thread has not taken; a pool thread that wakes too late finds nothing left.
pub fn share<T: Send>(items: Vec<T>, work: impl Fn(T) + Sync) {
    let n = items.len();
    if n < 2 || !parallel(usize::MAX, 0) {
        items.into_iter().for_each(work);
        return;
    }
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let run = |i: usize| {
        let item = slots[i].lock().expect("one claim per item").take();
        work(item.expect("each item is claimed once"));
    };
    let run: &(dyn Fn(usize) + Sync) = &run;
    // SAFETY: only the lifetime is erased. The pointer is followed only for a claimed item,
    // and this function returns only once every claimed item is done, so `run` and what it
    // borrows outlive every call. A pool thread that claims nothing never follows it.
    let run: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(run) };
    let claims = Arc::new(Claims {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
    });
    let helper = claims.clone();
    let work = Work(run);
    // SAFETY: as above, for both threads.
    rayon::spawn(move || unsafe { helper.run(n, &work) });
    unsafe { claims.run(n, &Work(run)) };
    let mut spins = 0u32;
    while claims.done.load(Ordering::Acquire) < n {
        spins += 1;
        if spins < 1 << 10 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    if claims.panicked.load(Ordering::Relaxed) {
        resume_unwind(Box::new("a shared task panicked"));
    }
}

#[allow(clippy::disallowed_methods)] // tests: sizes of their own
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_runs_every_item_once() {
        for n in [0usize, 1, 2, 7, 100, 1000] {
            let mut out = vec![0u64; n];
            let items: Vec<(usize, &mut u64)> = out.iter_mut().enumerate().collect();
            let calls = AtomicUsize::new(0);
            share(items, |(i, slot)| {
                *slot += i as u64 + 1;
                calls.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(calls.load(Ordering::Relaxed), n);
            assert!(out.iter().enumerate().all(|(i, &v)| v == i as u64 + 1));
        }
    }

    #[test]
    fn share_from_many_threads_at_once_loses_nothing() {
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                scope.spawn(move || {
                    for round in 0..200u64 {
                        let mut out = [0u64; 9];
                        let items: Vec<&mut u64> = out.iter_mut().collect();
                        share(items, |slot| *slot += t * 1000 + round);
                        assert!(out.iter().all(|&v| v == t * 1000 + round));
                    }
                });
            }
        });
    }

    #[test]
    fn share_passes_a_panic_on_after_every_item_is_done() {
        let calls = AtomicUsize::new(0);
        let result = catch_unwind(AssertUnwindSafe(|| {
            share((0..64).collect::<Vec<usize>>(), |i| {
                calls.fetch_add(1, Ordering::Relaxed);
                assert_ne!(i, 13, "boom");
            })
        }));
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 64);
    }
}
