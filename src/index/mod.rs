//! The only module that calls FAISS. It takes validated vectors and returns typed hits; every
//! precondition FAISS would `abort()` on (dimension, k, empty index) is checked here first.

mod io;
#[cfg(feature = "fuzzing")]
pub(crate) use io::FAISS_READS;
mod scan;
mod selector;

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU8, Ordering};

use faiss::index::{FromInnerPtr, IndexImpl, TryClone};
use faiss::{Index as _, MetricType};

use crate::error::{bail, Error, Kind, Result};

pub(crate) use selector::Bitmap;

/// How distances are measured. Whatever the metric, vekter returns a *distance*: smaller is
/// nearer (SPEC §3): squared L2 for `l2`, `1 − cosine similarity` for `cosine`, and the negated
/// inner product for `ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Metric {
    /// Squared Euclidean distance (datasette-faiss's default).
    L2,
    /// Inner product; the distance is its negation.
    InnerProduct,
    /// Inner product of normalised vectors = cosine similarity; the distance is `1 − similarity`.
    Cosine,
}

impl Metric {
    pub(crate) fn parse(name: &str) -> Result<Metric> {
        match name.to_ascii_lowercase().as_str() {
            "l2" => Ok(Metric::L2),
            "ip" | "inner_product" => Ok(Metric::InnerProduct),
            "cosine" => Ok(Metric::Cosine),
            other => bail!("unknown metric '{other}': use l2, ip or cosine"),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "ip",
            Metric::Cosine => "cosine",
        }
    }

    fn faiss(self) -> MetricType {
        match self {
            Metric::L2 => MetricType::L2,
            Metric::InnerProduct | Metric::Cosine => MetricType::InnerProduct,
        }
    }

    /// The exact distance of `vector` from `query` (what FAISS's search returns, made a
    /// distance).
    pub(crate) fn exact_distance(self, query: &[f32], vector: &[f32]) -> f32 {
        let dot = || query.iter().zip(vector).map(|(a, b)| a * b).sum::<f32>();
        match self {
            Metric::L2 => query
                .iter()
                .zip(vector)
                .map(|(a, b)| (a - b) * (a - b))
                .sum(),
            Metric::InnerProduct => 0.0 - dot(),
            Metric::Cosine => {
                let nq = query.iter().map(|x| x * x).sum::<f32>().sqrt();
                let nv = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
                if nq == 0.0 || nv == 0.0 {
                    1.0
                } else {
                    1.0 - dot() / (nq * nv)
                }
            }
        }
    }

    /// The distance for a score FAISS returned under this metric.
    fn distance(self, faiss_score: f32) -> f32 {
        match self {
            Metric::L2 => faiss_score,
            // `0.0 - x` rather than `-x`: a zero product is distance 0, not -0.
            Metric::InnerProduct => 0.0 - faiss_score,
            Metric::Cosine => 1.0 - faiss_score,
        }
    }
}

/// One search result: the FAISS label and its distance (smaller is nearer, see [`Metric`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Hit {
    pub(crate) label: i64,
    pub(crate) distance: f32,
}

/// Whether an index's search takes `SearchParameters` (a selector, an nprobe): learnt on the
/// first search that passes them.
const PARAMS_UNKNOWN: u8 = 0;
const PARAMS_TAKEN: u8 = 1;
const PARAMS_REFUSED: u8 = 2;

/// An owned FAISS index with its dimension and metric.
pub(crate) struct Index {
    inner: IndexImpl,
    dim: usize,
    metric: Metric,
    /// `PARAMS_*`: some index types (PQ, LSH, additive quantizers, refine wrappers) refuse
    /// search parameters; after the first refusal they are searched without, and callers filter.
    params: AtomicU8,
}

impl Index {
    /// A new, empty index from a factory string such as `Flat` or `HNSW32`.
    pub(crate) fn new(factory: &str, dim: usize, metric: Metric) -> Result<Self> {
        if dim == 0 || dim > crate::vector::MAX_DIM {
            bail!(
                "dimension {dim} is out of range 1..={}",
                crate::vector::MAX_DIM
            );
        }
        check_factory(factory)?;
        let inner = faiss::index_factory(dim as u32, factory.trim(), metric.faiss())
            .map_err(|e| faiss_error(e).context(format!("FAISS factory '{factory}'")))?;
        Ok(Index::wrap(inner, dim, metric))
    }

    fn wrap(inner: IndexImpl, dim: usize, metric: Metric) -> Index {
        Index {
            inner,
            dim,
            metric,
            params: AtomicU8::new(PARAMS_UNKNOWN),
        }
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    pub(crate) fn ntotal(&self) -> usize {
        self.inner.ntotal() as usize
    }

    pub(crate) fn is_trained(&self) -> bool {
        self.inner.is_trained()
    }

    /// Train on `vectors` (row-major, `n × dim`).
    pub(crate) fn train(&mut self, vectors: &[f32]) -> Result<()> {
        if vectors.is_empty() || !vectors.len().is_multiple_of(self.dim) {
            bail!("no training vectors");
        }
        let prepared = self.prepare(vectors);
        crate::threads::for_build();
        self.inner.train(&prepared).map_err(faiss_error)
    }

    /// The same index with no vectors, keeping what training learnt (for compaction).
    pub(crate) fn empty_copy(&self) -> Result<Index> {
        let mut inner = self.inner.try_clone().map_err(faiss_error)?;
        inner.reset().map_err(faiss_error)?;
        Ok(Index::wrap(inner, self.dim, self.metric))
    }

    /// [`empty_copy`](Self::empty_copy) written out and read back: also forgets what a copy
    /// carries over that FAISS does not store, such as the random state an HNSW graph draws
    /// its levels from. A deterministic graph's compaction starts from it (`commands`).
    pub(crate) fn fresh_empty_copy(&self) -> Result<Index> {
        let bytes = self.empty_copy()?.to_bytes()?;
        Index::from_reader(&mut bytes.as_slice(), self.metric)
    }

    /// Size an empty index's storage for `n` vectors at once, so that adding them does not grow
    /// it step by step (an `IndexFlat`'s `reset` keeps the storage's capacity). The vectors
    /// added here are zeros from untouched memory (no page is written), and gone after.
    pub(crate) fn reserve(&mut self, n: usize) -> Result<()> {
        if self.ntotal() != 0 || n == 0 {
            return Ok(());
        }
        let zeros = vec![0f32; n.saturating_mul(self.dim)];
        self.inner.add(&zeros).map_err(faiss_error)?;
        self.inner.reset().map_err(faiss_error)
    }

    /// Set a FAISS search parameter (`nprobe`, `efSearch`, …) on the index itself
    /// (`ParameterSpace::set_index_parameter`). Mutates the index: callers hold it exclusively.
    pub(crate) fn set_parameter(&mut self, name: &str, value: f64) -> Result<()> {
        let c_name = CString::new(name).map_err(|_| Error::invalid("parameter name has NUL"))?;
        // SAFETY: the space is created, used on our index, and freed here.
        unsafe {
            let mut space = std::ptr::null_mut();
            if faiss_sys::faiss_ParameterSpace_new(&mut space) != 0 {
                return Err(last_error());
            }
            let rc = faiss_sys::faiss_ParameterSpace_set_index_parameter(
                space,
                self.inner.inner_ptr(),
                c_name.as_ptr(),
                value,
            );
            faiss_sys::faiss_ParameterSpace_free(space);
            if rc != 0 {
                return Err(last_error().context(format!("search parameter {name}={value}")));
            }
        }
        Ok(())
    }

    /// Add vectors (row-major, `n × dim`); they get the labels `ntotal..ntotal + n`.
    pub(crate) fn add(&mut self, vectors: &[f32]) -> Result<()> {
        if !vectors.len().is_multiple_of(self.dim) {
            bail!(
                "vector buffer is not a whole number of {}-d vectors",
                self.dim
            );
        }
        if vectors.is_empty() {
            return Ok(());
        }
        let prepared = self.prepare(vectors);
        crate::threads::for_build();
        self.inner.add(&prepared).map_err(faiss_error)
    }

    /// The `k` nearest neighbours of `query`, nearest first; ties keep label order.
    /// Returns fewer than `k` hits when the index holds fewer vectors, never padding.
    pub(crate) fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.search_selected(query, k, None, None)
    }

    /// [`search`](Self::search) among the labels whose bit is set in `selected` only
    /// (FAISS `IDSelectorBitmap` in the search parameters). Fails with [`Kind::Unsupported`]
    /// for index types whose search takes no parameters; the caller then filters results
    /// itself. `nprobe` overrides the index's own for this search only (IVF indexes: check
    /// [`is_ivf`](Self::is_ivf)).
    pub(crate) fn search_selected(
        &self,
        query: &[f32],
        k: usize,
        selected: Option<&Bitmap>,
        nprobe: Option<usize>,
    ) -> Result<Vec<Hit>> {
        self.check_query(query)?;
        let mut hits = self.search_selected_many(query, k, selected, nprobe)?;
        Ok(hits.pop().unwrap_or_default())
    }

    /// [`search_selected`](Self::search_selected) for several queries at once (`queries`
    /// holds them one after another, `dim` floats each), in one FAISS call: FAISS shares the
    /// scan of the index between them (a matrix product for exact indexes).
    pub(crate) fn search_selected_many(
        &self,
        queries: &[f32],
        k: usize,
        selected: Option<&Bitmap>,
        nprobe: Option<usize>,
    ) -> Result<Vec<Vec<Hit>>> {
        if queries.is_empty() || !queries.len().is_multiple_of(self.dim) {
            bail!(
                "query vectors hold {} numbers, not a multiple of the index's {} dimensions",
                queries.len(),
                self.dim
            );
        }
        let n = queries.len() / self.dim;
        let k = k.min(self.ntotal());
        if k == 0 {
            return Ok(vec![Vec::new(); n]);
        }
        let queries = self.prepare(queries);
        // A range selector ANDed with a bitmap would cost FAISS its range shortcut (it narrows
        // the scan only for a bare `IDSelectorRange`): with deleted rows or a filter, one thread.
        let wanted = if selected.is_some() {
            1
        } else {
            self.scan_threads(n)
        };
        let mut team = crate::threads::SearchTeam::join(wanted);
        if team.size() > 1 {
            return self.search_in_ranges(&queries, k, &mut team);
        }
        let mut scores = vec![0f32; n * k];
        let mut labels = vec![-1i64; n * k];
        // Parameters only when a selector or an nprobe asks for them: the plain search (the
        // common case) skips the index-type probe.
        let params = if selected.is_some() || nprobe.is_some() {
            if self.params.load(Ordering::Relaxed) == PARAMS_REFUSED {
                bail!(Unsupported: "this index type takes no search parameters");
            }
            let ivf_nprobe = match (nprobe, self.ivf_nprobe()) {
                (Some(_), None) => bail!("nprobe applies to IVF indexes only"),
                (Some(n), Some(_)) => Some(n.max(1)),
                (None, current) => current,
            };
            Some(selector::SearchParams::new(
                selected.map_or(selector::Select::All, selector::Select::Labels),
                ivf_nprobe,
            )?)
        } else {
            None
        };
        crate::threads::for_search();
        let raw = params.as_ref().map_or(std::ptr::null(), |p| p.raw());
        if self.raw_search(&queries, k, raw, &mut scores, &mut labels) != 0 {
            let error = last_error();
            // On an index not yet known to take parameters, the same search without them
            // tells whether they were what FAISS refused. An index that took them once takes
            // them: a later failure is an ordinary one.
            let refused = !raw.is_null()
                && self.params.load(Ordering::Relaxed) == PARAMS_UNKNOWN
                && self.raw_search(&queries, k, std::ptr::null(), &mut scores, &mut labels) == 0;
            if refused {
                let _ = self.params.compare_exchange(
                    PARAMS_UNKNOWN,
                    PARAMS_REFUSED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                return Err(error.into_kind(Kind::Unsupported));
            }
            return Err(error);
        }
        if !raw.is_null() {
            let _ = self.params.compare_exchange(
                PARAMS_UNKNOWN,
                PARAMS_TAKEN,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        Ok(labels
            .chunks_exact(k)
            .zip(scores.chunks_exact(k))
            .map(|(labels, scores)| self.collect_hits(labels, scores))
            .collect())
    }

    pub(super) fn raw_search(
        &self,
        queries: &[f32],
        k: usize,
        params: *const faiss_sys::FaissSearchParameters,
        scores: &mut [f32],
        labels: &mut [i64],
    ) -> std::os::raw::c_int {
        let n = queries.len() / self.dim;
        assert!(n * self.dim == queries.len() && scores.len() == n * k && labels.len() == n * k);
        // SAFETY: the index is valid; `queries` holds n `dim`-vectors; both outputs hold n*k
        // (checked above); the parameters (and the bitmap they point to) outlive the call.
        unsafe {
            faiss_sys::faiss_Index_search_with_params(
                self.inner.inner_ptr(),
                n as i64,
                queries.as_ptr(),
                k as i64,
                params,
                scores.as_mut_ptr(),
                labels.as_mut_ptr(),
            )
        }
    }

    /// True for IVF indexes (directly or under a transform): they take `nprobe` per search.
    pub(crate) fn is_ivf(&self) -> bool {
        self.ivf_nprobe().is_some()
    }

    /// The current `nprobe` of an IVF index (directly or under a transform such as OPQ):
    /// IVF searches only take selectors inside `SearchParametersIVF`, which must repeat it.
    fn ivf_nprobe(&self) -> Option<usize> {
        // SAFETY: casts and getters on our own live index; NULL when it is not of that type.
        unsafe {
            let mut index = self.inner.inner_ptr();
            let pre = faiss_sys::faiss_IndexPreTransform_cast(index);
            if !pre.is_null() {
                index = faiss_sys::faiss_IndexPreTransform_index(pre);
            }
            let ivf = faiss_sys::faiss_IndexIVF_cast(index);
            (!ivf.is_null()).then(|| faiss_sys::faiss_IndexIVF_nprobe(ivf).max(1))
        }
    }

    /// Order hits nearest first, ties by label.
    pub(crate) fn sort_hits(hits: &mut [Hit]) {
        hits.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then(a.label.cmp(&b.label))
        });
    }

    /// Fail unless `query` has this index's dimension.
    pub(crate) fn check_query(&self, query: &[f32]) -> Result<()> {
        if query.len() != self.dim {
            bail!(
                "query vector has {} dimensions but the index has {}",
                query.len(),
                self.dim
            );
        }
        Ok(())
    }

    /// Cosine indexes store and search unit vectors.
    fn prepare<'a>(&self, vectors: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        if self.metric != Metric::Cosine {
            return vectors.into();
        }
        let mut v = vectors.to_vec();
        for chunk in v.chunks_exact_mut(self.dim) {
            let norm = chunk.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                chunk.iter_mut().for_each(|x| *x /= norm);
            }
        }
        v.into()
    }

    /// Drop the -1 padding FAISS uses for missing results, turn scores into distances and
    /// order ties by label.
    fn collect_hits(&self, labels: &[i64], scores: &[f32]) -> Vec<Hit> {
        let mut hits: Vec<Hit> = labels
            .iter()
            .zip(scores)
            .filter(|(label, _)| **label >= 0)
            .map(|(&label, &score)| Hit {
                label,
                distance: self.metric.distance(score),
            })
            .collect();
        Index::sort_hits(&mut hits);
        hits
    }
}

impl Index {
    /// The index in FAISS's own serialization format.
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>> {
        io::write(self.inner.inner_ptr())
    }

    /// An index from the bytes [`to_bytes`](Self::to_bytes) wrote, read from `source`. Only
    /// call it on bytes whose checksum matched: FAISS's reader trusts its input.
    pub(crate) fn from_reader(source: &mut dyn std::io::Read, metric: Metric) -> Result<Index> {
        Self::checked(io::read_from(source)?, metric)
    }

    fn checked(raw: *mut faiss_sys::FaissIndex, metric: Metric) -> Result<Index> {
        // SAFETY: `raw` is a freshly read index that nothing else owns.
        let inner = unsafe { IndexImpl::from_inner_ptr(raw) };
        let dim = inner.d() as usize;
        if dim == 0 || dim > crate::vector::MAX_DIM {
            bail!("stored index has dimension {dim}");
        }
        // SAFETY: a getter on the index just read.
        let stored = unsafe { faiss_sys::faiss_Index_metric_type(inner.inner_ptr()) };
        let expected = match metric {
            Metric::L2 => faiss_sys::FaissMetricType_METRIC_L2,
            Metric::InnerProduct | Metric::Cosine => {
                faiss_sys::FaissMetricType_METRIC_INNER_PRODUCT
            }
        };
        if stored != expected {
            bail!(
                "stored index uses FAISS metric {stored}, but the table's metric is {}",
                metric.name()
            );
        }
        Ok(Index::wrap(inner, dim, metric))
    }
}

/// Largest number accepted anywhere in a factory string (list counts, sizes, …).
const MAX_FACTORY_NUMBER: u64 = 1 << 20;
/// Largest HNSW graph degree M (each vector keeps 2·M links at level 0).
const MAX_HNSW_M: u64 = 512;
/// Largest code size in bits for `PQ…x<bits>` (2^bits centroids per sub-quantizer).
const MAX_CODE_BITS: u64 = 16;

/// Refuse factory strings FAISS parses but then crashes, hangs or allocates without bound on
/// (`HNSW0` segfaults, `IVF0,Flat` faults, `OPQ6_0` divides by zero, small `NSG` hangs), and
/// index types a live index cannot use.
pub(crate) fn check_factory(factory: &str) -> Result<()> {
    let f = factory.trim();
    if f.is_empty() || f.len() > 256 || !f.chars().all(|c| c.is_ascii_graphic()) {
        bail!("factory '{factory}' is not a FAISS index_factory string");
    }
    if f.contains("NSG") || f.contains("NNDescent") {
        bail!("factory '{f}': NSG and NNDescent graphs cannot grow after they are built; use HNSW");
    }
    if f.contains("IDMap") {
        bail!("factory '{f}': vekter maps ids itself; leave out 'IDMap'");
    }
    let bytes = f.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let n: u64 = f[start..i].parse().unwrap_or(u64::MAX);
        let before = &f[..start];
        if n == 0 {
            bail!("factory '{f}': a size of 0 is not valid");
        }
        if n > MAX_FACTORY_NUMBER {
            bail!("factory '{f}': {n} is above the limit of {MAX_FACTORY_NUMBER}");
        }
        if before.ends_with("HNSW") && !(2..=MAX_HNSW_M).contains(&n) {
            bail!("factory '{f}': HNSW M = {n} is outside 2..={MAX_HNSW_M}");
        }
        let after_x = before.ends_with('x')
            && before[..before.len() - 1].ends_with(|c: char| c.is_ascii_digit());
        if after_x && n > MAX_CODE_BITS {
            bail!("factory '{f}': codes of {n} bits are above the limit of {MAX_CODE_BITS}");
        }
    }
    Ok(())
}

/// The FAISS library version, e.g. `1.12.0`.
pub(crate) fn faiss_version() -> String {
    // SAFETY: returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(faiss_sys::faiss_get_version()) }
        .to_string_lossy()
        .into_owned()
}

fn faiss_error(e: faiss::error::Error) -> Error {
    match e {
        faiss::error::Error::Native(native) => {
            Error::of(Kind::Faiss, format!("FAISS: {}", clean(native.msg())))
        }
        other => Error::of(Kind::Faiss, format!("FAISS: {other}")),
    }
}

/// FAISS messages read "Error in <C++ signature> at <file>:<line>: <message>": keep the
/// message, which is what a user can act on.
fn clean(msg: &str) -> &str {
    let msg = msg.trim();
    for ext in [".cpp:", ".h:"] {
        if let Some(at) = msg.find(ext) {
            let rest = &msg[at + ext.len()..];
            let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            if let Some(m) = rest.strip_prefix(": ") {
                return m.strip_prefix("Error: ").unwrap_or(m).trim();
            }
        }
    }
    msg
}

/// The message of the FAISS exception the last call on this thread turned into an error code.
pub(crate) fn last_error() -> Error {
    // SAFETY: thread-local string owned by FAISS, copied at once.
    let msg = unsafe {
        let p = faiss_sys::faiss_get_last_error();
        if p.is_null() {
            "unknown error".to_string()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Error::of(Kind::Faiss, format!("FAISS: {}", clean(&msg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_l2_exact_and_clamped() {
        let mut index = Index::new("Flat", 2, Metric::L2).unwrap();
        index.add(&[0.0, 0.0, 1.0, 0.0, 0.0, 3.0]).unwrap();
        let hits = index.search(&[0.5, 0.0], 10).unwrap();
        let labels: Vec<i64> = hits.iter().map(|h| h.label).collect();
        assert_eq!(
            labels,
            vec![0, 1, 2],
            "ties keep label order, k clamps to ntotal"
        );
        assert_eq!(hits[0].distance, 0.25);
        assert_eq!(hits[2].distance, 9.25);
    }

    #[test]
    fn empty_index_and_bad_query() {
        let index = Index::new("Flat", 3, Metric::L2).unwrap();
        assert!(index.search(&[1.0, 2.0, 3.0], 5).unwrap().is_empty());
        assert!(index
            .search(&[1.0], 5)
            .unwrap_err()
            .message()
            .contains("dimensions"));
        assert!(Index::new("NoSuchIndex", 3, Metric::L2).is_err());
    }

    #[test]
    fn faiss_messages_lose_their_source_location() {
        let raw = "Error in void faiss::Clustering::train_encoded(faiss::idx_t) at /x/faiss/Clustering.cpp:274: Error: 'nx >= k' failed: Number of training points (3) should be at least as large as number of clusters (16)";
        assert_eq!(
            clean(raw),
            "'nx >= k' failed: Number of training points (3) should be at least as large as number of clusters (16)"
        );
        assert_eq!(clean("plain"), "plain");
    }

    #[test]
    fn dangerous_factories_are_refused() {
        for bad in [
            "HNSW0",
            "HNSW1",
            "IVF0,Flat",
            "OPQ6_0,Flat",
            "NSG32",
            "IDMap,Flat",
            "HNSW100000",
            "IVF99999999,Flat",
            "PQ2x20",
            "",
            "  ",
            "Fl at",
            "IVF4,PQ8x17",
        ] {
            assert!(check_factory(bad).is_err(), "{bad:?}");
        }
        for good in [
            "Flat",
            "HNSW32",
            "IVF1024,PQ16x8",
            "OPQ16_64,IVF65536_HNSW32,PQ16",
            "IVF4,Flat,RFlat",
            "PQ8x4fs",
            "SQ8",
            "PCAR64,Flat",
        ] {
            assert!(check_factory(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn every_metric_returns_a_distance() {
        let mut cosine = Index::new("Flat", 2, Metric::Cosine).unwrap();
        cosine.add(&[2.0, 0.0, 0.0, 5.0]).unwrap();
        let hits = cosine.search(&[3.0, 3.0 + 1e-3], 2).unwrap();
        assert_eq!(hits[0].label, 1);
        let want = 1.0 - std::f32::consts::FRAC_1_SQRT_2;
        assert!((hits[0].distance - want).abs() < 1e-3);
        assert!(
            (Metric::Cosine.exact_distance(&[3.0, 3.0 + 1e-3], &[0.0, 5.0]) - want).abs() < 1e-3
        );
        let mut ip = Index::new("Flat", 2, Metric::InnerProduct).unwrap();
        ip.add(&[1.0, 0.0, 3.0, 0.0]).unwrap();
        let hits = ip.search(&[2.0, 0.0], 2).unwrap();
        assert_eq!(
            (hits[0].label, hits[0].distance),
            (1, -6.0),
            "larger product, nearer"
        );
        assert_eq!(hits[1].distance, -2.0);
        assert_eq!(
            Metric::InnerProduct.exact_distance(&[2.0, 0.0], &[3.0, 0.0]),
            -6.0
        );
    }

    #[test]
    fn index_types_that_refuse_search_parameters_say_so() {
        let mut index = Index::new("PQ2x4", 4, Metric::L2).unwrap();
        let data: Vec<f32> = (0..4 * 64).map(|i| (i % 17) as f32).collect();
        index.train(&data).unwrap();
        index.add(&data).unwrap();
        let mut some = Bitmap::new(64);
        some.set(3, true);
        for _ in 0..2 {
            let e = index
                .search_selected(&data[..4], 3, Some(&some), None)
                .unwrap_err();
            assert_eq!(e.kind(), Kind::Unsupported, "{}", e.message());
        }
        assert_eq!(index.search(&data[..4], 3).unwrap().len(), 3);
    }

    #[test]
    fn stored_metric_must_match_the_table() {
        let mut index = Index::new("Flat", 2, Metric::L2).unwrap();
        index.add(&[1.0, 2.0]).unwrap();
        let bytes = index.to_bytes().unwrap();
        assert!(Index::from_reader(&mut bytes.as_slice(), Metric::L2).is_ok());
        for other in [Metric::InnerProduct, Metric::Cosine] {
            let e = Index::from_reader(&mut bytes.as_slice(), other)
                .err()
                .unwrap();
            assert!(
                e.message().contains("the table's metric is"),
                "{}",
                e.message()
            );
        }
    }
}
