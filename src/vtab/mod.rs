//! Virtual tables: `faiss` (one index over a content table) and `faiss_indexes` (what the
//! process holds).

pub mod faiss;
mod indexes;
pub mod options;

pub use options::Options;

use std::sync::Arc;

use crate::error::Result;
use crate::registry::ConnState;
use crate::sqlite::Conn;

/// Register both modules on a connection.
pub fn register(conn: Conn, state: &Arc<ConnState>) -> Result<()> {
    faiss::register(conn, state)?;
    indexes::register(conn, state)
}
