//! Building an index from the content table: training on a seeded sample when the factory
//! needs it, then adding every row in large batches; and compaction, which refills a trained
//! index without retraining.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::error::{bail, Error, Result};
use crate::index::Index;
use crate::interrupt::{self, Watch};
use crate::progress::Task;
use crate::sqlite::{quote_ident, Cell};
use xxhash_rust::xxh3::Xxh3;

use super::config::{Config, Key};
use super::content::Rejected;
use super::key::vector_hash;
use super::params;
use super::state::{LiveState, NewRow};
use super::LiveTable;

/// The most vector bytes read per batch while building (FAISS adds a batch in one call; see
/// [`Pace`] for how many rows a batch has), and per batch of a large catch-up with the change
/// log of an index other than Flat.
pub(crate) const BATCH_BYTES: usize = 256 << 20;
/// The time one batch of a build should take to add (see [`Pace`]).
const BATCH_SECONDS: f64 = 0.25;
/// The vector bytes of one batch of a build whose index is the same however its rows are
/// batched (all but graphs): a fixed size, so that the batches are the same on every node.
const FIXED_BATCH_BYTES: usize = 4 << 20;
/// The rows of one batch of a deterministic graph build (`deterministic = 1`): FAISS's HNSW
/// inserts each batch's rows in an order of its own, so the batches must not depend on time.
/// About 0.1 s of HNSW32 over 128-d on one core, so an interrupt is seen between two.
const DETERMINISTIC_GRAPH_BATCH_ROWS: usize = 1024;

/// Whether the factory's training sums in OpenBLAS/LAPACK calls split by thread count: a
/// learnt linear transform (OPQ, PCA, ITQ, random rotation) or an additive quantizer.
fn transform_trained(factory: &str) -> bool {
    let f = factory.to_ascii_uppercase();
    // Additive quantizers (LSQ, RQ, PRQ) solve least squares with LAPACK in training too.
    ["OPQ", "PCA", "ITQ", "RR", "LSQ", "RQ"]
        .iter()
        .any(|t| f.contains(t))
}

/// Whether `meta`'s index is a graph that must come out the same on every node
/// (`deterministic = 1`): built on one thread in fixed batches, compacted from a fresh copy.
pub(crate) fn deterministic_graph(meta: &super::config::Meta) -> bool {
    meta.deterministic && batch_sensitive(&meta.factory)
}

/// The trained, empty index a compaction or refill of `state` starts from: a copy, or for a
/// deterministic graph one read back from its serialization (a copy would carry on FAISS's
/// random levels).
pub(crate) fn empty_for(meta: &super::config::Meta, state: &LiveState) -> Result<Index> {
    match deterministic_graph(meta) {
        true => state.fresh_empty_copy(),
        false => state.empty_copy(),
    }
}

/// Whether FAISS builds a different index from the same rows added in different batches, or
/// by more than one thread: graph indexes (HNSW, NSG), which insert each batch in their own
/// order and in parallel.
pub(crate) fn batch_sensitive(factory: &str) -> bool {
    let f = factory.to_ascii_uppercase();
    f.contains("HNSW") || f.contains("NSG")
}

/// The rows of the next batch of a build: as many as FAISS adds in about [`BATCH_SECONDS`],
/// from what the last batch took (HNSW32 adds about 10,000 rows of 128-d a second on one
/// core, a Flat index millions). Batch size hardly changes FAISS's speed (HNSW32, 60,000 ×
/// 128-d on 2 cores: 5.0 s in one add, 5.1 s in adds of 2,000).
#[derive(Clone)]
struct Pace {
    rows: std::cell::Cell<usize>,
    /// The most vector bytes of a batch.
    bytes: usize,
    /// Sized by time (graph builds); else the size stays fixed.
    paced: bool,
}

impl Pace {
    const FIRST: usize = 4096;
    const MIN: usize = 1024;
    const MAX: usize = 1 << 20;

    /// The batches of a build of `meta`'s index: paced for a graph (unless `deterministic`),
    /// fixed otherwise.
    fn for_build(meta: &super::config::Meta) -> Pace {
        let rows = match (batch_sensitive(&meta.factory), meta.deterministic) {
            (true, false) => return Pace::fixed(Self::FIRST, true),
            (true, true) => DETERMINISTIC_GRAPH_BATCH_ROWS,
            (false, _) => return Pace::by_bytes(meta.dim),
        };
        Pace::fixed(rows, false)
    }

    /// Fixed batches of about [`FIXED_BATCH_BYTES`] of `dim`-d vectors.
    fn by_bytes(dim: usize) -> Pace {
        Pace::fixed((FIXED_BATCH_BYTES / (dim.max(1) * 4)).max(256), false)
    }

    fn fixed(rows: usize, paced: bool) -> Pace {
        Pace {
            rows: rows.into(),
            bytes: BATCH_BYTES,
            paced,
        }
    }

    /// One batch of every row.
    fn whole() -> Pace {
        Pace {
            bytes: usize::MAX,
            ..Pace::fixed(usize::MAX, false)
        }
    }

    fn took(&self, rows: usize, took: Duration) {
        if !self.paced {
            return;
        }
        let per_row = took.as_secs_f64() / rows.max(1) as f64;
        let want = match per_row > 0.0 {
            true => (BATCH_SECONDS / per_row) as usize,
            false => Self::MAX,
        };
        self.rows.set(want.clamp(Self::MIN, Self::MAX));
    }
}

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

    /// Lineage `lineage` as of change-log position `seq`.
    pub(crate) fn at(lineage: i64, seq: i64) -> Origin {
        Origin { lineage, seq }
    }

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
    train_and_fill(table, origin, Rows::AllIndexable)
}

/// As [`build`], leaving out rows that cannot be indexed: `optimize` of a table searched
/// through a stand-in, which must store the table's own index again.
pub(crate) fn build_skipping_unindexable(table: &LiveTable, origin: Origin) -> Result<LiveState> {
    train_and_fill(table, origin, Rows::SkipUnindexable)
}

fn train_and_fill(table: &LiveTable, origin: Origin, policy: Rows) -> Result<LiveState> {
    let meta = table.meta();
    let (_watch, task) = long_work(table, "building");
    let mut index = Index::new(&meta.factory, meta.dim, meta.metric)?;
    if !index.is_trained() {
        task.phase("reading the training sample", 0);
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
        task.phase("training", 0);
        // OpenBLAS splits the sums of a learnt transform's training by its thread count: one
        // thread, so that every node learns the same transform.
        let _blas = transform_trained(&meta.factory).then(crate::threads::SingleThreaded::blas);
        // A deterministic graph may be built inside training (IVF…_HNSW's quantizer).
        let _single = deterministic_graph(meta).then(crate::threads::SingleThreaded::begin);
        interrupt::result(index.train(&sample))
            .map_err(|e| e.context(format!("training '{}' on {n} vectors", meta.factory)))?;
    }
    fill(table, index, origin, policy, true, &task)
}

/// Feed a batch of rows into a build's identity.
fn absorb(identity: &mut Xxh3, rows: &[NewRow], vectors: &[f32]) {
    let mut encoded = Vec::new();
    for row in rows {
        identity.update(&row.handle.to_le_bytes());
        // The key and the partition value too: another partitioning of the same rows is
        // another index.
        encoded.clear();
        if let Some(key) = &row.key {
            key.encode(&mut encoded);
        }
        encoded.push(0xff);
        if let Some(part) = &row.part {
            super::key::RowKey(vec![part.clone()]).encode(&mut encoded);
        }
        identity.update(&(encoded.len() as u64).to_le_bytes());
        identity.update(&encoded);
    }
    identity.update(bytemuck::cast_slice(vectors));
}

/// Long work on `table`: watched for `sqlite3_interrupt`, shown in `faiss_indexes` (and the
/// sqlite3 shell's terminal) until both are dropped.
fn long_work(table: &LiveTable, work: &'static str) -> (Watch, Task) {
    let task = Task::on_table(table.conn(), table.schema(), table.name(), work);
    (Watch::on(table.conn()), task)
}

/// The index that stands in for a refused stored snapshot (`persist::load`): an exact `Flat`
/// index of the table's metric over every row that can be indexed, whatever the table's
/// factory. vekter does this on its own, for a file that may come from a stranger, so it
/// trains nothing and builds no graph: one pass over the content table, and memory the size
/// of its vectors. Searches are exact meanwhile; `rebuild` (or `optimize`) stores the table's
/// own index again.
pub(crate) fn build_stand_in(table: &LiveTable, origin: Origin) -> Result<LiveState> {
    exact_flat(table, origin, "building a stand-in", 0)
}

/// An exact `Flat` index of the table's metric over every row that can be indexed, with the
/// guards a file from a stranger needs (below): the stand-in, and the load of a `Flat` table
/// stored lean (`persist`), shown as `work` while it runs.
/// `rows_hint`: about how many rows it will hold (the lean payload's count when it was
/// saved), to size FAISS's storage once.
pub(crate) fn exact_flat(
    table: &LiveTable,
    origin: Origin,
    work: &'static str,
    rows_hint: usize,
) -> Result<LiveState> {
    let meta = table.meta();
    // The file chose the content table: it must be an ordinary table of the shape the index
    // was made for (a view could yield rows without end), and the vectors it yields can be no
    // larger than the database file that stores them.
    let (schema, conn) = (table.schema(), table.conn());
    let (shape, _) = super::key::key_shape(conn, schema, &meta.content)?;
    if shape != meta.key {
        bail!(Corrupt:
            "content table '{}' is not keyed as the index was made for",
            meta.content
        );
    }
    let page = |pragma: &str| -> Result<usize> {
        let mut stmt = conn.prepare(&format!("PRAGMA {}.{pragma}", quote_ident(schema)))?;
        stmt.step()?;
        Ok(match stmt.cell(0) {
            Cell::Integer(n) => usize::try_from(n).unwrap_or(0),
            _ => 0,
        })
    };
    // Vectors stored as JSON text take at least 2 bytes per element ("0,") against 4 in
    // memory: at most twice the file.
    let max_bytes = page("page_count")?
        .saturating_mul(page("page_size")?)
        .saturating_mul(2);
    let mut index = Index::new("Flat", meta.dim, meta.metric)?;
    // FAISS's storage grows by doubling into fresh memory at each add (100,000 x 384 in adds
    // of 4 MiB: 246 ms, in one: 58 ms): sized once here when the count is known (and bounded
    // by the file, whatever a payload says).
    let reserve = rows_hint.min(max_bytes / (meta.dim.max(1) * 4));
    let whole = reserve == 0;
    if !whole {
        index.reserve(reserve)?;
    }
    let (_watch, task) = long_work(table, work);
    // The table's default parameters are for its own factory (efSearch, nprobe): not set here.
    fill(
        table,
        index,
        origin,
        Rows::StandIn { max_bytes, whole },
        false,
        &task,
    )
}

/// A new lineage from `empty` (a trained index with no vectors, see `Index::empty_copy`)
/// refilled from the content table: no retraining, no tombstones, every visible change in. A
/// new build id makes other processes reload it.
pub(crate) fn compact(table: &LiveTable, empty: Index, origin: Origin) -> Result<LiveState> {
    let (_watch, task) = long_work(table, "optimizing");
    fill(table, empty, origin, Rows::SkipUnindexable, true, &task)
}

/// What `fill` does with a row whose vector cannot be indexed.
#[derive(Clone, Copy, PartialEq)]
enum Rows {
    /// Fail, naming it: create and `rebuild`, which the user asked for and can fix.
    AllIndexable,
    /// Leave it out, as a sync does (`integrity-check` names it): work vekter does on its own.
    SkipUnindexable,
    /// As `SkipUnindexable`, and stop once the vectors exceed `max_bytes` (the stand-in).
    StandIn { max_bytes: usize, whole: bool },
}

/// Add every row the index takes to `index`: the new lineage that `persist::save` then stores.
/// `defaults`: set the table's default search parameters on it.
fn fill(
    table: &LiveTable,
    index: Index,
    origin: Origin,
    policy: Rows,
    defaults: bool,
    task: &Task,
) -> Result<LiveState> {
    let meta = table.meta();
    let mut state = LiveState::new(index, origin.lineage, meta);
    state.applied_seq = origin.seq;
    // The build id: a digest of what is built (the definition, the lineage, every row added),
    // not of the time or the process, so every node running the same SQL stores the same.
    let mut identity = Xxh3::new();
    let definition = meta.to_config();
    let position = [origin.lineage.to_le_bytes(), origin.seq.to_le_bytes()].concat();
    let fields = definition
        .iter()
        .map(|(k, v)| [k.name().as_bytes(), v.as_bytes()]);
    for field in fields.flatten().chain([position.as_slice()]) {
        identity.update(&(field.len() as u64).to_le_bytes());
        identity.update(field);
    }
    // A graph that must come out the same everywhere is built on one thread.
    let _single = deterministic_graph(meta).then(crate::threads::SingleThreaded::begin);
    let content = table.content();
    // An exact index of the table (a stand-in, a lean Flat's load) takes the stored lineage's
    // id, and is built on every load: no digest, and no count for progress (a second pass
    // over the table's pages).
    let exact = matches!(policy, Rows::StandIn { .. });
    let total = match exact {
        true => 0,
        false => content.count()?.unwrap_or(0),
    };
    task.phase("adding rows", total);
    // Batches are sized to take about `BATCH_SECONDS` to add, so that progress moves and an
    // interrupt is seen between two of them (FAISS itself asks about it only every few seconds
    // inside an HNSW add). An exact Flat index whose storage could not be sized beforehand
    // (`exact_flat`) takes every row in one add instead, its one buffer growing in place
    // (memory peaks at twice the vectors meanwhile).
    let pace = match policy {
        Rows::StandIn { whole: true, .. } => Pace::whole(),
        Rows::StandIn { whole: false, .. } => Pace::by_bytes(meta.dim),
        _ => Pace::for_build(meta),
    };
    scan_rows(table, policy, &pace, &mut |rows, vectors| {
        let started = Instant::now();
        if !exact {
            absorb(&mut identity, rows, vectors);
        }
        interrupt::result(state.insert(rows, vectors))?;
        pace.took(rows.len(), started.elapsed());
        task.advance(rows.len() as u64);
        rows.clear();
        vectors.clear();
        Ok(())
    })?;
    state.build_id = format!("{:x}-{:016x}", origin.lineage, identity.digest());
    if defaults {
        for index in state.indexes_mut() {
            params::apply(index, &meta.params.faiss)?;
        }
    }
    Ok(state)
}

/// The rows the index takes, in batches of `pace`'s size handed to `flush` (which empties
/// them), the last one included; rows that cannot be indexed fail the build or are left out,
/// as `policy` says.
fn scan_rows(table: &LiveTable, policy: Rows, pace: &Pace, flush: &mut Flush) -> Result<()> {
    let meta = table.meta();
    let content = table.content();
    let (mut rows, mut vectors) = (Vec::new(), Vec::new());
    let mut added = 0usize;
    content.scan(
        |_| true,
        &mut vectors,
        |found, read, vectors| {
            if read.is_err() && policy != Rows::AllIndexable {
                return Ok(());
            }
            if let Rows::StandIn { max_bytes, .. } = policy {
                added = added.saturating_add(meta.dim * std::mem::size_of::<f32>());
                if added > max_bytes {
                    bail!(Corrupt:
                        "content table '{}' yields more vector bytes than the database file \
                         holds",
                        meta.content
                    );
                }
            }
            read.map_err(|why| {
                let hint = matches!(why, Rejected::Dimension { .. }).then(|| {
                    ". To index the rows of one dimension (one model, one collection), add \
                     where = '…' to the options"
                });
                let e = why.into_error().context(content.row_context(&found));
                match hint {
                    Some(h) => Error::invalid(format!("{}{h}", e.message())),
                    None => e,
                }
            })?;
            rows.push(NewRow {
                handle: found.handle,
                key: found.key,
                part: found.part,
            });
            if vectors.len() * std::mem::size_of::<f32>() >= pace.bytes
                || rows.len() >= pace.rows.get()
            {
                flush(&mut rows, vectors)?;
            }
            Ok(())
        },
    )?;
    flush(&mut rows, &mut vectors)
}

/// Where `scan_rows` hands its batches.
type Flush<'a> = dyn FnMut(&mut Vec<NewRow>, &mut Vec<f32>) -> Result<()> + 'a;

/// Refill `state` in place from the content table, keeping its lineage and log position: for a
/// table whose rowids VACUUM may have renumbered, once a rowid no longer holds the vector it
/// indexed (`sync`, `persist::load`). Its snapshot stays what it was until `optimize`.
pub(crate) fn refill(table: &LiveTable, state: &mut LiveState, cookie: i64) -> Result<()> {
    let origin = Origin {
        lineage: state.lineage,
        seq: state.applied_seq,
    };
    let defaults = !state.is_stand_in();
    let (_watch, task) = long_work(table, "refilling");
    let mut fresh = fill(
        table,
        empty_for(table.meta(), state)?,
        origin,
        Rows::SkipUnindexable,
        defaults,
        &task,
    )?;
    fresh.build_id = state.build_id.clone();
    fresh.set_snapshot_seq(state.snapshot_seq());
    fresh.verified_cookie = cookie;
    fresh.set_refused(state.refused());
    *state = fresh;
    Ok(())
}

/// True when every row the index takes holds, under its rowid, the vector the index has for
/// it (a `rowid-unstable` table after a schema change: see `key`).
pub(crate) fn rowids_hold_their_vectors(table: &LiveTable, state: &LiveState) -> Result<bool> {
    let mut rows = 0usize;
    let mut same = true;
    let mut buf = Vec::new();
    table.content().scan(
        |_| true,
        &mut buf,
        |found, read, buf| {
            let held = state.vector_hash(found.handle);
            match read {
                Ok(()) => {
                    rows += 1;
                    same &= held == Some(vector_hash(buf));
                }
                // A row that cannot be indexed is not in the index, and must not be.
                Err(_) => same &= held.is_none(),
            }
            buf.clear();
            Ok(())
        },
    )?;
    Ok(same && rows == state.live_count())
}

/// Up to `train_size` vectors chosen by a seeded shuffle of the rows (reproducible).
fn training_sample(table: &LiveTable) -> Result<Vec<f32>> {
    let content = table.content();
    let mut handles = content.handles()?;
    let want = table.meta().train_size.min(handles.len());
    let mut rng = 0x5EED_u64 ^ (handles.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for i in 0..want {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let j = i + (rng % (handles.len() - i) as u64) as usize;
        handles.swap(i, j);
    }
    let chosen: HashSet<i64> = handles[..want].iter().copied().collect();
    let mut sample = Vec::with_capacity(want * table.meta().dim);
    content.scan(
        |handle| chosen.contains(&handle),
        &mut sample,
        |found, read, _| read.map_err(|why| why.into_error().context(content.row_context(&found))),
    )?;
    Ok(sample)
}
