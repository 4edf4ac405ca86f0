//! The fuzz targets on stable, in `make test`: every file of the checked-in corpus
//! (`fuzz/corpus/<target>/`) and a bounded number of mutations of it and random inputs go
//! through the same `vekter::fuzzing` entry points the cargo-fuzz targets call (`make fuzz` runs
//! them coverage-guided for longer). A failing input is written to the target directory and
//! named in the failure, ready for `cargo fuzz run <target> <file>` or this test.
//!
//! `VEKTER_FUZZ_CASES` sets the number of generated inputs per target (default 50,000),
//! `VEKTER_FUZZ_SEED` the random seed (default fixed, so runs are reproducible).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Instant;

/// Hand vekter the API routines of the SQLite library linked here (sqlite3ext-sys's copy), as
/// the snapshot target needs a database.
fn init_sqlite() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        type Entry = unsafe extern "C" fn(
            *mut sqlite3ext_sys::sqlite3,
            *mut *mut std::os::raw::c_char,
            *const sqlite3ext_sys::sqlite3_api_routines,
        ) -> std::os::raw::c_int;
        // SAFETY: SQLite calls auto extensions with exactly these arguments; the connection is
        // opened and closed here only to trigger the call.
        unsafe {
            let entry: Entry = vekter::fuzzing::capture_api;
            sqlite3ext_sys::sqlite3_auto_extension(Some(std::mem::transmute::<
                Entry,
                unsafe extern "C" fn(),
            >(entry)));
            let mut db = std::ptr::null_mut();
            let rc = sqlite3ext_sys::sqlite3_open_v2(
                c":memory:".as_ptr(),
                &mut db,
                0x02 | 0x04,
                std::ptr::null(),
            );
            assert_eq!(rc, 0, "cannot open SQLite");
            sqlite3ext_sys::sqlite3_close(db);
            sqlite3ext_sys::sqlite3_reset_auto_extension();
        }
    });
}

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens worth splicing in (what a libFuzzer dictionary would hold).
fn tokens(target: &str) -> &'static [&'static [u8]] {
    match target {
        "vector_codec" => &[
            b"[",
            b"]",
            b",",
            b" ",
            b"-",
            b".",
            b"e",
            b"E+",
            b"e-",
            b"0",
            b"1.5",
            b"1e39",
            b"3.4028235e38",
            b"NaN",
            b"Infinity",
            b"\"",
            b"\x00\x00\xc0\x7f",
            b"\x00\x00\x80\x7f",
        ],
        "vtab_options" => &[
            b"content",
            b"column",
            b"id",
            b"factory",
            b"metric",
            b"train_size",
            b"params",
            b"dim",
            b"=",
            b"'",
            b"\"",
            b"[",
            b"]",
            b"`",
            b"\x00",
            b"rowid",
            b"cosine",
            b"ip",
            b"l2",
            b"nprobe=",
            b"efSearch=",
            b"rerank=",
            b",",
            b"HNSW",
            b"IVF",
            b"Flat",
            b"65536",
            b"10000000",
            b"1e308",
        ],
        _ => &[
            b"\x00",
            b"\xff",
            b"\x7f",
            b"\x80",
            b"VEKTSNP1",
            b"\x00\x00\x00\x00\x00\x00\x00\x80",
            b"\xff\xff\xff\xff\xff\xff\xff\xff",
            b"0",
            b"4194304",
            b"4194305",
            b"-1",
        ],
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], target: &str) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                for _ in 0..1 + rng.below(8) {
                    input.insert(at, rng.next() as u8);
                }
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(16));
                input.drain(at..at + n);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(32));
                let piece: Vec<u8> = input[at..at + n].to_vec();
                let to = rng.below(len + 1);
                input.splice(to..to, piece);
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below(other.len() - from);
                    let at = rng.below(len + 1);
                    input.truncate(at);
                    input.extend_from_slice(&other[from..from + n]);
                }
            }
            6 | 7 => {
                let t = tokens(target);
                let token = t[rng.below(t.len())];
                let at = rng.below(len + 1);
                if rng.below(2) == 0 || at + token.len() > len {
                    input.splice(at..at, token.iter().copied());
                } else {
                    input[at..at + token.len()].copy_from_slice(token);
                }
            }
            _ if len > 0 => {
                let i = rng.below(len);
                input[i] = [0u8, 0xff, 0x7f, 0x80, b'0', b'9', b',', b'='][rng.below(8)];
            }
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(4096);
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn read_corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("corpus file"))
        .collect()
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Run `input` through `entry`; on a panic keep the input and fail naming it.
fn run_one(target: &str, what: &str, entry: fn(&[u8]), input: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| entry(input))).is_err() {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
        std::fs::create_dir_all(&dir).expect("failure directory");
        let path = dir.join(format!(
            "{target}-{:016x}",
            vekter::fuzzing::checksum(input)
        ));
        std::fs::write(&path, input).expect("write failing input");
        panic!(
            "{target}: {what} failed; input ({} bytes) saved as {}",
            input.len(),
            path.display()
        );
    }
}

fn replay(target: &str, entry: fn(&[u8])) {
    init_sqlite();
    let started = Instant::now();
    let corpus = read_corpus(target);
    assert!(!corpus.is_empty(), "no corpus for {target}");
    for (i, input) in corpus.iter().enumerate() {
        run_one(target, &format!("corpus file {i}"), entry, input);
    }
    let cases = env_number("VEKTER_FUZZ_CASES", 50_000);
    let seed = env_number("VEKTER_FUZZ_SEED", 0x5eed_f00d);
    let mut rng = Rng(seed ^ vekter::fuzzing::checksum(target.as_bytes()) | 1);
    for case in 0..cases {
        let input = if case % 10 == 9 {
            // Plain random bytes.
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            let mut input = corpus[rng.below(corpus.len())].clone();
            mutate(&mut rng, &mut input, &corpus, target);
            input
        };
        run_one(target, &format!("generated case {case}"), entry, &input);
    }
    eprintln!(
        "{target}: {} corpus files + {cases} generated inputs in {:.1?}",
        corpus.len(),
        started.elapsed()
    );
}

#[test]
fn vector_codec() {
    replay("vector_codec", vekter::fuzzing::vector_codec);
}

#[test]
fn json_output() {
    replay("json_output", vekter::fuzzing::json_output);
}

#[test]
fn vtab_options() {
    replay("vtab_options", vekter::fuzzing::vtab_options);
}

#[test]
fn snapshot() {
    replay("snapshot", vekter::fuzzing::snapshot);
}
