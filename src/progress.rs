//! How far long work is: creating, rebuilding or optimizing a `faiss` table, and applying a
//! large change log. Each runs as a [`Task`] in a process-wide list, which `faiss_indexes`
//! shows to every connection of the process (`state`: "building: adding rows 45% (450,000 of
//! 1,000,000)"), and which the sqlite3 shell's terminal shows on stderr while it lasts (after a
//! second, refreshed at most 5 times a second, erased at the end).
//!
//! `VEKTER_PROGRESS=1` shows it on stderr whatever the program and stderr are, `=0` never; by
//! default only a program named `sqlite3*` whose stderr is a terminal shows it.

use std::io::Write;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;

use crate::locks::lock;
use crate::sqlite::Conn;

extern "C" {
    fn isatty(fd: c_int) -> c_int;
}

/// A running task, as `faiss_indexes` lists it.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    /// The database file (`None`: an in-memory or temporary database, private to its
    /// connection, which is busy with the task).
    pub(crate) file: Option<String>,
    pub(crate) table: String,
    pub(crate) state: String,
}

struct Entry {
    id: u64,
    file: Option<String>,
    table: String,
    work: &'static str,
    phase: &'static str,
    done: u64,
    total: u64,
    started: Instant,
    shown: Option<Instant>,
}

static TASKS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(1);
const SHOW_AFTER: Duration = Duration::from_secs(1);
const SHOW_EVERY: Duration = Duration::from_millis(200);

static TERMINAL: Lazy<bool> = Lazy::new(|| match std::env::var("VEKTER_PROGRESS").as_deref() {
    Ok("1") => true,
    Ok("0") => false,
    _ => {
        let program = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        // SAFETY: isatty only inspects the descriptor.
        program.starts_with("sqlite3") && unsafe { isatty(2) } == 1
    }
});

/// One piece of long work, listed until dropped.
#[must_use]
pub(crate) struct Task {
    id: u64,
}

impl Task {
    /// `work` ("building", "applying changes") on the faiss table `table` of `schema`.
    pub(crate) fn on_table(conn: Conn, schema: &str, table: &str, work: &'static str) -> Task {
        let file = conn.db_filename(schema).filter(|f| !f.is_empty());
        Task::start(file, table, work)
    }

    /// `work` on `table` of the database `file`.
    fn start(file: Option<String>, table: &str, work: &'static str) -> Task {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        lock(&TASKS).push(Entry {
            id,
            file,
            table: table.to_string(),
            work,
            phase: "starting",
            done: 0,
            total: 0,
            started: Instant::now(),
            shown: None,
        });
        Task { id }
    }

    /// A new phase ("training", "adding rows") of `total` steps (0: not counted).
    pub(crate) fn phase(&self, phase: &'static str, total: u64) {
        self.update(|e| {
            e.phase = phase;
            e.done = 0;
            e.total = total;
        });
    }

    /// `n` more steps of the phase done.
    pub(crate) fn advance(&self, n: u64) {
        self.update(|e| e.done = e.done.saturating_add(n));
    }

    fn update(&self, f: impl FnOnce(&mut Entry)) {
        let line = {
            let mut tasks = lock(&TASKS);
            let Some(e) = tasks.iter_mut().find(|e| e.id == self.id) else {
                return;
            };
            f(e);
            let due = e.started.elapsed() >= SHOW_AFTER
                && e.shown.is_none_or(|t| t.elapsed() >= SHOW_EVERY);
            (*TERMINAL && due).then(|| {
                e.shown = Some(Instant::now());
                format!("vekter: {} {}: {}", e.work, e.table, describe(e))
            })
        };
        // Written outside the list's lock: a stderr nobody reads must not stall other tasks.
        if let Some(line) = line {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{line}");
            let _ = err.flush();
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        let shown = {
            let mut tasks = lock(&TASKS);
            let at = tasks.iter().position(|e| e.id == self.id);
            at.is_some_and(|at| tasks.swap_remove(at).shown.is_some())
        };
        if shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

fn describe(e: &Entry) -> String {
    let seconds = e.started.elapsed().as_secs();
    match e.total {
        0 => format!("{} ({seconds} s)", e.phase),
        total => format!(
            "{} {}% ({} of {}, {seconds} s)",
            e.phase,
            e.done.min(total) * 100 / total,
            e.done.min(total),
            total
        ),
    }
}

/// Every task running in the process now.
pub(crate) fn running() -> Vec<Running> {
    lock(&TASKS)
        .iter()
        .map(|e| Running {
            file: e.file.clone(),
            table: e.table.clone(),
            state: format!("{}: {}", e.work, describe(e)),
        })
        .collect()
}
