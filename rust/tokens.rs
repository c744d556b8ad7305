//! Token lists (variable-length lists of integers, as tokenized text is stored) as one padded
//! `(rows, length)` tensor and a `(rows,)` tensor of lengths.
//!
//! `length` is the longest row of the batch, capped at `max_length`, or `max_length` itself
//! when asked. Rows longer than it are cut (or refused); shorter ones are filled with the pad
//! value. A null list is an empty row. The tokens keep their integer type.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{
    Array, ArrowPrimitiveType, GenericListArray, GenericListViewArray, OffsetSizeTrait,
};
use arrow_buffer::Buffer;
use arrow_schema::DataType;

use crate::dlpack::HostTensor;
use crate::dtype::DType;
use crate::error::{Error, Result};

/// How a batch's token rows are laid out.
#[derive(Clone, Copy, Debug)]
pub struct Padding {
    /// At most this many tokens a row (`None`: no limit).
    pub max_length: Option<usize>,
    /// The value of the positions past a row's end.
    pub pad: i64,
    /// Cut rows longer than `max_length`; otherwise refuse them.
    pub truncate: bool,
    /// Every row `max_length` long, not the batch's longest.
    pub to_max_length: bool,
}

/// The padded tokens and the length of each row (after any cut).
pub struct Padded {
    pub tokens: HostTensor,
    pub lengths: HostTensor,
}

/// Each row's first token in the values and its count, beside the values.
type Rows<'a> = (Vec<(usize, usize)>, &'a dyn Array);

/// `(start, count)` of each row of a list array (a null row counts none).
fn list_ranges<O: OffsetSizeTrait>(list: &GenericListArray<O>) -> Vec<(usize, usize)> {
    let offsets = list.value_offsets();
    (0..list.len())
        .map(|i| {
            let (a, b) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
            (
                a,
                if list.is_valid(i) {
                    b.saturating_sub(a)
                } else {
                    0
                },
            )
        })
        .collect()
}

/// `(start, count)` of each row of a list-view array (a null row counts none).
fn view_ranges<O: OffsetSizeTrait>(list: &GenericListViewArray<O>) -> Vec<(usize, usize)> {
    (0..list.len())
        .map(|i| {
            let n = if list.is_valid(i) {
                list.sizes()[i].as_usize()
            } else {
                0
            };
            (list.offsets()[i].as_usize(), n)
        })
        .collect()
}

/// Where each row's tokens start in the values and how many there are.
fn row_ranges<'a>(array: &'a dyn Array, name: &str) -> Result<Rows<'a>> {
    let (ranges, values): (Vec<(usize, usize)>, &dyn Array) = match array.data_type() {
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            (list_ranges(list), list.values().as_ref())
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            (list_ranges(list), list.values().as_ref())
        }
        DataType::ListView(_) => {
            let list = array.as_list_view::<i32>();
            (view_ranges(list), list.values().as_ref())
        }
        DataType::LargeListView(_) => {
            let list = array.as_list_view::<i64>();
            (view_ranges(list), list.values().as_ref())
        }
        other => {
            return Err(Error::Type(format!(
                "column '{name}' is {other}; token columns are lists of integers (list, \
                 large_list or list_view)"
            )))
        }
    };
    // Arrow data that pyarrow built without validating (a list view's offsets, say) may
    // point past its values: refused, never read.
    if let Some(row) = ranges
        .iter()
        .position(|&(a, n)| a.checked_add(n).is_none_or(|end| end > values.len()))
    {
        return Err(Error::Value(format!(
            "column '{name}': row {row} of the batch points past its {} token values (invalid \
             list offsets)",
            values.len()
        )));
    }
    if values.null_count() > 0 {
        let inside = ranges
            .iter()
            .map(|&(a, n)| (a..a + n).filter(|&j| values.is_null(j)).count())
            .sum::<usize>();
        if inside > 0 {
            return Err(Error::Value(format!(
                "column '{name}' has {inside} null token(s) inside its lists; a token row \
                 holds token ids only"
            )));
        }
    }
    Ok((ranges, values))
}

/// Runs `$fill(tokens, pad)` with the values' native integer slice and the pad value in
/// that type; gives `(buffer, dtype)`, or refuses values that are not integers or a pad that
/// does not fit them.
macro_rules! by_token_type {
    ($values:expr, $name:expr, $pad:expr, $fill:expr) => {
        by_token_type!(@arms $values, $name, $pad, $fill;
            Int8Type => DType::I8, Int16Type => DType::I16, Int32Type => DType::I32,
            Int64Type => DType::I64, UInt8Type => DType::U8, UInt16Type => DType::U16,
            UInt32Type => DType::U32, UInt64Type => DType::U64)
    };
    (@arms $values:expr, $name:expr, $pad:expr, $fill:expr; $($arrow:ty => $dtype:expr),*) => {{
        let values: &dyn Array = $values;
        match values.data_type() {
            $(t if t == &<$arrow>::DATA_TYPE => {
                let tokens = values.as_primitive::<$arrow>().values();
                let pad = <$arrow as ArrowPrimitiveType>::Native::try_from($pad).map_err(|_| {
                    Error::Value(format!(
                        "pad_value={} does not fit column '{}''s tokens ({})",
                        $pad, $name, values.data_type()
                    ))
                })?;
                ($fill(&tokens[..], pad)?, $dtype)
            })*
            other => {
                return Err(Error::Type(format!(
                    "column '{}' is a list of {other}; token ids are integers",
                    $name
                )))
            }
        }
    }};
}

/// The tokens of column `name` laid out as `padding` says.
pub fn pad_lists(array: &dyn Array, name: &str, padding: Padding) -> Result<Padded> {
    let (ranges, values) = row_ranges(array, name)?;
    let longest = ranges.iter().map(|&(_, n)| n).max().unwrap_or(0);
    if let Some(limit) = padding.max_length {
        if !padding.truncate && longest > limit {
            let row = ranges.iter().position(|&(_, n)| n > limit).unwrap_or(0);
            return Err(Error::Value(format!(
                "column '{name}': row {row} of the batch has {} tokens, over max_length={limit}; \
                 pass truncate=True to cut such rows",
                ranges[row].1
            )));
        }
    }
    let width = match padding.max_length {
        Some(limit) if padding.to_max_length => limit,
        Some(limit) => longest.min(limit),
        None => longest,
    };
    let rows = ranges.len();
    let cells = rows.checked_mul(width).ok_or_else(|| {
        Error::Value(format!(
            "column '{name}': {rows} rows of {width} tokens do not fit in memory"
        ))
    })?;
    let (buffer, dtype) = by_token_type!(values, name, padding.pad, |tokens, pad| fill(
        tokens, &ranges, width, cells, pad
    ));
    let lengths: Vec<i64> = ranges.iter().map(|&(_, n)| n.min(width) as i64).collect();
    Ok(Padded {
        tokens: HostTensor::from_buffer(buffer, dtype, vec![rows as i64, width as i64]),
        lengths: HostTensor::from_buffer(Buffer::from_vec(lengths), DType::I64, vec![rows as i64]),
    })
}

fn fill<T: Copy + arrow_buffer::ArrowNativeType>(
    tokens: &[T],
    ranges: &[(usize, usize)],
    width: usize,
    cells: usize,
    pad: T,
) -> Result<Buffer> {
    let mut out = crate::memory::filled::<T>(cells, pad)?;
    for (row, &(start, n)) in out.chunks_exact_mut(width.max(1)).zip(ranges) {
        let n = n.min(width);
        row[..n].copy_from_slice(&tokens[start..start + n]);
    }
    Ok(Buffer::from_vec(out))
}

/// Packed tokens: `(blocks, width)`, and for each position the batch row its token came
/// from (-1 past the last token).
pub struct Packed {
    pub tokens: HostTensor,
    pub documents: HostTensor,
}

/// The tokens of column `name`, row after row, cut into blocks of `width` (the last block
/// filled with `pad`): every token once, none cut away, as pretraining packs documents.
pub fn pack_lists(array: &dyn Array, name: &str, width: usize, pad: i64) -> Result<Packed> {
    if width == 0 {
        return Err(Error::Value("packing needs max_length of 1 or more".into()));
    }
    let (ranges, values) = row_ranges(array, name)?;
    let total: usize = ranges.iter().map(|&(_, n)| n).sum();
    let blocks = total.div_ceil(width);
    let cells = blocks.checked_mul(width).ok_or_else(|| {
        Error::Value(format!(
            "column '{name}': {blocks} blocks of {width} tokens do not fit in memory"
        ))
    })?;
    let token_bytes = values.data_type().primitive_width().unwrap_or(8);
    let bytes = cells.saturating_mul(token_bytes + 8); // the tokens and each one's row
    crate::memory::check(
        bytes,
        &format!("column '{name}' packed into blocks of max_length={width}"),
    )?;
    let (buffer, dtype) = by_token_type!(values, name, pad, |tokens: &[_], pad| {
        let mut out = crate::memory::reserve(cells)?;
        for &(start, n) in &ranges {
            out.extend_from_slice(&tokens[start..start + n]);
        }
        #[allow(clippy::disallowed_methods)] // the room is reserved above
        out.resize(cells, pad);
        Ok::<_, Error>(Buffer::from_vec(out))
    });
    let mut documents = crate::memory::reserve::<i64>(cells)?;
    for (row, &(_, n)) in ranges.iter().enumerate() {
        #[allow(clippy::disallowed_methods)] // the room is reserved above
        documents.extend(std::iter::repeat_n(row as i64, n));
    }
    #[allow(clippy::disallowed_methods)] // the room is reserved above
    documents.resize(cells, -1);
    let shape = vec![blocks as i64, width as i64];
    Ok(Packed {
        tokens: HostTensor::from_buffer(buffer, dtype, shape.clone()),
        documents: HostTensor::from_buffer(Buffer::from_vec(documents), DType::I64, shape),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{Int32Builder, ListBuilder};
    use arrow_array::ListArray;

    fn lists(rows: &[Option<Vec<i32>>]) -> ListArray {
        let mut b = ListBuilder::new(Int32Builder::new());
        for r in rows {
            match r {
                Some(v) => {
                    b.values().append_slice(v);
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        b.finish()
    }

    fn values(t: &HostTensor) -> Vec<i32> {
        let n: i64 = t.shape().iter().product();
        // SAFETY: an i32 tensor of n elements made by pad_lists.
        unsafe { std::slice::from_raw_parts(t.data_ptr() as *const i32, n as usize) }.to_vec()
    }

    const LONGEST: Padding = Padding {
        max_length: None,
        pad: -1,
        truncate: true,
        to_max_length: false,
    };

    #[test]
    fn pads_to_the_longest_row() {
        let a = lists(&[Some(vec![1, 2, 3]), Some(vec![]), None, Some(vec![4])]);
        let p = pad_lists(&a, "t", LONGEST).unwrap();
        assert_eq!(p.tokens.shape(), &[4, 3]);
        assert_eq!(
            values(&p.tokens),
            vec![1, 2, 3, -1, -1, -1, -1, -1, -1, 4, -1, -1]
        );
    }

    #[test]
    fn packs_every_token_once_into_blocks() {
        let a = lists(&[Some(vec![1, 2, 3]), None, Some(vec![4, 5]), Some(vec![6])]);
        let p = pack_lists(&a, "t", 4, -1).unwrap();
        assert_eq!(p.tokens.shape(), &[2, 4]);
        assert_eq!(values(&p.tokens), vec![1, 2, 3, 4, 5, 6, -1, -1]);
        let n = 8;
        // SAFETY: an i64 tensor of n elements made by pack_lists.
        let rows = unsafe { std::slice::from_raw_parts(p.documents.data_ptr() as *const i64, n) };
        assert_eq!(rows, &[0, 0, 0, 2, 2, 3, -1, -1]);
        let empty = pack_lists(&lists(&[None, Some(vec![])]), "t", 4, 0).unwrap();
        assert_eq!(empty.tokens.shape(), &[0, 4]);
    }

    #[test]
    fn cuts_or_refuses_long_rows() {
        let a = lists(&[Some(vec![1, 2, 3]), Some(vec![4])]);
        let cut = Padding {
            max_length: Some(2),
            ..LONGEST
        };
        assert_eq!(
            values(&pad_lists(&a, "t", cut).unwrap().tokens),
            vec![1, 2, 4, -1]
        );
        let full = Padding {
            max_length: Some(4),
            to_max_length: true,
            ..LONGEST
        };
        assert_eq!(pad_lists(&a, "t", full).unwrap().tokens.shape(), &[2, 4]);
        let strict = Padding {
            max_length: Some(2),
            truncate: false,
            ..LONGEST
        };
        let err = pad_lists(&a, "t", strict).err().unwrap().to_string();
        assert!(err.contains("row 0") && err.contains("3 tokens"), "{err}");
    }

    #[test]
    fn a_pad_that_does_not_fit_is_refused() {
        let a = lists(&[Some(vec![1])]);
        let a = as_uint8(&a);
        assert!(pad_lists(&a, "t", LONGEST).is_err()); // -1 in uint8
    }

    fn as_uint8(a: &ListArray) -> ListArray {
        let vals: Vec<u8> = a
            .values()
            .as_primitive::<Int32Type>()
            .values()
            .iter()
            .map(|&v| v as u8)
            .collect();
        let field = std::sync::Arc::new(arrow_schema::Field::new("item", DataType::UInt8, true));
        ListArray::new(
            field,
            a.offsets().clone(),
            std::sync::Arc::new(arrow_array::UInt8Array::from(vals)),
            a.nulls().cloned(),
        )
    }
}
