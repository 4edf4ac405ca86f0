//! Fuzzing entry points: one function per target, each taking arbitrary bytes and running them
//! through the real parsers. They never panic on any input: a panic (or a sanitizer report) is a
//! bug, either in the parser or in the property the entry point asserts about its result.
//!
//! Driven by the cargo-fuzz targets in `fuzz/` (`make fuzz`, nightly, coverage-guided) and by
//! `tests/fuzz_corpus.rs` (stable, in `make test`), which replays the checked-in corpus in
//! `fuzz/corpus/<target>/` plus mutations of it.
//!
//! | target | what it exercises |
//! | --- | --- |
//! | [`vector_codec`] | float32 blobs and JSON text in, blobs and JSON out: round trips are bit-identical, and the JSON reader agrees with `serde_json` |
//! | [`json_output`] | Python-`repr` floats, ids and `ensure_ascii` strings: strict JSON that reads back to the same values |
//! | [`vtab_options`] | `CREATE VIRTUAL TABLE … USING faiss(…)` arguments, search parameters, and the config round trip |
//! | [`snapshot`] | the stored snapshot: chunk/length/checksum verification (through SQLite), the payload header, and the slot table |
//!
//! **What of the snapshot loader FAISS sees.** `LiveState::from_payload` hands the FAISS part of
//! a checksum-verified payload to `read_index`, which trusts its input (SECURITY.md, forged
//! files). Fuzzing that reader would only find FAISS's known memory-safety issues, so the
//! entry point never gives it fuzzed bytes: arbitrary payloads have the four bytes FAISS reads
//! first (its type tag) replaced by a tag it does not know, so `read_index` throws after reading
//! that tag; payloads that get past `read_index` carry a FAISS serialization vekter wrote itself,
//! with a fuzzed header, slot table and metadata around it.
//!
//! The snapshot target needs SQLite: a harness links a SQLite library, registers
//! [`capture_api`] with that library's `sqlite3_auto_extension` and opens one connection, which
//! hands vekter the library's API routines (vekter itself never links SQLite).

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::raw::{c_char, c_int};

use crate::index::{Index, Metric};
use crate::json::{self, IdValue};
use crate::live::{LiveState, Meta, SearchParams};
use crate::sqlite::api::call;
use crate::sqlite::{Cell, Conn};
use crate::store::{self, Store, CHUNK_BYTES};
use crate::vector::{self, MAX_DIM, MAX_JSON_BYTES};
use crate::vtab::Options;

/// A FAISS type tag `read_index` rejects at once ("Index type … not recognized").
const UNKNOWN_FAISS_TAG: &[u8; 4] = b"VKFZ";
const SNAPSHOT_MAGIC: &[u8; 8] = b"VEKTSNP1";
/// The slot-table marker of a deleted slot (`live::DEAD`).
const DEAD: i64 = i64::MIN;

/// Reads structured values off the front of the input; past the end everything is zero/empty,
/// so every input decodes to something.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    fn word(&mut self) -> [u8; 8] {
        let mut w = [0u8; 8];
        let b = self.take(8);
        w[..b.len()].copy_from_slice(b);
        w
    }

    /// A length-prefixed byte string (length < 256).
    fn chunk(&mut self) -> &'a [u8] {
        let n = self.u8() as usize;
        self.take(n)
    }

    fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

// ---------------------------------------------------------------------------------------------
// vector_codec

/// The vector codec: `data` as a float32 blob and as JSON text. Whatever is accepted encodes
/// back bit-identically (blob → blob, blob → JSON → vector, JSON → blob → vector); errors leave
/// the caller's buffer untouched; the JSON reader accepts exactly what `serde_json` reads as an
/// array of numbers that fit in float32.
pub fn vector_codec(data: &[u8]) {
    const SENTINEL: f32 = -7.25;

    // As a blob.
    let mut out = vec![SENTINEL];
    match vector::append(Cell::Blob(data), &mut out) {
        Ok(dim) => {
            let v = &out[1..];
            assert_eq!(out[0].to_bits(), SENTINEL.to_bits(), "blob: prefix changed");
            assert_eq!(dim * 4, data.len(), "blob: dimension");
            assert!(!v.is_empty() && v.len() <= MAX_DIM);
            assert!(v.iter().all(|x| x.is_finite()), "blob: non-finite accepted");
            assert_eq!(vector::encode(v), data, "blob → encode is not identical");
            let text = json::floats(v);
            let back = vector::parse(Cell::Text(text.as_bytes()))
                .unwrap_or_else(|e| panic!("blob → JSON {text:?} does not parse: {e}"));
            assert!(same_bits(&back, v), "blob → JSON → vector differs");
        }
        Err(e) => {
            assert_eq!(out.len(), 1, "blob: buffer changed on error");
            assert!(!e.message().is_empty());
        }
    }

    // As JSON text.
    let mut out = vec![SENTINEL];
    let parsed = vector::append(Cell::Text(data), &mut out);
    let strict = serde_json::from_slice::<Vec<f64>>(data).ok();
    match parsed {
        Ok(dim) => {
            let v = &out[1..];
            assert_eq!(out[0].to_bits(), SENTINEL.to_bits(), "JSON: prefix changed");
            assert_eq!(dim, v.len());
            assert!(!v.is_empty() && v.len() <= MAX_DIM);
            assert!(v.iter().all(|x| x.is_finite()), "JSON: non-finite accepted");
            let blob = vector::encode(v);
            let back = vector::parse(Cell::Blob(&blob)).expect("JSON → blob parses");
            assert!(same_bits(&back, v), "JSON → blob → vector differs");
            let text = json::floats(v);
            let again = vector::parse(Cell::Text(text.as_bytes()))
                .unwrap_or_else(|e| panic!("JSON → JSON {text:?} does not parse: {e}"));
            assert!(same_bits(&again, v), "JSON → JSON → vector differs");
            assert_eq!(json::floats(&again), text, "JSON output is not stable");
            // serde_json reads the same numbers (-0 and 0 compare equal: serde reads "-0" as 0).
            let strict = strict.unwrap_or_else(|| panic!("serde_json rejects accepted {data:?}"));
            assert_eq!(strict.len(), v.len());
            for (s, x) in strict.iter().zip(v) {
                assert!(*s as f32 == *x, "serde_json reads {s:e}, vekter {x:e}");
            }
        }
        Err(e) => {
            assert_eq!(out.len(), 1, "JSON: buffer changed on error");
            assert!(!e.message().is_empty());
            if let Some(xs) = strict {
                let fits = !xs.is_empty()
                    && xs.len() <= MAX_DIM
                    && data.len() <= MAX_JSON_BYTES
                    && xs.iter().all(|x| (*x as f32).is_finite());
                assert!(
                    !fits,
                    "vekter rejects valid JSON {:?}: {}",
                    String::from_utf8_lossy(data),
                    e.message()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// json_output

fn repr(x: f64) -> String {
    let mut s = String::new();
    json::push_float(&mut s, x);
    s
}

/// Significant digits of a decimal number written out (no sign, point, exponent, or leading and
/// trailing zeros).
fn significant(s: &str) -> String {
    let mantissa = s.split(['e', 'E']).next().unwrap_or("");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .to_string()
}

/// Python's `repr(x)` for a float, checked without Python: it reads back to the same bits, has
/// the shortest digits that do, and uses an exponent exactly when Python does.
fn check_float(x: f64) {
    let s = repr(x);
    if x.is_nan() {
        assert_eq!(s, "NaN");
        return;
    }
    if x.is_infinite() {
        assert_eq!(s, if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    let back: f64 = s
        .parse()
        .unwrap_or_else(|_| panic!("repr {s:?} is not a float"));
    assert_eq!(
        back.to_bits(),
        x.to_bits(),
        "repr({x:e}) = {s} reads back differently"
    );
    let strict: f64 = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    assert!(strict == x, "serde_json reads {s} as {strict:e}");
    assert!(s.is_ascii() && (s.contains('.') || s.contains('e')), "{s}");
    let shortest = format!("{:e}", x.abs());
    assert_eq!(significant(&s), significant(&shortest), "{s} vs {shortest}");
    if x != 0.0 {
        let exp: i32 = shortest
            .split_once('e')
            .and_then(|(_, e)| e.parse().ok())
            .expect("{:e} has an exponent");
        let scientific = !(-4..16).contains(&exp);
        assert_eq!(s.contains('e'), scientific, "{s}: exponent {exp}");
        if let Some((_, e)) = s.split_once('e') {
            assert!(
                e.starts_with(['+', '-']) && e.len() >= 3,
                "{s}: exponent form"
            );
        }
    }
}

fn check_string(s: &str) {
    let mut out = String::new();
    json::push_str(&mut out, s);
    assert!(out.is_ascii(), "{out:?} is not ASCII");
    let back: String = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"));
    assert_eq!(back, s);
}

/// JSON output: floats (as `f64` and as `f32` lists), ids of every SQLite type and strings, as
/// a stream of tagged values. Finite output is strict JSON (`serde_json` reads it back to the
/// same values); non-finite floats come out as Python writes them.
pub fn json_output(data: &[u8]) {
    let mut input = Input { data };
    let mut ids = Vec::new();
    let mut floats32 = Vec::new();
    while !input.is_empty() {
        match input.u8() % 6 {
            0 => {
                let x = f64::from_le_bytes(input.word());
                check_float(x);
                ids.push(IdValue::Real(x));
            }
            1 => {
                let mut w = [0u8; 4];
                let b = input.take(4);
                w[..b.len()].copy_from_slice(b);
                let x = f32::from_le_bytes(w);
                check_float(x as f64);
                floats32.push(x);
            }
            2 => ids.push(IdValue::Integer(i64::from_le_bytes(input.word()))),
            3 => {
                let s = String::from_utf8_lossy(input.chunk()).into_owned();
                check_string(&s);
                ids.push(IdValue::Text(s.into()));
            }
            4 => ids.push(IdValue::Null),
            _ => {
                // A small float from a decimal string: the numbers people actually store.
                let s = String::from_utf8_lossy(input.chunk()).into_owned();
                if let Ok(x) = s.trim().parse::<f64>() {
                    check_float(x);
                    ids.push(IdValue::Real(x));
                }
            }
        }
    }

    // A float32 vector list, as faiss_decode writes it.
    let text = json::floats(&floats32);
    assert!(text.starts_with('[') && text.ends_with(']'));
    let finite: Vec<f32> = floats32.iter().copied().filter(|x| x.is_finite()).collect();
    let text = json::floats(&finite);
    let back: Vec<f64> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(back.len(), finite.len());
    for (b, x) in back.iter().zip(&finite) {
        assert!(*b == *x as f64, "{text}: {b:e} vs {x:e}");
    }
    if !finite.is_empty() && finite.len() <= MAX_DIM {
        let v = vector::parse(Cell::Text(text.as_bytes())).expect("floats() output parses");
        assert!(
            same_bits(&v, &finite),
            "{text} does not read back bit-identically"
        );
    }

    // Ids, as faiss_search writes them.
    let text = json::list(&ids, json::push_id);
    assert!(text.is_ascii());
    if ids
        .iter()
        .all(|id| !matches!(id, IdValue::Real(x) if !x.is_finite()))
    {
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let items = value.as_array().expect("a JSON array");
        assert_eq!(items.len(), ids.len());
        for (item, id) in items.iter().zip(&ids) {
            let ok = match id {
                IdValue::Null => item.is_null(),
                IdValue::Integer(i) => item.as_i64() == Some(*i),
                IdValue::Real(x) => item.is_f64() && item.as_f64() == Some(*x),
                IdValue::Text(s) => item.as_str() == Some(&**s),
            };
            assert!(ok, "{id:?} came out as {item}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// vtab_options

/// The `faiss` virtual table's arguments: `data` split at NUL bytes (SQLite hands each argument
/// as a C string, so none contains one). Accepted options are within their documented bounds,
/// their search parameters print and parse back unchanged, and the config they are stored as
/// reads back to the same metadata.
pub fn vtab_options(data: &[u8]) {
    let args: Vec<String> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    };
    // The other parsers that take the same strings.
    if let Some(first) = args.first() {
        let _ = Metric::parse(first);
        let _ = crate::index::check_factory(first);
        if let Ok(p) = SearchParams::parse(first) {
            check_params(&p);
        }
    }
    let o = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            assert!(!e.message().is_empty());
            return;
        }
    };
    assert!(!o.content.is_empty() && !o.column.is_empty());
    assert!(!o.factory.is_empty() && o.factory.len() <= 256 && !o.factory.contains('\0'));
    assert!((1..=crate::vtab::options::MAX_TRAIN_SIZE).contains(&o.train_size));
    assert!(o.dim.is_none_or(|d| (1..=MAX_DIM).contains(&d)));
    assert!(o
        .id
        .as_deref()
        .is_none_or(|i| !i.eq_ignore_ascii_case("rowid")));
    check_params(&o.params);
    let _ = crate::index::check_factory(&o.factory);

    // What create stores in `<name>_config` reads back to the same metadata.
    let meta = Meta {
        content: o.content.clone(),
        column: o.column.clone(),
        id_column: o.id.clone(),
        pk: "id".to_string(),
        factory: o.factory.clone(),
        metric: o.metric,
        dim: o.dim.unwrap_or(1),
        params: o.params.clone(),
        train_size: o.train_size,
    };
    let config: HashMap<String, String> = meta
        .to_config()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let back = Meta::from_config(&config, o.content.clone())
        .unwrap_or_else(|e| panic!("stored config of {meta:?} does not read back: {e}"));
    assert_eq!(back, meta);
}

fn check_params(p: &SearchParams) {
    assert!(p.rerank.is_none_or(|r| (1..=100).contains(&r)));
    for (name, value) in &p.faiss {
        assert!(!name.is_empty() && name != "rerank");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert!(value.is_finite() && *value >= 0.0);
    }
    let text = p.to_string();
    let back = SearchParams::parse(&text)
        .unwrap_or_else(|e| panic!("parameters {p:?} print as {text:?}, which fails: {e}"));
    assert_eq!(&back, p, "{text}");
    let _ = p.check_per_query();
}

// ---------------------------------------------------------------------------------------------
// snapshot

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

/// Tables of the in-memory database the snapshot target writes: `fz_*` made by `Store` itself,
/// `fy_*` as a damaged or forged file might declare them (no types, no constraints).
const STORES: [&str; 2] = ["fz", "fy"];

/// Serialized trusted indexes by (factory, dim, count, metric).
type TrustedCache = HashMap<(usize, usize, usize, usize), Vec<u8>>;

thread_local! {
    static DB: RefCell<Option<Conn>> = const { RefCell::new(None) };
    static TRUSTED: RefCell<TrustedCache> = RefCell::new(HashMap::new());
}

/// This thread's in-memory database, opened through the captured API routines.
fn db() -> Conn {
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
            Store::new(conn, "main", STORES[0])
                .create_tables()
                .expect("shadow tables");
            for sql in [
                "CREATE TABLE fy_config (key, value)",
                "CREATE TABLE fy_chunks (chunk, data)",
            ] {
                conn.execute(sql).expect("loose tables");
            }
            conn
        })
    })
}

const META_KEYS: [(&str, &str); 9] = [
    ("format", "1"),
    ("column", "embedding"),
    ("id", ""),
    ("pk", "id"),
    ("factory", "Flat"),
    ("metric", "l2"),
    ("dim", "4"),
    ("params", "nprobe=2,rerank=3"),
    ("train_size", "100"),
];

/// The snapshot loader. The first byte picks what the rest is:
///
/// - `0`: shadow-table contents: config values and chunk rows of any SQLite type, read back by
///   `Store::config` and verified by `Store::read_snapshot`; the metadata by `Meta::from_config`.
///   Accepted bytes must match the recorded length and checksum.
/// - `1`: a payload, written by `Store::write_snapshot` (so its checksum is right), read back
///   (must be identical) and parsed by `LiveState::from_payload` up to FAISS's type tag.
/// - `2`: a payload around a FAISS serialization vekter wrote: fuzzed slot table and metadata,
///   parsed all the way; the result must be exactly what the header and slots say, and must
///   encode back to the same payload.
pub fn snapshot(data: &[u8]) {
    let mut input = Input { data };
    match input.u8() % 3 {
        0 => snapshot_store(&mut input),
        1 => snapshot_payload(&mut input),
        _ => snapshot_trusted(&mut input),
    }
}

fn snapshot_store(input: &mut Input) {
    let conn = db();
    let loose = input.u8() & 1 == 1;
    let name = STORES[loose as usize];
    let store = Store::new(conn, "main", name);
    conn.execute(&format!("DELETE FROM {name}_config"))
        .expect("clear config");
    conn.execute(&format!("DELETE FROM {name}_chunks"))
        .expect("clear chunks");

    // Chunk rows come last in the input but are needed to fill in "correct" config values, so
    // read the config choices first.
    let snapshot_keys = ["snapshot_bytes", "snapshot_chunks", "snapshot_checksum"];
    let mut choices = Vec::new();
    for key in snapshot_keys
        .iter()
        .chain(["snapshot_seq"].iter())
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
    let correct = |key: &str| -> String {
        match key {
            "snapshot_bytes" => all.len().to_string(),
            "snapshot_chunks" => rows.len().to_string(),
            "snapshot_checksum" => format!("{:016x}", store::checksum(&all)),
            "snapshot_seq" => "0".to_string(),
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
            1..=9 => Some(correct(key)),
            _ => Some(String::from_utf8_lossy(fuzzed).into_owned()),
        };
        if snapshot_keys.contains(key) && (choice >> 4 == 0 || choice >> 4 > 9) {
            all_correct = false;
        }
        // Leave the key out.
        let Some(value) = value else { continue };
        let kind = if choice >> 4 <= 9 { 0 } else { choice % 5 };
        set.bind_text(1, key).expect("bind");
        set.bind_text(2, &value).expect("bind");
        set.bind_i64(3, kind as i64).expect("bind");
        let _ = set.step();
        set.reset();
    }
    drop(set);

    let config = store.config().expect("config reads");
    let result = store.read_snapshot(&config);
    if let Ok(payload) = &result {
        let sum = format!("{:016x}", store::checksum(payload));
        assert_eq!(config.get("snapshot_checksum"), Some(&sum), "checksum");
        assert_eq!(
            config.get("snapshot_bytes").and_then(|v| v.parse().ok()),
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
    let _ = store::config_num::<i64>(&config, "snapshot_seq");
    let _ = store::config_num::<i64>(&config, "lineage");
}

fn test_meta(dim: usize, metric: Metric) -> Meta {
    Meta {
        content: "docs".to_string(),
        column: "embedding".to_string(),
        id_column: None,
        pk: "id".to_string(),
        factory: "Flat".to_string(),
        metric,
        dim,
        params: SearchParams::default(),
        train_size: 100,
    }
}

const METRICS: [Metric; 3] = [Metric::L2, Metric::InnerProduct, Metric::Cosine];

fn snapshot_payload(input: &mut Input) {
    let dim = 1 + input.u8() as usize % 8;
    let metric = METRICS[input.u8() as usize % 3];
    let mut payload = input.rest().to_vec();
    // Whatever the header says, FAISS's reader starts at byte 24 with the type tag.
    if payload.len() > 24 {
        let n = (payload.len() - 24).min(4);
        payload[24..24 + n].copy_from_slice(&UNKNOWN_FAISS_TAG[..n]);
    }
    let store = Store::new(db(), "main", STORES[0]);
    let entries = store.write_snapshot(&payload).expect("write snapshot");
    let config: HashMap<String, String> = entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let read = store
        .read_snapshot(&config)
        .unwrap_or_else(|e| panic!("a snapshot just written is refused: {e}"));
    assert_eq!(read, payload, "snapshot read back differs");
    let meta = test_meta(dim, metric);
    match LiveState::from_payload(&read, &meta, "fz".to_string(), 0) {
        Ok(_) => panic!("a payload with an unknown FAISS type tag was accepted"),
        Err(e) => assert!(!e.message().is_empty()),
    }
}

const FACTORIES: [&str; 2] = ["Flat", "HNSW4"];

/// A FAISS serialization vekter wrote: `count` vectors of `dim` dimensions.
fn trusted(factory: usize, dim: usize, count: usize, metric: usize) -> Vec<u8> {
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
            0 => DEAD,
            1 => i64::from_le_bytes(input.word()),
            _ => input.u8() as i64 - 8,
        });
    }
    let mut payload = Vec::new();
    payload.extend_from_slice(SNAPSHOT_MAGIC);
    payload.extend_from_slice(&(faiss.len() as u64).to_le_bytes());
    payload.extend_from_slice(&(slots.len() as u64).to_le_bytes());
    payload.extend_from_slice(&faiss);
    for s in &slots {
        payload.extend_from_slice(&s.to_le_bytes());
    }

    let live: Vec<i64> = slots.iter().copied().filter(|&s| s != DEAD).collect();
    let mut unique = live.clone();
    unique.sort_unstable();
    unique.dedup();
    // The stored index's FAISS metric must be the table's: L2, or inner product for ip and
    // cosine.
    let same_metric = (METRICS[metric] == Metric::L2) == (meta_metric == Metric::L2);
    let valid =
        slots.len() == count && meta_dim == dim && unique.len() == live.len() && same_metric;

    let meta = test_meta(meta_dim, meta_metric);
    match LiveState::from_payload(&payload, &meta, "fz".to_string(), 5) {
        Err(e) => assert!(!valid, "a valid payload is refused: {e}"),
        Ok(state) => {
            assert!(
                valid,
                "an invalid payload is accepted ({count} vectors, {slots:?})"
            );
            assert_eq!(state.index.dim(), dim);
            assert_eq!(state.index.ntotal(), count);
            assert_eq!(state.live_count(), live.len());
            assert_eq!(state.dead_count(), slots.len() - live.len());
            assert_eq!(state.rowids(), unique);
            assert_eq!(state.applied_seq, 5);
            let _ = state.memory_bytes();
            let again = state.encode_payload().expect("encode");
            assert_eq!(
                again, payload,
                "loaded state does not encode back to its payload"
            );
        }
    }
}
