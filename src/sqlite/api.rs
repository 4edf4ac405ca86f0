//! The SQLite API routines table handed to the extension at load time
//! ([Loading An Extension](https://www.sqlite.org/loadext.html)).
//!
//! A loadable extension must not call `sqlite3_*` symbols directly: the host may link SQLite
//! statically. Every call goes through the table the host passes to `sqlite3_vekter_init`.

use std::sync::atomic::{AtomicPtr, Ordering};

use sqlite3ext_sys::sqlite3_api_routines;

static ROUTINES: AtomicPtr<sqlite3_api_routines> = AtomicPtr::new(std::ptr::null_mut());

/// Remember the host's routines. Every host process has one SQLite library, so the first
/// non-null table stays valid for the life of the process.
pub(crate) fn init(p_api: *mut sqlite3_api_routines) {
    if !p_api.is_null() {
        ROUTINES.store(p_api, Ordering::Release);
    }
}

/// The host's routines; only valid after [`init`].
pub(crate) fn routines() -> &'static sqlite3_api_routines {
    let p = ROUTINES.load(Ordering::Acquire);
    assert!(
        !p.is_null(),
        "vekter: SQLite API used before sqlite3_vekter_init"
    );
    // SAFETY: set once from the pointer SQLite gives the entry point; SQLite keeps it alive.
    unsafe { &*p }
}

/// Call an API routine by its field name: `call!(value_type(v))`.
/// A routine missing from an old host becomes a panic, which the callback guard turns into
/// an SQL error instead of a crash.
macro_rules! call {
    ($name:ident($($arg:expr),* $(,)?)) => {
        ($crate::sqlite::api::routines()
            .$name
            .expect(concat!("this SQLite has no sqlite3_", stringify!($name))))($($arg),*)
    };
}
pub(crate) use call;

/// `sqlite3_libversion_number()` of the host, e.g. 3040001.
pub(crate) fn libversion_number() -> i32 {
    // SAFETY: no arguments, pure.
    unsafe { call!(libversion_number()) }
}
