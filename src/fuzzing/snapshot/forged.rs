//! Mode 4 of the `snapshot` target: forged snapshots past the checksum, through the whole
//! loader of a real table (see [`super::snapshot`]).

use crate::engine::config::{Config, SnapshotMark};
use crate::engine::key::KeyShape;
use crate::engine::shadow::Shadow;
use crate::engine::snapshot::chunks;
use crate::engine::snapshot::seal::{self, SealKey};
use crate::engine::{builder, persist, LiveTable};
use crate::index::{Metric, FAISS_READS};

use super::super::Input;
use super::{db, shaped_meta, STORES};

/// See [`super::snapshot`], mode 4.
pub(super) fn snapshot_forged(input: &mut Input) {
    let conn = db();
    let dim = 1 + input.u8() as usize % 4;
    let rows = input.u8() as usize % 24;
    // Metrics under which a row is at distance 0 from itself.
    let metric = [Metric::L2, Metric::Cosine][input.u8() as usize % 2];
    conn.execute("DELETE FROM docs").expect("clear content");
    conn.execute("DELETE FROM fz_changes").expect("clear log");
    let mut vectors = Vec::with_capacity(rows);
    let mut insert = conn
        .prepare("INSERT INTO docs (id, embedding) VALUES (?1, ?2)")
        .expect("insert row");
    for i in 0..rows {
        // Never 0: every vector has a direction (cosine).
        let v: Vec<f32> = (0..dim)
            .map(|_| (input.u8() as f32 - 127.5) / 16.0)
            .collect();
        insert.bind_i64(1, i as i64 + 1).expect("bind");
        insert.bind_blob(2, bytemuck::cast_slice(&v)).expect("bind");
        while insert.step().expect("insert") {}
        insert.reset();
        vectors.push(v);
    }
    drop(insert);
    let meta = shaped_meta(dim, metric, KeyShape::Rowid, false);
    let table = LiveTable::with_meta(conn, "main", STORES[0], meta);
    let honest = builder::build(&table, builder::Origin::FIRST)
        .expect("build")
        .to_payload()
        .expect("serialize");

    let how = input.u8();
    let mut forged = if how & 1 == 0 {
        honest.clone()
    } else {
        input.chunk().to_vec()
    };
    for _ in 0..(how >> 1) % 8 {
        let at = u16::from_le_bytes([input.u8(), input.u8()]) as usize;
        let value = input.chunk();
        if forged.is_empty() {
            break;
        }
        let at = at % forged.len();
        let n = value.len().min(forged.len() - at);
        forged[at..at + n].copy_from_slice(&value[..n]);
    }
    let shadow = &Shadow::new(conn, "main", STORES[0]);
    let mut record = chunks::write(shadow, &forged).expect("write snapshot");
    let key = seal::key().expect("the harness's key");
    let genuine = forged == honest;
    match (input.u8() % 4, genuine) {
        (0, true) => {}
        (1, _) => (record.seal, record.key_id) = (String::new(), String::new()),
        (2, _) => {
            let other = SealKey::new([0x5a; 32], seal::Source::Env);
            (record.seal, record.key_id) = (other.seal(&forged), other.id.clone());
        }
        _ => (record.seal, record.key_id) = (key.seal(&honest), key.id.clone()),
    }
    let sealed = genuine && record.seal == key.seal(&honest);
    let mark = SnapshotMark {
        seq: 0,
        build_id: "fz".to_string(),
        lineage: 1,
        verified_cookie: -1,
    };
    let mut pairs = table.meta().to_config();
    pairs.extend(record.pairs());
    pairs.extend(mark.pairs());
    conn.execute("DELETE FROM fz_config").expect("clear config");
    Config::write(shadow, &pairs).expect("write config");

    let reads = FAISS_READS.with(|n| n.get());
    let state = persist::load(&table)
        .unwrap_or_else(|e| panic!("a sound table with a forged snapshot does not open: {e}"));
    if sealed {
        assert!(
            !state.is_stand_in(),
            "the honest, sealed snapshot was refused"
        );
    } else {
        assert_eq!(
            FAISS_READS.with(|n| n.get()),
            reads,
            "forged bytes reached FAISS's reader"
        );
        assert!(state.is_stand_in(), "a forged snapshot was loaded");
    }
    // Exact answers either way: each of the first rows finds itself first, at distance 0.
    let part = state.part(None).expect("one part");
    assert_eq!(part.index.ntotal(), rows);
    for v in vectors.iter().take(3) {
        let hits = part.index.search(v, rows).expect("search");
        assert_eq!(hits.len(), rows);
        assert!(hits[0].distance.abs() < 1e-3, "{:?}", hits[0]);
    }
}
