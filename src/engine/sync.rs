//! Before a search: bring the shared state up to what this connection sees (ARCHITECTURE.md,
//! "Sync protocol"). [`decide`] is the pure decision, driven by a table of cases in the tests;
//! [`with_current`] runs it.

use std::collections::HashSet;

use crate::error::{bail, Error, Kind, Result};
use crate::locks;
use crate::registry::{ConnState, Seen};
use crate::sqlite::quote_ident;

use super::changelog::ChangeSet;
use super::config::{Config, SnapshotMark};
use super::key::{KeyPart, KeyShape, RowKey};
use super::persist;
use super::shadow::ShadowTable;
use super::shared::{self, LiveEntry, StateRef};
use super::state::LiveState;
use super::LiveTable;

/// What this connection sees of the stored state: the snapshot `config` names and the end of
/// the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Visible {
    pub(crate) mark: SnapshotMark,
    pub(crate) max_seq: i64,
}

/// Where the shared in-memory state stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held<'a> {
    pub(crate) build_id: &'a str,
    pub(crate) lineage: i64,
    pub(crate) applied_seq: i64,
    /// False when its rowids must be checked against the table first (a `rowid-unstable`
    /// table after a schema change, see `key`).
    pub(crate) verified: bool,
}

impl<'a> Held<'a> {
    /// `state`'s position; `cookie`: the schema cookie its rowids must have been checked at.
    pub(crate) fn of(state: &'a LiveState, cookie: Option<i64>) -> Held<'a> {
        Held {
            build_id: &state.build_id,
            lineage: state.lineage,
            applied_seq: state.applied_seq,
            verified: cookie.is_none_or(|c| c == state.verified_cookie),
        }
    }
}

/// What must happen before this connection searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The shared state is exactly what this connection sees: search it.
    Search,
    /// Log entries after `after` are missing from the shared state: apply them to it.
    Apply { after: i64 },
    /// The shared state is missing, from another lineage, or older than the stored snapshot:
    /// load the snapshot, replay the log, and publish the result.
    Load,
    /// This connection sees its own uncommitted log entries after `after`: search the shared
    /// state without those rows, and the rows exactly from their current vectors.
    Overlay { after: i64 },
    /// This connection must not share what it sees (it reads an older database snapshot than the
    /// shared state shows, or a reload would take in its uncommitted writes): load a private
    /// copy for this query only.
    Private,
    /// The shared state is current, but its rowids must be checked against the table (and
    /// refilled if VACUUM renumbered them) before it is searched.
    Verify,
}

/// The step for a connection that sees `visible` (and holds a write transaction when
/// `in_write`) when the shared state is `held`.
pub(crate) fn decide(visible: &Visible, held: Option<Held>, in_write: bool) -> Step {
    let mark = &visible.mark;
    // Uncommitted rows (`in_write`) must never reach the shared state.
    match held {
        None if in_write => Step::Private,
        None => Step::Load,
        Some(h) if h.build_id == mark.build_id => match h.applied_seq {
            a if a < mark.seq && in_write => Step::Private,
            a if a < mark.seq => Step::Load,
            a if a > visible.max_seq => Step::Private,
            // Rowids VACUUM may have renumbered: an overlay on top would mix old and new ones.
            _ if !h.verified && in_write => Step::Private,
            a if a == visible.max_seq && !h.verified => Step::Verify,
            a if a == visible.max_seq => Step::Search,
            after if in_write => Step::Overlay { after },
            after => Step::Apply { after },
        },
        // Another lineage: a newer one in memory means this connection reads an older snapshot.
        Some(h) if h.lineage > mark.lineage || in_write => Step::Private,
        Some(_) => Step::Load,
    }
}

/// True when a freshly loaded state should replace the shared one (another thread may have
/// published a newer one meanwhile).
pub(crate) fn replaces(fresh: Held, current: Option<Held>) -> bool {
    current.is_none_or(|c| {
        if c.build_id == fresh.build_id {
            c.applied_seq < fresh.applied_seq
        } else {
            c.lineage <= fresh.lineage
        }
    })
}

/// Rows changed by this connection's open write transaction: searched exactly, and hidden in
/// the shared index.
#[derive(Default)]
pub(crate) struct Overlay {
    /// Handles of every changed row.
    pub(crate) changed: HashSet<i64>,
    /// The changed rows that are in the index now, with their vectors.
    pub(crate) rows: Vec<OverlayRow>,
}

/// A row of the overlay.
pub(crate) struct OverlayRow {
    pub(crate) handle: i64,
    pub(crate) key: Option<RowKey>,
    pub(crate) part: Option<KeyPart>,
    pub(crate) vector: Vec<f32>,
}

impl Overlay {
    fn extend(&mut self, changes: &ChangeSet, dim: usize) {
        self.rows.extend(
            changes
                .rows_with_vectors(dim)
                .map(|(row, vector)| OverlayRow {
                    handle: row.handle,
                    key: row.key.clone(),
                    part: row.part.clone(),
                    vector: vector.to_vec(),
                }),
        );
        let gone = changes.gone.iter().map(|(handle, _)| *handle);
        self.changed
            .extend(changes.rows.iter().map(|r| r.handle).chain(gone));
    }

    /// The key of a row the overlay holds.
    pub(crate) fn key(&self, handle: i64) -> Option<&RowKey> {
        self.rows
            .iter()
            .find(|r| r.handle == handle)
            .and_then(|r| r.key.as_ref())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }
}

/// Run `f` on `table`'s index, current for what this connection sees: as it is when nothing
/// changed since this connection last looked (no SQL at all), else after [`sync`]. The state is
/// held exclusively when `exclusive` (per-query FAISS parameters).
pub(crate) fn with_current<R>(
    table: &LiveTable,
    state: &ConnState,
    exclusive: bool,
    f: impl FnOnce(&mut StateRef, &Overlay) -> Result<R>,
) -> Result<R> {
    let conn = table.conn();
    // One read snapshot for config, change log, content reads and the search.
    let _held = conn.hold_read(table.schema())?;
    let (key, entry) = shared::entry(state, table);
    let seen = Seen::now(conn, table.schema());
    if let Some(seen) = seen {
        let current = locks::read(&entry.slot).as_ref().map(|s| s.generation);
        if let Some(generation) = current {
            if state.is_current(&key, table.schema(), seen, generation) {
                if let Some(mut guard) = shared::lock(&entry.slot, exclusive) {
                    if guard.get().generation == generation {
                        return f(&mut guard, &Overlay::default());
                    }
                }
            }
        }
    }
    let (mut guard, overlay) = sync(table, &entry, exclusive)?;
    if let (true, Some(seen)) = (guard.is_shared(), seen) {
        let generation = guard.get().generation;
        state.record(conn, key, table.schema(), seen, generation);
    }
    f(&mut guard, &overlay)
}

/// Bring `entry`'s shared state up to date with what this connection sees and return the
/// state to search, plus rows only this connection sees.
fn sync<'a>(
    table: &LiveTable,
    entry: &'a LiveEntry,
    exclusive: bool,
) -> Result<(StateRef<'a>, Overlay)> {
    let config = Config::read(table.shadow())?;
    let visible = Visible {
        mark: config.mark()?,
        max_seq: table.log().max_seq()?,
    };
    // The log never empties (`ChangeLog::truncate`): an end below the snapshot's mark means SQL
    // deleted from it, and writes logged since are numbered below the mark, where no sync would
    // ever read them. Searching on would answer from stale rows without end.
    if visible.max_seq < visible.mark.seq {
        return Err(Error::of(
            Kind::Corrupt,
            format!(
                "the change log {} was emptied (by SQL, or by the optimize of a vekter older \
                 than 0.1.0 of 2026-12-02): it ends at {}, before the stored index's {}, so \
                 writes since are not known; rebuild the index: INSERT INTO {}({}) VALUES \
                 ('rebuild')",
                quote_ident(&table.shadow().table_name(ShadowTable::Changes)),
                visible.max_seq,
                visible.mark.seq,
                quote_ident(table.name()),
                quote_ident(table.name())
            ),
        )
        .naming_table());
    }
    let in_write = table.conn().in_write_transaction(table.schema());
    // Tables whose rowids VACUUM may renumber are checked after every schema change.
    let cookie = match table.meta().key {
        KeyShape::UnstableRowid => Some(table.conn().schema_version(table.schema(), None)?),
        _ => None,
    };
    // Another connection may change the shared state between the decision and the lock: decide
    // again, a few times.
    for _ in 0..4 {
        let step = decide(
            &visible,
            locks::read(&entry.slot)
                .as_ref()
                .map(|s| Held::of(s, cookie)),
            in_write,
        );
        match step {
            Step::Search => {
                if let Some(guard) = shared::lock(&entry.slot, exclusive) {
                    return Ok((guard, Overlay::default()));
                }
            }
            Step::Private => {
                let own = persist::load(table)?;
                entry.loaded(table.meta());
                return Ok((StateRef::Own(Box::new(own)), Overlay::default()));
            }
            Step::Overlay { after } => {
                let mut overlay = Overlay::default();
                let dim = table.meta().dim;
                let span = (after, visible.max_seq);
                table
                    .log()
                    .changes(table.meta(), span, (usize::MAX, usize::MAX), |set| {
                        overlay.extend(set, dim);
                        Ok(())
                    })?;
                if let Some(guard) = shared::lock(&entry.slot, exclusive) {
                    return Ok((guard, overlay));
                }
            }
            Step::Load => {
                let fresh = persist::load(table)?;
                entry.loaded(table.meta());
                let mut guard = locks::write(&entry.slot);
                if replaces(
                    Held::of(&fresh, None),
                    guard.as_ref().map(|s| Held::of(s, None)),
                ) {
                    *guard = Some(fresh);
                }
            }
            Step::Verify => {
                let mut guard = locks::write(&entry.slot);
                if let Some(s) = guard.as_mut() {
                    if s.build_id == visible.mark.build_id && s.applied_seq == visible.max_seq {
                        if let Err(e) = persist::verify_rowids(table, s) {
                            *guard = None;
                            return Err(e);
                        }
                    }
                }
            }
            Step::Apply { after } => {
                // Read and applied under the write lock, in batches: a connection that finds it
                // taken waits for this catch-up rather than reading the same rows again.
                let mut guard = locks::write(&entry.slot);
                if let Some(s) = guard.as_mut() {
                    if s.build_id == visible.mark.build_id && s.applied_seq == after {
                        let before = s.generation;
                        if let Err(e) = s.catch_up(&table.log(), table.meta(), visible.max_seq) {
                            // It may have stopped half-way: reload rather than trust it. One
                            // that stopped before applying anything (an interrupt, BUSY while
                            // reading) left it as it was: every other connection keeps it.
                            if s.generation != before {
                                *guard = None;
                            }
                            return Err(e);
                        }
                    }
                }
            }
        }
    }
    bail!("the index kept changing during the search")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible(build_id: &str, lineage: i64, seq: i64, max_seq: i64) -> Visible {
        Visible {
            mark: SnapshotMark {
                seq,
                build_id: build_id.to_string(),
                lineage,
                verified_cookie: -1,
            },
            max_seq,
        }
    }

    fn held(build_id: &str, lineage: i64, applied_seq: i64) -> Option<Held<'_>> {
        Some(Held {
            build_id,
            lineage,
            applied_seq,
            verified: true,
        })
    }

    fn unverified(build_id: &str, lineage: i64, applied_seq: i64) -> Option<Held<'_>> {
        held(build_id, lineage, applied_seq).map(|h| Held {
            verified: false,
            ..h
        })
    }

    #[test]
    fn the_sync_decision() {
        use Step::*;
        // (case, what the connection sees, the shared state, in a write transaction, step)
        let cases = [
            ("nothing loaded", visible("a", 1, 0, 5), None, false, Load),
            (
                "nothing loaded, own writes",
                visible("a", 1, 0, 5),
                None,
                true,
                Private,
            ),
            (
                "current",
                visible("a", 1, 0, 5),
                held("a", 1, 5),
                false,
                Search,
            ),
            (
                "current, in a write txn",
                visible("a", 1, 0, 5),
                held("a", 1, 5),
                true,
                Search,
            ),
            (
                "log entries to apply",
                visible("a", 1, 0, 9),
                held("a", 1, 5),
                false,
                Apply { after: 5 },
            ),
            (
                "own uncommitted entries",
                visible("a", 1, 0, 9),
                held("a", 1, 5),
                true,
                Overlay { after: 5 },
            ),
            (
                "snapshot folded entries not applied",
                visible("a", 1, 7, 9),
                held("a", 1, 5),
                false,
                Load,
            ),
            (
                "same, in a write txn",
                visible("a", 1, 7, 9),
                held("a", 1, 5),
                true,
                Private,
            ),
            (
                "reader behind the shared state",
                visible("a", 1, 0, 4),
                held("a", 1, 5),
                false,
                Private,
            ),
            (
                "another process rebuilt",
                visible("b", 2, 0, 0),
                held("a", 1, 5),
                false,
                Load,
            ),
            (
                "reader behind a rebuild",
                visible("a", 1, 0, 5),
                held("b", 2, 0),
                false,
                Private,
            ),
            (
                "a rebuild, in a write txn",
                visible("b", 2, 0, 0),
                held("a", 1, 5),
                true,
                Private,
            ),
            (
                "rowids to check",
                visible("a", 1, 0, 5),
                unverified("a", 1, 5),
                false,
                Verify,
            ),
            (
                "rowids to check, in a write txn",
                visible("a", 1, 0, 5),
                unverified("a", 1, 5),
                true,
                Private,
            ),
            (
                "entries first",
                visible("a", 1, 0, 9),
                unverified("a", 1, 5),
                false,
                Apply { after: 5 },
            ),
            (
                "own entries on rowids to check",
                visible("a", 1, 0, 9),
                unverified("a", 1, 5),
                true,
                Private,
            ),
        ];
        for (case, seen, shared, in_write, want) in cases {
            assert_eq!(decide(&seen, shared, in_write), want, "{case}");
        }
    }

    #[test]
    fn a_loaded_state_replaces_only_an_older_one() {
        let fresh = held("a", 1, 5).unwrap();
        assert!(replaces(fresh, None));
        assert!(replaces(fresh, held("a", 1, 4)));
        assert!(
            !replaces(fresh, held("a", 1, 5)),
            "same position: keep the one in use"
        );
        assert!(!replaces(fresh, held("a", 1, 6)));
        assert!(replaces(fresh, held("z", 0, 99)), "an older lineage");
        assert!(!replaces(fresh, held("z", 2, 0)), "a newer lineage");
    }
}
