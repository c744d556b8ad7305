//! The gather: rows at given offsets into fresh memory, once.
//!
//! Fixed-width columns (primitive types and fixed-size lists of them) are written into ONE
//! allocation, column after column, each column starting at its element alignment so that
//! columns of one type lie back to back with no gap. The output batch's columns are slices of
//! that allocation, which lets `tensor::batch_to_tensor` hand the whole block to torch
//! without another copy. Other columns (bool, strings, nested) go through `arrow-select`.

use std::sync::Arc;

use arrow_array::{make_array, Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_buffer::{BooleanBufferBuilder, Buffer, MutableBuffer, NullBuffer};
use arrow_data::ArrayData;
use arrow_schema::DataType;

use crate::dlpack::HostTensor;
use crate::dtype::{promote, DType};
use crate::error::{Error, Result};
use crate::pool::BufferPool;
use crate::store::{Loc, Store};

/// Rows per parallel task within one column.
const BLOCK_ROWS: usize = 4096;
/// Output size from which columns are gathered on the thread pool (below it, waking the pool
/// costs more than it saves).
const PARALLEL_MIN_BYTES: usize = 1 << 20;
/// How far ahead, in bytes of output, the rows of fixed-size lists are prefetched.
const PREFETCH_BYTES: usize = 2048;

/// How one column is laid out in the output.
#[derive(Clone, Copy, Debug)]
struct Fixed {
    /// Bytes per row (element width times list size).
    row_bytes: usize,
    /// Element width in bytes: the alignment of the column's start.
    elem_bytes: usize,
    /// Fixed-size list length, or `None` for a primitive column.
    list_size: Option<usize>,
}

fn fixed_layout(dt: &DataType) -> Option<Fixed> {
    match dt {
        DataType::Boolean => None,
        dt if dt.is_primitive() => {
            let w = dt.primitive_width()?;
            Some(Fixed {
                row_bytes: w,
                elem_bytes: w,
                list_size: None,
            })
        }
        DataType::FixedSizeList(child, size) => {
            let child = child.data_type();
            if matches!(child, DataType::Boolean) || !child.is_primitive() {
                return None;
            }
            let w = child.primitive_width()?;
            let size = usize::try_from(*size).ok().filter(|&s| s > 0)?;
            Some(Fixed {
                row_bytes: w * size,
                elem_bytes: w,
                list_size: Some(size),
            })
        }
        _ => None,
    }
}

/// Bytes of one chunk's column values (and the element count) starting at row 0.
fn value_bytes(data: &ArrayData, layout: Fixed) -> &[u8] {
    match layout.list_size {
        None => {
            let buf = &data.buffers()[0];
            let start = data.offset() * layout.row_bytes;
            &buf.as_slice()[start..start + data.len() * layout.row_bytes]
        }
        Some(size) => {
            let child = &data.child_data()[0];
            let buf = &child.buffers()[0];
            let start = (child.offset() + data.offset() * size) * layout.elem_bytes;
            &buf.as_slice()[start..start + data.len() * layout.row_bytes]
        }
    }
}

fn child_has_nulls(data: &ArrayData) -> bool {
    data.child_data().iter().any(|c| c.null_count() > 0)
}

/// Copy rows `locs` of `srcs` (one byte slice per chunk) into `dst`, `row_bytes` each.
/// Primitive columns (`row_bytes` is the element width, to which destination and sources are
/// aligned) copy as typed values; fixed-size list rows copy as bytes.
fn copy_rows(srcs: &[&[u8]], locs: &[Loc], layout: Fixed, dst: &mut [u8]) {
    let row_bytes = layout.row_bytes;
    macro_rules! typed {
        ($t:ty) => {{
            // SAFETY: the output allocation is 64-byte aligned and every column starts at a
            // multiple of its element width; sources are Arrow buffers, aligned to their type.
            let dst: &mut [$t] =
                unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut $t, locs.len()) };
            let srcs: Vec<&[$t]> = srcs
                .iter()
                .map(|s| unsafe {
                    std::slice::from_raw_parts(s.as_ptr() as *const $t, s.len() / row_bytes)
                })
                .collect();
            if let [only] = srcs.as_slice() {
                for (d, &(_, r)) in dst.iter_mut().zip(locs) {
                    *d = only[r];
                }
            } else {
                for (d, &(c, r)) in dst.iter_mut().zip(locs) {
                    *d = srcs[c][r];
                }
            }
        }};
    }
    match (layout.list_size, row_bytes) {
        (None, 1) => typed!(u8),
        (None, 2) => typed!(u16),
        (None, 4) => typed!(u32),
        (None, 8) => typed!(u64),
        (None, 16) => typed!(u128),
        _ => {
            // Rows lie at random places in the source, and the hardware's stream prefetcher
            // starts over at each one: ask for the lines of the row about `PREFETCH_BYTES`
            // ahead (the next one, for embeddings) to be brought into L2 meanwhile.
            let ahead = PREFETCH_BYTES.div_ceil(row_bytes);
            for (k, (d, &(c, r))) in dst.chunks_exact_mut(row_bytes).zip(locs).enumerate() {
                if let Some(&(c, r)) = locs.get(k + ahead) {
                    let row = &srcs[c][r * row_bytes..(r + 1) * row_bytes];
                    crate::row_block::prefetch_l2(row.as_ptr() as usize, row_bytes);
                }
                d.copy_from_slice(&srcs[c][r * row_bytes..(r + 1) * row_bytes]);
            }
        }
    }
}

/// Check alignment assumptions that `copy_rows` relies on.
fn aligned(bytes: &[u8], elem: usize) -> bool {
    (bytes.as_ptr() as usize) % elem.min(16) == 0
}

fn gather_nulls(columns: &[&ArrayData], locs: &[Loc]) -> Option<NullBuffer> {
    if columns.iter().all(|c| c.null_count() == 0) {
        return None;
    }
    let mut bits = BooleanBufferBuilder::new(locs.len());
    for &(c, r) in locs {
        bits.append(columns[c].is_valid(r));
    }
    Some(NullBuffer::new(bits.finish()))
}

/// The `(columns, rows)` tensor of rows `rows` (checked global offsets) of `columns`, gathered
/// and converted in one pass from the row-major block: no batch in between, no second copy.
/// `None` where that path does not apply (a column the block does not hold, a type a tensor
/// does not take, a batch large enough for the parallel gather): take and convert instead.
/// The block holds no nulls, but `fill` is checked as a conversion would check it.
pub fn gather_tensor(
    store: &Store,
    rows: &[u64],
    columns: &[usize],
    dtype: Option<DType>,
    fill: crate::tensor::NullFill,
    pool: Option<&Arc<BufferPool>>,
) -> Option<Result<HostTensor>> {
    if rows.len() > crate::row_block::MAX_CONVERTED_ROWS {
        return None;
    }
    let block = store.row_block(columns)?;
    let schema = store.schema();
    #[allow(clippy::disallowed_methods)] // one a column named
    let mut typed = Vec::with_capacity(columns.len());
    #[allow(clippy::disallowed_methods)] // one a column named
    let mut dtypes = Vec::with_capacity(columns.len());
    for &c in columns {
        block.slot(c)?;
        let dt = schema.field(c).data_type();
        dtypes.push(DType::from_arrow(dt)?);
        typed.push((c, dt));
    }
    let target = match dtype {
        Some(d) => d,
        None => match promote(&dtypes) {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        },
    };
    if let Some(&c) = columns.first() {
        if let Err(e) = crate::tensor::check_fill(fill, target, schema.field(c).name()) {
            return Some(Err(e));
        }
    }
    let n = rows.len();
    let bytes = match columns
        .len()
        .checked_mul(n)
        .and_then(|cells| cells.checked_mul(target.size()))
    {
        Some(bytes) => bytes,
        None => return Some(Err(too_large(n))),
    };
    if let Err(e) = crate::memory::check(bytes, &format!("a tensor of {n} rows")) {
        return Some(Err(e));
    }
    #[allow(clippy::disallowed_methods)] // the size is checked above
    let mut buffer = match pool {
        Some(pool) => pool.take(bytes),
        None => MutableBuffer::with_capacity(bytes),
    };
    if target == DType::Bool {
        #[allow(clippy::disallowed_methods)] // the size is checked above
        buffer.resize(bytes, 0); // only valid bools behind a `&mut [bool]`
    } else {
        // SAFETY: the allocation holds `bytes` bytes; every element is written below (each
        // column once for each row) before anything reads the buffer.
        unsafe { buffer.set_len(bytes) };
    }
    crate::with_dtype!(target, T => {
        // SAFETY: MutableBuffer is 64-byte aligned and sized for columns * rows values.
        let out: &mut [T] = unsafe {
            std::slice::from_raw_parts_mut(buffer.as_mut_ptr() as *mut T, columns.len() * n)
        };
        block.gather_converted(rows, &typed, out);
    });
    let shape = vec![columns.len() as i64, n as i64];
    let buffer = match pool {
        Some(pool) => pool.share(buffer),
        None => buffer.into(),
    };
    Some(Ok(HostTensor::from_buffer(buffer, target, shape)))
}

/// The error for a result whose size in bytes does not fit a `usize`.
fn too_large(rows: usize) -> Error {
    Error::Memory(format!(
        "{rows} rows of these columns take more bytes than an address holds; ask for fewer rows"
    ))
}

/// Take rows `offsets` (negative counts from the end) of columns `columns` of `store`.
pub fn take(store: &Store, offsets: &[i64], columns: &[usize]) -> Result<RecordBatch> {
    let rows = crate::store::normalize(offsets, store.num_rows())?;
    gather(store, &rows, columns)
}

/// Gather rows (checked global offsets) of `columns`.
pub fn gather(store: &Store, rows: &[u64], columns: &[usize]) -> Result<RecordBatch> {
    gather_with(store, rows, columns, None)
}

/// `gather`, its fixed-width columns written into a buffer of `pool` when one is given.
pub fn gather_with(
    store: &Store,
    rows: &[u64],
    columns: &[usize],
    pool: Option<&Arc<BufferPool>>,
) -> Result<RecordBatch> {
    let schema = store.schema();
    store.check_columns(columns)?;
    let n = rows.len();
    // Columns held by the row-major block are read from it; the others from their chunks,
    // which needs each row's (chunk, row) location.
    let row_block = store.row_block(columns);
    let in_block = |c: usize| row_block.is_some_and(|b| b.slot(c).is_some());
    let locs: Vec<Loc> = if columns.iter().all(|&c| in_block(c)) {
        Vec::new()
    } else {
        store.locate(rows)
    };
    let locs = locs.as_slice();
    let chunk_data: Vec<Vec<ArrayData>> = columns
        .iter()
        .map(|&c| {
            if in_block(c) {
                return Vec::new();
            }
            store
                .arrays(c)
                .expect("a column outside the block has its arrays")
                .iter()
                .map(|a| a.to_data())
                .collect()
        })
        .collect();

    // Plan the one allocation: fixed-width columns back to back at their alignment.
    #[allow(clippy::disallowed_methods)] // one a column named
    let mut plans: Vec<Option<(Fixed, usize)>> = Vec::with_capacity(columns.len());
    let mut total = Some(0usize); // None past usize::MAX
    for (i, &c) in columns.iter().enumerate() {
        let layout = fixed_layout(schema.field(c).data_type()).filter(|l| {
            in_block(c)
                || chunk_data[i].iter().all(|d| {
                    !(l.list_size.is_some() && child_has_nulls(d))
                        && aligned(value_bytes(d, *l), l.elem_bytes)
                })
        });
        plans.push(layout.map(|l| {
            let start = total.and_then(|t| t.checked_next_multiple_of(l.elem_bytes));
            total = start.and_then(|s| s.checked_add(n.checked_mul(l.row_bytes)?));
            (l, start.unwrap_or(0))
        }));
    }
    // Repeated rows of a wide column can ask for more than the rows held: checked before
    // the allocation, which would abort where the allocator refuses it.
    let total = total.ok_or_else(|| too_large(n))?;
    crate::memory::check(total, &format!("a take of {n} rows"))?;
    // Not zeroed: every byte of every column is written below, and the alignment gaps
    // between columns are zeroed as the allocation is carved. (Zeroing all of it would write
    // each page twice.)
    #[allow(clippy::disallowed_methods)] // the size is checked above
    let mut block = match pool {
        Some(pool) => pool.take(total),
        None => MutableBuffer::with_capacity(total),
    };
    // SAFETY: the allocation holds `total` bytes. The slices carved from it below are only
    // written (every byte: each column's rows, and the gaps zeroed) before anything reads it.
    unsafe { block.set_len(total) };

    // Carve the allocation into one disjoint slice per fixed column and fill them.
    let parallel = crate::threads::parallel(total, PARALLEL_MIN_BYTES);
    {
        let mut rest: &mut [u8] = block.as_slice_mut();
        let mut at = 0usize;
        let mut jobs: Vec<(usize, Fixed, &mut [u8])> = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            if let Some((layout, start)) = plan {
                let (gap, tail) = std::mem::take(&mut rest).split_at_mut(start - at);
                gap.fill(0);
                let (mine, tail) = tail.split_at_mut(n * layout.row_bytes);
                rest = tail;
                at = start + n * layout.row_bytes;
                jobs.push((i, *layout, mine));
            }
        }
        // Primitive columns held by the row-major block are served from it in one pass.
        if let Some(rows_block) = row_block {
            let (from_block, rest): (Vec<_>, Vec<_>) = jobs
                .into_iter()
                .partition(|(i, _, _)| in_block(columns[*i]));
            jobs = rest;
            let mut outs: Vec<crate::row_block::ColumnOut> = from_block
                .into_iter()
                .map(|(i, _, dst)| {
                    let (off, w) = rows_block.slot(columns[i]).expect("checked above");
                    (off, w, dst)
                })
                .collect();
            rows_block.gather(rows, &mut outs);
        }
        // One list of parts for all columns: each column whole, or, for wide rows
        // (embeddings), in pieces worth splitting even within one batch.
        let task_rows = n
            .div_ceil(2 * rayon::current_num_threads())
            .clamp(64, BLOCK_ROWS);
        let mut parts: Vec<(usize, Fixed, &mut [u8], &[Loc])> = Vec::new();
        for (i, layout, dst) in jobs {
            let step = task_rows * layout.row_bytes;
            if parallel && dst.len() > step {
                for (d, l) in dst.chunks_mut(step).zip(locs.chunks(task_rows)) {
                    parts.push((i, layout, d, l));
                }
            } else {
                parts.push((i, layout, dst, locs));
            }
        }
        let fill = |(i, layout, dst, locs): (usize, Fixed, &mut [u8], &[Loc])| {
            let srcs: Vec<&[u8]> = chunk_data[i]
                .iter()
                .map(|d| value_bytes(d, layout))
                .collect();
            copy_rows(&srcs, locs, layout, dst);
        };
        if parallel {
            crate::threads::share(parts, fill);
        } else {
            parts.into_iter().for_each(fill);
        }
    }
    let block: Buffer = match pool {
        Some(pool) => pool.share(block),
        None => crate::lending::registered(block),
    };

    #[allow(clippy::disallowed_methods)] // one a column named
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (i, &c) in columns.iter().enumerate() {
        let field = schema.field(c);
        let array = match plans[i] {
            Some((layout, start)) => {
                // Block columns have no nulls (the block holds only such columns).
                let refs: Vec<&ArrayData> = chunk_data[i].iter().collect();
                let nulls = if in_block(c) {
                    None
                } else {
                    gather_nulls(&refs, locs)
                };
                let values = block.slice_with_length(start, n * layout.row_bytes);
                let data = match (layout.list_size, field.data_type()) {
                    (Some(size), DataType::FixedSizeList(child, _)) => {
                        let child = ArrayData::builder(child.data_type().clone())
                            .len(n * size)
                            .add_buffer(values)
                            .build()?;
                        ArrayData::builder(field.data_type().clone())
                            .len(n)
                            .nulls(nulls)
                            .add_child_data(child)
                            .build()?
                    }
                    _ => ArrayData::builder(field.data_type().clone())
                        .len(n)
                        .nulls(nulls)
                        .add_buffer(values)
                        .build()?,
                };
                make_array(data)
            }
            None => {
                let sources = store
                    .arrays(c)
                    .expect("only fixed-width columns are in the block");
                if sources.is_empty() {
                    arrow_array::new_empty_array(field.data_type())
                } else {
                    let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
                    arrow_select::interleave::interleave(&refs, locs)?
                }
            }
        };
        arrays.push(array);
    }
    let out_schema = Arc::new(schema.project(columns)?);
    let options = RecordBatchOptions::new().with_row_count(Some(n));
    Ok(RecordBatch::try_new_with_options(
        out_schema, arrays, &options,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int64Type};
    use arrow_array::{FixedSizeListArray, Float32Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    fn store() -> Store {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Float32, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let chunk = |a: Vec<Option<i64>>, b: Vec<f32>, s: Vec<&str>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(a)),
                    Arc::new(Float32Array::from(b)),
                    Arc::new(StringArray::from(s)),
                ],
            )
            .unwrap()
        };
        Store::new(
            schema.clone(),
            vec![
                chunk(
                    vec![Some(0), Some(1), None],
                    vec![0.0, 0.5, 1.0],
                    vec!["x", "y", "z"],
                ),
                chunk(vec![], vec![], vec![]),
                chunk(vec![Some(3), Some(4)], vec![1.5, 2.0], vec!["u", "v"]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn takes_across_chunks_in_order_with_duplicates_and_negatives() {
        let s = store();
        let out = take(&s, &[4, 0, -1, 2, 3, 3], &[0, 1, 2]).unwrap();
        let a = out.column(0).as_primitive::<Int64Type>();
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![Some(4), Some(0), Some(4), None, Some(3), Some(3)]
        );
        let b = out.column(1).as_primitive::<Float32Type>();
        assert_eq!(b.values().to_vec(), vec![2.0, 0.0, 2.0, 1.0, 1.5, 1.5]);
        let st = out.column(2).as_string::<i32>();
        assert_eq!(
            st.iter().flatten().collect::<Vec<_>>(),
            vec!["v", "x", "v", "z", "u", "u"]
        );
    }

    #[test]
    fn fixed_columns_share_one_allocation() {
        let s = store();
        let out = take(&s, &[1, 2, 3], &[1, 0]).unwrap();
        let p1 = out.column(0).to_data().buffers()[0].as_ptr() as usize;
        let p0 = out.column(1).to_data().buffers()[0].as_ptr() as usize;
        // float32 first (12 bytes), then int64 aligned to 8.
        assert_eq!(p0 - p1, 16);
    }

    #[test]
    fn out_of_range_names_offset_and_length() {
        let err = take(&store(), &[0, 5], &[0]).unwrap_err().to_string();
        assert!(
            err.contains("row offset 5") && err.contains("5 rows"),
            "{err}"
        );
        let err = take(&store(), &[-6], &[0]).unwrap_err().to_string();
        assert!(err.contains("row offset -6"), "{err}");
    }

    #[test]
    fn fixed_size_lists_gather_row_major() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "e",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), 3),
            false,
        )]));
        let values = Float32Array::from((0..12).map(|v| v as f32).collect::<Vec<_>>());
        let list = FixedSizeListArray::new(
            Arc::new(Field::new("item", DataType::Float32, true)),
            3,
            Arc::new(values),
            None,
        );
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(list)]).unwrap();
        let s = Store::new(schema, vec![batch]).unwrap();
        let out = take(&s, &[3, 1], &[0]).unwrap();
        let l = out.column(0).as_fixed_size_list();
        let v = l.values().as_primitive::<Float32Type>();
        assert_eq!(v.values().to_vec(), vec![9.0, 10.0, 11.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn large_takes_match_small_takes() {
        let n = 300_000usize;
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let a = Int64Array::from((0..n as i64).collect::<Vec<_>>());
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(a)]).unwrap();
        let s = Store::new(
            schema,
            vec![batch.slice(0, 1000), batch.slice(1000, n - 1000)],
        )
        .unwrap();
        let offsets: Vec<i64> = (0..n as i64).map(|i| (i * 7919) % n as i64).collect();
        let out = take(&s, &offsets, &[0]).unwrap();
        assert_eq!(
            out.column(0).as_primitive::<Int64Type>().values().to_vec(),
            offsets
        );
    }

    #[test]
    fn row_block_serves_wide_tables_with_the_same_rows() {
        use arrow_array::{Int16Array, Int8Array, UInt32Array};
        let n = 100_000usize;
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Float32, false),
            Field::new("c", DataType::Int8, false),
            Field::new("d", DataType::Int16, false),
            Field::new("nulls", DataType::UInt32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
                Arc::new(Float32Array::from(
                    (0..n).map(|i| i as f32 * 0.5).collect::<Vec<_>>(),
                )),
                Arc::new(Int8Array::from(
                    (0..n).map(|i| (i % 127) as i8).collect::<Vec<_>>(),
                )),
                Arc::new(Int16Array::from(
                    (0..n).map(|i| (i % 30000) as i16).collect::<Vec<_>>(),
                )),
                Arc::new(UInt32Array::from(
                    (0..n)
                        .map(|i| (i % 3 != 0).then_some(i as u32))
                        .collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        let chunks = vec![
            batch.slice(0, 777),
            batch.slice(777, 60_000),
            batch.slice(60_777, n - 60_777),
        ];
        let store = Store::new(schema.clone(), chunks.clone()).unwrap();
        let plain = Store::columns_only(schema, chunks.clone()).unwrap();
        assert!(store.row_block(&[0]).is_some() && plain.row_block(&[0, 1]).is_none());
        // The block is the only copy of the columns it holds; the nullable one stays Arrow.
        assert!((0..4).all(|c| store.arrays(c).is_none()));
        assert!(store.arrays(4).is_some());
        // Exported, the table is what went in, chunk by chunk.
        assert_eq!(store.batches().unwrap(), chunks);
        for columns in [&[0usize, 1][..], &[1], &[4], &[4, 2]] {
            let offsets = [5, 99_999, 0, 60_777, 776, 777];
            assert_eq!(
                take(&store, &offsets, columns).unwrap(),
                take(&plain, &offsets, columns).unwrap(),
                "{columns:?}"
            );
        }
        // Around the 256-row tiles of the block gather, and past the parallel threshold
        // (80_000 rows x 19 bytes).
        for len in [0usize, 1, 255, 256, 257, 1000, 80_000] {
            let offsets: Vec<i64> = (0..len as i64)
                .map(|i| (i * 7919 + 13) % n as i64)
                .collect();
            let out = take(&store, &offsets, &[3, 0, 4, 2, 1]).unwrap();
            let want = |i: usize| offsets[i] as usize;
            let d = out
                .column(0)
                .as_primitive::<arrow_array::types::Int16Type>();
            let a = out.column(1).as_primitive::<Int64Type>();
            let nl = out
                .column(2)
                .as_primitive::<arrow_array::types::UInt32Type>();
            let c = out.column(3).as_primitive::<arrow_array::types::Int8Type>();
            let b = out.column(4).as_primitive::<Float32Type>();
            for i in 0..len {
                let r = want(i);
                assert_eq!(a.value(i), r as i64);
                assert_eq!(b.value(i), r as f32 * 0.5);
                assert_eq!(c.value(i), (r % 127) as i8);
                assert_eq!(d.value(i), (r % 30000) as i16);
                assert_eq!(nl.is_valid(i), r % 3 != 0);
                if r % 3 != 0 {
                    assert_eq!(nl.value(i), r as u32);
                }
            }
        }
    }

    #[test]
    fn tensor_from_the_block_equals_take_then_convert() {
        use crate::tensor::{batch_to_tensor, Share};
        use arrow_array::{Float16Array, Float64Array, Int8Array, UInt16Array, UInt64Array};
        let n = 70_000usize;
        let schema = Arc::new(Schema::new(vec![
            Field::new("i8", DataType::Int8, false),
            Field::new("u16", DataType::UInt16, false),
            Field::new("f16", DataType::Float16, false),
            Field::new("f32", DataType::Float32, false),
            Field::new("i64", DataType::Int64, false),
            Field::new("f64", DataType::Float64, false),
            Field::new("u64", DataType::UInt64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int8Array::from_iter_values((0..n).map(|i| (i % 251) as i8))),
                Arc::new(UInt16Array::from_iter_values(
                    (0..n).map(|i| (i * 7) as u16),
                )),
                Arc::new(Float16Array::from_iter_values(
                    (0..n).map(|i| half::f16::from_f32((i % 1000) as f32 * 0.25)),
                )),
                Arc::new(Float32Array::from_iter_values(
                    (0..n).map(|i| i as f32 * 0.5),
                )),
                Arc::new(Int64Array::from_iter_values(
                    (0..n as i64).map(|i| i - 35_000),
                )),
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| i as f64 / 3.0),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    (0..n as u64).map(|i| i << 40),
                )),
            ],
        )
        .unwrap();
        let store = Store::new(
            schema,
            vec![batch.slice(0, 30_001), batch.slice(30_001, n - 30_001)],
        )
        .unwrap();
        let bytes = |t: &HostTensor| {
            let len = t.shape().iter().product::<i64>() as usize * t.dtype().size();
            // SAFETY: the tensor's own elements.
            unsafe { std::slice::from_raw_parts(t.data_ptr(), len).to_vec() }
        };
        let cases: [(&[usize], Option<DType>); 5] = [
            (&[0, 1, 2, 3, 4, 5], None),    // promoted to float32
            (&[4, 0, 1], None),             // ints: int64
            (&[3, 5, 6], Some(DType::F64)), // uint64 with floats, asked for
            (&[1, 2, 3, 5], Some(DType::F16)),
            (&[0, 4, 6], Some(DType::Bool)),
        ];
        for len in [0usize, 1, 300, 1024, 5000] {
            let rows: Vec<u64> = (0..len as u64)
                .map(|k| (k * 7919 + 11) % n as u64)
                .collect();
            let offsets: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
            for (columns, dtype) in cases {
                let fused = gather_tensor(&store, &rows, columns, dtype, None, None)
                    .expect("every column is in the block")
                    .unwrap();
                let taken = take(&store, &offsets, columns).unwrap();
                let want =
                    batch_to_tensor(std::slice::from_ref(&taken), dtype, None, Share::Allowed)
                        .unwrap();
                assert_eq!(fused.shape(), want.shape(), "{columns:?} {len}");
                assert_eq!(fused.dtype(), want.dtype(), "{columns:?}");
                assert_eq!(bytes(&fused), bytes(&want), "{columns:?} {dtype:?} {len}");
            }
        }
        // Not for a column outside the block, nor for a batch the parallel gather serves.
        let big: Vec<u64> = (0..crate::row_block::MAX_CONVERTED_ROWS as u64 + 1).collect();
        assert!(gather_tensor(&store, &big, &[0, 1], None, None, None).is_none());
    }

    #[test]
    fn odd_fixed_size_lists_copy_as_bytes() {
        use arrow_array::Int8Array;
        for size in [0i32, 4] {
            let item = Arc::new(Field::new("item", DataType::Float32, true));
            let schema = Arc::new(Schema::new(vec![
                Field::new("c", DataType::Int8, false),
                Field::new("e", DataType::FixedSizeList(item.clone(), size), false),
            ]));
            let values = Float32Array::from((0..3 * size).map(|v| v as f32).collect::<Vec<_>>());
            let list = FixedSizeListArray::from(
                ArrayData::builder(DataType::FixedSizeList(item, size))
                    .len(3)
                    .add_child_data(values.into_data())
                    .build()
                    .unwrap(),
            );
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int8Array::from(vec![1, 2, 3])), Arc::new(list)],
            )
            .unwrap();
            let s = Store::new(schema, vec![batch]).unwrap();
            let out = take(&s, &[2, 1, 0], &[0, 1]).unwrap();
            let l = out.column(1).as_fixed_size_list();
            let v = l.values().as_primitive::<Float32Type>().values().to_vec();
            let s = size as usize;
            let want: Vec<f32> = [2, 1, 0]
                .iter()
                .flat_map(|r| (r * s..(r + 1) * s).map(|v| v as f32))
                .collect();
            assert_eq!(v, want, "list size {size}");
        }
    }
}
