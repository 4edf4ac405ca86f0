//! The faiss table under concurrency: threads with their own connections search while another
//! thread and another process write; afterwards every index agrees with the table.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use rusqlite::{params, Connection};

fn nearest(conn: &Connection, table: &str, q: &[f32], k: i64) -> Vec<i64> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT rowid FROM {table} WHERE query = ?1 AND k = ?2"
        ))
        .unwrap();
    stmt.query_map(params![encode(q), k], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn readers_and_writers_agree_with_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.db");
    {
        let conn = open(&path);
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE docs (id INTEGER PRIMARY KEY, embedding BLOB);",
        )
        .unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        for (i, v) in random_vectors(2000, 8, 5).iter().enumerate() {
            tx.execute(
                "INSERT INTO docs VALUES (?1, ?2)",
                params![i as i64, encode(v)],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        conn.execute_batch(
            "CREATE VIRTUAL TABLE flat USING faiss(content = docs);
             CREATE VIRTUAL TABLE hnsw USING faiss(content = docs, factory = 'HNSW16', params = 'efSearch=200');",
        )
        .unwrap();
    }
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            let conn = open(&path);
            conn.busy_timeout(Duration::from_secs(30)).unwrap();
            for (i, v) in random_vectors(150, 8, 6).iter().enumerate() {
                let id = 5000 + i as i64;
                conn.execute("INSERT INTO docs VALUES (?1, ?2)", params![id, encode(v)])
                    .unwrap();
                conn.execute("DELETE FROM docs WHERE id = ?1", [i as i64 * 7])
                    .unwrap();
                conn.execute(
                    "UPDATE docs SET embedding = ?1 WHERE id = ?2",
                    params![encode(&[40.0 + i as f32; 8]), 1 + i as i64 * 7],
                )
                .unwrap();
            }
        })
    };
    // Another process, which does not load vekter, writes through the triggers.
    let other = Command::new("sqlite3")
        .arg(&path)
        .arg(".timeout 30000")
        .arg(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99) \
             INSERT INTO docs SELECT 9000 + i, zeroblob(32) FROM n; \
             DELETE FROM docs WHERE id BETWEEN 1500 AND 1599;",
        )
        .spawn()
        .unwrap();
    let readers: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let conn = open(&path);
                conn.busy_timeout(Duration::from_secs(30)).unwrap();
                let mut searches = 0;
                for q in random_vectors(60, 8, 100 + t) {
                    for table in ["flat", "hnsw"] {
                        let got = nearest(&conn, table, &q, 5);
                        assert_eq!(got.len(), 5, "{table}");
                        searches += 1;
                    }
                }
                searches
            })
        })
        .collect();
    writer.join().unwrap();
    assert!(other.wait_with_output().unwrap().status.success());
    let searches: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert_eq!(searches, 480);

    // After the writers: each index holds exactly the table's rows, and Flat is exact.
    let conn = open(&path);
    for table in ["flat", "hnsw"] {
        conn.execute(
            &format!("INSERT INTO {table}({table}) VALUES ('integrity-check')"),
            [],
        )
        .unwrap();
    }
    let rows: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT id, embedding FROM docs")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let vectors: Vec<(i64, Vec<f32>)> = rows
        .into_iter()
        .map(|(id, b)| {
            let v = b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (id, v)
        })
        .collect();
    for q in random_vectors(20, 8, 77) {
        let mut truth: Vec<(i64, f32)> = vectors
            .iter()
            .map(|(id, v)| (*id, squared_l2(&q, v)))
            .collect();
        truth.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let want: Vec<i64> = truth[..10].iter().map(|t| t.0).collect();
        assert_eq!(nearest(&conn, "flat", &q, 10), want);
        // Recall by distance: the zero vectors the shell inserted tie with one another.
        let kth = truth[9].1 + 1e-5;
        let dist = |id: &i64| truth.iter().find(|t| t.0 == *id).map(|t| t.1).unwrap();
        let hnsw = nearest(&conn, "hnsw", &q, 10);
        assert!(
            hnsw.iter().filter(|r| dist(r) <= kth).count() >= 8,
            "{hnsw:?} vs {want:?}"
        );
    }
}

#[test]
fn limit_is_k_where_sqlite_passes_it_down() {
    let conn = memory();
    let version: String = conn
        .query_row("SELECT sqlite_version()", [], |r| r.get(0))
        .unwrap();
    let version: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
    conn.execute_batch("CREATE TABLE docs (id INTEGER PRIMARY KEY, embedding BLOB)")
        .unwrap();
    for i in 0..20 {
        conn.execute(
            "INSERT INTO docs VALUES (?1, ?2)",
            params![i, encode(&[i as f32])],
        )
        .unwrap();
    }
    conn.execute_batch("CREATE VIRTUAL TABLE idx USING faiss(content = docs, factory = 'HNSW8')")
        .unwrap();
    let limited = |sql: &str| -> Vec<i64> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([encode(&[10.2])], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        limited("SELECT rowid FROM idx WHERE query = ?1 AND k = 3"),
        vec![10, 11, 9]
    );
    // SQLite 3.41+ hands LIMIT to virtual tables (rusqlite bundles a newer SQLite).
    if version >= vec![3, 41] {
        assert_eq!(
            limited("SELECT rowid FROM idx WHERE query = ?1 LIMIT 3"),
            vec![10, 11, 9]
        );
        assert_eq!(
            limited("SELECT rowid FROM idx WHERE query = ?1 ORDER BY distance LIMIT 2"),
            vec![10, 11]
        );
        assert_eq!(
            limited("SELECT rowid FROM idx WHERE query = ?1 LIMIT 2 OFFSET 1"),
            vec![11, 9]
        );
        // a distance bound on the nearer side keeps LIMIT usable as k
        assert_eq!(
            limited("SELECT rowid FROM idx WHERE query = ?1 AND distance < 1.0 LIMIT 5"),
            vec![10, 11]
        );
    }
}

#[test]
fn defensive_mode_protects_shadow_tables_but_not_writes_to_content() {
    use rusqlite::config::DbConfig;
    let conn = memory();
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .unwrap();
    conn.execute_batch(
        "CREATE TABLE docs (id INTEGER PRIMARY KEY, embedding BLOB);
         INSERT INTO docs VALUES (1, '[0, 0]'), (2, '[5, 5]');
         CREATE VIRTUAL TABLE idx USING faiss(content = docs, factory = 'HNSW8');",
    )
    .unwrap();
    // The sync triggers still append to the change log.
    conn.execute("INSERT INTO docs VALUES (3, '[4, 4]')", [])
        .unwrap();
    conn.execute("DELETE FROM docs WHERE id = 2", []).unwrap();
    let near: Vec<i64> = conn
        .prepare("SELECT rowid FROM idx('[5, 5]', 5)")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(near, vec![3, 1]);
    for sql in [
        "UPDATE idx_config SET value = '1' WHERE key = 'dim'",
        "DELETE FROM idx_chunks",
        "INSERT INTO idx_chunks VALUES (9, x'00')",
    ] {
        let err = conn.execute(sql, []).unwrap_err().to_string();
        assert!(err.contains("may not be modified"), "{sql}: {err}");
    }
    conn.execute("INSERT INTO idx(idx) VALUES ('optimize')", [])
        .unwrap();
    conn.execute("INSERT INTO idx(idx) VALUES ('integrity-check')", [])
        .unwrap();
}
