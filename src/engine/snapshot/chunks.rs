//! `<name>_chunks`: the snapshot payload stored in 4 MiB chunks (no value near SQLite's 1 GB
//! limit), and the verified reader that loading goes through. Nothing is handed out before the
//! chunk sequence, every length and the checksum agree with what `config` recorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use crate::error::{bail, Error, Kind, Result};
use crate::sqlite::{Blob, Cell, Conn};

use super::super::config::SnapshotRecord;
use super::super::shadow::{Shadow, ShadowTable};
use super::checksum::{checksum, Checksum};
use super::seal;
use super::Source;

/// Snapshot chunk size: far below SQLite's 1 GB blob limit, large enough to keep rows few.
pub(crate) const CHUNK_BYTES: usize = 4 << 20;

/// The unit in which a save compares a new chunk with the stored one: only the blocks that
/// differ are written, so the pages SQLite writes (and a page-level replica ships) are those
/// where the payload changed.
const COMPARE_BLOCK: usize = 4096;

/// Replace the stored snapshot with `payload`; returns what `config` must record about it.
///
/// A stored chunk of the same length is overwritten in place, block by block, only where it
/// differs (incremental BLOB I/O writes just the pages it touches); other chunks are replaced
/// whole, and chunks past the new end deleted. `LAST_SAVE` counts the bytes written.
pub(crate) fn write(shadow: &Shadow, payload: &[u8]) -> Result<SnapshotRecord> {
    let table = shadow.table(ShadowTable::Chunks);
    let conn = shadow.conn();
    let mut stored = std::collections::HashMap::new();
    let mut lengths = conn.prepare(&format!(
        "SELECT chunk, length(data) FROM {table} WHERE typeof(data) = 'blob'"
    ))?;
    while lengths.step()? {
        if let (Cell::Integer(chunk), Cell::Integer(len)) = (lengths.cell(0), lengths.cell(1)) {
            stored.insert(chunk, len);
        }
    }
    drop(lengths);
    let mut replace = conn.prepare(&format!(
        "INSERT OR REPLACE INTO {table} (chunk, data) VALUES (?1, ?2)"
    ))?;
    let mut chunks = 0i64;
    let mut written = 0usize;
    let mut blob: Option<Blob> = None;
    let mut old = vec![0u8; COMPARE_BLOCK];
    for piece in payload.chunks(CHUNK_BYTES) {
        if stored.get(&chunks) == Some(&(piece.len() as i64)) {
            match &mut blob {
                Some(b) => b.reopen(chunks)?,
                None => {
                    let name = shadow.table_name(ShadowTable::Chunks);
                    blob = Some(conn.open_blob(shadow.schema(), &name, "data", chunks, true)?)
                }
            }
            let b = blob.as_ref().expect("opened above");
            for (n, new) in piece.chunks(COMPARE_BLOCK).enumerate() {
                let at = n * COMPARE_BLOCK;
                let old = &mut old[..new.len()];
                b.read(old, at)?;
                if old != new {
                    b.write(new, at)?;
                    written += new.len();
                }
            }
        } else {
            // A handle on this table must not be open across a replace (SQLite expires it).
            blob = None;
            replace.bind_i64(1, chunks)?;
            replace.bind_blob(2, piece)?;
            while replace.step()? {}
            replace.reset();
            written += piece.len();
        }
        chunks += 1;
    }
    drop(blob);
    let mut trim = conn.prepare(&format!(
        "DELETE FROM {table} WHERE chunk >= ?1 OR chunk < 0"
    ))?;
    trim.bind_i64(1, chunks)?;
    while trim.step()? {}
    LAST_SAVE.record(payload.len(), written);
    let key = seal::key().map_err(|why| {
        Error::invalid(format!(
            "cannot seal the index's snapshot: {why}. Set VEKTER_KEY (64 hex digits) or \
             VEKTER_KEY_FILE (a file of them, mode 600), see SECURITY.md"
        ))
    })?;
    Ok(SnapshotRecord {
        bytes: payload.len(),
        chunks,
        checksum: checksum(payload),
        seal: key.seal(payload),
        key_id: key.id.clone(),
    })
}

/// The stored snapshot, verified against `record`, for reading piece by piece: loading a
/// 500 MB index then needs no 500 MB buffer beside the one FAISS fills. Reads afterwards run in
/// the caller's read transaction, so they see the verified bytes.
///
/// Verified means: the chunks are the ones written (sequence, lengths, checksum), and the seal
/// is this process's key's MAC of them (`seal`), so a holder of the key wrote them. Anything
/// else is refused as `Corrupt` before a byte is handed out.
pub(crate) fn open(shadow: &Shadow, record: &SnapshotRecord) -> Result<StoredSnapshot> {
    let SnapshotRecord {
        bytes: want_bytes,
        chunks: want_chunks,
        checksum: want_sum,
        seal: want_seal,
        key_id,
    } = record;
    let (want_bytes, want_chunks) = (*want_bytes, *want_chunks);
    if want_bytes.div_ceil(CHUNK_BYTES) as i64 != want_chunks {
        bail!(Corrupt: "snapshot of {want_bytes} bytes cannot span {want_chunks} chunks");
    }
    check_lengths(shadow, want_bytes, want_chunks).map_err(Error::damaged_if_schema)?;
    let mut snapshot = StoredSnapshot {
        conn: shadow.conn(),
        schema: shadow.schema().to_string(),
        table: shadow.table_name(ShadowTable::Chunks),
        len: want_bytes,
        blob: None,
    };
    let key = match seal::key() {
        Ok(key) => key,
        Err(why) => bail!(Corrupt:
            "this process has no snapshot key ({why}), so no stored snapshot is loaded"
        ),
    };
    if want_seal.is_empty() {
        bail!(Corrupt:
            "the stored snapshot has no seal (it was written by an earlier vekter, or by \
             another program), so it is not loaded"
        );
    }
    if key_id != &key.id {
        bail!(Corrupt:
            "the stored snapshot was sealed with key {}, and this process holds {}: it was \
             built by another machine or user, so it is not loaded (to vouch for that \
             machine's files, use its key: VEKTER_KEY_FILE or VEKTER_KEY, see SECURITY.md)",
            short(key_id),
            key.describe()
        );
    }
    let started = Instant::now();
    let (sum, mac, sealing) = read_and_sum(&mut snapshot, want_sum, key)?;
    let sum = sum.finish();
    if &sum != want_sum {
        bail!(Corrupt: "snapshot checksum {sum} does not match the recorded {want_sum}");
    }
    if !seal::matches(&mac.finish(), want_seal) {
        bail!(Corrupt:
            "the stored snapshot's seal does not verify with {}: its bytes were changed after \
             it was sealed, so it is not loaded",
            key.describe()
        );
    }
    LAST_VERIFY.record(want_bytes, started.elapsed(), sealing);
    Ok(snapshot)
}

/// Read every chunk of `snapshot` once, summing and sealing it: the reads (on this thread, the
/// connection's) overlap with the hashing (on a helper thread), two 4 MiB buffers taking
/// turns, so checking a large snapshot costs about what reading it costs. Returns the checksum,
/// the seal and the time spent sealing.
fn read_and_sum(
    snapshot: &mut StoredSnapshot,
    recorded_sum: &str,
    key: &seal::SealKey,
) -> Result<(Checksum, seal::Sealer, Duration)> {
    let len = snapshot.len;
    let mut sum = Checksum::for_record(recorded_sum, len);
    let mut mac = key.sealer(len);
    let mut sealing = Duration::ZERO;
    let (to_hash, hash_rx) = sync_channel::<Vec<u8>>(1);
    let (to_read, read_rx) = sync_channel::<Vec<u8>>(2);
    for _ in 0..2 {
        let _ = to_read.send(vec![0u8; CHUNK_BYTES.min(len)]);
    }
    let hashed = std::thread::scope(|scope| {
        let (sum, mac, sealing) = (&mut sum, &mut mac, &mut sealing);
        let reader = &mut *snapshot;
        // Owns its ends of both channels: if it stops (or panics), the reader's next recv ends.
        let hasher = std::thread::Builder::new().spawn_scoped(scope, move || {
            for piece in hash_rx {
                absorb(sum, mac, sealing, &piece);
                // The reader may have stopped (an error): then nobody needs the buffer.
                let _ = to_read.send(piece);
            }
        });
        // No thread to be had (a process at its limit): hash on this one, below.
        let Ok(hasher) = hasher else {
            return Ok(false);
        };
        // Owns the sending end, so it closes even if reading panics: the helper then ends.
        let read = (move || {
            for (i, at) in (0..len).step_by(CHUNK_BYTES).enumerate() {
                let Ok(mut buf) = read_rx.recv() else {
                    bail!(Internal: "the snapshot checker stopped");
                };
                buf.resize(CHUNK_BYTES.min(len - at), 0);
                reader.read_chunk(i as i64, 0, &mut buf)?;
                if to_hash.send(buf).is_err() {
                    bail!(Internal: "the snapshot checker stopped");
                }
            }
            Ok(())
        })();
        let joined = hasher.join();
        read.and_then(|()| {
            joined
                .map(|()| true)
                .map_err(|_| Error::of(Kind::Internal, "the snapshot checker panicked"))
        })
    })?;
    if !hashed {
        let mut buf = vec![0u8; CHUNK_BYTES.min(len)];
        for (i, at) in (0..len).step_by(CHUNK_BYTES).enumerate() {
            let piece = &mut buf[..CHUNK_BYTES.min(len - at)];
            snapshot.read_chunk(i as i64, 0, piece)?;
            absorb(&mut sum, &mut mac, &mut sealing, piece);
        }
    }
    Ok((sum, mac, sealing))
}

/// Run `piece` through the checksum and the seal, timing the seal.
fn absorb(sum: &mut Checksum, mac: &mut seal::Sealer, sealing: &mut Duration, piece: &[u8]) {
    sum.update(piece);
    let t = Instant::now();
    mac.update(piece);
    *sealing += t.elapsed();
}

/// The last snapshot this process saved: its size and the bytes actually written
/// (`vekter_debug()`: what a page-level replica receives of it).
pub(crate) static LAST_SAVE: LastSave = LastSave {
    bytes: AtomicU64::new(0),
    written: AtomicU64::new(0),
};

pub(crate) struct LastSave {
    bytes: AtomicU64,
    written: AtomicU64,
}

impl LastSave {
    fn record(&self, bytes: usize, written: usize) {
        self.bytes.store(bytes as u64, Ordering::Relaxed);
        self.written.store(written as u64, Ordering::Relaxed);
    }

    /// (payload bytes, bytes written) of the last save.
    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed),
        )
    }
}

/// The last snapshot this process verified: its size, how long reading and checking it took,
/// and how much of that was the seal (`vekter_debug()`, and the load figures of `make bench`).
pub(crate) static LAST_VERIFY: LastVerify = LastVerify {
    bytes: AtomicU64::new(0),
    micros: AtomicU64::new(0),
    seal_micros: AtomicU64::new(0),
};

pub(crate) struct LastVerify {
    bytes: AtomicU64,
    micros: AtomicU64,
    seal_micros: AtomicU64,
}

impl LastVerify {
    fn record(&self, bytes: usize, took: Duration, sealing: Duration) {
        self.bytes.store(bytes as u64, Ordering::Relaxed);
        self.micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
        self.seal_micros
            .store(sealing.as_micros() as u64, Ordering::Relaxed);
    }

    /// (bytes, microseconds in all, microseconds of them on the seal) of the last verification.
    pub(crate) fn get(&self) -> (u64, u64, u64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.micros.load(Ordering::Relaxed),
            self.seal_micros.load(Ordering::Relaxed),
        )
    }
}

/// A key id as a message shows it: at most its first 16 characters.
fn short(id: &str) -> String {
    id.chars().take(16).collect()
}

/// The chunks' numbers, types and `length()`s (SQLite answers `length()` of a BLOB without
/// reading it): every chunk but the last holds exactly `CHUNK_BYTES`, as [`write`] wrote them.
fn check_lengths(shadow: &Shadow, want_bytes: usize, want_chunks: i64) -> Result<()> {
    let mut stmt = shadow.conn().prepare(&format!(
        "SELECT chunk, typeof(data), length(data) FROM {} ORDER BY chunk",
        shadow.table(ShadowTable::Chunks)
    ))?;
    let (mut expect, mut total) = (0i64, 0usize);
    while stmt.step()? {
        let chunk = match stmt.cell(0) {
            Cell::Integer(i) => i,
            _ => -1,
        };
        if chunk != expect {
            bail!(Corrupt: "snapshot chunk {expect} is missing");
        }
        let kind = stmt.text(1).unwrap_or_default();
        if kind != "blob" {
            bail!(Corrupt:
                "snapshot chunk {chunk} is {}, not a BLOB",
                kind.to_uppercase()
            );
        }
        let len = match stmt.cell(2) {
            Cell::Integer(n) => usize::try_from(n).unwrap_or(usize::MAX),
            _ => usize::MAX,
        };
        total = total.saturating_add(len);
        if total > want_bytes {
            bail!(Corrupt: "snapshot is longer than the {want_bytes} bytes recorded");
        }
        if len != CHUNK_BYTES && total != want_bytes {
            bail!(Corrupt: "snapshot chunk {chunk} holds {len} bytes, not {CHUNK_BYTES}");
        }
        expect += 1;
    }
    if expect != want_chunks || total != want_bytes {
        bail!(Corrupt:
            "snapshot has {expect} chunks and {total} bytes, {want_chunks} chunks and \
             {want_bytes} bytes were written"
        );
    }
    Ok(())
}

/// A verified stored snapshot (see [`open`]), read through incremental BLOB I/O.
pub(crate) struct StoredSnapshot {
    conn: Conn,
    schema: String,
    table: String,
    len: usize,
    /// The chunk whose BLOB is open.
    blob: Option<(i64, Blob)>,
}

impl StoredSnapshot {
    fn read_chunk(&mut self, chunk: i64, within: usize, dest: &mut [u8]) -> Result<()> {
        match &mut self.blob {
            Some((current, _)) if *current == chunk => {}
            Some((current, blob)) => {
                blob.reopen(chunk).map_err(Error::damaged_if_schema)?;
                *current = chunk;
            }
            None => {
                let blob = self
                    .conn
                    .open_blob(&self.schema, &self.table, "data", chunk, false)
                    .map_err(Error::damaged_if_schema)?;
                self.blob = Some((chunk, blob));
            }
        }
        let (_, blob) = self.blob.as_ref().expect("opened above");
        blob.read(dest, within)
    }
}

impl Source for StoredSnapshot {
    fn len(&self) -> usize {
        self.len
    }

    fn read_at(&mut self, offset: usize, dest: &mut [u8]) -> Result<()> {
        if offset
            .checked_add(dest.len())
            .is_none_or(|end| end > self.len)
        {
            bail!(Corrupt: "read past the end of the snapshot");
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
}
