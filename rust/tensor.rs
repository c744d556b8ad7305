//! Arrow columns to one `(columns, rows)` tensor: type promotion, null policy, the zero-copy
//! case and the one-copy case.

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::{Buffer, MutableBuffer};
use arrow_schema::DataType;
use half::f16;

use crate::dlpack::HostTensor;
use crate::dtype::{promote, DType, Element};
use crate::error::{Error, Result};

/// Write `src` (any numeric or bool array) into `dst`, converting; nulls become `fill`.
fn convert_into<T: Element>(src: &dyn Array, dst: &mut [T], fill: Option<T>) {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    macro_rules! run {
        ($ty:ty, $f:ident) => {{
            let values = src.as_primitive::<$ty>().values();
            for (d, &v) in dst.iter_mut().zip(values.iter()) {
                *d = T::$f(v as _);
            }
        }};
    }
    match src.data_type() {
        DataType::Boolean => {
            let values = src.as_boolean().values();
            for (d, v) in dst.iter_mut().zip(values.iter()) {
                *d = T::from_i64(v as i64);
            }
        }
        DataType::Int8 => run!(Int8Type, from_i64),
        DataType::Int16 => run!(Int16Type, from_i64),
        DataType::Int32 => run!(Int32Type, from_i64),
        DataType::Int64 => run!(Int64Type, from_i64),
        DataType::UInt8 => run!(UInt8Type, from_u64),
        DataType::UInt16 => run!(UInt16Type, from_u64),
        DataType::UInt32 => run!(UInt32Type, from_u64),
        DataType::UInt64 => run!(UInt64Type, from_u64),
        DataType::Float16 => {
            let values = src.as_primitive::<Float16Type>().values();
            for (d, &v) in dst.iter_mut().zip(values.iter()) {
                *d = T::from_f64(v.to_f64());
            }
        }
        DataType::Float32 => run!(Float32Type, from_f64),
        DataType::Float64 => run!(Float64Type, from_f64),
        other => unreachable!("checked before conversion: {other}"),
    }
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
    macro_rules! run {
        ($s:ty, $f:ident) => {{
            const W: usize = std::mem::size_of::<$s>();
            for (d, row) in dst.iter_mut().zip(rows.chunks_exact(stride)) {
                let bytes: [u8; W] = row[off..off + W].try_into().expect("slot inside the row");
                *d = T::$f(<$s>::from_ne_bytes(bytes) as _);
            }
        }};
    }
    match dt {
        DataType::Int8 => run!(i8, from_i64),
        DataType::Int16 => run!(i16, from_i64),
        DataType::Int32 => run!(i32, from_i64),
        DataType::Int64 => run!(i64, from_i64),
        DataType::UInt8 => run!(u8, from_u64),
        DataType::UInt16 => run!(u16, from_u64),
        DataType::UInt32 => run!(u32, from_u64),
        DataType::UInt64 => run!(u64, from_u64),
        DataType::Float16 => {
            for (d, row) in dst.iter_mut().zip(rows.chunks_exact(stride)) {
                let bytes: [u8; 2] = row[off..off + 2].try_into().expect("slot inside the row");
                *d = T::from_f64(f16::from_ne_bytes(bytes).to_f64());
            }
        }
        DataType::Float32 => run!(f32, from_f64),
        DataType::Float64 => run!(f64, from_f64),
        other => unreachable!("checked before conversion: {other}"),
    }
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

/// The column's values start address, when it is a plain primitive array.
fn values_ptr(array: &ArrayRef, size: usize) -> *const u8 {
    let data = array.to_data();
    // SAFETY: pointer arithmetic inside the buffer (offset is within bounds by construction).
    unsafe { data.buffers()[0].as_ptr().add(data.offset() * size) }
}

/// The tensor without a copy, when the columns already lie back to back in memory with one
/// type and no nulls (as `gather::take` writes them).
fn zero_copy(
    columns: &[Column],
    dtypes: &[DType],
    target: DType,
    rows: usize,
) -> Option<HostTensor> {
    if columns.is_empty() || rows == 0 || target == DType::Bool {
        return None;
    }
    if columns.iter().any(|c| c.chunks.len() != 1) || dtypes.iter().any(|&d| d != target) {
        return None;
    }
    let size = target.size();
    let base = values_ptr(columns[0].chunks[0], size);
    let step = rows * size;
    for (i, c) in columns.iter().enumerate() {
        let array = c.chunks[0];
        if array.null_count() > 0 || values_ptr(array, size) as usize != base as usize + i * step {
            return None;
        }
    }
    let owners: Vec<Buffer> = columns
        .iter()
        .map(|c| c.chunks[0].to_data().buffers()[0].clone())
        .collect();
    // SAFETY: column i covers [base + i*step, base + (i+1)*step) and its buffer is kept alive
    // in `owners`, so the whole (columns, rows) block stays valid.
    Some(unsafe {
        HostTensor::new(
            base,
            target,
            vec![columns.len() as i64, rows as i64],
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
    match target {
        DType::Bool => copy_as::<bool>(columns, rows, fill, target),
        DType::I8 => copy_as::<i8>(columns, rows, fill, target),
        DType::I16 => copy_as::<i16>(columns, rows, fill, target),
        DType::I32 => copy_as::<i32>(columns, rows, fill, target),
        DType::I64 => copy_as::<i64>(columns, rows, fill, target),
        DType::U8 => copy_as::<u8>(columns, rows, fill, target),
        DType::U16 => copy_as::<u16>(columns, rows, fill, target),
        DType::U32 => copy_as::<u32>(columns, rows, fill, target),
        DType::U64 => copy_as::<u64>(columns, rows, fill, target),
        DType::F16 => copy_as::<f16>(columns, rows, fill, target),
        DType::F32 => copy_as::<f32>(columns, rows, fill, target),
        DType::F64 => copy_as::<f64>(columns, rows, fill, target),
    }
}

/// Whether the tensor may share the batches' memory instead of copying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// The caller owns the memory, made for this batch alone (the prefetcher's gathers).
    Allowed,
    /// Where the memory lies in a take's allocation and no tensor shares it yet (see
    /// `lending`): a user's buffers may be read-only maps, or data that must not change.
    IfLendable,
    Never,
}

/// `tensor` if `share` lets it keep the memory it shares, else `None` (copy instead).
fn shared(tensor: HostTensor, share: Share) -> Option<HostTensor> {
    match share {
        Share::Allowed => Some(tensor),
        Share::IfLendable => {
            let bytes = tensor.shape().iter().product::<i64>() as usize * tensor.dtype().size();
            crate::lending::lend(tensor.data_ptr() as usize, bytes).then_some(tensor)
        }
        Share::Never => None,
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
    if share != Share::Never {
        if let Some(t) = zero_copy(&columns, &dtypes, target, rows).and_then(|t| shared(t, share)) {
            return Ok(t);
        }
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
    use arrow_array::cast::AsArray;
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
    if share != Share::Never
        && target == elem
        && elem != DType::Bool
        && nulls == 0
        && rows * size > 0
    {
        let data = values.to_data();
        let owner = data.buffers()[0].clone();
        let ptr = values_ptr(&values, elem.size());
        // SAFETY: `values` covers rows * size elements from `ptr`, owned by `owner`.
        let tensor = unsafe { HostTensor::new(ptr, elem, shape.clone(), vec![owner]) };
        if let Some(t) = shared(tensor, share) {
            return Ok(t);
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
        let t = batch_to_tensor(std::slice::from_ref(&taken), None, None, Share::Allowed).unwrap();
        let copied =
            batch_to_tensor(std::slice::from_ref(&taken), None, None, Share::Never).unwrap();
        assert_ne!(copied.data_ptr(), t.data_ptr());
        assert_eq!(read::<f32>(&copied), read::<f32>(&t));
        assert_eq!(
            t.data_ptr(),
            taken.column(0).to_data().buffers()[0].as_ptr()
        );
        assert_eq!(read::<f32>(&t), vec![3.0, 1.0, 30.0, 10.0]);
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
        let err = batch_to_tensor(&batches, None, None, Share::Never)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'i'") && err.contains("1 null"), "{err}");
        let t = batch_to_tensor(&batches, None, Some(-9.0), Share::Never).unwrap();
        assert_eq!(t.dtype(), DType::I16);
        assert_eq!(read::<i16>(&t), vec![-1, -9, 5, 200, 1, 7]);
        let err = batch_to_tensor(&batches, None, Some(f64::NAN), Share::Never)
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
        let err = batch_to_tensor(&[batch], None, None, Share::Never)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'caption'") && err.contains("Utf8"), "{err}");
    }
}
