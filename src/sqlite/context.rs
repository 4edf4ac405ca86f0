//! Setting function results ([sqlite3_result_*](https://www.sqlite.org/c3ref/result_blob.html)).

use std::os::raw::{c_char, c_void};

use sqlite3ext_sys::{sqlite3_context, sqlite3_destructor_type};

use super::api::call;
use super::conn::Conn;
use crate::error::Error;

const SQLITE_UTF8: u8 = 1;

/// SQLITE_TRANSIENT: SQLite copies the bytes before the call returns.
fn transient() -> sqlite3_destructor_type {
    // SAFETY: SQLite defines SQLITE_TRANSIENT as the destructor pointer value -1.
    Some(unsafe { std::mem::transmute::<isize, unsafe extern "C" fn(*mut c_void)>(-1) })
}

/// The value a function returns to SQL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// The `sqlite3_context*` of one function call.
#[derive(Clone, Copy)]
pub(crate) struct Context {
    raw: *mut sqlite3_context,
}

impl Context {
    /// # Safety
    /// `raw` must be the context of the call in progress.
    pub(crate) unsafe fn from_raw(raw: *mut sqlite3_context) -> Self {
        Context { raw }
    }

    /// The connection running this call.
    pub(crate) fn conn(&self) -> Conn {
        // SAFETY: valid context for the duration of the call.
        unsafe { Conn::from_raw(call!(context_db_handle(self.raw))) }
    }

    pub(crate) fn set(&self, output: &Output) {
        let ctx = self.raw;
        // SAFETY: valid context; SQLite copies text and blobs (SQLITE_TRANSIENT).
        unsafe {
            match output {
                Output::Null => call!(result_null(ctx)),
                Output::Integer(i) => call!(result_int64(ctx, *i)),
                Output::Real(f) => call!(result_double(ctx, *f)),
                Output::Text(s) => call!(result_text64(
                    ctx,
                    s.as_ptr() as *const c_char,
                    s.len() as u64,
                    transient(),
                    SQLITE_UTF8
                )),
                Output::Blob(b) => call!(result_blob64(
                    ctx,
                    b.as_ptr() as *const c_void,
                    b.len() as u64,
                    transient()
                )),
            }
        }
    }

    pub(crate) fn set_error(&self, error: &Error) {
        let msg = error.message();
        // SAFETY: valid context; SQLite copies the message.
        unsafe {
            call!(result_error(
                self.raw,
                msg.as_ptr() as *const c_char,
                msg.len().min(i32::MAX as usize) as i32
            ));
            call!(result_error_code(self.raw, error.code()));
        }
    }
}
