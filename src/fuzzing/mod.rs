//! Fuzzing entry points (cargo feature `fuzzing`, enabled only by `fuzz/` and `make test`): one
//! function per target, each taking arbitrary bytes and running them through the
//! real parsers. They never panic on any input: a panic (or a sanitizer report) is a
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
//! | [`snapshot`] | the stored snapshot: chunk/length/checksum/seal verification (through SQLite), the payload header, the slot table, and forged snapshots through the whole loader of a table |
//!
//! **What of the snapshot loader FAISS sees.** `LiveState::from_payload` hands the FAISS part of
//! a verified payload to `read_index`, which trusts its input; vekter's defence is that it only
//! verifies bytes sealed with this process's key (SECURITY.md). The snapshot target checks
//! exactly that: its mode 4 forges snapshots past the checksum (arbitrary bytes, or a real
//! table's snapshot with bytes written over it; no seal, another key's, or the honest one's)
//! and asserts that loading never calls FAISS's reader on them and answers exactly from the
//! stand-in built from the content table. Fuzzing `read_index` itself on bytes sealed with the
//! key would only find FAISS's known memory-safety issues, so the other modes give it fuzzed
//! bytes stopped at their type tag, or a FAISS serialization vekter wrote itself with a fuzzed
//! header, slot table and metadata around it.
//!
//! The snapshot target needs SQLite: a harness links a SQLite library, registers
//! [`capture_api`] with that library's `sqlite3_auto_extension` and opens one connection, which
//! hands vekter the library's API routines (vekter itself never links SQLite).

mod codec;
mod options;
mod snapshot;

pub use codec::{json_output, vector_codec};
pub use options::vtab_options;
pub use snapshot::{capture_api, snapshot};

/// A 64-bit hash (XXH3), for naming saved failing inputs and seeding mutations.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Reads structured values off the front of the input; past the end everything is zero/empty,
/// so every input decodes to something.
pub(crate) struct Input<'a> {
    pub(crate) data: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    pub(crate) fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    pub(crate) fn word(&mut self) -> [u8; 8] {
        let mut w = [0u8; 8];
        let b = self.take(8);
        w[..b.len()].copy_from_slice(b);
        w
    }

    /// A length-prefixed byte string (length < 256).
    pub(crate) fn chunk(&mut self) -> &'a [u8] {
        let n = self.u8() as usize;
        self.take(n)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

pub(crate) fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
