//! The only module that calls FAISS. It takes validated vectors and returns typed hits; every
//! precondition FAISS would `abort()` on (dimension, k, empty index) is checked here first.

use std::ffi::CStr;

use faiss::index::IndexImpl;
use faiss::{Index as _, MetricType};

use crate::error::{bail, Error, Result};

/// How distances are measured (SPEC §3 score rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Squared Euclidean distance, smaller is nearer (datasette-faiss's default).
    L2,
    /// Inner product, larger is nearer.
    InnerProduct,
    /// Inner product of normalised vectors = cosine similarity, larger is nearer.
    Cosine,
}

impl Metric {
    pub fn name(self) -> &'static str {
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

    /// True when a smaller score is nearer.
    fn ascending(self) -> bool {
        self == Metric::L2
    }
}

/// One search result: the FAISS label and its score under the index's metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub label: i64,
    pub score: f32,
}

/// An owned FAISS index with its dimension and metric.
pub struct Index {
    inner: IndexImpl,
    dim: usize,
    metric: Metric,
}

impl Index {
    /// A new, empty index from a factory string such as `Flat` or `HNSW32`.
    pub fn new(factory: &str, dim: usize, metric: Metric) -> Result<Self> {
        if dim == 0 || dim > crate::vector::MAX_DIM {
            bail!(
                "dimension {dim} is out of range 1..={}",
                crate::vector::MAX_DIM
            );
        }
        let inner = faiss::index_factory(dim as u32, factory, metric.faiss())
            .map_err(|e| faiss_error(e).context(format!("FAISS factory '{factory}'")))?;
        Ok(Index { inner, dim, metric })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn ntotal(&self) -> usize {
        self.inner.ntotal() as usize
    }

    /// Add vectors (row-major, `n × dim`); they get the labels `ntotal..ntotal + n`.
    pub fn add(&mut self, vectors: &[f32]) -> Result<()> {
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
        self.inner.add(&prepared).map_err(faiss_error)
    }

    /// The `k` nearest neighbours of `query`, nearest first; ties keep label order.
    /// Returns fewer than `k` hits when the index holds fewer vectors, never padding.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.check_query(query)?;
        let k = k.min(self.ntotal());
        if k == 0 {
            return Ok(Vec::new());
        }
        let query = self.prepare(query);
        let mut scores = vec![0f32; k];
        let mut labels = vec![-1i64; k];
        // SAFETY: the index is valid; `query` holds one `dim`-vector; both outputs hold `k`.
        let rc = unsafe {
            faiss_sys::faiss_Index_search(
                self.inner.inner_ptr(),
                1,
                query.as_ptr(),
                k as i64,
                scores.as_mut_ptr(),
                labels.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(last_error());
        }
        Ok(self.collect_hits(&labels, &scores))
    }

    fn check_query(&self, query: &[f32]) -> Result<()> {
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

    /// Drop the -1 padding FAISS uses for missing results and order ties by label.
    fn collect_hits(&self, labels: &[i64], scores: &[f32]) -> Vec<Hit> {
        let mut hits: Vec<Hit> = labels
            .iter()
            .zip(scores)
            .filter(|(label, _)| **label >= 0)
            .map(|(&label, &score)| Hit { label, score })
            .collect();
        let ascending = self.metric.ascending();
        hits.sort_by(|a, b| {
            let by_score = if ascending {
                a.score.total_cmp(&b.score)
            } else {
                b.score.total_cmp(&a.score)
            };
            by_score.then(a.label.cmp(&b.label))
        });
        hits
    }
}

/// The FAISS library version, e.g. `1.12.0`.
pub fn faiss_version() -> String {
    // SAFETY: returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(faiss_sys::faiss_get_version()) }
        .to_string_lossy()
        .into_owned()
}

fn faiss_error(e: faiss::error::Error) -> Error {
    match e {
        faiss::error::Error::Native(native) => {
            Error::new(format!("FAISS: {}", native.msg().trim()))
        }
        other => Error::new(format!("FAISS: {other}")),
    }
}

/// The message of the FAISS exception the last call on this thread turned into an error code.
fn last_error() -> Error {
    // SAFETY: thread-local string owned by FAISS, copied at once.
    let msg = unsafe {
        let p = faiss_sys::faiss_get_last_error();
        if p.is_null() {
            "unknown error".to_string()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Error::new(format!("FAISS: {}", msg.trim()))
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
        assert_eq!(hits[0].score, 0.25);
        assert_eq!(hits[2].score, 9.25);
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
    fn cosine_is_similarity() {
        let mut index = Index::new("Flat", 2, Metric::Cosine).unwrap();
        index.add(&[2.0, 0.0, 0.0, 5.0]).unwrap();
        let hits = index.search(&[3.0, 3.0 + 1e-3], 2).unwrap();
        assert_eq!(hits[0].label, 1);
        assert!((hits[0].score - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-3);
    }
}
