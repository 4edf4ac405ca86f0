//! The in-memory index of one `faiss` table at one point of its change log: one FAISS index
//! per partition (a single one when the table is not partitioned), their slots and tombstones,
//! the keys of the rows, and where the state stands in the change log and its lineage.
//!
//! FAISS labels are *slots*: positions in insertion order, never reused. A slot maps to a row's
//! *handle* (its rowid, or a hash of its key: `key`); a deleted or re-vectored row only clears
//! its slot's bit in `live` (a tombstone), so every FAISS index type works the same way,
//! including those that cannot remove vectors (HNSW). `optimize` and `rebuild` compact the
//! slots.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use crate::error::{bail, Result};
use crate::index::{Bitmap, Index};
use crate::locks;
use crate::registry::next_generation;

use super::config::Meta;
use super::content::key_text;
use super::key::{vector_hash, KeyPart, KeyShape, RowKey};
use super::rowid_hash::RowidHash;
use super::snapshot::{self, PartImage, Source, DEAD_SLOT};

mod catch_up;

/// One FAISS index: a partition's, or the whole table's.
pub(crate) struct Part {
    pub(crate) index: Index,
    /// The partition value; `None` when the table is not partitioned.
    value: Option<KeyPart>,
    /// Slot → handle (`DEAD_SLOT` once deleted or superseded).
    slots: Vec<i64>,
    /// Handle → its live slot.
    slot_of: HashMap<i64, usize, RowidHash>,
    live: Bitmap,
    /// Slot → hash of the vector it holds (`rowid-unstable` tables, see `key`).
    hashes: Option<Vec<u64>>,
    /// FAISS's serialized size and vector count when last saved or loaded.
    serialized: Mutex<(usize, usize)>,
}

impl Part {
    fn new(index: Index, value: Option<KeyPart>, hashes: bool) -> Part {
        Part {
            index,
            value,
            slots: Vec::new(),
            slot_of: HashMap::with_hasher(RowidHash::default()),
            live: Bitmap::new(0),
            hashes: hashes.then(Vec::new),
            serialized: Default::default(),
        }
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

    /// The live slot of `handle`.
    pub(crate) fn slot_of(&self, handle: i64) -> Option<usize> {
        self.slot_of.get(&handle).copied()
    }

    /// The handle in `slot`, if the slot is live.
    pub(crate) fn handle_at(&self, slot: usize) -> Option<i64> {
        self.slots.get(slot).copied().filter(|&r| r != DEAD_SLOT)
    }

    /// One bit per slot, set for live ones.
    pub(crate) fn live(&self) -> &Bitmap {
        &self.live
    }

    fn remove(&mut self, handle: i64) -> bool {
        let Some(slot) = self.slot_of.remove(&handle) else {
            return false;
        };
        self.slots[slot] = DEAD_SLOT;
        self.live.set(slot, false);
        true
    }

    /// Add `vectors` (row-major) for `handles`, which hold no live slot here.
    fn add(&mut self, handles: &[i64], vectors: &[f32]) -> Result<()> {
        self.index.add(vectors)?;
        let first = self.slots.len();
        self.slot_of.reserve(handles.len());
        self.slots.extend_from_slice(handles);
        self.live.resize(self.slots.len(), true);
        for (i, &h) in handles.iter().enumerate() {
            self.slot_of.insert(h, first + i);
        }
        if let Some(hashes) = &mut self.hashes {
            let dim = self.index.dim();
            hashes.extend(vectors.chunks_exact(dim).map(vector_hash));
        }
        Ok(())
    }

    fn memory_bytes(&self) -> usize {
        let (bytes, n) = *locks::lock(&self.serialized);
        let per_vector = bytes.checked_div(n).unwrap_or(self.index.dim() * 4);
        let faiss = bytes + self.slots.len().saturating_sub(n) * per_vector;
        let hashes = self.hashes.as_ref().map_or(0, |h| h.len() * 8);
        faiss + self.slots.len() * 8 + self.slot_of.len() * 24 + hashes
    }
}

/// A row to add: its handle, its key (tables keyed by columns), its partition value.
#[derive(Debug, Clone)]
pub(crate) struct NewRow {
    pub(crate) handle: i64,
    pub(crate) key: Option<RowKey>,
    pub(crate) part: Option<KeyPart>,
}

pub(crate) struct LiveState {
    /// The FAISS indexes: exactly one when the table is not partitioned.
    parts: Vec<Part>,
    /// Partition value → its part (partitioned tables).
    part_of_value: HashMap<KeyPart, usize>,
    /// Handle → the part holding its live slot (partitioned tables).
    part_of_row: HashMap<i64, usize, RowidHash>,
    /// The trained, empty index each new partition starts as (partitioned tables).
    template: Option<Index>,
    /// Handle → key of every live row (tables keyed by columns).
    keys: HashMap<i64, RowKey, RowidHash>,
    /// Per-slot vector hashes are kept (`rowid-unstable` tables).
    track_hashes: bool,
    /// Every change-log entry up to this sequence number is reflected.
    pub(crate) applied_seq: i64,
    /// The change-log position of the stored snapshot it came from (or was last saved as).
    snapshot_seq: AtomicI64,
    /// Identifies the stored snapshot lineage (new at create, rebuild and compaction): derived
    /// from what was built (`builder::fill`), so every node running the same SQL has the same.
    pub(crate) build_id: String,
    /// Grows with each new lineage, so an older one is never taken for a newer one.
    pub(crate) lineage: i64,
    /// `rowid-unstable` tables: the schema cookie at which every live rowid was last found to
    /// hold the vector it indexed (-1: not yet).
    pub(crate) verified_cookie: i64,
    /// Changes when the state changes, so connections can tell their checks are current.
    pub(crate) generation: u64,
    /// Why the stored snapshot was refused, when this state was rebuilt from the content table
    /// instead (`persist::load`); cleared once this state is saved.
    refused: Option<String>,
    /// Exactly what one pass over the content table builds (or the stored snapshot of such a
    /// state): no change-log entry applied since. How the log was applied (in how many
    /// catch-ups) shows in the index's bytes, so `optimize` of a deterministic table compacts
    /// a state that is not pristine (`commands::optimize`).
    pub(crate) pristine: bool,
}

impl LiveState {
    /// An empty state of a new lineage over `index` (trained if it needs training): the
    /// table's one index, or the template of its partitions'.
    pub(crate) fn new(index: Index, lineage: i64, meta: &Meta) -> LiveState {
        let track_hashes = meta.key == KeyShape::UnstableRowid;
        let (parts, template) = match meta.partition {
            Some(_) => (Vec::new(), Some(index)),
            None => (vec![Part::new(index, None, track_hashes)], None),
        };
        LiveState {
            parts,
            part_of_value: HashMap::new(),
            part_of_row: HashMap::with_hasher(RowidHash::default()),
            template,
            keys: HashMap::with_hasher(RowidHash::default()),
            track_hashes,
            applied_seq: 0,
            snapshot_seq: 0.into(),
            build_id: String::new(),
            lineage,
            verified_cookie: -1,
            generation: next_generation(),
            refused: None,
            pristine: true,
        }
    }

    /// The state a verified snapshot payload holds, at change-log position `seq` of lineage
    /// (`build_id`, `lineage`), checked against what `meta` says the table is.
    pub(crate) fn from_payload(
        source: &mut dyn Source,
        meta: &Meta,
        (build_id, lineage, seq): (String, i64, i64),
    ) -> Result<LiveState> {
        let decoded = snapshot::decode(source, meta.dim, meta.metric)?;
        let partitioned = meta.partition.is_some();
        let track_hashes = meta.key == KeyShape::UnstableRowid;
        let keyed = matches!(meta.key, KeyShape::Columns { .. });
        if decoded.template.is_some() != partitioned
            || (!partitioned && decoded.parts.len() != 1)
            || (!keyed && !decoded.keys.is_empty())
        {
            bail!(Corrupt: "stored snapshot is damaged: it does not fit the table's definition");
        }
        let mut state = LiveState {
            build_id,
            applied_seq: seq,
            snapshot_seq: seq.into(),
            template: decoded.template,
            ..LiveState::new(Index::new("Flat", meta.dim, meta.metric)?, lineage, meta)
        };
        state.parts.clear();
        state.keys = decoded.keys.into_iter().collect();
        for (n, decoded) in decoded.parts.into_iter().enumerate() {
            let nslots = decoded.slots.len();
            // A part's hashes are stored with their count: an empty part's are not told apart
            // from none.
            let hashes = match (decoded.hashes, track_hashes) {
                (Some(h), true) => Some(h),
                (None, true) if nslots == 0 => Some(Vec::new()),
                (None, false) => None,
                _ => bail!(Corrupt: "stored snapshot is damaged: a part does not fit the table"),
            };
            if decoded.value.is_some() != partitioned {
                bail!(Corrupt: "stored snapshot is damaged: a part does not fit the table");
            }
            let mut part = Part::new(decoded.index, decoded.value, track_hashes);
            *locks::lock(&part.serialized) = (decoded.faiss_bytes, nslots);
            part.live = Bitmap::new(nslots);
            part.slot_of.reserve(nslots);
            for (slot, &handle) in decoded.slots.iter().enumerate() {
                if handle == DEAD_SLOT {
                    continue;
                }
                let twice = part.slot_of.insert(handle, slot).is_some()
                    || (partitioned && state.part_of_row.insert(handle, n).is_some());
                if twice {
                    bail!(Corrupt: "stored snapshot is damaged: a row appears twice");
                }
                if keyed && !state.keys.contains_key(&handle) {
                    bail!(Corrupt: "stored snapshot is damaged: a row has no key");
                }
                part.live.set(slot, true);
            }
            part.slots = decoded.slots;
            part.hashes = hashes;
            if let Some(value) = &part.value {
                if state.part_of_value.insert(value.clone(), n).is_some() {
                    bail!(Corrupt: "stored snapshot is damaged: a partition appears twice");
                }
            }
            state.parts.push(part);
        }
        if keyed && state.keys.len() != state.live_count() {
            bail!(Corrupt: "stored snapshot is damaged: keys without rows");
        }
        Ok(state)
    }

    /// The snapshot payload: version 1 for a plain table keyed by its INTEGER PRIMARY KEY
    /// (what every earlier version wrote), version 2 otherwise.
    pub(crate) fn to_payload(&self) -> Result<Vec<u8>> {
        let simple = self.template.is_none() && !self.track_hashes && self.keys.is_empty();
        let mut images = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let faiss = part.index.to_bytes()?;
            *locks::lock(&part.serialized) = (faiss.len(), part.slots.len());
            images.push(PartImage {
                value: part.value.as_ref(),
                faiss,
                slots: &part.slots,
                hashes: part.hashes.as_deref(),
            });
        }
        if simple && images.len() == 1 {
            let image = &images[0];
            return Ok(snapshot::encode(&image.faiss, image.slots));
        }
        let template = self.template.as_ref().map(Index::to_bytes).transpose()?;
        let mut keys: Vec<(i64, &RowKey)> = self.keys.iter().map(|(h, k)| (*h, k)).collect();
        keys.sort_unstable_by_key(|(h, _)| *h);
        Ok(snapshot::encode_v2(&images, template.as_deref(), &keys))
    }

    pub(crate) fn snapshot_seq(&self) -> i64 {
        self.snapshot_seq.load(Ordering::Relaxed)
    }

    /// Record that the stored snapshot now reflects the log up to `seq`.
    pub(crate) fn set_snapshot_seq(&self, seq: i64) {
        self.snapshot_seq.store(seq, Ordering::Relaxed);
    }

    /// Why the stored snapshot was refused, if this state stands in for it.
    pub(crate) fn refused(&self) -> Option<String> {
        self.refused.clone()
    }

    /// True for the exact index that stands in for a refused snapshot.
    pub(crate) fn is_stand_in(&self) -> bool {
        self.refused.is_some()
    }

    /// Mark this state as standing in for a refused snapshot, and why.
    pub(crate) fn set_refused(&mut self, why: Option<String>) {
        self.refused = why;
    }

    /// Approximate memory held: each FAISS index scaled from its last serialized size (for the
    /// common index types what they keep in memory: vectors or codes, links, centroids), plus
    /// the slot tables, maps and keys.
    pub(crate) fn memory_bytes(&self) -> usize {
        let keys: usize = self.keys.values().map(|k| 16 + k.0.len() * 24).sum();
        self.parts.iter().map(Part::memory_bytes).sum::<usize>() + keys
    }

    pub(crate) fn dim(&self) -> usize {
        self.first_index().dim()
    }

    fn first_index(&self) -> &Index {
        match (&self.template, self.parts.first()) {
            (Some(t), _) => t,
            (None, Some(p)) => &p.index,
            (None, None) => unreachable!("an unpartitioned state has its part"),
        }
    }

    pub(crate) fn live_count(&self) -> usize {
        self.parts.iter().map(Part::live_count).sum()
    }

    pub(crate) fn dead_count(&self) -> usize {
        self.parts.iter().map(Part::dead_count).sum()
    }

    /// The part to search: the partition `value`'s, or the table's one part when `value` is
    /// `None`. `None` when that partition has no rows yet.
    pub(crate) fn part(&self, value: Option<&KeyPart>) -> Option<&Part> {
        match value {
            None => self.parts.first().filter(|p| p.value.is_none()),
            Some(v) => self.part_of_value.get(v).map(|&i| &self.parts[i]),
        }
    }

    /// The same, for changes (per-query parameters).
    pub(crate) fn part_mut(&mut self, value: Option<&KeyPart>) -> Option<&mut Part> {
        match value {
            None => self.parts.first_mut().filter(|p| p.value.is_none()),
            Some(v) => match self.part_of_value.get(v) {
                Some(&i) => self.parts.get_mut(i),
                None => None,
            },
        }
    }

    /// Every FAISS index, for table-wide parameters.
    pub(crate) fn indexes_mut(&mut self) -> impl Iterator<Item = &mut Index> {
        self.parts
            .iter_mut()
            .map(|p| &mut p.index)
            .chain(self.template.as_mut())
    }

    /// A trained, empty copy of the index, for compaction (no retraining).
    pub(crate) fn empty_copy(&self) -> Result<Index> {
        self.first_index().empty_copy()
    }

    /// As [`empty_copy`](Self::empty_copy), forgetting FAISS's state beyond what it stores
    /// (`Index::fresh_empty_copy`).
    pub(crate) fn fresh_empty_copy(&self) -> Result<Index> {
        self.first_index().fresh_empty_copy()
    }

    /// The key of a live row (tables keyed by columns).
    pub(crate) fn key(&self, handle: i64) -> Option<&RowKey> {
        self.keys.get(&handle)
    }

    /// The partition value of a live row (partitioned tables).
    pub(crate) fn part_value(&self, handle: i64) -> Option<&KeyPart> {
        let p = *self.part_of_row.get(&handle)?;
        self.parts[p].value.as_ref()
    }

    /// True when `handle` is a live row of the index.
    pub(crate) fn contains(&self, handle: i64) -> bool {
        match self.template {
            Some(_) => self.part_of_row.contains_key(&handle),
            None => self.parts[0].slot_of(handle).is_some(),
        }
    }

    /// Live handles, ascending.
    pub(crate) fn handles(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self
            .parts
            .iter()
            .flat_map(|p| p.slot_of.keys().copied())
            .collect();
        v.sort_unstable();
        v
    }

    /// The hash of the vector `handle` holds (`rowid-unstable` tables).
    pub(crate) fn vector_hash(&self, handle: i64) -> Option<u64> {
        let part = self.parts.first()?;
        let slot = part.slot_of(handle)?;
        part.hashes.as_ref()?.get(slot).copied()
    }

    fn remove(&mut self, handle: i64) {
        let part = match self.template {
            Some(_) => self.part_of_row.remove(&handle),
            None => Some(0),
        };
        if let Some(p) = part {
            if self.parts[p].remove(handle) {
                self.keys.remove(&handle);
            }
        }
    }

    /// Index `rows` with `vectors` (row-major), replacing any earlier vector of each.
    pub(crate) fn insert(&mut self, rows: &[NewRow], vectors: &[f32]) -> Result<()> {
        let dim = self.dim();
        // Two keys with one handle (a 64-bit coincidence, or a crafted table): refuse before
        // anything changes, rather than let one row stand for the other.
        let mut batch_keys: HashMap<i64, &RowKey> = HashMap::new();
        for row in rows {
            let Some(key) = &row.key else { continue };
            let other = batch_keys
                .insert(row.handle, key)
                .or_else(|| self.keys.get(&row.handle));
            if let Some(other) = other.filter(|other| *other != key) {
                bail!(Invalid:
                    "the keys {} and {} hash to the same 64-bit handle, so this index cannot \
                     tell their rows apart; change one of the keys",
                    key_text(other),
                    key_text(key)
                );
            }
        }
        // Group by part, FAISS first: if it fails, nothing has changed.
        let mut groups: Vec<(Option<KeyPart>, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<&Option<KeyPart>, usize> = HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            let g = *group_of.entry(&row.part).or_insert_with(|| {
                groups.push((row.part.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
        for (value, members) in &groups {
            let p = self.part_index(value.as_ref())?;
            let handles: Vec<i64> = members.iter().map(|&i| rows[i].handle).collect();
            for &h in &handles {
                self.remove(h);
            }
            // One group (an unpartitioned table, or one partition) holds every row in order.
            let batch = match members.len() == rows.len() {
                true => std::borrow::Cow::Borrowed(vectors),
                false => members
                    .iter()
                    .flat_map(|&i| &vectors[i * dim..(i + 1) * dim])
                    .copied()
                    .collect(),
            };
            self.parts[p].add(&handles, &batch)?;
            if self.template.is_some() {
                for &h in &handles {
                    self.part_of_row.insert(h, p);
                }
            }
        }
        for row in rows {
            if let Some(key) = &row.key {
                self.keys.insert(row.handle, key.clone());
            }
        }
        self.generation = next_generation();
        Ok(())
    }

    /// The part for partition `value`, created from the template when it is new.
    fn part_index(&mut self, value: Option<&KeyPart>) -> Result<usize> {
        let Some(template) = &self.template else {
            return Ok(0);
        };
        let Some(value) = value else {
            bail!(Internal: "a row of a partitioned table has no partition");
        };
        if let Some(&p) = self.part_of_value.get(value) {
            return Ok(p);
        }
        let part = Part::new(
            template.empty_copy()?,
            Some(value.clone()),
            self.track_hashes,
        );
        self.parts.push(part);
        self.part_of_value
            .insert(value.clone(), self.parts.len() - 1);
        Ok(self.parts.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::changelog::ChangeSet;
    use crate::engine::params::SearchParams;
    use crate::engine::snapshot::Bytes;
    use crate::index::Metric;

    fn meta(key: KeyShape, partition: Option<&str>) -> Meta {
        Meta {
            content: "t".into(),
            column: "v".into(),
            id_column: None,
            pk: String::new(),
            key,
            factory: "Flat".into(),
            metric: Metric::L2,
            dim: 2,
            params: SearchParams::default(),
            train_size: 10,
            deterministic: false,
            predicate: None,
            partition: partition.map(str::to_string),
        }
    }

    fn rows(handles: &[i64]) -> Vec<NewRow> {
        handles
            .iter()
            .map(|&handle| NewRow {
                handle,
                key: None,
                part: None,
            })
            .collect()
    }

    #[test]
    fn changes_tombstone_and_payload_round_trips() {
        let m = meta(KeyShape::Rowid, None);
        let mut state = LiveState::new(Index::new("Flat", 2, Metric::L2).unwrap(), 1, &m);
        state
            .insert(&rows(&[10, 20, 30]), &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
            .unwrap();
        let before = state.generation;
        state
            .apply(&ChangeSet {
                rows: rows(&[30]),
                vectors: vec![5.0, 5.0],
                gone: vec![(20, None)],
            })
            .unwrap();
        state.applied_seq = 5;
        assert_ne!(state.generation, before);
        assert_eq!(state.handles(), vec![10, 30]);
        assert_eq!(
            (state.live_count(), state.dead_count(), state.applied_seq),
            (2, 2, 5)
        );
        let part = state.part(None).unwrap();
        assert_eq!((part.slot_of(30), part.handle_at(2)), (Some(3), None));

        let payload = state.to_payload().unwrap();
        assert_eq!(&payload[..8], b"VEKTSNP1", "the format every version wrote");
        let mark = ("b".to_string(), 1, 5);
        let back = LiveState::from_payload(&mut Bytes(&payload), &m, mark.clone()).unwrap();
        assert_eq!(back.handles(), vec![10, 30]);
        assert_eq!(
            (back.dead_count(), back.snapshot_seq(), back.applied_seq),
            (2, 5, 5)
        );
        assert_eq!(back.to_payload().unwrap(), payload);

        // A rowid twice in the slot table is damage.
        let mut index = Index::new("Flat", 2, Metric::L2).unwrap();
        index.add(&[0.0, 0.0, 1.0, 1.0]).unwrap();
        let twice = snapshot::encode(&index.to_bytes().unwrap(), &[7, 7]);
        let e = LiveState::from_payload(&mut Bytes(&twice), &m, mark)
            .err()
            .unwrap();
        assert_eq!(e.kind(), crate::error::Kind::Corrupt);
    }

    #[test]
    fn partitions_keys_and_hashes_round_trip() {
        let shape = KeyShape::Columns {
            columns: vec!["k".into()],
            without_rowid: false,
        };
        let m = meta(shape, Some("tenant"));
        let mut state = LiveState::new(Index::new("Flat", 2, Metric::L2).unwrap(), 1, &m);
        let row = |k: &str, tenant: i64| {
            let key = RowKey(vec![KeyPart::Text(k.into())]);
            NewRow {
                handle: key.handle(),
                key: Some(key),
                part: Some(KeyPart::Int(tenant)),
            }
        };
        let new = [row("a", 1), row("b", 2), row("c", 1)];
        state.insert(&new, &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0]).unwrap();
        assert_eq!(state.part(Some(&KeyPart::Int(1))).unwrap().live_count(), 2);
        assert!(state.part(Some(&KeyPart::Int(3))).is_none());
        // "a" moves to tenant 2: it leaves tenant 1.
        let moved = ChangeSet {
            rows: vec![NewRow {
                part: Some(KeyPart::Int(2)),
                ..new[0].clone()
            }],
            vectors: vec![9.0, 9.0],
            gone: Vec::new(),
        };
        state.apply(&moved).unwrap();
        assert_eq!(state.part(Some(&KeyPart::Int(1))).unwrap().live_count(), 1);
        assert_eq!(state.part(Some(&KeyPart::Int(2))).unwrap().live_count(), 2);
        assert_eq!(state.key(new[0].handle), new[0].key.as_ref());
        let payload = state.to_payload().unwrap();
        let back = LiveState::from_payload(&mut Bytes(&payload), &m, ("b".into(), 1, 3)).unwrap();
        assert_eq!(back.handles(), state.handles());
        assert_eq!(back.part(Some(&KeyPart::Int(2))).unwrap().live_count(), 2);
        assert_eq!(back.to_payload().unwrap(), payload);
        // The same bytes do not fit an unpartitioned table.
        let plain = meta(m.key.clone(), None);
        assert!(LiveState::from_payload(&mut Bytes(&payload), &plain, ("b".into(), 1, 3)).is_err());

        // Vector hashes for tables whose rowids VACUUM may renumber.
        let u = meta(KeyShape::UnstableRowid, None);
        let mut state = LiveState::new(Index::new("Flat", 2, Metric::L2).unwrap(), 1, &u);
        state.insert(&rows(&[4, 5]), &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(state.vector_hash(5), Some(vector_hash(&[3.0, 4.0])));
        let payload = state.to_payload().unwrap();
        let back = LiveState::from_payload(&mut Bytes(&payload), &u, ("b".into(), 1, 0)).unwrap();
        assert_eq!(back.vector_hash(4), Some(vector_hash(&[1.0, 2.0])));
    }
}
