//! Failure injection (feature `failpoints`, tantivy's failpoints are the model): a save is three
//! writes (snapshot chunks, config, log truncation), DROP and RENAME are several, and a sync
//! mutates the shared index under its lock. Whatever fails between those steps — an error or a
//! panic — the statement fails with an error, the database is exactly as it was before it (in
//! autocommit mode and inside BEGIN … COMMIT), and the index goes on answering exactly.
//!
//! vekter runs here in-process from the library crate with its failpoints armed, on the SQLite
//! that `sqlite3ext-sys` compiles in, loaded through `sqlite3_auto_extension` as any host would.
//! What is stored is also checked by another process: the sqlite3 shell with `dist/vekter.so`.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, Once};

use sqlite3ext_sys as ffi;
use vekter::failpoint::{arm, disarm, Action, POINTS};

/// Failpoints are process-wide: one scenario at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const DIM: usize = 4;
const ROWS: i64 = 300;

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        unsafe extern "C" fn init(
            db: *mut ffi::sqlite3,
            err: *mut *mut c_char,
            api: *const ffi::sqlite3_api_routines,
        ) -> c_int {
            // SQLITE_OK_LOAD_PERMANENTLY (256) is success to `load_extension`, an error to an
            // auto extension.
            match vekter::sqlite3_vekter_init(db, err, api as *mut _) {
                256 => 0,
                rc => rc as c_int,
            }
        }
        type Entry = unsafe extern "C" fn(
            *mut ffi::sqlite3,
            *mut *mut c_char,
            *const ffi::sqlite3_api_routines,
        ) -> c_int;
        // SAFETY: SQLite calls auto extensions with exactly these arguments.
        unsafe {
            ffi::sqlite3_auto_extension(Some(
                std::mem::transmute::<Entry, unsafe extern "C" fn()>(init),
            ));
        }
    });
}

/// A connection with vekter loaded.
struct Db(*mut ffi::sqlite3);

impl Db {
    fn open(path: &std::path::Path) -> Db {
        install();
        let c_path = CString::new(path.to_str().unwrap()).unwrap();
        let mut db = std::ptr::null_mut();
        // SAFETY: valid path; READWRITE | CREATE.
        let rc = unsafe {
            ffi::sqlite3_open_v2(c_path.as_ptr(), &mut db, 0x02 | 0x04, std::ptr::null())
        };
        assert_eq!(rc, 0, "cannot open {path:?}");
        Db(db)
    }

    fn errmsg(&self) -> String {
        // SAFETY: open connection; copied at once.
        unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0)) }
            .to_string_lossy()
            .into_owned()
    }

    /// Every row of `sql` (one statement) as text; `Err` with SQLite's message.
    fn query(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        let c_sql = CString::new(sql).unwrap();
        let mut stmt = std::ptr::null_mut();
        // SAFETY: open connection, NUL-terminated SQL; the statement is finalized below.
        unsafe {
            if ffi::sqlite3_prepare_v2(self.0, c_sql.as_ptr(), -1, &mut stmt, std::ptr::null_mut())
                != 0
            {
                return Err(self.errmsg());
            }
            let mut rows = Vec::new();
            let result = loop {
                match ffi::sqlite3_step(stmt) {
                    100 => {
                        let n = ffi::sqlite3_column_count(stmt);
                        rows.push(
                            (0..n)
                                .map(|i| {
                                    let p = ffi::sqlite3_column_text(stmt, i);
                                    if p.is_null() {
                                        "NULL".to_string()
                                    } else {
                                        CStr::from_ptr(p as *const c_char)
                                            .to_string_lossy()
                                            .into_owned()
                                    }
                                })
                                .collect(),
                        );
                    }
                    101 => break Ok(rows),
                    _ => break Err(self.errmsg()),
                }
            };
            ffi::sqlite3_finalize(stmt);
            result
        }
    }

    fn exec(&self, sql: &str) -> Result<(), String> {
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            self.query(statement)?;
        }
        Ok(())
    }

    fn ok(&self, sql: &str) -> Vec<Vec<String>> {
        self.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: closed once.
        unsafe { ffi::sqlite3_close_v2(self.0) };
    }
}

fn vector(i: i64) -> [f32; DIM] {
    let x = i as f32;
    [
        x.sin() * 10.0,
        (x * 0.37).cos() * 10.0,
        (x % 7.0) - 3.0,
        (x * 0.11).sin(),
    ]
}

fn blob(v: &[f32]) -> String {
    let hex: String = v
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .map(|b| format!("{b:02X}"))
        .collect();
    format!("X'{hex}'")
}

/// A database with `docs` (ids 0..ROWS) and a Flat faiss table `idx` over it.
fn setup(dir: &tempfile::TempDir, name: &str) -> (std::path::PathBuf, Db) {
    let path = dir.path().join(name);
    let db = Db::open(&path);
    db.exec("CREATE TABLE docs (id INTEGER PRIMARY KEY, embedding BLOB)")
        .unwrap();
    db.exec("BEGIN").unwrap();
    for i in 0..ROWS {
        db.exec(&format!(
            "INSERT INTO docs VALUES ({i}, {})",
            blob(&vector(i))
        ))
        .unwrap();
    }
    db.exec("COMMIT").unwrap();
    db.exec("CREATE VIRTUAL TABLE idx USING faiss(content = docs)")
        .unwrap();
    (path, db)
}

/// Everything stored about `idx`: shadow tables and the schema, as text.
fn stored(db: &Db) -> Vec<Vec<String>> {
    let mut all = db.ok("SELECT type, name, sql FROM sqlite_master ORDER BY name");
    for sql in [
        "SELECT key, value FROM idx_config ORDER BY key",
        "SELECT chunk, hex(data) FROM idx_chunks ORDER BY chunk",
        "SELECT seq, rid FROM idx_changes ORDER BY seq",
    ] {
        all.extend(db.query(sql).unwrap_or_else(|e| vec![vec![e]]));
    }
    all
}

/// The 5 nearest rows to row `of`, by the faiss table and by brute force over `docs`.
fn assert_exact(db: &Db, of: i64) {
    let q = blob(&vector(of));
    let got: Vec<String> = db
        .ok(&format!(
            "SELECT rowid FROM idx WHERE query = {q} AND k = 5"
        ))
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let target = vector(of);
    let mut all: Vec<(f32, i64)> = db
        .ok("SELECT id, hex(embedding) FROM docs WHERE embedding IS NOT NULL")
        .into_iter()
        .map(|r| {
            let bytes: Vec<u8> = (0..r[1].len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&r[1][i..i + 2], 16).unwrap())
                .collect();
            let d = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .zip(target)
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            (d, r[0].parse().unwrap())
        })
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let want: Vec<String> = all.iter().take(5).map(|(_, id)| id.to_string()).collect();
    assert_eq!(got, want, "nearest to row {of}");
}

fn assert_healthy(db: &Db) {
    db.exec("INSERT INTO idx(idx) VALUES ('integrity-check')")
        .unwrap();
    for of in [0, 7, 150] {
        assert_exact(db, of);
    }
}

/// What another process makes of the file: the sqlite3 shell with the built `dist/vekter.so`
/// loads the stored snapshot (it has no state in memory) and checks it against the content.
fn assert_stored_sound(path: &std::path::Path) {
    let lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/vekter");
    assert!(
        lib.with_extension("so").exists(),
        "dist/vekter.so is missing: run `make build` first"
    );
    let out = std::process::Command::new("sqlite3")
        .arg(path)
        .arg(format!(".load {}", lib.display()))
        .arg("INSERT INTO idx(idx) VALUES ('integrity-check');")
        .arg("SELECT count(*) > 0 FROM idx(X'0000803F0000803F0000803F0000803F', 3);")
        .output()
        .expect("the sqlite3 shell runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.trim() == "1",
        "{path:?}: {text}"
    );
}

/// Some writes for `optimize` to fold in: deletes, an update, inserts of new ids.
fn write_some(db: &Db, round: i64) {
    db.exec(&format!("DELETE FROM docs WHERE id % 17 = {}", round % 17))
        .unwrap();
    let moved = blob(&vector(1000 + round));
    db.exec(&format!(
        "UPDATE docs SET embedding = {moved} WHERE id = {}",
        20 + round
    ))
    .unwrap();
    insert_some(db);
}

/// Inserts only: after a search has applied them, `optimize` saves the index as it is.
fn insert_some(db: &Db) {
    static NEXT_ID: AtomicI64 = AtomicI64::new(10_000);
    for _ in 0..5 {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        db.exec(&format!(
            "INSERT INTO docs VALUES ({id}, {})",
            blob(&vector(id))
        ))
        .unwrap();
    }
}

/// Run `statement` with `point` armed to do `action`; its error.
fn fail_at(db: &Db, point: &str, action: Action, statement: &str) -> String {
    arm(point, action);
    let result = db.exec(statement);
    disarm();
    result.expect_err("the statement must fail")
}

const NO_TRANSACTION: &str = "cannot commit - no transaction is active";

/// The commands, and the writes before each: `optimize` after writes that leave tombstones
/// (it compacts), `optimize` after inserts a search applied (it saves the index as it is), and
/// `rebuild`.
const COMMANDS: [(&str, bool); 3] = [("optimize", true), ("optimize", false), ("rebuild", true)];

fn prepare(db: &Db, tombstones: bool, round: i64) {
    if tombstones {
        write_some(db, round);
    } else {
        db.exec("INSERT INTO idx(idx) VALUES ('rebuild')").unwrap();
        insert_some(db);
    }
    assert_exact(db, 3);
}

#[test]
fn a_command_whose_save_fails_at_any_step_leaves_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (path, db) = setup(&dir, "save.db");
    let mut round = 0;
    for point in &POINTS[..3] {
        for action in [Action::Error, Action::Panic] {
            for (command, tombstones) in COMMANDS {
                round += 1;
                let statement = format!("INSERT INTO idx(idx) VALUES ('{command}')");
                let case = format!("{command} (tombstones: {tombstones}) at {point} ({action:?})");
                // In autocommit mode.
                prepare(&db, tombstones, round);
                let before = stored(&db);
                let e = fail_at(&db, point, action, &statement);
                assert!(e.contains(&format!("failpoint {point}")), "{case}: {e}");
                assert_eq!(stored(&db), before, "{case} left a trace");
                assert_healthy(&db);
                assert_stored_sound(&path);
                // Inside a transaction: SQLite keeps the nested writes of a failed INSERT into a
                // virtual table, so the failure rolls the whole transaction back, as a full disk
                // would; a half-written snapshot is never committed.
                prepare(&db, tombstones, round);
                let before = stored(&db);
                db.exec("BEGIN").unwrap();
                db.exec("INSERT INTO docs VALUES (50000, X'0000803F0000803F0000803F0000803F')")
                    .unwrap();
                let e = fail_at(&db, point, action, &statement);
                assert!(e.contains(&format!("failpoint {point}")), "{case}: {e}");
                assert_eq!(db.exec("COMMIT").unwrap_err(), NO_TRANSACTION, "{case}");
                assert_eq!(stored(&db), before, "{case} in a transaction left a trace");
                assert!(db.ok("SELECT id FROM docs WHERE id = 50000").is_empty());
                assert_healthy(&db);
                // And the command then works.
                db.exec(&statement).unwrap();
                // Folded: only the newest entry stays (the log never empties).
                assert_eq!(
                    db.ok("SELECT count(*) <= 1 FROM idx_changes"),
                    vec![vec!["1".to_string()]]
                );
                assert_healthy(&db);
                assert_stored_sound(&path);
            }
        }
    }
}

#[test]
fn a_create_that_fails_at_any_step_leaves_no_table() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (_, db) = setup(&dir, "create.db");
    let schema = || db.ok("SELECT type, name FROM sqlite_master ORDER BY name");
    let create = "CREATE VIRTUAL TABLE idx2 USING faiss(content = docs, factory = 'HNSW8')";
    let before = schema();
    for point in &POINTS[..3] {
        for action in [Action::Error, Action::Panic] {
            let e = fail_at(&db, point, action, create);
            assert!(e.contains(&format!("failpoint {point}")), "{point}: {e}");
            assert_eq!(
                schema(),
                before,
                "a failed create at {point} ({action:?}) left objects"
            );
            // Inside a transaction SQLite undoes the failed CREATE alone (its statement journal).
            db.exec("BEGIN").unwrap();
            db.exec("CREATE TABLE other (x)").unwrap();
            let e = fail_at(&db, point, action, create);
            assert!(e.contains(&format!("failpoint {point}")), "{point}: {e}");
            db.exec("COMMIT").unwrap();
            db.exec("DROP TABLE other").unwrap();
            assert_eq!(schema(), before, "{point} ({action:?}) in a transaction");
        }
    }
    // A failure before anything is written (training) fails the statement alone too.
    db.exec("BEGIN").unwrap();
    let e = db
        .exec("CREATE VIRTUAL TABLE idx2 USING faiss(content = docs, factory = 'IVF4096,Flat')")
        .unwrap_err();
    assert!(e.contains("Number of training points"), "{e}");
    db.exec("COMMIT").unwrap();
    assert_eq!(schema(), before);
    db.exec(create).unwrap();
    db.exec("INSERT INTO idx2(idx2) VALUES ('integrity-check')")
        .unwrap();
}

#[test]
fn drop_and_rename_happen_whole_or_not_at_all() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (path, db) = setup(&dir, "ddl.db");
    for (point, statement) in [
        ("drop:triggers-dropped", "DROP TABLE idx"),
        ("rename:tables-renamed", "ALTER TABLE idx RENAME TO renamed"),
    ] {
        for action in [Action::Error, Action::Panic] {
            for in_transaction in [false, true] {
                let before = stored(&db);
                if in_transaction {
                    db.exec("BEGIN").unwrap();
                }
                let e = fail_at(&db, point, action, statement);
                // SQLite reports a failed xDestroy by its code alone; RENAME carries vekter's
                // message.
                if statement.starts_with("ALTER") {
                    assert!(e.contains(point), "{statement}: {e}");
                }
                if in_transaction {
                    // Undone alone: the transaction goes on.
                    db.exec("COMMIT").unwrap();
                }
                assert_eq!(stored(&db), before, "{statement} ({action:?}) left a trace");
                assert_healthy(&db);
            }
        }
    }
    assert_stored_sound(&path);
    db.exec("ALTER TABLE idx RENAME TO renamed").unwrap();
    db.exec("INSERT INTO renamed(renamed) VALUES ('integrity-check')")
        .unwrap();
    db.exec("DROP TABLE renamed").unwrap();
    assert_eq!(
        db.ok("SELECT name FROM sqlite_master WHERE name LIKE '%idx%' OR name LIKE 'renamed%'"),
        Vec::<Vec<String>>::new()
    );
}

#[test]
fn a_failure_while_the_index_is_being_changed_does_not_brick_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (path, db) = setup(&dir, "apply.db");
    assert_exact(&db, 0);
    let loads = || -> i64 {
        db.ok("SELECT loads FROM faiss_indexes WHERE name = 'idx'")[0][0]
            .parse()
            .unwrap()
    };
    assert_eq!(loads(), 0, "created, not loaded");
    let writer = Db::open(&path);
    let rounds = [Action::Panic, Action::Error, Action::Panic];
    for (round, action) in rounds.into_iter().enumerate() {
        // Another connection's committed writes: the next search applies them to the shared
        // index under its write lock, where the failpoint strikes half-way (after FAISS added
        // the new vectors, before old slots are tombstoned).
        write_some(&writer, round as i64);
        let q = blob(&vector(5));
        let search = format!("SELECT rowid FROM idx WHERE query = {q} AND k = 5");
        let e = fail_at(&db, "apply:vectors-added", action, &search);
        assert!(e.contains("failpoint apply:vectors-added"), "{e}");
        if action == Action::Panic {
            assert!(e.contains("internal error"), "{e}");
        }
        // The half-changed state is dropped and reloaded from the snapshot and the log, not
        // rebuilt: usable at once, from this connection and others, and exact. Two loads a
        // round: `integrity-check` (a write transaction) loads a private copy, and the next
        // search the shared one.
        assert_healthy(&db);
        assert_healthy(&writer);
        assert_eq!(loads(), 2 * (round as i64 + 1), "round {round}");
    }
    assert_stored_sound(&path);
}
