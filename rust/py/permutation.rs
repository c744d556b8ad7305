//! Permutations for Python: split sizes, the splits, epoch orders and the bijection's rows, as
//! Arrow arrays in and out.

use arrow_array::{Array, Int64Array, RecordBatch, UInt32Array, UInt64Array};
use pyo3::prelude::*;

use crate::bijection::bijection_rows;
use crate::error::{Error, Result};
use crate::permutation::{
    check_sizes, epoch_order, epoch_order_narrow, hash_split, random_split, row_hashes,
    sequential_split, shuffle_splits, split_sizes,
};

type PyArrow<T> = arrow_pyarrow::PyArrowType<T>;

/// The values of a primitive Arrow array of type `T` without nulls; `what` names it in errors.
fn values_of<T: arrow_array::ArrowPrimitiveType>(
    data: arrow_data::ArrayData,
    what: &str,
) -> Result<Vec<T::Native>> {
    if data.data_type() != &T::DATA_TYPE || data.null_count() > 0 {
        return Err(Error::Type(format!(
            "{what} must be {} without nulls, not {}",
            T::DATA_TYPE,
            data.data_type()
        )));
    }
    Ok(arrow_array::PrimitiveArray::<T>::from(data)
        .values()
        .to_vec())
}

fn u64_values(data: arrow_data::ArrayData, what: &str) -> Result<Vec<u64>> {
    values_of::<arrow_array::types::UInt64Type>(data, what)
}

fn u32_values(data: arrow_data::ArrayData, what: &str) -> Result<Vec<u32>> {
    values_of::<arrow_array::types::UInt32Type>(data, what)
}

fn to_py(
    (rows, ids): (Vec<u64>, Vec<u32>),
) -> (
    PyArrow<arrow_data::ArrayData>,
    PyArrow<arrow_data::ArrayData>,
) {
    (
        arrow_pyarrow::PyArrowType(UInt64Array::from(rows).into_data()),
        arrow_pyarrow::PyArrowType(UInt32Array::from(ids).into_data()),
    )
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
    rows: PyArrow<arrow_data::ArrayData>,
    sizes: Vec<u64>,
    seed: u64,
    clump_size: Option<i64>,
) -> PyResult<(
    PyArrow<arrow_data::ArrayData>,
    PyArrow<arrow_data::ArrayData>,
)> {
    let rows = u64_values(rows.0, "rows")?;
    let clump = clump_arg(clump_size)?;
    check_sizes(&sizes, rows.len())?;
    Ok(to_py(crate::py::errors::detached(py, || {
        Ok::<_, Error>(random_split(&rows, &sizes, seed, clump))
    })?))
}

#[pyfunction]
#[pyo3(name = "sequential_split")]
pub fn py_sequential_split(
    rows: PyArrow<arrow_data::ArrayData>,
    sizes: Vec<u64>,
) -> PyResult<(
    PyArrow<arrow_data::ArrayData>,
    PyArrow<arrow_data::ArrayData>,
)> {
    let rows = u64_values(rows.0, "rows")?;
    check_sizes(&sizes, rows.len())?;
    Ok(to_py(sequential_split(&rows, &sizes)))
}

#[pyfunction]
#[pyo3(name = "hash_split")]
pub fn py_hash_split(
    py: Python<'_>,
    rows: PyArrow<arrow_data::ArrayData>,
    keys: Vec<PyArrow<RecordBatch>>,
    weights: Vec<u64>,
    discard: u64,
) -> PyResult<(
    PyArrow<arrow_data::ArrayData>,
    PyArrow<arrow_data::ArrayData>,
)> {
    let rows = u64_values(rows.0, "rows")?;
    let keys: Vec<RecordBatch> = keys.into_iter().map(|k| k.0).collect();
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
    Ok(to_py(out))
}

#[pyfunction]
#[pyo3(name = "shuffle_splits", signature = (rows, ids, seed, clump_size=None))]
pub fn py_shuffle_splits(
    py: Python<'_>,
    rows: PyArrow<arrow_data::ArrayData>,
    ids: PyArrow<arrow_data::ArrayData>,
    seed: u64,
    clump_size: Option<i64>,
) -> PyResult<(
    PyArrow<arrow_data::ArrayData>,
    PyArrow<arrow_data::ArrayData>,
)> {
    let rows = u64_values(rows.0, "rows")?;
    let ids = u32_values(ids.0, "split ids")?;
    if ids.len() != rows.len() {
        return Err(Error::Value(format!(
            "shuffle_splits needs one split id per row: got {} rows and {} ids",
            rows.len(),
            ids.len()
        ))
        .into());
    }
    let clump = clump_arg(clump_size)?;
    Ok(to_py(crate::py::errors::detached(py, || {
        Ok::<_, Error>(shuffle_splits(&rows, &ids, seed, clump))
    })?))
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
) -> PyResult<PyArrow<arrow_data::ArrayData>> {
    let clump = clump_arg(clump_size)?;
    if narrow && n <= u64::from(u32::MAX) + 1 {
        let order = crate::py::errors::detached(py, || epoch_order_narrow(n, seed, epoch, clump))?;
        return Ok(arrow_pyarrow::PyArrowType(
            arrow_array::UInt32Array::from(order).into_data(),
        ));
    }
    let order = crate::py::errors::detached(py, || epoch_order(n, seed, epoch, clump))?;
    // Collected in place (same layout), and the Arrow array takes the vector as it is.
    let order: Vec<i64> = order.into_iter().map(|v| v as i64).collect();
    Ok(arrow_pyarrow::PyArrowType(
        arrow_array::Int64Array::from(order).into_data(),
    ))
}

/// `bijection_rows` for Python: int64 Arrow positions in, int64 Arrow rows out.
#[pyfunction]
#[pyo3(name = "bijection_rows")]
pub fn py_bijection_rows(
    py: Python<'_>,
    n: u64,
    seed: u64,
    epoch: u64,
    positions: arrow_pyarrow::PyArrowType<arrow_data::ArrayData>,
) -> PyResult<arrow_pyarrow::PyArrowType<arrow_data::ArrayData>> {
    let data = positions.0;
    if data.data_type() != &arrow_schema::DataType::Int64 || data.null_count() > 0 {
        return Err(Error::Type(format!(
            "positions must be int64 without nulls, not {}",
            data.data_type()
        ))
        .into());
    }
    let positions = Int64Array::from(data);
    let rows =
        crate::py::errors::detached(py, || bijection_rows(n, seed, epoch, positions.values()))?;
    Ok(arrow_pyarrow::PyArrowType(
        Int64Array::from(rows).into_data(),
    ))
}
