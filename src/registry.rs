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
use crate::live::{lock, LiveSlot, LiveTable, Meta, Overlay, StateRef, SyncReport};
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

/// One index of the registry: a plain table's exact index or a `faiss` table's live index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IndexKey {
    pub db: DbKey,
    /// Lower-cased table name (SQLite names are case-insensitive).
    pub name: String,
    pub live: bool,
}

impl IndexKey {
    fn new(db: DbKey, name: &str, live: bool) -> IndexKey {
        IndexKey {
            db,
            name: name.to_ascii_lowercase(),
            live,
        }
    }
}

/// The registry entry of a `faiss` table.
#[derive(Default)]
pub struct LiveEntry {
    pub slot: LiveSlot,
    /// What it indexes, as last seen (for `faiss_indexes`).
    pub meta: Mutex<Option<Meta>>,
    /// Snapshot loads in this process (a reopen loads once; no retraining, no rebuild).
    pub loads: AtomicU64,
    /// Content rows applied from the change log.
    pub applied: AtomicU64,
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
    tables: Mutex<HashMap<IndexKey, Slot>>,
    live: Mutex<HashMap<IndexKey, Arc<LiveEntry>>>,
    pub stats: Stats,
}

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
static REGISTRY: Lazy<Registry> = Lazy::new(Registry::default);

pub fn registry() -> &'static Registry {
    &REGISTRY
}

/// What one connection last verified about one index.
impl LiveTable {
    /// The `k` nearest rows for `query` as `(rowid, id, score)`, nearest first.
    pub fn nearest(
        &self,
        state: &ConnState,
        query: &crate::live::Query,
    ) -> Result<Vec<(i64, IdValue, f32)>> {
        // Rows the content table no longer has (deleted where no trigger saw it, e.g. by
        // INSERT OR REPLACE on another UNIQUE column) are dropped and more are fetched.
        let mut extra = 0;
        let mut exclusive = query.exclusive();
        loop {
            let wanted = crate::live::Query {
                k: query.k + extra,
                ..*query
            };
            let found = registry().with_live(state, self, exclusive, |s, overlay| {
                self.search(s, overlay, &wanted)
            })?;
            let Some(hits) = found else {
                exclusive = true;
                continue;
            };
            let exhausted = hits.len() < wanted.k;
            let rowids: Vec<i64> = hits.iter().map(|h| h.0).collect();
            let ids = self.ids_of(&rowids)?;
            let missing = ids.iter().filter(|id| id.is_none()).count();
            let rows: Vec<(i64, IdValue, f32)> = hits
                .into_iter()
                .zip(ids)
                .filter_map(|((rowid, score), id)| Some((rowid, id?, score)))
                .take(query.k)
                .collect();
            if missing == 0 || rows.len() >= query.k || exhausted || extra > 4096 {
                return Ok(rows);
            }
            extra = (extra * 2).max(missing * 2);
        }
    }
}

/// The index `faiss_search` uses for a table name.
#[derive(Clone)]
pub enum Resolved {
    /// A plain table: its exact index.
    Plain,
    /// A `faiss` table (named or over the table) and what it indexes.
    Live { name: String, meta: Box<Meta> },
}

/// One row of `faiss_indexes`.
pub struct Listed {
    pub key: IndexKey,
    /// `None` for a plain table's exact index.
    pub meta: Option<Meta>,
    pub dim: usize,
    pub ntotal: usize,
    pub bytes: usize,
    pub pending: i64,
    pub dead: usize,
    pub loads: u64,
}

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
    /// What `faiss_search(db, table, …)` resolved `table` to, with the schema cookie it was
    /// resolved under: valid until the schema changes.
    pub resolved: Mutex<HashMap<(String, String), (i64, Resolved)>>,
    /// Keyed by index and schema: one file attached twice has two pagers, two data versions.
    stamps: Mutex<HashMap<(IndexKey, String), Stamp>>,
}

impl ConnState {
    pub fn new() -> ConnState {
        ConnState {
            id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            resolved: Mutex::default(),
            stamps: Mutex::default(),
        }
    }
}

impl ConnState {
    /// This connection's process-unique number.
    pub fn id(&self) -> u64 {
        self.id
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
        let mine = |key: &IndexKey| matches!(&key.db, DbKey::Private { conn, .. } if *conn == id);
        if let Ok(mut tables) = REGISTRY.tables.lock() {
            tables.retain(|key, _| !mine(key));
        }
        if let Ok(mut live) = REGISTRY.live.lock() {
            live.retain(|key, _| !mine(key));
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
        // One read snapshot for the checks, the read of the table and the search after it.
        let _held = conn.hold_read(schema)?;
        let key = (
            IndexKey::new(DbKey::of(conn, state, schema), table, false),
            schema.to_string(),
        );
        let slot = self
            .tables
            .lock()
            .expect("registry lock")
            .entry(key.0.clone())
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

    /// The entry of `faiss` table `table`, created empty on first use.
    pub fn live_entry(&self, state: &ConnState, table: &LiveTable) -> (IndexKey, Arc<LiveEntry>) {
        let key = IndexKey::new(
            DbKey::of(table.conn, state, &table.schema),
            &table.name,
            true,
        );
        let entry = self
            .live
            .lock()
            .expect("registry lock")
            .entry(key.clone())
            .or_default()
            .clone();
        (key, entry)
    }

    /// Publish a freshly built state (creation, rebuild) for `table`.
    pub fn publish(&self, state: &ConnState, table: &LiveTable, built: crate::live::LiveState) {
        let (_, entry) = self.live_entry(state, table);
        *entry.meta.lock().expect("meta lock") = Some(table.meta.clone());
        *entry.slot.write().expect("index lock") = Some(built);
    }

    /// Forget `faiss` table `name` (DROP TABLE, RENAME).
    pub fn forget(&self, state: &ConnState, conn: Conn, schema: &str, name: &str) {
        let key = IndexKey::new(DbKey::of(conn, state, schema), name, true);
        self.live.lock().expect("registry lock").remove(&key);
    }

    /// Run `f` on `table`'s index, current for what this connection sees: as it is when
    /// nothing changed since this connection last looked (no SQL at all), else after
    /// applying the change log (see `LiveTable::sync`).
    pub fn with_live<R>(
        &self,
        state: &ConnState,
        table: &LiveTable,
        exclusive: bool,
        f: impl FnOnce(&mut StateRef, &Overlay) -> Result<R>,
    ) -> Result<R> {
        let conn = table.conn;
        // One read snapshot for config, change log, content reads and the search.
        let _held = conn.hold_read(&table.schema)?;
        let (key, entry) = self.live_entry(state, table);
        let key = (key, table.schema.clone());
        let seen = conn.data_version(&table.schema).map(|data_version| Stamp {
            data_version,
            total_changes: conn.total_changes(),
            generation: 0,
        });
        let stamps = || state.stamps.lock().expect("stamps lock");
        if let Some(seen) = seen {
            let current = entry
                .slot
                .read()
                .expect("index lock")
                .as_ref()
                .map(|s| s.generation);
            if let (Some(generation), Some(stamp)) = (current, stamps().get(&key).copied()) {
                if stamp == (Stamp { generation, ..seen }) {
                    let mut guard = lock(&entry.slot, exclusive);
                    if guard.get().generation == generation {
                        return f(&mut guard, &Overlay::default());
                    }
                }
            }
        }
        let mut report = SyncReport::default();
        let (mut guard, overlay) = table.sync(&entry.slot, exclusive, &mut report)?;
        if report.loaded {
            entry.loads.fetch_add(1, Ordering::Relaxed);
            *entry.meta.lock().expect("meta lock") = Some(table.meta.clone());
        }
        entry
            .applied
            .fetch_add(report.applied as u64, Ordering::Relaxed);
        let shared = !matches!(guard, StateRef::Own(_));
        if let (true, true, Some(seen)) = (shared, conn.autocommit(), seen) {
            let generation = guard.get().generation;
            stamps().insert(key, Stamp { generation, ..seen });
        }
        f(&mut guard, &overlay)
    }

    /// Every index this process holds, for `faiss_indexes`.
    pub fn list(&self) -> Vec<Listed> {
        let mut out = Vec::new();
        for (key, slot) in self.tables.lock().expect("registry lock").iter() {
            if let Some(t) = slot.read().expect("index lock").as_ref() {
                out.push(Listed {
                    key: key.clone(),
                    meta: None,
                    dim: t.index.dim(),
                    ntotal: t.ids.len(),
                    bytes: t.index.dim() * 4 * t.ids.len() + t.ids.len() * 16,
                    pending: 0,
                    dead: 0,
                    loads: 0,
                });
            }
        }
        for (key, entry) in self.live.lock().expect("registry lock").iter() {
            let guard = entry.slot.read().expect("index lock");
            let Some(s) = guard.as_ref() else { continue };
            out.push(Listed {
                key: key.clone(),
                meta: entry.meta.lock().expect("meta lock").clone(),
                dim: s.index.dim(),
                ntotal: s.live_count(),
                bytes: s.memory_bytes(),
                pending: s
                    .applied_seq
                    .saturating_sub(s.snapshot_seq.load(Ordering::Relaxed)),
                dead: s.dead_count(),
                loads: entry.loads.load(Ordering::Relaxed),
            });
        }
        out
    }

    /// Number of table indexes held.
    pub fn table_count(&self) -> usize {
        self.tables.lock().map(|t| t.len()).unwrap_or(0)
    }
}
