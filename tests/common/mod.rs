//! Shared helpers for the integration tests: they load the built `dist/vekter.so` into a
//! connection the way a user's program does.
#![allow(dead_code)]

use std::path::PathBuf;

use rusqlite::Connection;

/// `dist/vekter.so`, built by `make build` (the Makefile runs the tests after building).
pub fn lib_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dist/vekter");
    assert!(
        path.with_extension("so").exists(),
        "dist/vekter.so is missing: run `make build` first"
    );
    path
}

/// Load vekter into `conn`.
pub fn load(conn: &Connection) {
    // SAFETY: loading our own extension, as a user would with `.load`.
    unsafe {
        conn.load_extension_enable().unwrap();
        conn.load_extension(lib_path(), None::<&str>).unwrap();
        conn.load_extension_disable().unwrap();
    }
}

pub fn open(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    load(&conn);
    conn
}

pub fn memory() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    load(&conn);
    conn
}

pub fn encode(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A value of the `registry` section of `vekter_debug()`.
pub fn registry_stat(conn: &Connection, name: &str) -> i64 {
    conn.query_row(
        &format!("SELECT json_extract(vekter_debug(), '$.registry.{name}')"),
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// The error message of a statement that must fail.
pub fn error_of(conn: &Connection, sql: &str) -> String {
    match conn.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0)) {
        Ok(v) => panic!("expected an error from {sql}, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// Deterministic pseudo-random vectors (xorshift), in [-1, 1).
pub fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            (0..dim)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                })
                .collect()
        })
        .collect()
}

pub fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}
