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
    Array, ArrayRef, ArrowPrimitiveType, GenericListArray, GenericListViewArray, OffsetSizeTrait,
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

/// How token rows are packed: into blocks of `width` tokens, `blocks` of them a batch
/// (`None`: as many as the tokens fill, the last one padded).
#[derive(Clone, Copy, Debug)]
pub struct Packing {
    /// The tokens of a block (1 or more).
    pub width: usize,
    /// Exactly this many blocks a batch (`None`: as many as the tokens need).
    pub blocks: Option<usize>,
    /// The value of the positions past the last token.
    pub pad: i64,
    /// Tokens past `blocks * width` are left for the next call (the caller carries them);
    /// otherwise such a batch is refused.
    pub carry: bool,
}

/// Packed tokens, `(blocks, width)`, and what variable-length attention takes of them.
pub struct Packed {
    pub tokens: HostTensor,
    /// `(blocks, width)` int64: the document (row) each token came from, -1 for padding.
    pub documents: HostTensor,
    /// `(blocks, width)` int32: each token's position in its document within its block,
    /// 0 at each document's start and at each block's start (0 for padding).
    pub positions: HostTensor,
    /// `(segments + 1,)` int32: where each segment (a document's run within one block)
    /// starts in the flattened `(blocks * width)` tokens, from 0 to the tokens used;
    /// padding is in no segment.
    pub cu_seqlens: HostTensor,
    /// The longest segment.
    pub max_seqlen: usize,
    /// Tokens placed (the rest of the input, past them, is the caller's carry).
    pub used: usize,
}

/// One run of tokens to place: the source, the first token in its values, the count, and
/// the document it belongs to.
struct Chunk {
    piece: usize,
    start: usize,
    count: usize,
    document: i64,
}

/// The rows of one list array, ready to pack: where each row's tokens lie in `values`.
struct Source<'a> {
    ranges: &'a [(usize, usize)],
    values: &'a dyn Array,
}

/// The token rows of `arrays` (each a list column named `name`), one after another, skipping
/// the first `skip` tokens of them, packed as `packing` says: every token once, in row order.
/// The rows are the documents: row `r` of the rows of all arrays counts as document
/// `first_document + r`. Segments restart at each document and at each block (a document
/// cut by a block boundary goes on, from position 0, in the next block).
pub fn pack_lists(
    arrays: &[&dyn Array],
    name: &str,
    skip: usize,
    first_document: i64,
    packing: Packing,
) -> Result<Packed> {
    let pieces = arrays
        .iter()
        .map(|&array| row_ranges(array, name))
        .collect::<Result<Vec<_>>>()?;
    same_token_type(pieces.iter().map(|(_, v)| *v), name)?;
    let sources: Vec<Source> = pieces
        .iter()
        .map(|(ranges, values)| Source {
            ranges,
            values: *values,
        })
        .collect();
    pack_sources(&sources, name, skip, first_document, packing)
}

/// Refuses token values of more than one type.
fn same_token_type<'a>(mut values: impl Iterator<Item = &'a dyn Array>, name: &str) -> Result<()> {
    let Some(first) = values.next() else {
        return Ok(());
    };
    if let Some(other) = values.find(|v| v.data_type() != first.data_type()) {
        return Err(Error::Type(format!(
            "column '{name}' holds {} tokens in one batch and {} in another; a packed \
             column keeps one token type",
            first.data_type(),
            other.data_type()
        )));
    }
    Ok(())
}

fn pack_sources(
    sources: &[Source],
    name: &str,
    skip: usize,
    first_document: i64,
    packing: Packing,
) -> Result<Packed> {
    let width = packing.width;
    if width == 0 {
        return Err(Error::Value("packing needs max_length of 1 or more".into()));
    }
    let all: usize = sources
        .iter()
        .flat_map(|s| s.ranges.iter().map(|&(_, n)| n))
        .sum();
    if skip > all {
        return Err(Error::Value(format!(
            "column '{name}': skip={skip} is past the {all} tokens given"
        )));
    }
    let total = all - skip;
    let blocks = packing.blocks.unwrap_or_else(|| total.div_ceil(width));
    let cells = blocks.checked_mul(width).ok_or_else(|| {
        Error::Value(format!(
            "column '{name}': {blocks} blocks of {width} tokens do not fit in memory"
        ))
    })?;
    if total > cells && !packing.carry {
        return Err(Error::Value(format!(
            "column '{name}': the batch's {total} tokens need {} blocks of max_length={width}, \
             over blocks={blocks}; one batch cannot carry tokens into the next: read through \
             lancetorch.Loader, which carries them, or give fewer rows a batch",
            total.div_ceil(width)
        )));
    }
    let used = total.min(cells);
    if i32::try_from(used).is_err() {
        return Err(Error::Value(format!(
            "column '{name}': {used} tokens a batch are more than cu_seqlens (int32) can \
             count; use fewer blocks"
        )));
    }
    let token_bytes = sources
        .first()
        .and_then(|s| s.values.data_type().primitive_width())
        .unwrap_or(8);
    crate::memory::check(
        cells.saturating_mul(token_bytes + 16), // the tokens, their documents and positions
        &format!("column '{name}' packed into blocks of max_length={width}"),
    )?;
    // The runs to place (a row's tokens within one block), with their segment ends: a
    // pass over the rows, not the tokens.
    let mut chunks = Vec::new();
    let mut cu_seqlens = vec![0i32];
    let (mut out, mut max_seqlen, mut to_skip) = (0usize, 0usize, skip);
    let mut document = first_document;
    'rows: for (p, source) in sources.iter().enumerate() {
        for &(start, n) in source.ranges {
            let dropped = to_skip.min(n);
            let (mut start, mut n) = (start + dropped, n - dropped);
            to_skip -= dropped;
            while n > 0 {
                if out == used {
                    break 'rows;
                }
                let k = n.min(width - out % width).min(used - out);
                chunks.push(Chunk {
                    piece: p,
                    start,
                    count: k,
                    document,
                });
                (out, start, n) = (out + k, start + k, n - k);
                cu_seqlens.push(out as i32); // out <= used, which fits int32 (checked above)
                max_seqlen = max_seqlen.max(k);
            }
            document += 1;
        }
    }
    let (tokens, dtype, documents, positions) = place(sources, &chunks, cells, name, packing.pad)?;
    let shape = vec![blocks as i64, width as i64];
    let segments = cu_seqlens.len() as i64;
    Ok(Packed {
        tokens: HostTensor::from_buffer(tokens, dtype, shape.clone()),
        documents: HostTensor::from_buffer(documents, DType::I64, shape.clone()),
        positions: HostTensor::from_buffer(positions, DType::I32, shape),
        cu_seqlens: HostTensor::from_buffer(
            Buffer::from_vec(cu_seqlens),
            DType::I32,
            vec![segments],
        ),
        max_seqlen,
        used,
    })
}

/// The tokens of `chunks` one after another (`pad` up to `cells`, in the values' own integer
/// type, which every source shares), and beside each its document (-1 past the last) and
/// its position in its run (0 past the last): `(tokens, dtype, documents, positions)`.
fn place(
    sources: &[Source],
    chunks: &[Chunk],
    cells: usize,
    name: &str,
    pad: i64,
) -> Result<(Buffer, DType, Buffer, Buffer)> {
    let Some(first) = sources.first() else {
        return Ok((
            Buffer::from_vec(crate::memory::filled::<i64>(cells, pad)?),
            DType::I64,
            Buffer::from_vec(crate::memory::filled::<i64>(cells, -1)?),
            Buffer::from_vec(crate::memory::filled::<i32>(cells, 0)?),
        ));
    };
    macro_rules! typed {
        ($($arrow:ty => $dtype:expr),*) => {
            match first.values.data_type() {
                $(t if t == &<$arrow>::DATA_TYPE => {
                    let pad = <$arrow as ArrowPrimitiveType>::Native::try_from(pad).map_err(|_| {
                        Error::Value(format!(
                            "pad_value={pad} does not fit column '{name}''s tokens ({t})"
                        ))
                    })?;
                    let (tokens, documents, positions) =
                        place_typed::<$arrow>(sources, chunks, cells, pad)?;
                    Ok((tokens, $dtype, documents, positions))
                })*
                other => Err(Error::Type(format!(
                    "column '{name}' is a list of {other}; token ids are integers"
                ))),
            }
        };
    }
    typed!(
        Int8Type => DType::I8, Int16Type => DType::I16, Int32Type => DType::I32,
        Int64Type => DType::I64, UInt8Type => DType::U8, UInt16Type => DType::U16,
        UInt32Type => DType::U32, UInt64Type => DType::U64
    )
}

/// [`place`] for tokens of Arrow type `A` (every source's values are of it).
fn place_typed<A: ArrowPrimitiveType>(
    sources: &[Source],
    chunks: &[Chunk],
    cells: usize,
    pad: A::Native,
) -> Result<(Buffer, Buffer, Buffer)> {
    let slices: Vec<&[A::Native]> = sources
        .iter()
        .map(|s| s.values.as_primitive::<A>().values().as_ref())
        .collect();
    let mut tokens = crate::memory::reserve::<A::Native>(cells)?;
    let mut documents = crate::memory::reserve::<i64>(cells)?;
    let mut positions = crate::memory::reserve::<i32>(cells)?;
    {
        let outputs = Outputs {
            tokens: &mut tokens.spare_capacity_mut()[..cells],
            documents: &mut documents.spare_capacity_mut()[..cells],
            positions: &mut positions.spare_capacity_mut()[..cells],
        };
        // Two halves of the runs (by tokens), the padding with the second: on two threads
        // where the batch is large enough, each writing its own part of the three outputs.
        let used: usize = chunks.iter().map(|c| c.count).sum();
        let mut at = 0;
        let half = chunks
            .iter()
            .position(|c| {
                at += c.count;
                at > used / 2
            })
            .unwrap_or(chunks.len());
        let first: usize = chunks[..half].iter().map(|c| c.count).sum();
        let (head, tail) = outputs.split_at(first);
        let parts = vec![(&chunks[..half], head), (&chunks[half..], tail)];
        let write = |(runs, part): (&[Chunk], Outputs<A::Native>)| {
            part.write(runs, &slices, pad);
        };
        let bytes = cells * (std::mem::size_of::<A::Native>() + 12);
        if crate::threads::parallel(bytes, 1 << 19) {
            crate::threads::share(parts, write);
        } else {
            parts.into_iter().for_each(write);
        }
    }
    // SAFETY: the two parts cover all `cells` items of each output, and `Outputs::write`
    // writes every item of its part (the runs, then padding to its end).
    unsafe {
        tokens.set_len(cells);
        documents.set_len(cells);
        positions.set_len(cells);
    }
    Ok((
        Buffer::from_vec(tokens),
        Buffer::from_vec(documents),
        Buffer::from_vec(positions),
    ))
}

/// A part of the three outputs of [`place_typed`], not yet written.
struct Outputs<'a, T> {
    tokens: &'a mut [std::mem::MaybeUninit<T>],
    documents: &'a mut [std::mem::MaybeUninit<i64>],
    positions: &'a mut [std::mem::MaybeUninit<i32>],
}

impl<'a, T: Copy> Outputs<'a, T> {
    fn split_at(self, at: usize) -> (Self, Self) {
        let (t0, t1) = self.tokens.split_at_mut(at);
        let (d0, d1) = self.documents.split_at_mut(at);
        let (p0, p1) = self.positions.split_at_mut(at);
        (
            Outputs {
                tokens: t0,
                documents: d0,
                positions: p0,
            },
            Outputs {
                tokens: t1,
                documents: d1,
                positions: p1,
            },
        )
    }

    /// Every item of this part: the runs one after another, each run's tokens, document and
    /// positions written while its tokens are warm, then padding to the part's end.
    fn write(self, runs: &[Chunk], slices: &[&[T]], pad: T) {
        let mut o = 0;
        for c in runs {
            let (end, source) = (o + c.count, &slices[c.piece][c.start..c.start + c.count]);
            for (out, &token) in self.tokens[o..end].iter_mut().zip(source) {
                out.write(token);
            }
            for out in &mut self.documents[o..end] {
                out.write(c.document);
            }
            for (j, out) in self.positions[o..end].iter_mut().enumerate() {
                out.write(j as i32); // a run is at most `used`, within int32
            }
            o = end;
        }
        for out in &mut self.tokens[o..] {
            out.write(pad);
        }
        for out in &mut self.documents[o..] {
            out.write(-1);
        }
        for out in &mut self.positions[o..] {
            out.write(0);
        }
    }
}

/// One row batch's token column held by a [`Carry`]: the column (which keeps its values
/// alive), where each row's tokens lie, and their count.
struct Pending {
    list: ArrayRef,
    ranges: Vec<(usize, usize)>,
    tokens: usize,
}

/// Fixed-shape packing across row batches: the row batches fed, in order, packed into
/// batches of exactly `blocks * width` tokens, what does not fit carried into the next
/// (the Loader's carry). Each row batch is checked and its rows found once, when fed.
pub struct Carry {
    name: String,
    packing: Packing,
    cells: usize,
    pending: Vec<Pending>,
    /// The tokens of `pending`, all of them.
    fed: usize,
    /// Tokens of `pending[0]` already handed out.
    skip: usize,
    /// Row batches of the pass before `pending[0]`.
    first: usize,
    /// Rows of the pass before `pending[0]` (the document of its first row).
    document: i64,
}

impl Carry {
    /// A carry for column `name` packed as `packing` (which must fix `blocks`), the first
    /// `skip` tokens of the first row batch fed already handed out (a resumed pass).
    pub fn new(name: &str, packing: Packing, skip: usize) -> Result<Self> {
        let Some(blocks) = packing.blocks else {
            return Err(Error::Value(
                "a carry packs into a fixed number of blocks: give Tokens(blocks=...)".into(),
            ));
        };
        if packing.width == 0 || blocks == 0 {
            return Err(Error::Value(
                "packing needs max_length and blocks of 1 or more".into(),
            ));
        }
        let cells = blocks.checked_mul(packing.width).ok_or_else(|| {
            Error::Value(format!(
                "column '{name}': {blocks} blocks of {} tokens do not fit in memory",
                packing.width
            ))
        })?;
        Ok(Carry {
            name: name.to_string(),
            packing: Packing {
                carry: true,
                ..packing
            },
            cells,
            pending: Vec::new(),
            fed: 0,
            skip,
            first: 0,
            document: 0,
        })
    }

    /// Take the next row batch's token column, the first `tokens` of each `(row, tokens)` of
    /// `handed` (all of the row's, when it has fewer) left out: handed out before a resume.
    pub fn push(&mut self, list: ArrayRef, handed: &[(usize, usize)]) -> Result<()> {
        let (mut ranges, values) = row_ranges(list.as_ref(), &self.name)?;
        for &(row, tokens) in handed {
            let Some(range) = ranges.get_mut(row) else {
                return Err(Error::Value(format!(
                    "column '{}': row {row} handed out before is past the {} rows of its \
                     row batch",
                    self.name,
                    list.len()
                )));
            };
            let out = tokens.min(range.1);
            *range = (range.0 + out, range.1 - out);
        }
        if let Some(head) = self.pending.first() {
            same_token_type(
                [values_of(head.list.as_ref()), values].into_iter(),
                &self.name,
            )?;
        }
        let tokens = ranges.iter().map(|&(_, n)| n).sum();
        if self.pending.is_empty() && self.skip > tokens {
            return Err(Error::Value(format!(
                "column '{}': skip={} is past the {tokens} tokens of the row batch it starts \
                 in",
                self.name, self.skip
            )));
        }
        self.pending.push(Pending {
            list,
            ranges,
            tokens,
        });
        self.fed += tokens;
        Ok(())
    }

    /// The tokens fed and not yet handed out.
    pub fn available(&self) -> usize {
        self.fed - self.skip
    }

    /// Whether a whole batch of `blocks * width` tokens is waiting.
    pub fn full(&self) -> bool {
        self.available() >= self.cells
    }

    /// The next packed batch (the last of a pass padded), and the row batches it finished
    /// dropped from the carry.
    pub fn take(&mut self) -> Result<Packed> {
        // Only the row batches this packed batch reaches.
        let mut need = self.skip + self.cells;
        let reached = self
            .pending
            .iter()
            .take_while(|p| {
                let more = need > 0;
                need = need.saturating_sub(p.tokens);
                more
            })
            .count();
        let pending = &self.pending[..reached];
        let values: Vec<&dyn Array> = pending.iter().map(|p| values_of(p.list.as_ref())).collect();
        let sources: Vec<Source> = pending
            .iter()
            .zip(values)
            .map(|(p, values)| Source {
                ranges: &p.ranges,
                values,
            })
            .collect();
        let packed = pack_sources(&sources, &self.name, self.skip, self.document, self.packing)?;
        let mut done = self.skip + packed.used;
        let finished = self.pending.iter().take_while(|p| {
            let whole = done >= p.tokens;
            if whole {
                done -= p.tokens;
            }
            whole
        });
        let finished = finished.count();
        for p in self.pending.drain(..finished) {
            self.document += p.list.len() as i64;
            self.fed -= p.tokens;
        }
        self.first += finished;
        self.skip = done;
        Ok(packed)
    }

    /// `(row batches of the pass before the carry, tokens of the next already handed out)`:
    /// where a resumed pass starts.
    pub fn state(&self) -> (usize, usize) {
        (self.first, self.skip)
    }

    /// The tokens of [`Carry::state`]'s row batch already handed out as rows: `(rows, tokens)`,
    /// its first `rows` rows whole (left out when fed, or empty, included) and the first
    /// `tokens` of the row after them.
    pub fn progress(&self) -> (usize, usize) {
        let Some(head) = self.pending.first() else {
            return (0, 0);
        };
        let mut left = self.skip;
        let rows = head
            .ranges
            .iter()
            .take_while(|&&(_, n)| {
                let whole = n <= left;
                if whole {
                    left -= n;
                }
                whole
            })
            .count();
        (rows, left)
    }
}

/// The values of a list column that [`row_ranges`] accepted.
fn values_of(list: &dyn Array) -> &dyn Array {
    match list.data_type() {
        DataType::List(_) => list.as_list::<i32>().values().as_ref(),
        DataType::LargeList(_) => list.as_list::<i64>().values().as_ref(),
        DataType::ListView(_) => list.as_list_view::<i32>().values().as_ref(),
        _ => list.as_list_view::<i64>().values().as_ref(),
    }
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
        let p = pack_lists(&[&a], "t", 0, 0, packing(4, None, -1)).unwrap();
        assert_eq!(p.tokens.shape(), &[2, 4]);
        assert_eq!(values(&p.tokens), vec![1, 2, 3, 4, 5, 6, -1, -1]);
        let n = 8;
        // SAFETY: an i64 tensor of n elements made by pack_lists.
        let rows = unsafe { std::slice::from_raw_parts(p.documents.data_ptr() as *const i64, n) };
        assert_eq!(rows, &[0, 0, 0, 2, 2, 3, -1, -1]);
        let none = lists(&[None, Some(vec![])]);
        let empty = pack_lists(&[&none], "t", 0, 0, packing(4, None, 0)).unwrap();
        assert_eq!(empty.tokens.shape(), &[0, 4]);
    }

    fn packing(width: usize, blocks: Option<usize>, pad: i64) -> Packing {
        Packing {
            width,
            blocks,
            pad,
            carry: true,
        }
    }

    fn longs(t: &HostTensor) -> Vec<i64> {
        let n: i64 = t.shape().iter().product();
        // SAFETY: an i64 tensor of n elements made by pack_lists.
        unsafe { std::slice::from_raw_parts(t.data_ptr() as *const i64, n as usize) }.to_vec()
    }

    #[test]
    fn fixed_blocks_carry_across_calls_with_positions_and_segments() {
        let a = lists(&[Some(vec![1, 2, 3]), Some(vec![4, 5])]);
        let b = lists(&[Some(vec![6, 7, 8, 9])]);
        // Two blocks of 3: [1 2 3] [4 5 6], 7 8 9 left for the next batch.
        let p = pack_lists(&[&a, &b], "t", 0, 10, packing(3, Some(2), -1)).unwrap();
        assert_eq!(p.tokens.shape(), &[2, 3]);
        assert_eq!(values(&p.tokens), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(longs(&p.documents), vec![10, 10, 10, 11, 11, 12]);
        assert_eq!(values(&p.positions), vec![0, 1, 2, 0, 1, 0]);
        let cu: Vec<i64> = {
            // SAFETY: an int32 tensor of its shape's elements.
            let n = p.cu_seqlens.shape()[0] as usize;
            let s = unsafe { std::slice::from_raw_parts(p.cu_seqlens.data_ptr() as *const i32, n) };
            s.iter().map(|&v| v as i64).collect()
        };
        assert_eq!(cu, vec![0, 3, 5, 6]);
        assert_eq!((p.used, p.max_seqlen), (6, 3));
        // The rest, from the second array's first token on: the document cut by the batch
        // boundary starts again at position 0; the last block is padded.
        let q = pack_lists(&[&b], "t", 1, 12, packing(3, Some(2), -1)).unwrap();
        assert_eq!(values(&q.tokens), vec![7, 8, 9, -1, -1, -1]);
        assert_eq!(longs(&q.documents), vec![12, 12, 12, -1, -1, -1]);
        assert_eq!(values(&q.positions), vec![0, 1, 2, 0, 0, 0]);
        assert_eq!(q.used, 3);
        let refuse = Packing {
            carry: false,
            ..packing(3, Some(1), 0)
        };
        let err = pack_lists(&[&a], "t", 0, 0, refuse)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("Loader") && err.contains("blocks=1"), "{err}");
    }

    #[test]
    fn a_carry_packs_row_batches_fed_in_order_and_names_where_to_resume() {
        let a: ArrayRef = std::sync::Arc::new(lists(&[Some(vec![1, 2, 3]), Some(vec![4, 5])]));
        let b: ArrayRef = std::sync::Arc::new(lists(&[Some(vec![6, 7, 8, 9])]));
        let mut carry = Carry::new("t", packing(3, Some(1), -1), 0).unwrap();
        carry.push(a.clone(), &[]).unwrap();
        let mut got = Vec::new();
        let mut states = Vec::new();
        for batch in [b.clone()] {
            while carry.full() {
                got.push(values(&carry.take().unwrap().tokens));
                states.push(carry.state());
            }
            carry.push(batch, &[]).unwrap();
        }
        while carry.available() > 0 {
            let p = carry.take().unwrap();
            got.push(values(&p.tokens));
            states.push(carry.state());
        }
        assert_eq!(got, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]);
        // After [1 2 3]: batch 0, 3 tokens out; after [4 5 6]: batch 1, 1 token out.
        assert_eq!(states, vec![(0, 3), (1, 1), (2, 0)]);
        // Resumed at batch 1 with 1 token out: the same rest, its documents from 2 on as
        // the caller numbers them.
        let mut resumed = Carry::new("t", packing(3, Some(1), -1), 1).unwrap();
        resumed.push(b, &[]).unwrap();
        let p = resumed.take().unwrap();
        assert_eq!(values(&p.tokens), vec![7, 8, 9]);
        assert_eq!(values(&p.positions), vec![0, 1, 2]);
        assert!(Carry::new("t", packing(3, None, 0), 0).is_err());
    }

    #[test]
    fn rows_handed_out_before_are_left_out_and_progress_counts_rows() {
        let a: ArrayRef = std::sync::Arc::new(lists(&[
            Some(vec![1, 2, 3]),
            None,
            Some(vec![4, 5]),
            Some(vec![6, 7, 8]),
        ]));
        let mut carry = Carry::new("t", packing(2, Some(1), -1), 0).unwrap();
        assert_eq!(carry.progress(), (0, 0));
        // Row 0 handed out whole (more than it holds), row 3's first token.
        carry.push(a.clone(), &[(0, usize::MAX), (3, 1)]).unwrap();
        assert_eq!(carry.progress(), (2, 0)); // row 0 left out and row 1 empty: whole
        let p = carry.take().unwrap();
        assert_eq!(values(&p.tokens), vec![4, 5]);
        assert_eq!(longs(&p.documents), vec![2, 2]);
        assert_eq!(carry.progress(), (3, 0));
        let p = carry.take().unwrap();
        assert_eq!(values(&p.tokens), vec![7, 8]);
        assert_eq!(carry.state(), (1, 0));
        assert_eq!(carry.progress(), (0, 0));
        let mut partial = Carry::new("t", packing(2, Some(1), -1), 0).unwrap();
        partial.push(a.clone(), &[]).unwrap();
        partial.take().unwrap();
        assert_eq!(partial.progress(), (0, 2)); // two of row 0's three tokens
        let err = partial.push(a, &[(4, 1)]).unwrap_err().to_string();
        assert!(err.contains("row 4") && err.contains("4 rows"), "{err}");
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test's own small vectors
    fn a_large_batch_written_in_two_parts_matches_a_plain_packing() {
        // Large enough for two threads: every token, document and position as a plain loop
        // over the rows places them.
        let rows: Vec<Option<Vec<i32>>> = (0..300)
            .map(|r| Some((0..(r * 7 % 601)).map(|t| r * 1000 + t).collect()))
            .collect();
        let a = lists(&rows);
        let width = 997;
        let p = pack_lists(&[&a], "t", 0, 5, packing(width, None, -7)).unwrap();
        let (mut tokens, mut documents, mut positions) = (vec![], vec![], vec![]);
        for (r, row) in rows.iter().enumerate() {
            for &t in row.as_ref().unwrap() {
                let at_start = tokens.len() % width == 0;
                let same = documents.last() == Some(&(r as i64 + 5)) && !at_start;
                positions.push(if same {
                    positions.last().unwrap() + 1
                } else {
                    0
                });
                tokens.push(t);
                documents.push(r as i64 + 5);
            }
        }
        let cells = tokens.len().div_ceil(width) * width;
        tokens.resize(cells, -7);
        documents.resize(cells, -1);
        positions.resize(cells, 0);
        assert!(cells * 16 >= 1 << 19);
        assert_eq!(values(&p.tokens), tokens);
        assert_eq!(longs(&p.documents), documents);
        assert_eq!(values(&p.positions), positions);
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
