//! The hasher of the rowid → slot map: a keyed 64-bit mix, several times faster than SipHash on
//! the million inserts of a snapshot load.

/// Hashing for rowid keys: a keyed 64-bit mix, several times faster than SipHash on the
/// million inserts of a snapshot load. The key is random per process, so a crafted database
/// file cannot precompute rowids that collide.
#[derive(Clone)]
pub(crate) struct RowidHash(u64);

impl Default for RowidHash {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        static KEY: once_cell::sync::Lazy<u64> = once_cell::sync::Lazy::new(|| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x7665_6b74_6572);
            h.finish() | 1
        });
        RowidHash(*KEY)
    }
}

impl std::hash::BuildHasher for RowidHash {
    type Hasher = RowidHasher;
    fn build_hasher(&self) -> RowidHasher {
        RowidHasher(self.0)
    }
}

pub(crate) struct RowidHasher(u64);

impl std::hash::Hasher for RowidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }

    fn write_u64(&mut self, x: u64) {
        // splitmix64's finalizer over the keyed value: a bijection, so distinct rowids never
        // collide in full, and the key hides which rowids share buckets.
        let mut z = (x ^ self.0).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        self.0 = z ^ (z >> 31);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
