//! Writes of several statements that must happen whole or not at all.
//!
//! A `faiss` table writes its shadow tables from inside another statement (`CREATE VIRTUAL
//! TABLE`, `INSERT INTO t(t) VALUES ('optimize')`, `DROP TABLE`, …). SQLite gives such a
//! statement no statement journal, so when it fails inside an explicit transaction, the writes
//! it already made stay in the transaction, and a later COMMIT would store a snapshot whose
//! config names other bytes. So every multi-statement write runs here: if anything fails (or
//! panics) once writing has begun, the error becomes one on which SQLite rolls back the whole
//! transaction, as it does on a full disk (`tests/failpoints.rs` checks each step).

use crate::error::Result;
use crate::sqlite::guard;

/// Run `writes`; a failure makes SQLite roll back the transaction (see the module notes).
pub(crate) fn all_or_nothing<R>(writes: impl FnOnce() -> Result<R>) -> Result<R> {
    guard(writes).map_err(|e| e.half_written())
}
