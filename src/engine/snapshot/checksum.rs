//! The snapshot checksum: XXH3-64 (the published xxHash algorithm, `xxhash-rust`) over the
//! stored bytes, computed piece by piece as chunks are read, and recorded in config as
//! `xxh3:` and 16 hex digits. It detects damage; it is not a defence against a forger (that is
//! the seal's work, SECURITY.md).
//!
//! Snapshots written before 2026-12-02 evening recorded 16 bare hex digits of vekter's own
//! 64-bit hash ([`Legacy`]); they are still checked with it, and the next save writes XXH3.

use xxhash_rust::xxh3::Xxh3;

const XXH3: &str = "xxh3:";

/// The checksum of `bytes`, as config records it.
pub(crate) fn checksum(bytes: &[u8]) -> String {
    format!("{XXH3}{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// [`checksum`] over data given piece by piece, in the algorithm a recorded checksum names.
pub(crate) enum Checksum {
    Xxh3(Box<Xxh3>),
    Legacy(Legacy),
}

impl Checksum {
    /// The checksum to compare with `recorded`, over `total` bytes.
    pub(crate) fn for_record(recorded: &str, total: usize) -> Checksum {
        match recorded.starts_with(XXH3) {
            true => Checksum::Xxh3(Box::new(Xxh3::new())),
            false => Checksum::Legacy(Legacy::new(total)),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Checksum::Xxh3(h) => h.update(data),
            Checksum::Legacy(h) => h.update(data),
        }
    }

    /// The sum, formatted as config records it.
    pub(crate) fn finish(self) -> String {
        match self {
            Checksum::Xxh3(h) => format!("{XXH3}{:016x}", h.digest()),
            Checksum::Legacy(h) => format!("{:016x}", h.finish()),
        }
    }
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// vekter's own 64-bit hash of `bytes`: what key handles and `rowid-unstable` vector hashes
/// are, inside stored snapshots, so it cannot change without a new payload version.
pub(crate) fn hash64(bytes: &[u8]) -> u64 {
    let mut h = Legacy::new(bytes.len());
    h.update(bytes);
    h.finish()
}

/// vekter's own 64-bit checksum of snapshots written before XXH3 (four multiply-rotate lanes
/// over 8-byte words), kept only to check them; `total` is the length of the whole.
pub(crate) struct Legacy {
    lanes: [u64; 4],
    total: usize,
    /// Bytes of an unfinished 32-byte block.
    pending: [u8; 32],
    npending: usize,
}

impl Legacy {
    fn new(total: usize) -> Legacy {
        Legacy {
            lanes: [P1, P2, P1 ^ P2, !P1],
            total,
            pending: [0; 32],
            npending: 0,
        }
    }

    fn block(&mut self, block: &[u8]) {
        for (lane, w) in self.lanes.iter_mut().zip(block.chunks_exact(8)) {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            *lane = (*lane ^ w.wrapping_mul(P2))
                .rotate_left(31)
                .wrapping_mul(P1);
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        if self.npending > 0 {
            let take = (32 - self.npending).min(data.len());
            self.pending[self.npending..self.npending + take].copy_from_slice(&data[..take]);
            self.npending += take;
            data = &data[take..];
            if self.npending < 32 {
                return;
            }
            let block = self.pending;
            self.block(&block);
            self.npending = 0;
        }
        let mut blocks = data.chunks_exact(32);
        for block in &mut blocks {
            self.block(block);
        }
        let rest = blocks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.npending = rest.len();
    }

    fn finish(self) -> u64 {
        let mut h = self.lanes.iter().fold(self.total as u64, |h, l| {
            (h ^ l).wrapping_mul(P1).rotate_left(27)
        });
        for &b in &self.pending[..self.npending] {
            h = (h ^ b as u64).wrapping_mul(P2).rotate_left(11);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h
    }
}

#[cfg(test)]
mod tests {
    use super::{checksum, Checksum, Legacy};

    fn pieces(recorded: &str, data: &[u8], cuts: [usize; 2]) -> String {
        let mut sum = Checksum::for_record(recorded, data.len());
        sum.update(&data[..cuts[0]]);
        sum.update(&data[cuts[0]..cuts[1]]);
        sum.update(&data[cuts[1]..]);
        sum.finish()
    }

    #[test]
    fn checksum_is_xxh3_and_sensitive() {
        // XXH3-64's published value for the empty input: the algorithm, not ours.
        assert_eq!(checksum(b""), "xxh3:2d06800538d394c2");
        let base = vec![7u8; 1000];
        let sum = checksum(&base);
        for i in [0, 31, 32, 500, 999] {
            let mut damaged = base.clone();
            damaged[i] ^= 1;
            assert_ne!(checksum(&damaged), sum, "flip at {i}");
        }
        assert_ne!(checksum(&base[..999]), sum);
        // Piece by piece gives the same sum, wherever the pieces split.
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        for cuts in [[0, 0], [1, 31], [32, 64], [7, 500], [999, 1000]] {
            assert_eq!(pieces(&sum, &data, cuts), checksum(&data), "{cuts:?}");
        }
    }

    #[test]
    fn legacy_checksums_still_check() {
        // Fixed value: the sum earlier vekters recorded.
        let mut one = Legacy::new(15);
        one.update(b"vekter snapshot");
        assert_eq!(one.finish(), 0xe3d8_2f67_c0f2_3d71);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = pieces("0123456789abcdef", &data, [0, 0]);
        assert_eq!(whole.len(), 16);
        for cuts in [[1, 31], [32, 64], [7, 500], [999, 1000]] {
            assert_eq!(pieces("0123456789abcdef", &data, cuts), whole, "{cuts:?}");
        }
    }
}
