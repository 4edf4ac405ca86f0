//! The `snapshot` target: the stored snapshot's verification (through SQLite), its payload
//! header and slot table, around FAISS serializations vekter wrote itself; and forged snapshots
//! (mode 4), which must never reach FAISS's reader.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::raw::{c_char, c_int};

use crate::engine::config::{Config, Key};
use crate::engine::key::KeyShape;
use crate::engine::shadow::Shadow;
use crate::engine::snapshot::checksum::checksum;
use crate::engine::snapshot::chunks::{self, CHUNK_BYTES};
use crate::engine::snapshot::seal;
use crate::engine::snapshot::{self, Bytes, Source, DEAD_SLOT};
use crate::engine::state::LiveState;
use crate::engine::Meta;
use crate::error::Result;
use crate::index::{Index, Metric};
use crate::sqlite::api::call;
use crate::sqlite::Conn;

use super::Input;

mod forged;
mod v2;

/// A FAISS type tag `read_index` rejects at once ("Index type … not recognized").
const UNKNOWN_FAISS_TAG: &[u8; 4] = b"VKFZ";

/// For harnesses: register with `sqlite3_auto_extension` of the SQLite library the harness
/// links, then open a connection; this records the library's API routines for [`snapshot`].
///
/// # Safety
/// Called by SQLite as an extension entry point.
pub unsafe extern "C" fn capture_api(
    _db: *mut sqlite3ext_sys::sqlite3,
    _err: *mut *mut c_char,
    api: *const sqlite3ext_sys::sqlite3_api_routines,
) -> c_int {
    crate::sqlite::api::init(api as *mut _);
    0
}

/// Tables of the in-memory database the snapshot target writes: `fz_*` made by `Shadow::create_tables`,
/// `fy_*` as a damaged or forged file might declare them (no types, no constraints).
pub(super) const STORES: [&str; 2] = ["fz", "fy"];

/// Serialized trusted indexes by (factory, dim, count, metric).
type TrustedCache = HashMap<(usize, usize, usize, usize), Vec<u8>>;

thread_local! {
    static DB: RefCell<Option<Conn>> = const { RefCell::new(None) };
    static TRUSTED: RefCell<TrustedCache> = RefCell::new(HashMap::new());
}

/// This thread's in-memory database, opened through the captured API routines.
pub(super) fn db() -> Conn {
    DB.with(|cell| {
        *cell.borrow_mut().get_or_insert_with(|| {
            let mut raw = std::ptr::null_mut();
            // SAFETY: NUL-terminated name; SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE. The
            // connection is never closed (one per thread, for the life of the harness).
            let rc = unsafe {
                call!(open_v2(
                    c":memory:".as_ptr(),
                    &mut raw,
                    0x02 | 0x04,
                    std::ptr::null()
                ))
            };
            assert!(
                rc == 0 && !raw.is_null(),
                "cannot open an in-memory database"
            );
            // SAFETY: just opened, never closed.
            let conn = unsafe { Conn::from_raw(raw) };
            Shadow::new(conn, "main", STORES[0])
                .create_tables(&KeyShape::Rowid)
                .expect("shadow tables");
            // Seals in this harness use a fixed key, not the user's (`seal`).
            seal::use_key([0x17; 32]);
            for sql in [
                "CREATE TABLE fy_config (key, value)",
                "CREATE TABLE fy_chunks (chunk, data)",
                "CREATE TABLE docs (id INTEGER PRIMARY KEY, embedding BLOB)",
            ] {
                conn.execute(sql).expect("loose tables");
            }
            conn
        })
    })
}

const META_KEYS: [(Key, &str); 9] = [
    (Key::Format, "1"),
    (Key::Column, "embedding"),
    (Key::Id, ""),
    (Key::Pk, "id"),
    (Key::Factory, "Flat"),
    (Key::Metric, "l2"),
    (Key::Dim, "4"),
    (Key::Params, "nprobe=2,rerank=3"),
    (Key::TrainSize, "100"),
];

/// The snapshot loader. The first byte picks what the rest is:
///
/// - `0`: shadow-table contents: config values and chunk rows of any SQLite type, read back by
///   `Config::read` and verified by `chunks::open`; the metadata by `Meta::from_config`.
///   Accepted bytes must match the recorded length and checksum.
/// - `1`: a payload, written by `chunks::write` (so its checksum is right), read back (must be
///   identical) and parsed by `LiveState::from_payload` up to FAISS's type tag.
/// - `2`: a payload around a FAISS serialization vekter wrote: fuzzed slot table and metadata,
///   parsed all the way; the result must be exactly what the header and slots say, and must
///   encode back to the same payload.
/// - `3`: a version-2 payload (keyed by columns, by unstable rowids, partitioned): parts,
///   partition values, slot tables, vector hashes and key table built from the input around
///   FAISS serializations vekter wrote, then damaged in one way the input picks. A well-formed
///   one must load and encode back to itself; anything accepted must be consistent.
/// - `4`: forged, past the checksum: a table's honest snapshot, or bytes from the input, with
///   bytes from the input written over it, stored with the right checksum (as anyone who can
///   write the file can) and no seal, a seal of another key, or the honest snapshot's seal.
///   Loading it (`persist::load`, as a search does) must never call FAISS's reader on changed
///   bytes, and must answer exactly from the stand-in built from the content table; the honest
///   snapshot, sealed, must load as it is.
pub fn snapshot(data: &[u8]) {
    let mut input = Input { data };
    match input.u8() % 5 {
        0 => snapshot_store(&mut input),
        1 => snapshot_payload(&mut input),
        2 => snapshot_trusted(&mut input),
        3 => v2::snapshot_v2(&mut input),
        _ => forged::snapshot_forged(&mut input),
    }
}

fn snapshot_store(input: &mut Input) {
    let conn = db();
    let loose = input.u8() & 1 == 1;
    let name = STORES[loose as usize];
    let shadow = Shadow::new(conn, "main", name);
    conn.execute(&format!("DELETE FROM {name}_config"))
        .expect("clear config");
    conn.execute(&format!("DELETE FROM {name}_chunks"))
        .expect("clear chunks");

    // Chunk rows come last in the input but are needed to fill in "correct" config values, so
    // read the config choices first.
    let snapshot_keys = [
        Key::SnapshotBytes,
        Key::SnapshotChunks,
        Key::SnapshotChecksum,
    ];
    let mut choices = Vec::new();
    for key in snapshot_keys
        .iter()
        .chain([Key::SnapshotSeq].iter())
        .chain(META_KEYS.iter().map(|(k, _)| k))
    {
        choices.push((*key, input.u8(), input.chunk()));
    }

    // Chunk rows: chunk number (integer, or text), data of any type. In the loose table the
    // rowid is set too, usually equal to the chunk number (in vekter's own table `chunk` is
    // the rowid, which the reader relies on to open each BLOB).
    let rowid = if loose { "rowid, " } else { "" };
    let rowid_value = if loose { "?4, " } else { "" };
    let mut insert = conn
        .prepare(&format!(
            "INSERT INTO {name}_chunks ({rowid}chunk, data) VALUES ({rowid_value}\
             CASE WHEN ?3 & 8 THEN CAST(?1 AS TEXT) ELSE ?1 END, \
             CASE ?3 & 7 WHEN 0 THEN ?2 WHEN 1 THEN CAST(?2 AS TEXT) WHEN 2 THEN NULL \
             WHEN 3 THEN length(?2) WHEN 4 THEN length(?2) + 0.5 ELSE ?2 END)"
        ))
        .expect("insert chunk");
    let mut rows: Vec<(i64, bool, Vec<u8>)> = Vec::new();
    while !input.is_empty() {
        let head = input.u8();
        let chunk = if head & 0x80 != 0 {
            i64::from_le_bytes(input.word())
        } else {
            (head & 0x7f) as i64 - 2
        };
        let kind = input.u8();
        let bytes = input.chunk();
        insert.bind_i64(1, chunk).expect("bind");
        insert.bind_blob(2, bytes).expect("bind");
        insert.bind_i64(3, kind as i64).expect("bind");
        let shift = (kind >> 4) as i64;
        if loose {
            insert.bind_i64(4, chunk.wrapping_add(shift)).expect("bind");
        }
        // Duplicates and type mismatches fail in the strict table: the row is just not there.
        if insert.step().is_ok() {
            // Read back as an integer chunk number holding a BLOB, in the row of that rowid
            // (the strict table's INTEGER PRIMARY KEY turns a text number into an integer).
            let plain = (!loose || (kind & 8 == 0 && shift == 0)) && matches!(kind & 7, 0 | 5..=7);
            rows.push((chunk, plain, bytes.to_vec()));
        }
        insert.reset();
    }
    drop(insert);

    // What a correct config would say about the rows as stored (in chunk order).
    rows.sort_by_key(|r| r.0);
    let all: Vec<u8> = rows.iter().flat_map(|r| r.2.iter().copied()).collect();
    let correct = |key: Key| -> String {
        match key {
            Key::SnapshotBytes => all.len().to_string(),
            Key::SnapshotChunks => rows.len().to_string(),
            Key::SnapshotChecksum => checksum(&all),
            Key::SnapshotSeq => "0".to_string(),
            other => META_KEYS
                .iter()
                .find(|(k, _)| *k == other)
                .map_or(String::new(), |(_, v)| v.to_string()),
        }
    };
    let mut set = conn
        .prepare(&format!(
            "INSERT INTO {name}_config (key, value) VALUES (?1, \
             CASE ?3 WHEN 0 THEN ?2 WHEN 1 THEN CAST(?2 AS BLOB) WHEN 2 THEN NULL \
             WHEN 3 THEN CAST(?2 AS INTEGER) ELSE CAST(?2 AS REAL) END)"
        ))
        .expect("insert config");
    let mut all_correct = true;
    for (key, choice, fuzzed) in &choices {
        let value = match choice >> 4 {
            0 => None,
            1..=9 => Some(correct(*key)),
            _ => Some(String::from_utf8_lossy(fuzzed).into_owned()),
        };
        if snapshot_keys.contains(key) && (choice >> 4 == 0 || choice >> 4 > 9) {
            all_correct = false;
        }
        // Leave the key out.
        let Some(value) = value else { continue };
        let kind = if choice >> 4 <= 9 { 0 } else { choice % 5 };
        set.bind_text(1, key.name()).expect("bind");
        set.bind_text(2, &value).expect("bind");
        set.bind_i64(3, kind as i64).expect("bind");
        let _ = set.step();
        set.reset();
    }
    drop(set);
    // The seal is right (mode 4 forges it): what is fuzzed here is the storage around it.
    let key = seal::key().expect("the harness's key");
    for (k, v) in [
        (Key::SnapshotSeal, key.seal(&all)),
        (Key::SnapshotKeyId, key.id.clone()),
    ] {
        let mut stmt = conn
            .prepare(&format!(
                "INSERT INTO {name}_config (key, value) VALUES (?1, ?2)"
            ))
            .expect("insert seal");
        stmt.bind_text(1, k.name()).expect("bind");
        stmt.bind_text(2, &v).expect("bind");
        let _ = stmt.step();
    }

    let config = Config::read(&shadow).expect("config reads");
    let result = read_whole(&shadow, &config);
    if let Ok(payload) = &result {
        let sum = checksum(payload);
        assert_eq!(
            config.text(Key::SnapshotChecksum).ok(),
            Some(sum.as_str()),
            "checksum"
        );
        assert_eq!(
            config.num::<usize>(Key::SnapshotBytes).ok(),
            Some(payload.len()),
            "length"
        );
        assert_eq!(payload, &all, "payload is not the stored chunks in order");
    }
    let sequence_ok = rows.iter().enumerate().all(|(i, r)| r.0 == i as i64 && r.1);
    if all_correct && sequence_ok && all.len().div_ceil(CHUNK_BYTES) == rows.len() {
        if let Err(e) = &result {
            panic!("a correct snapshot is refused: {e}");
        }
    }
    // The metadata half of the loader, on the same config.
    if let Ok(meta) = Meta::from_config(&config, "docs".to_string()) {
        assert!(meta.params.rerank.is_none_or(|r| (1..=100).contains(&r)));
    }
    let _ = config.mark();
}

/// The whole stored snapshot, verified as loading verifies it.
fn read_whole(shadow: &Shadow, config: &Config) -> Result<Vec<u8>> {
    let mut snapshot = chunks::open(shadow, &config.record()?)?;
    let mut payload = vec![0u8; snapshot.len()];
    snapshot.read_at(0, &mut payload)?;
    Ok(payload)
}

/// A plain table's metadata: keyed by its INTEGER PRIMARY KEY, not partitioned.
fn test_meta(dim: usize, metric: Metric) -> Meta {
    shaped_meta(dim, metric, KeyShape::Rowid, false)
}

pub(super) fn shaped_meta(dim: usize, metric: Metric, key: KeyShape, partitioned: bool) -> Meta {
    Meta {
        content: "docs".to_string(),
        column: "embedding".to_string(),
        id_column: None,
        pk: "id".to_string(),
        key,
        predicate: None,
        partition: partitioned.then(|| "tenant".to_string()),
        factory: "Flat".to_string(),
        metric,
        dim,
        params: Default::default(),
        train_size: 100,
        deterministic: false,
    }
}

pub(super) const METRICS: [Metric; 3] = [Metric::L2, Metric::InnerProduct, Metric::Cosine];

fn snapshot_payload(input: &mut Input) {
    let dim = 1 + input.u8() as usize % 8;
    let metric = METRICS[input.u8() as usize % 3];
    let mut payload = input.rest().to_vec();
    // Version 1 only (mode 3 builds version 2, whose FAISS bytes start elsewhere): whatever
    // the header says, FAISS's reader starts at byte 24 with the type tag.
    if payload.starts_with(b"VEKTSNP2") {
        payload[7] = b'1';
    }
    if payload.len() > 24 {
        let n = (payload.len() - 24).min(4);
        payload[24..24 + n].copy_from_slice(&UNKNOWN_FAISS_TAG[..n]);
    }
    let shadow = Shadow::new(db(), "main", STORES[0]);
    let record = chunks::write(&shadow, &payload).expect("write snapshot");
    let config = Config::from_pairs(record.pairs().into_iter().map(|(k, v)| (k.name(), v)));
    let read = read_whole(&shadow, &config)
        .unwrap_or_else(|e| panic!("a snapshot just written is refused: {e}"));
    assert_eq!(read, payload, "snapshot read back differs");
    let meta = test_meta(dim, metric);
    match LiveState::from_payload(&mut Bytes(&read), &meta, ("fz".to_string(), 0, 0)) {
        Ok(_) => panic!("a payload with an unknown FAISS type tag was accepted"),
        Err(e) => assert!(!e.message().is_empty()),
    }
}

pub(super) const FACTORIES: [&str; 2] = ["Flat", "HNSW4"];

/// A FAISS serialization vekter wrote: `count` vectors of `dim` dimensions.
pub(super) fn trusted(factory: usize, dim: usize, count: usize, metric: usize) -> Vec<u8> {
    TRUSTED.with(|cache| {
        cache
            .borrow_mut()
            .entry((factory, dim, count, metric))
            .or_insert_with(|| {
                let mut index =
                    Index::new(FACTORIES[factory], dim, METRICS[metric]).expect("trusted factory");
                let vectors: Vec<f32> = (0..dim * count)
                    .map(|i| ((i * 7919) % 101) as f32 * 0.25 - 3.0)
                    .collect();
                index.add(&vectors).expect("add");
                index.to_bytes().expect("serialize")
            })
            .clone()
    })
}

fn snapshot_trusted(input: &mut Input) {
    let factory = input.u8() as usize % FACTORIES.len();
    let metric = input.u8() as usize % 3;
    let dim = 1 + input.u8() as usize % 8;
    let count = input.u8() as usize % 9;
    let meta_dim = match input.u8() {
        m if m & 0x80 != 0 => 1 + m as usize % 8,
        _ => dim,
    };
    let meta_metric = METRICS[(metric + input.u8() as usize % 3) % 3];
    let faiss = trusted(factory, dim, count, metric);
    let mut slots = Vec::new();
    while !input.is_empty() {
        slots.push(match input.u8() % 4 {
            0 => DEAD_SLOT,
            1 => i64::from_le_bytes(input.word()),
            _ => input.u8() as i64 - 8,
        });
    }
    let payload = snapshot::encode(&faiss, &slots);

    let live: Vec<i64> = slots.iter().copied().filter(|&s| s != DEAD_SLOT).collect();
    let mut unique = live.clone();
    unique.sort_unstable();
    unique.dedup();
    // The stored index's FAISS metric must be the table's: L2, or inner product for ip and
    // cosine.
    let same_metric = (METRICS[metric] == Metric::L2) == (meta_metric == Metric::L2);
    let valid =
        slots.len() == count && meta_dim == dim && unique.len() == live.len() && same_metric;

    let mark = ("fz".to_string(), 0, 5);
    let meta = test_meta(meta_dim, meta_metric);
    match LiveState::from_payload(&mut Bytes(&payload), &meta, mark) {
        Err(e) => assert!(!valid, "a valid payload is refused: {e}"),
        Ok(state) => {
            assert!(
                valid,
                "an invalid payload is accepted ({count} vectors, {slots:?})"
            );
            assert_eq!(state.dim(), dim);
            assert_eq!(state.part(None).expect("one part").index.ntotal(), count);
            assert_eq!(state.live_count(), live.len());
            assert_eq!(state.dead_count(), slots.len() - live.len());
            assert_eq!(state.handles(), unique);
            assert_eq!(state.applied_seq, 5);
            let _ = state.memory_bytes();
            let again = state.to_payload().expect("encode");
            assert_eq!(
                again, payload,
                "loaded state does not encode back to its payload"
            );
        }
    }
}
