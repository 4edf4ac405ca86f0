//! Searching a `faiss` table: the partition to search, per-query parameters, the selector (live
//! slots, minus this connection's overlay, within a `rowid` filter), exact search where FAISS
//! cannot help, re-rank, the merge of FAISS's hits with the overlay's, and where each hit is in
//! the content table now. Also the listing a faiss table gives without a query.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::error::{bail, Error, Kind, Result};
use crate::index::{Bitmap, Hit, Index};
use crate::json::IdValue;
use crate::registry::ConnState;

use super::content::RowRef;
use super::key::{KeyPart, KeyShape, RowKey};
use super::params::{self, SearchParams};
use super::shared::StateRef;
use super::state::{LiveState, Part};
use super::sync::{with_current, Overlay};
use super::LiveTable;

/// The results one search may gather, over all its query vectors (k, times rerank, each).
const MAX_RESULT_SLOTS: usize = 1 << 24;

/// A filter with at most this many rows is searched exactly when FAISS returns too few.
const EXACT_FILTER_MAX: usize = 200_000;

/// One k-nearest-neighbour request, for one query vector or several answered together (one
/// FAISS call for all of them: `WHERE query IN (…)`, `neighbours_of IN (…)`).
#[derive(Clone, Copy)]
pub(crate) struct Query<'a> {
    pub(crate) vectors: &'a [Vec<f32>],
    pub(crate) k: usize,
    /// Only these rows may be returned (`rowid IN (…)`): content rowids, or the faiss table's
    /// own rowids for a WITHOUT ROWID content table.
    pub(crate) filter: Option<&'a HashSet<i64>>,
    pub(crate) params: &'a SearchParams,
    /// The partition to search (partitioned tables only).
    pub(crate) partition: Option<&'a KeyPart>,
    /// Per query vector, a row left out of its results (the stored row whose neighbours are
    /// asked for), in the same value space as `filter`; empty when none is.
    pub(crate) exclude: &'a [Option<i64>],
}

impl Query<'_> {
    /// True when the query changes FAISS parameters and needs the index to itself (an
    /// nprobe-only query first tries a shared lock: see [`search`]).
    fn exclusive(&self) -> bool {
        !self.params.faiss.is_empty() && self.params.nprobe_only().is_none()
    }
}

/// One result: where the row is in the content table now, its `id`, and its distance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Found {
    /// The content row's rowid (the handle in a WITHOUT ROWID table).
    pub(crate) rowid: i64,
    pub(crate) id: IdValue,
    pub(crate) distance: f32,
}

/// Fail unless the partition is named exactly when the table is partitioned.
fn check_partition(table: &LiveTable, partition: Option<&KeyPart>) -> Result<()> {
    let name = table.name();
    let message = match (&table.meta().partition, partition) {
        (Some(column), None) => format!(
            "faiss table '{name}' is partitioned by {column}: name the partition to search, \
             WHERE query = :q AND k = 10 AND {column} = :value"
        ),
        (None, Some(_)) => format!("faiss table '{name}' is not partitioned"),
        _ => return Ok(()),
    };
    Err(Error::invalid(message).naming_table())
}

/// The `k` nearest rows for each query vector, nearest first.
pub(crate) fn nearest(
    table: &LiveTable,
    state: &ConnState,
    query: &Query,
) -> Result<Vec<Vec<Found>>> {
    check_partition(table, query.partition)?;
    let exclude = excluded_handles(table, query)?;
    // Rows the content table no longer has (deleted where no trigger saw it, e.g. by
    // INSERT OR REPLACE on another UNIQUE column) are dropped and more are fetched.
    let mut extra = 0;
    let mut exclusive = query.exclusive();
    loop {
        let wanted = Query {
            k: query.k + extra + usize::from(exclude.iter().any(Option::is_some)),
            ..*query
        };
        let found = with_current(table, state, exclusive, |s, overlay| {
            let Some(hits) = search(table, s, overlay, &wanted)? else {
                return Ok(None);
            };
            let refs = refs(s.get(), overlay, hits.iter().flatten().map(|h| h.0));
            let located = table.content().locate(&refs)?;
            Ok(Some((hits, located)))
        })?;
        let Some((hits, located)) = found else {
            exclusive = true;
            continue;
        };
        let mut located = located.into_iter();
        let mut answers = Vec::with_capacity(hits.len());
        let mut short = 0;
        for (i, hits) in hits.into_iter().enumerate() {
            let exhausted = hits.len() < wanted.k;
            let at: Vec<_> = located.by_ref().take(hits.len()).collect();
            let missing = at.iter().filter(|l| l.is_none()).count();
            let left_out = exclude.get(i).copied().flatten();
            let rows: Vec<Found> = hits
                .into_iter()
                .zip(at)
                .filter(|((handle, _), _)| Some(*handle) != left_out)
                .filter_map(|((_, distance), at)| {
                    let (rowid, id) = at?;
                    Some(Found {
                        rowid,
                        id,
                        distance,
                    })
                })
                .take(query.k)
                .collect();
            if !(missing == 0 || rows.len() >= query.k || exhausted) {
                short = short.max(missing);
            }
            answers.push(rows);
        }
        if short == 0 || extra > 4096 {
            return Ok(answers);
        }
        extra = (extra * 2).max(short * 2);
    }
}

/// The handles of the rows each query vector leaves out of its own results.
fn excluded_handles(table: &LiveTable, query: &Query) -> Result<Vec<Option<i64>>> {
    let handles = handles_of(table, query.exclude.iter().flatten().copied())?;
    Ok(query
        .exclude
        .iter()
        .map(|r| r.and_then(|r| handles.get(&r).copied()))
        .collect())
}

/// The handles of the rows with these faiss-table rowids (rows that are gone left out): the
/// rowids themselves, unless the table is keyed by columns and has rowids.
fn handles_of(table: &LiveTable, rowids: impl Iterator<Item = i64>) -> Result<HashMap<i64, i64>> {
    match &table.meta().key {
        KeyShape::Columns {
            without_rowid: false,
            ..
        } => table.content().handles_of_rowids(rowids),
        _ => Ok(rowids.map(|r| (r, r)).collect()),
    }
}

/// The vectors of the stored rows with these faiss-table rowids, as this connection sees the
/// content table (`None`: no such row, or no vector an index could hold): what
/// `neighbours_of` searches with.
pub(crate) fn stored_vectors(
    table: &LiveTable,
    state: &ConnState,
    rowids: &[i64],
) -> Result<Vec<Option<Vec<f32>>>> {
    let handles = handles_of(table, rowids.iter().copied())?;
    let mut vectors: HashMap<i64, Vec<f32>> = with_current(table, state, false, |s, overlay| {
        let refs = refs(s.get(), overlay, handles.values().copied());
        table.content().vectors_of(&refs)
    })?
    .into_iter()
    .collect();
    Ok(rowids
        .iter()
        .map(|r| handles.get(r).and_then(|h| vectors.remove(h)))
        .collect())
}

/// Where the rows of `handles` are: their keys, from the state or this connection's overlay.
fn refs<'s>(
    state: &'s LiveState,
    overlay: &'s Overlay,
    handles: impl Iterator<Item = i64>,
) -> Vec<RowRef<'s>> {
    handles
        .map(|handle| RowRef {
            handle,
            key: overlay.key(handle).or_else(|| state.key(handle)),
        })
        .collect()
}

/// A row a faiss table lists without a query.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub(crate) handle: i64,
    pub(crate) key: Option<RowKey>,
    pub(crate) part: Option<KeyPart>,
}

/// The rows `table` indexes as this connection sees them, within `filter` and `partition`
/// when given, in handle order: what a faiss table lists without a query.
pub(crate) fn listing(
    table: &LiveTable,
    state: &ConnState,
    filter: Option<&HashSet<i64>>,
    partition: Option<&KeyPart>,
) -> Result<Vec<Listed>> {
    with_current(table, state, false, |current, overlay| {
        let s = current.get();
        let filtered = match filter {
            Some(f) => Some(to_handles(table, f)?),
            None => None,
        };
        let handles = match &filtered {
            Some(f) => f.iter().copied().collect(),
            None => s.handles(),
        };
        let mut rows: Vec<Listed> = handles
            .into_iter()
            .filter(|h| s.contains(*h) && !overlay.changed.contains(h))
            .map(|handle| Listed {
                handle,
                key: s.key(handle).cloned(),
                part: s.part_value(handle).cloned(),
            })
            .collect();
        rows.extend(
            overlay
                .rows
                .iter()
                .filter(|r| filtered.as_ref().is_none_or(|f| f.contains(&r.handle)))
                .map(|r| Listed {
                    handle: r.handle,
                    key: r.key.clone(),
                    part: r.part.clone(),
                }),
        );
        if let Some(p) = partition {
            rows.retain(|r| r.part.as_ref() == Some(p));
        }
        rows.sort_unstable_by_key(|r| r.handle);
        Ok(rows)
    })
}

/// Where a listed row is in the content table now: its rowid (its handle in a WITHOUT ROWID
/// table) and its `id`; `None` when the content table no longer has it.
pub(crate) fn locate(table: &LiveTable, row: &Listed) -> Result<Option<(i64, IdValue)>> {
    let refs = [RowRef {
        handle: row.handle,
        key: row.key.as_ref(),
    }];
    Ok(table.content().locate(&refs)?.pop().flatten())
}

/// The handles of the rows a `rowid` filter names: the rowids themselves, unless the table is
/// keyed by columns and has rowids (then each row's key gives its handle).
fn to_handles(table: &LiveTable, filter: &HashSet<i64>) -> Result<HashSet<i64>> {
    Ok(handles_of(table, filter.iter().copied())?
        .into_values()
        .collect())
}

/// The `k` nearest rows of each query vector as `(handle, distance)`, nearest first. `None`
/// when the query sets parameters that need the index exclusively but `state` is shared: ask
/// again with it.
fn search(
    table: &LiveTable,
    state: &mut StateRef,
    overlay: &Overlay,
    query: &Query,
) -> Result<Option<PerQuery>> {
    let meta = table.meta();
    query.params.check_per_query()?;
    let dim = state.get().dim();
    if let Some(v) = query.vectors.iter().find(|v| v.len() != dim) {
        bail!(
            "query vector has {} dimensions but the index has {}",
            v.len(),
            dim
        );
    }
    let filter = match query.filter {
        Some(f) => Some(to_handles(table, f)?),
        None => None,
    };
    let search = Search {
        table,
        overlay,
        query,
        filter: filter.as_ref(),
        fetch: query
            .k
            .saturating_mul(query.params.rerank.or(meta.params.rerank).unwrap_or(1)),
    };
    let Some(part) = state.get().part(query.partition) else {
        // A partition with no rows in the shared index: only this connection's own may match.
        return Ok(Some(
            query
                .vectors
                .iter()
                .map(|v| {
                    let mut hits = search.overlay_hits(v, dim);
                    hits.truncate(query.k);
                    hits
                })
                .collect(),
        ));
    };
    // Bounded before FAISS allocates k results per query vector.
    let per_query = search.fetch.min(part.live_count() + overlay.rows.len());
    if query.vectors.len().saturating_mul(per_query) > MAX_RESULT_SLOTS {
        bail!(TooBig:
            "{} query vectors with k = {} ask for more than {MAX_RESULT_SLOTS} results in one \
             search: split the IN list, or lower k",
            query.vectors.len(),
            // What the statement asked for: without the extra row fetched to leave one out.
            query.k - usize::from(!query.exclude.is_empty())
        );
    }
    // An nprobe alone travels inside the search's own parameters, under the shared lock.
    let nprobe = query.params.nprobe_only().filter(|_| part.index.is_ivf());
    // An exact stand-in for a refused snapshot (`persist::load`) takes no FAISS parameters.
    let exact_stand_in = state.get().is_stand_in();
    let mut hits = if query.params.faiss.is_empty() || nprobe.is_some() || exact_stand_in {
        search.candidates(state.get(), part, nprobe)?
    } else {
        let Some(s) = state.get_mut() else {
            return Ok(None);
        };
        let Some(part) = s.part_mut(query.partition) else {
            return Ok(None);
        };
        let set = params::apply(&mut part.index, &query.params.faiss);
        // Restore even when setting or searching failed: nothing may leak into later
        // searches or into a saved snapshot.
        let restore = |part: &mut Part| {
            for (name, value) in query.params.restore_values(&meta.params) {
                let _ = part.index.set_parameter(&name, value);
            }
        };
        if let Err(e) = set {
            restore(part);
            return Err(e);
        }
        let s: &LiveState = s;
        let part = s.part(query.partition).expect("found above");
        let result = search.candidates(s, part, None);
        if let Some(part) = state.get_mut().and_then(|s| s.part_mut(query.partition)) {
            restore(part);
        }
        result?
    };
    for (vector, hits) in query.vectors.iter().zip(hits.iter_mut()) {
        if search.fetch > query.k && !hits.is_empty() {
            *hits = search.rescore(state.get(), vector, hits)?;
        }
        hits.truncate(query.k);
    }
    Ok(Some(hits))
}

/// For each query vector, its candidates as `(handle, distance)`, nearest first.
type PerQuery = Vec<Vec<(i64, f32)>>;

/// One search of one part, with what it needs besides the part.
struct Search<'a> {
    table: &'a LiveTable,
    overlay: &'a Overlay,
    query: &'a Query<'a>,
    /// The `rowid` filter as handles.
    filter: Option<&'a HashSet<i64>>,
    /// Candidates to fetch per query vector: k, times `rerank`.
    fetch: usize,
}

impl Search<'_> {
    /// Up to `fetch` candidates per query vector from FAISS (one call for them all) plus the
    /// overlay, nearest first.
    fn candidates(
        &self,
        state: &LiveState,
        part: &Part,
        nprobe: Option<usize>,
    ) -> Result<PerQuery> {
        let (vectors, fetch) = (self.query.vectors, self.fetch);
        let index = &part.index;
        let allowed = allowed_slots(part, self.overlay, self.filter);
        let available = allowed
            .as_ref()
            .map_or(part.live_count(), |b| b.count_ones());
        let want = fetch.min(available);
        let all: Vec<f32> = vectors.concat();
        let found = if want == 0 {
            vec![Vec::new(); vectors.len()]
        } else {
            match index.search_selected_many(&all, fetch, allowed.as_deref(), nprobe) {
                Ok(hits) => hits,
                // Index types whose search takes no selector: filter FAISS's results ourselves.
                Err(e) if e.kind() == Kind::Unsupported => match &allowed {
                    Some(b) => vectors
                        .iter()
                        .map(|v| post_filter(index, v, fetch, b, nprobe))
                        .collect::<Result<_>>()?,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        };
        let mut out = Vec::with_capacity(vectors.len());
        // The allowed rows' vectors, read once for every query vector that needs them.
        let mut allowed_rows: Option<Vec<(i64, Vec<f32>)>> = None;
        for (vector, mut hits) in vectors.iter().zip(found) {
            if hits.len() < want {
                // An approximate index can miss filtered rows: search the allowed rows exactly.
                if let (Some(filter), true) = (self.filter, available <= EXACT_FILTER_MAX) {
                    if allowed_rows.is_none() {
                        let handles = filter.iter().copied().filter(|&h| {
                            part.slot_of(h).is_some() && !self.overlay.changed.contains(&h)
                        });
                        let refs = refs(state, self.overlay, handles);
                        allowed_rows = Some(self.table.content().vectors_of(&refs)?);
                    }
                    let rows = allowed_rows.as_deref().unwrap_or_default();
                    out.push(merge(
                        self.exact(vector, rows),
                        self.overlay_hits(vector, index.dim()),
                        fetch,
                    ));
                    continue;
                }
                if let Some(b) = &allowed {
                    hits = post_filter(index, vector, fetch, b, nprobe)?;
                }
            }
            let base: Vec<(i64, f32)> = hits
                .iter()
                .filter_map(|h| Some((part.handle_at(h.label as usize)?, h.distance)))
                .collect();
            out.push(merge(base, self.overlay_hits(vector, index.dim()), fetch));
        }
        Ok(out)
    }

    /// This connection's own rows of the partition (and filter), searched exactly.
    fn overlay_hits(&self, vector: &[f32], dim: usize) -> Vec<(i64, f32)> {
        if self.overlay.rows.is_empty() {
            return Vec::new();
        }
        let metric = self.table.meta().metric;
        let hits: Vec<(i64, f32)> = self
            .overlay
            .rows
            .iter()
            .filter(|r| r.part.as_ref() == self.query.partition && r.vector.len() == dim)
            .filter(|r| self.filter.is_none_or(|f| f.contains(&r.handle)))
            .map(|r| (r.handle, metric.exact_distance(vector, &r.vector)))
            .collect();
        merge(hits, Vec::new(), self.fetch)
    }

    /// Exact distances of `rows` from `vector`.
    fn exact(&self, vector: &[f32], rows: &[(i64, Vec<f32>)]) -> Vec<(i64, f32)> {
        let metric = self.table.meta().metric;
        rows.iter()
            .map(|(handle, v)| (*handle, metric.exact_distance(vector, v)))
            .collect()
    }

    /// Re-order candidates by exact distance computed from the content table's vectors.
    fn rescore(
        &self,
        state: &LiveState,
        vector: &[f32],
        hits: &[(i64, f32)],
    ) -> Result<Vec<(i64, f32)>> {
        let refs = refs(state, self.overlay, hits.iter().map(|h| h.0));
        let rows = self.table.content().vectors_of(&refs)?;
        Ok(merge(self.exact(vector, &rows), Vec::new(), usize::MAX))
    }
}

/// Which slots may be returned: live ones, minus rows the overlay replaces, within the filter.
/// `None` means every slot.
fn allowed_slots<'s>(
    part: &'s Part,
    overlay: &Overlay,
    filter: Option<&HashSet<i64>>,
) -> Option<Cow<'s, Bitmap>> {
    if let Some(filter) = filter {
        let mut b = Bitmap::new(part.slot_count());
        for &handle in filter {
            if let Some(slot) = part.slot_of(handle) {
                b.set(slot, !overlay.changed.contains(&handle));
            }
        }
        Some(Cow::Owned(b))
    } else if !overlay.changed.is_empty() {
        let mut b = part.live().clone();
        for &handle in &overlay.changed {
            if let Some(slot) = part.slot_of(handle) {
                b.set(slot, false);
            }
        }
        Some(Cow::Owned(b))
    } else if part.dead_count() > 0 {
        Some(Cow::Borrowed(part.live()))
    } else {
        None
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

/// Two candidate lists merged nearest first (ties by handle), at most `limit` long.
fn merge(a: Vec<(i64, f32)>, b: Vec<(i64, f32)>, limit: usize) -> Vec<(i64, f32)> {
    let mut all: Vec<Hit> = a
        .into_iter()
        .chain(b)
        .map(|(label, distance)| Hit { label, distance })
        .collect();
    Index::sort_hits(&mut all);
    all.truncate(limit);
    all.into_iter().map(|h| (h.label, h.distance)).collect()
}
