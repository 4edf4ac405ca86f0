//! Catching up with the change log: the rows logged since the state's position, read in one
//! ordered pass (`ChangeLog::changes`) and applied in batches; for a Flat index on a helper
//! thread while the next batch is read. Watched for `sqlite3_interrupt`, and listed as a task
//! when large.

use crate::error::{Error, Kind, Result};
use crate::failpoint::failpoint;
use crate::index::Index;
use crate::interrupt::{self, Watch};
use crate::progress::Task;
use crate::registry::next_generation;
use crate::sqlite::panic_error;
use crate::threads;

use super::super::builder;
use super::super::changelog::{ChangeLog, ChangeSet};
use super::super::config::Meta;
use super::LiveState;

/// Log entries from which a catch-up is listed as a task (`faiss_indexes`, the terminal).
const SHOWN_CATCH_UP: i64 = 1 << 16;
/// Rows per add while an index other than Flat catches up with the change log.
const CATCH_UP_BATCH_ROWS: usize = 4096;
/// Vector bytes a Flat index takes per add while catching up with the change log.
const FLAT_APPLY_BATCH_BYTES: usize = 4 << 20;
/// The fewest log entries a Flat index's catch-up takes a helper thread for (about 5 ms of
/// work, against some 30 µs to start a thread).
const BESIDE_MIN_ENTRIES: i64 = 4096;

impl LiveState {
    /// Bring the state up to `upto` in `log`: every row logged since `applied_seq`, read from
    /// the content table and applied in batches. A failure may leave it half-applied: the
    /// caller drops it (`sync`).
    pub(crate) fn catch_up(&mut self, log: &ChangeLog, meta: &Meta, upto: i64) -> Result<()> {
        let span = (self.applied_seq, upto);
        // Whatever the log holds, however many catch-ups it takes: the same on every node.
        self.pristine &= span.1 <= span.0;
        let flat = self
            .parts
            .iter()
            .map(|p| &p.index)
            .chain(&self.template)
            .all(Index::is_flat);
        let _watch = Watch::on(log.conn());
        let task = (span.1 - span.0 >= SHOWN_CATCH_UP).then(|| log.task("applying changes"));
        if let Some(task) = &task {
            task.phase(
                "reading the changed rows",
                u64::try_from(span.1 - span.0).unwrap_or(0),
            );
        }
        // Other indexes add in batches of a few thousand rows (HNSW32: about 0.3 s each on two
        // cores), so that an interrupt is seen between two: batch size hardly changes FAISS's
        // speed (see `builder::Pace`).
        if !(flat && self.catch_up_beside(log, meta, span, task.as_ref())?) {
            let batch = match flat {
                true => (FLAT_APPLY_BATCH_BYTES, usize::MAX),
                false => (builder::BATCH_BYTES, CATCH_UP_BATCH_ROWS),
            };
            log.changes(meta, span, batch, |set| {
                interrupt::result(self.apply(set))?;
                if let Some(task) = &task {
                    task.advance((set.rows.len() + set.gone.len()) as u64);
                }
                Ok(())
            })?;
        }
        self.applied_seq = self.applied_seq.max(upto);
        self.generation = next_generation();
        Ok(())
    }

    /// A Flat index's catch-up on two threads when a core is idle: a helper adds each batch
    /// (a copy into FAISS, and the slot maps) while this thread reads the next from SQLite, in
    /// batches that stay in the caches, two buffers taking turns. False when no helper could
    /// be had: nothing was read.
    fn catch_up_beside(
        &mut self,
        log: &ChangeLog,
        meta: &Meta,
        span: (i64, i64),
        task: Option<&Task>,
    ) -> Result<bool> {
        let team = threads::SearchTeam::join(2);
        if team.size() < 2 || span.1 - span.0 < BESIDE_MIN_ENTRIES {
            return Ok(false);
        }
        let (to_helper, batches) = std::sync::mpsc::sync_channel::<ChangeSet>(1);
        let (give_back, spare) = std::sync::mpsc::channel::<ChangeSet>();
        std::thread::scope(|s| {
            let state = &mut *self;
            let helper = std::thread::Builder::new()
                .name("vekter-apply".into())
                .spawn_scoped(s, move || -> Result<()> {
                    for set in batches {
                        // (A Flat index's add is a copy: FAISS asks no interrupt callback.)
                        state.apply(&set)?;
                        // (The reader may be done: then the buffer is simply dropped.)
                        let _ = give_back.send(set);
                    }
                    Ok(())
                });
            let Ok(helper) = helper else {
                return Ok(false);
            };
            threads::count_apply_beside();
            let read = log.changes(meta, span, (FLAT_APPLY_BATCH_BYTES, usize::MAX), |set| {
                if let Some(task) = task {
                    task.advance((set.rows.len() + set.gone.len()) as u64);
                }
                let full = std::mem::replace(set, spare.try_recv().unwrap_or_default());
                // A helper that stopped on an error says which, below.
                to_helper
                    .send(full)
                    .map_err(|_| Error::of(Kind::Internal, "the apply thread stopped"))
            });
            drop(to_helper);
            let applied = helper.join().unwrap_or_else(|p| Err(panic_error(p)));
            // The helper's own failure first: the reader's is then only that it stopped.
            applied.and(read).map(|()| true)
        })
    }

    /// Apply one batch of changed rows. FAISS adds the new vectors before any slot changes, so
    /// its failure changes nothing of this batch.
    pub(crate) fn apply(&mut self, changes: &ChangeSet) -> Result<()> {
        // Changed from here on, even if FAISS fails below (`sync` drops a changed state).
        self.generation = next_generation();
        self.insert(&changes.rows, &changes.vectors)?;
        failpoint("apply:vectors-added")?;
        for (handle, key) in &changes.gone {
            // A gone key whose handle another key holds (see `insert`) removes nothing.
            let other_key = match (key, self.keys.get(handle)) {
                (Some(gone), Some(held)) => gone != held,
                _ => false,
            };
            if !other_key {
                self.remove(*handle);
            }
        }
        self.generation = next_generation();
        Ok(())
    }
}
