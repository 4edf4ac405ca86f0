//! Commands whose several writes must happen whole or not at all.
//!
//! `INSERT INTO t(t) VALUES ('optimize')` (and `'rebuild'`) rewrites the shadow tables from
//! inside an INSERT into the virtual table, and SQLite gives that statement no statement journal
//! (unlike CREATE VIRTUAL TABLE, DROP TABLE and ALTER TABLE, which it undoes whole on failure).
//! When it fails inside an explicit transaction, the writes it already made would stay, and a
//! later COMMIT would store chunks the config does not describe. So a command's save runs here:
//! a failure (or panic) becomes an error on which SQLite rolls back the whole transaction, as it
//! does on a full disk (`tests/failpoints.rs` checks each step, in and out of a transaction).

use crate::error::Result;
use crate::sqlite::guard;

/// Run `writes`; a failure makes SQLite roll back the transaction (see the module notes).
pub(crate) fn all_or_nothing<R>(writes: impl FnOnce() -> Result<R>) -> Result<R> {
    guard(writes).map_err(|e| e.half_written())
}
