//! One error type for the core (`py::errors` maps it to the Python exception that fits), and
//! the guard that turns a panic into one.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use arrow_schema::ArrowError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A row offset outside a table of `rows` rows: as the caller gave it, and where in the
    /// request it came when known.
    #[error(
        "row offset {offset}{} is out of range for a table of {rows} rows{}",
        .position.map(|p| format!(" (position {p} of the request)")).unwrap_or_default(),
        .why.map(|w| format!(": {w}")).unwrap_or_default()
    )]
    RowOutOfRange {
        offset: i64,
        rows: u64,
        position: Option<usize>,
        why: Option<&'static str>,
    },
    /// A column position outside a table (or batch) of `columns` columns.
    #[error("column index {index} is out of range for a {of} of {columns} columns")]
    ColumnOutOfRange {
        index: usize,
        columns: usize,
        of: &'static str,
    },
    /// Nulls in a column that a tensor cannot hold without being told what to put there.
    #[error("column '{column}' has {count} {what}; {fix}")]
    Nulls {
        column: String,
        count: usize,
        what: &'static str,
        fix: &'static str,
    },
    /// Another index outside its range (a span of rows, say).
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
    fn structured_errors_read_as_sentences() {
        let row = Error::RowOutOfRange {
            offset: -11,
            rows: 10,
            position: Some(3),
            why: None,
        };
        assert_eq!(
            row.to_string(),
            "row offset -11 (position 3 of the request) is out of range for a table of 10 rows"
        );
        let column = Error::ColumnOutOfRange {
            index: 4,
            columns: 2,
            of: "batch",
        };
        assert_eq!(
            column.to_string(),
            "column index 4 is out of range for a batch of 2 columns"
        );
        let nulls = Error::Nulls {
            column: "x".into(),
            count: 2,
            what: "null value(s)",
            fix: "fill them",
        };
        assert_eq!(
            nulls.to_string(),
            "column 'x' has 2 null value(s); fill them"
        );
    }

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
