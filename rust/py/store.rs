//! Memory tables for Python: the column store (import, append, take, slice, batches), the
//! builder a scan fills, and offsets checked against a table.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::error::Error;
use crate::gather::take;
use crate::py::arrow::{batch_to_py, to_pyarrow, PyBatch, PyOffsets, PySchema, PyStream};
use crate::store::{normalize, Store, StoreBuilder};

/// Offsets made non-negative and checked against `num_rows`, as an int64 Arrow array.
#[pyfunction]
pub fn normalize_offsets(
    py: Python<'_>,
    offsets: PyOffsets,
    num_rows: u64,
) -> PyResult<Bound<'_, PyAny>> {
    let rows = normalize(&offsets, num_rows)?;
    let out = arrow_array::Int64Array::from_iter_values(rows.into_iter().map(|r| r as i64));
    to_pyarrow(py, &arrow_array::Array::into_data(out))
}

/// Positions of a view (a list of ints or an int64 array; negative counts from the end)
/// checked against its `length` and turned into row offsets of the table under it, as an
/// int64 array: `rows[start + position]` when the view has an order of its own (`rows`, an
/// int64 array of the table's offsets), else `start + position`.
#[pyfunction]
#[pyo3(signature = (positions, length, start=0, rows=None))]
pub fn view_offsets(
    py: Python<'_>,
    positions: PyOffsets,
    length: u64,
    start: u64,
    rows: Option<PyOffsets>,
) -> PyResult<Bound<'_, PyAny>> {
    let offsets = crate::store::view_offsets(&positions, length, start, rows.as_deref())?;
    let out = arrow_array::Int64Array::from(offsets);
    to_pyarrow(py, &arrow_array::Array::into_data(out))
}

/// Bytes of memory the kernel reports free, or None where it does not say.
#[pyfunction]
pub fn available_memory() -> Option<u64> {
    crate::memory::available_bytes()
}

/// The CRC-32 (zlib's) of the first `length` bytes of the open file `fd`, read without
/// the GIL.
#[pyfunction]
pub fn crc32_of_file(py: Python<'_>, fd: i32, length: u64) -> PyResult<u32> {
    Ok(py.detach(|| crate::memory::crc32_of_file(fd, length))?)
}

/// A memory table's data, held in Rust.
#[pyclass(name = "ColumnStore", module = "lancetorch._native", frozen)]
pub struct PyColumnStore {
    pub inner: Arc<Store>,
    /// pyarrow schemas of the column selections taken so far, reused for every batch.
    schemas: std::sync::Mutex<std::collections::HashMap<Vec<usize>, Py<PyAny>>>,
}

impl PyColumnStore {
    fn wrap(store: Store) -> Self {
        PyColumnStore {
            inner: Arc::new(store),
            schemas: Default::default(),
        }
    }

    fn py_schema<'py>(&self, py: Python<'py>, columns: &[usize]) -> PyResult<Bound<'py, PyAny>> {
        if let Some(s) = self.schemas.lock().expect("schema cache lock").get(columns) {
            return Ok(s.bind(py).clone());
        }
        // Built without the lock held: it calls into Python, where another thread may run.
        let projected = self.inner.schema().project(columns).map_err(Error::from)?;
        let schema = to_pyarrow(py, &projected)?;
        let mut cache = self.schemas.lock().expect("schema cache lock");
        if cache.len() < 64 {
            cache.insert(columns.to_vec(), schema.clone().unbind());
        }
        Ok(schema)
    }
}

#[pymethods]
impl PyColumnStore {
    /// Import any Arrow stream (a pyarrow Table or RecordBatchReader) without copying. A
    /// table of many rows then copies its fixed-width numeric columns into the row-major block
    /// (with the GIL released) and drops its own references to their Arrow arrays;
    /// `row_major=False` keeps the stream's arrays as they are and builds no block.
    #[new]
    #[pyo3(signature = (data, row_major=true))]
    fn new(py: Python<'_>, data: PyStream, row_major: bool) -> PyResult<Self> {
        let PyStream { schema, batches } = data;
        let store = if row_major {
            crate::py::errors::detached(py, || Store::new(schema, batches))?
        } else {
            Store::columns_only(schema, batches)?
        };
        Ok(Self::wrap(store))
    }

    /// A new store with the stream's batches appended; refuses a schema that differs.
    fn appended(&self, py: Python<'_>, data: PyStream) -> PyResult<Self> {
        let batches = data.batches;
        let store = self.inner.clone();
        Ok(Self::wrap(crate::py::errors::detached(py, || {
            store.appended(batches)
        })?))
    }

    #[getter]
    fn num_rows(&self) -> u64 {
        self.inner.num_rows()
    }

    /// Bytes the table takes in memory (its Arrow buffers and its row-major block).
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }

    /// Positions of the columns held (only) in the row-major block.
    #[getter]
    fn block_columns(&self) -> Vec<usize> {
        self.inner.block_columns()
    }

    #[getter]
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_pyarrow(py, self.inner.schema().as_ref())
    }

    /// Rows at `offsets` (an int64 Arrow array; negative counts from the end) of the columns
    /// at positions `columns` (all when omitted), gathered with the GIL released into one
    /// allocation, which the first tensor made of each column shares (see `lending`).
    #[pyo3(signature = (offsets, columns=None))]
    fn take<'py>(
        &self,
        py: Python<'py>,
        offsets: PyOffsets,
        columns: Option<Vec<usize>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let columns = columns.unwrap_or_else(|| (0..self.inner.schema().fields().len()).collect());
        self.inner.check_columns(&columns)?;
        let schema = self.py_schema(py, &columns)?;
        let store = self.inner.clone();
        let batch = crate::py::errors::detached(py, || take(&store, &offsets, &columns))?;
        let out = batch_to_py(py, batch.clone(), Some(&schema))?;
        crate::py::recent::remember(&out, batch)?;
        Ok(out)
    }

    /// Rows `start..start + n` as a pyarrow record batch (see [`Store::slice`]).
    fn slice<'py>(&self, py: Python<'py>, start: u64, n: u64) -> PyResult<Bound<'py, PyAny>> {
        let store = self.inner.clone();
        let batch = crate::py::errors::detached(py, || store.slice(start, n))?;
        to_pyarrow(py, &batch)
    }

    /// The rows as pyarrow record batches, one per chunk, of the columns at positions
    /// `columns` (all when omitted): columns held as Arrow are shared (no copy), those held
    /// only by the row-major block are copied out of it.
    #[pyo3(signature = (columns=None))]
    fn batches<'py>(
        &self,
        py: Python<'py>,
        columns: Option<Vec<usize>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let store = self.inner.clone();
        let batches = crate::py::errors::detached(py, || match columns {
            Some(columns) => store.batches_of(&columns),
            None => store.batches(),
        })?;
        batches.iter().map(|b| to_pyarrow(py, b)).collect()
    }
}

/// A column store made from batches as a scan delivers them (see [`StoreBuilder`]).
#[pyclass(name = "ColumnStoreBuilder", module = "lancetorch._native")]
pub struct PyStoreBuilder {
    inner: Option<StoreBuilder>,
}

impl PyStoreBuilder {
    fn builder(&mut self) -> PyResult<&mut StoreBuilder> {
        self.inner.as_mut().ok_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err("this column store builder has finished")
        })
    }
}

#[pymethods]
impl PyStoreBuilder {
    /// A builder for a table of `schema` expected to hold `rows` rows.
    #[new]
    fn new(schema: PySchema, rows: u64) -> Self {
        PyStoreBuilder {
            inner: Some(StoreBuilder::new(Arc::new(schema.0), rows)),
        }
    }

    /// Positions of the columns the row-major block takes as it starts (see
    /// [`StoreBuilder::block_columns`]).
    #[getter]
    fn block_columns(&mut self) -> PyResult<Vec<usize>> {
        Ok(self.builder()?.block_columns())
    }

    /// Add a pyarrow RecordBatch (with the GIL released while it is laid out).
    fn push(&mut self, py: Python<'_>, batch: PyBatch) -> PyResult<()> {
        let builder = self.builder()?;
        let batch = batch.into_inner();
        crate::py::errors::detached(py, || builder.push(batch))?;
        Ok(())
    }

    /// The column store of every batch pushed; the builder cannot be used after.
    fn finish(&mut self, py: Python<'_>) -> PyResult<PyColumnStore> {
        self.builder()?;
        let builder = self.inner.take().expect("checked above");
        Ok(PyColumnStore::wrap(crate::py::errors::detached(
            py,
            || builder.finish(),
        )?))
    }
}
