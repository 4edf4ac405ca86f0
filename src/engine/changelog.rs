//! The change log, `<name>_changes`: the triggers on the content table that append the rowid
//! of every inserted, deleted or re-vectored row (O(1) per written row, whichever connection or
//! process writes), reading what changed since a position, and forgetting what a snapshot
//! folded in.

use std::collections::HashSet;

use crate::catalog::object_type;
use crate::error::{bail, Error, Result};
use crate::sqlite::{quote_ident, Cell};

use super::config::Meta;
use super::content::read_vector;
use super::key::{KeyPart, KeyShape, RowKey};
use super::rowid_hash::RowidHash;
use super::shadow::{Shadow, ShadowTable};
use super::state::NewRow;

/// The three triggers `<name>_vekter_<suffix>` on the content table.
const TRIGGERS: [&str; 3] = ["ai", "ad", "au"];
/// The insert trigger's name ends with this: it also tells which table a faiss table indexes.
pub(crate) const INSERT_TRIGGER_SUFFIX: &str = "_vekter_ai";

/// The change log of one `faiss` table.
pub(crate) struct ChangeLog<'a> {
    shadow: &'a Shadow,
}

impl<'a> ChangeLog<'a> {
    pub(crate) fn new(shadow: &'a Shadow) -> Self {
        ChangeLog { shadow }
    }

    pub(crate) fn conn(&self) -> crate::sqlite::Conn {
        self.shadow.conn()
    }

    /// Long work on this log's faiss table, listed in `faiss_indexes`.
    pub(crate) fn task(&self, work: &'static str) -> crate::progress::Task {
        let shadow = self.shadow;
        crate::progress::Task::on_table(shadow.conn(), shadow.schema(), shadow.name(), work)
    }

    fn trigger(&self, suffix: &str) -> String {
        format!("{}_vekter_{suffix}", self.shadow.name())
    }

    /// Triggers that log the key of every inserted, deleted or changed content row: a change
    /// of the vector, the key (the rowid included, however it is spelt), the partition or a
    /// column of a partial index's predicate logs both the old and (when it differs) the new key. A rowid table with no declared key logs
    /// every UPDATE, as a rowid can change with no column changing.
    pub(crate) fn create_triggers(&self, meta: &Meta) -> Result<()> {
        let conn = self.shadow.conn();
        let schema = quote_ident(self.shadow.schema());
        let content = quote_ident(&meta.content);
        // Trigger bodies name tables unqualified: they live in the content table's schema.
        let log = quote_ident(&self.shadow.table_name(ShadowTable::Changes));
        let columns = log_columns(&meta.key).join(", ");
        let (old, new) = (meta.key.select("old"), meta.key.select("new"));
        conn.execute(&format!(
            "CREATE TRIGGER {schema}.{} AFTER INSERT ON {content} BEGIN \
             INSERT INTO {log}({columns}) VALUES ({new}); END",
            quote_ident(&self.trigger("ai"))
        ))?;
        conn.execute(&format!(
            "CREATE TRIGGER {schema}.{} AFTER DELETE ON {content} BEGIN \
             INSERT INTO {log}({columns}) VALUES ({old}); END",
            quote_ident(&self.trigger("ad"))
        ))?;
        let mut watched = vec![meta.column.clone()];
        match &meta.key {
            // `UPDATE … SET rowid = …` (or `oid`, `_rowid_`) names no column: `OF <pk>` alone
            // would not see it move the row.
            KeyShape::Rowid => watched.extend(
                [meta.pk.as_str(), "rowid", "oid", "_rowid_"]
                    .into_iter()
                    .filter(|c| !c.is_empty())
                    .map(String::from),
            ),
            KeyShape::UnstableRowid => watched.clear(),
            KeyShape::Columns { columns, .. } => watched.extend(columns.iter().cloned()),
        }
        if !watched.is_empty() {
            let extra = meta.predicate.iter().flat_map(|p| p.columns());
            for c in extra.chain(meta.partition.clone()) {
                if !watched.iter().any(|w| w.eq_ignore_ascii_case(&c)) {
                    watched.push(c);
                }
            }
        }
        let of = match watched.as_slice() {
            [] => String::new(),
            cols => format!(
                " OF {}",
                cols.iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let differs = match &meta.key {
            KeyShape::Columns { columns, .. } if columns.len() > 1 => {
                format!("({new}) IS NOT ({old})")
            }
            _ => format!("{new} IS NOT {old}"),
        };
        conn.execute(&format!(
            "CREATE TRIGGER {schema}.{} AFTER UPDATE{of} ON {content} BEGIN \
             INSERT INTO {log}({columns}) VALUES ({old}); \
             INSERT INTO {log}({columns}) SELECT {new} WHERE {differs}; END",
            quote_ident(&self.trigger("au")),
        ))
    }

    pub(crate) fn drop_triggers(&self) -> Result<()> {
        for suffix in TRIGGERS {
            self.shadow.conn().execute(&format!(
                "DROP TRIGGER IF EXISTS {}.{}",
                quote_ident(self.shadow.schema()),
                quote_ident(&self.trigger(suffix))
            ))?;
        }
        Ok(())
    }

    /// The content table's current name, found through the insert trigger SQLite keeps
    /// attached to it (so renaming the content table does not lose it).
    pub(crate) fn content_table(&self) -> Result<Option<String>> {
        let mut stmt = self.shadow.conn().prepare(&format!(
            "SELECT tbl_name FROM {}.sqlite_master WHERE type = 'trigger' AND name = ?1",
            quote_ident(self.shadow.schema())
        ))?;
        stmt.bind_text(1, &self.trigger("ai"))?;
        Ok(if stmt.step()? { stmt.text(0) } else { None })
    }

    /// The highest sequence number this connection can see (0 when empty).
    pub(crate) fn max_seq(&self) -> Result<i64> {
        // The log keeps its newest entry when `optimize` folds it (`truncate`), so its end is
        // its largest `seq`. A log made with AUTOINCREMENT (before 2026-12-02) may have been
        // emptied, and keeps counting in `sqlite_sequence`: its end is the larger of the two.
        let conn = self.shadow.conn();
        let schema = quote_ident(self.shadow.schema());
        let log = self.shadow.table(ShadowTable::Changes);
        let counts = {
            let mut stmt = conn.prepare(&format!(
                "SELECT count(*) FROM {schema}.sqlite_master WHERE name = 'sqlite_sequence'"
            ))?;
            stmt.step()? && stmt.cell(0) == Cell::Integer(1)
        };
        let sql = if counts {
            format!(
                "SELECT max(coalesce((SELECT max(seq) FROM {log}), 0), \
                 coalesce((SELECT seq FROM {schema}.sqlite_sequence WHERE name = ?1), 0))"
            )
        } else {
            format!("SELECT coalesce((SELECT max(seq) FROM {log}), 0) WHERE ?1 IS NOT NULL")
        };
        let mut stmt = conn.prepare(&sql).map_err(Error::damaged_if_schema)?;
        stmt.bind_text(1, &self.shadow.table_name(ShadowTable::Changes))?;
        stmt.step()?;
        Ok(match stmt.cell(0) {
            Cell::Integer(i) => i,
            _ => 0,
        })
    }

    /// Each distinct row logged in `(after, upto]`, as it is now (read with the content table
    /// that `meta` names): in the index with its vector, or gone from it. They are handed to
    /// `sink` in batches of about `batch_bytes` of vectors or `batch_rows` rows; the buffer it
    /// leaves is cleared and filled again (it may take it and leave another).
    ///
    /// One pass over the log in order, each entry joined with its content row: no DISTINCT
    /// (a temporary B-tree of every entry cost about as much as the rest of the read), a row
    /// logged twice is skipped here, before its vector is read.
    pub(crate) fn changes(
        &self,
        meta: &Meta,
        (after, upto): (i64, i64),
        (batch_bytes, batch_rows): (usize, usize),
        mut sink: impl FnMut(&mut ChangeSet) -> Result<()>,
    ) -> Result<()> {
        if upto <= after {
            return Ok(());
        }
        let mut set = ChangeSet::default();
        // A view in the content table's place (a file from a stranger) could read this very
        // faiss table, whose write lock the caller holds.
        let (conn, schema) = (self.shadow.conn(), self.shadow.schema());
        if object_type(conn, schema, &meta.content)?.is_some_and(|kind| kind != "table") {
            bail!(Corrupt:
                "content '{}' is not a table: the database file was changed",
                meta.content
            );
        }
        let keys = log_columns(&meta.key);
        let logged = keys
            .iter()
            .map(|k| format!("c.{k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let join = match &meta.key {
            KeyShape::Columns { columns, .. } => columns
                .iter()
                .zip(&keys)
                .map(|(c, k)| format!("t.{} = c.{k}", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(" AND "),
            _ => "t.rowid = c.rid".to_string(),
        };
        let indexed = match &meta.predicate {
            Some(p) => format!("CASE WHEN {} THEN 1 ELSE 0 END", p.sql(Some("t"))),
            None => "1".to_string(),
        };
        let partition = match &meta.partition {
            Some(p) => format!("t.{}", quote_ident(p)),
            None => "NULL".to_string(),
        };
        // (A missing log is already reported as damage by `max_seq`, which every reader calls
        // first; here a failure may also be the content table's, which is not damage.)
        let mut stmt = self.shadow.conn().prepare(&format!(
            "SELECT {logged}, t.{}, {indexed}, {partition} FROM {} AS c \
             LEFT JOIN {}.{} AS t ON {join} WHERE c.seq > ?1 AND c.seq <= ?2",
            quote_ident(&meta.column),
            self.shadow.table(ShadowTable::Changes),
            quote_ident(self.shadow.schema()),
            quote_ident(&meta.content)
        ))?;
        stmt.bind_i64(1, after)?;
        stmt.bind_i64(2, upto)?;
        let logged = usize::try_from(upto - after).unwrap_or(usize::MAX);
        let row_bytes = meta.dim.max(1) * std::mem::size_of::<f32>();
        let ahead = logged.min(batch_bytes.min(RESERVE_BYTES) / row_bytes + 1);
        set.rows.reserve(ahead);
        set.vectors.reserve(ahead * meta.dim);
        let width = keys.len() as i32;
        let mut seen_rowids = HashSet::with_hasher(RowidHash::default());
        let mut seen_keys = HashSet::new();
        while stmt.step()? {
            let (handle, key) = match &meta.key {
                KeyShape::Columns { .. } => {
                    // A NULL key was never indexed: there is nothing to change.
                    let Some(key) = RowKey::from_cells((0..width).map(|i| stmt.cell(i))) else {
                        continue;
                    };
                    if seen_keys.contains(&key) {
                        continue;
                    }
                    seen_keys.insert(key.clone());
                    (key.handle(), Some(key))
                }
                _ => match stmt.cell(0) {
                    Cell::Integer(rowid) if seen_rowids.insert(rowid) => (rowid, None),
                    _ => continue,
                },
            };
            let part = match meta.partition {
                Some(_) => KeyPart::partition(stmt.cell(width + 2)),
                None => None,
            };
            // (Without `where`, the column is the constant 1: not read.)
            let inside = (meta.predicate.is_none() || stmt.cell(width + 1) == Cell::Integer(1))
                && (meta.partition.is_none() || part.is_some());
            let vector = match stmt.cell(width) {
                Cell::Null => false,
                _ if !inside => false,
                cell => read_vector(cell, meta.dim, &mut set.vectors).is_ok(),
            };
            if vector {
                set.rows.push(NewRow { handle, key, part });
            } else {
                set.gone.push((handle, key));
            }
            let full = set.vectors.len() * std::mem::size_of::<f32>() >= batch_bytes
                || set.rows.len() + set.gone.len() >= batch_rows;
            if full {
                sink(&mut set)?;
                set.clear();
            }
        }
        if !set.rows.is_empty() || !set.gone.is_empty() {
            sink(&mut set)?;
        }
        Ok(())
    }

    /// Forget entries up to `upto`: they are folded into the stored snapshot. The newest entry
    /// stays, even when folded, so that the log never empties and its next `seq` (one past the
    /// largest) is past every `seq` ever folded: without AUTOINCREMENT an emptied log would
    /// count from 1 again, below the stored snapshot's mark.
    pub(crate) fn truncate(&self, upto: i64) -> Result<()> {
        let log = self.shadow.table(ShadowTable::Changes);
        let mut stmt = self.shadow.conn().prepare(&format!(
            "DELETE FROM {log} WHERE seq <= ?1 AND seq < (SELECT max(seq) FROM {log})"
        ))?;
        stmt.bind_i64(1, upto)?;
        while stmt.step()? {}
        Ok(())
    }
}

/// Vector bytes reserved ahead of reading the changed rows (at most one per log entry).
const RESERVE_BYTES: usize = 64 << 20;

/// The rows logged in a range of the change log, as they are now.
#[derive(Default)]
pub(crate) struct ChangeSet {
    /// The rows the index takes now, with their vectors in `vectors` (row-major, same order).
    pub(crate) rows: Vec<NewRow>,
    pub(crate) vectors: Vec<f32>,
    /// The rows to leave the index, with their keys (tables keyed by columns): gone, outside
    /// the index (`where`, a NULL vector or partition), or unindexable (`integrity-check`
    /// names them).
    pub(crate) gone: Vec<(i64, Option<RowKey>)>,
}

impl ChangeSet {
    fn clear(&mut self) {
        self.rows.clear();
        self.vectors.clear();
        self.gone.clear();
    }

    /// Each row with its vector.
    pub(crate) fn rows_with_vectors(&self, dim: usize) -> impl Iterator<Item = (&NewRow, &[f32])> {
        self.rows.iter().zip(self.vectors.chunks_exact(dim.max(1)))
    }
}

/// The change log's key columns: `rid` (a rowid), or `key0`, `key1`, … (the key columns'
/// values, stored with no type affinity, so each keeps its own type).
pub(crate) fn log_columns(shape: &KeyShape) -> Vec<String> {
    match shape {
        KeyShape::Columns { columns, .. } => {
            (0..columns.len()).map(|i| format!("key{i}")).collect()
        }
        _ => vec!["rid".to_string()],
    }
}
