//! Restricting a FAISS search to a set of labels: a bitmap over labels handed to FAISS as an
//! `IDSelectorBitmap` inside `SearchParameters`.

use crate::error::Result;

use super::last_error;

/// One bit per label; label `i` is selected when bit `i % 8` of byte `i / 8` is set (FAISS's
/// `IDSelectorBitmap` layout).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bitmap {
    bytes: Vec<u8>,
    len: usize,
}

impl Bitmap {
    /// `len` labels, all cleared.
    pub(crate) fn new(len: usize) -> Bitmap {
        Bitmap {
            bytes: vec![0; len.div_ceil(8)],
            len,
        }
    }

    /// Grow to `len` labels; new labels are set to `value`.
    pub(crate) fn resize(&mut self, len: usize, value: bool) {
        let old = self.len;
        self.bytes.resize(len.div_ceil(8), 0);
        self.len = len;
        if value {
            for i in old..len {
                self.set(i, true);
            }
        }
    }

    pub(crate) fn get(&self, i: usize) -> bool {
        i < self.len && self.bytes[i >> 3] & (1 << (i & 7)) != 0
    }

    pub(crate) fn set(&mut self, i: usize, value: bool) {
        if i < self.len {
            if value {
                self.bytes[i >> 3] |= 1 << (i & 7);
            } else {
                self.bytes[i >> 3] &= !(1 << (i & 7));
            }
        }
    }

    pub(crate) fn count_ones(&self) -> usize {
        self.bytes.iter().map(|b| b.count_ones() as usize).sum()
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Which labels a search may return.
pub(super) enum Select<'a> {
    All,
    /// The labels whose bit is set.
    Labels(&'a Bitmap),
    /// The labels `lo..hi`: FAISS's exact scan then reads only that slice of the index (it
    /// narrows the scan for a bare `IDSelectorRange` only).
    Range(usize, usize),
}

/// FAISS search parameters with a selector, freed on drop. One per search: FAISS parameter
/// objects are never shared between concurrent searches.
pub(super) struct SearchParams {
    params: Params,
    /// The selector the parameters hold (NULL selects every label); they do not own it.
    selector: *mut faiss_sys::FaissIDSelector,
}

enum Params {
    None,
    Base(*mut faiss_sys::FaissSearchParameters),
    /// IVF indexes reject the base type: they need `SearchParametersIVF`.
    Ivf(*mut faiss_sys::FaissSearchParametersIVF),
}

impl SearchParams {
    /// Parameters selecting `select`; `ivf_nprobe` for IVF indexes (the value this search
    /// uses).
    pub(super) fn new(select: Select, ivf_nprobe: Option<usize>) -> Result<SearchParams> {
        let mut made = SearchParams {
            params: Params::None,
            selector: std::ptr::null_mut(),
        };
        // SAFETY: FAISS keeps a pointer to the bitmap's bytes, which outlive these parameters
        // (both live for one search call); `n` is the bitmap's size in bytes. The selector is
        // stored in `made` as soon as it exists, so Drop frees it on every error path.
        unsafe {
            let rc = match select {
                Select::All => 0,
                Select::Range(lo, hi) => {
                    let mut sel = std::ptr::null_mut();
                    let rc = faiss_sys::faiss_IDSelectorRange_new(&mut sel, lo as i64, hi as i64);
                    made.selector = sel as *mut _;
                    rc
                }
                Select::Labels(bitmap) => {
                    let bytes = bitmap.as_bytes();
                    let mut sel = std::ptr::null_mut();
                    let rc = faiss_sys::faiss_IDSelectorBitmap_new(
                        &mut sel,
                        bytes.len(),
                        bytes.as_ptr(),
                    );
                    made.selector = sel as *mut _;
                    rc
                }
            };
            if rc != 0 {
                return Err(last_error());
            }
            let selector = made.selector;
            let rc;
            made.params = match ivf_nprobe {
                Some(nprobe) => {
                    let mut p = std::ptr::null_mut();
                    rc = faiss_sys::faiss_SearchParametersIVF_new_with(&mut p, selector, nprobe, 0);
                    Params::Ivf(p)
                }
                None => {
                    let mut p = std::ptr::null_mut();
                    rc = faiss_sys::faiss_SearchParameters_new(&mut p, selector);
                    Params::Base(p)
                }
            };
            if rc != 0 {
                made.params = Params::None;
                return Err(last_error());
            }
        }
        Ok(made)
    }

    pub(super) fn raw(&self) -> *const faiss_sys::FaissSearchParameters {
        match self.params {
            Params::None => std::ptr::null(),
            Params::Base(p) => p,
            Params::Ivf(p) => p as *const faiss_sys::FaissSearchParameters,
        }
    }
}

impl Drop for SearchParams {
    fn drop(&mut self) {
        // SAFETY: created in `new`; the parameters do not own the selector.
        unsafe {
            match self.params {
                Params::None => {}
                Params::Base(p) => faiss_sys::faiss_SearchParameters_free(p),
                Params::Ivf(p) => faiss_sys::faiss_SearchParametersIVF_free(p),
            }
            if !self.selector.is_null() {
                faiss_sys::faiss_IDSelector_free(self.selector);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_bits() {
        let mut b = Bitmap::new(10);
        b.set(0, true);
        b.set(9, true);
        assert!(b.get(0) && b.get(9) && !b.get(5) && !b.get(10));
        b.resize(20, true);
        assert_eq!(b.count_ones(), 12);
        b.set(15, false);
        assert_eq!(b.count_ones(), 11);
    }
}
