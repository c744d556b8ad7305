//! Arrow to tensor for Python: batches, or one column, sharing a take's memory where `lending`
//! allows (a user's data is always copied).

use pyo3::prelude::*;

use crate::dlpack::HostTensor;
use crate::dtype::DType;
use crate::py::arrow::{Exported, PyBatches};
use crate::py::dlpack::{legacy_capsule, PyDLPackTensor};
use crate::tensor::{batch_to_tensor, column_to_tensor, Block, Share};

/// `batch_to_tensor` for Python: the batches of one table (or one batch), an optional torch
/// dtype name and null fill value. Returns a DLPack provider, or with `capsule=True` a legacy
/// DLPack capsule (what `torch.from_dlpack` takes with the least work).
#[pyfunction]
#[pyo3(signature = (batches, dtype=None, null_value=None, capsule=false))]
pub fn batches_to_tensor<'py>(
    py: Python<'py>,
    batches: PyBatches,
    dtype: Option<&str>,
    null_value: Option<f64>,
    capsule: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let dtype = dtype.map(DType::from_name).transpose()?;
    let mut exported = batches.0;
    if exported.len() == 1 && null_value.is_none() {
        // A take's batch, however wrapped: read where its columns lie, with no import, when
        // it is of the type asked for and `lending` lends it to this tensor.
        let one = exported.pop().expect("one batch");
        let lent = |block: &Block| {
            dtype.is_none_or(|d| d == block.dtype)
                && crate::lending::lend(block.start as usize, block.bytes())
        };
        match one.into_block_tensor(lent) {
            Ok(tensor) => return hand_over(py, tensor, capsule),
            Err(one) => exported.push(one),
        }
    }
    let batches = exported
        .into_iter()
        .map(Exported::into_batch)
        .collect::<PyResult<Vec<_>>>()?;
    let tensor = crate::py::errors::detached(py, || {
        batch_to_tensor(&batches, dtype, null_value, Share::IfLendable)
    })?;
    hand_over(py, tensor, capsule)
}

/// `batches_to_tensor` of the object the last take returned (see `recent`), as a legacy
/// DLPack capsule: the take's own batch converted, with no crossing back. `None` for any
/// other object, which the caller converts through `batches_to_tensor`.
#[pyfunction]
#[pyo3(signature = (data, dtype=None, null_value=None))]
pub fn taken_to_tensor<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    dtype: Option<&str>,
    null_value: Option<f64>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(batch) = crate::py::recent::batch_of(data) else {
        return Ok(None);
    };
    let dtype = dtype.map(DType::from_name).transpose()?;
    let tensor = crate::py::errors::detached(py, || {
        batch_to_tensor(&[batch], dtype, null_value, Share::IfLendable)
    })?;
    legacy_capsule(py, tensor).map(Some)
}

/// The tensor as a legacy capsule, or as a `DLPackTensor`.
fn hand_over(py: Python<'_>, tensor: HostTensor, capsule: bool) -> PyResult<Bound<'_, PyAny>> {
    if capsule {
        return legacy_capsule(py, tensor);
    }
    Ok(Bound::new(py, PyDLPackTensor::new(tensor))?.into_any())
}

/// `column_to_tensor` for a pyarrow batch: shares a take's memory where `lending` allows.
#[pyfunction]
#[pyo3(signature = (batch, index, dtype=None, null_value=None))]
pub fn batch_column_to_tensor<'py>(
    py: Python<'py>,
    batch: &Bound<'py, PyAny>,
    index: usize,
    dtype: Option<&str>,
    null_value: Option<f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let dtype = dtype.map(DType::from_name).transpose()?;
    let batch = match crate::py::recent::batch_of(batch) {
        Some(taken) => taken,
        None => crate::py::arrow::batch_from_py(batch)?,
    };
    let tensor = crate::py::errors::detached(py, || {
        column_to_tensor(&batch, index, dtype, null_value, Share::IfLendable)
    })?;
    legacy_capsule(py, tensor)
}
