//! Saving a state as the stored snapshot, and loading it back with the change log replayed.
//!
//! A save is three writes in the statement's transaction: the chunks, the config entries that
//! describe them, and the truncation of the log entries they fold in. They happen whole or not
//! at all (SQLite's statement journal for CREATE; `atomic` for the commands; checked at each
//! step by `tests/failpoints.rs`); the in-memory state learns its new position only when all
//! three succeeded.

use crate::error::{bail, Kind, Result};
use crate::failpoint::failpoint;

use super::builder;
use super::config::{Config, SnapshotMark};
use super::key::KeyShape;
use super::params;
use super::snapshot::{self, chunks};
use super::state::LiveState;
use super::LiveTable;

/// Write `state` as the stored snapshot, folding the change log up to `seq`. `state` must
/// reflect every change up to `seq` (built, compacted, or synced to it).
pub(crate) fn save(table: &LiveTable, state: &LiveState, seq: i64) -> Result<()> {
    if state.is_stand_in() {
        // A stand-in is a Flat index whatever the factory: never stored as the table's index.
        bail!(Internal: "the index standing in for a refused snapshot cannot be saved");
    }
    let shadow = table.shadow();
    let payload = match snapshot::stored_lean(&table.meta().factory) {
        true => snapshot::encode_lean(table.meta().dim, state.live_count()),
        false => state.to_payload()?,
    };
    let record = chunks::write(shadow, &payload)?;
    failpoint("save:chunks-written")?;
    let mark = SnapshotMark {
        seq,
        build_id: state.build_id.clone(),
        lineage: state.lineage,
        verified_cookie: state.verified_cookie,
    };
    let mut pairs = record.pairs().to_vec();
    pairs.extend(mark.pairs());
    Config::write(shadow, &pairs)?;
    failpoint("save:config-written")?;
    table.log().truncate(seq)?;
    failpoint("save:log-truncated")?;
    state.set_snapshot_seq(seq);
    Ok(())
}

/// What a verified stored snapshot holds.
enum Stored {
    /// A Flat table's lean payload: the table held `rows` rows when it was saved.
    Lean { rows: usize },
    /// Every other index's state.
    Full(Box<LiveState>),
}

/// The stored snapshot with the change log replayed on top: the index as this connection sees
/// it, without retraining or reading the whole content table.
///
/// A stored snapshot that does not verify (damaged, unsealed, or sealed with another key:
/// `chunks::open`) never reaches FAISS: an exact index rebuilt from the content table stands in
/// for it, in memory only, and remembers why (`faiss_indexes.state`, `integrity-check`) until
/// `rebuild` or `optimize` stores the table's own index again.
pub(crate) fn load(table: &LiveTable) -> Result<LiveState> {
    let shadow = table.shadow();
    let meta = table.meta();
    let config = Config::read(shadow)?;
    let mark = config.mark()?;
    let upto = table.log().max_seq()?;
    let stored = config.record().and_then(|record| {
        let mut snapshot = chunks::open(shadow, &record)?;
        if let Some(rows) = snapshot::is_lean(&mut snapshot, meta.dim)? {
            if !snapshot::stored_lean(&meta.factory) {
                // A sealed lean payload copied from a Flat table into another's config.
                bail!(Corrupt:
                    "stored snapshot is damaged: it is a Flat table's, and this table's factory \
                     is '{}'",
                    meta.factory
                );
            }
            return Ok(Stored::Lean { rows });
        }
        let ids = (mark.build_id.clone(), mark.lineage, mark.seq);
        LiveState::from_payload(&mut snapshot, meta, ids).map(|s| Stored::Full(Box::new(s)))
    });
    let mut state = match stored {
        Ok(Stored::Lean { rows }) => load_lean(table, &mark, upto, rows)?,
        Ok(Stored::Full(mut state)) => {
            state.verified_cookie = mark.verified_cookie;
            for index in state.indexes_mut() {
                params::apply(index, &meta.params.faiss)?;
            }
            state.catch_up(&table.log(), meta, upto)?;
            *state
        }
        Err(refused) if refused.kind() == Kind::Corrupt => {
            rebuild_in_place_of(table, &mark, upto, refused.message())?
        }
        Err(e) => return Err(e.in_table(table.name())),
    };
    verify_rowids(table, &mut state)?;
    Ok(state)
}

/// A `Flat` table stored lean: its index built from the content table as it is now (one pass,
/// no training), positioned at the change log's end `upto` of the stored lineage. The content
/// table is the truth; a file from a stranger gets the same guards as a stand-in
/// (`builder::exact_flat`).
fn load_lean(table: &LiveTable, mark: &SnapshotMark, upto: i64, rows: usize) -> Result<LiveState> {
    let origin = builder::Origin::at(mark.lineage, upto.max(mark.seq));
    // About as many rows as when it was saved (the log may have added some since).
    let hint = rows.saturating_add(rows / 16);
    let mut state = builder::exact_flat(table, origin, "loading", hint)
        .map_err(|e| e.in_table(table.name()))?;
    state.build_id = mark.build_id.clone();
    state.set_snapshot_seq(mark.seq);
    if table.meta().key == KeyShape::UnstableRowid {
        state.verified_cookie = table.conn().schema_version(table.schema(), None)?;
    }
    Ok(state)
}

/// The index rebuilt from the content table where the stored snapshot was refused (`why`,
/// see `builder::build_stand_in`), positioned as the snapshot plus the change log up to `upto`,
/// so syncing goes on from there. Nothing is written.
fn rebuild_in_place_of(
    table: &LiveTable,
    mark: &SnapshotMark,
    upto: i64,
    why: &str,
) -> Result<LiveState> {
    // A log that ends before the snapshot's position (a crafted or recovered file) must not
    // leave the stand-in behind the mark forever: it reflects the table as it is now anyway.
    let origin = builder::Origin::at(mark.lineage, upto.max(mark.seq));
    let mut state = builder::build_stand_in(table, origin).map_err(|e| {
        e.context(format!(
            "the stored snapshot was refused ({why}) and rebuilding it from the content table \
             failed"
        ))
        .in_table(table.name())
    })?;
    state.build_id = mark.build_id.clone();
    state.set_snapshot_seq(mark.seq);
    if table.meta().key == KeyShape::UnstableRowid {
        state.verified_cookie = table.conn().schema_version(table.schema(), None)?;
    }
    state.set_refused(Some(why.to_string()));
    Ok(state)
}

/// For a table whose rowids VACUUM may renumber (`key`): after a schema change, check that each
/// rowid still holds the vector the index has for it, and refill the index from the table when
/// one does not. Nothing to do for other tables, or when the schema has not changed.
pub(crate) fn verify_rowids(table: &LiveTable, state: &mut LiveState) -> Result<()> {
    if table.meta().key != KeyShape::UnstableRowid {
        return Ok(());
    }
    let cookie = table.conn().schema_version(table.schema(), None)?;
    if state.verified_cookie == cookie {
        return Ok(());
    }
    if builder::rowids_hold_their_vectors(table, state)? {
        state.verified_cookie = cookie;
        state.generation = crate::registry::next_generation();
        Ok(())
    } else {
        builder::refill(table, state, cookie)
    }
}
