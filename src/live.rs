//! A live index: the FAISS index of one `faiss` table, kept in step with its content table
//! through the change log, shared by every connection of the process (ARCHITECTURE.md,
//! "Sync protocol").
//!
//! FAISS labels are *slots*: positions in insertion order, never reused. A slot maps to a
//! content rowid; a deleted or re-vectored row only clears its slot's bit in `live` (a
//! tombstone), so every FAISS index type works the same way, including those that cannot
//! remove vectors (HNSW). `optimize` and `rebuild` compact the slots.

use std::collections::{HashMap, HashSet};

use crate::error::{bail, Error, Result};
use crate::index::{Bitmap, Hit, Index, Metric};
use crate::sqlite::{quote_ident, Cell, Conn, StmtCache};
use crate::store::{config_num, Store, FORMAT_VERSION};
use crate::vector;

/// Vector bytes read per batch while building: FAISS adds a batch in one call, and graph
/// indexes build markedly faster from few large adds (HNSW32, 20,000 × 128-d: 2.05 s in one
/// add, 2.87 s in adds of 8,192), at the price of this much memory beside the index.
const BATCH_BYTES: usize = 256 << 20;
/// Default number of rows sampled to train an index that needs training.
pub const DEFAULT_TRAIN_SIZE: usize = 50_000;
/// A filter with at most this many rows is searched exactly when FAISS returns too few.
const EXACT_FILTER_MAX: usize = 200_000;
const SNAPSHOT_MAGIC: &[u8; 8] = b"VEKTSNP1";
const DEAD: i64 = i64::MIN;

/// What a `faiss` table indexes and how; fixed at creation, stored in `<name>_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub content: String,
    pub column: String,
    /// The content column returned as `id`; `None` returns the rowid.
    pub id_column: Option<String>,
    /// The content table's INTEGER PRIMARY KEY column (its rowid).
    pub pk: String,
    pub factory: String,
    pub metric: Metric,
    pub dim: usize,
    /// Default search parameters, applied to the index when it is loaded.
    pub params: SearchParams,
    pub train_size: usize,
}

impl Meta {
    pub fn to_config(&self) -> Vec<(&'static str, String)> {
        vec![
            ("format", FORMAT_VERSION.to_string()),
            ("content", self.content.clone()),
            ("column", self.column.clone()),
            ("id", self.id_column.clone().unwrap_or_default()),
            ("pk", self.pk.clone()),
            ("factory", self.factory.clone()),
            ("metric", self.metric.name().to_string()),
            ("dim", self.dim.to_string()),
            ("params", self.params.to_string()),
            ("train_size", self.train_size.to_string()),
        ]
    }

    /// The metadata stored by `to_config`; `content` is the table's current name.
    pub fn from_config(config: &HashMap<String, String>, content: String) -> Result<Meta> {
        let format: i64 = config_num(config, "format")?;
        if format != FORMAT_VERSION {
            bail!(
                "stored format {format} is not the format {FORMAT_VERSION} this vekter reads: \
                 recreate the table with this version"
            );
        }
        let text = |key: &str| {
            config
                .get(key)
                .cloned()
                .ok_or_else(|| Error::new(format!("config has no '{key}'")))
        };
        let id = text("id")?;
        Ok(Meta {
            content,
            column: text("column")?,
            id_column: (!id.is_empty()).then_some(id),
            pk: text("pk")?,
            factory: text("factory")?,
            metric: Metric::parse(&text("metric")?)?,
            dim: config_num(config, "dim")?,
            params: SearchParams::parse(&text("params")?)?,
            train_size: config_num(config, "train_size")?,
        })
    }
}

/// Search parameters: FAISS `ParameterSpace` names (`nprobe`, `efSearch`, …) plus vekter's
/// `rerank` (fetch `rerank × k` candidates and re-order them by exact distance).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchParams {
    pub faiss: Vec<(String, f64)>,
    pub rerank: Option<usize>,
}

/// Parameters a query may set for itself, with FAISS's built-in value to restore afterwards.
const PER_QUERY: &[(&str, f64, f64)] = &[
    ("nprobe", 1.0, 65_536.0),
    ("efSearch", 16.0, 16_384.0),
    ("quantizer_efSearch", 16.0, 16_384.0),
];
const MAX_RERANK: usize = 100;

impl SearchParams {
    /// `nprobe` as the only FAISS parameter: IVF indexes take it inside the search's own
    /// `SearchParametersIVF`, so the query shares the index with other searches.
    pub fn nprobe_only(&self) -> Option<usize> {
        match self.faiss.as_slice() {
            [(name, value)] if name == "nprobe" => Some(*value as usize),
            _ => None,
        }
    }

    /// `nprobe=32,efSearch=128,rerank=4` (spaces allowed).
    pub fn parse(text: &str) -> Result<SearchParams> {
        let mut params = SearchParams::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((name, value)) = item.split_once('=') else {
                bail!("search parameter '{item}' is not name=value");
            };
            let (name, value) = (name.trim(), value.trim());
            let number: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    Error::new(format!("search parameter {name}={value}: not a number ≥ 0"))
                })?;
            if name == "rerank" {
                if number < 1.0 || number > MAX_RERANK as f64 || number.fract() != 0.0 {
                    bail!("rerank={value}: must be an integer from 1 to {MAX_RERANK}");
                }
                params.rerank = Some(number as usize);
            } else {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    bail!("'{name}' is not a search parameter name");
                }
                params.faiss.retain(|(n, _)| n != name);
                params.faiss.push((name.to_string(), number));
            }
        }
        Ok(params)
    }

    /// Fail unless every FAISS parameter may be set per query, within its bounds.
    pub fn check_per_query(&self) -> Result<()> {
        for (name, value) in &self.faiss {
            match PER_QUERY.iter().find(|(n, _, _)| n == name) {
                None => bail!(
                    "search parameter '{name}' can only be a table default (params= at \
                     creation); per query: {}, rerank",
                    PER_QUERY.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
                ),
                Some((_, _, max)) if value > max => {
                    bail!("search parameter {name}={value:e} is above its limit {max}")
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for SearchParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut items: Vec<String> = self.faiss.iter().map(|(n, v)| format!("{n}={v}")).collect();
        items.extend(self.rerank.map(|r| format!("rerank={r}")));
        f.write_str(&items.join(","))
    }
}

/// The in-memory index of one `faiss` table at one point of its change log.
pub struct LiveState {
    pub index: Index,
    /// Slot → content rowid (`DEAD` once deleted or superseded).
    slots: Vec<i64>,
    /// Content rowid → its live slot.
    slot_of: HashMap<i64, usize, RowidHash>,
    live: Bitmap,
    /// Every change-log entry up to this sequence number is reflected.
    pub applied_seq: i64,
    /// The change-log position of the stored snapshot it came from (or last saved as).
    pub snapshot_seq: std::sync::atomic::AtomicI64,
    /// Identifies the stored snapshot lineage (new at create, rebuild and compaction).
    pub build_id: String,
    /// Grows with each new lineage, so an older one is never taken for a newer one.
    pub lineage: i64,
    /// Changes when the state changes, so connections can tell their checks are current.
    pub generation: u64,
    /// FAISS's serialized size and vector count when last saved or loaded.
    serialized: std::sync::Mutex<(usize, usize)>,
    /// Rows whose vector could not be indexed (wrong dimension, not finite): reported by
    /// `integrity-check`.
    pub rejected: HashMap<i64, String>,
}

impl LiveState {
    fn new(index: Index, build_id: String) -> LiveState {
        LiveState {
            index,
            slots: Vec::new(),
            slot_of: HashMap::with_hasher(RowidHash::default()),
            live: Bitmap::new(0),
            applied_seq: 0,
            snapshot_seq: 0.into(),
            build_id,
            lineage: 0,
            generation: next_generation(),
            serialized: Default::default(),
            rejected: HashMap::new(),
        }
    }

    /// Approximate memory held: FAISS's part scaled from its last serialized size (for the
    /// common index types what they keep in memory: vectors or codes, links, centroids), plus
    /// the slot table and maps.
    pub fn memory_bytes(&self) -> usize {
        let (bytes, n) = *self.serialized.lock().expect("size lock");
        let per_vector = bytes.checked_div(n).unwrap_or(self.index.dim() * 4);
        let faiss = bytes + self.slots.len().saturating_sub(n) * per_vector;
        faiss + self.slots.len() * 8 + self.slot_of.len() * 24
    }

    pub fn live_count(&self) -> usize {
        self.slot_of.len()
    }

    pub fn dead_count(&self) -> usize {
        self.slots.len() - self.slot_of.len()
    }

    /// Live rowids, ascending.
    pub fn rowids(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.slot_of.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn remove(&mut self, rowid: i64) {
        if let Some(slot) = self.slot_of.remove(&rowid) {
            self.slots[slot] = DEAD;
            self.live.set(slot, false);
        }
        self.rejected.remove(&rowid);
    }

    /// Index `rowids` with `vectors` (row-major), replacing any earlier vector of each.
    fn insert(&mut self, rowids: &[i64], vectors: &[f32]) -> Result<()> {
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
        Ok(())
    }

    /// Apply changed rows: `None` (row gone or vector NULL) removes, `Some` re-indexes.
    fn apply(&mut self, rows: Vec<(i64, Changed)>, upto: i64) -> Result<()> {
        let mut rowids = Vec::new();
        let mut vectors = Vec::new();
        for (rowid, change) in &rows {
            if let Changed::Vector(v) = change {
                rowids.push(*rowid);
                vectors.extend_from_slice(v);
            }
        }
        self.insert(&rowids, &vectors)?;
        for (rowid, change) in rows {
            match change {
                Changed::Vector(_) => {}
                Changed::Gone => self.remove(rowid),
                Changed::Rejected(why) => {
                    self.remove(rowid);
                    self.rejected.insert(rowid, why);
                }
            }
        }
        self.applied_seq = self.applied_seq.max(upto);
        self.generation = next_generation();
        Ok(())
    }

    /// The snapshot payload: FAISS's bytes and the slot table.
    pub fn encode_payload(&self) -> Result<Vec<u8>> {
        let faiss = self.index.to_bytes()?;
        *self.serialized.lock().expect("size lock") = (faiss.len(), self.slots.len());
        let mut out = Vec::with_capacity(24 + faiss.len() + self.slots.len() * 8);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&(faiss.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.slots.len() as u64).to_le_bytes());
        out.extend_from_slice(&faiss);
        for s in &self.slots {
            out.extend_from_slice(&s.to_le_bytes());
        }
        Ok(out)
    }

    /// A state from a verified payload.
    pub fn from_payload(
        payload: &[u8],
        meta: &Meta,
        build_id: String,
        seq: i64,
    ) -> Result<LiveState> {
        Self::from_source(&mut Bytes(payload), meta, build_id, seq)
    }

    /// [`from_payload`](Self::from_payload) from a verified stored snapshot, read piece by
    /// piece: FAISS reads its part straight from SQLite.
    pub fn from_snapshot(
        snapshot: &mut crate::store::Snapshot,
        meta: &Meta,
        build_id: String,
        seq: i64,
    ) -> Result<LiveState> {
        Self::from_source(snapshot, meta, build_id, seq)
    }

    fn from_source(
        source: &mut dyn PayloadSource,
        meta: &Meta,
        build_id: String,
        seq: i64,
    ) -> Result<LiveState> {
        let corrupt = |what: &str| Error::new(format!("stored snapshot is damaged: {what}"));
        let len = source.len();
        let mut header = [0u8; 24];
        if len < 24 {
            return Err(corrupt("bad header"));
        }
        source.read_at(0, &mut header)?;
        if &header[..8] != SNAPSHOT_MAGIC {
            return Err(corrupt("bad header"));
        }
        let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8"));
        let (faiss_len, nslots) = (word(8) as usize, word(16) as usize);
        let slots_at = 24usize
            .checked_add(faiss_len)
            .filter(|&end| Some(end) <= len.checked_sub(nslots.saturating_mul(8)))
            .ok_or_else(|| corrupt("lengths do not add up"))?;
        if slots_at + nslots * 8 != len {
            return Err(corrupt("lengths do not add up"));
        }
        let index = source.index(24..slots_at, meta.metric)?;
        if index.dim() != meta.dim || index.ntotal() != nslots {
            return Err(corrupt("index does not match its slot table"));
        }
        let mut slot_bytes = vec![0u8; nslots * 8];
        source.read_at(slots_at, &mut slot_bytes)?;
        let mut state = LiveState::new(index, build_id);
        state.serialized = (faiss_len, nslots).into();
        state.slots = slot_bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
            .collect();
        state.live = Bitmap::new(nslots);
        for (slot, &rowid) in state.slots.iter().enumerate() {
            if rowid != DEAD {
                if state.slot_of.insert(rowid, slot).is_some() {
                    return Err(corrupt("a rowid appears twice"));
                }
                state.live.set(slot, true);
            }
        }
        state.applied_seq = seq;
        state.snapshot_seq = seq.into();
        Ok(state)
    }
}

/// Where a snapshot payload is read from: a buffer, or the verified chunks in SQLite.
trait PayloadSource {
    fn len(&self) -> usize;
    fn read_at(&mut self, offset: usize, dest: &mut [u8]) -> Result<()>;
    /// The FAISS index serialized in `range`.
    fn index(&mut self, range: std::ops::Range<usize>, metric: Metric) -> Result<Index>;
}

struct Bytes<'a>(&'a [u8]);

impl PayloadSource for Bytes<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn read_at(&mut self, offset: usize, dest: &mut [u8]) -> Result<()> {
        dest.copy_from_slice(&self.0[offset..offset + dest.len()]);
        Ok(())
    }

    fn index(&mut self, range: std::ops::Range<usize>, metric: Metric) -> Result<Index> {
        Index::from_bytes(&self.0[range], metric)
    }
}

impl PayloadSource for crate::store::Snapshot {
    fn len(&self) -> usize {
        crate::store::Snapshot::len(self)
    }

    fn read_at(&mut self, offset: usize, dest: &mut [u8]) -> Result<()> {
        crate::store::Snapshot::read_at(self, offset, dest)
    }

    fn index(&mut self, range: std::ops::Range<usize>, metric: Metric) -> Result<Index> {
        let mut reader = crate::store::SnapshotRange {
            snapshot: self,
            pos: range.start,
            end: range.end,
        };
        Index::from_reader(&mut reader, metric)
    }
}

/// Hashing for rowid keys: a keyed 64-bit mix, several times faster than SipHash on the
/// million inserts of a snapshot load. The key is random per process, so a crafted database
/// file cannot precompute rowids that collide.
#[derive(Clone)]
pub struct RowidHash(u64);

impl Default for RowidHash {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        static KEY: once_cell::sync::Lazy<u64> = once_cell::sync::Lazy::new(|| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x7665_6b74_6572);
            h.finish() | 1
        });
        RowidHash(*KEY)
    }
}

impl std::hash::BuildHasher for RowidHash {
    type Hasher = RowidHasher;
    fn build_hasher(&self) -> RowidHasher {
        RowidHasher(self.0)
    }
}

pub struct RowidHasher(u64);

impl std::hash::Hasher for RowidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }

    fn write_u64(&mut self, x: u64) {
        // splitmix64's finalizer over the keyed value: a bijection, so distinct rowids never
        // collide in full, and the key hides which rowids share buckets.
        let mut z = (x ^ self.0).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        self.0 = z ^ (z >> 31);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What a logged row looks like now.
enum Changed {
    Vector(Vec<f32>),
    Gone,
    Rejected(String),
}

fn next_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
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

/// The content table's rows as an index would see them.
pub struct ContentRows {
    /// Rowids with an indexable vector, ascending.
    pub good: Vec<i64>,
    /// Rows with a vector that cannot be indexed, and why.
    pub bad: Vec<(i64, String)>,
}

/// One `faiss` table seen from one connection: where it lives and what it indexes.
pub struct LiveTable {
    pub conn: Conn,
    pub schema: String,
    pub name: String,
    pub meta: Meta,
    /// Statements run on every search (ids, vectors of candidates), prepared once.
    stmts: StmtCache,
}

impl LiveTable {
    pub fn new(conn: Conn, schema: &str, name: &str, meta: Meta) -> LiveTable {
        LiveTable {
            conn,
            schema: schema.to_string(),
            name: name.to_string(),
            meta,
            stmts: StmtCache::default(),
        }
    }

    pub fn store(&self) -> Store {
        Store::new(self.conn, &self.schema, &self.name)
    }

    /// Read `faiss` table `name`'s metadata.
    pub fn open(conn: Conn, schema: &str, name: &str) -> Result<LiveTable> {
        let store = Store::new(conn, schema, name);
        let config = store
            .config()
            .map_err(|e| e.context(format!("faiss table '{name}' has no readable config")))?;
        // Without its trigger the content table is gone: the table can still be opened, and
        // dropped; searches fail on the missing content table.
        let content = match store.content_table()? {
            Some(content) => content,
            None => config.get("content").cloned().unwrap_or_default(),
        };
        let meta = Meta::from_config(&config, content)
            .map_err(|e| e.context(format!("faiss table '{name}'")))?;
        Ok(LiveTable::new(conn, schema, name, meta))
    }

    fn content_sql(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(&self.meta.content)
        )
    }

    /// Read `(rowid, vector)` of content rows in rowid order, `BATCH_BYTES` at a time, through
    /// `batch`. Rows that `keep` rejects or whose vector is NULL are skipped; a bad vector is
    /// an error naming the row.
    fn scan(
        &self,
        mut keep: impl FnMut(i64) -> bool,
        mut batch: impl FnMut(&[i64], &[f32]) -> Result<()>,
    ) -> Result<usize> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT rowid, {} FROM {} WHERE {} IS NOT NULL ORDER BY rowid",
            quote_ident(&self.meta.column),
            self.content_sql(),
            quote_ident(&self.meta.column)
        ))?;
        let (mut rowids, mut vectors, mut total) = (Vec::new(), Vec::new(), 0usize);
        while stmt.step()? {
            let Cell::Integer(rowid) = stmt.cell(0) else {
                continue;
            };
            if !keep(rowid) {
                continue;
            }
            let dim = vector::append(stmt.cell(1), &mut vectors)
                .map_err(|e| e.context(self.row_context(rowid)))?;
            if dim != self.meta.dim {
                bail!(
                    "{}: vector has {dim} dimensions, the index has {}",
                    self.row_context(rowid),
                    self.meta.dim
                );
            }
            rowids.push(rowid);
            if vectors.len() * std::mem::size_of::<f32>() >= BATCH_BYTES {
                batch(&rowids, &vectors)?;
                total += rowids.len();
                rowids.clear();
                vectors.clear();
            }
        }
        if !rowids.is_empty() {
            batch(&rowids, &vectors)?;
            total += rowids.len();
        }
        Ok(total)
    }

    fn row_context(&self, rowid: i64) -> String {
        format!("{}.{} of row {rowid}", self.meta.content, self.meta.column)
    }

    /// The dimension of the first stored vector, if any.
    pub fn first_dim(&self) -> Result<Option<usize>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {0} FROM {1} WHERE {0} IS NOT NULL ORDER BY rowid LIMIT 1",
            quote_ident(&self.meta.column),
            self.content_sql()
        ))?;
        if !stmt.step()? {
            return Ok(None);
        }
        vector::parse(stmt.cell(0))
            .map(|v| Some(v.len()))
            .map_err(|e| e.context(format!("first vector of {}", self.meta.content)))
    }

    /// Build a new index from every content row: train on a seeded sample when the factory
    /// needs it, then add all vectors.
    pub fn build(&self) -> Result<LiveState> {
        let meta = &self.meta;
        let mut index = Index::new(&meta.factory, meta.dim, meta.metric)?;
        if !index.is_trained() {
            let sample = self.training_sample()?;
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
        let mut state = LiveState::new(index, new_build_id());
        self.fill(&mut state)?;
        Ok(state)
    }

    /// Add every content row to a fresh state, as of the change log's current end: the new
    /// lineage that `save` then stores.
    fn fill(&self, state: &mut LiveState) -> Result<()> {
        let store = self.store();
        let lineage: i64 = store
            .config()
            .ok()
            .and_then(|c| c.get("lineage").and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        state.lineage = lineage + 1;
        state.applied_seq = store.max_seq()?;
        self.scan(|_| true, |rowids, vectors| state.insert(rowids, vectors))?;
        apply_params(&mut state.index, &self.meta.params.faiss)
    }

    /// A new lineage from `empty` (a trained index with no vectors, see
    /// `Index::empty_copy`) refilled from the content table: no retraining, no tombstones,
    /// every visible change in. A new build id makes other processes reload it.
    pub fn compact(&self, empty: Index) -> Result<LiveState> {
        let mut state = LiveState::new(empty, new_build_id());
        self.fill(&mut state)?;
        Ok(state)
    }

    /// Rowids of content rows that have a vector, and each row whose vector cannot be indexed
    /// with the reason.
    pub fn content_rows(&self) -> Result<ContentRows> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT rowid, {0} FROM {1} WHERE {0} IS NOT NULL ORDER BY rowid",
            quote_ident(&self.meta.column),
            self.content_sql()
        ))?;
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        let mut buf = Vec::new();
        while stmt.step()? {
            let Cell::Integer(rowid) = stmt.cell(0) else {
                continue;
            };
            buf.clear();
            match vector::append(stmt.cell(1), &mut buf) {
                Ok(d) if d == self.meta.dim => good.push(rowid),
                Ok(d) => bad.push((
                    rowid,
                    format!("{d} dimensions, the index has {}", self.meta.dim),
                )),
                Err(e) => bad.push((rowid, e.message().to_string())),
            }
        }
        Ok(ContentRows { good, bad })
    }

    /// Up to `train_size` vectors chosen by a seeded shuffle of the rowids (reproducible).
    fn training_sample(&self) -> Result<Vec<f32>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT rowid FROM {} WHERE {} IS NOT NULL ORDER BY rowid",
            self.content_sql(),
            quote_ident(&self.meta.column)
        ))?;
        let mut rowids = Vec::new();
        while stmt.step()? {
            if let Cell::Integer(r) = stmt.cell(0) {
                rowids.push(r);
            }
        }
        drop(stmt);
        let want = self.meta.train_size.min(rowids.len());
        let mut rng = 0x5EED_u64 ^ (rowids.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for i in 0..want {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let j = i + (rng % (rowids.len() - i) as u64) as usize;
            rowids.swap(i, j);
        }
        let chosen: HashSet<i64> = rowids[..want].iter().copied().collect();
        let mut sample = Vec::with_capacity(want * self.meta.dim);
        self.scan(
            |r| chosen.contains(&r),
            |_, v| {
                sample.extend_from_slice(v);
                Ok(())
            },
        )?;
        Ok(sample)
    }

    /// Write `state` as the stored snapshot, folding the change log up to `seq`.
    /// `state` must reflect every change up to `seq` (built, compacted, or synced to it).
    pub fn save(&self, state: &LiveState, seq: i64) -> Result<()> {
        let store = self.store();
        let payload = state.encode_payload()?;
        state
            .snapshot_seq
            .store(seq, std::sync::atomic::Ordering::Relaxed);
        let mut config = store.write_snapshot(&payload)?;
        config.push(("snapshot_seq", seq.to_string()));
        config.push(("build_id", state.build_id.clone()));
        config.push(("lineage", state.lineage.to_string()));
        store.set_config(&config)?;
        store.truncate_changes(seq)
    }

    /// The stored snapshot with the change log replayed on top: the index as this connection
    /// sees it, without retraining or reading the whole content table.
    fn load(&self) -> Result<LiveState> {
        let store = self.store();
        let config = store.config()?;
        let mut snapshot = store
            .open_snapshot(&config)
            .map_err(|e| e.context(format!("faiss table '{}'", self.name)))?;
        let seq = config_num(&config, "snapshot_seq")?;
        let build_id = config.get("build_id").cloned().unwrap_or_default();
        let mut state = LiveState::from_snapshot(&mut snapshot, &self.meta, build_id, seq)
            .map_err(|e| e.context(format!("faiss table '{}'", self.name)))?;
        drop(snapshot);
        state.lineage = config_num(&config, "lineage").unwrap_or(0);
        apply_params(&mut state.index, &self.meta.params.faiss)?;
        let upto = store.max_seq()?;
        let rows = self.changed_rows(seq, upto)?;
        state.apply(rows, upto)?;
        Ok(state)
    }

    /// Each rowid logged in `(after, upto]` with what its row holds now.
    fn changed_rows(&self, after: i64, upto: i64) -> Result<Vec<(i64, Changed)>> {
        let mut rows = Vec::new();
        if upto <= after {
            return Ok(rows);
        }
        let dim = self.meta.dim;
        self.store().changed_rows(
            &self.meta.content,
            &self.meta.column,
            after,
            upto,
            |rowid, cell| {
                let change = match cell {
                    Cell::Null => Changed::Gone,
                    cell => match vector::parse(cell) {
                        Ok(v) if v.len() == dim => Changed::Vector(v),
                        Ok(v) => Changed::Rejected(format!(
                            "vector has {} dimensions, the index has {dim}",
                            v.len()
                        )),
                        Err(e) => Changed::Rejected(e.message().to_string()),
                    },
                };
                rows.push((rowid, change));
                Ok(())
            },
        )?;
        Ok(rows)
    }

    /// Vectors of `rowids` as this connection sees them (missing or NULL rows left out).
    pub fn vectors_of(&self, rowids: &[i64]) -> Result<Vec<(i64, Vec<f32>)>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE rowid = ?1",
            quote_ident(&self.meta.column),
            self.content_sql()
        );
        self.stmts.with(self.conn, &sql, |stmt| {
            let mut out = Vec::with_capacity(rowids.len());
            for &rowid in rowids {
                stmt.bind_i64(1, rowid)?;
                if stmt.step()? && stmt.cell(0) != Cell::Null {
                    if let Ok(v) = vector::parse(stmt.cell(0)) {
                        if v.len() == self.meta.dim {
                            out.push((rowid, v));
                        }
                    }
                }
                stmt.reset();
            }
            Ok(out)
        })
    }

    /// The `id` of each rowid (the rowid itself when the table has no id column); `None` for
    /// a rowid this connection cannot see in the content table (a row deleted in a way no
    /// trigger saw, or one committed after this connection's read snapshot began).
    pub fn ids_of(&self, rowids: &[i64]) -> Result<Vec<Option<crate::json::IdValue>>> {
        let id = self
            .meta
            .id_column
            .as_deref()
            .map_or("rowid".to_string(), quote_ident);
        let sql = format!("SELECT {id} FROM {} WHERE rowid = ?1", self.content_sql());
        self.stmts.with(self.conn, &sql, |stmt| {
            let mut out = Vec::with_capacity(rowids.len());
            for &rowid in rowids {
                stmt.bind_i64(1, rowid)?;
                out.push(if stmt.step()? {
                    Some(crate::content::id_value(stmt.cell(0))?)
                } else {
                    None
                });
                stmt.reset();
            }
            Ok(out)
        })
    }
}

fn apply_params(index: &mut Index, params: &[(String, f64)]) -> Result<()> {
    for (name, value) in params {
        index.set_parameter(name, *value)?;
    }
    Ok(())
}

/// Rows changed by this connection's open write transaction (or committed by others and not
/// yet in the shared state): searched exactly, and hidden in the shared index.
#[derive(Default)]
pub struct Overlay {
    changed: HashSet<i64>,
    rows: Vec<(i64, Vec<f32>)>,
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }

    /// Turn the shared state's set of indexed rowids into this connection's.
    pub fn apply_to(&self, indexed: &mut HashSet<i64>) {
        for r in &self.changed {
            indexed.remove(r);
        }
        indexed.extend(self.rows.iter().map(|(r, _)| *r));
    }
}

/// The state a search runs on.
pub enum StateRef<'a> {
    Shared(std::sync::RwLockReadGuard<'a, Option<LiveState>>),
    Exclusive(std::sync::RwLockWriteGuard<'a, Option<LiveState>>),
    Own(Box<LiveState>),
}

impl StateRef<'_> {
    pub fn get(&self) -> &LiveState {
        match self {
            StateRef::Shared(g) => g.as_ref().expect("loaded"),
            StateRef::Exclusive(g) => g.as_ref().expect("loaded"),
            StateRef::Own(s) => s,
        }
    }

    /// The state for changes: `None` when it is only shared for reading.
    pub fn get_mut(&mut self) -> Option<&mut LiveState> {
        match self {
            StateRef::Shared(_) => None,
            StateRef::Exclusive(g) => g.as_mut(),
            StateRef::Own(s) => Some(s),
        }
    }
}

/// The shared slot of one `faiss` table in the registry.
pub type LiveSlot = std::sync::RwLock<Option<LiveState>>;

/// What a sync did, for the registry's counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct SyncReport {
    pub loaded: bool,
    pub applied: usize,
}

impl LiveTable {
    /// Bring `slot` up to date with what this connection sees and return the state to search
    /// (held exclusively when `exclusive`), plus rows only this connection sees.
    pub fn sync<'a>(
        &self,
        slot: &'a LiveSlot,
        exclusive: bool,
        report: &mut SyncReport,
    ) -> Result<(StateRef<'a>, Overlay)> {
        /// What the shared state lacks for this connection.
        enum Need {
            Ready,
            Apply(i64),
            Reload,
            /// This connection reads an older database snapshot than the shared state shows.
            Behind,
        }
        let store = self.store();
        let config = store.config()?;
        let build_id = config.get("build_id").cloned().unwrap_or_default();
        let lineage: i64 = config_num(&config, "lineage").unwrap_or(0);
        let snapshot_seq: i64 = config_num(&config, "snapshot_seq")?;
        let max_seq = store.max_seq()?;
        let private = self.conn.in_write_transaction(&self.schema);
        for _ in 0..4 {
            let need = match slot.read().expect("index lock").as_ref() {
                None => Need::Reload,
                Some(s) if s.build_id == build_id => match s.applied_seq {
                    a if a < snapshot_seq => Need::Reload,
                    a if a > max_seq => Need::Behind,
                    a if a == max_seq => Need::Ready,
                    a => Need::Apply(a),
                },
                Some(s) if s.lineage > lineage => Need::Behind,
                Some(_) => Need::Reload,
            };
            match need {
                Need::Ready => return Ok((lock(slot, exclusive), Overlay::default())),
                // Rows it cannot see yet, or uncommitted ones, must not meet the shared state:
                // a private copy as this connection sees the database.
                Need::Behind | Need::Reload if private || matches!(need, Need::Behind) => {
                    report.loaded = true;
                    return Ok((StateRef::Own(Box::new(self.load()?)), Overlay::default()));
                }
                Need::Apply(after) if private => {
                    let mut overlay = Overlay::default();
                    for (rowid, change) in self.changed_rows(after, max_seq)? {
                        overlay.changed.insert(rowid);
                        if let Changed::Vector(v) = change {
                            overlay.rows.push((rowid, v));
                        }
                    }
                    return Ok((lock(slot, exclusive), overlay));
                }
                Need::Reload | Need::Behind => {
                    let fresh = self.load()?;
                    report.loaded = true;
                    let mut guard = slot.write().expect("index lock");
                    let replace = guard.as_ref().is_none_or(|s| {
                        if s.build_id == fresh.build_id {
                            s.applied_seq < fresh.applied_seq
                        } else {
                            s.lineage <= fresh.lineage
                        }
                    });
                    if replace {
                        *guard = Some(fresh);
                    }
                }
                Need::Apply(after) => {
                    let rows = self.changed_rows(after, max_seq)?;
                    let mut guard = slot.write().expect("index lock");
                    if let Some(s) = guard.as_mut() {
                        if s.build_id == build_id && s.applied_seq == after {
                            report.applied += rows.len();
                            s.apply(rows, max_seq)?;
                        }
                    }
                }
            }
        }
        bail!(
            "faiss table '{}': the index kept changing during the search",
            self.name
        )
    }
}

/// The shared state, for reading or (per-query parameters, commands) exclusively.
pub fn lock(slot: &LiveSlot, exclusive: bool) -> StateRef<'_> {
    if exclusive {
        StateRef::Exclusive(slot.write().expect("index lock"))
    } else {
        StateRef::Shared(slot.read().expect("index lock"))
    }
}

/// One k-nearest-neighbour request.
#[derive(Clone, Copy)]
pub struct Query<'a> {
    pub vector: &'a [f32],
    pub k: usize,
    /// Only these rowids may be returned (`rowid IN (…)`).
    pub filter: Option<&'a HashSet<i64>>,
    pub params: &'a SearchParams,
}

impl Query<'_> {
    /// True when the query changes FAISS parameters and needs the index to itself (an
    /// nprobe-only query first tries a shared lock: see [`LiveTable::search`]).
    pub fn exclusive(&self) -> bool {
        !self.params.faiss.is_empty() && self.params.nprobe_only().is_none()
    }
}

impl LiveTable {
    /// The `k` nearest rows as `(rowid, score)`, nearest first. `None` when the query sets
    /// parameters that need the index exclusively but `state` is shared: ask again with it.
    pub fn search(
        &self,
        state: &mut StateRef,
        overlay: &Overlay,
        query: &Query,
    ) -> Result<Option<Vec<(i64, f32)>>> {
        query.params.check_per_query()?;
        if query.vector.len() != self.meta.dim {
            bail!(
                "query vector has {} dimensions but the index has {}",
                query.vector.len(),
                self.meta.dim
            );
        }
        let rerank = query.params.rerank.or(self.meta.params.rerank).unwrap_or(1);
        let fetch = query.k.saturating_mul(rerank);
        let nprobe = query
            .params
            .nprobe_only()
            .filter(|_| state.get().index.is_ivf());
        let mut hits = if query.params.faiss.is_empty() || nprobe.is_some() {
            self.search_state(state.get(), overlay, query, fetch, nprobe)?
        } else {
            let Some(s) = state.get_mut() else {
                return Ok(None);
            };
            let applied = apply_params(&mut s.index, &query.params.faiss);
            let result = applied.and_then(|()| self.search_state(s, overlay, query, fetch, None));
            let restore: Vec<(String, f64)> = query
                .params
                .faiss
                .iter()
                .map(|(name, _)| {
                    let default = self.meta.params.faiss.iter().find(|(n, _)| n == name);
                    let builtin = PER_QUERY.iter().find(|(n, _, _)| n == name);
                    (
                        name.clone(),
                        default.map_or(builtin.map_or(0.0, |b| b.1), |d| d.1),
                    )
                })
                .collect();
            // Restore even when setting or searching failed: nothing may leak into later
            // searches or into a saved snapshot.
            for (name, value) in &restore {
                let _ = s.index.set_parameter(name, *value);
            }
            result?
        };
        if rerank > 1 && !hits.is_empty() {
            hits = self.rerank(state.get(), query.vector, &hits)?;
        }
        hits.truncate(query.k);
        Ok(Some(hits))
    }

    /// Up to `fetch` candidates from FAISS plus the overlay, nearest first.
    fn search_state(
        &self,
        state: &LiveState,
        overlay: &Overlay,
        query: &Query,
        fetch: usize,
        nprobe: Option<usize>,
    ) -> Result<Vec<(i64, f32)>> {
        let index = &state.index;
        // Which slots may be returned: live ones, minus rows the overlay replaces, within the
        // filter. `None` means every slot.
        use std::borrow::Cow;
        let allowed: Option<Cow<Bitmap>> = if let Some(filter) = query.filter {
            let mut b = Bitmap::new(state.slots.len());
            for rowid in filter {
                if let Some(&slot) = state.slot_of.get(rowid) {
                    b.set(slot, !overlay.changed.contains(rowid));
                }
            }
            Some(Cow::Owned(b))
        } else if !overlay.changed.is_empty() {
            let mut b = state.live.clone();
            for rowid in &overlay.changed {
                if let Some(&slot) = state.slot_of.get(rowid) {
                    b.set(slot, false);
                }
            }
            Some(Cow::Owned(b))
        } else if state.dead_count() > 0 {
            Some(Cow::Borrowed(&state.live))
        } else {
            None
        };
        let available = allowed
            .as_ref()
            .map_or(state.live_count(), |b| b.count_ones());
        let want = fetch.min(available);
        let mut hits = if want == 0 {
            Vec::new()
        } else {
            match index.search_selected(query.vector, fetch, allowed.as_deref(), nprobe) {
                Ok(hits) => hits,
                // Index types without selector support: filter FAISS's results ourselves.
                Err(_) if allowed.is_some() => post_filter(
                    index,
                    query.vector,
                    fetch,
                    allowed.as_ref().expect("some"),
                    nprobe,
                )?,
                Err(e) => return Err(e),
            }
        };
        if hits.len() < want {
            // An approximate index can miss filtered rows: search the allowed rows exactly.
            if let (Some(filter), true) = (query.filter, available <= EXACT_FILTER_MAX) {
                let rowids: Vec<i64> = filter
                    .iter()
                    .copied()
                    .filter(|r| state.slot_of.contains_key(r) && !overlay.changed.contains(r))
                    .collect();
                return Ok(merge(
                    index,
                    self.exact(index, query.vector, &self.vectors_of(&rowids)?),
                    self.overlay_hits(index, overlay, query),
                    fetch,
                ));
            }
            if let Some(b) = &allowed {
                hits = post_filter(index, query.vector, fetch, b, nprobe)?;
            }
        }
        let base: Vec<(i64, f32)> = hits
            .iter()
            .filter_map(|h| {
                let rowid = *state.slots.get(h.label as usize)?;
                (rowid != DEAD).then_some((rowid, h.score))
            })
            .collect();
        Ok(merge(
            index,
            base,
            self.overlay_hits(index, overlay, query),
            fetch,
        ))
    }

    fn overlay_hits(&self, index: &Index, overlay: &Overlay, query: &Query) -> Vec<(i64, f32)> {
        let rows: Vec<(i64, Vec<f32>)> = overlay
            .rows
            .iter()
            .filter(|(r, _)| query.filter.is_none_or(|f| f.contains(r)))
            .cloned()
            .collect();
        self.exact(index, query.vector, &rows)
    }

    fn exact(&self, index: &Index, query: &[f32], rows: &[(i64, Vec<f32>)]) -> Vec<(i64, f32)> {
        rows.iter()
            .map(|(rowid, v)| (*rowid, index.exact_score(query, v)))
            .collect()
    }

    /// Re-order candidates by exact distance computed from the content table's vectors.
    fn rerank(
        &self,
        state: &LiveState,
        query: &[f32],
        hits: &[(i64, f32)],
    ) -> Result<Vec<(i64, f32)>> {
        let rowids: Vec<i64> = hits.iter().map(|h| h.0).collect();
        let exact = self.exact(&state.index, query, &self.vectors_of(&rowids)?);
        Ok(merge(&state.index, exact, Vec::new(), usize::MAX))
    }
}

/// Search without a selector, keeping allowed labels, fetching more until enough are found.
fn post_filter(
    index: &Index,
    query: &[f32],
    fetch: usize,
    allowed: &Bitmap,
    nprobe: Option<usize>,
) -> Result<Vec<Hit>> {
    let mut k = fetch.max(16);
    loop {
        let hits: Vec<Hit> = index
            .search_selected(query, k, None, nprobe)?
            .into_iter()
            .filter(|h| allowed.get(h.label as usize))
            .collect();
        if hits.len() >= fetch || k >= index.ntotal() {
            return Ok(hits.into_iter().take(fetch).collect());
        }
        k = k.saturating_mul(4).min(index.ntotal());
    }
}

/// Two candidate lists merged nearest first (ties by rowid), at most `limit` long.
fn merge(index: &Index, a: Vec<(i64, f32)>, b: Vec<(i64, f32)>, limit: usize) -> Vec<(i64, f32)> {
    let mut all: Vec<Hit> = a
        .into_iter()
        .chain(b)
        .map(|(label, score)| Hit { label, score })
        .collect();
    index.sort_hits(&mut all);
    all.truncate(limit);
    all.into_iter().map(|h| (h.label, h.score)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_print() {
        let p = SearchParams::parse(" nprobe = 32, efSearch=128 ,rerank=4").unwrap();
        assert_eq!(
            p.faiss,
            vec![("nprobe".into(), 32.0), ("efSearch".into(), 128.0)]
        );
        assert_eq!(p.rerank, Some(4));
        assert_eq!(p.to_string(), "nprobe=32,efSearch=128,rerank=4");
        assert_eq!(SearchParams::parse("").unwrap(), SearchParams::default());
        for bad in [
            "nprobe",
            "nprobe=x",
            "rerank=0",
            "rerank=1000",
            "a b=1",
            "nprobe=-1",
        ] {
            assert!(SearchParams::parse(bad).is_err(), "{bad}");
        }
        assert!(SearchParams::parse("efSearch=99999")
            .unwrap()
            .check_per_query()
            .is_err());
        assert!(SearchParams::parse("ht=3")
            .unwrap()
            .check_per_query()
            .is_err());
    }

    #[test]
    fn payload_roundtrip_and_damage() {
        let meta = Meta {
            content: "t".into(),
            column: "v".into(),
            id_column: None,
            pk: "id".into(),
            factory: "Flat".into(),
            metric: Metric::L2,
            dim: 2,
            params: SearchParams::default(),
            train_size: 10,
        };
        let mut state = LiveState::new(Index::new("Flat", 2, Metric::L2).unwrap(), "b".into());
        state
            .insert(&[10, 20, 30], &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
            .unwrap();
        state.apply(vec![(20, Changed::Gone)], 5).unwrap();
        let payload = state.encode_payload().unwrap();
        let back = LiveState::from_payload(&payload, &meta, "b".into(), 5).unwrap();
        assert_eq!(back.rowids(), vec![10, 30]);
        assert_eq!(back.dead_count(), 1);
        for cut in [0, 10, 30, payload.len() - 1] {
            assert!(LiveState::from_payload(&payload[..cut], &meta, "b".into(), 5).is_err());
        }
    }
}
