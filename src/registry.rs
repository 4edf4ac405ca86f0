//! Process-wide maps of shared indexes, and what each connection last verified about them.
//!
//! An index is shared by every connection and thread of the process that opens the same
//! database file; an in-memory or temporary database's indexes belong to the one connection that
//! has it and go when that connection closes. The maps know nothing of what they hold: the
//! faiss-table engine (`engine::shared`) and the plain-table indexes (`plain`) each keep one.
//!
//! Freshness stamps: a connection remembers, per index, the pager's data version, its own change
//! count and the generation of the index it last checked. When all three are unchanged, nothing
//! can have changed what it sees (no commit by anyone, no write by this connection), and the index
//! is used as it is, with no SQL at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::catalog::database_files;
use crate::index::Metric;
use crate::locks::lock;
use crate::sqlite::Conn;

/// Which database an index belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum DbKey {
    /// A database file: shared by every connection of the process.
    File(String),
    /// An in-memory or temporary database: private to one connection.
    Private { conn: u64, schema: String },
}

impl DbKey {
    pub(crate) fn of(conn: Conn, state: &ConnState, schema: &str) -> DbKey {
        match conn.db_filename(schema) {
            Some(file) if !file.is_empty() => DbKey::File(file),
            _ => DbKey::Private {
                conn: state.id,
                schema: schema.to_ascii_lowercase(),
            },
        }
    }
}

/// What kind of index a key names: two kinds never share a stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum IndexKind {
    /// The exact index `faiss_search` keeps over a plain table, for one metric.
    Exact(Metric),
    /// A `faiss` virtual table's index.
    Faiss,
}

/// One index of a process-wide map.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct IndexKey {
    pub(crate) db: DbKey,
    /// Lower-cased table name (SQLite names are case-insensitive).
    pub(crate) name: String,
    kind: IndexKind,
}

impl IndexKey {
    pub(crate) fn new(db: DbKey, name: &str, kind: IndexKind) -> IndexKey {
        IndexKey {
            db,
            name: name.to_ascii_lowercase(),
            kind,
        }
    }
}

/// A process-wide map from index to its shared entry `V`.
pub(crate) struct Registry<V> {
    map: Mutex<HashMap<IndexKey, Arc<V>>>,
}

impl<V> Default for Registry<V> {
    fn default() -> Self {
        Registry {
            map: Mutex::default(),
        }
    }
}

impl<V: Default + Send + Sync + 'static> Registry<V> {
    /// The entry of `key`, created empty on first use. A private database's entry is removed
    /// when the connection `state` belongs to closes.
    pub(crate) fn entry(&'static self, key: &IndexKey, state: &ConnState) -> Arc<V> {
        let mut map = lock(&self.map);
        if let Some(entry) = map.get(key) {
            return entry.clone();
        }
        let entry = Arc::<V>::default();
        map.insert(key.clone(), entry.clone());
        drop(map);
        if let DbKey::Private { .. } = key.db {
            let owner = (self as *const Self as usize, key.clone());
            let key = key.clone();
            lock(&state.on_close).insert(
                owner,
                Box::new(move || {
                    lock(&self.map).remove(&key);
                }),
            );
        }
        entry
    }

    pub(crate) fn remove(&self, key: &IndexKey) {
        lock(&self.map).remove(key);
    }

    /// Every entry, for listing.
    pub(crate) fn entries(&self) -> Vec<(IndexKey, Arc<V>)> {
        lock(&self.map)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A number no index state of this process has had: every new or changed state takes one, so a
/// stamp names exactly one state.
pub(crate) fn next_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// What a connection observes before using an index: the pager's data version and its own
/// change count (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    data_version: u32,
    total_changes: i64,
}

impl Seen {
    /// `None` when the data version cannot be read: then nothing is ever taken as unchanged.
    pub(crate) fn now(conn: Conn, schema: &str) -> Option<Seen> {
        conn.data_version(schema).map(|data_version| Seen {
            data_version,
            total_changes: conn.total_changes(),
        })
    }

    /// The same over every database of the connection, for what may read any of them (a view,
    /// a TEMP view over `main`): a commit to any one changes it.
    pub(crate) fn everywhere(conn: Conn) -> Option<Seen> {
        let mut data_version = 0u32;
        for (schema, _) in database_files(conn).ok()? {
            let v = conn.data_version(&schema)?;
            data_version = data_version.rotate_left(7) ^ v.wrapping_mul(0x9E37_79B9);
        }
        Some(Seen {
            data_version,
            total_changes: conn.total_changes(),
        })
    }
}

type CloseHook = Box<dyn FnOnce() + Send>;

/// Per-connection state, owned by the functions and modules registered on that connection and
/// dropped when it closes.
pub(crate) struct ConnState {
    id: u64,
    /// Keyed by index and schema: one file attached twice has two pagers, two data versions.
    stamps: Mutex<HashMap<(IndexKey, String), (Seen, u64)>>,
    /// Removes this connection's private entries from the maps that hold them.
    on_close: Mutex<HashMap<(usize, IndexKey), CloseHook>>,
}

impl ConnState {
    pub(crate) fn new() -> ConnState {
        ConnState {
            id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            stamps: Mutex::default(),
            on_close: Mutex::default(),
        }
    }

    /// This connection's process-unique number.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// True when this connection verified generation `generation` of `key` in `schema` and has
    /// seen nothing change since.
    pub(crate) fn is_current(
        &self,
        key: &IndexKey,
        schema: &str,
        seen: Seen,
        generation: u64,
    ) -> bool {
        lock(&self.stamps).get(&(key.clone(), schema.to_string())) == Some(&(seen, generation))
    }

    /// Remember that what this connection sees (`seen`) matches generation `generation`. Only
    /// in autocommit mode: inside a transaction a later ROLLBACK would not change the stamp.
    pub(crate) fn record(
        &self,
        conn: Conn,
        key: IndexKey,
        schema: &str,
        seen: Seen,
        generation: u64,
    ) {
        if conn.autocommit() {
            lock(&self.stamps).insert((key, schema.to_string()), (seen, generation));
        }
    }
}

impl Drop for ConnState {
    /// A closing connection takes its in-memory databases' indexes with it.
    fn drop(&mut self) {
        let hooks: Vec<CloseHook> = lock(&self.on_close).drain().map(|(_, h)| h).collect();
        for hook in hooks {
            hook();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_entries_go_with_their_connection() {
        static MAP: once_cell::sync::Lazy<Registry<u32>> =
            once_cell::sync::Lazy::new(Registry::default);
        let state = ConnState::new();
        let private = IndexKey::new(
            DbKey::Private {
                conn: state.id(),
                schema: "main".into(),
            },
            "Docs",
            IndexKind::Faiss,
        );
        let shared = IndexKey::new(DbKey::File("/x.db".into()), "docs", IndexKind::Faiss);
        let a = MAP.entry(&private, &state);
        assert!(
            Arc::ptr_eq(&a, &MAP.entry(&private, &state)),
            "one entry per key"
        );
        MAP.entry(&shared, &state);
        assert_eq!(MAP.entries().len(), 2);
        drop(state);
        let keys: Vec<IndexKey> = MAP.entries().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![shared]);
    }
}
