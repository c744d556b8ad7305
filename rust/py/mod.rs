//! The Python bindings: every `#[pyclass]` and `#[pyfunction]`, every crossing of Arrow data
//! (`arrow`, through the Arrow C interfaces) and of tensors (`dlpack`), and the mapping of
//! core errors to Python exceptions (`errors`). The module `lancetorch._native` is made here.

pub mod arrow;
pub mod decode;
pub mod dlpack;
pub mod errors;
pub mod loader;
pub mod permutation;
pub mod recent;
pub mod sql;
pub mod store;
pub mod tensor;

use pyo3::prelude::*;

/// Called in a forked child: stop using the thread pool there (see `threads`).
#[pyfunction]
fn mark_forked() {
    crate::threads::mark_forked();
}

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DEBUG_BUILD", cfg!(debug_assertions))?;
    errors::quiet_panics();
    m.add_class::<store::PyColumnStore>()?;
    m.add_class::<store::PyStoreBuilder>()?;
    m.add_class::<dlpack::PyDLPackTensor>()?;
    m.add_class::<loader::PyBatching>()?;
    m.add_class::<loader::PyPrefetcher>()?;
    m.add_class::<decode::PyTokenPacker>()?;
    m.add_function(wrap_pyfunction!(store::normalize_offsets, m)?)?;
    m.add_function(wrap_pyfunction!(store::view_offsets, m)?)?;
    m.add_function(wrap_pyfunction!(store::available_memory, m)?)?;
    m.add_function(wrap_pyfunction!(store::crc32_of_file, m)?)?;
    m.add_function(wrap_pyfunction!(tensor::batches_to_tensor, m)?)?;
    m.add_function(wrap_pyfunction!(tensor::taken_to_tensor, m)?)?;
    m.add_function(wrap_pyfunction!(recent::remember_alias, m)?)?;
    m.add_function(wrap_pyfunction!(tensor::batch_column_to_tensor, m)?)?;
    m.add_function(wrap_pyfunction!(permutation::py_split_sizes, m)?)?;
    m.add_function(wrap_pyfunction!(permutation::py_random_split, m)?)?;
    m.add_function(wrap_pyfunction!(permutation::py_sequential_split, m)?)?;
    m.add_function(wrap_pyfunction!(permutation::py_hash_split, m)?)?;
    m.add_function(wrap_pyfunction!(permutation::py_shuffle_splits, m)?)?;
    m.add_function(wrap_pyfunction!(permutation::py_epoch_order, m)?)?;
    m.add_function(wrap_pyfunction!(permutation::py_bijection_rows, m)?)?;
    m.add_function(wrap_pyfunction!(mark_forked, m)?)?;
    m.add_function(wrap_pyfunction!(sql::check_sql_expression, m)?)?;
    m.add_function(wrap_pyfunction!(decode::decode_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(decode::pack_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(decode::decode_images, m)?)?;
    Ok(())
}
