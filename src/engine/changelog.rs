//! The change log, `<name>_changes`: the triggers on the content table that append the rowid
//! of every inserted, deleted or re-vectored row (O(1) per written row, whichever connection or
//! process writes), reading what changed since a position, and forgetting what a snapshot
//! folded in.

use crate::error::{Error, Result};
use crate::sqlite::{quote_ident, Cell};

use super::config::Meta;
use super::content::read_vector;
use super::key::{KeyPart, KeyShape, RowKey};
use super::shadow::{Shadow, ShadowTable};
use super::state::Change;

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

    /// Each distinct row logged in `(after, upto]`, as it is now (one join with the content
    /// table that `meta` names): its vector, or none when it is gone or outside the index.
    pub(crate) fn changes(&self, meta: &Meta, after: i64, upto: i64) -> Result<Vec<Change>> {
        let dim = meta.dim;
        let mut changes = Vec::new();
        if upto <= after {
            return Ok(changes);
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
            "SELECT {logged}, t.{}, {indexed}, {partition} FROM \
             (SELECT DISTINCT {} FROM {} WHERE seq > ?1 AND seq <= ?2) AS c \
             LEFT JOIN {}.{} AS t ON {join}",
            quote_ident(&meta.column),
            keys.join(", "),
            self.shadow.table(ShadowTable::Changes),
            quote_ident(self.shadow.schema()),
            quote_ident(&meta.content)
        ))?;
        stmt.bind_i64(1, after)?;
        stmt.bind_i64(2, upto)?;
        let width = keys.len() as i32;
        while stmt.step()? {
            let (handle, key) = match &meta.key {
                KeyShape::Columns { .. } => {
                    // A NULL key was never indexed: there is nothing to change.
                    let Some(key) = RowKey::from_cells((0..width).map(|i| stmt.cell(i))) else {
                        continue;
                    };
                    (key.handle(), Some(key))
                }
                _ => match stmt.cell(0) {
                    Cell::Integer(rowid) => (rowid, None),
                    _ => continue,
                },
            };
            let part = match meta.partition {
                Some(_) => KeyPart::partition(stmt.cell(width + 2)),
                None => None,
            };
            let inside = stmt.cell(width + 1) == Cell::Integer(1)
                && (meta.partition.is_none() || part.is_some());
            let mut v = Vec::with_capacity(dim);
            let vector = match stmt.cell(width) {
                Cell::Null => None,
                _ if !inside => None,
                cell => read_vector(cell, dim, &mut v).ok().map(|()| v),
            };
            changes.push(Change {
                handle,
                key,
                part,
                vector,
            });
        }
        Ok(changes)
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
