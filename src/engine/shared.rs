//! The shared in-memory index of each `faiss` table: one entry per (database file, table) per
//! process, used by every connection and thread behind a read-write lock, and listed by
//! `faiss_indexes`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use once_cell::sync::Lazy;

use crate::locks;
use crate::registry::{ConnState, DbKey, IndexKey, IndexKind, Registry};
use crate::sqlite::Conn;

use super::config::Meta;
use super::state::LiveState;
use super::LiveTable;

/// The registry entry of a `faiss` table.
#[derive(Default)]
pub(crate) struct LiveEntry {
    /// The shared state; `None` until loaded (and after a panic while it was being changed).
    pub(crate) slot: RwLock<Option<LiveState>>,
    /// What it indexes, as last seen (for `faiss_indexes`).
    meta: Mutex<Option<Meta>>,
    /// Snapshot loads in this process (a reopen loads once; no retraining, no rebuild).
    loads: AtomicU64,
}

impl LiveEntry {
    /// Count a load of the stored snapshot for `meta`'s table.
    pub(crate) fn loaded(&self, meta: &Meta) {
        self.loads.fetch_add(1, Ordering::Relaxed);
        *locks::lock(&self.meta) = Some(meta.clone());
    }
}

static ENTRIES: Lazy<Registry<LiveEntry>> = Lazy::new(Registry::default);

fn key(conn: Conn, state: &ConnState, schema: &str, name: &str) -> IndexKey {
    IndexKey::new(DbKey::of(conn, state, schema), name, IndexKind::Faiss)
}

/// The entry of `table`, created empty on first use.
pub(crate) fn entry(state: &ConnState, table: &LiveTable) -> (IndexKey, Arc<LiveEntry>) {
    let key = key(table.conn(), state, table.schema(), table.name());
    let entry = ENTRIES.entry(&key, state);
    (key, entry)
}

/// Publish a freshly built state (creation, rebuild, compaction) for `table`.
pub(crate) fn publish(state: &ConnState, table: &LiveTable, built: LiveState) {
    let (_, entry) = entry(state, table);
    *locks::lock(&entry.meta) = Some(table.meta().clone());
    *locks::write(&entry.slot) = Some(built);
}

/// Forget `faiss` table `name` (DROP TABLE, RENAME).
pub(crate) fn forget(state: &ConnState, conn: Conn, schema: &str, name: &str) {
    ENTRIES.remove(&key(conn, state, schema, name));
}

/// The state a search runs on.
pub(crate) enum StateRef<'a> {
    Shared(RwLockReadGuard<'a, Option<LiveState>>),
    Exclusive(RwLockWriteGuard<'a, Option<LiveState>>),
    /// A private copy (this connection sees the database differently from the shared state).
    Own(Box<LiveState>),
}

impl StateRef<'_> {
    pub(crate) fn get(&self) -> &LiveState {
        match self {
            StateRef::Shared(g) => g.as_ref().expect("locked only when loaded"),
            StateRef::Exclusive(g) => g.as_ref().expect("locked only when loaded"),
            StateRef::Own(s) => s,
        }
    }

    /// The state for changes: `None` when it is only shared for reading.
    pub(crate) fn get_mut(&mut self) -> Option<&mut LiveState> {
        match self {
            StateRef::Shared(_) => None,
            StateRef::Exclusive(g) => g.as_mut(),
            StateRef::Own(s) => Some(s),
        }
    }

    pub(crate) fn is_shared(&self) -> bool {
        !matches!(self, StateRef::Own(_))
    }
}

/// The shared state, for reading or (per-query parameters) exclusively; `None` when there is
/// none loaded.
pub(crate) fn lock(slot: &RwLock<Option<LiveState>>, exclusive: bool) -> Option<StateRef<'_>> {
    if exclusive {
        let guard = locks::write(slot);
        guard.is_some().then_some(StateRef::Exclusive(guard))
    } else {
        let guard = locks::read(slot);
        guard.is_some().then_some(StateRef::Shared(guard))
    }
}

/// One row of `faiss_indexes` for a `faiss` table.
pub(crate) struct Listed {
    pub(crate) key: IndexKey,
    pub(crate) meta: Option<Meta>,
    pub(crate) dim: usize,
    pub(crate) ntotal: usize,
    pub(crate) bytes: usize,
    pub(crate) pending: i64,
    pub(crate) dead: usize,
    pub(crate) loads: u64,
    /// Why the stored snapshot was refused, when the index was rebuilt in its place.
    pub(crate) refused: Option<String>,
}

/// Every `faiss` table index this process holds.
pub(crate) fn list() -> Vec<Listed> {
    ENTRIES
        .entries()
        .into_iter()
        .filter_map(|(key, entry)| {
            // A slot being changed (a catch-up, a load) is skipped rather than waited for: its
            // work is listed as a task (`progress`).
            let guard = locks::try_read(&entry.slot)?;
            let s = guard.as_ref()?;
            Some(Listed {
                key,
                meta: locks::lock(&entry.meta).clone(),
                dim: s.dim(),
                ntotal: s.live_count(),
                bytes: s.memory_bytes(),
                pending: s.applied_seq.saturating_sub(s.snapshot_seq()),
                dead: s.dead_count(),
                loads: entry.loads.load(Ordering::Relaxed),
                refused: s.refused(),
            })
        })
        .collect()
}
