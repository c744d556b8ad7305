//! Decoding for Python: token lists padded or packed, images decoded, each a DLPack capsule.

use arrow_array::RecordBatch;
use pyo3::prelude::*;

use crate::error::Error;
use crate::image::{images_to_tensor, Crop, Spec};
use crate::py::dlpack::legacy_capsule;
use crate::tokens::{pack_lists, pad_lists, Padding};

/// `pad_lists` of column `index` of a pyarrow batch: two DLPack capsules, tokens and lengths.
#[pyfunction]
#[pyo3(signature = (batch, index, max_length=None, pad_value=0, truncate=true, to_max_length=false))]
pub fn pad_tokens<'py>(
    py: Python<'py>,
    batch: &Bound<'py, PyAny>,
    index: usize,
    max_length: Option<usize>,
    pad_value: i64,
    truncate: bool,
    to_max_length: bool,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let batch = batch_column(batch, index)?;
    let schema = batch.schema();
    let name = schema.field(index).name();
    let padding = Padding {
        max_length,
        pad: pad_value,
        truncate,
        to_max_length,
    };
    let padded = crate::py::errors::detached(py, || {
        pad_lists(batch.column(index).as_ref(), name, padding)
    })?;
    Ok((
        legacy_capsule(py, padded.tokens)?,
        legacy_capsule(py, padded.lengths)?,
    ))
}

/// `pack_lists` of column `index` of a pyarrow batch: two DLPack capsules, tokens and the
/// row of each token.
#[pyfunction]
pub fn pack_tokens<'py>(
    py: Python<'py>,
    batch: &Bound<'py, PyAny>,
    index: usize,
    max_length: usize,
    pad_value: i64,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let batch = batch_column(batch, index)?;
    let schema = batch.schema();
    let name = schema.field(index).name();
    let packed = crate::py::errors::detached(py, || {
        pack_lists(batch.column(index).as_ref(), name, max_length, pad_value)
    })?;
    Ok((
        legacy_capsule(py, packed.tokens)?,
        legacy_capsule(py, packed.documents)?,
    ))
}

/// The pyarrow batch, once column `index` is known to be in it.
fn batch_column(batch: &Bound<'_, PyAny>, index: usize) -> PyResult<RecordBatch> {
    let batch: RecordBatch = crate::py::arrow::batch_from_py(batch)?;
    if index >= batch.num_columns() {
        return Err(Error::ColumnOutOfRange {
            index,
            columns: batch.num_columns(),
            of: "batch",
        }
        .into());
    }
    Ok(batch)
}

/// `images_to_tensor` of column `index` of a pyarrow batch, as a DLPack capsule.
#[pyfunction]
#[pyo3(signature = (batch, index, width, height, channels_last, random, scale, ratio, flip, seed, epoch, skip=false))]
#[allow(clippy::too_many_arguments)]
pub fn decode_images<'py>(
    py: Python<'py>,
    batch: &Bound<'py, PyAny>,
    index: usize,
    width: u32,
    height: u32,
    channels_last: bool,
    random: bool,
    scale: (f64, f64),
    ratio: (f64, f64),
    flip: bool,
    seed: u64,
    epoch: u64,
    skip: bool,
) -> PyResult<(Bound<'py, PyAny>, Vec<usize>)> {
    let batch = crate::py::arrow::batch_from_py(batch)?;
    if index >= batch.num_columns() {
        return Err(Error::ColumnOutOfRange {
            index,
            columns: batch.num_columns(),
            of: "batch",
        }
        .into());
    }
    let crop = if random {
        Crop::Random { scale, ratio, flip }
    } else {
        Crop::Center { flip }
    };
    let spec = Spec {
        width,
        height,
        channels_last,
        crop,
        seed,
        epoch,
    };
    let schema = batch.schema();
    let name = schema.field(index).name();
    let (tensor, failed) = crate::py::errors::detached(py, || {
        images_to_tensor(batch.column(index).as_ref(), name, spec, skip)
    })?;
    Ok((legacy_capsule(py, tensor)?, failed))
}
