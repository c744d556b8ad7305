//! The prefetching loader for Python: a `Prefetcher` started over a column store, its
//! batches handed over as DLPack capsules, waiting with the GIL released.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::dtype::DType;
use crate::error::Error;
use crate::loader::{Batching, EpochRows, Plan, Prefetcher};
use crate::py::arrow::PyOrder;
use crate::py::dlpack::legacy_capsule;
use crate::py::store::PyColumnStore;

/// How an epoch's rows become batches (see [`Batching`]), checked once, passed to each
/// epoch's `Prefetcher` as one value.
#[pyclass(name = "Batching", module = "lancetorch._native", frozen)]
pub struct PyBatching {
    inner: Batching,
}

#[pymethods]
impl PyBatching {
    /// Batches of `batch_size` rows (the last one shorter unless `drop_last`), each one
    /// `(columns, rows)` tensor of `dtype` (a torch type name; the columns' common type when
    /// omitted) or with `per_column` one tensor per column, nulls refused or filled with
    /// `null_value`.
    #[new]
    #[pyo3(signature = (batch_size, *, drop_last=false, dtype=None, null_value=None, per_column=false))]
    fn new(
        batch_size: usize,
        drop_last: bool,
        dtype: Option<&str>,
        null_value: Option<f64>,
        per_column: bool,
    ) -> PyResult<Self> {
        if batch_size == 0 {
            return Err(Error::Value("batch_size must be 1 or more".into()).into());
        }
        Ok(PyBatching {
            inner: Batching {
                batch_size,
                drop_last,
                dtype: dtype.map(DType::from_name).transpose()?,
                fill: null_value,
                per_column,
            },
        })
    }

    #[getter]
    fn batch_size(&self) -> usize {
        self.inner.batch_size
    }

    #[getter]
    fn drop_last(&self) -> bool {
        self.inner.drop_last
    }

    #[getter]
    fn dtype(&self) -> Option<&'static str> {
        self.inner.dtype.map(DType::name)
    }

    #[getter]
    fn null_value(&self) -> Option<f64> {
        self.inner.fill
    }

    #[getter]
    fn per_column(&self) -> bool {
        self.inner.per_column
    }
}

/// One epoch of prefetched batches (see [`Prefetcher`]).
#[pyclass(name = "Prefetcher", module = "lancetorch._native", frozen)]
pub struct PyPrefetcher {
    inner: Prefetcher,
}

#[pymethods]
impl PyPrefetcher {
    /// Start prefetching `rows` (row offsets in read order: int64, or uint32 kept without a
    /// copy) of the columns at positions `columns` of `store`, cut into batches as
    /// `batching` says, `depth` batches ahead on `threads` threads.
    #[new]
    #[pyo3(signature = (store, rows, columns, batching, *, depth=4, threads=1))]
    fn new(
        store: &PyColumnStore,
        rows: PyOrder,
        columns: Vec<usize>,
        batching: &PyBatching,
        depth: usize,
        threads: usize,
    ) -> PyResult<Self> {
        let num_rows = store.inner.num_rows();
        let rows = match rows {
            PyOrder::Narrow(rows) => EpochRows::narrow(rows, num_rows)?,
            PyOrder::Wide(offsets) => EpochRows::new(&offsets, num_rows)?,
        };
        store.inner.check_columns(&columns)?;
        let plan = Plan {
            store: store.inner.clone(),
            rows,
            columns,
            batching: batching.inner,
        };
        Ok(PyPrefetcher {
            inner: Prefetcher::start(plan, depth, threads)?,
        })
    }

    /// The next batch as a legacy DLPack capsule (with `per_column`, a list of them, one per
    /// column), or `None` at the end of the epoch. Waits with the GIL released.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        if self.inner.inherited() {
            return Err(Error::Value(
                "this epoch's batches are made by threads of the process it started in, not \
                 of this forked one: start the epoch (a new `for` loop over the Loader) here"
                    .into(),
            )
            .into());
        }
        let received = py.detach(|| self.inner.receive());
        let Some(received) = received else {
            return Ok(None);
        };
        match received {
            Ok(tensors) if self.inner.per_column() => {
                let capsules = tensors
                    .into_iter()
                    .map(|t| legacy_capsule(py, t))
                    .collect::<PyResult<Vec<_>>>()?;
                Ok(Some(pyo3::types::PyList::new(py, capsules)?.into_any()))
            }
            Ok(tensors) => {
                let tensor = tensors.into_iter().next().expect("one tensor per batch");
                Ok(Some(legacy_capsule(py, tensor)?))
            }
            Err(e) => {
                self.inner.stop();
                Err(e.into())
            }
        }
    }

    /// Stop the thread and drop what it prepared.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.inner.stop());
    }

    /// Totals so far: seconds in the take and in the conversion, batches, rows, bytes.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let t = self.inner.totals();
        let d = PyDict::new(py);
        d.set_item("take_s", t.take_ns as f64 * 1e-9)?;
        d.set_item("convert_s", t.convert_ns as f64 * 1e-9)?;
        d.set_item("batches", t.batches)?;
        d.set_item("rows", t.rows)?;
        d.set_item("bytes", t.bytes)?;
        Ok(d)
    }
}
