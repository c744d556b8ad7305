//! One error type for the core (`py::errors` maps it to the Python exception that fits), and
//! the guard that turns a panic into one.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use arrow_schema::ArrowError;

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

/// Runs `f`; a panic in it (a bug in the core or a crate under it) comes back as
/// `Error::Internal`, a RuntimeError, so that one bad batch cannot take the interpreter down
/// or raise a PanicException, which `except Exception` lets through.
pub fn guarded<T, E: Into<Error>>(f: impl FnOnce() -> std::result::Result<T, E>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(Into::into),
        Err(panic) => Err(Error::Internal(format!(
            "lancetorch internal error, a bug to report: {}",
            panic_message(panic.as_ref())
        ))),
    }
}

/// The text a panic was raised with.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error_with_its_message() {
        let caught = guarded(|| -> Result<()> { panic!("row {} of {}", 7, 3) });
        match caught {
            Err(Error::Internal(msg)) => assert!(msg.ends_with("row 7 of 3"), "{msg}"),
            other => panic!("expected an internal error, got {other:?}"),
        }
        assert_eq!(guarded(|| Ok::<_, Error>(5)).unwrap(), 5);
        assert!(matches!(
            guarded(|| -> Result<()> { Err(Error::Value("v".into())) }),
            Err(Error::Value(_))
        ));
    }
}
