//! One error type for the whole extension: what kind of failure it is (callers decide by kind,
//! never by the text), a message for the user, and the SQLite result code it becomes at the C
//! boundary ([Result Codes](https://www.sqlite.org/rescode.html)).

use std::fmt;
use std::os::raw::c_int;

const SQLITE_ERROR: c_int = 1;
const SQLITE_NOMEM: c_int = 7;
const SQLITE_READONLY: c_int = 8;
const SQLITE_INTERRUPT: c_int = 9;
const SQLITE_IOERR: c_int = 10;
const SQLITE_FULL: c_int = 13;
const SQLITE_TOOBIG: c_int = 18;
/// `SQLITE_CORRUPT | (1 << 8)`: a virtual table's own data is damaged.
const SQLITE_CORRUPT_VTAB: c_int = 11 | (1 << 8);

/// What went wrong, as far as a caller needs to know to react.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A value, argument, option or statement the user wrote is not acceptable.
    Invalid,
    /// A database, table or column that does not exist.
    NotFound,
    /// A value above one of vekter's limits (k, dimension, group size).
    TooBig,
    /// A write to a database opened read-only.
    ReadOnly,
    /// Stored data (shadow tables, snapshot bytes) is damaged or inconsistent.
    Corrupt,
    /// The index type cannot do what was asked (a selector inside its search).
    Unsupported,
    /// FAISS refused or failed.
    Faiss,
    /// SQLite returned this result code (BUSY, NOMEM, IOERR, a schema error, …).
    Sqlite(c_int),
    /// A bug in vekter: a caught panic or a broken invariant.
    Internal,
    /// A command's save (several writes) failed half-way. It becomes `SQLITE_IOERR`, one of the
    /// codes on which SQLite rolls back the whole transaction (as on a full disk), so the
    /// half-written state can never be committed (`engine::atomic`).
    HalfWritten,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Error {
    kind: Kind,
    message: String,
    /// The faiss table the message already names, so it is named once (see [`Error::in_table`]).
    names_table: bool,
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn of(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            names_table: false,
        }
    }

    /// The most common error: something the user passed or wrote is not acceptable.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::of(Kind::Invalid, message)
    }

    /// What SQLite reported: its result code and `sqlite3_errmsg`.
    pub(crate) fn sqlite(code: c_int, message: impl Into<String>) -> Self {
        Self::of(Kind::Sqlite(code), message)
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// The SQLite result code this error becomes.
    pub(crate) fn code(&self) -> c_int {
        match self.kind {
            Kind::TooBig => SQLITE_TOOBIG,
            Kind::ReadOnly => SQLITE_READONLY,
            Kind::Corrupt => SQLITE_CORRUPT_VTAB,
            Kind::Sqlite(code) => code,
            Kind::HalfWritten => SQLITE_IOERR,
            Kind::Invalid | Kind::NotFound | Kind::Unsupported | Kind::Faiss | Kind::Internal => {
                SQLITE_ERROR
            }
        }
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context: ` in front of its message.
    pub(crate) fn context(self, context: impl fmt::Display) -> Self {
        // An interrupt keeps SQLite's own message: callers (Datasette) match "interrupted".
        if self.kind == Kind::Sqlite(SQLITE_INTERRUPT) {
            return self;
        }
        Error {
            message: format!("{context}: {}", self.message),
            ..self
        }
    }

    /// The same message as another kind.
    pub(crate) fn into_kind(self, kind: Kind) -> Self {
        Error { kind, ..self }
    }

    /// Mark a message that names its faiss table in its own words ("faiss table 'x' needs k").
    pub(crate) fn naming_table(self) -> Self {
        Error {
            names_table: true,
            ..self
        }
    }

    /// `faiss table 'x': ` in front, unless the message names the table already.
    pub(crate) fn in_table(self, table: &str) -> Self {
        if self.names_table || self.kind == Kind::Sqlite(SQLITE_INTERRUPT) {
            self
        } else {
            self.context(format_args!("faiss table '{table}'"))
                .naming_table()
        }
    }

    /// The error of a command's save that stopped half-way: one that makes SQLite roll back the
    /// transaction (see [`Kind::HalfWritten`]). Errors whose code already does so
    /// (NOMEM, IOERR, INTERRUPT, FULL) keep it.
    pub(crate) fn half_written(self) -> Self {
        let rolls_back = matches!(
            self.code() & 0xff,
            SQLITE_NOMEM | SQLITE_IOERR | SQLITE_INTERRUPT | SQLITE_FULL
        );
        if rolls_back {
            self
        } else {
            self.into_kind(Kind::HalfWritten)
        }
    }

    /// SQLite's "SQL error or missing database" or "malformed" on a statement over a shadow
    /// table means the table is missing or has the wrong columns: damage, like a bad checksum.
    /// Other SQLite failures (BUSY, NOMEM, IOERR) are left as they are.
    pub(crate) fn damaged_if_schema(self) -> Self {
        match self.kind {
            Kind::Sqlite(code) if matches!(code & 0xff, 1 | 11) => Error {
                kind: Kind::Corrupt,
                ..self
            },
            _ => self,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// `return Err(…)` in one line: `bail!("k = {k} …")` is [`Kind::Invalid`];
/// `bail!(Corrupt: "…")` names another kind.
macro_rules! bail {
    ($kind:ident: $($fmt:tt)*) => {
        return Err($crate::error::Error::of($crate::error::Kind::$kind, format!($($fmt)*)))
    };
    ($($fmt:tt)*) => {
        return Err($crate::error::Error::invalid(format!($($fmt)*)))
    };
}
pub(crate) use bail;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_become_sqlite_codes() {
        assert_eq!(Error::invalid("x").code(), SQLITE_ERROR);
        assert_eq!(Error::of(Kind::TooBig, "x").code(), SQLITE_TOOBIG);
        assert_eq!(Error::of(Kind::ReadOnly, "x").code(), SQLITE_READONLY);
        assert_eq!(Error::of(Kind::Corrupt, "x").code(), SQLITE_CORRUPT_VTAB);
        assert_eq!(Error::sqlite(5, "busy").code(), 5);
        // Half-written: a code on which SQLite rolls the transaction back; FULL stays FULL.
        assert_eq!(Error::invalid("x").half_written().code(), SQLITE_IOERR);
        assert_eq!(Error::sqlite(13, "full").half_written().code(), 13);
        // BUSY stays BUSY; a missing shadow table is damage.
        assert_eq!(
            Error::sqlite(5, "busy").damaged_if_schema().kind(),
            Kind::Sqlite(5)
        );
        assert_eq!(
            Error::sqlite(1, "no such table").damaged_if_schema().kind(),
            Kind::Corrupt
        );
    }

    #[test]
    fn a_table_is_named_once() {
        let e = Error::invalid("k is missing").in_table("t").in_table("t");
        assert_eq!(e.message(), "faiss table 't': k is missing");
        let own = Error::invalid("faiss table 't' needs k").naming_table();
        assert_eq!(own.in_table("t").message(), "faiss table 't' needs k");
        // Context keeps the kind.
        let c = Error::of(Kind::Corrupt, "bad").context("load");
        assert_eq!((c.kind(), c.message()), (Kind::Corrupt, "load: bad"));
    }

    fn bails(kind: bool) -> Result<()> {
        if kind {
            bail!(Corrupt: "damaged {}", 1);
        }
        bail!("plain {}", 2)
    }

    #[test]
    fn bail_names_its_kind() {
        assert_eq!(bails(true).unwrap_err().kind(), Kind::Corrupt);
        let e = bails(false).unwrap_err();
        assert_eq!((e.kind(), e.message()), (Kind::Invalid, "plain 2"));
    }
}
