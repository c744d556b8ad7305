//! The last take, known by identity: a shortcut past the crossing back from pyarrow.
//!
//! `tbl_to_tensor` finds a take's memory by where a batch's columns lie (see `lending`), read
//! through the Arrow C Data Interface: right however the batch was wrapped since, but a
//! pyarrow export and an import for every batch. Most often the object converted is the very
//! one a take just returned (a DataLoader hands `__getitems__`' table to its `collate_fn`).
//! The core's batch behind the last object a take returned is kept here with a weak
//! reference to that object; converting that same object uses the batch as it is. Identity
//! of a live object is exact: pyarrow's batches and tables never change, and the weak
//! reference dies with the object, taking the batch with it (nothing is kept alive longer).
//! The memory rules are `lending`'s on either path.

use std::sync::Mutex;

use arrow_array::RecordBatch;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyWeakrefMethods, PyWeakrefReference};

struct Last {
    object: Py<PyWeakrefReference>,
    batch: RecordBatch,
}

/// Held only with the GIL attached and never across a call that could release it, so the
/// weak reference's callback (which runs wherever the object dies) cannot wait on a holder.
static LAST: Mutex<Option<Last>> = Mutex::new(None);

fn last() -> std::sync::MutexGuard<'static, Option<Last>> {
    LAST.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remember `batch` as the core's batch behind `object`, the object a take returns.
pub fn remember(object: &Bound<'_, PyAny>, batch: RecordBatch) -> PyResult<()> {
    let py = object.py();
    let weak = PyWeakrefReference::new_with(object, forget_callback(py)?)?;
    let before = last().replace(Last {
        object: weak.unbind(),
        batch,
    });
    drop(before); // after the lock is let go: dropping it may run Python code
    Ok(())
}

/// The core's batch behind `object` when it is the object the last take returned.
pub fn batch_of(object: &Bound<'_, PyAny>) -> Option<RecordBatch> {
    let guard = last();
    let last = guard.as_ref()?;
    let referent = last.object.bind(object.py()).upgrade();
    let batch = match &referent {
        Some(referent) if referent.is(object) => Some(last.batch.clone()),
        _ => None,
    };
    // The lock goes before the reference: dropping a reference can run Python code (the
    // callback below, which takes the lock, should it be the last one).
    drop(guard);
    drop(referent);
    batch
}

/// Called by the weak reference when its object dies: the batch goes with it.
fn forget(reference: &Bound<'_, PyAny>) {
    let mut guard = last();
    let gone = match guard.as_ref() {
        Some(last) if last.object.as_ptr() == reference.as_ptr() => guard.take(),
        _ => None,
    };
    drop(guard);
    drop(gone);
}

fn forget_callback(py: Python<'_>) -> PyResult<&Bound<'_, PyCFunction>> {
    static CALLBACK: PyOnceLock<Py<PyCFunction>> = PyOnceLock::new();
    let callback = CALLBACK.get_or_try_init(py, || {
        PyCFunction::new_closure(
            py,
            Some(c"forget_take"),
            Some(c"Drops lancetorch's note of a take's batch when the batch object dies."),
            |args, _kwargs| -> PyResult<()> {
                forget(&args.get_item(0)?);
                Ok(())
            },
        )
        .map(Bound::unbind)
    })?;
    Ok(callback.bind(py))
}

/// Remember `alias` (a one-chunk pyarrow Table of `taken` alone, as a Table's
/// `__getitems__` returns) in the place of `taken` when `taken` is the object the last take
/// returned: converting the table then uses the take's batch as it is.
#[pyfunction]
pub fn remember_alias(alias: &Bound<'_, PyAny>, taken: &Bound<'_, PyAny>) -> PyResult<()> {
    match batch_of(taken) {
        Some(batch) => remember(alias, batch),
        None => Ok(()),
    }
}
