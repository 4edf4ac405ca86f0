//! Virtual tables: `faiss` (one index over a content table) and `faiss_indexes` (what the
//! process holds). `plan` is the `faiss` table's query-plan encoding, `request` the decoded `xFilter`
//! arguments it describes, `options` the table's arguments.

mod faiss;
mod indexes;
pub(crate) mod options;
mod plan;
mod request;

use std::sync::Arc;

use crate::error::Result;
use crate::registry::ConnState;
use crate::sqlite::Conn;

/// Register both modules on a connection.
pub(crate) fn register(conn: Conn, state: &Arc<ConnState>) -> Result<()> {
    faiss::register(conn, state)?;
    indexes::register(conn, state)
}
