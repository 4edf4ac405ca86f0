//! FAISS serialization to and from memory. The C API only writes to a `FILE*`, so the bytes go
//! through `open_memstream` / `fmemopen` (no temporary files, no paths).

use std::os::raw::{c_char, c_int, c_void};

use crate::error::{Error, Result};

use super::last_error;

extern "C" {
    fn open_memstream(ptr: *mut *mut c_char, size: *mut usize) -> *mut c_void;
    fn fmemopen(buf: *mut c_void, size: usize, mode: *const c_char) -> *mut c_void;
    fn fclose(stream: *mut c_void) -> c_int;
    fn free(ptr: *mut c_void);
}

pub(super) fn write(index: *const faiss_sys::FaissIndex) -> Result<Vec<u8>> {
    let mut buf: *mut c_char = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the stream owns `buf` until fclose; we copy and free it afterwards.
    unsafe {
        let stream = open_memstream(&mut buf, &mut size);
        if stream.is_null() {
            return Err(Error::new("cannot open a memory stream"));
        }
        let rc = faiss_sys::faiss_write_index(index, stream as *mut faiss_sys::FILE);
        let closed = fclose(stream);
        let result = if rc != 0 {
            Err(last_error())
        } else if closed != 0 || buf.is_null() {
            Err(Error::new("cannot serialize the index: out of memory"))
        } else {
            Ok(std::slice::from_raw_parts(buf as *const u8, size).to_vec())
        };
        free(buf as *mut c_void);
        result
    }
}

pub(super) fn read(bytes: &[u8]) -> Result<*mut faiss_sys::FaissIndex> {
    if bytes.is_empty() {
        return Err(Error::new("stored index is empty"));
    }
    let mut index = std::ptr::null_mut();
    // SAFETY: "r" streams never write to the buffer; it outlives the stream.
    unsafe {
        let stream = fmemopen(bytes.as_ptr() as *mut c_void, bytes.len(), c"r".as_ptr());
        if stream.is_null() {
            return Err(Error::new("cannot open a memory stream"));
        }
        let rc = faiss_sys::faiss_read_index(stream as *mut faiss_sys::FILE, 0, &mut index);
        fclose(stream);
        if rc != 0 {
            return Err(last_error().context("cannot load the stored index"));
        }
        if index.is_null() {
            // FAISS's `null` tag reads as success with no index; its last error is stale.
            return Err(Error::new(
                "stored index is empty (FAISS read a null index)",
            ));
        }
    }
    Ok(index)
}
