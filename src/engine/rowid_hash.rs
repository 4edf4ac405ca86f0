//! The hasher of the rowid → slot maps: foldhash (hashbrown's own default hasher), several
//! times faster than SipHash on the million inserts of a snapshot load. Its seed is random per
//! process, so a crafted database file cannot precompute rowids that collide.

pub(crate) type RowidHash = foldhash::fast::RandomState;
