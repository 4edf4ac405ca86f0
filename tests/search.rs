//! faiss_search and friends through a real connection: exactness against brute force,
//! attached databases, privacy of in-memory databases, transactions, threads.

mod common;

use common::*;
use rusqlite::{params, Connection};

fn fill(conn: &Connection, table: &str, vectors: &[Vec<f32>]) {
    conn.execute_batch(&format!(
        "CREATE TABLE {table} (id INTEGER PRIMARY KEY, embedding BLOB)"
    ))
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut insert = tx
            .prepare(&format!("INSERT INTO {table} VALUES (?1, ?2)"))
            .unwrap();
        for (i, v) in vectors.iter().enumerate() {
            insert.execute(params![i as i64, encode(v)]).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn search(conn: &Connection, db: &str, table: &str, q: &[f32], k: i64) -> Vec<(i64, f32)> {
    let json: String = conn
        .query_row(
            "SELECT faiss_search_with_scores(?1, ?2, ?3, ?4)",
            params![db, table, encode(q), k],
            |r| r.get(0),
        )
        .unwrap();
    let parsed: Vec<(i64, f32)> = serde_json::from_str(&json).unwrap();
    parsed
}

fn ids(conn: &Connection, db: &str, table: &str, q: &[f32], k: i64) -> Vec<i64> {
    search(conn, db, table, q, k)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn exact_search_matches_brute_force() {
    let conn = memory();
    let data = random_vectors(3000, 24, 7);
    fill(&conn, "e", &data);
    for q in random_vectors(25, 24, 99) {
        let got = search(&conn, "main", "e", &q, 10);
        let mut truth: Vec<(usize, f32)> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (i, squared_l2(&q, v)))
            .collect();
        truth.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let want: Vec<i64> = truth[..10].iter().map(|(i, _)| *i as i64).collect();
        let got_ids: Vec<i64> = got.iter().map(|(id, _)| *id).collect();
        assert_eq!(got_ids, want);
        for ((_, d), (_, t)) in got.iter().zip(&truth) {
            assert!((d - t).abs() <= 1e-4 * t.max(1.0), "{d} vs {t}");
        }
    }
    // faiss_search returns the same ids as the _with_scores form
    let q = &data[5];
    let plain: String = conn
        .query_row(
            "SELECT faiss_search('main', 'e', ?1, 3)",
            [encode(q)],
            |r| r.get(0),
        )
        .unwrap();
    let plain: Vec<i64> = serde_json::from_str(&plain).unwrap();
    assert_eq!(plain, ids(&conn, "main", "e", q, 3));
    assert_eq!(plain[0], 5);
}

#[test]
fn k_beyond_the_table_returns_every_row_once() {
    let conn = memory();
    fill(&conn, "e", &random_vectors(7, 4, 1));
    let got = ids(&conn, "main", "e", &[0.0; 4], 1000);
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, (0..7).collect::<Vec<_>>());
}

#[test]
fn database_by_schema_name_or_file_stem() {
    let dir = tempfile::tempdir().unwrap();
    let blog = dir.path().join("blog.db");
    {
        let other = Connection::open(&blog).unwrap();
        fill(&other, "embeddings", &[vec![1.0, 0.0], vec![0.0, 1.0]]);
    }
    let conn = memory();
    conn.execute("ATTACH DATABASE ?1 AS b", [blog.to_str().unwrap()])
        .unwrap();
    assert_eq!(ids(&conn, "b", "embeddings", &[0.0, 0.9], 1), vec![1]);
    assert_eq!(ids(&conn, "blog", "embeddings", &[0.0, 0.9], 1), vec![1]);
    // Datasette opens blog.db as `main`: the stem names it there too.
    let main = open(&blog);
    assert_eq!(ids(&main, "blog", "embeddings", &[0.9, 0.0], 1), vec![0]);
    let err = error_of(
        &main,
        "SELECT faiss_search('nope', 'embeddings', '[1, 0]', 1)",
    );
    assert!(err.contains("no database named 'nope'"), "{err}");
    assert!(err.contains("main (blog)"), "{err}");
}

#[test]
fn in_memory_databases_are_private_to_their_connection() {
    let a = memory();
    let b = memory();
    fill(&a, "e", &[vec![1.0]]);
    fill(&b, "e", &[vec![1.0], vec![2.0]]);
    assert_eq!(ids(&a, "main", "e", &[2.0], 5), vec![0]);
    assert_eq!(ids(&b, "main", "e", &[2.0], 5), vec![1, 0]);
}

#[test]
fn transactions_see_their_own_writes_and_rollback_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let a = open(&path);
    let b = open(&path);
    fill(&a, "e", &[vec![0.0], vec![10.0]]);
    assert_eq!(ids(&a, "main", "e", &[5.0], 1), vec![0]);
    a.execute_batch("BEGIN; INSERT INTO e VALUES (2, X'0000A040');") // 5.0
        .unwrap();
    assert_eq!(
        ids(&a, "main", "e", &[5.0], 1),
        vec![2],
        "own uncommitted write"
    );
    assert_eq!(
        ids(&b, "main", "e", &[5.0], 1),
        vec![0],
        "others do not see it"
    );
    a.execute_batch("ROLLBACK").unwrap();
    assert_eq!(ids(&a, "main", "e", &[5.0], 1), vec![0], "rolled back");
    assert_eq!(ids(&b, "main", "e", &[5.0], 1), vec![0]);
    a.execute_batch("BEGIN; DELETE FROM e WHERE id = 0; COMMIT;")
        .unwrap();
    assert_eq!(ids(&b, "main", "e", &[5.0], 5), vec![1]);
}

#[test]
fn threads_with_their_own_connections_search_while_one_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let conn = open(&path);
        conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        fill(&conn, "e", &random_vectors(500, 8, 3));
    }
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            let conn = open(&path);
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .unwrap();
            for i in 0..50i64 {
                conn.execute(
                    "INSERT INTO e VALUES (?1, ?2)",
                    params![1000 + i, encode(&[50.0 + i as f32; 8])],
                )
                .unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let conn = open(&path);
                conn.busy_timeout(std::time::Duration::from_secs(10))
                    .unwrap();
                for q in random_vectors(40, 8, 100 + t) {
                    let got = ids(&conn, "main", "e", &q, 5);
                    assert_eq!(got.len(), 5);
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    let conn = open(&path);
    assert_eq!(ids(&conn, "main", "e", &[99.0; 8], 1), vec![1049]);
}
