//! Saving a state as the stored snapshot, and loading it back with the change log replayed.
//!
//! A save is three writes in the statement's transaction: the chunks, the config entries that
//! describe them, and the truncation of the log entries they fold in. They happen whole or not
//! at all (SQLite's statement journal for CREATE; `atomic` for the commands; checked at each
//! step by `tests/failpoints.rs`); the in-memory state learns its new position only when all
//! three succeeded.

use crate::error::Result;
use crate::failpoint::failpoint;

use super::builder;
use super::config::{Config, SnapshotMark};
use super::key::KeyShape;
use super::params;
use super::snapshot::chunks;
use super::state::LiveState;
use super::LiveTable;

/// Write `state` as the stored snapshot, folding the change log up to `seq`. `state` must
/// reflect every change up to `seq` (built, compacted, or synced to it).
pub(crate) fn save(table: &LiveTable, state: &LiveState, seq: i64) -> Result<()> {
    let shadow = table.shadow();
    let payload = state.to_payload()?;
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

/// The stored snapshot with the change log replayed on top: the index as this connection sees
/// it, without retraining or reading the whole content table.
pub(crate) fn load(table: &LiveTable) -> Result<LiveState> {
    let shadow = table.shadow();
    let meta = table.meta();
    let config = Config::read(shadow)?;
    let mark = config.mark()?;
    let mut snapshot =
        chunks::open(shadow, &config.record()?).map_err(|e| e.in_table(table.name()))?;
    let seq = mark.seq;
    let mut state =
        LiveState::from_payload(&mut snapshot, meta, (mark.build_id, mark.lineage, seq))
            .map_err(|e| e.in_table(table.name()))?;
    drop(snapshot);
    state.verified_cookie = mark.verified_cookie;
    for index in state.indexes_mut() {
        params::apply(index, &meta.params.faiss)?;
    }
    let upto = table.log().max_seq()?;
    let changes = table.log().changes(meta, seq, upto)?;
    state.apply(changes, upto)?;
    verify_rowids(table, &mut state)?;
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
