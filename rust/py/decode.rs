//! Decoding for Python: token lists padded or packed, images decoded, each a DLPack capsule.
//!
//! A spec crosses as one value: the Python spec object itself (`lancetorch.decode.Tokens`,
//! `lancetorch.decode.Image`, which check their fields when made), read by attribute into
//! the core's own parameters (`tokens::Padding`, `image::Spec`) here and nowhere else.

use pyo3::prelude::*;

use crate::dlpack::HostTensor;
use crate::dtype::DType;
use crate::error::Error;
use crate::image::{images_to_tensor, Crop, Spec};
use crate::py::arrow::PyBatch;
use crate::py::dlpack::legacy_capsule;
use crate::tokens::{pack_lists, pad_lists, Carry, Packed, Packing, Padding};

/// A `Tokens` spec's fields, as the spec object holds them.
#[derive(FromPyObject)]
pub struct TokensSpec {
    max_length: Option<usize>,
    pad_value: i64,
    truncate: bool,
    pad_to_max_length: bool,
    pack: bool,
    blocks: Option<usize>,
}

impl TokensSpec {
    fn padding(&self) -> PyResult<Padding> {
        if self.pack {
            return Err(
                Error::Value("a packing Tokens spec is decoded by pack_tokens".into()).into(),
            );
        }
        Ok(Padding {
            max_length: self.max_length,
            pad: self.pad_value,
            truncate: self.truncate,
            to_max_length: self.pad_to_max_length,
        })
    }

    fn packing(&self, carry: bool) -> PyResult<Packing> {
        let width = self.max_length.filter(|_| self.pack).ok_or_else(|| {
            Error::Value("pack=True needs max_length, the length of a packed block".into())
        })?;
        if self.blocks == Some(0) {
            return Err(Error::Value("blocks=0: a batch holds 1 block or more".into()).into());
        }
        Ok(Packing {
            width,
            blocks: self.blocks,
            pad: self.pad_value,
            carry,
        })
    }
}

/// An `Image` spec's fields, as the spec object holds them (`size` is `(height, width)`).
#[derive(FromPyObject)]
pub struct ImageSpec {
    size: (u32, u32),
    layout: String,
    crop: String,
    scale: (f64, f64),
    ratio: (f64, f64),
    flip: bool,
    seed: u64,
    on_error: String,
    jpeg: String,
}

impl ImageSpec {
    /// The core's spec for `epoch`, and whether an unreadable image is skipped.
    fn spec(&self, epoch: u64) -> PyResult<(Spec, bool)> {
        let choice = |name: &str, value: &str, first: &str, second: &str| {
            if value == first || value == second {
                Ok(value == second)
            } else {
                Err(Error::Value(format!(
                    "{name}={value:?} is not one of '{first}', '{second}'"
                )))
            }
        };
        let flip = self.flip;
        let crop = if choice("crop", &self.crop, "center", "random")? {
            Crop::Random {
                scale: self.scale,
                ratio: self.ratio,
                flip,
            }
        } else {
            Crop::Center { flip }
        };
        let (height, width) = self.size;
        let spec = Spec {
            width,
            height,
            channels_last: choice("layout", &self.layout, "NCHW", "NHWC")?,
            crop,
            seed: self.seed,
            epoch,
            jpeg_crop: !choice("jpeg", &self.jpeg, "crop", "full")?,
        };
        Ok((spec, choice("on_error", &self.on_error, "raise", "skip")?))
    }
}

/// Column `index` of a pyarrow batch padded as a `Tokens` spec says: two DLPack capsules,
/// the tokens and the length of each row.
#[pyfunction]
pub fn decode_tokens<'py>(
    py: Python<'py>,
    batch: PyBatch,
    index: usize,
    spec: TokensSpec,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let padding = spec.padding()?;
    let batch = batch.into_inner();
    let (column, name) = column_of(&batch, index)?;
    let padded = crate::py::errors::detached(py, || pad_lists(column.as_ref(), &name, padding))?;
    Ok((
        legacy_capsule(py, padded.tokens)?,
        legacy_capsule(py, padded.lengths)?,
    ))
}

/// What `pack_tokens` gives: the tokens, documents, positions and cu_seqlens as DLPack
/// capsules, then the longest segment and the tokens placed.
type PackedCapsules<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    usize,
    usize,
);

/// Column `index` of `batches` (one after another, the first `skip` tokens left out) packed
/// as a `Tokens(pack=True)` spec says, row `r` of them document `first_document + r`;
/// `carry=True` leaves the tokens past the spec's `blocks` for the caller to pass again.
#[pyfunction]
#[pyo3(signature = (batches, index, spec, *, skip=0, first_document=0, carry=false))]
pub fn pack_tokens<'py>(
    py: Python<'py>,
    batches: Vec<PyBatch>,
    index: usize,
    spec: TokensSpec,
    skip: usize,
    first_document: i64,
    carry: bool,
) -> PyResult<PackedCapsules<'py>> {
    let packing = spec.packing(carry)?;
    let mut name = String::new();
    let columns = batches
        .into_iter()
        .map(|batch| {
            let (column, n) = column_of(&batch.into_inner(), index)?;
            name = n;
            Ok(column)
        })
        .collect::<PyResult<Vec<_>>>()?;
    let packed = crate::py::errors::detached(py, || {
        let arrays: Vec<&dyn arrow_array::Array> = columns.iter().map(|c| c.as_ref()).collect();
        pack_lists(&arrays, &name, skip, first_document, packing)
    })?;
    Ok((
        legacy_capsule(py, packed.tokens)?,
        legacy_capsule(py, packed.documents)?,
        legacy_capsule(py, packed.positions)?,
        legacy_capsule(py, packed.cu_seqlens)?,
        packed.max_seqlen,
        packed.used,
    ))
}

/// What a [`PyTokenPacker`] gives for each packed batch: the tokens, documents, positions,
/// cu_seqlens and the longest segment (a 0-d int32 tensor), as DLPack capsules.
type PackedBatch<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
);

/// The Loader's fixed-shape packing (`Tokens(pack=True, blocks=B)`): row batches fed in
/// order, packed into batches of exactly `(B, max_length)`, the tokens that do not fit
/// carried into the next. It holds the pending row batches' Arrow columns (shared, not
/// copied), each imported and its rows found once.
#[pyclass(name = "TokenPacker", module = "lancetorch._native")]
pub struct PyTokenPacker {
    carry: Carry,
}

#[pymethods]
impl PyTokenPacker {
    #[new]
    #[pyo3(signature = (column, spec, skip=0))]
    fn new(column: &str, spec: TokensSpec, skip: usize) -> PyResult<Self> {
        let packing = spec.packing(true)?;
        Ok(PyTokenPacker {
            carry: Carry::new(column, packing, skip)?,
        })
    }

    /// Take column `index` of the next row batch, the first `tokens` of each `(row, tokens)`
    /// of `handed` (all of the row's, when it has fewer) left out.
    #[pyo3(signature = (batch, index, handed=Vec::new()))]
    fn push(&mut self, batch: PyBatch, index: usize, handed: Vec<(usize, usize)>) -> PyResult<()> {
        let (column, _) = column_of(&batch.into_inner(), index)?;
        Ok(self.carry.push(column, &handed)?)
    }

    /// The tokens fed and not yet handed out.
    fn available(&self) -> usize {
        self.carry.available()
    }

    /// Whether a whole packed batch is waiting.
    fn full(&self) -> bool {
        self.carry.full()
    }

    /// The next packed batch (the last of a pass padded).
    fn take<'py>(&mut self, py: Python<'py>) -> PyResult<PackedBatch<'py>> {
        let carry = &mut self.carry;
        let packed: Packed = crate::py::errors::detached(py, || carry.take())?;
        let longest = i32::try_from(packed.max_seqlen).unwrap_or(i32::MAX);
        let longest = HostTensor::from_buffer(
            arrow_buffer::Buffer::from_vec(vec![longest]),
            DType::I32,
            vec![],
        );
        Ok((
            legacy_capsule(py, packed.tokens)?,
            legacy_capsule(py, packed.documents)?,
            legacy_capsule(py, packed.positions)?,
            legacy_capsule(py, packed.cu_seqlens)?,
            legacy_capsule(py, longest)?,
        ))
    }

    /// `(row batches of the pass before the carry, tokens of the next already handed out)`.
    fn state(&self) -> (usize, usize) {
        self.carry.state()
    }

    /// Those tokens as `(whole rows, tokens of the row after them)`.
    fn progress(&self) -> (usize, usize) {
        self.carry.progress()
    }
}

/// Column `index` of a pyarrow batch decoded as an `Image` spec says, for `epoch` (which
/// seeds the random crops with the spec's seed): a DLPack capsule, and the rows skipped.
#[pyfunction]
pub fn decode_images<'py>(
    py: Python<'py>,
    batch: PyBatch,
    index: usize,
    spec: ImageSpec,
    epoch: u64,
) -> PyResult<(Bound<'py, PyAny>, Vec<usize>)> {
    let (spec, skip) = spec.spec(epoch)?;
    let batch = batch.into_inner();
    let (column, name) = column_of(&batch, index)?;
    let (tensor, failed) =
        crate::py::errors::detached(py, || images_to_tensor(column.as_ref(), &name, spec, skip))?;
    Ok((legacy_capsule(py, tensor)?, failed))
}

/// Column `index` of the batch and its name, or an IndexError.
fn column_of(
    batch: &arrow_array::RecordBatch,
    index: usize,
) -> PyResult<(arrow_array::ArrayRef, String)> {
    if index >= batch.num_columns() {
        return Err(Error::ColumnOutOfRange {
            index,
            columns: batch.num_columns(),
            of: "batch",
        }
        .into());
    }
    Ok((
        batch.column(index).clone(),
        batch.schema_ref().field(index).name().clone(),
    ))
}
