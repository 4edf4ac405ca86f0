//! The snapshot checksum: 64 bits over the stored bytes, computed piece by piece as chunks are
//! read. Fixed forever, because it is written to disk. It detects damage; it is not a defence
//! against a forger (SECURITY.md).

/// A 64-bit checksum of the stored bytes: four independent multiply-rotate lanes over 8-byte
/// words (several GB/s), fixed forever because it is written to disk. It detects damage, it is
/// not a defence against a forger.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    let mut sum = Checksum::new(bytes.len());
    sum.update(bytes);
    sum.finish()
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// [`checksum`] over data given piece by piece; `total` is the length of the whole.
pub(crate) struct Checksum {
    lanes: [u64; 4],
    total: usize,
    /// Bytes of an unfinished 32-byte block.
    pending: [u8; 32],
    npending: usize,
}

impl Checksum {
    pub(crate) fn new(total: usize) -> Checksum {
        Checksum {
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

    pub(crate) fn update(&mut self, mut data: &[u8]) {
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

    pub(crate) fn finish(self) -> u64 {
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
    use super::{checksum, Checksum};

    #[test]
    fn checksum_is_stable_and_sensitive() {
        assert_eq!(checksum(b""), checksum(b""));
        let base = vec![7u8; 1000];
        let sum = checksum(&base);
        for i in [0, 31, 32, 500, 999] {
            let mut damaged = base.clone();
            damaged[i] ^= 1;
            assert_ne!(checksum(&damaged), sum, "flip at {i}");
        }
        assert_ne!(checksum(&base[..999]), sum);
        // Fixed value: changing the function would orphan every stored snapshot.
        assert_eq!(checksum(b"vekter snapshot"), 0xe3d8_2f67_c0f2_3d71);
        // Piece by piece gives the same sum, wherever the pieces split.
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        for cuts in [[0, 0], [1, 31], [32, 64], [7, 500], [999, 1000]] {
            let mut sum = Checksum::new(data.len());
            sum.update(&data[..cuts[0]]);
            sum.update(&data[cuts[0]..cuts[1]]);
            sum.update(&data[cuts[1]..]);
            assert_eq!(sum.finish(), checksum(&data), "{cuts:?}");
        }
    }
}
