//! The column store: Arrow record batches held by Rust, addressed by global row offset.
//!
//! Chunks are kept as they arrived (imported zero-copy through the Arrow C interfaces);
//! a global offset maps to `(chunk, row)` through prefix sums of the chunk lengths.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::SchemaRef;
use pyo3::prelude::*;

use crate::error::{Error, Result};
use crate::rows::RowBlock;

/// Where a row lives: `(chunk, row within chunk)`.
pub type Loc = (usize, usize);

#[derive(Debug)]
pub struct Store {
    schema: SchemaRef,
    chunks: Vec<RecordBatch>,
    /// `starts[i]` is the global offset of the first row of chunk `i`; one extra entry holds
    /// the total row count.
    starts: Vec<u64>,
    /// Row-major copy of the fixed-width columns, built on the first shuffled take that
    /// gains from it (`None` inside when the table does not qualify).
    rows: Arc<OnceLock<Option<RowBlock>>>,
    /// Set once a thread has started building `rows`.
    building: Arc<AtomicBool>,
    /// Whether shuffled reads may build the row-major block (a second copy of the fixed-width
    /// columns); off for tables mapped from shared memory, where it would be one per process.
    row_major: bool,
}

impl Clone for Store {
    fn clone(&self) -> Self {
        Store {
            schema: self.schema.clone(),
            chunks: self.chunks.clone(),
            starts: self.starts.clone(),
            rows: Arc::default(),
            building: Arc::default(),
            row_major: self.row_major,
        }
    }
}

impl Store {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Self> {
        let mut store = Store {
            schema,
            chunks: Vec::new(),
            starts: vec![0],
            rows: Arc::default(),
            building: Arc::default(),
            row_major: true,
        };
        store.push(batches)?;
        Ok(store)
    }

    fn push(&mut self, batches: Vec<RecordBatch>) -> Result<()> {
        for batch in batches {
            if !same_columns(&self.schema, &batch.schema()) {
                return Err(Error::Value(format!(
                    "new data has columns {:?}, the table has {:?}",
                    batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| (f.name(), f.data_type()))
                        .collect::<Vec<_>>(),
                    self.schema
                        .fields()
                        .iter()
                        .map(|f| (f.name(), f.data_type()))
                        .collect::<Vec<_>>()
                )));
            }
            if batch.num_rows() == 0 {
                continue;
            }
            let end = self.num_rows() + batch.num_rows() as u64;
            // Keep the store's own schema (with its metadata) on every chunk.
            let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
            self.chunks.push(batch);
            self.starts.push(end);
        }
        Ok(())
    }

    /// This store without the row-major block for shuffled reads.
    pub fn without_row_block(mut self) -> Self {
        self.row_major = false;
        self.rows = Arc::default();
        self
    }

    /// A new store holding this one's chunks followed by `batches`; `self` is unchanged.
    pub fn appended(&self, batches: Vec<RecordBatch>) -> Result<Self> {
        let mut next = self.clone();
        next.push(batches)?;
        Ok(next)
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn chunks(&self) -> &[RecordBatch] {
        &self.chunks
    }

    /// The row-major block for shuffled reads of `columns`, when two or more of them are in
    /// it. The first call starts building it on a thread of its own and returns `None`: reads
    /// go to the columns until the block is ready, so the first batches do not wait for it.
    pub fn row_block(&self, columns: &[usize]) -> Option<&RowBlock> {
        if !self.row_major
            || crate::threads::forked()
            || self.num_rows() < crate::rows::MIN_ROWS
            || columns.len() < 2
        {
            return None;
        }
        let Some(block) = self.rows.get() else {
            self.start_row_block();
            return None;
        };
        let block = block.as_ref()?;
        let held = columns.iter().filter(|&&c| block.slot(c).is_some()).count();
        (held >= 2).then_some(block)
    }

    fn start_row_block(&self) {
        if self.building.swap(true, Ordering::AcqRel) {
            return;
        }
        let source = self.clone();
        let rows = self.rows.clone();
        let spawned = std::thread::Builder::new()
            .name("lancetorch-row-block".into())
            .spawn(move || {
                rows.get_or_init(|| RowBlock::build(&source));
            });
        if spawned.is_err() {
            // No thread: build here instead.
            self.rows.get_or_init(|| RowBlock::build(self));
        }
    }

    /// Wait until the row-major block is built (or known not to be), starting it if needed.
    pub fn wait_for_row_block(&self) {
        if self.row_major && !crate::threads::forked() && self.num_rows() >= crate::rows::MIN_ROWS {
            self.start_row_block();
            self.rows.wait();
        }
    }

    pub fn num_rows(&self) -> u64 {
        *self.starts.last().expect("starts is never empty")
    }

    /// The chunk locations of checked global offsets.
    pub fn locate(&self, rows: &[u64]) -> Vec<Loc> {
        if self.chunks.len() == 1 {
            return rows.iter().map(|&r| (0, r as usize)).collect();
        }
        rows.iter()
            .map(|&off| {
                // The chunk whose start is the last one <= off.
                let chunk = self.starts.partition_point(|&s| s <= off) - 1;
                (chunk, (off - self.starts[chunk]) as usize)
            })
            .collect()
    }
}

/// Same column names and types in the same order (nullability and metadata may differ).
pub fn same_columns(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields().iter())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}

/// Map offsets (negative ones count from the end) into `0..num_rows`, refusing any outside.
pub fn normalize(offsets: &[i64], num_rows: u64) -> Result<Vec<u64>> {
    let n = num_rows as i64;
    offsets
        .iter()
        .enumerate()
        .map(|(pos, &raw)| {
            let off = if raw < 0 { raw + n } else { raw };
            if off < 0 || off >= n {
                return Err(Error::Index(format!(
                    "row offset {raw} (position {pos} of the request) is out of range for a \
                     table of {n} rows"
                )));
            }
            Ok(off as u64)
        })
        .collect()
}

/// Offsets made non-negative and checked against `num_rows`, as an int64 Arrow array.
#[pyfunction]
pub fn normalize_offsets<'py>(
    py: Python<'py>,
    offsets: &Bound<'py, PyAny>,
    num_rows: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let offsets = crate::bridge::offsets_from_py(offsets)?;
    let rows = normalize(&offsets, num_rows)?;
    let out = arrow_array::Int64Array::from_iter_values(rows.into_iter().map(|r| r as i64));
    arrow_pyarrow::ToPyArrow::to_pyarrow(&arrow_array::Array::into_data(out), py)
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
        let schema = crate::bridge::schema_to_py(py, &projected)?;
        let mut cache = self.schemas.lock().expect("schema cache lock");
        if cache.len() < 64 {
            cache.insert(columns.to_vec(), schema.clone().unbind());
        }
        Ok(schema)
    }
}

fn read_stream(
    reader: arrow_pyarrow::PyArrowType<arrow_array::ffi_stream::RecordBatchStreamReader>,
) -> PyResult<(SchemaRef, Vec<RecordBatch>)> {
    let reader = reader.0;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::from)?;
    Ok((schema, batches))
}

#[pymethods]
impl PyColumnStore {
    /// Import any Arrow stream (a pyarrow Table or RecordBatchReader) without copying.
    /// `row_major=False` never builds the row-major block for shuffled reads.
    #[new]
    #[pyo3(signature = (data, row_major=true))]
    fn new(
        data: arrow_pyarrow::PyArrowType<arrow_array::ffi_stream::RecordBatchStreamReader>,
        row_major: bool,
    ) -> PyResult<Self> {
        let (schema, batches) = read_stream(data)?;
        let store = Store::new(schema, batches)?;
        Ok(Self::wrap(if row_major {
            store
        } else {
            store.without_row_block()
        }))
    }

    /// A new store with the stream's batches appended; refuses a schema that differs.
    fn appended(
        &self,
        data: arrow_pyarrow::PyArrowType<arrow_array::ffi_stream::RecordBatchStreamReader>,
    ) -> PyResult<Self> {
        let (_, batches) = read_stream(data)?;
        Ok(Self::wrap(self.inner.appended(batches)?))
    }

    #[getter]
    fn num_rows(&self) -> u64 {
        self.inner.num_rows()
    }

    #[getter]
    fn schema(&self) -> arrow_pyarrow::PyArrowType<arrow_schema::Schema> {
        arrow_pyarrow::PyArrowType(self.inner.schema().as_ref().clone())
    }

    /// Rows at `offsets` (an int64 Arrow array; negative counts from the end) of the columns
    /// at positions `columns` (all when omitted), gathered with the GIL released.
    #[pyo3(signature = (offsets, columns=None))]
    fn take<'py>(
        &self,
        py: Python<'py>,
        offsets: &Bound<'py, PyAny>,
        columns: Option<Vec<usize>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.take_with_twin(py, offsets, columns)?.0)
    }

    /// `take`, and beside the pyarrow batch its Rust twin, which turns into a tensor without
    /// crossing back from pyarrow.
    #[pyo3(signature = (offsets, columns=None))]
    fn take_with_twin<'py>(
        &self,
        py: Python<'py>,
        offsets: &Bound<'py, PyAny>,
        columns: Option<Vec<usize>>,
    ) -> PyResult<(Bound<'py, PyAny>, crate::tensor::PyGathered)> {
        let offsets = crate::bridge::offsets_from_py(offsets)?;
        let columns = columns.unwrap_or_else(|| (0..self.inner.schema().fields().len()).collect());
        for &c in &columns {
            if c >= self.inner.schema().fields().len() {
                return Err(Error::Index(format!(
                    "column index {c} is out of range for a table of {} columns",
                    self.inner.schema().fields().len()
                ))
                .into());
            }
        }
        let schema = self.py_schema(py, &columns)?;
        let store = self.inner.clone();
        let batch = py.detach(|| crate::gather::take(&store, &offsets, &columns))?;
        let twin = crate::tensor::PyGathered::new(batch.clone());
        Ok((crate::bridge::batch_to_py(py, batch, Some(&schema))?, twin))
    }

    /// Build the row-major block for shuffled reads now (with the GIL released) instead of
    /// in the background on the first shuffled take: for a reader about to go through a
    /// whole shuffled epoch.
    fn prepare_shuffled_reads(&self, py: Python<'_>) {
        let store = self.inner.clone();
        py.detach(|| store.wait_for_row_block());
    }

    /// The stored chunks as pyarrow record batches (no copy).
    fn batches(&self) -> Vec<arrow_pyarrow::PyArrowType<RecordBatch>> {
        self.inner
            .chunks()
            .iter()
            .cloned()
            .map(arrow_pyarrow::PyArrowType)
            .collect()
    }
}
