//! Arrow to tensor for Python: a user's batches, one column, and a gathered batch lent to the
//! tensors made from it.

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::dtype::DType;
use crate::py::dlpack::{legacy_capsule, PyDLPackTensor};
use crate::tensor::{batch_to_tensor, column_to_tensor, Gathered, Share};

/// `batch_to_tensor` for Python: the batches of one table (or one batch), an optional torch
/// dtype name and null fill value. Returns a DLPack provider, or with `capsule=True` a legacy
/// DLPack capsule (what `torch.from_dlpack` takes with the least work).
#[pyfunction]
#[pyo3(signature = (batches, dtype=None, null_value=None, capsule=false))]
pub fn batches_to_tensor<'py>(
    py: Python<'py>,
    batches: &Bound<'py, PyList>,
    dtype: Option<&str>,
    null_value: Option<f64>,
    capsule: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let dtype = dtype.map(DType::from_name).transpose()?;
    let batches = batches
        .iter()
        .map(|b| crate::py::arrow::batch_from_py(&b))
        .collect::<PyResult<Vec<_>>>()?;
    let tensor = crate::py::errors::detached(py, || {
        batch_to_tensor(&batches, dtype, null_value, Share::Never)
    })?;
    if capsule {
        return legacy_capsule(py, tensor);
    }
    Ok(Bound::new(py, PyDLPackTensor::new(tensor))?.into_any())
}

/// `column_to_tensor` for a user's pyarrow batch (always a copy).
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
    let batch = crate::py::arrow::batch_from_py(batch)?;
    let tensor = crate::py::errors::detached(py, || {
        column_to_tensor(&batch, index, dtype, null_value, Share::Never)
    })?;
    legacy_capsule(py, tensor)
}

/// A batch gathered by the core, kept on the Rust side beside its pyarrow twin (see
/// [`Gathered`]).
#[pyclass(name = "Gathered", module = "lancetorch._native", frozen)]
pub struct PyGathered {
    inner: Gathered,
}

impl PyGathered {
    pub fn new(batch: arrow_array::RecordBatch) -> Self {
        PyGathered {
            inner: Gathered::new(batch),
        }
    }
}

#[pymethods]
impl PyGathered {
    /// The `(columns, rows)` tensor as a legacy DLPack capsule (see `batches_to_tensor`),
    /// sharing the gather's memory if no tensor does yet.
    #[pyo3(signature = (dtype=None, null_value=None))]
    fn tensor<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<&str>,
        null_value: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let dtype = dtype.map(DType::from_name).transpose()?;
        let batch = std::slice::from_ref(self.inner.batch());
        let tensor = crate::py::errors::detached(py, || {
            self.inner
                .lend(0..self.inner.batch().num_columns(), |share| {
                    batch_to_tensor(batch, dtype, null_value, share)
                })
        })?;
        legacy_capsule(py, tensor)
    }

    /// Column `index` as a tensor (see `column_to_tensor`), sharing the gather's memory if no
    /// tensor does yet.
    #[pyo3(signature = (index, dtype=None, null_value=None))]
    fn column<'py>(
        &self,
        py: Python<'py>,
        index: usize,
        dtype: Option<&str>,
        null_value: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let dtype = dtype.map(DType::from_name).transpose()?;
        let batch = self.inner.batch();
        let tensor = crate::py::errors::detached(py, || {
            self.inner.lend(index..index + 1, |share| {
                column_to_tensor(batch, index, dtype, null_value, share)
            })
        })?;
        legacy_capsule(py, tensor)
    }
}
