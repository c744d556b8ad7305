//! The column store: a table's rows held by Rust, addressed by global row offset.
//!
//! Chunks arrive as Arrow record batches (imported zero-copy through the Arrow C interfaces);
//! a global offset maps to `(chunk, row)` through prefix sums of the chunk lengths. A table of
//! many rows is laid out for shuffled reads when it is built: its fixed-width numeric columns
//! are copied side by side into one row-major block, and the block becomes the only copy the
//! store holds of them (their Arrow arrays are dropped, so the table is held once, not twice).
//! Arrow arrays of those columns are made again from the block only when asked for.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::SchemaRef;

use crate::dtype::same_columns;
use crate::error::{Error, Result};
use crate::row_block::RowBlock;

/// Rows copied out of the block at a time when a store with a block is appended to.
const APPEND_ROWS: usize = 1 << 16;

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
        Ok(Self::columns_only(schema, batches)?.with_row_block())
    }

    /// This store with the row-major block built where the table qualifies, the only copy
    /// of the columns it holds.
    fn with_row_block(mut self) -> Self {
        self.row_major = true;
        let block = RowBlock::build(
            &self.schema,
            self.num_rows(),
            self.num_chunks(),
            &self.arrays,
        );
        if let Some(block) = block {
            for (c, arrays) in self.arrays.iter_mut().enumerate() {
                if block.slot(c).is_some() {
                    *arrays = None;
                }
            }
            self.block = Some(block);
        }
        self
    }

    /// A store of `batches` that keeps them as they are and never builds the row-major block:
    /// for tables mapped from shared memory, where a block would be a copy in every process.
    pub fn columns_only(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Self> {
        let mut store = Store {
            #[allow(clippy::disallowed_methods)] // one a column of the schema
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

    /// Refuse a batch whose column names or types differ from the table's, or with nulls in
    /// a column the table's schema says has none.
    fn check(&self, batch: &RecordBatch) -> Result<()> {
        if same_columns(&self.schema, &batch.schema()) {
            RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
            return Ok(());
        }
        let (ours, theirs) = (self.schema.fields(), batch.schema_ref().fields().clone());
        if ours.len() != theirs.len() {
            let names =
                |f: &arrow_schema::Fields| f.iter().map(|f| f.name().clone()).collect::<Vec<_>>();
            return Err(Error::Value(format!(
                "new data has columns {:?}, the table has {:?}",
                names(&theirs),
                names(ours)
            )));
        }
        let (i, (want, got)) = ours
            .iter()
            .zip(theirs.iter())
            .enumerate()
            .find(|(_, (a, b))| a.name() != b.name() || a.data_type() != b.data_type())
            .expect("a column differs");
        Err(Error::Value(format!(
            "column {i} of the new data is '{}' of type {}, the table's is '{}' of type {}; \
             cast the new data to the table's schema first (pyarrow: data.cast(schema))",
            got.name(),
            got.data_type(),
            want.name(),
            want.data_type()
        )))
    }

    /// A new store holding this one's rows followed by `batches`; `self` is unchanged. The
    /// block's columns are made again as Arrow arrays for the new store to build its own.
    pub fn appended(&self, batches: Vec<RecordBatch>) -> Result<Self> {
        for batch in &batches {
            self.check(batch)?;
        }
        if !self.row_major {
            let mut all = self.batches()?;
            all.extend(batches);
            return Store::columns_only(self.schema.clone(), all);
        }
        // Through a builder, a slice of rows at a time: the block's columns are copied out
        // of this store's block only a slice ahead of going into the new one.
        let added: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let rows = self.num_rows() + added;
        // The new block holds what this one holds (columns kept as Arrow for their nulls
        // stay so); a store without a block yet offers every column.
        let mut builder = match &self.block {
            Some(block) => {
                StoreBuilder::holding(self.schema.clone(), rows, |c| block.slot(c).is_some())
            }
            None => StoreBuilder::holding(self.schema.clone(), rows, |c| {
                self.arrays[c]
                    .as_ref()
                    .is_some_and(|a| a.iter().all(|a| a.null_count() == 0))
            }),
        };
        for i in 0..self.num_chunks() {
            let n = self.chunk_rows(i);
            for k in (0..n).step_by(APPEND_ROWS) {
                builder.push(self.chunk_slice(i, k, APPEND_ROWS.min(n - k))?)?;
            }
        }
        for batch in batches {
            builder.push(batch)?;
        }
        builder.finish()
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
        self.batches_of(&(0..self.schema.fields().len()).collect::<Vec<_>>())
    }

    /// An `IndexError` naming the first of `columns` (positions) the table does not have.
    pub fn check_columns(&self, columns: &[usize]) -> Result<()> {
        let fields = self.schema.fields().len();
        match columns.iter().find(|&&c| c >= fields) {
            Some(&c) => Err(Error::ColumnOutOfRange {
                index: c,
                columns: fields,
                of: "table",
            }),
            None => Ok(()),
        }
    }

    /// `batches` of the columns at positions `columns` only.
    pub fn batches_of(&self, columns: &[usize]) -> Result<Vec<RecordBatch>> {
        self.check_columns(columns)?;
        let schema = Arc::new(self.schema.project(columns)?);
        (0..self.num_chunks())
            .map(|i| {
                let n = self.chunk_rows(i);
                let arrays = columns
                    .iter()
                    .map(|&c| self.chunk_column(c, i, 0, n))
                    .collect::<Result<Vec<_>>>()?;
                let options = RecordBatchOptions::new().with_row_count(Some(n));
                Ok(RecordBatch::try_new_with_options(
                    schema.clone(),
                    arrays,
                    &options,
                )?)
            })
            .collect()
    }

    /// Rows `k..k + n` of chunk `i` of column `c`: a slice of its Arrow array, or a copy out
    /// of the block.
    fn chunk_column(&self, c: usize, i: usize, k: usize, n: usize) -> Result<ArrayRef> {
        match &self.arrays[c] {
            Some(arrays) => Ok(arrays[i].slice(k, n)),
            None => self
                .block
                .as_ref()
                .expect("a column without arrays is in the block")
                .column(
                    c,
                    self.schema.field(c).data_type(),
                    self.starts[i] as usize + k,
                    n,
                ),
        }
    }

    /// Rows `k..k + n` of chunk `i` as a record batch (see [`Store::batches`]).
    fn chunk_slice(&self, i: usize, k: usize, n: usize) -> Result<RecordBatch> {
        let columns = (0..self.schema.fields().len())
            .map(|c| self.chunk_column(c, i, k, n))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }

    /// Rows `start..start + n` as one record batch: a slice of a chunk where they lie in one
    /// (the columns held as Arrow are shared), pieces of chunks joined where they do not.
    pub fn slice(&self, start: u64, n: u64) -> Result<RecordBatch> {
        let end = start
            .checked_add(n)
            .filter(|&e| e <= self.num_rows())
            .ok_or_else(|| {
                Error::Index(format!(
                    "rows {start}..{} are out of range for a table of {} rows",
                    start.saturating_add(n),
                    self.num_rows()
                ))
            })?;
        let mut pieces = Vec::new();
        for i in 0..self.num_chunks() {
            let (lo, hi) = (self.starts[i].max(start), self.starts[i + 1].min(end));
            if lo < hi {
                let k = (lo - self.starts[i]) as usize;
                pieces.push(self.chunk_slice(i, k, (hi - lo) as usize)?);
            }
        }
        match pieces.len() {
            1 => Ok(pieces.pop().expect("one piece")),
            _ => Ok(arrow_select::concat::concat_batches(&self.schema, &pieces)?),
        }
    }

    /// Bytes the table takes: its Arrow buffers and its block.
    pub fn nbytes(&self) -> usize {
        let arrow: usize = self
            .arrays
            .iter()
            .flatten()
            .flatten()
            .map(|a| a.get_buffer_memory_size())
            .sum();
        arrow + self.block.as_ref().map_or(0, RowBlock::nbytes)
    }

    /// The columns the row-major block holds (none without one).
    pub fn block_columns(&self) -> Vec<usize> {
        self.block
            .as_ref()
            .map(RowBlock::columns)
            .unwrap_or_default()
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

/// A store made from batches as they arrive (a scan) when the row count is known beforehand:
/// each batch goes into the row-major block at once and the store keeps no Arrow arrays of
/// the block's columns, so the table is never held twice. A batch the block cannot take (nulls
/// in one of its columns, rows beyond the count given) makes the builder give the block up:
/// the rows so far go back to Arrow, and `finish` lays the table out as `Store::new` would.
#[derive(Debug)]
pub struct StoreBuilder {
    store: Store,
    block: Option<RowBlock>,
}

impl StoreBuilder {
    /// A builder for `rows` rows whose block holds every column of a type it can hold.
    pub fn new(schema: SchemaRef, rows: u64) -> Self {
        Self::holding(schema, rows, |_| true)
    }

    /// A builder for `rows` rows whose block holds the columns `wanted` accepts among those
    /// of a type it can hold.
    fn holding(schema: SchemaRef, rows: u64, wanted: impl Fn(usize) -> bool) -> Self {
        let block = RowBlock::empty(&schema, rows, |c| {
            crate::row_block::fixed_width(schema.field(c).data_type()).filter(|_| wanted(c))
        });
        let mut store = Store::columns_only(schema, Vec::new()).expect("no batches to refuse");
        if let Some(block) = &block {
            for (c, arrays) in store.arrays.iter_mut().enumerate() {
                if block.slot(c).is_some() {
                    *arrays = None;
                }
            }
        }
        StoreBuilder { store, block }
    }

    /// Positions of the columns the row-major block takes (none when the table gets no
    /// block): a column among them leaves it later only if a batch brings nulls.
    pub fn block_columns(&self) -> Vec<usize> {
        let Some(block) = &self.block else {
            return Vec::new();
        };
        (0..self.store.schema().fields().len())
            .filter(|&c| block.slot(c).is_some())
            .collect()
    }

    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        self.store.check(&batch)?;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let filled = self.store.num_rows() as usize;
        if self
            .block
            .as_ref()
            .is_some_and(|b| filled + n > b.num_rows())
        {
            self.give_up_block()?;
        }
        // A column with nulls leaves the block (its rows so far go back to Arrow).
        for c in 0..batch.num_columns() {
            if self
                .block
                .as_ref()
                .is_some_and(|b| !b.takes(c, batch.column(c)))
            {
                self.give_up_column(c)?;
            }
        }
        if let Some(block) = &mut self.block {
            let chunk: Vec<Option<&ArrayRef>> = batch.columns().iter().map(Some).collect();
            block.fill(&[chunk]);
        }
        for (arrays, column) in self.store.arrays.iter_mut().zip(batch.columns()) {
            if let Some(arrays) = arrays {
                arrays.push(column.clone());
            }
        }
        self.store.starts.push((filled + n) as u64);
        Ok(())
    }

    /// Turn the block's columns of the rows pushed so far back into Arrow arrays and drop it.
    fn give_up_block(&mut self) -> Result<()> {
        let columns = self
            .block
            .as_ref()
            .map(RowBlock::columns)
            .unwrap_or_default();
        for c in columns {
            self.give_up_column(c)?;
        }
        self.block = None;
        Ok(())
    }

    /// Turn column `c`'s rows pushed so far back into Arrow arrays; the block stops holding
    /// it (and is dropped once it holds no column).
    fn give_up_column(&mut self, c: usize) -> Result<()> {
        let Some(block) = self.block.as_mut() else {
            return Ok(());
        };
        let store = &mut self.store;
        let dt = store.schema.field(c).data_type().clone();
        // bounded: one a chunk of the store
        let arrays = (0..store.num_chunks())
            .map(|i| block.column(c, &dt, store.starts[i] as usize, store.chunk_rows(i)))
            .collect::<Result<Vec<_>>>()?;
        store.arrays[c] = Some(arrays);
        block.release(c);
        if block.columns().is_empty() {
            self.block = None;
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<Store> {
        let short = self
            .block
            .as_ref()
            .is_some_and(|b| (self.store.num_rows() as usize) < b.num_rows());
        if short {
            self.give_up_block()?;
        }
        match self.block {
            Some(block) => {
                self.store.block = Some(block);
                self.store.row_major = true;
                Ok(self.store)
            }
            None => Ok(self.store.with_row_block()),
        }
    }
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
                return Err(Error::RowOutOfRange {
                    offset: raw,
                    rows: num_rows,
                    position: Some(pos),
                    why: None,
                });
            }
            Ok(off as u64)
        })
        .collect()
}

/// Positions of a view of `length` rows (negative counts from the end) as row offsets of the
/// table under it, each checked once: the view starts `start` rows into `rows` (the table's
/// offsets in the view's own order) or, without `rows`, into the table itself.
pub fn view_offsets(
    positions: &[i64],
    length: u64,
    start: u64,
    rows: Option<&[i64]>,
) -> Result<Vec<i64>> {
    let end = start
        .checked_add(length)
        .filter(|&end| end <= i64::MAX as u64);
    let limit = rows.map_or(i64::MAX as u64, |rows| rows.len() as u64);
    if end.is_none_or(|end| end > limit) {
        return Err(Error::Value(format!(
            "a view of {length} rows from position {start} is past the end of {}",
            match rows {
                Some(rows) => format!("an order of {} rows", rows.len()),
                None => "the row offsets a table can have".to_string(),
            }
        )));
    }
    let checked = normalize(positions, length)?;
    Ok(match rows {
        Some(rows) => checked
            .iter()
            .map(|&p| rows[(start + p) as usize])
            .collect(),
        None => checked.iter().map(|&p| (start + p) as i64).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float32Array, Int64Array, StringArray, UInt16Array};
    use arrow_schema::{DataType, Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("s", DataType::Utf8, false),
            Field::new("b", DataType::Float32, false),
            Field::new("c", DataType::UInt16, true),
        ]))
    }

    /// Rows `start..start + n`; column `c` null at every 5th row when `nulls`.
    fn batch(start: usize, n: usize, nulls: bool) -> RecordBatch {
        let r = start..start + n;
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(
                    r.clone().map(|i| i as i64 * 3),
                )),
                Arc::new(StringArray::from_iter_values(
                    r.clone().map(|i| format!("r{i}")),
                )),
                Arc::new(Float32Array::from_iter_values(
                    r.clone().map(|i| i as f32 * 0.5),
                )),
                Arc::new(UInt16Array::from_iter(
                    r.map(|i| (!nulls || i % 5 != 0).then_some(i as u16)),
                )),
            ],
        )
        .unwrap()
    }

    fn batches(sizes: &[usize], nulls_in: Option<usize>) -> Vec<RecordBatch> {
        let mut start = 0;
        sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                let b = batch(start, n, nulls_in == Some(k));
                start += n;
                b
            })
            .collect()
    }

    fn built(expected_rows: u64, batches: &[RecordBatch]) -> Store {
        let mut builder = StoreBuilder::new(schema(), expected_rows);
        for b in batches {
            builder.push(b.clone()).unwrap();
        }
        builder.finish().unwrap()
    }

    fn same_rows(store: &Store, batches: &[RecordBatch]) {
        let want = arrow_select::concat::concat_batches(&schema(), batches).unwrap();
        let got =
            arrow_select::concat::concat_batches(&schema(), &store.batches().unwrap()).unwrap();
        assert_eq!(got, want);
        let n = want.num_rows() as i64;
        let offsets: Vec<i64> = (0..3000).map(|i| (i * 7919 + 3) % n).collect();
        let plain = Store::columns_only(schema(), batches.to_vec()).unwrap();
        for columns in [&[0usize, 1, 2, 3][..], &[2, 0], &[3]] {
            assert_eq!(
                crate::gather::take(store, &offsets, columns).unwrap(),
                crate::gather::take(&plain, &offsets, columns).unwrap(),
            );
        }
    }

    #[test]
    fn a_built_store_matches_one_made_at_once() {
        let sizes = [1, 30_000, 0, 40_000, 7];
        let input = batches(&sizes, None);
        let store = built(70_008, &input);
        let block = store
            .row_block(&[0])
            .expect("the block is built as rows arrive");
        assert_eq!(block.num_rows(), 70_008);
        assert!(
            store.arrays(0).is_none() && store.arrays(2).is_none() && store.arrays(3).is_none()
        );
        same_rows(&store, &input);
    }

    #[test]
    fn nulls_or_a_wrong_count_give_the_block_up_and_keep_every_row() {
        let sizes = [30_000, 40_000, 7];
        // Nulls in the second batch: column c stays Arrow, a and b still get a block.
        let input = batches(&sizes, Some(1));
        let store = built(70_007, &input);
        assert_eq!(
            store.block_columns(),
            vec![0, 2],
            "only the column with nulls leaves"
        );
        assert!(store.arrays(3).is_some() && store.arrays(0).is_none());
        same_rows(&store, &input);
        // Appending to it keeps that block as it is, nulls or not in the new rows.
        for nulls in [false, true] {
            let more = batch(70_007, 10, nulls);
            let next = store.appended(vec![more.clone()]).unwrap();
            assert_eq!(next.block_columns(), vec![0, 2]);
            let mut all = input.clone();
            all.push(more);
            same_rows(&next, &all);
        }
        // More rows than announced, and fewer.
        let input = batches(&sizes, None);
        for expected in [70_000, 70_100] {
            let store = built(expected, &input);
            assert!(store.row_block(&[0, 2]).is_some(), "{expected}");
            same_rows(&store, &input);
        }
        // Too few rows for a block at all.
        let input = batches(&[100, 5], None);
        let store = built(105, &input);
        assert!(store.row_block(&[0, 2]).is_none());
        same_rows(&store, &input);
    }

    #[test]
    fn a_builder_names_the_columns_its_block_takes() {
        assert_eq!(
            StoreBuilder::new(schema(), 70_000).block_columns(),
            vec![0, 2, 3]
        );
        assert!(
            StoreBuilder::new(schema(), 6).block_columns().is_empty(),
            "too short"
        );
    }

    #[test]
    fn a_builder_refuses_other_columns_and_goes_on() {
        let mut builder = StoreBuilder::new(schema(), 70_000);
        builder.push(batch(0, 69_000, false)).unwrap();
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        let err = builder.push(other).unwrap_err().to_string();
        assert!(err.contains("new data has columns"), "{err}");
        // Column 2 ('b') as Float64 instead of the table's Float32: named, with both types.
        let mut fields: Vec<Field> = schema().fields().iter().map(|f| (**f).clone()).collect();
        fields[2] = Field::new("b", DataType::Float64, false);
        let mut columns = batch(0, 1, false).columns().to_vec();
        columns[2] = Arc::new(arrow_array::Float64Array::from(vec![0.5]));
        let other = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let err = builder.push(other).unwrap_err().to_string();
        assert!(
            err.contains("column 2 of the new data is 'b' of type Float64, the table's is 'b' of type Float32"),
            "{err}"
        );
        builder.push(batch(69_000, 1_000, false)).unwrap();
        let store = builder.finish().unwrap();
        assert!(store.row_block(&[0]).is_some());
        same_rows(
            &store,
            &[batch(0, 69_000, false), batch(69_000, 1_000, false)],
        );
    }

    #[test]
    fn appends_to_a_store_with_a_block_keep_every_row() {
        let first = batches(&[70_000, 3], None);
        let store = Store::new(schema(), first.clone()).unwrap();
        assert!(store.row_block(&[0]).is_some());
        let more = batch(70_003, 10, false);
        let next = store.appended(vec![more.clone()]).unwrap();
        let mut all = first.clone();
        all.push(more);
        same_rows(&next, &all);
        assert!(next.row_block(&[0]).is_some() && next.arrays(2).is_none());
        // Nulls in a block column: that column goes back to Arrow, nothing is lost.
        let nulls = batch(70_013, 10, true);
        let after = next.appended(vec![nulls.clone()]).unwrap();
        all.push(nulls);
        same_rows(&after, &all);
        assert!(after.arrays(3).is_some() && after.arrays(0).is_none());
        // The store appended to is unchanged.
        same_rows(&store, &first);
    }

    #[test]
    fn slices_within_and_across_chunks() {
        let input = batches(&[40_000, 0, 30_000, 5], None);
        let store = Store::new(schema(), input.clone()).unwrap();
        let all = arrow_select::concat::concat_batches(&schema(), &input).unwrap();
        for (start, n) in [(0, 10), (39_990, 20), (39_999, 30_006), (70_004, 1), (5, 0)] {
            assert_eq!(
                store.slice(start, n).unwrap(),
                all.slice(start as usize, n as usize),
                "{start} {n}"
            );
        }
        assert!(store.slice(70_000, 6).is_err());
    }

    #[test]
    fn nulls_in_a_column_declared_without_them_are_refused() {
        let loose = Arc::new(Schema::new(
            schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let good = batch(0, 3, false);
        let mut columns = good.columns().to_vec();
        columns[2] = Arc::new(Float32Array::from(vec![Some(1.0), None, Some(2.0)]));
        let bad = RecordBatch::try_new(loose, columns).unwrap();
        let store = Store::new(schema(), vec![good.clone()]).unwrap();
        assert!(store.appended(vec![bad.clone()]).is_err());
        let mut builder = StoreBuilder::new(schema(), 6);
        builder.push(good).unwrap();
        assert!(builder.push(bad).is_err());
    }

    #[test]
    fn view_offsets_check_positions_against_the_view_then_map_them() {
        let rows = [40, 10, 30, 20, 0];
        assert_eq!(
            view_offsets(&[0, -1, 1], 3, 1, Some(&rows)).unwrap(),
            vec![10, 20, 30]
        );
        assert_eq!(view_offsets(&[1, -2], 4, 5, None).unwrap(), vec![6, 7]);
        let err = view_offsets(&[3], 3, 1, Some(&rows)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::RowOutOfRange {
                    offset: 3,
                    rows: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            view_offsets(&[0], 3, 3, Some(&rows)).is_err(),
            "window past the order"
        );
        assert!(view_offsets(&[0], 1, u64::MAX, Some(&rows)).is_err());
        assert!(
            view_offsets(&[0], 1, i64::MAX as u64, None).is_err(),
            "offset past i64"
        );
    }
}
