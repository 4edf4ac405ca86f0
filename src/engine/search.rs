//! Searching a `faiss` table: per-query parameters, the selector (live slots, minus this
//! connection's overlay, within a `rowid` filter), exact search where FAISS cannot help,
//! re-rank, and the merge of FAISS's hits with the overlay's.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::error::{Kind, Result};
use crate::index::{Bitmap, Hit, Index};
use crate::json::IdValue;
use crate::registry::ConnState;

use super::params::{self, SearchParams};
use super::shared::StateRef;
use super::state::LiveState;
use super::sync::{with_current, Overlay};
use super::LiveTable;

/// A filter with at most this many rows is searched exactly when FAISS returns too few.
const EXACT_FILTER_MAX: usize = 200_000;

/// One k-nearest-neighbour request.
#[derive(Clone, Copy)]
pub(crate) struct Query<'a> {
    pub(crate) vector: &'a [f32],
    pub(crate) k: usize,
    /// Only these rowids may be returned (`rowid IN (…)`).
    pub(crate) filter: Option<&'a HashSet<i64>>,
    pub(crate) params: &'a SearchParams,
}

impl Query<'_> {
    /// True when the query changes FAISS parameters and needs the index to itself (an
    /// nprobe-only query first tries a shared lock: see [`search`]).
    fn exclusive(&self) -> bool {
        !self.params.faiss.is_empty() && self.params.nprobe_only().is_none()
    }
}

/// One result: the content row, its `id`, and its distance.
pub(crate) type Found = (i64, IdValue, f32);

/// The `k` nearest rows for `query`, nearest first.
pub(crate) fn nearest(table: &LiveTable, state: &ConnState, query: &Query) -> Result<Vec<Found>> {
    // Rows the content table no longer has (deleted where no trigger saw it, e.g. by
    // INSERT OR REPLACE on another UNIQUE column) are dropped and more are fetched.
    let mut extra = 0;
    let mut exclusive = query.exclusive();
    loop {
        let wanted = Query {
            k: query.k + extra,
            ..*query
        };
        let found = with_current(table, state, exclusive, |s, overlay| {
            search(table, s, overlay, &wanted)
        })?;
        let Some(hits) = found else {
            exclusive = true;
            continue;
        };
        let exhausted = hits.len() < wanted.k;
        let rowids: Vec<i64> = hits.iter().map(|h| h.0).collect();
        let ids = table.content().ids_of(&rowids)?;
        let missing = ids.iter().filter(|id| id.is_none()).count();
        let rows: Vec<Found> = hits
            .into_iter()
            .zip(ids)
            .filter_map(|((rowid, distance), id)| Some((rowid, id?, distance)))
            .take(query.k)
            .collect();
        if missing == 0 || rows.len() >= query.k || exhausted || extra > 4096 {
            return Ok(rows);
        }
        extra = (extra * 2).max(missing * 2);
    }
}

/// The rows `table` indexes as this connection sees them (within `filter` if given), ascending:
/// what a faiss table lists without a query.
pub(crate) fn listing(
    table: &LiveTable,
    state: &ConnState,
    filter: Option<&HashSet<i64>>,
) -> Result<Vec<i64>> {
    with_current(table, state, false, |current, overlay| {
        let s = current.get();
        let mut indexed: HashSet<i64> = match filter {
            Some(f) => f
                .iter()
                .copied()
                .filter(|&r| s.slot_of(r).is_some())
                .collect(),
            None => s.rowids().into_iter().collect(),
        };
        overlay.apply_to(&mut indexed);
        if let Some(f) = filter {
            indexed.retain(|r| f.contains(r));
        }
        let mut rowids: Vec<i64> = indexed.into_iter().collect();
        rowids.sort_unstable();
        Ok(rowids)
    })
}

/// The `id` of each rowid, `None` where the content table no longer has the row.
pub(crate) fn ids_of(table: &LiveTable, rowids: &[i64]) -> Result<Vec<Option<IdValue>>> {
    table.content().ids_of(rowids)
}

/// The `k` nearest rows as `(rowid, distance)`, nearest first. `None` when the query sets
/// parameters that need the index exclusively but `state` is shared: ask again with it.
fn search(
    table: &LiveTable,
    state: &mut StateRef,
    overlay: &Overlay,
    query: &Query,
) -> Result<Option<Vec<(i64, f32)>>> {
    let meta = table.meta();
    query.params.check_per_query()?;
    state.get().index.check_query(query.vector)?;
    let rerank = query.params.rerank.or(meta.params.rerank).unwrap_or(1);
    let fetch = query.k.saturating_mul(rerank);
    // An nprobe alone travels inside the search's own parameters, under the shared lock.
    let nprobe = query
        .params
        .nprobe_only()
        .filter(|_| state.get().index.is_ivf());
    let mut hits = if query.params.faiss.is_empty() || nprobe.is_some() {
        candidates(table, state.get(), overlay, query, fetch, nprobe)?
    } else {
        let Some(s) = state.get_mut() else {
            return Ok(None);
        };
        let set = params::apply(&mut s.index, &query.params.faiss);
        let result = set.and_then(|()| candidates(table, s, overlay, query, fetch, None));
        // Restore even when setting or searching failed: nothing may leak into later
        // searches or into a saved snapshot.
        for (name, value) in query.params.restore_values(&meta.params) {
            let _ = s.index.set_parameter(&name, value);
        }
        result?
    };
    if rerank > 1 && !hits.is_empty() {
        hits = rescore(table, &state.get().index, query.vector, &hits)?;
    }
    hits.truncate(query.k);
    Ok(Some(hits))
}

/// Up to `fetch` candidates from FAISS plus the overlay, nearest first.
fn candidates(
    table: &LiveTable,
    state: &LiveState,
    overlay: &Overlay,
    query: &Query,
    fetch: usize,
    nprobe: Option<usize>,
) -> Result<Vec<(i64, f32)>> {
    let index = &state.index;
    let allowed = allowed_slots(state, overlay, query.filter);
    let available = allowed
        .as_ref()
        .map_or(state.live_count(), |b| b.count_ones());
    let want = fetch.min(available);
    let mut hits = if want == 0 {
        Vec::new()
    } else {
        match index.search_selected(query.vector, fetch, allowed.as_deref(), nprobe) {
            Ok(hits) => hits,
            // Index types whose search takes no selector: filter FAISS's results ourselves.
            Err(e) if e.kind() == Kind::Unsupported => match &allowed {
                Some(b) => post_filter(index, query.vector, fetch, b, nprobe)?,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    };
    let overlay_hits = || {
        let rows: Vec<(i64, Vec<f32>)> = overlay
            .rows
            .iter()
            .filter(|(r, _)| query.filter.is_none_or(|f| f.contains(r)))
            .cloned()
            .collect();
        exact(index, query.vector, &rows)
    };
    if hits.len() < want {
        // An approximate index can miss filtered rows: search the allowed rows exactly.
        if let (Some(filter), true) = (query.filter, available <= EXACT_FILTER_MAX) {
            let rowids: Vec<i64> = filter
                .iter()
                .copied()
                .filter(|&r| state.slot_of(r).is_some() && !overlay.changed.contains(&r))
                .collect();
            let rows = table.content().vectors_of(&rowids)?;
            return Ok(merge(
                exact(index, query.vector, &rows),
                overlay_hits(),
                fetch,
            ));
        }
        if let Some(b) = &allowed {
            hits = post_filter(index, query.vector, fetch, b, nprobe)?;
        }
    }
    let base: Vec<(i64, f32)> = hits
        .iter()
        .filter_map(|h| Some((state.rowid_at(h.label as usize)?, h.distance)))
        .collect();
    Ok(merge(base, overlay_hits(), fetch))
}

/// Which slots may be returned: live ones, minus rows the overlay replaces, within the filter.
/// `None` means every slot.
fn allowed_slots<'s>(
    state: &'s LiveState,
    overlay: &Overlay,
    filter: Option<&HashSet<i64>>,
) -> Option<Cow<'s, Bitmap>> {
    if let Some(filter) = filter {
        let mut b = Bitmap::new(state.slot_count());
        for &rowid in filter {
            if let Some(slot) = state.slot_of(rowid) {
                b.set(slot, !overlay.changed.contains(&rowid));
            }
        }
        Some(Cow::Owned(b))
    } else if !overlay.changed.is_empty() {
        let mut b = state.live().clone();
        for &rowid in &overlay.changed {
            if let Some(slot) = state.slot_of(rowid) {
                b.set(slot, false);
            }
        }
        Some(Cow::Owned(b))
    } else if state.dead_count() > 0 {
        Some(Cow::Borrowed(state.live()))
    } else {
        None
    }
}

fn exact(index: &Index, query: &[f32], rows: &[(i64, Vec<f32>)]) -> Vec<(i64, f32)> {
    rows.iter()
        .map(|(rowid, v)| (*rowid, index.exact_distance(query, v)))
        .collect()
}

/// Re-order candidates by exact distance computed from the content table's vectors.
fn rescore(
    table: &LiveTable,
    index: &Index,
    query: &[f32],
    hits: &[(i64, f32)],
) -> Result<Vec<(i64, f32)>> {
    let rowids: Vec<i64> = hits.iter().map(|h| h.0).collect();
    let rows = table.content().vectors_of(&rowids)?;
    Ok(merge(exact(index, query, &rows), Vec::new(), usize::MAX))
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
