//! The stored snapshot of a `faiss` table: its payload format (this file), its chunked storage
//! in `<name>_chunks` (`chunks`) and its checksum (`checksum`).
//!
//! Payload, little-endian:
//!
//! | bytes | what |
//! | --- | --- |
//! | 8 | magic `VEKTSNP1` |
//! | 8 | FAISS serialization length `F` |
//! | 8 | slot count `N` |
//! | `F` | FAISS's own serialization (`write_index`) |
//! | `8 × N` | slot table: the content rowid of each FAISS label, [`DEAD_SLOT`] for a dead one |
//!
//! Decoding checks the header's lengths against the payload's, then that FAISS's vector count
//! and dimension match the slot table and the table's metadata.

pub(crate) mod checksum;
pub(crate) mod chunks;

use crate::error::{bail, Kind, Result};
use crate::index::{Index, Metric};

const MAGIC: &[u8; 8] = b"VEKTSNP1";
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
            bail!(Corrupt: "read past the end of the snapshot");
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

/// A payload from FAISS's serialization and the slot table.
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

/// What a payload holds.
pub(crate) struct Decoded {
    pub(crate) index: Index,
    pub(crate) slots: Vec<i64>,
    /// Length of FAISS's serialization.
    pub(crate) faiss_bytes: usize,
}

/// Read a payload whose bytes were verified against their checksum. FAISS reads its part
/// straight from `source`.
pub(crate) fn decode(source: &mut dyn Source, dim: usize, metric: Metric) -> Result<Decoded> {
    let len = source.len();
    let mut header = [0u8; HEADER_BYTES];
    if len < HEADER_BYTES {
        bail!(Corrupt: "stored snapshot is damaged: bad header");
    }
    source.read_at(0, &mut header)?;
    if &header[..8] != MAGIC {
        bail!(Corrupt: "stored snapshot is damaged: bad header");
    }
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8"));
    let (faiss_bytes, nslots) = (word(8) as usize, word(16) as usize);
    let slots_at = HEADER_BYTES
        .checked_add(faiss_bytes)
        .filter(|&end| Some(end) <= len.checked_sub(nslots.saturating_mul(8)))
        .filter(|&end| end + nslots * 8 == len);
    let Some(slots_at) = slots_at else {
        bail!(Corrupt: "stored snapshot is damaged: lengths do not add up");
    };
    let index = Index::from_reader(
        &mut Range {
            source,
            pos: HEADER_BYTES,
            end: slots_at,
        },
        metric,
    )
    // Bytes that passed the checksum but that FAISS refuses (or reads as another dimension or
    // metric) are damage all the same; a failure to read them (BUSY, I/O) keeps its kind.
    .map_err(|e| match e.kind() {
        Kind::Faiss | Kind::Invalid => e.into_kind(Kind::Corrupt),
        _ => e,
    })?;
    if index.dim() != dim || index.ntotal() != nslots {
        bail!(Corrupt: "stored snapshot is damaged: index does not match its slot table");
    }
    let mut slot_bytes = vec![0u8; nslots * 8];
    source.read_at(slots_at, &mut slot_bytes)?;
    let slots = slot_bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
        .collect();
    Ok(Decoded {
        index,
        slots,
        faiss_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_refuses_damage() {
        let mut index = Index::new("Flat", 2, Metric::L2).unwrap();
        index.add(&[0.0, 0.0, 1.0, 1.0, 2.0, 2.0]).unwrap();
        let faiss = index.to_bytes().unwrap();
        let payload = encode(&faiss, &[10, DEAD_SLOT, 30]);
        let back = decode(&mut Bytes(&payload), 2, Metric::L2).unwrap();
        assert_eq!(back.slots, vec![10, DEAD_SLOT, 30]);
        assert_eq!((back.index.ntotal(), back.faiss_bytes), (3, faiss.len()));
        for cut in [0, 10, 30, payload.len() - 1] {
            let e = decode(&mut Bytes(&payload[..cut]), 2, Metric::L2)
                .err()
                .unwrap();
            assert!(
                e.message().contains("damaged") || e.message().contains("load"),
                "{cut}"
            );
        }
        // The slot table must match FAISS's vector count, the dimension the table's.
        let short = encode(&faiss, &[10, 30]);
        assert!(decode(&mut Bytes(&short), 2, Metric::L2).is_err());
        assert!(decode(&mut Bytes(&payload), 3, Metric::L2).is_err());
    }
}
