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

/// FAISS search parameters with a bitmap selector, freed on drop. One per search: FAISS
/// parameter objects are never shared between concurrent searches.
pub(super) struct SearchParams {
    params: Params,
    selector: *mut faiss_sys::FaissIDSelectorBitmap,
}

enum Params {
    Base(*mut faiss_sys::FaissSearchParameters),
    /// IVF indexes reject the base type: they need `SearchParametersIVF`.
    Ivf(*mut faiss_sys::FaissSearchParametersIVF),
}

impl SearchParams {
    /// Parameters selecting `bitmap` (every label when `None`); `ivf_nprobe` for IVF indexes
    /// (the value this search uses).
    pub(super) fn new(bitmap: Option<&Bitmap>, ivf_nprobe: Option<usize>) -> Result<SearchParams> {
        let mut selector = std::ptr::null_mut();
        // SAFETY: FAISS keeps a pointer to the bitmap's bytes, which outlive these parameters
        // (both live for one search call); `n` is the bitmap's size in bytes. Every object
        // created is freed in Drop or on the error path; a NULL selector selects everything.
        unsafe {
            if let Some(bitmap) = bitmap {
                if faiss_sys::faiss_IDSelectorBitmap_new(
                    &mut selector,
                    bitmap.as_bytes().len(),
                    bitmap.as_bytes().as_ptr(),
                ) != 0
                {
                    return Err(last_error());
                }
            }
            let params = match ivf_nprobe {
                Some(nprobe) => {
                    let mut p = std::ptr::null_mut();
                    let rc = faiss_sys::faiss_SearchParametersIVF_new_with(
                        &mut p,
                        selector as *mut _,
                        nprobe,
                        0,
                    );
                    (rc == 0).then_some(Params::Ivf(p))
                }
                None => {
                    let mut p = std::ptr::null_mut();
                    let rc = faiss_sys::faiss_SearchParameters_new(&mut p, selector as *mut _);
                    (rc == 0).then_some(Params::Base(p))
                }
            };
            match params {
                Some(params) => Ok(SearchParams { params, selector }),
                None => {
                    if !selector.is_null() {
                        faiss_sys::faiss_IDSelectorBitmap_free(selector);
                    }
                    Err(last_error())
                }
            }
        }
    }

    pub(super) fn raw(&self) -> *const faiss_sys::FaissSearchParameters {
        match self.params {
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
                Params::Base(p) => faiss_sys::faiss_SearchParameters_free(p),
                Params::Ivf(p) => faiss_sys::faiss_SearchParametersIVF_free(p),
            }
            if !self.selector.is_null() {
                faiss_sys::faiss_IDSelectorBitmap_free(self.selector);
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
