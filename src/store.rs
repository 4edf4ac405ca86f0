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
    /// `config`. Bytes that do not match are never handed to FAISS.
    pub fn read_snapshot(&self, config: &HashMap<String, String>) -> Result<Vec<u8>> {
        let want_bytes: usize = config_num(config, "snapshot_bytes")?;
        let want_chunks: i64 = config_num(config, "snapshot_chunks")?;
        let want_sum = config
            .get("snapshot_checksum")
            .ok_or_else(|| Error::new("config has no snapshot_checksum"))?;
        // What config claims is not trusted for allocation: the buffer grows with the chunks
        // actually stored (and stops at the recorded length).
        if want_bytes.div_ceil(CHUNK_BYTES) as i64 != want_chunks {
            bail!("snapshot of {want_bytes} bytes cannot span {want_chunks} chunks");
        }
        // Lengths first (SQLite answers `length()` of a BLOB without reading it): the buffer is
        // only allocated once the chunks actually stored add up to the recorded length, then
        // each chunk is read straight into its place.
        let mut stmt = self.conn.prepare(&format!(
            "SELECT chunk, typeof(data), length(data) FROM {} ORDER BY chunk",
            self.table("chunks")
        ))?;
        let (mut expect, mut total, mut chunks) = (0i64, 0usize, Vec::new());
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
            chunks.push((chunk, len));
            expect += 1;
        }
        drop(stmt);
        if expect != want_chunks || total != want_bytes {
            bail!(
                "snapshot has {expect} chunks and {total} bytes, {want_chunks} chunks and \
                 {want_bytes} bytes were written"
            );
        }
        let mut payload = vec![0u8; want_bytes];
        advise_huge_pages(&mut payload);
        let mut offset = 0;
        let table = format!("{}_chunks", self.name);
        for (chunk, len) in chunks {
            self.conn.read_blob(
                &self.schema,
                &table,
                "data",
                chunk,
                &mut payload[offset..offset + len],
            )?;
            offset += len;
        }
        let sum = format!("{:016x}", checksum(&payload));
        if &sum != want_sum {
            bail!("snapshot checksum {sum} does not match the recorded {want_sum}");
        }
        Ok(payload)
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
/// Ask Linux to back a large, not yet touched buffer with transparent huge pages: filling a
/// 100 MB snapshot otherwise takes one page fault per 4 KiB, a third of a reopen's time. A hint
/// only (ignored where THP is off or the call fails).
fn advise_huge_pages(buf: &mut [u8]) {
    const PAGE: usize = 4096;
    const HUGE: usize = 2 << 20;
    #[cfg(target_os = "linux")]
    {
        extern "C" {
            fn madvise(
                addr: *mut std::os::raw::c_void,
                len: usize,
                advice: std::os::raw::c_int,
            ) -> std::os::raw::c_int;
        }
        const MADV_HUGEPAGE: std::os::raw::c_int = 14;
        if buf.len() < 2 * HUGE {
            return;
        }
        let start = buf.as_mut_ptr() as usize;
        let aligned = start.next_multiple_of(PAGE);
        let end = (start + buf.len()) / PAGE * PAGE;
        // SAFETY: the range lies inside `buf`, which this function borrows exclusively;
        // MADV_HUGEPAGE changes how pages are backed, never their contents.
        unsafe {
            madvise(aligned as *mut _, end - aligned, MADV_HUGEPAGE);
        }
    }
}

pub fn checksum(bytes: &[u8]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    let mut lanes = [P1, P2, P1 ^ P2, !P1];
    let mut words = bytes.chunks_exact(32);
    for block in &mut words {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            *lane = (*lane ^ w.wrapping_mul(P2))
                .rotate_left(31)
                .wrapping_mul(P1);
        }
    }
    let mut h = lanes.iter().fold(bytes.len() as u64, |h, l| {
        (h ^ l).wrapping_mul(P1).rotate_left(27)
    });
    for &b in words.remainder() {
        h = (h ^ b as u64).wrapping_mul(P2).rotate_left(11);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h
}

#[cfg(test)]
mod tests {
    use super::checksum;

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
    }
}
