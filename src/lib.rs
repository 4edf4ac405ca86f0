//! vekter: FAISS inside SQLite. This file is the entry point only: it captures SQLite's API
//! routines and registers the functions and virtual tables on the connection that loads the
//! extension.
//!
//! Layers, top to bottom (data flows one way: SQL value → vector → index → results → SQL):
//! `functions` and `vtab` (the SQL surface) → `engine` (faiss tables) and `plain` (plain
//! tables' exact indexes) → `registry` (process-wide maps, per-connection stamps) and `catalog`
//! (what the schemas hold) → `index` (the only FAISS caller); `vector` and `json` are the
//! codecs; `sqlite` is the only module that touches SQLite's C API. ARCHITECTURE.md has the map.

mod args;
mod catalog;
mod engine;
mod error;
#[cfg(feature = "failpoints")]
pub mod failpoint;
#[cfg(not(feature = "failpoints"))]
mod failpoint;
mod functions;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod index;
mod interrupt;
mod json;
mod locks;
mod plain;
mod progress;
mod registry;
mod simd;
mod sqlite;
mod threads;
mod vector;
mod vtab;

#[cfg(test)]
mod proptests;

use std::os::raw::{c_char, c_uint};
use std::sync::Arc;

use sqlite3ext_sys::{sqlite3, sqlite3_api_routines};

use crate::error::Error;
use crate::registry::ConnState;

/// SQLITE_OK_LOAD_PERMANENTLY: keep the library mapped after this connection closes, because
/// the registry of indexes lives for the whole process.
const SQLITE_OK_LOAD_PERMANENTLY: c_uint = 256;

/// The extension entry point SQLite looks up for `vekter.so`
/// ([Loading An Extension](https://www.sqlite.org/loadext.html)).
///
/// # Safety
/// Called by SQLite with a valid connection, error-message slot and API routines table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_vekter_init(
    db: *mut sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut sqlite3_api_routines,
) -> c_uint {
    sqlite::api::init(p_api);
    match sqlite::guard(|| Ok(simd::dispatch(db, pz_err_msg, p_api))) {
        Ok(simd::Dispatch::Here) => {}
        Ok(simd::Dispatch::Done(rc)) => return rc,
        Ok(simd::Dispatch::Refused(message)) => {
            let e = Error::invalid(message);
            report(pz_err_msg, &e);
            return e.code() as c_uint;
        }
        Err(e) => {
            report(pz_err_msg, &e);
            return e.code() as c_uint;
        }
    }
    // This library serves the process (not another SIMD build): FAISS's interrupt callback is
    // installed before any FAISS call.
    interrupt::install();
    let result = sqlite::guard(|| {
        let failure = std::cell::RefCell::new(None);
        let rc = sqlite_loadable::entrypoints::register_entrypoint_load_permanently(
            db,
            pz_err_msg,
            p_api,
            |db| {
                register(db).map_err(|e| {
                    let message = e.message().to_string();
                    *failure.borrow_mut() = Some(e);
                    sqlite_loadable::Error::new_message(&message)
                })
            },
        );
        match failure.into_inner() {
            Some(e) => Err(e),
            None => Ok(rc),
        }
    });
    match result {
        Ok(rc) => rc,
        Err(e) => {
            report(pz_err_msg, &e);
            e.code() as c_uint
        }
    }
}

fn register(db: *mut sqlite3) -> Result<(), Error> {
    let state = Arc::new(ConnState::new());
    functions::register(db, &state)?;
    // SAFETY: the connection SQLite is initialising the extension on.
    vtab::register(unsafe { sqlite::Conn::from_raw(db) }, &state)?;
    debug_assert_eq!(SQLITE_OK_LOAD_PERMANENTLY, 256);
    Ok(())
}

/// Hand SQLite a copy of the message in memory it can free with `sqlite3_free`.
unsafe fn report(pz_err_msg: *mut *mut c_char, e: &Error) {
    if !pz_err_msg.is_null() {
        *pz_err_msg = sqlite::sqlite_string(e.message());
    }
}
