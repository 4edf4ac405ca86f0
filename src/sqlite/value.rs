//! Reading SQL values: function arguments ([sqlite3_value](https://www.sqlite.org/c3ref/value_blob.html))
//! and result columns ([sqlite3_column_*](https://www.sqlite.org/c3ref/column_blob.html)) both
//! become a borrowed [`Cell`], so the rest of the code never sees a raw pointer.

use std::marker::PhantomData;
use std::os::raw::c_int;

use sqlite3ext_sys::sqlite3_value;

use super::api::call;

const SQLITE_INTEGER: c_int = 1;
const SQLITE_FLOAT: c_int = 2;
const SQLITE_TEXT: c_int = 3;
const SQLITE_BLOB: c_int = 4;

/// One SQL value, borrowed for as long as SQLite keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell<'a> {
    Null,
    Integer(i64),
    Real(f64),
    /// Raw bytes of the text, UTF-8 unless the database says otherwise.
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

impl<'a> Cell<'a> {
    /// The SQL type name, for error messages.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Cell::Null => "NULL",
            Cell::Integer(_) => "INTEGER",
            Cell::Real(_) => "REAL",
            Cell::Text(_) => "TEXT",
            Cell::Blob(_) => "BLOB",
        }
    }

    /// The text as `&str`, or `None` when the cell is not valid UTF-8 text.
    pub(crate) fn as_str(self) -> Option<&'a str> {
        match self {
            Cell::Text(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }
}

/// Build a slice from a pointer SQLite returned, treating NULL (empty blob, NULL value or
/// out-of-memory) as empty: `slice::from_raw_parts(NULL, 0)` is undefined behaviour.
///
/// # Safety
/// `ptr` must point to `len` readable bytes that live for `'a`, or be NULL.
pub(super) unsafe fn bytes<'a>(ptr: *const u8, len: c_int) -> &'a [u8] {
    if ptr.is_null() || len <= 0 {
        &[]
    } else {
        std::slice::from_raw_parts(ptr, len as usize)
    }
}

/// Decode a value's storage class into a [`Cell`]. The accessor order follows the docs:
/// fetch the pointer first, then the byte count.
pub(super) fn cell_from_type<'a>(
    kind: c_int,
    int: impl FnOnce() -> i64,
    real: impl FnOnce() -> f64,
    text: impl FnOnce() -> &'a [u8],
    blob: impl FnOnce() -> &'a [u8],
) -> Cell<'a> {
    match kind {
        SQLITE_INTEGER => Cell::Integer(int()),
        SQLITE_FLOAT => Cell::Real(real()),
        SQLITE_TEXT => Cell::Text(text()),
        SQLITE_BLOB => Cell::Blob(blob()),
        _ => Cell::Null,
    }
}

/// A protected `sqlite3_value*`: a function argument.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct ValueRef<'a> {
    raw: *mut sqlite3_value,
    _life: PhantomData<&'a ()>,
}

impl<'a> ValueRef<'a> {
    /// # Safety
    /// `raw` must be a valid protected value for `'a`.
    pub(crate) unsafe fn from_raw(raw: *mut sqlite3_value) -> Self {
        ValueRef {
            raw,
            _life: PhantomData,
        }
    }

    pub(super) fn raw(&self) -> *mut sqlite3_value {
        self.raw
    }

    pub(crate) fn cell(&self) -> Cell<'a> {
        let raw = self.raw;
        // SAFETY: `raw` is valid for 'a (constructor contract); pointers SQLite returns stay
        // valid until the value changes, which it does not while we borrow it.
        unsafe {
            cell_from_type(
                call!(value_type(raw)),
                || call!(value_int64(raw)),
                || call!(value_double(raw)),
                || {
                    let p = call!(value_text(raw));
                    bytes(p, call!(value_bytes(raw)))
                },
                || {
                    let p = call!(value_blob(raw)) as *const u8;
                    bytes(p, call!(value_bytes(raw)))
                },
            )
        }
    }
}

/// The arguments of a function call as borrowed values.
///
/// # Safety
/// `argv` must hold `argc` valid values for `'a`.
pub(crate) unsafe fn args<'a>(argc: c_int, argv: *mut *mut sqlite3_value) -> &'a [ValueRef<'a>] {
    if argv.is_null() || argc <= 0 {
        return &[];
    }
    // `ValueRef` is a transparent wrapper of the pointer, so the array is already a slice of them.
    std::slice::from_raw_parts(argv as *const ValueRef<'a>, argc as usize)
}
