//! The one place core errors become Python exceptions, and where kernels run with the GIL
//! released and a panic caught.

use pyo3::exceptions::{PyIndexError, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::{PyErr, Python};

use crate::error::{guarded, Error, Result};

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        match err {
            Error::RowOutOfRange { .. } | Error::ColumnOutOfRange { .. } => {
                PyIndexError::new_err(err.to_string())
            }
            Error::Nulls { .. } => PyValueError::new_err(err.to_string()),
            Error::Index(msg) => PyIndexError::new_err(msg),
            Error::Type(msg) => PyTypeError::new_err(msg),
            Error::Value(msg) => PyValueError::new_err(msg),
            Error::Memory(msg) => PyMemoryError::new_err(msg),
            Error::Arrow(e) => PyRuntimeError::new_err(e.to_string()),
            Error::Internal(msg) => PyRuntimeError::new_err(msg),
        }
    }
}

/// Runs `f` with the GIL released, as [`guarded`].
pub fn detached<T, E>(
    py: Python<'_>,
    f: impl FnOnce() -> std::result::Result<T, E> + Send,
) -> Result<T>
where
    T: Send,
    E: Into<Error> + Send,
{
    py.detach(|| guarded(f))
}

/// Keeps a caught panic off stderr: it reaches the user as an exception with its message.
/// With `RUST_BACKTRACE` set the panic and its backtrace are printed, as Rust does by default.
pub fn quiet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            default(info);
        }
    }));
}
