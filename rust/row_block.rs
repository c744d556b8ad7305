//! A row-major copy of a table's fixed-width numeric columns, for shuffled reads.
//!
//! Gathering random rows from separate column arrays costs one cache miss per value; from
//! rows laid side by side it costs about one per row. A column store of many rows builds this
//! block when it is made and keeps it as the only copy of those columns, serving every read
//! of them from it, written out column after column as the gather always does.

use rayon::prelude::*;

use arrow_array::Array;
use arrow_schema::DataType;

/// Tables shorter than this fit in cache: their columns are read directly.
pub const MIN_ROWS: u64 = 1 << 16;
/// Rows per parallel task when building or gathering.
const TASK_ROWS: usize = 1 << 14;
/// The most rows `RowBlock::gather_converted` takes (one thread's share of a large gather).
pub const MAX_CONVERTED_ROWS: usize = TASK_ROWS;

/// An allocation aligned to 2 MiB and offered to the kernel for huge pages: a random row read
/// then rarely misses the TLB as well as the cache. Its bytes are written (each part zeroed,
/// then filled) by `RowBlock::fill` before anything reads them.
struct HugeBytes {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

// SAFETY: a plain owned allocation.
unsafe impl Send for HugeBytes {}
unsafe impl Sync for HugeBytes {}

impl HugeBytes {
    const ALIGN: usize = 2 << 20;

    fn new(len: usize) -> Self {
        let layout =
            std::alloc::Layout::from_size_align(len.max(1), Self::ALIGN).expect("row block layout");
        // SAFETY: non-zero size.
        #[allow(clippy::disallowed_methods)] // RowBlock::empty keeps it under a quarter of free
        let raw = unsafe { std::alloc::alloc(layout) };
        let ptr =
            std::ptr::NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        // The advice comes before the first write: pages already touched stay small until the
        // kernel gets round to merging them, and the block would miss the TLB on most reads.
        #[cfg(target_os = "linux")]
        // SAFETY: advice on memory we own; failure only means normal pages.
        unsafe {
            libc::madvise(raw as *mut libc::c_void, layout.size(), libc::MADV_HUGEPAGE);
        }
        HugeBytes { ptr, layout }
    }

    /// Bytes `start..start + len`.
    ///
    /// # Safety
    /// Those bytes have been written.
    unsafe fn range(&self, start: usize, len: usize) -> &[u8] {
        assert!(start + len <= self.layout.size());
        // SAFETY: inside the allocation (checked), and written (the caller's promise).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), len) }
    }
}

impl Drop for HugeBytes {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl std::fmt::Debug for HugeBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HugeBytes({} bytes)", self.layout.size())
    }
}

/// Where one output column goes: `(byte offset within a row, width, destination)`.
pub type ColumnOut<'a> = (usize, usize, &'a mut [u8]);

#[derive(Debug)]
pub struct RowBlock {
    data: HugeBytes,
    /// Rows the block has room for; all of them are written before it serves reads.
    rows: usize,
    /// Rows written so far (from the first, in order).
    written: usize,
    /// Bytes per row, a multiple of 8.
    stride: usize,
    /// For each store column: `(byte offset within a row, width)` when it is in the block.
    slots: Vec<Option<(usize, usize)>>,
}

/// The width of a column type the block can hold: fixed width 1-8 bytes, not bool.
pub fn fixed_width(dt: &DataType) -> Option<usize> {
    if matches!(dt, DataType::Boolean) || !dt.is_primitive() {
        return None;
    }
    dt.primitive_width().filter(|w| matches!(w, 1 | 2 | 4 | 8))
}

impl RowBlock {
    /// Build the block for a table of `schema` and `rows` rows held as `num_chunks` chunks,
    /// `arrays[c]` column `c`'s arrays by chunk (`None` for a column held elsewhere): its
    /// columns of a type the block holds and without nulls. `None` when the block would not
    /// pay or not fit (see [`RowBlock::empty`]).
    pub fn build(
        schema: &arrow_schema::Schema,
        rows: u64,
        num_chunks: usize,
        arrays: &[Option<Vec<arrow_array::ArrayRef>>],
    ) -> Option<RowBlock> {
        let held = |c: usize| {
            let width = fixed_width(schema.field(c).data_type())?;
            let arrays = arrays[c].as_deref()?;
            arrays.iter().all(|a| a.null_count() == 0).then_some(width)
        };
        let mut block = RowBlock::empty(schema, rows, held)?;
        // bounded: one a chunk and column of the table held already
        let chunks: Vec<Vec<Option<&arrow_array::ArrayRef>>> = (0..num_chunks)
            .map(|i| {
                (0..schema.fields().len())
                    .map(|c| arrays[c].as_deref().map(|a| &a[i]))
                    .collect()
            })
            .collect();
        block.fill(&chunks);
        Some(block)
    }

    /// A block with room for `rows` rows of the columns of `schema` for which `held` gives a
    /// width, nothing written yet; `None` when the table is short (below [`MIN_ROWS`]),
    /// fewer than two columns qualify, or the block would take more than a quarter of the
    /// free memory. Every row must be written by [`RowBlock::fill`] before it serves reads.
    pub fn empty(
        schema: &arrow_schema::Schema,
        rows: u64,
        held: impl Fn(usize) -> Option<usize>,
    ) -> Option<RowBlock> {
        if rows < MIN_ROWS {
            return None;
        }
        let fields = schema.fields().len();
        // bounded: one a column of the schema
        let mut cols: Vec<(usize, usize)> = (0..fields)
            .filter_map(|c| held(c).map(|w| (c, w)))
            .collect();
        if cols.len() < 2 {
            return None;
        }
        // Widest first: every value sits at a multiple of its width.
        cols.sort_by_key(|&(c, w)| (std::cmp::Reverse(w), c));
        #[allow(clippy::disallowed_methods)] // one a column of the schema
        let mut slots = vec![None; fields];
        let mut at = 0;
        for &(c, w) in &cols {
            slots[c] = Some((at, w));
            at += w;
        }
        let stride = at.next_multiple_of(8);
        let rows = usize::try_from(rows).ok()?;
        let bytes = rows.checked_mul(stride)?;
        if crate::memory::available_bytes().is_some_and(|free| bytes as u64 > free / 4) {
            return None;
        }
        Some(RowBlock {
            data: HugeBytes::new(bytes),
            rows,
            written: 0,
            stride,
            slots,
        })
    }

    /// Rows the block holds.
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// Whether `array`, of the block's column `c`, can go into it (it has no nulls).
    pub fn takes(&self, c: usize, array: &dyn Array) -> bool {
        self.slot(c).is_none() || array.null_count() == 0
    }

    /// Stop holding column `c`: its slot is left unused (zeroed in rows written from now on).
    pub fn release(&mut self, c: usize) {
        self.slots[c] = None;
    }

    /// The store columns the block holds.
    pub fn columns(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&c| self.slots[c].is_some())
            .collect()
    }

    /// Bytes the block takes.
    pub fn nbytes(&self) -> usize {
        self.rows * self.stride
    }

    /// Write `chunks` (each one's arrays, by store column; `None` for columns outside the
    /// block) into the rows after those written so far. Every block column's array must have
    /// no nulls, and the rows must fit.
    pub fn fill(&mut self, chunks: &[Vec<Option<&arrow_array::ArrayRef>>]) {
        let first = self.written;
        let stride = self.stride;
        let base = self.data.ptr.as_ptr() as usize;
        let mut jobs = Vec::new();
        let mut at = first;
        for chunk in chunks {
            let n = chunk.iter().flatten().next().map_or(0, |a| a.len());
            assert!(at + n <= self.rows, "rows beyond the block");
            let mut k = 0;
            while k < n {
                let len = TASK_ROWS.min(n - k);
                jobs.push((chunk, k, at + k, len));
                k += len;
            }
            at += n;
        }
        let slots = &self.slots;
        let fill = |(chunk, src_first, row, n): (
            &Vec<Option<&arrow_array::ArrayRef>>,
            usize,
            usize,
            usize,
        )| {
            // SAFETY: rows `row..row + n` lie inside the allocation (checked above), and the
            // jobs' row ranges are disjoint; the part is zeroed before it is viewed as bytes.
            let part: &mut [u8] = unsafe {
                let p = (base as *mut u8).add(row * stride);
                std::ptr::write_bytes(p, 0, n * stride);
                std::slice::from_raw_parts_mut(p, n * stride)
            };
            let sources: Vec<(usize, usize, arrow_data::ArrayData)> = slots
                .iter()
                .enumerate()
                .filter_map(|(c, slot)| {
                    let (off, w) = (*slot)?;
                    let data = chunk[c].expect("an array for every block column").to_data();
                    debug_assert_eq!(data.null_count(), 0);
                    Some((off, w, data))
                })
                .collect();
            // A tile of rows at a time, small enough to stay in the core's own cache while
            // every column is written into it.
            let tile = (TILE_BYTES / stride).max(1);
            for (t, rows) in part.chunks_mut(tile * stride).enumerate() {
                let k = rows.len() / stride;
                for (off, w, data) in &sources {
                    let at = data.offset() + src_first + t * tile;
                    let src = &data.buffers()[0].as_slice()[at * w..];
                    match w {
                        8 => column_in::<8>(src, rows, stride, *off, k),
                        4 => column_in::<4>(src, rows, stride, *off, k),
                        2 => column_in::<2>(src, rows, stride, *off, k),
                        _ => column_in::<1>(src, rows, stride, *off, k),
                    }
                }
            }
        };
        if crate::threads::parallel((at - first) * stride, 1 << 20) {
            jobs.into_par_iter().for_each(fill);
        } else {
            jobs.into_iter().for_each(fill);
        }
        self.written = at;
    }

    /// All rows as bytes (every row has been written).
    fn bytes(&self) -> &[u8] {
        assert_eq!(
            self.written, self.rows,
            "a block serves reads once every row is written"
        );
        // SAFETY: every row has been written (checked).
        unsafe { self.data.range(0, self.rows * self.stride) }
    }

    /// Rows `first..first + n` of column `c` (which the block holds) as an Arrow array of
    /// type `data_type`: the column made again, for an export of the table.
    pub fn column(
        &self,
        c: usize,
        data_type: &DataType,
        first: usize,
        n: usize,
    ) -> crate::error::Result<arrow_array::ArrayRef> {
        let (off, w) = self.slot(c).expect("a column the block holds");
        assert!(first + n <= self.written, "rows not written yet");
        // SAFETY: rows already written (checked).
        let rows = unsafe { self.data.range(first * self.stride, n * self.stride) };
        #[allow(clippy::disallowed_methods)] // rows the block holds (checked above)
        let mut values = arrow_buffer::MutableBuffer::from_len_zeroed(n * w);
        let dst = values.as_slice_mut();
        match w {
            8 => column_out::<8>(rows, self.stride, off, dst),
            4 => column_out::<4>(rows, self.stride, off, dst),
            2 => column_out::<2>(rows, self.stride, off, dst),
            _ => column_out::<1>(rows, self.stride, off, dst),
        }
        let data = arrow_data::ArrayData::builder(data_type.clone())
            .len(n)
            .add_buffer(values.into())
            .build()?;
        Ok(arrow_array::make_array(data))
    }

    /// Where column `c` sits in a row, when the block holds it.
    pub fn slot(&self, column: usize) -> Option<(usize, usize)> {
        self.slots.get(column).copied().flatten()
    }

    /// Rows `rows` (global offsets) of `columns` (store columns the block holds, with their
    /// Arrow types) converted into `out`, a `(columns, rows)` array: the gather and the
    /// conversion of a `(columns, rows)` tensor in one pass, for a batch of at most
    /// [`MAX_CONVERTED_ROWS`] rows (larger ones gain from the parallel gather instead).
    pub(crate) fn gather_converted<T: crate::dtype::Element>(
        &self,
        rows: &[u64],
        columns: &[(usize, &DataType)],
        out: &mut [T],
    ) {
        let n = rows.len();
        let stride = self.stride;
        for_each_tile(self.bytes(), stride, rows, |scratch, first| {
            let k = scratch.len() / stride;
            for (j, &(c, dt)) in columns.iter().enumerate() {
                let (off, _) = self.slot(c).expect("a column the block holds");
                let dst = &mut out[j * n + first..j * n + first + k];
                crate::tensor::convert_slot(dt, scratch, stride, off, dst);
            }
        });
    }

    /// Write rows `rows` (global offsets) of the columns in `outs` (`(row offset, width,
    /// destination)`) into their destinations, row `k` at position `k`.
    /// Large gathers are split over the thread pool (for a batch of a thousand rows, waking
    /// it costs about what a second core saves).
    pub fn gather(&self, rows: &[u64], outs: &mut [ColumnOut]) {
        let bytes = self.bytes();
        let stride = self.stride;
        if rows.len() <= TASK_ROWS || !crate::threads::parallel(rows.len() * stride, 1 << 20) {
            gather_rows(bytes, stride, rows, outs);
            return;
        }
        // Split every destination at the same row boundaries and gather the blocks in parallel.
        let mut tasks: Vec<(usize, Vec<ColumnOut>)> = Vec::new();
        let mut rests: Vec<ColumnOut> = outs
            .iter_mut()
            .map(|(o, w, d)| (*o, *w, &mut **d))
            .collect();
        let mut first = 0;
        while first < rows.len() {
            let n = TASK_ROWS.min(rows.len() - first);
            #[allow(clippy::disallowed_methods)] // one a column of the block
            let mut parts = Vec::with_capacity(rests.len());
            for (o, w, d) in rests.iter_mut() {
                let (mine, tail) = std::mem::take(d).split_at_mut(n * *w);
                *d = tail;
                parts.push((*o, *w, mine));
            }
            tasks.push((first, parts));
            first += n;
        }
        crate::threads::share(tasks, |(first, mut parts)| {
            let n = parts.first().map_or(0, |(_, w, d)| d.len() / w);
            gather_rows(bytes, stride, &rows[first..first + n], &mut parts);
        });
    }
}

/// Rows copied whole into a small row-major scratch (one cache miss each, prefetched ahead),
/// then each column read out of the scratch in a tight loop of its own width.
fn gather_rows(bytes: &[u8], stride: usize, rows: &[u64], outs: &mut [ColumnOut]) {
    for_each_tile(bytes, stride, rows, |scratch, first| {
        let n = scratch.len() / stride;
        for (off, w, dst) in outs.iter_mut() {
            let dst = &mut dst[first * *w..(first + n) * *w];
            match *w {
                8 => column_out::<8>(scratch, stride, *off, dst),
                4 => column_out::<4>(scratch, stride, *off, dst),
                2 => column_out::<2>(scratch, stride, *off, dst),
                _ => column_out::<1>(scratch, stride, *off, dst),
            }
        }
    });
}

/// Copy `rows` of the block, a tile at a time, into the thread's scratch, and hand each tile
/// (its rows side by side, `stride` bytes each) to `emit` with the position of its first row.
fn for_each_tile(bytes: &[u8], stride: usize, rows: &[u64], mut emit: impl FnMut(&[u8], usize)) {
    let words = stride / 8;
    // SAFETY: the block is 2 MiB aligned and `stride` a multiple of 8.
    let block: &[u64] =
        unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const u64, bytes.len() / 8) };
    SCRATCH.with_borrow_mut(|scratch| {
        let tile_rows = (TILE_BYTES / stride).clamp(16, 256);
        #[allow(clippy::disallowed_methods)] // a tile: at most 256 rows
        scratch.resize(tile_rows.min(rows.len()) * words, 0);
        for (t, tile) in rows.chunks(tile_rows).enumerate() {
            let scratch = &mut scratch[..tile.len() * words];
            rows_into(block, words, rows, t * tile_rows, scratch);
            // SAFETY: the scratch viewed as bytes.
            let scratch: &[u8] = unsafe {
                std::slice::from_raw_parts(scratch.as_ptr() as *const u8, scratch.len() * 8)
            };
            emit(scratch, t * tile_rows);
        }
    });
}

/// Scratch bytes per tile (16 to 256 rows): the tile stays in the core's own cache.
const TILE_BYTES: usize = 32 << 10;

thread_local! {
    /// The row-major scratch of `for_each_tile`, kept between batches (one tile): a fresh one
    /// per batch costs an allocation, its zeroing, and a free large enough to make the
    /// allocator consolidate its free lists.
    static SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows `rows[first..]` of the block copied whole into `scratch` (as many as it holds), one
/// after another. The lines of the row `AHEAD` places on, in this tile or the next, are
/// prefetched into L2: the core has room for more misses in flight there than in L1, and a
/// random row costs a miss.
fn rows_into(block: &[u64], words: usize, rows: &[u64], first: usize, scratch: &mut [u64]) {
    const AHEAD: usize = 32;
    let n = scratch.len() / words;
    for (k, &r) in rows[first..first + n].iter().enumerate() {
        if let Some(&next) = rows.get(first + k + AHEAD) {
            prefetch_l2(
                block.as_ptr() as usize + next as usize * words * 8,
                words * 8,
            );
        }
        let r = r as usize;
        scratch[k * words..(k + 1) * words].copy_from_slice(&block[r * words..(r + 1) * words]);
    }
}

/// Ask for every cache line of the `len` bytes at `addr` to be brought into L2 (a hint: any
/// address is allowed; nothing on other architectures).
#[inline(always)]
pub(crate) fn prefetch_l2(addr: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in ((addr & !63)..addr + len).step_by(64) {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
            _mm_prefetch(line as *const i8, _MM_HINT_T1);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (addr, len);
}

/// Write `n` values of width `W` from a column into their slot of consecutive rows.
#[inline(always)]
fn column_in<const W: usize>(src: &[u8], rows: &mut [u8], stride: usize, off: usize, n: usize) {
    for (row, v) in rows
        .chunks_exact_mut(stride)
        .zip(src[..n * W].chunks_exact(W))
        .take(n)
    {
        let v: [u8; W] = v.try_into().expect("W bytes");
        row[off..off + W].copy_from_slice(&v);
    }
}

#[inline(always)]
fn column_out<const W: usize>(scratch: &[u8], stride: usize, off: usize, dst: &mut [u8]) {
    for (d, row) in dst.chunks_exact_mut(W).zip(scratch.chunks_exact(stride)) {
        let v: [u8; W] = row[off..off + W].try_into().expect("slot inside the row");
        d.copy_from_slice(&v);
    }
}

#[allow(clippy::disallowed_methods)] // tests: sizes of their own
#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use arrow_array::ArrayRef;
    use arrow_buffer::Buffer;
    use arrow_schema::{Field, Schema};
    use rand_core::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// Column types the block holds, one of each width, and one it does not (bool).
    const TYPES: [DataType; 6] = [
        DataType::Int8,
        DataType::UInt16,
        DataType::Float16,
        DataType::Int32,
        DataType::Float64,
        DataType::UInt64,
    ];

    /// A table of random bytes: its schema, and each column's values as bytes, row after row.
    fn table(rng: &mut Xoshiro256PlusPlus, types: &[DataType], rows: usize) -> Vec<Vec<u8>> {
        types
            .iter()
            .map(|dt| {
                let w = dt.primitive_width().unwrap();
                (0..rows * w).map(|_| rng.next_u64() as u8).collect()
            })
            .collect()
    }

    fn array(dt: &DataType, bytes: &[u8]) -> ArrayRef {
        let w = dt.primitive_width().unwrap();
        let data = arrow_data::ArrayData::builder(dt.clone())
            .len(bytes.len() / w)
            .add_buffer(Buffer::from(bytes.to_vec()))
            .build()
            .unwrap();
        arrow_array::make_array(data)
    }

    fn schema(types: &[DataType]) -> Schema {
        Schema::new(
            types
                .iter()
                .enumerate()
                .map(|(i, dt)| Field::new(format!("c{i}"), dt.clone(), false))
                .collect::<Vec<_>>(),
        )
    }

    /// The block of `columns`, written in `cuts` chunks (a fill per chunk, as a scan fills it).
    fn block_of(types: &[DataType], columns: &[Vec<u8>], rows: usize, cuts: &[usize]) -> RowBlock {
        let schema = schema(types);
        let mut block = RowBlock::empty(&schema, rows as u64, |c| {
            fixed_width(schema.field(c).data_type())
        })
        .expect("a block for this table");
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(rows);
        for pair in bounds.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let arrays: Vec<ArrayRef> = types
                .iter()
                .zip(columns)
                .map(|(dt, bytes)| {
                    let w = dt.primitive_width().unwrap();
                    array(dt, &bytes[a * w..b * w])
                })
                .collect();
            let chunk: Vec<Option<&ArrayRef>> = arrays.iter().map(Some).collect();
            block.fill(&[chunk]);
        }
        block
    }

    /// The plain gather: row `r` of each column, one after another.
    fn plain(types: &[DataType], columns: &[Vec<u8>], rows: &[u64]) -> Vec<Vec<u8>> {
        types
            .iter()
            .zip(columns)
            .map(|(dt, bytes)| {
                let w = dt.primitive_width().unwrap();
                let r = |r: u64| &bytes[r as usize * w..(r as usize + 1) * w];
                rows.iter().flat_map(|&x| r(x).to_vec()).collect()
            })
            .collect()
    }

    fn gathered(block: &RowBlock, types: &[DataType], rows: &[u64]) -> Vec<Vec<u8>> {
        let mut outs: Vec<Vec<u8>> = types
            .iter()
            .map(|dt| vec![0xAA; rows.len() * dt.primitive_width().unwrap()])
            .collect();
        let mut column_outs: Vec<ColumnOut> = outs
            .iter_mut()
            .enumerate()
            .map(|(c, d)| {
                let (off, w) = block.slot(c).unwrap();
                (off, w, d.as_mut_slice())
            })
            .collect();
        block.gather(rows, &mut column_outs);
        outs
    }

    #[test]
    fn gathers_equal_the_plain_gather_for_random_tables_and_rows() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let n = MIN_ROWS as usize + 37;
        for case in 0..6 {
            // A random choice (and order) of column types, at least two of them.
            let k = 2 + (rng.next_u64() % 4) as usize;
            let types: Vec<DataType> = (0..k)
                .map(|_| TYPES[(rng.next_u64() % TYPES.len() as u64) as usize].clone())
                .collect();
            let columns = table(&mut rng, &types, n);
            let mut cuts: Vec<usize> = (0..case % 3)
                .map(|_| (rng.next_u64() % n as u64) as usize)
                .collect();
            cuts.sort_unstable();
            let block = block_of(&types, &columns, n, &cuts);
            assert_eq!(block.num_rows(), n);
            assert_eq!(block.columns(), (0..k).collect::<Vec<_>>());
            // Batch sizes around the prefetch distance, a tile, a task and past a task (the
            // parallel path), rows anywhere (repeats, the first and the last row included).
            for len in [
                0,
                1,
                31,
                32,
                33,
                255,
                256,
                257,
                1000,
                TASK_ROWS + 5,
                3 * TASK_ROWS,
            ] {
                let mut rows: Vec<u64> = (0..len).map(|_| rng.next_u64() % n as u64).collect();
                if len >= 2 {
                    rows[0] = n as u64 - 1;
                    rows[len - 1] = 0;
                }
                assert_eq!(
                    gathered(&block, &types, &rows),
                    plain(&types, &columns, &rows),
                    "case {case}, {len} rows of {types:?}"
                );
            }
            // Each column made again from the block, from any row on.
            let first = (rng.next_u64() % n as u64) as usize;
            let len = n - first;
            for (c, dt) in types.iter().enumerate() {
                let w = dt.primitive_width().unwrap();
                let made = block.column(c, dt, first, len).unwrap();
                assert_eq!(made.data_type(), dt);
                let data = made.to_data();
                assert_eq!(
                    &data.buffers()[0].as_slice()[..len * w],
                    &columns[c][first * w..n * w]
                );
            }
        }
    }

    #[test]
    fn converted_gathers_equal_a_plain_take_then_conversion() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let n = MIN_ROWS as usize;
        let types = TYPES.to_vec();
        let columns = table(&mut rng, &types, n);
        let block = block_of(&types, &columns, n, &[]);
        let arrays: Vec<ArrayRef> = types
            .iter()
            .zip(&columns)
            .map(|(dt, b)| array(dt, b))
            .collect();
        for len in [1, 33, 300, MAX_CONVERTED_ROWS] {
            let rows: Vec<u64> = (0..len).map(|_| rng.next_u64() % n as u64).collect();
            let typed: Vec<(usize, &DataType)> = types.iter().enumerate().collect();
            let mut out = vec![0f64; types.len() * len];
            block.gather_converted(&rows, &typed, &mut out);
            let index = arrow_array::UInt64Array::from(rows.clone());
            for (j, a) in arrays.iter().enumerate() {
                let taken = arrow_select::take::take(a.as_ref(), &index, None).unwrap();
                let batch = arrow_array::RecordBatch::try_from_iter([("x", taken)]).unwrap();
                let want = crate::tensor::batch_to_tensor(
                    &[batch],
                    Some(crate::dtype::DType::F64),
                    None,
                    crate::tensor::Share::Allowed,
                )
                .unwrap();
                // SAFETY: a (1, len) float64 tensor.
                let want =
                    unsafe { std::slice::from_raw_parts(want.data_ptr() as *const f64, len) };
                let got = &out[j * len..(j + 1) * len];
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(got),
                    bits(want),
                    "column {j} ({}), {len} rows",
                    types[j]
                );
            }
        }
    }

    #[test]
    fn only_fixed_width_numbers_of_long_tables_go_in() {
        assert_eq!(fixed_width(&DataType::Boolean), None);
        assert_eq!(fixed_width(&DataType::Utf8), None);
        assert_eq!(fixed_width(&DataType::Decimal128(10, 2)), None); // 16 bytes
        for (dt, w) in [
            (DataType::Int8, 1),
            (DataType::Float16, 2),
            (DataType::UInt64, 8),
        ] {
            assert_eq!(fixed_width(&dt), Some(w));
        }
        let types = [DataType::Int64, DataType::Int8, DataType::Utf8];
        let schema = schema(&types);
        let held = |c: usize| fixed_width(schema.field(c).data_type());
        assert!(
            RowBlock::empty(&schema, MIN_ROWS - 1, held).is_none(),
            "a short table"
        );
        let block = RowBlock::empty(&schema, MIN_ROWS, held).unwrap();
        // Widest first, each value at a multiple of its width, rows a multiple of 8 bytes.
        assert_eq!(block.slot(0), Some((0, 8)));
        assert_eq!(block.slot(1), Some((8, 1)));
        assert_eq!(block.slot(2), None);
        assert_eq!(block.nbytes(), MIN_ROWS as usize * 16);
        let one = [DataType::Int64, DataType::Utf8];
        let schema = Schema::new(vec![
            Field::new("a", one[0].clone(), false),
            Field::new("b", one[1].clone(), false),
        ]);
        let held = |c: usize| fixed_width(schema.field(c).data_type());
        assert!(
            RowBlock::empty(&schema, MIN_ROWS, held).is_none(),
            "one column"
        );
    }

    #[test]
    fn a_released_column_leaves_its_slot_and_a_null_keeps_a_column_out() {
        let types = [DataType::Int32, DataType::Int32, DataType::Int32];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let n = MIN_ROWS as usize;
        let columns = table(&mut rng, &types, n);
        let schema = Arc::new(schema(&types));
        let mut block = RowBlock::empty(&schema, n as u64, |c| {
            fixed_width(schema.field(c).data_type())
        })
        .unwrap();
        let nulls = arrow_array::Int32Array::from(vec![None, Some(1)]);
        assert!(!block.takes(1, &nulls));
        assert!(block.takes(1, &arrow_array::Int32Array::from(vec![1, 2])));
        block.release(1);
        assert!(
            block.takes(1, &nulls),
            "a column outside the block takes anything"
        );
        assert_eq!(block.columns(), vec![0, 2]);
        let arrays: Vec<ArrayRef> = types
            .iter()
            .zip(&columns)
            .map(|(dt, b)| array(dt, b))
            .collect();
        block.fill(&[vec![Some(&arrays[0]), None, Some(&arrays[2])]]);
        let rows: Vec<u64> = (0..500).map(|_| rng.next_u64() % n as u64).collect();
        let want = plain(&types, &columns, &rows);
        let mut a = vec![0u8; rows.len() * 4];
        let mut c = vec![0u8; rows.len() * 4];
        let (oa, _) = block.slot(0).unwrap();
        let (oc, _) = block.slot(2).unwrap();
        block.gather(&rows, &mut [(oa, 4, &mut a[..]), (oc, 4, &mut c[..])]);
        assert_eq!((a, c), (want[0].clone(), want[2].clone()));
    }

    #[test]
    #[should_panic(expected = "once every row is written")]
    fn a_block_refuses_reads_before_every_row_is_written() {
        let types = [DataType::Int64, DataType::Int64];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let n = MIN_ROWS as usize;
        let columns = table(&mut rng, &types, n);
        // Room for n rows, n - 1 written: the block is not full.
        let schema = schema(&types);
        let mut partial = RowBlock::empty(&schema, n as u64, |c| {
            fixed_width(schema.field(c).data_type())
        })
        .unwrap();
        let arrays: Vec<ArrayRef> = types
            .iter()
            .zip(&columns)
            .map(|(dt, b)| array(dt, &b[..(n - 1) * 8]))
            .collect();
        partial.fill(&[arrays.iter().map(Some).collect()]);
        let (off, w) = partial.slot(0).unwrap();
        let mut out = [0u8; 8];
        partial.gather(&[0], &mut [(off, w, &mut out[..])]);
    }

    #[test]
    #[should_panic(expected = "rows beyond the block")]
    fn a_block_refuses_rows_past_its_end() {
        let types = [DataType::Int64, DataType::Int64];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let n = MIN_ROWS as usize;
        let columns = table(&mut rng, &types, n + 1);
        let schema = schema(&types);
        let mut block = RowBlock::empty(&schema, n as u64, |c| {
            fixed_width(schema.field(c).data_type())
        })
        .unwrap();
        let arrays: Vec<ArrayRef> = types
            .iter()
            .zip(&columns)
            .map(|(dt, b)| array(dt, b))
            .collect();
        block.fill(&[arrays.iter().map(Some).collect()]);
    }

    #[test]
    #[should_panic(expected = "rows not written yet")]
    fn a_column_is_made_again_only_from_written_rows() {
        let types = [DataType::Int64, DataType::Int64];
        let schema = schema(&types);
        let block = RowBlock::empty(&schema, MIN_ROWS, |c| {
            fixed_width(schema.field(c).data_type())
        })
        .unwrap();
        let _ = block.column(0, &DataType::Int64, 0, 1);
    }

    #[test]
    fn huge_bytes_hand_out_only_their_own_range() {
        let bytes = HugeBytes::new(100);
        assert_eq!(bytes.ptr.as_ptr() as usize % HugeBytes::ALIGN, 0);
        // SAFETY: written just now.
        unsafe { std::ptr::write_bytes(bytes.ptr.as_ptr(), 7, 100) };
        // SAFETY: all 100 bytes are written.
        assert_eq!(unsafe { bytes.range(90, 10) }, &[7; 10]);
        let past = std::panic::catch_unwind(|| {
            // SAFETY: the range is checked before it is read (the call panics).
            let _ = unsafe { bytes.range(95, 10) };
        });
        assert!(past.is_err(), "a range past the end must panic, not read");
    }

    #[test]
    fn a_prefetch_of_any_address_in_or_past_a_buffer_is_harmless() {
        let data = vec![1u8; 100];
        let at = data.as_ptr() as usize;
        for (addr, len) in [(at, 100), (at + 99, 64), (at + 100, 4096), (0, 64), (64, 0)] {
            prefetch_l2(addr, len);
        }
        assert_eq!(data, vec![1u8; 100]);
    }
}
