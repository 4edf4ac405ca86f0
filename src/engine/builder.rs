//! Building an index from the content table: training on a seeded sample when the factory
//! needs it, then adding every row in large batches; and compaction, which refills a trained
//! index without retraining.

use std::collections::HashSet;

use crate::error::{bail, Result};
use crate::index::Index;

use super::config::{Config, Key};
use super::params;
use super::state::LiveState;
use super::LiveTable;

/// Vector bytes read per batch while building: FAISS adds a batch in one call, and graph
/// indexes build markedly faster from few large adds (HNSW32, 20,000 × 128-d: 2.05 s in one
/// add, 2.87 s in adds of 8,192), at the price of this much memory beside the index.
const BATCH_BYTES: usize = 256 << 20;
/// Default number of rows sampled to train an index that needs training.
pub(crate) const DEFAULT_TRAIN_SIZE: usize = 50_000;

/// Where a new lineage starts: its number, and the change-log position it reflects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    lineage: i64,
    seq: i64,
}

impl Origin {
    /// The first lineage of a table being created (no config, no log yet).
    pub(crate) const FIRST: Origin = Origin { lineage: 1, seq: 0 };

    /// The next lineage of an existing table, as of the change log's current end.
    pub(crate) fn next(table: &LiveTable) -> Result<Origin> {
        Ok(Origin {
            lineage: Config::read(table.shadow())?.num::<i64>(Key::Lineage)? + 1,
            seq: table.log().max_seq()?,
        })
    }
}

/// A new index of a new lineage from every content row. It only reads: the caller saves it.
pub(crate) fn build(table: &LiveTable, origin: Origin) -> Result<LiveState> {
    let meta = table.meta();
    let mut index = Index::new(&meta.factory, meta.dim, meta.metric)?;
    if !index.is_trained() {
        let sample = training_sample(table)?;
        let n = sample.len() / meta.dim;
        if n == 0 {
            bail!(
                "factory '{}' needs training, but {} has no vectors yet: add rows first, \
                 or use an index that needs no training (Flat, HNSW32)",
                meta.factory,
                meta.content
            );
        }
        index
            .train(&sample)
            .map_err(|e| e.context(format!("training '{}' on {n} vectors", meta.factory)))?;
    }
    fill(table, index, origin)
}

/// A new lineage from `empty` (a trained index with no vectors, see `Index::empty_copy`)
/// refilled from the content table: no retraining, no tombstones, every visible change in. A
/// new build id makes other processes reload it.
pub(crate) fn compact(table: &LiveTable, empty: Index, origin: Origin) -> Result<LiveState> {
    fill(table, empty, origin)
}

/// Add every content row to `index`: the new lineage that `persist::save` then stores.
fn fill(table: &LiveTable, index: Index, origin: Origin) -> Result<LiveState> {
    let mut state = LiveState::new(index, origin.lineage);
    state.applied_seq = origin.seq;
    let content = table.content();
    let (mut rowids, mut vectors) = (Vec::new(), Vec::new());
    content.scan(
        |_| true,
        &mut vectors,
        |rowid, read, vectors| {
            read.map_err(|why| why.into_error().context(content.row_context(rowid)))?;
            rowids.push(rowid);
            if vectors.len() * std::mem::size_of::<f32>() >= BATCH_BYTES {
                state.insert(&rowids, vectors)?;
                rowids.clear();
                vectors.clear();
            }
            Ok(())
        },
    )?;
    state.insert(&rowids, &vectors)?;
    params::apply(&mut state.index, &table.meta().params.faiss)?;
    Ok(state)
}

/// Up to `train_size` vectors chosen by a seeded shuffle of the rowids (reproducible).
fn training_sample(table: &LiveTable) -> Result<Vec<f32>> {
    let content = table.content();
    let mut rowids = content.rowids()?;
    let want = table.meta().train_size.min(rowids.len());
    let mut rng = 0x5EED_u64 ^ (rowids.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for i in 0..want {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let j = i + (rng % (rowids.len() - i) as u64) as usize;
        rowids.swap(i, j);
    }
    let chosen: HashSet<i64> = rowids[..want].iter().copied().collect();
    let mut sample = Vec::with_capacity(want * table.meta().dim);
    content.scan(
        |rowid| chosen.contains(&rowid),
        &mut sample,
        |rowid, read, _| read.map_err(|why| why.into_error().context(content.row_context(rowid))),
    )?;
    Ok(sample)
}
