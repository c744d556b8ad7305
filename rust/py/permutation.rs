//! Permutations for Python: split sizes, the splits, epoch orders and the bijection's rows, as
//! Arrow arrays in and out.

use arrow_array::types::{Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, Int64Array, RecordBatch, UInt32Array, UInt64Array};
use pyo3::prelude::*;

use crate::bijection::bijection_rows;
use crate::error::{Error, Result};
use crate::permutation::{
    check_sizes, epoch_order, epoch_order_narrow, hash_split, random_split, row_hashes,
    sequential_split, shuffle_splits, split_sizes,
};
use crate::py::arrow::{to_pyarrow, PyBatch, PyValues};

/// Rows and split ids out, as a uint64 and a uint32 pyarrow array.
type Split<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>);

fn to_py(py: Python<'_>, (rows, ids): (Vec<u64>, Vec<u32>)) -> PyResult<Split<'_>> {
    Ok((
        to_pyarrow(py, &UInt64Array::from(rows).into_data())?,
        to_pyarrow(py, &UInt32Array::from(ids).into_data())?,
    ))
}

fn clump_arg(clump_size: Option<i64>) -> Result<usize> {
    match clump_size {
        None => Ok(1),
        Some(c) if c >= 1 => Ok(c as usize),
        Some(c) => Err(Error::Value(format!(
            "clump_size={c} must be 1 or more rows"
        ))),
    }
}

#[pyfunction]
#[pyo3(name = "split_sizes", signature = (n, ratios=None, counts=None, fixed=None))]
pub fn py_split_sizes(
    n: u64,
    ratios: Option<Vec<f64>>,
    counts: Option<Vec<u64>>,
    fixed: Option<u64>,
) -> PyResult<Vec<u64>> {
    Ok(split_sizes(n, ratios.as_deref(), counts.as_deref(), fixed)?)
}

#[pyfunction]
#[pyo3(name = "random_split", signature = (rows, sizes, seed, clump_size=None))]
pub fn py_random_split(
    py: Python<'_>,
    rows: PyValues<UInt64Type>,
    sizes: Vec<u64>,
    seed: u64,
    clump_size: Option<i64>,
) -> PyResult<Split<'_>> {
    let clump = clump_arg(clump_size)?;
    check_sizes(&sizes, rows.len())?;
    let split = crate::py::errors::detached(py, || {
        Ok::<_, Error>(random_split(&rows, &sizes, seed, clump))
    })?;
    to_py(py, split)
}

#[pyfunction]
#[pyo3(name = "sequential_split")]
pub fn py_sequential_split(
    py: Python<'_>,
    rows: PyValues<UInt64Type>,
    sizes: Vec<u64>,
) -> PyResult<Split<'_>> {
    check_sizes(&sizes, rows.len())?;
    to_py(py, sequential_split(&rows, &sizes))
}

#[pyfunction]
#[pyo3(name = "hash_split")]
pub fn py_hash_split(
    py: Python<'_>,
    rows: PyValues<UInt64Type>,
    keys: Vec<PyBatch>,
    weights: Vec<u64>,
    discard: u64,
) -> PyResult<Split<'_>> {
    let keys: Vec<RecordBatch> = keys.into_iter().map(PyBatch::into_inner).collect();
    let out = crate::py::errors::detached(py, || -> Result<_> {
        let hashes = row_hashes(&keys)?;
        if hashes.len() != rows.len() {
            return Err(Error::Value(format!(
                "{} key rows for {} rows",
                hashes.len(),
                rows.len()
            )));
        }
        hash_split(&rows, &hashes, &weights, discard)
    })?;
    to_py(py, out)
}

#[pyfunction]
#[pyo3(name = "shuffle_splits", signature = (rows, ids, seed, clump_size=None))]
pub fn py_shuffle_splits(
    py: Python<'_>,
    rows: PyValues<UInt64Type>,
    ids: PyValues<UInt32Type>,
    seed: u64,
    clump_size: Option<i64>,
) -> PyResult<Split<'_>> {
    if ids.len() != rows.len() {
        return Err(Error::Value(format!(
            "shuffle_splits needs one split id per row: got {} rows and {} ids",
            rows.len(),
            ids.len()
        ))
        .into());
    }
    let clump = clump_arg(clump_size)?;
    let split = crate::py::errors::detached(py, || {
        Ok::<_, Error>(shuffle_splits(&rows, &ids, seed, clump))
    })?;
    to_py(py, split)
}

/// `epoch_order` for Python: an int64 Arrow array of positions, or with `narrow` a uint32
/// one where every position fits (half the memory for an epoch's order).
#[pyfunction]
#[pyo3(name = "epoch_order", signature = (n, seed, epoch, clump_size=None, narrow=false))]
pub fn py_epoch_order(
    py: Python<'_>,
    n: u64,
    seed: u64,
    epoch: u64,
    clump_size: Option<i64>,
    narrow: bool,
) -> PyResult<Bound<'_, PyAny>> {
    let clump = clump_arg(clump_size)?;
    if narrow && n <= u64::from(u32::MAX) + 1 {
        let order = crate::py::errors::detached(py, || epoch_order_narrow(n, seed, epoch, clump))?;
        return to_pyarrow(py, &UInt32Array::from(order).into_data());
    }
    let order = crate::py::errors::detached(py, || epoch_order(n, seed, epoch, clump))?;
    // Collected in place (same layout), and the Arrow array takes the vector as it is.
    let order: Vec<i64> = order.into_iter().map(|v| v as i64).collect();
    to_pyarrow(py, &Int64Array::from(order).into_data())
}

/// `bijection_rows` for Python: int64 Arrow positions in, int64 Arrow rows out.
#[pyfunction]
#[pyo3(name = "bijection_rows")]
pub fn py_bijection_rows(
    py: Python<'_>,
    n: u64,
    seed: u64,
    epoch: u64,
    positions: PyValues<Int64Type>,
) -> PyResult<Bound<'_, PyAny>> {
    let rows = crate::py::errors::detached(py, || bijection_rows(n, seed, epoch, &positions))?;
    to_pyarrow(py, &Int64Array::from(rows).into_data())
}
