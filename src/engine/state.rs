//! The in-memory index of one `faiss` table at one point of its change log: the FAISS index,
//! its slots and tombstones, and where it stands in the change log and its lineage.
//!
//! FAISS labels are *slots*: positions in insertion order, never reused. A slot maps to a
//! content rowid; a deleted or re-vectored row only clears its slot's bit in `live` (a
//! tombstone), so every FAISS index type works the same way, including those that cannot remove
//! vectors (HNSW). `optimize` and `rebuild` compact the slots.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use crate::error::{bail, Result};
use crate::failpoint::failpoint;
use crate::index::{Bitmap, Index, Metric};
use crate::locks;
use crate::registry::next_generation;

use super::rowid_hash::RowidHash;
use super::snapshot::{self, Source, DEAD_SLOT};

/// A logged content row as it is now: its vector, or `None` when the row is gone, its vector is
/// NULL, or it cannot be indexed (then it simply leaves the index; `integrity-check` names it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    pub(crate) rowid: i64,
    pub(crate) vector: Option<Vec<f32>>,
}

pub(crate) struct LiveState {
    pub(crate) index: Index,
    /// Slot → content rowid (`DEAD_SLOT` once deleted or superseded).
    slots: Vec<i64>,
    /// Content rowid → its live slot.
    slot_of: HashMap<i64, usize, RowidHash>,
    live: Bitmap,
    /// Every change-log entry up to this sequence number is reflected.
    pub(crate) applied_seq: i64,
    /// The change-log position of the stored snapshot it came from (or was last saved as).
    snapshot_seq: AtomicI64,
    /// Identifies the stored snapshot lineage (new at create, rebuild and compaction).
    pub(crate) build_id: String,
    /// Grows with each new lineage, so an older one is never taken for a newer one.
    pub(crate) lineage: i64,
    /// Changes when the state changes, so connections can tell their checks are current.
    pub(crate) generation: u64,
    /// FAISS's serialized size and vector count when last saved or loaded.
    serialized: Mutex<(usize, usize)>,
}

impl LiveState {
    /// An empty state over `index` (trained if it needs training), of a new lineage.
    pub(crate) fn new(index: Index, lineage: i64) -> LiveState {
        LiveState {
            index,
            slots: Vec::new(),
            slot_of: HashMap::with_hasher(RowidHash::default()),
            live: Bitmap::new(0),
            applied_seq: 0,
            snapshot_seq: 0.into(),
            build_id: new_build_id(),
            lineage,
            generation: next_generation(),
            serialized: Default::default(),
        }
    }

    /// The state a verified snapshot payload holds, at change-log position `seq` of lineage
    /// (`build_id`, `lineage`).
    pub(crate) fn from_payload(
        source: &mut dyn Source,
        dim: usize,
        metric: Metric,
        (build_id, lineage, seq): (String, i64, i64),
    ) -> Result<LiveState> {
        let decoded = snapshot::decode(source, dim, metric)?;
        let nslots = decoded.slots.len();
        let mut state = LiveState {
            build_id,
            applied_seq: seq,
            snapshot_seq: seq.into(),
            serialized: (decoded.faiss_bytes, nslots).into(),
            live: Bitmap::new(nslots),
            ..LiveState::new(decoded.index, lineage)
        };
        state.slot_of.reserve(nslots);
        for (slot, &rowid) in decoded.slots.iter().enumerate() {
            if rowid != DEAD_SLOT {
                if state.slot_of.insert(rowid, slot).is_some() {
                    bail!(Corrupt: "stored snapshot is damaged: a rowid appears twice");
                }
                state.live.set(slot, true);
            }
        }
        state.slots = decoded.slots;
        Ok(state)
    }

    /// The snapshot payload: FAISS's bytes and the slot table.
    pub(crate) fn to_payload(&self) -> Result<Vec<u8>> {
        let faiss = self.index.to_bytes()?;
        *locks::lock(&self.serialized) = (faiss.len(), self.slots.len());
        Ok(snapshot::encode(&faiss, &self.slots))
    }

    pub(crate) fn snapshot_seq(&self) -> i64 {
        self.snapshot_seq.load(Ordering::Relaxed)
    }

    /// Record that the stored snapshot now reflects the log up to `seq`.
    pub(crate) fn set_snapshot_seq(&self, seq: i64) {
        self.snapshot_seq.store(seq, Ordering::Relaxed);
    }

    /// Approximate memory held: FAISS's part scaled from its last serialized size (for the
    /// common index types what they keep in memory: vectors or codes, links, centroids), plus
    /// the slot table and maps.
    pub(crate) fn memory_bytes(&self) -> usize {
        let (bytes, n) = *locks::lock(&self.serialized);
        let per_vector = bytes.checked_div(n).unwrap_or(self.index.dim() * 4);
        let faiss = bytes + self.slots.len().saturating_sub(n) * per_vector;
        faiss + self.slots.len() * 8 + self.slot_of.len() * 24
    }

    pub(crate) fn live_count(&self) -> usize {
        self.slot_of.len()
    }

    pub(crate) fn dead_count(&self) -> usize {
        self.slots.len() - self.slot_of.len()
    }

    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The live slot of `rowid`.
    pub(crate) fn slot_of(&self, rowid: i64) -> Option<usize> {
        self.slot_of.get(&rowid).copied()
    }

    /// The rowid in `slot`, if the slot is live.
    pub(crate) fn rowid_at(&self, slot: usize) -> Option<i64> {
        self.slots.get(slot).copied().filter(|&r| r != DEAD_SLOT)
    }

    /// One bit per slot, set for live ones.
    pub(crate) fn live(&self) -> &Bitmap {
        &self.live
    }

    /// Live rowids, ascending.
    pub(crate) fn rowids(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.slot_of.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn remove(&mut self, rowid: i64) {
        if let Some(slot) = self.slot_of.remove(&rowid) {
            self.slots[slot] = DEAD_SLOT;
            self.live.set(slot, false);
        }
    }

    /// Index `rowids` with `vectors` (row-major), replacing any earlier vector of each.
    pub(crate) fn insert(&mut self, rowids: &[i64], vectors: &[f32]) -> Result<()> {
        // FAISS first: if it fails, nothing has changed.
        self.index.add(vectors)?;
        for &r in rowids {
            self.remove(r);
        }
        let first = self.slots.len();
        self.slots.extend_from_slice(rowids);
        self.live.resize(self.slots.len(), true);
        for (i, &r) in rowids.iter().enumerate() {
            self.slot_of.insert(r, first + i);
        }
        self.generation = next_generation();
        Ok(())
    }

    /// Apply changed rows read from the log up to `upto`. FAISS adds the new vectors before any
    /// slot changes, so its failure changes nothing; a failure after that leaves the state
    /// half-applied, and the caller drops it (`sync`).
    pub(crate) fn apply(&mut self, changes: Vec<Change>, upto: i64) -> Result<()> {
        let mut rowids = Vec::new();
        let mut vectors = Vec::new();
        for change in &changes {
            if let Some(v) = &change.vector {
                rowids.push(change.rowid);
                vectors.extend_from_slice(v);
            }
        }
        self.insert(&rowids, &vectors)?;
        failpoint("apply:vectors-added")?;
        for change in changes.iter().filter(|c| c.vector.is_none()) {
            self.remove(change.rowid);
        }
        self.applied_seq = self.applied_seq.max(upto);
        self.generation = next_generation();
        Ok(())
    }
}

/// A fresh build id: unique across processes and time.
fn new_build_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}-{:x}-{:x}",
        nanos,
        std::process::id(),
        next_generation()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::snapshot::Bytes;

    #[test]
    fn changes_tombstone_and_payload_round_trips() {
        let mut state = LiveState::new(Index::new("Flat", 2, Metric::L2).unwrap(), 1);
        state
            .insert(&[10, 20, 30], &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
            .unwrap();
        let before = state.generation;
        let changes = vec![
            Change {
                rowid: 20,
                vector: None,
            },
            Change {
                rowid: 30,
                vector: Some(vec![5.0, 5.0]),
            },
        ];
        state.apply(changes, 5).unwrap();
        assert_ne!(state.generation, before);
        assert_eq!(state.rowids(), vec![10, 30]);
        assert_eq!(
            (state.live_count(), state.dead_count(), state.applied_seq),
            (2, 2, 5)
        );
        assert_eq!((state.slot_of(30), state.rowid_at(2)), (Some(3), None));

        let payload = state.to_payload().unwrap();
        let mark = ("b".to_string(), 1, 5);
        let back =
            LiveState::from_payload(&mut Bytes(&payload), 2, Metric::L2, mark.clone()).unwrap();
        assert_eq!(back.rowids(), vec![10, 30]);
        assert_eq!(
            (back.dead_count(), back.snapshot_seq(), back.applied_seq),
            (2, 5, 5)
        );
        assert_eq!(back.to_payload().unwrap(), payload);

        // A rowid twice in the slot table is damage.
        let twice = snapshot::encode(
            &Index::new("Flat", 2, Metric::L2)
                .map(|mut i| {
                    i.add(&[0.0, 0.0, 1.0, 1.0]).unwrap();
                    i.to_bytes().unwrap()
                })
                .unwrap(),
            &[7, 7],
        );
        let e = LiveState::from_payload(&mut Bytes(&twice), 2, Metric::L2, mark)
            .err()
            .unwrap();
        assert_eq!(e.kind(), crate::error::Kind::Corrupt);
    }
}
