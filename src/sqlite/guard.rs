//! The panic guard every callback from SQLite runs inside.
//!
//! Since Rust 1.81 a panic that reaches an `extern "C"` frame aborts the process: the sqlite3
//! shell, a Python interpreter or a Datasette server would die with it. A panic becomes an SQL
//! error instead.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, Kind, Result};

/// Run `f`, turning a panic into an [`Error`].
pub(crate) fn guard<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(panic_error(payload)),
    }
}

/// The error a caught panic becomes (on the callback's thread, or a helper thread's join).
pub(crate) fn panic_error(payload: Box<dyn std::any::Any + Send>) -> Error {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    Error::of(
        Kind::Internal,
        format!("vekter internal error (please report it): {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors() {
        let r: Result<()> = guard(|| panic!("boom"));
        assert!(r.unwrap_err().message().contains("boom"));
        assert_eq!(guard(|| Ok(3)).unwrap(), 3);
    }
}
