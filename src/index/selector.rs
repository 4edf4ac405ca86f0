//! Restricting a FAISS search to a set of labels: a bitmap over labels handed to FAISS as an
//! `IDSelectorBitmap` inside `SearchParameters`.

use crate::error::Result;

use super::last_error;

/// One bit per label; label `i` is selected when bit `i % 8` of byte `i / 8` is set (FAISS's
/// `IDSelectorBitmap` layout).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitmap {
    bytes: Vec<u8>,
    len: usize,
}

impl Bitmap {
    /// `len` labels, all cleared.
    pub fn new(len: usize) -> Bitmap {
        Bitmap {
            bytes: vec![0; len.div_ceil(8)],
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Grow to `len` labels; new labels are set to `value`.
    pub fn resize(&mut self, len: usize, value: bool) {
        let old = self.len;
        self.bytes.resize(len.div_ceil(8), 0);
        self.len = len;
        if value {
            for i in old..len {
                self.set(i, true);
            }
        }
    }

    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.bytes[i >> 3] & (1 << (i & 7)) != 0
    }

    pub fn set(&mut self, i: usize, value: bool) {
        if i < self.len {
            if value {
                self.bytes[i >> 3] |= 1 << (i & 7);
            } else {
                self.bytes[i >> 3] &= !(1 << (i & 7));
            }
        }
    }

    pub fn count_ones(&self) -> usize {
        self.bytes.iter().map(|b| b.count_ones() as usize).sum()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// FAISS `SearchParameters` with a bitmap selector, freed on drop. One per search: FAISS
/// parameter objects are never shared between concurrent searches.
pub(super) struct SearchParams {
    params: *mut faiss_sys::FaissSearchParameters,
    selector: *mut faiss_sys::FaissIDSelectorBitmap,
}

impl SearchParams {
    pub(super) fn new(bitmap: &Bitmap) -> Result<SearchParams> {
        let mut selector = std::ptr::null_mut();
        let mut params = std::ptr::null_mut();
        // SAFETY: FAISS keeps a pointer to the bitmap's bytes, which outlive these parameters
        // (both live for one search call); every object created is freed in Drop.
        unsafe {
            if faiss_sys::faiss_IDSelectorBitmap_new(
                &mut selector,
                bitmap.len(),
                bitmap.as_bytes().as_ptr(),
            ) != 0
            {
                return Err(last_error());
            }
            if faiss_sys::faiss_SearchParameters_new(&mut params, selector as *mut _) != 0 {
                faiss_sys::faiss_IDSelectorBitmap_free(selector);
                return Err(last_error());
            }
        }
        Ok(SearchParams { params, selector })
    }

    pub(super) fn raw(&self) -> *const faiss_sys::FaissSearchParameters {
        self.params
    }
}

impl Drop for SearchParams {
    fn drop(&mut self) {
        // SAFETY: created in `new`; the parameters do not own the selector.
        unsafe {
            faiss_sys::faiss_SearchParameters_free(self.params);
            faiss_sys::faiss_IDSelectorBitmap_free(self.selector);
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
