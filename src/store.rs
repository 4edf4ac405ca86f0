//! Where a `faiss` table keeps its state inside the database file (ARCHITECTURE.md, "Shadow
//! tables"): `<name>_config` (key/value metadata), `<name>_chunks` (the snapshot, chunked and
//! checksummed) and `<name>_changes` (the change log the sync triggers append to).

use std::collections::HashMap;

use crate::error::{bail, Error, Result};
use crate::sqlite::{quote_ident, Conn};

/// Version of the stored layout; a table written by another version is refused, not guessed.
pub const FORMAT_VERSION: i64 = 1;
/// Snapshot chunk size: far below SQLite's 1 GB blob limit, large enough to keep rows few.
pub const CHUNK_BYTES: usize = 4 << 20;

/// Shadow tables declared to SQLite (`xShadowName`): read-only to ordinary SQL under
/// `SQLITE_DBCONFIG_DEFENSIVE`. The change log is not one of them: the sync triggers, which
/// run as ordinary SQL, must be able to append to it.
pub const SHADOW_TABLES: &[&str] = &["config", "chunks"];

/// The shadow tables and triggers of one `faiss` table.
pub struct Store {
    conn: Conn,
    schema: String,
    name: String,
}

impl Store {
    pub fn new(conn: Conn, schema: &str, name: &str) -> Store {
        Store {
            conn,
            schema: schema.to_string(),
            name: name.to_string(),
        }
    }

    fn table(&self, suffix: &str) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(&format!("{}_{suffix}", self.name))
        )
    }

    fn trigger(&self, suffix: &str) -> String {
        format!("{}_vekter_{suffix}", self.name)
    }

    /// The change log's unqualified name, as trigger bodies must write it.
    fn changes_unqualified(&self) -> String {
        quote_ident(&format!("{}_changes", self.name))
    }

    pub fn create_tables(&self) -> Result<()> {
        self.conn.execute(&format!(
            "CREATE TABLE {} (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
            self.table("config")
        ))?;
        self.conn.execute(&format!(
            "CREATE TABLE {} (chunk INTEGER PRIMARY KEY, data BLOB NOT NULL)",
            self.table("chunks")
        ))?;
        self.conn.execute(&format!(
            "CREATE TABLE {} (seq INTEGER PRIMARY KEY AUTOINCREMENT, rid INTEGER NOT NULL)",
            self.table("changes")
        ))
    }

    /// Triggers that log the rowid of every inserted, deleted or re-vectored content row:
    /// O(1) work per written row, whichever connection or process writes.
    pub fn create_triggers(&self, content: &str, column: &str, pk: &str) -> Result<()> {
        let schema = quote_ident(&self.schema);
        let content = quote_ident(content);
        let log = self.changes_unqualified();
        self.conn.execute(&format!(
            "CREATE TRIGGER {schema}.{} AFTER INSERT ON {content} BEGIN \
             INSERT INTO {log}(rid) VALUES (new.rowid); END",
            quote_ident(&self.trigger("ai"))
        ))?;
        self.conn.execute(&format!(
            "CREATE TRIGGER {schema}.{} AFTER DELETE ON {content} BEGIN \
             INSERT INTO {log}(rid) VALUES (old.rowid); END",
            quote_ident(&self.trigger("ad"))
        ))?;
        self.conn.execute(&format!(
            "CREATE TRIGGER {schema}.{} AFTER UPDATE OF {}, {} ON {content} BEGIN \
             INSERT INTO {log}(rid) VALUES (old.rowid); \
             INSERT INTO {log}(rid) SELECT new.rowid WHERE new.rowid IS NOT old.rowid; END",
            quote_ident(&self.trigger("au")),
            quote_ident(column),
            quote_ident(pk)
        ))
    }

    pub fn drop_triggers(&self) -> Result<()> {
        for suffix in ["ai", "ad", "au"] {
            self.conn.execute(&format!(
                "DROP TRIGGER IF EXISTS {}.{}",
                quote_ident(&self.schema),
                quote_ident(&self.trigger(suffix))
            ))?;
        }
        Ok(())
    }

    /// The content table's current name, found through the insert trigger SQLite keeps
    /// attached to it (so renaming the content table does not lose it).
    pub fn content_table(&self) -> Result<Option<String>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT tbl_name FROM {}.sqlite_master WHERE type = 'trigger' AND name = ?1",
            quote_ident(&self.schema)
        ))?;
        stmt.bind_text(1, &self.trigger("ai"))?;
        Ok(if stmt.step()? { stmt.text(0) } else { None })
    }

    pub fn drop_all(&self) -> Result<()> {
        self.drop_triggers()?;
        for suffix in ["config", "chunks", "changes"] {
            self.conn
                .execute(&format!("DROP TABLE IF EXISTS {}", self.table(suffix)))?;
        }
        Ok(())
    }

    /// `ALTER TABLE … RENAME`: the shadow tables and triggers follow the new name.
    pub fn rename(&self, new_name: &str, content: &str, column: &str, pk: &str) -> Result<Store> {
        self.drop_triggers()?;
        for suffix in ["config", "chunks", "changes"] {
            self.conn.execute(&format!(
                "ALTER TABLE {} RENAME TO {}",
                self.table(suffix),
                quote_ident(&format!("{new_name}_{suffix}"))
            ))?;
        }
        let renamed = Store::new(self.conn, &self.schema, new_name);
        renamed.create_triggers(content, column, pk)?;
        Ok(renamed)
    }

    pub fn config(&self) -> Result<HashMap<String, String>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT key, value FROM {}", self.table("config")))?;
        let mut map = HashMap::new();
        while stmt.step()? {
            if let (Some(k), Some(v)) = (stmt.text(0), stmt.text(1)) {
                map.insert(k, v);
            }
        }
        Ok(map)
    }

    pub fn set_config(&self, pairs: &[(&str, String)]) -> Result<()> {
        let mut stmt = self.conn.prepare(&format!(
            "INSERT OR REPLACE INTO {} (key, value) VALUES (?1, ?2)",
            self.table("config")
        ))?;
        for (key, value) in pairs {
            stmt.bind_text(1, key)?;
            stmt.bind_text(2, value)?;
            while stmt.step()? {}
            stmt.reset();
        }
        Ok(())
    }

    /// The highest change-log sequence number this connection can see (0 when empty).
    pub fn max_seq(&self) -> Result<i64> {
        // An emptied log (after `optimize`) keeps counting in `sqlite_sequence`
        // (AUTOINCREMENT): its end is the larger of the two, so that `pending` stays exact.
        let mut stmt = self.conn.prepare(&format!(
            "SELECT max(coalesce((SELECT max(seq) FROM {}), 0), \
             coalesce((SELECT seq FROM {}.sqlite_sequence WHERE name = ?1), 0))",
            self.table("changes"),
            quote_ident(&self.schema)
        ))?;
        stmt.bind_text(1, &format!("{}_changes", self.name))?;
        stmt.step()?;
        Ok(match stmt.cell(0) {
            crate::sqlite::Cell::Integer(i) => i,
            _ => 0,
        })
    }

    /// The distinct rowids logged after `after` (up to `upto`), with their current vector
    /// cell read through `read` (NULL when the row is gone).
    pub fn changed_rows(
        &self,
        content: &str,
        column: &str,
        after: i64,
        upto: i64,
        mut read: impl FnMut(i64, crate::sqlite::Cell) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT c.rid, t.{} FROM (SELECT DISTINCT rid FROM {} WHERE seq > ?1 AND seq <= ?2) \
             AS c LEFT JOIN {}.{} AS t ON t.rowid = c.rid ORDER BY c.rid",
            quote_ident(column),
            self.table("changes"),
            quote_ident(&self.schema),
            quote_ident(content)
        ))?;
        stmt.bind_i64(1, after)?;
        stmt.bind_i64(2, upto)?;
        while stmt.step()? {
            let rid = match stmt.cell(0) {
                crate::sqlite::Cell::Integer(i) => i,
                _ => continue,
            };
            read(rid, stmt.cell(1))?;
        }
        Ok(())
    }

    /// Forget log entries up to `upto`: they are folded into the stored snapshot.
    pub fn truncate_changes(&self, upto: i64) -> Result<()> {
        let mut stmt = self.conn.prepare(&format!(
            "DELETE FROM {} WHERE seq <= ?1",
            self.table("changes")
        ))?;
        stmt.bind_i64(1, upto)?;
        while stmt.step()? {}
        Ok(())
    }

    /// Replace the stored snapshot with `payload`; returns the config entries describing it.
    pub fn write_snapshot(&self, payload: &[u8]) -> Result<Vec<(&'static str, String)>> {
        self.conn
            .execute(&format!("DELETE FROM {}", self.table("chunks")))?;
        let mut stmt = self.conn.prepare(&format!(
            "INSERT INTO {} (chunk, data) VALUES (?1, ?2)",
            self.table("chunks")
        ))?;
        let mut chunks = 0i64;
        for piece in payload.chunks(CHUNK_BYTES) {
            stmt.bind_i64(1, chunks)?;
            stmt.bind_blob(2, piece)?;
            while stmt.step()? {}
            stmt.reset();
            chunks += 1;
        }
        Ok(vec![
            ("snapshot_bytes", payload.len().to_string()),
            ("snapshot_chunks", chunks.to_string()),
            ("snapshot_checksum", format!("{:016x}", checksum(payload))),
        ])
    }

    /// The stored snapshot, verified against the length, chunk count and checksum recorded in
    /// `config`, as one buffer. Bytes that do not match are never returned. (Loading streams
    /// through [`open_snapshot`](Self::open_snapshot) instead; the fuzz harness reads whole
    /// snapshots through this, which exercises the same verification and reads.)
    pub fn read_snapshot(&self, config: &HashMap<String, String>) -> Result<Vec<u8>> {
        let mut snapshot = self.open_snapshot(config)?;
        let mut payload = vec![0u8; snapshot.len()];
        snapshot.read_at(0, &mut payload)?;
        Ok(payload)
    }

    /// The stored snapshot, verified against the length, chunk count and checksum recorded in
    /// `config`, for reading piece by piece: loading a 500 MB index then needs no 500 MB
    /// buffer beside the one FAISS fills. The checksum is verified over every chunk first;
    /// reads afterwards run in the caller's read transaction, so they see the verified bytes.
    pub fn open_snapshot(&self, config: &HashMap<String, String>) -> Result<Snapshot> {
        let want_bytes: usize = config_num(config, "snapshot_bytes")?;
        let want_chunks: i64 = config_num(config, "snapshot_chunks")?;
        let want_sum = config
            .get("snapshot_checksum")
            .ok_or_else(|| Error::new("config has no snapshot_checksum"))?;
        if want_bytes.div_ceil(CHUNK_BYTES) as i64 != want_chunks {
            bail!("snapshot of {want_bytes} bytes cannot span {want_chunks} chunks");
        }
        // Types and lengths first (SQLite answers `length()` of a BLOB without reading it):
        // every chunk but the last holds exactly CHUNK_BYTES, as `write_snapshot` wrote them.
        let mut stmt = self.conn.prepare(&format!(
            "SELECT chunk, typeof(data), length(data) FROM {} ORDER BY chunk",
            self.table("chunks")
        ))?;
        let (mut expect, mut total) = (0i64, 0usize);
        while stmt.step()? {
            let chunk = match stmt.cell(0) {
                crate::sqlite::Cell::Integer(i) => i,
                _ => -1,
            };
            if chunk != expect {
                bail!("snapshot chunk {expect} is missing");
            }
            let kind = stmt.text(1).unwrap_or_default();
            if kind != "blob" {
                bail!(
                    "snapshot chunk {chunk} is {}, not a BLOB",
                    kind.to_uppercase()
                );
            }
            let len = match stmt.cell(2) {
                crate::sqlite::Cell::Integer(n) => usize::try_from(n).unwrap_or(usize::MAX),
                _ => usize::MAX,
            };
            total = total.saturating_add(len);
            if total > want_bytes {
                bail!("snapshot is longer than the {want_bytes} bytes recorded");
            }
            if len != CHUNK_BYTES && total != want_bytes {
                bail!("snapshot chunk {chunk} holds {len} bytes, not {CHUNK_BYTES}");
            }
            expect += 1;
        }
        drop(stmt);
        if expect != want_chunks || total != want_bytes {
            bail!(
                "snapshot has {expect} chunks and {total} bytes, {want_chunks} chunks and \
                 {want_bytes} bytes were written"
            );
        }
        let mut snapshot = Snapshot {
            conn: self.conn,
            schema: self.schema.clone(),
            table: format!("{}_chunks", self.name),
            len: want_bytes,
            blob: None,
        };
        let mut sum = Checksum::new(want_bytes);
        let mut buf = vec![0u8; CHUNK_BYTES.min(want_bytes)];
        for (i, at) in (0..want_bytes).step_by(CHUNK_BYTES).enumerate() {
            let piece = &mut buf[..CHUNK_BYTES.min(want_bytes - at)];
            snapshot.read_chunk(i as i64, 0, piece)?;
            sum.update(piece);
        }
        let sum = format!("{:016x}", sum.finish());
        if &sum != want_sum {
            bail!("snapshot checksum {sum} does not match the recorded {want_sum}");
        }
        Ok(snapshot)
    }
}

/// A verified stored snapshot (see [`Store::open_snapshot`]).
pub struct Snapshot {
    conn: Conn,
    schema: String,
    table: String,
    len: usize,
    blob: Option<(i64, crate::sqlite::Blob)>,
}

impl Snapshot {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fill `dest` from byte `offset` of the snapshot.
    pub fn read_at(&mut self, offset: usize, dest: &mut [u8]) -> Result<()> {
        if offset
            .checked_add(dest.len())
            .is_none_or(|end| end > self.len)
        {
            bail!("read past the end of the snapshot");
        }
        let (mut at, mut done) = (offset, 0);
        while done < dest.len() {
            let (chunk, within) = (at / CHUNK_BYTES, at % CHUNK_BYTES);
            let n = (CHUNK_BYTES - within).min(dest.len() - done);
            self.read_chunk(chunk as i64, within, &mut dest[done..done + n])?;
            at += n;
            done += n;
        }
        Ok(())
    }

    fn read_chunk(&mut self, chunk: i64, within: usize, dest: &mut [u8]) -> Result<()> {
        match &mut self.blob {
            Some((current, _)) if *current == chunk => {}
            Some((current, blob)) => {
                blob.reopen(chunk)?;
                *current = chunk;
            }
            None => {
                let blob = self
                    .conn
                    .open_blob(&self.schema, &self.table, "data", chunk)?;
                self.blob = Some((chunk, blob));
            }
        }
        let (_, blob) = self.blob.as_ref().expect("opened above");
        blob.read(dest, within)
    }
}

/// `std::io::Read` over `[start, end)` of a snapshot, for FAISS's reader.
pub struct SnapshotRange<'a> {
    pub snapshot: &'a mut Snapshot,
    pub pos: usize,
    pub end: usize,
}

impl std::io::Read for SnapshotRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.end.saturating_sub(self.pos));
        self.snapshot
            .read_at(self.pos, &mut buf[..n])
            .map_err(|e| std::io::Error::other(e.message().to_string()))?;
        self.pos += n;
        Ok(n)
    }
}

pub fn config_num<T: std::str::FromStr>(config: &HashMap<String, String>, key: &str) -> Result<T> {
    config
        .get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::new(format!("config has no valid '{key}'")))
}

/// A 64-bit checksum of the stored bytes: four independent multiply-rotate lanes over 8-byte
/// words (several GB/s), fixed forever because it is written to disk. It detects damage, it is
/// not a defence against a forger.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut sum = Checksum::new(bytes.len());
    sum.update(bytes);
    sum.finish()
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// [`checksum`] over data given piece by piece; `total` is the length of the whole.
pub struct Checksum {
    lanes: [u64; 4],
    total: usize,
    /// Bytes of an unfinished 32-byte block.
    pending: [u8; 32],
    npending: usize,
}

impl Checksum {
    pub fn new(total: usize) -> Checksum {
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

    pub fn update(&mut self, mut data: &[u8]) {
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

    pub fn finish(self) -> u64 {
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
