//! Exact indexes over plain tables (the datasette-faiss path of `faiss_search`, SPEC §3): a
//! table with `id` and `embedding` columns gets a Flat index on first use, shared by every
//! connection of the process and rebuilt only when the table's rows changed.
//!
//! Freshness without triggers: when a connection's stamp (`registry`) says nothing changed, the
//! index is used as it is. Otherwise the table is read again and fingerprinted (a hash of every id
//! and vector exactly as read, in order): an equal fingerprint keeps the index, a different one
//! replaces it.

use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use once_cell::sync::Lazy;

use crate::catalog::{check_table, id_value};
use crate::error::{bail, Result};
use crate::index::{Index, Metric};
use crate::json::IdValue;
use crate::locks;
use crate::registry::{next_generation, ConnState, DbKey, IndexKey, IndexKind, Registry, Seen};
use crate::sqlite::{quote_ident, Cell, Conn};
use crate::vector;

/// An exact index over a plain table's `id` and `embedding` columns.
pub(crate) struct TableIndex {
    pub(crate) index: Index,
    /// The id of each FAISS label (labels are positions in rowid order).
    pub(crate) ids: Vec<IdValue>,
    fingerprint: u64,
    generation: u64,
}

impl TableIndex {
    fn build(rows: Rows, metric: Metric) -> Result<TableIndex> {
        let mut index = Index::new("Flat", rows.dim.max(1), metric)?;
        index.add(&rows.vectors)?;
        Ok(TableIndex {
            index,
            ids: rows.ids,
            fingerprint: rows.fingerprint,
            generation: next_generation(),
        })
    }

    /// False for a table with no vectors yet: any query vector is acceptable, nothing matches.
    pub(crate) fn has_vectors(&self) -> bool {
        !self.ids.is_empty()
    }
}

/// The current index of one table, swapped whole when the table changes: searches hold their
/// own `Arc`, so a refresh never waits for them nor they for it.
type Slot = RwLock<Option<Arc<TableIndex>>>;

static INDEXES: Lazy<Registry<Slot>> = Lazy::new(Registry::default);

/// Counters shown by `vekter_debug()`, so tests and users can see what the plain path did.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Indexes built from a table's rows.
    pub(crate) builds: AtomicU64,
    /// Reads of a table to check whether it changed.
    pub(crate) checks: AtomicU64,
}

pub(crate) static STATS: Stats = Stats {
    builds: AtomicU64::new(0),
    checks: AtomicU64::new(0),
};

/// The exact index over `schema.table`'s `id`/`embedding`, current for what `conn` sees.
pub(crate) fn table_index(
    conn: Conn,
    state: &ConnState,
    (schema, table, view): (&str, &str, bool),
    metric: Metric,
) -> Result<Arc<TableIndex>> {
    // One read snapshot for the checks, the read of the table and the search after it.
    let _held = conn.hold_read(schema)?;
    let key = IndexKey::new(
        DbKey::of(conn, state, schema),
        table,
        IndexKind::Exact(metric),
    );
    let slot = INDEXES.entry(&key, state);
    let current = locks::read(&slot).clone();
    // A view may read any database of the connection (a TEMP view over `main`): a commit to
    // any of them must make it look again.
    let seen = if view {
        Seen::everywhere(conn)
    } else {
        Seen::now(conn, schema)
    };
    if let (Some(current), Some(seen)) = (&current, seen) {
        if state.is_current(&key, schema, seen, current.generation) {
            return Ok(current.clone());
        }
    }

    STATS.checks.fetch_add(1, Ordering::Relaxed);
    let rows = read_rows(conn, schema, table)?;
    let index = match current {
        Some(current) if current.fingerprint == rows.fingerprint => current,
        _ => {
            STATS.builds.fetch_add(1, Ordering::Relaxed);
            let fresh = Arc::new(TableIndex::build(rows, metric)?);
            // Uncommitted rows stay private to this connection's transaction.
            if conn.autocommit() {
                *locks::write(&slot) = Some(fresh.clone());
            }
            fresh
        }
    };
    if let Some(seen) = seen {
        state.record(conn, key, schema, seen, index.generation);
    }
    Ok(index)
}

/// One row of `faiss_indexes` for a plain table's index.
pub(crate) struct Listed {
    pub(crate) key: IndexKey,
    pub(crate) dim: usize,
    pub(crate) ntotal: usize,
    pub(crate) bytes: usize,
}

/// Every plain-table index this process holds.
pub(crate) fn list() -> Vec<Listed> {
    INDEXES
        .entries()
        .into_iter()
        .filter_map(|(key, slot)| {
            let t = locks::read(&slot).clone()?;
            Some(Listed {
                key,
                dim: t.index.dim(),
                ntotal: t.ids.len(),
                bytes: t.index.dim() * 4 * t.ids.len() + t.ids.len() * 16,
            })
        })
        .collect()
}

/// Number of plain-table indexes held.
pub(crate) fn count() -> usize {
    INDEXES.entries().len()
}

/// Every row's id and vector, in rowid order, with a fingerprint of exactly what was read.
#[derive(Debug, Default)]
struct Rows {
    ids: Vec<IdValue>,
    /// Row-major, `ids.len() × dim`.
    vectors: Vec<f32>,
    /// 0 when no row has a vector.
    dim: usize,
    /// Changes whenever an id, a vector, the row order or the set of rows changes.
    fingerprint: u64,
}

/// Read `id` and `embedding` of every row of `schema.table`. Rows whose embedding is NULL
/// have no vector and are skipped.
fn read_rows(conn: Conn, schema: &str, table: &str) -> Result<Rows> {
    check_table(conn, schema, table, &["id", "embedding"])?;
    let base = format!(
        "SELECT \"id\", \"embedding\" FROM {}.{}",
        quote_ident(schema),
        quote_ident(table)
    );
    // Views and WITHOUT ROWID tables have no rowid: their natural order is kept.
    let mut stmt = conn
        .prepare(&format!("{base} ORDER BY rowid"))
        .or_else(|_| conn.prepare(&base))?;
    let mut rows = Rows::default();
    let mut hash = std::hash::DefaultHasher::new();
    let mut row = 0usize;
    while stmt.step()? {
        row += 1;
        let id_cell = stmt.cell(0);
        let vector_cell = stmt.cell(1);
        hash_cell(&mut hash, id_cell);
        hash_cell(&mut hash, vector_cell);
        if vector_cell == Cell::Null {
            continue;
        }
        let where_ = || format!("table '{table}', row {row} (id {})", id_text(id_cell));
        let dim = vector::append(vector_cell, &mut rows.vectors)
            .map_err(|e| e.context(format!("{}: embedding", where_())))?;
        if rows.dim == 0 {
            rows.dim = dim;
        } else if dim != rows.dim {
            bail!(
                "{}: embedding has {dim} dimensions but earlier rows have {}. To search the rows \
                 of one dimension (one model, one collection), index them with a faiss table: \
                 CREATE VIRTUAL TABLE … USING faiss(content = {table}, where = '…'), or use \
                 faiss_agg(id, embedding, :query, k) with a WHERE clause",
                where_(),
                rows.dim
            );
        }
        rows.ids
            .push(id_value(id_cell).map_err(|e| e.context(where_()))?);
    }
    rows.fingerprint = hash.finish();
    Ok(rows)
}

fn hash_cell(hash: &mut impl Hasher, cell: Cell) {
    match cell {
        Cell::Null => hash.write_u8(0),
        Cell::Integer(i) => {
            hash.write_u8(1);
            hash.write_i64(i);
        }
        Cell::Real(x) => {
            hash.write_u8(2);
            hash.write_u64(x.to_bits());
        }
        Cell::Text(b) => {
            hash.write_u8(3);
            hash.write_usize(b.len());
            hash.write(b);
        }
        Cell::Blob(b) => {
            hash.write_u8(4);
            hash.write_usize(b.len());
            hash.write(b);
        }
    }
}

fn id_text(cell: Cell) -> String {
    match cell {
        Cell::Integer(i) => i.to_string(),
        Cell::Real(x) => x.to_string(),
        Cell::Text(b) => format!("'{}'", String::from_utf8_lossy(b)),
        other => other.type_name().to_string(),
    }
}
