//! One error type for the core, mapped to the Python exception that fits at the boundary.

use arrow_schema::ArrowError;
use pyo3::exceptions::{PyIndexError, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::PyErr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A row offset outside the table.
    #[error("{0}")]
    Index(String),
    /// A value of the wrong kind: a string column where numbers are needed, a float offset.
    #[error("{0}")]
    Type(String),
    /// A value of the right kind that cannot be used: nulls without a fill value, a bad ratio.
    #[error("{0}")]
    Value(String),
    /// An allocation the caller's sizes asked for that the machine cannot give.
    #[error("{0}")]
    Memory(String),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// A fault inside the core, such as a panic caught on a prefetch thread.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        match err {
            Error::Index(msg) => PyIndexError::new_err(msg),
            Error::Type(msg) => PyTypeError::new_err(msg),
            Error::Value(msg) => PyValueError::new_err(msg),
            Error::Memory(msg) => PyMemoryError::new_err(msg),
            Error::Arrow(e) => PyRuntimeError::new_err(e.to_string()),
            Error::Internal(msg) => PyRuntimeError::new_err(msg),
        }
    }
}
