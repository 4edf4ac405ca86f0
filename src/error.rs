//! One error type for the whole extension: a message for the user and the SQLite result code
//! it becomes at the C boundary.

use std::fmt;
use std::os::raw::c_int;

/// SQLite's generic error code ([Result Codes](https://www.sqlite.org/rescode.html)).
pub const SQLITE_ERROR: c_int = 1;
/// Attempt to write a read-only database.
pub const SQLITE_READONLY: c_int = 8;
/// A value too large (string, blob, k, dimension).
pub const SQLITE_TOOBIG: c_int = 18;
/// Constraint or argument misuse.
pub const SQLITE_MISUSE: c_int = 21;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: c_int,
    message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_code(SQLITE_ERROR, message)
    }

    pub fn with_code(code: c_int, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> c_int {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context: ` in front of its message.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Error {
            code: self.code,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// `Err(Error::new(format!(…)))` in one line.
macro_rules! bail {
    ($($fmt:tt)*) => {
        return Err($crate::error::Error::new(format!($($fmt)*)))
    };
}
pub(crate) use bail;
