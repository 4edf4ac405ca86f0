//! FAISS serialization to and from memory. The C API only reads and writes a `FILE*`, so the
//! bytes go out through `open_memstream` and come in through a `fopencookie` stream over any
//! `std::io::Read` (no temporary files, no paths).

use std::os::raw::{c_char, c_int, c_void};

use crate::error::{Error, Kind, Result};

use super::last_error;

#[repr(C)]
struct CookieIo {
    read: Option<unsafe extern "C" fn(*mut c_void, *mut c_char, usize) -> isize>,
    write: Option<unsafe extern "C" fn(*mut c_void, *const c_char, usize) -> isize>,
    seek: Option<unsafe extern "C" fn(*mut c_void, *mut i64, c_int) -> c_int>,
    close: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
}

const IOFBF: c_int = 0;

extern "C" {
    fn fopencookie(cookie: *mut c_void, mode: *const c_char, io: CookieIo) -> *mut c_void;
    fn setvbuf(stream: *mut c_void, buf: *mut c_char, mode: c_int, size: usize) -> c_int;
    fn open_memstream(ptr: *mut *mut c_char, size: *mut usize) -> *mut c_void;
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
            return Err(Error::of(Kind::Internal, "cannot open a memory stream"));
        }
        let rc = faiss_sys::faiss_write_index(index, stream as *mut faiss_sys::FILE);
        let closed = fclose(stream);
        let result = if rc != 0 {
            Err(last_error())
        } else if closed != 0 || buf.is_null() {
            Err(Error::of(
                Kind::Internal,
                "cannot serialize the index: out of memory",
            ))
        } else {
            Ok(std::slice::from_raw_parts(buf as *const u8, size).to_vec())
        };
        free(buf as *mut c_void);
        result
    }
}

/// What the `fopencookie` read callback works with.
struct Cookie<'a> {
    source: &'a mut dyn std::io::Read,
    /// Why the source failed: a reader's own [`Error`] keeps its kind (a busy or failing
    /// database is not a damaged snapshot).
    error: Option<Error>,
}

unsafe extern "C" fn cookie_read(cookie: *mut c_void, buf: *mut c_char, size: usize) -> isize {
    // SAFETY: `cookie` is the `Cookie` passed to fopencookie in `read_from`, alive for the
    // stream's life; `buf` holds `size` bytes (glibc's stream buffer).
    let cookie = &mut *(cookie as *mut Cookie);
    let dest = std::slice::from_raw_parts_mut(buf as *mut u8, size);
    // No unwinding into FAISS's C++ frames: a panic becomes a read error.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cookie.source.read(dest))) {
        Ok(Ok(n)) => n as isize,
        Ok(Err(e)) => {
            let own = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>());
            cookie.error = Some(match own {
                Some(error) => error.clone(),
                None => Error::of(Kind::Corrupt, e.to_string()),
            });
            -1
        }
        Err(_) => {
            cookie.error = Some(Error::of(
                Kind::Internal,
                "internal error while reading the stored index",
            ));
            -1
        }
    }
}

#[cfg(feature = "fuzzing")]
thread_local! {
    /// Calls of FAISS's reader on this thread: the fuzz targets check that forged bytes never
    /// reach it.
    pub(crate) static FAISS_READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Read an index from `source` through a `FILE*` (1 MiB stdio buffer): for snapshots read
/// piece by piece from SQLite, with no copy of the whole serialization in memory.
pub(super) fn read_from(source: &mut dyn std::io::Read) -> Result<*mut faiss_sys::FaissIndex> {
    #[cfg(feature = "fuzzing")]
    FAISS_READS.with(|n| n.set(n.get() + 1));
    let mut cookie = Cookie {
        source,
        error: None,
    };
    let io = CookieIo {
        read: Some(cookie_read),
        write: None,
        seek: None,
        close: None,
    };
    let mut index = std::ptr::null_mut();
    // SAFETY: the cookie outlives the stream (closed before returning); FAISS only reads.
    unsafe {
        let stream = fopencookie(&mut cookie as *mut Cookie as *mut c_void, c"r".as_ptr(), io);
        if stream.is_null() {
            return Err(Error::of(
                Kind::Internal,
                "cannot open a stream for the stored index",
            ));
        }
        setvbuf(stream, std::ptr::null_mut(), IOFBF, 1 << 20);
        let rc = faiss_sys::faiss_read_index(stream as *mut faiss_sys::FILE, 0, &mut index);
        fclose(stream);
        if rc != 0 {
            let e = cookie.error.take().unwrap_or_else(last_error);
            return Err(e.context("cannot load the stored index"));
        }
        if index.is_null() {
            return Err(Error::of(
                Kind::Corrupt,
                "stored index is empty (FAISS read a null index)",
            ));
        }
    }
    Ok(index)
}
