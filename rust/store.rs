//! The column store: a table's rows held by Rust, addressed by global row offset.
//!
//! Chunks arrive as Arrow record batches (imported zero-copy through the Arrow C interfaces);
//! a global offset maps to `(chunk, row)` through prefix sums of the chunk lengths. A table of
//! many rows is laid out for shuffled reads when it is built: its fixed-width numeric columns
//! are copied side by side into one row-major block, and the block becomes the only copy the
//! store holds of them (their Arrow arrays are dropped, so the table is held once, not twice).
//! Arrow arrays of those columns are made again from the block only when asked for.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions, RecordBatchReader};
use arrow_schema::SchemaRef;
use pyo3::prelude::*;

use crate::error::{Error, Result};
use crate::rows::RowBlock;

/// Where a row lives: `(chunk, row within chunk)`.
pub type Loc = (usize, usize);

#[derive(Debug)]
pub struct Store {
    schema: SchemaRef,
    /// For each column, its Arrow array in every chunk; `None` for a column whose only copy
    /// is the row-major block.
    arrays: Vec<Option<Vec<ArrayRef>>>,
    /// `starts[i]` is the global offset of the first row of chunk `i`; one extra entry holds
    /// the total row count.
    starts: Vec<u64>,
    /// Row-major copy of the fixed-width columns, for shuffled reads (none for short tables,
    /// tables with fewer than two such columns, and stores built without it).
    block: Option<RowBlock>,
    /// Whether this store builds the block where the table qualifies (and so do its appends).
    row_major: bool,
}

impl Store {
    /// A store of `batches`, with the row-major block where the table qualifies.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Self> {
        let mut store = Self::columns_only(schema, batches)?;
        store.row_major = true;
        if let Some(block) = RowBlock::build(&store) {
            for (c, arrays) in store.arrays.iter_mut().enumerate() {
                if block.slot(c).is_some() {
                    *arrays = None;
                }
            }
            store.block = Some(block);
        }
        Ok(store)
    }

    /// A store of `batches` that keeps them as they are and never builds the row-major block:
    /// for tables mapped from shared memory, where a block would be a copy in every process.
    pub fn columns_only(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Self> {
        let mut store = Store {
            arrays: vec![Some(Vec::new()); schema.fields().len()],
            schema,
            starts: vec![0],
            block: None,
            row_major: false,
        };
        store.push(batches)?;
        Ok(store)
    }

    fn push(&mut self, batches: Vec<RecordBatch>) -> Result<()> {
        for batch in batches {
            self.check(&batch)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let end = self.num_rows() + batch.num_rows() as u64;
            for (arrays, column) in self.arrays.iter_mut().zip(batch.columns()) {
                arrays
                    .as_mut()
                    .expect("pushed before the block is built")
                    .push(column.clone());
            }
            self.starts.push(end);
        }
        Ok(())
    }

    /// Refuse a batch whose column names or types differ from the table's.
    fn check(&self, batch: &RecordBatch) -> Result<()> {
        if same_columns(&self.schema, &batch.schema()) {
            return Ok(());
        }
        let names = |s: &SchemaRef| {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect::<Vec<_>>()
        };
        Err(Error::Value(format!(
            "new data has columns {:?}, the table has {:?}",
            names(&batch.schema()),
            names(&self.schema)
        )))
    }

    /// A new store holding this one's rows followed by `batches`; `self` is unchanged. The
    /// block's columns are made again as Arrow arrays for the new store to build its own.
    pub fn appended(&self, batches: Vec<RecordBatch>) -> Result<Self> {
        for batch in &batches {
            self.check(batch)?;
        }
        let mut all = self.batches()?;
        all.extend(batches);
        if self.row_major {
            Store::new(self.schema.clone(), all)
        } else {
            Store::columns_only(self.schema.clone(), all)
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Number of chunks.
    pub fn num_chunks(&self) -> usize {
        self.starts.len() - 1
    }

    /// Rows in chunk `i`.
    pub fn chunk_rows(&self, i: usize) -> usize {
        (self.starts[i + 1] - self.starts[i]) as usize
    }

    /// Column `c`'s Arrow array in every chunk, or `None` when the row-major block is its only
    /// copy (`row_block` then serves it).
    pub fn arrays(&self, c: usize) -> Option<&[ArrayRef]> {
        self.arrays[c].as_deref()
    }

    /// The rows as Arrow record batches, one per chunk: the columns held as Arrow are shared,
    /// those held only by the row-major block are copied out of it.
    pub fn batches(&self) -> Result<Vec<RecordBatch>> {
        let options = |n: usize| RecordBatchOptions::new().with_row_count(Some(n));
        (0..self.num_chunks())
            .map(|i| {
                let first = self.starts[i] as usize;
                let n = self.chunk_rows(i);
                let columns = (0..self.schema.fields().len())
                    .map(|c| match &self.arrays[c] {
                        Some(arrays) => Ok(arrays[i].clone()),
                        None => self
                            .block
                            .as_ref()
                            .expect("a column without arrays is in the block")
                            .column(c, self.schema.field(c).data_type(), first, n),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(RecordBatch::try_new_with_options(
                    self.schema.clone(),
                    columns,
                    &options(n),
                )?)
            })
            .collect()
    }

    /// The row-major block, when it holds any of `columns`.
    pub fn row_block(&self, columns: &[usize]) -> Option<&RowBlock> {
        self.block
            .as_ref()
            .filter(|b| columns.iter().any(|&c| b.slot(c).is_some()))
    }

    pub fn num_rows(&self) -> u64 {
        *self.starts.last().expect("starts is never empty")
    }

    /// The chunk locations of checked global offsets.
    pub fn locate(&self, rows: &[u64]) -> Vec<Loc> {
        if self.num_chunks() == 1 {
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
    /// Import any Arrow stream (a pyarrow Table or RecordBatchReader) without copying. A
    /// table of many rows then copies its fixed-width numeric columns into the row-major block
    /// (with the GIL released) and drops its own references to their Arrow arrays;
    /// `row_major=False` keeps the stream's arrays as they are and builds no block.
    #[new]
    #[pyo3(signature = (data, row_major=true))]
    fn new(
        py: Python<'_>,
        data: arrow_pyarrow::PyArrowType<arrow_array::ffi_stream::RecordBatchStreamReader>,
        row_major: bool,
    ) -> PyResult<Self> {
        let (schema, batches) = read_stream(data)?;
        let store = if row_major {
            py.detach(|| Store::new(schema, batches))?
        } else {
            Store::columns_only(schema, batches)?
        };
        Ok(Self::wrap(store))
    }

    /// A new store with the stream's batches appended; refuses a schema that differs.
    fn appended(
        &self,
        py: Python<'_>,
        data: arrow_pyarrow::PyArrowType<arrow_array::ffi_stream::RecordBatchStreamReader>,
    ) -> PyResult<Self> {
        let (_, batches) = read_stream(data)?;
        let store = self.inner.clone();
        Ok(Self::wrap(py.detach(|| store.appended(batches))?))
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

    /// The rows as pyarrow record batches, one per chunk: columns held as Arrow are shared
    /// (no copy), those held only by the row-major block are copied out of it.
    fn batches(&self, py: Python<'_>) -> PyResult<Vec<arrow_pyarrow::PyArrowType<RecordBatch>>> {
        let store = self.inner.clone();
        let batches = py.detach(|| store.batches())?;
        Ok(batches.into_iter().map(arrow_pyarrow::PyArrowType).collect())
    }
}
