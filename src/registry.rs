//! The process-wide registry of live indexes: one in-memory index per (database file, table),
//! shared by every connection and thread of the process.
//!
//! Freshness without triggers (datasette-faiss tables): each connection remembers, per index,
//! the pager's data version, its own change count and the index generation it last checked.
//! When all three are unchanged nothing can have changed the table (no commit by anyone, no
//! write by this connection) and the index is used as it is. Otherwise the table is read
//! again and fingerprinted: an equal fingerprint keeps the index, a different one replaces it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use once_cell::sync::Lazy;

use crate::content::{read_rows, Rows};
use crate::error::Result;
use crate::index::{Index, Metric};
use crate::json::IdValue;
use crate::sqlite::Conn;

/// Which database an index belongs to: a file is shared by every connection of the process;
/// an in-memory or temporary database belongs to one connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DbKey {
    File(String),
    Private { conn: u64, schema: String },
}

impl DbKey {
    pub fn of(conn: Conn, state: &ConnState, schema: &str) -> DbKey {
        match conn.db_filename(schema) {
            Some(file) if !file.is_empty() => DbKey::File(file),
            _ => DbKey::Private {
                conn: state.id,
                schema: schema.to_ascii_lowercase(),
            },
        }
    }
}

/// An exact index over a plain table's `id` and `embedding` columns.
pub struct TableIndex {
    pub index: Index,
    /// The id of each FAISS label (labels are positions in rowid order).
    pub ids: Vec<IdValue>,
    fingerprint: u64,
    generation: u64,
}

impl TableIndex {
    fn build(rows: Rows) -> Result<TableIndex> {
        let mut index = Index::new("Flat", rows.dim.max(1), Metric::L2)?;
        index.add(&rows.vectors)?;
        Ok(TableIndex {
            index,
            ids: rows.ids,
            fingerprint: rows.fingerprint,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// False for a table with no vectors yet: any query vector is acceptable, nothing matches.
    pub fn has_vectors(&self) -> bool {
        !self.ids.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TableKey {
    db: DbKey,
    table: String,
}

/// Counters shown by `vekter_debug()`, so tests and users can see what the registry did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Indexes built from a table's rows.
    pub builds: AtomicU64,
    /// Reads of a table to check whether it changed.
    pub checks: AtomicU64,
}

/// The current index of one table, swapped whole when the table changes: searches hold
/// their own `Arc`, so a refresh never waits for them nor they for it.
type Slot = Arc<RwLock<Option<Arc<TableIndex>>>>;

#[derive(Default)]
pub struct Registry {
    tables: Mutex<HashMap<TableKey, Slot>>,
    pub stats: Stats,
}

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
static REGISTRY: Lazy<Registry> = Lazy::new(Registry::default);

pub fn registry() -> &'static Registry {
    &REGISTRY
}

/// What one connection last verified about one index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    data_version: u32,
    total_changes: i64,
    generation: u64,
}

/// Per-connection state, owned by the functions registered on that connection and dropped
/// when the connection closes.
pub struct ConnState {
    id: u64,
    stamps: Mutex<HashMap<TableKey, Stamp>>,
}

impl ConnState {
    pub fn new() -> ConnState {
        ConnState {
            id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            stamps: Mutex::default(),
        }
    }
}

impl Default for ConnState {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ConnState {
    /// A closing connection takes its in-memory databases' indexes with it.
    fn drop(&mut self) {
        let id = self.id;
        if let Ok(mut tables) = REGISTRY.tables.lock() {
            tables.retain(|key, _| !matches!(&key.db, DbKey::Private { conn, .. } if *conn == id));
        }
    }
}

impl Registry {
    /// The exact index over `schema.table`'s `id`/`embedding`, current for what `conn` sees.
    pub fn table_index(
        &self,
        conn: Conn,
        state: &ConnState,
        schema: &str,
        table: &str,
    ) -> Result<Arc<TableIndex>> {
        let key = TableKey {
            db: DbKey::of(conn, state, schema),
            table: table.to_ascii_lowercase(),
        };
        let slot = self
            .tables
            .lock()
            .expect("registry lock")
            .entry(key.clone())
            .or_default()
            .clone();
        let current = slot.read().expect("index lock").clone();
        let seen = conn.data_version(schema).map(|data_version| Stamp {
            data_version,
            total_changes: conn.total_changes(),
            generation: current.as_ref().map_or(0, |c| c.generation),
        });
        let stamps = || state.stamps.lock().expect("stamps lock");
        if let (Some(current), Some(seen)) = (&current, seen) {
            if stamps().get(&key) == Some(&seen) {
                return Ok(current.clone());
            }
        }

        self.stats.checks.fetch_add(1, Ordering::Relaxed);
        let rows = read_rows(conn, schema, table)?;
        let index = match current {
            Some(current) if current.fingerprint == rows.fingerprint => current,
            _ => {
                self.stats.builds.fetch_add(1, Ordering::Relaxed);
                let fresh = Arc::new(TableIndex::build(rows)?);
                // Uncommitted rows stay private to this connection's transaction.
                if conn.autocommit() {
                    *slot.write().expect("index lock") = Some(fresh.clone());
                }
                fresh
            }
        };
        // Inside a transaction a later ROLLBACK would not change the stamp: verify every time.
        if let (true, Some(seen)) = (conn.autocommit(), seen) {
            let stamp = Stamp {
                generation: index.generation,
                ..seen
            };
            stamps().insert(key, stamp);
        }
        Ok(index)
    }

    /// Number of table indexes held.
    pub fn table_count(&self) -> usize {
        self.tables.lock().map(|t| t.len()).unwrap_or(0)
    }
}
