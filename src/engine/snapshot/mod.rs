//! The stored snapshot of a `faiss` table: its payload format (this file), its chunked storage
//! in `<name>_chunks` (`chunks`), its checksum (`checksum`) and its seal (`seal`).
//!
//! Version 1, for an unpartitioned table keyed by its INTEGER PRIMARY KEY (little-endian):
//!
//! | bytes | what |
//! | --- | --- |
//! | 8 | magic `VEKTSNP1` |
//! | 8 | FAISS serialization length `F` |
//! | 8 | slot count `N` |
//! | `F` | FAISS's own serialization (`write_index`) |
//! | `8 × N` | slot table: the handle of each FAISS label, [`DEAD_SLOT`] for a dead one |
//!
//! Version 2, for every other table: magic `VEKTSNP2`, then `u64` counts (parts, template 0/1,
//! keys), then the template index when there is one (`u64` length, FAISS bytes), then per part:
//! its partition value (`u64` length, an encoded one-part key, empty when unpartitioned), its
//! FAISS bytes (`u64` length first), its slot table (`u64` count first) and its per-slot vector
//! hashes (`u64` count, 0 or the slot count, first); last the key table (per key: the `i64`
//! handle and the encoded key, see `key::RowKey::encode`). Every length is checked against the
//! bytes that remain before anything is allocated or read, and the total must match exactly.
//!
//! Decoding checks the lengths, then that each FAISS index's vector count and dimension match
//! its slot table and the table's metadata.
//!
//! Lean, for a `Flat` table (since 2026-12-02 evening): magic `VEKTLEAN`, then the dimension
//! and the row count when saved (`u64` each), 24 bytes in all. A Flat index holds nothing but the vectors, which the content
//! table already holds: it is built again from the table at load (`persist::load`), so the
//! file does not carry a second copy, and `optimize` writes 16 bytes.

pub(crate) mod checksum;
pub(crate) mod chunks;
pub(crate) mod seal;

use crate::error::{Error, Kind, Result};
use crate::index::{Index, Metric};

use super::key::{KeyPart, RowKey};

const MAGIC: &[u8; 8] = b"VEKTSNP1";
const MAGIC_V2: &[u8; 8] = b"VEKTSNP2";
const MAGIC_LEAN: &[u8; 8] = b"VEKTLEAN";
const LEAN_BYTES: usize = 24;

/// Whether a table's index is stored lean (nothing but its dimension): a `Flat` index, whose
/// vectors are the content table's.
pub(crate) fn stored_lean(factory: &str) -> bool {
    factory.trim().eq_ignore_ascii_case("flat")
}

/// The lean payload of a `Flat` table of dimension `dim` holding `rows` rows.
pub(crate) fn encode_lean(dim: usize, rows: usize) -> Vec<u8> {
    let mut out = MAGIC_LEAN.to_vec();
    out.extend_from_slice(&(dim as u64).to_le_bytes());
    out.extend_from_slice(&(rows as u64).to_le_bytes());
    out
}

/// `Some(rows when saved)` when the verified payload in `source` is a lean one; `Corrupt`
/// when it is lean but not of dimension `dim`.
pub(crate) fn is_lean(source: &mut dyn Source, dim: usize) -> Result<Option<usize>> {
    if source.len() != LEAN_BYTES {
        return Ok(None);
    }
    let mut bytes = [0u8; LEAN_BYTES];
    source.read_at(0, &mut bytes)?;
    if &bytes[..8] != MAGIC_LEAN {
        return Ok(None);
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
    if word(8) != dim as u64 {
        return Err(damaged("it is of another dimension than the table"));
    }
    Ok(Some(usize::try_from(word(16)).unwrap_or(0)))
}
const HEADER_BYTES: usize = 24;
/// The slot-table marker of a slot whose row was deleted or re-vectored.
pub(crate) const DEAD_SLOT: i64 = i64::MIN;

/// Random-access reads of a payload: the verified chunks in SQLite, or bytes in memory.
pub(crate) trait Source {
    fn len(&self) -> usize;
    /// Fill `dest` from byte `offset`.
    fn read_at(&mut self, offset: usize, dest: &mut [u8]) -> Result<()>;
}

/// A payload in memory (tests and fuzzing build them without a database).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

#[cfg(any(test, feature = "fuzzing"))]
impl Source for Bytes<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn read_at(&mut self, offset: usize, dest: &mut [u8]) -> Result<()> {
        let end = offset
            .checked_add(dest.len())
            .filter(|&e| e <= self.0.len());
        let Some(end) = end else {
            return Err(damaged("read past the end of the snapshot"));
        };
        dest.copy_from_slice(&self.0[offset..end]);
        Ok(())
    }
}

/// `std::io::Read` over `[pos, end)` of a source, for FAISS's reader.
struct Range<'a> {
    source: &'a mut dyn Source,
    pos: usize,
    end: usize,
}

impl std::io::Read for Range<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.end.saturating_sub(self.pos));
        self.source
            .read_at(self.pos, &mut buf[..n])
            .map_err(std::io::Error::other)?;
        self.pos += n;
        Ok(n)
    }
}

/// A version-1 payload from FAISS's serialization and the slot table.
pub(crate) fn encode(faiss: &[u8], slots: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + faiss.len() + slots.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(faiss.len() as u64).to_le_bytes());
    out.extend_from_slice(&(slots.len() as u64).to_le_bytes());
    out.extend_from_slice(faiss);
    for s in slots {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// One part of a version-2 payload, to write.
pub(crate) struct PartImage<'a> {
    pub(crate) value: Option<&'a KeyPart>,
    pub(crate) faiss: Vec<u8>,
    pub(crate) slots: &'a [i64],
    pub(crate) hashes: Option<&'a [u64]>,
}

/// A version-2 payload.
pub(crate) fn encode_v2(
    parts: &[PartImage],
    template: Option<&[u8]>,
    keys: &[(i64, &RowKey)],
) -> Vec<u8> {
    let mut out = Vec::new();
    let word = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as u64).to_le_bytes());
    out.extend_from_slice(MAGIC_V2);
    word(&mut out, parts.len());
    word(&mut out, template.is_some() as usize);
    word(&mut out, keys.len());
    if let Some(t) = template {
        word(&mut out, t.len());
        out.extend_from_slice(t);
    }
    for part in parts {
        let mut value = Vec::new();
        if let Some(v) = part.value {
            RowKey(vec![v.clone()]).encode(&mut value);
        }
        word(&mut out, value.len());
        out.extend_from_slice(&value);
        word(&mut out, part.faiss.len());
        out.extend_from_slice(&part.faiss);
        word(&mut out, part.slots.len());
        for s in part.slots {
            out.extend_from_slice(&s.to_le_bytes());
        }
        let hashes = part.hashes.unwrap_or(&[]);
        word(&mut out, hashes.len());
        for h in hashes {
            out.extend_from_slice(&h.to_le_bytes());
        }
    }
    for (handle, key) in keys {
        out.extend_from_slice(&handle.to_le_bytes());
        key.encode(&mut out);
    }
    out
}

/// One FAISS index of a payload and its slots.
pub(crate) struct DecodedPart {
    /// The partition value; `None` for an unpartitioned table.
    pub(crate) value: Option<KeyPart>,
    pub(crate) index: Index,
    pub(crate) slots: Vec<i64>,
    /// Per-slot vector hashes, when the payload has them.
    pub(crate) hashes: Option<Vec<u64>>,
    /// Length of FAISS's serialization.
    pub(crate) faiss_bytes: usize,
}

/// What a payload holds.
pub(crate) struct Decoded {
    pub(crate) parts: Vec<DecodedPart>,
    /// The trained, empty index new partitions start from (partitioned tables).
    pub(crate) template: Option<Index>,
    /// Handle → key (tables keyed by columns).
    pub(crate) keys: Vec<(i64, RowKey)>,
}

fn damaged(what: &str) -> Error {
    Error::of(Kind::Corrupt, format!("stored snapshot is damaged: {what}"))
}

/// A cursor over a source that refuses to read past its end.
struct Cursor<'a> {
    source: &'a mut dyn Source,
    pos: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.source.len() - self.pos
    }

    fn bytes(&mut self, n: usize) -> Result<Vec<u8>> {
        if n > self.remaining() {
            return Err(damaged("lengths do not add up"));
        }
        let mut out = vec![0u8; n];
        self.source.read_at(self.pos, &mut out)?;
        self.pos += n;
        Ok(out)
    }

    fn word(&mut self) -> Result<usize> {
        let b = self.bytes(8)?;
        usize::try_from(u64::from_le_bytes(b.try_into().expect("8")))
            .map_err(|_| damaged("lengths do not add up"))
    }

    /// `n` little-endian 8-byte words, after checking they fit.
    fn words(&mut self, n: usize) -> Result<Vec<[u8; 8]>> {
        let len = n
            .checked_mul(8)
            .ok_or_else(|| damaged("lengths do not add up"))?;
        let b = self.bytes(len)?;
        Ok(b.chunks_exact(8)
            .map(|c| c.try_into().expect("8"))
            .collect())
    }

    /// A FAISS index of `len` bytes at the cursor.
    fn index(&mut self, len: usize, dim: usize, metric: Metric) -> Result<Index> {
        if len > self.remaining() {
            return Err(damaged("lengths do not add up"));
        }
        let index = read_index(self.source, self.pos..self.pos + len, dim, metric)?;
        self.pos += len;
        Ok(index)
    }
}

/// The FAISS index serialized in `range` of `source`, checked against the table's dimension.
fn read_index(
    source: &mut dyn Source,
    range: std::ops::Range<usize>,
    dim: usize,
    metric: Metric,
) -> Result<Index> {
    let index = Index::from_reader(
        &mut Range {
            source,
            pos: range.start,
            end: range.end,
        },
        metric,
    )
    // Bytes that passed the checksum but that FAISS refuses (or reads as another dimension or
    // metric) are damage all the same; a failure to read them (BUSY, I/O) keeps its kind.
    .map_err(|e| match e.kind() {
        Kind::Faiss | Kind::Invalid => e.into_kind(Kind::Corrupt),
        _ => e,
    })?;
    if index.dim() != dim {
        return Err(damaged("the index has another dimension than the table"));
    }
    Ok(index)
}

/// Read a payload whose bytes were verified against their checksum. FAISS reads its parts
/// straight from `source`.
pub(crate) fn decode(source: &mut dyn Source, dim: usize, metric: Metric) -> Result<Decoded> {
    let len = source.len();
    let mut magic = [0u8; 8];
    if len < HEADER_BYTES {
        return Err(damaged("bad header"));
    }
    source.read_at(0, &mut magic)?;
    match &magic {
        m if m == MAGIC => decode_v1(source, dim, metric),
        m if m == MAGIC_V2 => decode_v2(source, dim, metric),
        _ => Err(damaged("bad header")),
    }
}

fn decode_v1(source: &mut dyn Source, dim: usize, metric: Metric) -> Result<Decoded> {
    let len = source.len();
    let mut header = [0u8; HEADER_BYTES];
    source.read_at(0, &mut header)?;
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8"));
    let (faiss_bytes, nslots) = (word(8) as usize, word(16) as usize);
    let slots_at = HEADER_BYTES
        .checked_add(faiss_bytes)
        .filter(|&end| Some(end) <= len.checked_sub(nslots.saturating_mul(8)))
        .filter(|&end| end + nslots * 8 == len);
    let Some(slots_at) = slots_at else {
        return Err(damaged("lengths do not add up"));
    };
    let index = read_index(source, HEADER_BYTES..slots_at, dim, metric)?;
    if index.ntotal() != nslots {
        return Err(damaged("index does not match its slot table"));
    }
    let mut slot_bytes = vec![0u8; nslots * 8];
    source.read_at(slots_at, &mut slot_bytes)?;
    let slots = slot_bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
        .collect();
    Ok(Decoded {
        parts: vec![DecodedPart {
            value: None,
            index,
            slots,
            hashes: None,
            faiss_bytes,
        }],
        template: None,
        keys: Vec::new(),
    })
}

fn decode_v2(source: &mut dyn Source, dim: usize, metric: Metric) -> Result<Decoded> {
    let mut c = Cursor { source, pos: 8 };
    let nparts = c.word()?;
    let has_template = c.word()?;
    let nkeys = c.word()?;
    // Every part takes at least 32 bytes and every key 9: counts beyond that are damage,
    // found before anything is allocated for them.
    if has_template > 1
        || nparts.saturating_mul(32) > c.remaining()
        || nkeys.saturating_mul(9) > c.remaining()
    {
        return Err(damaged("lengths do not add up"));
    }
    let template = match has_template {
        1 => {
            let n = c.word()?;
            let index = c.index(n, dim, metric)?;
            if index.ntotal() != 0 {
                return Err(damaged("the template index holds vectors"));
            }
            Some(index)
        }
        _ => None,
    };
    let mut parts = Vec::with_capacity(nparts);
    for _ in 0..nparts {
        let value_len = c.word()?;
        let value = match value_len {
            0 => None,
            n => {
                let bytes = c.bytes(n)?;
                match RowKey::decode(&bytes)? {
                    (RowKey(mut v), used) if used == n && v.len() == 1 => v.pop(),
                    _ => return Err(damaged("a partition value is malformed")),
                }
            }
        };
        let faiss_bytes = c.word()?;
        let index = c.index(faiss_bytes, dim, metric)?;
        let nslots = c.word()?;
        let slots: Vec<i64> = c
            .words(nslots)?
            .into_iter()
            .map(i64::from_le_bytes)
            .collect();
        if index.ntotal() != nslots {
            return Err(damaged("index does not match its slot table"));
        }
        let nhashes = c.word()?;
        if nhashes != 0 && nhashes != nslots {
            return Err(damaged("the vector hashes do not match the slot table"));
        }
        let hashes: Vec<u64> = c
            .words(nhashes)?
            .into_iter()
            .map(u64::from_le_bytes)
            .collect();
        parts.push(DecodedPart {
            value,
            index,
            slots,
            hashes: (nhashes > 0).then_some(hashes),
            faiss_bytes,
        });
    }
    let rest = c.remaining();
    let table = c.bytes(rest)?;
    let mut keys = Vec::with_capacity(nkeys);
    let mut at = 0usize;
    for _ in 0..nkeys {
        let handle = table
            .get(at..at + 8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8")))
            .ok_or_else(|| damaged("the key table is cut short"))?;
        let (key, used) = RowKey::decode(&table[at + 8..])?;
        if key.handle() != handle {
            return Err(damaged("a key does not match its handle"));
        }
        keys.push((handle, key));
        at += 8 + used;
    }
    if at != table.len() {
        return Err(damaged("lengths do not add up"));
    }
    Ok(Decoded {
        parts,
        template,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(rows: usize) -> Vec<u8> {
        let mut index = Index::new("Flat", 2, Metric::L2).unwrap();
        let data: Vec<f32> = (0..rows * 2).map(|i| i as f32).collect();
        index.add(&data).unwrap();
        index.to_bytes().unwrap()
    }

    #[test]
    fn v1_round_trips_and_refuses_damage() {
        let faiss = flat(3);
        let payload = encode(&faiss, &[10, DEAD_SLOT, 30]);
        let back = decode(&mut Bytes(&payload), 2, Metric::L2).unwrap();
        let part = &back.parts[0];
        assert_eq!(part.slots, vec![10, DEAD_SLOT, 30]);
        assert_eq!((part.index.ntotal(), part.faiss_bytes), (3, faiss.len()));
        for cut in [0, 10, 30, payload.len() - 1] {
            assert!(
                decode(&mut Bytes(&payload[..cut]), 2, Metric::L2).is_err(),
                "{cut}"
            );
        }
        // The slot table must match FAISS's vector count, the dimension the table's.
        let short = encode(&faiss, &[10, 30]);
        assert!(decode(&mut Bytes(&short), 2, Metric::L2).is_err());
        assert!(decode(&mut Bytes(&payload), 3, Metric::L2).is_err());
    }

    #[test]
    fn v2_round_trips_parts_keys_and_hashes_and_refuses_damage() {
        let key = RowKey(vec![KeyPart::Int(1), KeyPart::Text("L0".into())]);
        let (a, b) = (KeyPart::Int(1), KeyPart::Text("b".into()));
        let slots = [key.handle(), DEAD_SLOT];
        let hashes = [7u64, 8];
        let parts = [
            PartImage {
                value: Some(&a),
                faiss: flat(2),
                slots: &slots,
                hashes: Some(&hashes),
            },
            PartImage {
                value: Some(&b),
                faiss: flat(0),
                slots: &[],
                hashes: None,
            },
        ];
        let template = flat(0);
        let payload = encode_v2(&parts, Some(&template), &[(key.handle(), &key)]);
        let back = decode(&mut Bytes(&payload), 2, Metric::L2).unwrap();
        assert_eq!(back.parts.len(), 2);
        assert_eq!(back.parts[0].value.as_ref(), Some(&a));
        assert_eq!(back.parts[0].slots, slots.to_vec());
        assert_eq!(back.parts[0].hashes.as_deref(), Some(&hashes[..]));
        assert_eq!(
            (back.parts[1].value.clone(), back.parts[1].hashes.is_none()),
            (Some(b.clone()), true)
        );
        assert!(back.template.is_some());
        assert_eq!(back.keys, vec![(key.handle(), key.clone())]);
        for cut in [8, 20, 40, payload.len() / 2, payload.len() - 1] {
            assert!(
                decode(&mut Bytes(&payload[..cut]), 2, Metric::L2).is_err(),
                "{cut}"
            );
        }
        // A key that is not the one its handle names.
        let forged = encode_v2(&parts[1..], None, &[(42, &key)]);
        assert!(decode(&mut Bytes(&forged), 2, Metric::L2).is_err());
        // Counts larger than the bytes could hold are refused before any allocation.
        let mut huge = payload.clone();
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&mut Bytes(&huge), 2, Metric::L2).is_err());
    }
}
