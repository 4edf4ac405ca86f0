//! The shared exact index follows its table across connections and processes, and is not
//! rebuilt when nothing changed. One test in its own binary: it reads process-wide counters.

mod common;

use std::process::Command;

use common::*;
use rusqlite::params;

fn nearest(conn: &rusqlite::Connection, q: &str) -> String {
    conn.query_row("SELECT faiss_search('main', 'e', ?1, 1)", [q], |r| r.get(0))
        .unwrap()
}

#[test]
fn index_is_shared_fresh_and_not_rebuilt_needlessly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let a = open(&path);
    a.execute_batch(
        "CREATE TABLE e (id INTEGER PRIMARY KEY, embedding BLOB);
         CREATE TABLE other (x);
         INSERT INTO e VALUES (1, faiss_encode('[0, 0]')), (2, faiss_encode('[10, 10]'));",
    )
    .unwrap();
    assert_eq!(nearest(&a, "[9, 9]"), "[2]");
    let builds = registry_stat(&a, "builds");
    let checks = registry_stat(&a, "checks");

    // Nothing changed: no check, no build.
    for _ in 0..5 {
        assert_eq!(nearest(&a, "[9, 9]"), "[2]");
    }
    assert_eq!(registry_stat(&a, "checks"), checks);
    assert_eq!(registry_stat(&a, "builds"), builds);

    // A second connection of the same process shares the index: it checks once, no build.
    let b = open(&path);
    assert_eq!(nearest(&b, "[9, 9]"), "[2]");
    assert_eq!(registry_stat(&b, "builds"), builds);
    assert_eq!(registry_stat(&b, "checks"), checks + 1);

    // A write to another table: the table is checked, the index is kept.
    b.execute("INSERT INTO other VALUES (1)", []).unwrap();
    assert_eq!(nearest(&a, "[9, 9]"), "[2]");
    assert_eq!(registry_stat(&a, "builds"), builds);

    // Insert, update, delete from the other connection are seen.
    b.execute("INSERT INTO e VALUES (3, faiss_encode('[9, 9]'))", [])
        .unwrap();
    assert_eq!(nearest(&a, "[9, 9]"), "[3]");
    assert_eq!(registry_stat(&a, "builds"), builds + 1);
    b.execute(
        "UPDATE e SET embedding = faiss_encode('[-5, -5]') WHERE id = 3",
        [],
    )
    .unwrap();
    assert_eq!(nearest(&a, "[9, 9]"), "[2]");
    assert_eq!(nearest(&a, "[-5, -4]"), "[3]");
    b.execute("DELETE FROM e WHERE id = 3", []).unwrap();
    assert_eq!(nearest(&a, "[-5, -4]"), "[1]");

    // A write from another process (the sqlite3 shell, without vekter) is seen.
    let status = Command::new("sqlite3")
        .arg(&path)
        .arg("INSERT INTO e VALUES (4, X'0000C0C00000C0C0')") // [-6, -6]
        .status()
        .expect("sqlite3 shell");
    assert!(status.success());
    assert_eq!(nearest(&a, "[-5, -4]"), "[4]");
    assert_eq!(nearest(&b, "[-5, -4]"), "[4]");

    // And once more nothing changed: nothing is read again.
    let checks = registry_stat(&a, "checks");
    for _ in 0..3 {
        nearest(&a, "[0, 0]");
        nearest(&b, "[0, 0]");
    }
    assert_eq!(registry_stat(&a, "checks"), checks);

    // The same from this connection's own writes in autocommit mode.
    a.execute(
        "INSERT INTO e VALUES (?1, ?2)",
        params![5, encode(&[100.0, 100.0])],
    )
    .unwrap();
    assert_eq!(nearest(&a, "[99, 99]"), "[5]");
}
