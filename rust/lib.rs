//! lancetorch's Rust core. This file only registers; each concept has its own module.

pub mod bijection;
pub mod bridge;
pub mod dlpack;
pub mod error;
pub mod gather;
pub mod image;
pub mod loader;
pub mod permutation;
pub mod pool;
pub mod rows;
pub mod store;
pub mod tensor;
pub mod threads;
pub mod tokens;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DEBUG_BUILD", cfg!(debug_assertions))?;
    error::quiet_panics();
    m.add_class::<store::PyColumnStore>()?;
    m.add_class::<store::PyStoreBuilder>()?;
    m.add_class::<dlpack::PyDLPackTensor>()?;
    m.add_class::<tensor::PyGathered>()?;
    m.add_class::<loader::PyPrefetcher>()?;
    m.add_function(wrap_pyfunction!(store::normalize_offsets, m)?)?;
    m.add_function(wrap_pyfunction!(tensor::batches_to_tensor, m)?)?;
    m.add_function(wrap_pyfunction!(tensor::batch_column_to_tensor, m)?)?;
    m.add_function(wrap_pyfunction!(permutation::py_split_sizes, m)?)?;
    m.add_function(wrap_pyfunction!(permutation::py_random_split, m)?)?;
    m.add_function(wrap_pyfunction!(permutation::py_sequential_split, m)?)?;
    m.add_function(wrap_pyfunction!(permutation::py_hash_split, m)?)?;
    m.add_function(wrap_pyfunction!(permutation::py_shuffle_splits, m)?)?;
    m.add_function(wrap_pyfunction!(permutation::py_epoch_order, m)?)?;
    m.add_function(wrap_pyfunction!(bijection::py_bijection_rows, m)?)?;
    m.add_function(wrap_pyfunction!(threads::mark_forked, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::pad_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::pack_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(image::decode_images, m)?)?;
    Ok(())
}
