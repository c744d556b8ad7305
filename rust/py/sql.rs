//! The SQL check for Python: whether a filter or a calculated split is one expression.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::sql::one_expression;

/// None when `text` is exactly one SQL expression, else ValueError saying where and why not
/// (the caller names the parameter and what to write instead).
#[pyfunction]
pub fn check_sql_expression(py: Python<'_>, text: &str) -> PyResult<()> {
    py.detach(|| one_expression(text))
        .map_err(|err| PyValueError::new_err(err.to_string()))
}
