//! Long work stops on `sqlite3_interrupt` (Ctrl-C in the sqlite3 shell, `conn.interrupt()` in
//! Python). SQLite's own statements stop by themselves: the content scans of a build fail with
//! SQLITE_INTERRUPT at their next step. A FAISS call (training, an HNSW add) does not step
//! SQLite, so a [`Watch`] on the thread doing the work answers FAISS's interrupt callback
//! (`src/faiss_interrupt.cpp`): it asks the connection whether it was interrupted, by stepping
//! a trivial statement, which SQLite refuses once `sqlite3_interrupt` was called (every SQLite
//! version has that; `sqlite3_is_interrupted` came only in 3.41).
//!
//! Only the watched thread answers true: FAISS's callback is process-wide, and searches of other
//! connections (which FAISS also asks about) must go on. OpenMP helpers of a watched FAISS call
//! answer false; the calling thread is one of the team and stops them all.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;

use crate::error::{Error, Kind, Result};
use crate::sqlite::{Conn, Stmt};

const SQLITE_INTERRUPT: i32 = 9;
/// How often a watched thread asks SQLite at most: a statement step costs about a microsecond.
const POLL: Duration = Duration::from_millis(20);

extern "C" {
    fn vekter_faiss_install_interrupt(want: extern "C" fn() -> bool);
}

static INSTALLED: Lazy<()> = Lazy::new(|| {
    // SAFETY: sets FAISS's process-wide callback under its lock; called once, with a function
    // that lives as long as the library.
    unsafe { vekter_faiss_install_interrupt(want_interrupt) }
});

/// Install FAISS's interrupt callback: when the extension loads, before any FAISS call runs
/// (FAISS reads the callback without its lock while it works).
pub(crate) fn install() {
    Lazy::force(&INSTALLED);
}

struct Watched {
    /// `SELECT 1` on the watched connection, prepared when the watch began: the callback only
    /// steps it (no prepare, so no authorizer or schema work inside FAISS's lock).
    probe: Option<Stmt>,
    interrupted: bool,
    polled: Option<Instant>,
}

thread_local! {
    static WATCHED: RefCell<Vec<Watched>> = const { RefCell::new(Vec::new()) };
}

/// Long work on this thread for `conn`, watched for `sqlite3_interrupt` until dropped.
#[must_use]
pub(crate) struct Watch {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Watch {
    pub(crate) fn on(conn: Conn) -> Watch {
        Lazy::force(&INSTALLED);
        let probe = conn.prepare("SELECT 1").ok();
        WATCHED.with(|w| {
            w.borrow_mut().push(Watched {
                probe,
                interrupted: false,
                polled: None,
            })
        });
        Watch {
            _not_send: std::marker::PhantomData,
        }
    }
}

/// `result`, with a FAISS failure after an interrupt of this thread's watched connection
/// reported as the interrupt.
pub(crate) fn result<T>(result: Result<T>) -> Result<T> {
    match result {
        Err(e) if e.kind() == Kind::Faiss && interrupted_now() => Err(interrupted()),
        other => other,
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        WATCHED.with(|w| w.borrow_mut().pop());
    }
}

/// The error of work stopped by `sqlite3_interrupt`: SQLite's own code and message.
pub(crate) fn interrupted() -> Error {
    Error::of(Kind::Sqlite(SQLITE_INTERRUPT), "interrupted")
}

/// True when the innermost watch of this thread saw its connection interrupted (asking it at
/// most every [`POLL`]).
fn interrupted_now() -> bool {
    WATCHED.with(|w| {
        let Ok(mut w) = w.try_borrow_mut() else {
            return false;
        };
        let Some(watched) = w.last_mut() else {
            return false;
        };
        if !watched.interrupted && watched.polled.is_none_or(|t| t.elapsed() >= POLL) {
            watched.polled = Some(Instant::now());
            watched.interrupted = watched.probe.as_mut().is_some_and(asks_interrupted);
        }
        watched.interrupted
    })
}

/// Whether SQLite refuses to run `probe` as interrupted.
fn asks_interrupted(probe: &mut Stmt) -> bool {
    probe.reset();
    let step = probe.step();
    probe.reset();
    matches!(step, Err(e) if e.code() & 0xff == SQLITE_INTERRUPT)
}

/// FAISS's interrupt callback (`src/faiss_interrupt.cpp`).
extern "C" fn want_interrupt() -> bool {
    // No unwinding into FAISS's frames.
    std::panic::catch_unwind(interrupted_now).unwrap_or(false)
}
