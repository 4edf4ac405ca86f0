//! Big exact scans split over the idle cores: a Flat index searched in contiguous label
//! ranges, one per thread of a [`SearchTeam`](crate::threads::SearchTeam), then merged (the
//! thread policy is in `src/threads.rs`).

use crate::error::{Error, Kind, Result};

use super::{last_error, selector, Hit, Index};

impl Index {
    /// How many threads an exact scan for `queries` query vectors could use: one per
    /// [`SHARD_MIN_FLOATS`](crate::threads::SHARD_MIN_FLOATS) of a Flat index, for fewer queries
    /// than FAISS's matrix-product threshold (20; a batch shares one scan already). One for
    /// every other index or search.
    pub(super) fn scan_threads(&self, queries: usize) -> usize {
        const FAISS_BLAS_THRESHOLD: usize = 20;
        if queries >= FAISS_BLAS_THRESHOLD || !self.is_flat() {
            return 1;
        }
        (self.ntotal().saturating_mul(self.dim) / crate::threads::SHARD_MIN_FLOATS).max(1)
    }

    /// True for a plain `IndexFlat` (L2 or inner product): labels are positions in one array
    /// of vectors, so a range of labels is a slice FAISS can scan alone.
    pub(crate) fn is_flat(&self) -> bool {
        // SAFETY: a dynamic cast of our own live index; NULL when it is another type.
        unsafe { !faiss_sys::faiss_IndexFlat_cast(self.inner.inner_ptr()).is_null() }
    }

    /// An exact search of a Flat index split into `team.size()` contiguous label ranges, the
    /// first scanned by the calling thread and each other one by a helper thread, then merged.
    /// Every thread passes FAISS a bare `IDSelectorRange`, which FAISS's exact scan turns into
    /// a scan of that slice alone, and asks for at most as many results as its range holds. A
    /// helper that cannot be started leaves its range, and those after it, to the caller.
    pub(super) fn search_in_ranges(
        &self,
        queries: &[f32],
        k: usize,
        team: &mut crate::threads::SearchTeam,
    ) -> Result<Vec<Vec<Hit>>> {
        let n = queries.len() / self.dim;
        let ntotal = self.ntotal();
        // Each part: (k of its range, scores, labels), k at most the range's size.
        let scan = |lo: usize, hi: usize| -> Result<(usize, Vec<f32>, Vec<i64>)> {
            crate::threads::for_search();
            let k = k.min(hi - lo).max(1);
            let params = selector::SearchParams::new(selector::Select::Range(lo, hi), None)?;
            let mut scores = vec![0f32; n * k];
            let mut labels = vec![-1i64; n * k];
            if self.raw_search(queries, k, params.raw(), &mut scores, &mut labels) != 0 {
                // FAISS's last error is per thread: read it on the thread that failed.
                return Err(last_error());
            }
            Ok((k, scores, labels))
        };
        let scan = &scan;
        type Part = Result<(usize, Vec<f32>, Vec<i64>)>;
        let parts: Vec<Part> = std::thread::scope(|s| {
            let threads = team.size();
            let bound = |i: usize| ntotal * i / threads;
            let mut helpers = Vec::with_capacity(threads - 1);
            for i in 1..threads {
                let (lo, hi) = (bound(i), bound(i + 1));
                match std::thread::Builder::new()
                    .name("vekter-scan".into())
                    .spawn_scoped(s, move || scan(lo, hi))
                {
                    Ok(handle) => helpers.push((handle, lo, hi)),
                    // No thread to be had (a process limit): the caller scans what is left.
                    Err(_) => break,
                }
            }
            let started = helpers.len() + 1;
            team.shrink_to(started);
            if started > 1 {
                crate::threads::count_split_scan();
            }
            // The caller's range, and the ranges of helpers that could not be started.
            let mut parts = vec![scan(0, bound(1))];
            if started < threads {
                parts.push(scan(bound(started), ntotal));
            }
            for (handle, lo, hi) in helpers {
                parts.push(handle.join().unwrap_or_else(|_| {
                    Err(Error::of(
                        Kind::Internal,
                        format!("a scan thread stopped on labels {lo}..{hi}"),
                    ))
                }));
            }
            parts
        });
        let parts = parts.into_iter().collect::<Result<Vec<_>>>()?;
        Ok((0..n)
            .map(|q| {
                let (labels, scores): (Vec<i64>, Vec<f32>) = parts
                    .iter()
                    .flat_map(|(k, scores, labels)| {
                        let range = q * k..(q + 1) * k;
                        labels[range.clone()].iter().zip(&scores[range])
                    })
                    .unzip();
                let mut hits = self.collect_hits(&labels, &scores);
                hits.truncate(k);
                hits
            })
            .collect())
    }
}
