//! Arrow columns to one `(columns, rows)` tensor: type promotion, null policy, the zero-copy
//! case and the one-copy case.

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::{Buffer, MutableBuffer};
use arrow_schema::DataType;

use crate::dlpack::HostTensor;
use crate::dtype::{promote, DType, Element, Native};
use crate::error::{Error, Result};

/// Write `src` (any numeric or bool array) into `dst`, converting; nulls become `fill`.
fn convert_into<T: Element>(src: &dyn Array, dst: &mut [T], fill: Option<T>) {
    let dtype = DType::from_arrow(src.data_type()).expect("a tensor type: checked before");
    crate::with_dtype!(dtype, S => {
        let values = src.as_primitive::<<S as Native>::Arrow>().values();
        for (d, &v) in dst.iter_mut().zip(values.iter()) {
            *d = v.to_element();
        }
    }, bool => {
        for (d, v) in dst.iter_mut().zip(src.as_boolean().values().iter()) {
            *d = T::from_i64(v as i64);
        }
    });
    if let (Some(fill), Some(nulls)) = (fill, src.logical_nulls()) {
        for i in nulls
            .iter()
            .enumerate()
            .filter(|(_, valid)| !valid)
            .map(|(i, _)| i)
        {
            dst[i] = fill;
        }
    }
}

/// The values at byte `off` of each `stride`-byte row of `rows` (rows of a row-major block,
/// the values of Arrow type `dt`, a number type without nulls), converted into `dst` as
/// `convert_into` converts a column.
pub(crate) fn convert_slot<T: Element>(
    dt: &DataType,
    rows: &[u8],
    stride: usize,
    off: usize,
    dst: &mut [T],
) {
    let dtype = DType::from_arrow(dt).expect("a tensor type: checked before");
    crate::with_dtype!(dtype, S => {
        let width = std::mem::size_of::<S>();
        for (d, row) in dst.iter_mut().zip(rows.chunks_exact(stride)) {
            let slot = &row[off..off + width];
            // SAFETY: `slot` is `width` bytes of the row (checked by the slice), the bytes of
            // one `S` as the block copied them, at any alignment.
            let v = unsafe { std::ptr::read_unaligned(slot.as_ptr() as *const S) };
            *d = v.to_element();
        }
    }, bool => unreachable!("a row block holds no bools"));
}

/// What to do with nulls: refuse them (`None`) or write this value in their place.
pub type NullFill = Option<f64>;

struct Column<'a> {
    name: &'a str,
    chunks: Vec<&'a ArrayRef>,
}

/// The batches' columns with their tensor types: an error naming the first column that is not
/// a number or bool, or that holds nulls when `fill` gives nothing to put there.
fn numeric_columns<'a>(
    batches: &'a [RecordBatch],
    fill: NullFill,
) -> Result<(Vec<Column<'a>>, Vec<DType>)> {
    let Some(first) = batches.first() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let schema = first.schema_ref();
    for (k, batch) in batches.iter().enumerate().skip(1) {
        if !crate::dtype::same_columns(schema, batch.schema_ref()) {
            return Err(Error::Type(format!(
                "batch {k} has columns {:?} but batch 0 has {:?}; all batches of one tensor \
                 need the same column names and types",
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| (f.name().to_string(), f.data_type().to_string()))
                    .collect::<Vec<_>>(),
                schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().to_string(), f.data_type().to_string()))
                    .collect::<Vec<_>>(),
            )));
        }
    }
    let mut columns = Vec::new();
    let mut dtypes = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        let dtype = DType::from_arrow(field.data_type()).ok_or_else(|| {
            Error::Type(format!(
                "column '{}' is {}; a tensor holds numeric and bool columns only: convert \
                 the numeric columns alone (a Permutation's select_columns([...]), or \
                 column_to_tensor(batch, name) in your collate_fn) and keep this one as Arrow",
                field.name(),
                field.data_type()
            ))
        })?;
        let chunks: Vec<&ArrayRef> = batches.iter().map(|b| b.column(i)).collect();
        let nulls: usize = chunks.iter().map(|c| c.logical_null_count()).sum();
        if nulls > 0 && fill.is_none() {
            return Err(Error::Nulls {
                column: field.name().clone(),
                count: nulls,
                what: "null value(s)",
                fix: "pass null_value= (for example float('nan') or 0) to fill them, or filter \
                      those rows out",
            });
        }
        columns.push(Column {
            name: field.name(),
            chunks,
        });
        dtypes.push(dtype);
    }
    Ok((columns, dtypes))
}

/// One column's values as they lie in memory, for [`block_of`].
#[derive(Clone, Copy, Debug)]
pub struct Placed {
    /// Where its first value lies.
    pub first: *const u8,
    /// Its tensor element type, `None` for a type no tensor holds.
    pub dtype: Option<DType>,
    pub len: usize,
    pub nulls: usize,
}

impl Placed {
    /// Where the values of `array` lie (a plain primitive array; anything else is placed
    /// with no type, which no block takes).
    pub fn of(array: &dyn Array) -> Placed {
        let data = array.to_data();
        let dtype = DType::from_arrow(array.data_type()).filter(|&d| d != DType::Bool);
        let first = match (dtype, data.buffers().first()) {
            // The offset lies within the buffer by Arrow's layout.
            (Some(d), Some(values)) => values.as_ptr().wrapping_add(data.offset() * d.size()),
            _ => std::ptr::null(),
        };
        Placed {
            first,
            dtype,
            len: data.len(),
            nulls: array.null_count(),
        }
    }
}

/// Columns that lie in memory as one `(columns, rows)` tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub start: *const u8,
    pub dtype: DType,
    pub columns: usize,
    pub rows: usize,
}

impl Block {
    pub fn bytes(&self) -> usize {
        self.columns * self.rows * self.dtype.size()
    }
}

/// The one test of whether columns can become a tensor without a copy: at least one column
/// and one row, every column of one number type (not bool, which Arrow packs in bits), the
/// same length, no nulls, each starting where the one before it ends (as `gather::take`
/// writes them). Whether the memory may be shared is the caller's question (see `lending`).
pub fn block_of(columns: impl IntoIterator<Item = Placed>) -> Option<Block> {
    let mut columns = columns.into_iter();
    let first = columns.next()?;
    let dtype = first.dtype.filter(|&d| d != DType::Bool)?;
    let rows = first.len;
    if rows == 0 || first.first.is_null() || first.nulls != 0 {
        return None;
    }
    let step = rows * dtype.size();
    let mut count = 1;
    for c in columns {
        if c.dtype != Some(dtype)
            || c.len != rows
            || c.nulls != 0
            || c.first != first.first.wrapping_add(count * step)
        {
            return None;
        }
        count += 1;
    }
    Some(Block {
        start: first.first,
        dtype,
        columns: count,
        rows,
    })
}

/// The tensor without a copy, when the columns already form one block (see [`block_of`]) of
/// the target type.
fn zero_copy(columns: &[Column], target: DType) -> Option<HostTensor> {
    let arrays = columns
        .iter()
        .map(|c| match c.chunks.as_slice() {
            [only] => Some(*only),
            _ => None,
        })
        .collect::<Option<Vec<&ArrayRef>>>()?;
    let block =
        block_of(arrays.iter().map(|a| Placed::of(a.as_ref()))).filter(|b| b.dtype == target)?;
    let owners: Vec<Buffer> = arrays
        .iter()
        .map(|a| a.to_data().buffers()[0].clone())
        .collect();
    // SAFETY: the block's columns cover [start, start + bytes), each column's part within its
    // own buffer, and every buffer is kept alive in `owners`.
    Some(unsafe {
        HostTensor::new(
            block.start,
            target,
            vec![block.columns as i64, block.rows as i64],
            owners,
        )
    })
}

/// An error unless `fill` (if any) can stand for a null of column `name` converted to
/// `target`: the check a conversion makes, for a path that meets no nulls.
pub(crate) fn check_fill(fill: NullFill, target: DType, name: &str) -> Result<()> {
    fill_value::<f64>(fill, target, name).map(|_| ())
}

fn fill_value<T: Element>(fill: NullFill, target: DType, name: &str) -> Result<Option<T>> {
    let Some(v) = fill else { return Ok(None) };
    let fits = match target {
        DType::Bool => v == 0.0 || v == 1.0,
        DType::F16 | DType::F32 | DType::F64 => true,
        int => {
            let bits = (int.size() * 8) as i32;
            let (lo, hi) = if int.signed() {
                (-(2f64.powi(bits - 1)), 2f64.powi(bits - 1) - 1.0)
            } else {
                (0.0, 2f64.powi(bits) - 1.0)
            };
            v.is_finite() && v.fract() == 0.0 && (lo..=hi).contains(&v)
        }
    };
    if !fits {
        return Err(Error::Value(format!(
            "null_value={v} cannot be stored in column '{name}' as {}; pass a value that fits \
             or dtype=torch.float32",
            target.name()
        )));
    }
    Ok(Some(T::from_f64(v)))
}

fn copy_as<T: Element>(
    columns: &[Column],
    rows: usize,
    fill: NullFill,
    target: DType,
) -> Result<Buffer> {
    // A wider type than the columns' own (int8 to float64) takes more than the rows held.
    let bytes = columns
        .len()
        .checked_mul(rows)
        .and_then(|cells| cells.checked_mul(std::mem::size_of::<T>()))
        .ok_or_else(|| {
            Error::Memory(format!(
                "a tensor of {rows} rows of {} columns takes more bytes than an address holds",
                columns.len()
            ))
        })?;
    crate::memory::check(bytes, &format!("a {} tensor of {rows} rows", target.name()))?;
    #[allow(clippy::disallowed_methods)] // the size is checked above
    let mut out = MutableBuffer::from_len_zeroed(bytes);
    // SAFETY: MutableBuffer is 64-byte aligned and sized for columns * rows elements of T.
    let all: &mut [T] =
        unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut T, columns.len() * rows) };
    if rows == 0 {
        return Ok(out.into());
    }
    let fills = columns
        .iter()
        .map(|c| fill_value::<T>(fill, target, c.name))
        .collect::<Result<Vec<_>>>()?;
    let work = |((dst, col), fill): ((&mut [T], &Column), &Option<T>)| {
        let mut at = 0;
        for chunk in &col.chunks {
            let n = chunk.len();
            convert_into(chunk.as_ref(), &mut dst[at..at + n], *fill);
            at += n;
        }
    };
    let jobs = all.chunks_mut(rows).zip(columns.iter()).zip(fills.iter());
    if crate::threads::parallel(columns.len() * rows * std::mem::size_of::<T>(), 1 << 20) {
        crate::threads::share(jobs.collect(), work);
    } else {
        jobs.for_each(work);
    }
    Ok(out.into())
}

/// `copy_as` for a runtime target type.
fn copy_to(columns: &[Column], rows: usize, fill: NullFill, target: DType) -> Result<Buffer> {
    crate::with_dtype!(target, T => copy_as::<T>(columns, rows, fill, target))
}

/// Whether the tensor may share the batches' memory instead of copying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// The caller owns the memory, made for this batch alone (the prefetcher's gathers).
    Allowed,
    /// Where the memory lies in a take's allocation and no tensor shares it yet (see
    /// `lending`): a user's buffers may be read-only maps, or data that must not change.
    IfLendable,
}

/// `tensor` if `share` lets it keep the memory it shares, else `None` (copy instead).
fn shared(tensor: HostTensor, share: Share) -> Option<HostTensor> {
    match share {
        Share::Allowed => Some(tensor),
        Share::IfLendable => {
            let bytes = tensor.shape().iter().product::<i64>() as usize * tensor.dtype().size();
            crate::lending::lend(tensor.data_ptr() as usize, bytes).then_some(tensor)
        }
    }
}

/// Build the `(columns, rows)` tensor of `batches` (chunks of one table).
pub fn batch_to_tensor(
    batches: &[RecordBatch],
    dtype: Option<DType>,
    fill: NullFill,
    share: Share,
) -> Result<HostTensor> {
    let (columns, dtypes) = numeric_columns(batches, fill)?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let target = match dtype {
        Some(d) => d,
        None => promote(&dtypes)?,
    };
    // Checked whether or not any null needs it, so that a fill value that cannot be stored
    // fails the same way on every path (shared or copied, empty or not).
    if let Some(first) = columns.first() {
        check_fill(fill, target, first.name)?;
    }
    if let Some(t) = zero_copy(&columns, target).and_then(|t| shared(t, share)) {
        return Ok(t);
    }
    let buffer = copy_to(&columns, rows, fill, target)?;
    Ok(HostTensor::from_buffer(
        buffer,
        target,
        vec![columns.len() as i64, rows as i64],
    ))
}

/// One column as a tensor: `(rows,)` for a numeric or bool column, `(rows, size)` for a
/// fixed-size list of numbers (embeddings), shared with a gather's output when allowed.
pub fn column_to_tensor(
    batch: &RecordBatch,
    index: usize,
    dtype: Option<DType>,
    fill: NullFill,
    share: Share,
) -> Result<HostTensor> {
    let schema = batch.schema();
    if index >= schema.fields().len() {
        return Err(Error::ColumnOutOfRange {
            index,
            columns: schema.fields().len(),
            of: "batch",
        });
    }
    let field = schema.field(index);
    let rows = batch.num_rows();
    let DataType::FixedSizeList(child, size) = field.data_type() else {
        let single = batch.project(&[index])?;
        let t = batch_to_tensor(&[single], dtype, fill, share)?;
        return Ok(t.reshaped(vec![rows as i64]));
    };
    let size = *size as usize;
    let elem = DType::from_arrow(child.data_type()).ok_or_else(|| {
        Error::Type(format!(
            "column '{}' is a list of {}; a tensor holds numbers: read it with format='arrow'",
            field.name(),
            child.data_type()
        ))
    })?;
    let array = batch.column(index);
    if array.logical_null_count() > 0 {
        return Err(Error::Nulls {
            column: field.name().clone(),
            count: array.logical_null_count(),
            what: "null list(s)",
            fix: "filter those rows out",
        });
    }
    let values = array.as_fixed_size_list().values().slice(0, rows * size);
    let nulls = values.logical_null_count();
    if nulls > 0 && fill.is_none() {
        return Err(Error::Nulls {
            column: field.name().clone(),
            count: nulls,
            what: "null value(s) inside its lists",
            fix: "pass null_value= to fill them",
        });
    }
    let target = dtype.unwrap_or(elem);
    check_fill(fill, target, field.name())?;
    let shape = vec![rows as i64, size as i64];
    if target == elem {
        let block = block_of([Placed::of(values.as_ref())]);
        if let Some(block) = block {
            let owner = values.to_data().buffers()[0].clone();
            // SAFETY: the block is the rows * size values of `values`, owned by `owner`.
            let tensor = unsafe { HostTensor::new(block.start, elem, shape.clone(), vec![owner]) };
            if let Some(t) = shared(tensor, share) {
                return Ok(t);
            }
        }
    }
    let column = Column {
        name: field.name(),
        chunks: vec![&values],
    };
    let buffer = copy_to(std::slice::from_ref(&column), rows * size, fill, target)?;
    Ok(HostTensor::from_buffer(buffer, target, shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{Float32Array, Int64Array, Int8Array, UInt8Array};
    use arrow_schema::{Field, Schema};

    use crate::gather;
    use crate::store::Store;

    fn read<T: Copy>(t: &HostTensor) -> Vec<T> {
        let n = t.shape().iter().product::<i64>() as usize;
        unsafe { std::slice::from_raw_parts(t.data_ptr() as *const T, n).to_vec() }
    }

    #[test]
    fn gathered_same_type_columns_are_not_copied() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Float32, false),
            Field::new("b", DataType::Float32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Float32Array::from(vec![1.0, 2.0, 3.0])),
                Arc::new(Float32Array::from(vec![10.0, 20.0, 30.0])),
            ],
        )
        .unwrap();
        let store = Store::new(schema, vec![batch]).unwrap();
        let taken = gather::take(&store, &[2, 0], &[0, 1]).unwrap();
        let convert = |share| batch_to_tensor(std::slice::from_ref(&taken), None, None, share);
        let t = convert(Share::Allowed).unwrap();
        // The take's memory is lent to one tensor once; the next one asking gets a copy.
        let lent = convert(Share::IfLendable).unwrap();
        let copied = convert(Share::IfLendable).unwrap();
        assert_eq!(lent.data_ptr(), t.data_ptr());
        assert_ne!(copied.data_ptr(), t.data_ptr());
        assert_eq!(read::<f32>(&copied), read::<f32>(&t));
        assert_eq!(
            t.data_ptr(),
            taken.column(0).to_data().buffers()[0].as_ptr()
        );
        assert_eq!(read::<f32>(&t), vec![3.0, 1.0, 30.0, 10.0]);
    }

    #[test]
    fn a_block_is_columns_of_one_type_back_to_back_without_nulls() {
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let at = |k: usize| values[k..].as_ptr() as *const u8;
        let column = |k: usize, len: usize| Placed {
            first: at(k),
            dtype: Some(DType::F32),
            len,
            nulls: 0,
        };
        let three = [column(0, 4), column(4, 4), column(8, 4)];
        assert_eq!(
            block_of(three),
            Some(Block {
                start: at(0),
                dtype: DType::F32,
                columns: 3,
                rows: 4
            })
        );
        assert_eq!(block_of(three).unwrap().bytes(), 48);
        // A gap, an overlap, another length, a null, another type, bool, no rows, no columns.
        assert_eq!(block_of([column(0, 4), column(5, 4)]), None);
        assert_eq!(block_of([column(0, 4), column(3, 4)]), None);
        assert_eq!(block_of([column(0, 4), column(4, 3)]), None);
        let null = Placed {
            nulls: 1,
            ..column(4, 4)
        };
        assert_eq!(block_of([column(0, 4), null]), None);
        let int = Placed {
            dtype: Some(DType::I32),
            ..column(4, 4)
        };
        assert_eq!(block_of([column(0, 4), int]), None);
        let bools = Placed {
            dtype: Some(DType::Bool),
            ..column(0, 4)
        };
        assert_eq!(block_of([bools]), None);
        assert_eq!(block_of([column(0, 0)]), None);
        assert_eq!(block_of([]), None);
        // An Arrow array is placed where its values (after its offset) lie.
        let array = Float32Array::from(values.clone()).slice(4, 4);
        let placed = Placed::of(&array);
        assert_eq!(
            (placed.dtype, placed.len, placed.nulls),
            (Some(DType::F32), 4, 0)
        );
        assert_eq!(placed.first, array.values().as_ptr() as *const u8);
        let strings = arrow_array::StringArray::from(vec!["a"]);
        assert_eq!(Placed::of(&strings).dtype, None);
    }

    #[test]
    fn mixed_types_and_chunks_copy_once_with_promotion_and_fill() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int8, true),
            Field::new("u", DataType::UInt8, false),
        ]));
        let chunk = |i: Vec<Option<i8>>, u: Vec<u8>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int8Array::from(i)), Arc::new(UInt8Array::from(u))],
            )
            .unwrap()
        };
        let batches = vec![
            chunk(vec![Some(-1), None], vec![200, 1]),
            chunk(vec![Some(5)], vec![7]),
        ];
        let err = batch_to_tensor(&batches, None, None, Share::IfLendable)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'i'") && err.contains("1 null"), "{err}");
        let t = batch_to_tensor(&batches, None, Some(-9.0), Share::IfLendable).unwrap();
        assert_eq!(t.dtype(), DType::I16);
        assert_eq!(read::<i16>(&t), vec![-1, -9, 5, 200, 1, 7]);
        let err = batch_to_tensor(&batches, None, Some(f64::NAN), Share::IfLendable)
            .unwrap_err()
            .to_string();
        assert!(err.contains("null_value"), "{err}");
    }

    #[test]
    fn strings_are_refused_by_name() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("caption", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(arrow_array::StringArray::from(vec!["a"])),
            ],
        )
        .unwrap();
        let err = batch_to_tensor(&[batch], None, None, Share::IfLendable)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'caption'") && err.contains("Utf8"), "{err}");
    }
}
