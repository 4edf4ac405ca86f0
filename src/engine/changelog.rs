//! The change log, `<name>_changes`: the triggers on the content table that append the rowid
//! of every inserted, deleted or re-vectored row (O(1) per written row, whichever connection or
//! process writes), reading what changed since a position, and forgetting what a snapshot
//! folded in.

use crate::error::{Error, Result};
use crate::sqlite::{quote_ident, Cell};

use super::config::Meta;
use super::content::read_vector;
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

    /// Triggers that log the rowid of every inserted, deleted or re-vectored content row. A
    /// change of the INTEGER PRIMARY KEY `pk` logs both the old and the new rowid.
    pub(crate) fn create_triggers(&self, content: &str, column: &str, pk: &str) -> Result<()> {
        let conn = self.shadow.conn();
        let schema = quote_ident(self.shadow.schema());
        let content = quote_ident(content);
        // Trigger bodies name tables unqualified: they live in the content table's schema.
        let log = quote_ident(&self.shadow.table_name(ShadowTable::Changes));
        conn.execute(&format!(
            "CREATE TRIGGER {schema}.{} AFTER INSERT ON {content} BEGIN \
             INSERT INTO {log}(rid) VALUES (new.rowid); END",
            quote_ident(&self.trigger("ai"))
        ))?;
        conn.execute(&format!(
            "CREATE TRIGGER {schema}.{} AFTER DELETE ON {content} BEGIN \
             INSERT INTO {log}(rid) VALUES (old.rowid); END",
            quote_ident(&self.trigger("ad"))
        ))?;
        conn.execute(&format!(
            "CREATE TRIGGER {schema}.{} AFTER UPDATE OF {}, {} ON {content} BEGIN \
             INSERT INTO {log}(rid) VALUES (old.rowid); \
             INSERT INTO {log}(rid) SELECT new.rowid WHERE new.rowid IS NOT old.rowid; END",
            quote_ident(&self.trigger("au")),
            quote_ident(column),
            quote_ident(pk)
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
        // An emptied log (after `optimize`) keeps counting in `sqlite_sequence`
        // (AUTOINCREMENT): its end is the larger of the two, so that `pending` stays exact.
        let mut stmt = self
            .shadow
            .conn()
            .prepare(&format!(
                "SELECT max(coalesce((SELECT max(seq) FROM {}), 0), \
                 coalesce((SELECT seq FROM {}.sqlite_sequence WHERE name = ?1), 0))",
                self.shadow.table(ShadowTable::Changes),
                quote_ident(self.shadow.schema())
            ))
            .map_err(Error::damaged_if_schema)?;
        stmt.bind_text(1, &self.shadow.table_name(ShadowTable::Changes))?;
        stmt.step()?;
        Ok(match stmt.cell(0) {
            Cell::Integer(i) => i,
            _ => 0,
        })
    }

    /// Each distinct rowid logged in `(after, upto]`, with its row's vector as it is now (one
    /// join with the content table that `meta` names).
    pub(crate) fn changes(&self, meta: &Meta, after: i64, upto: i64) -> Result<Vec<Change>> {
        let dim = meta.dim;
        let mut changes = Vec::new();
        if upto <= after {
            return Ok(changes);
        }
        // (A missing log is already reported as damage by `max_seq`, which every reader calls
        // first; here a failure may also be the content table's, which is not damage.)
        let mut stmt = self.shadow.conn().prepare(&format!(
            "SELECT c.rid, t.{} FROM (SELECT DISTINCT rid FROM {} WHERE seq > ?1 AND seq <= ?2) \
                 AS c LEFT JOIN {}.{} AS t ON t.rowid = c.rid ORDER BY c.rid",
            quote_ident(&meta.column),
            self.shadow.table(ShadowTable::Changes),
            quote_ident(self.shadow.schema()),
            quote_ident(&meta.content)
        ))?;
        stmt.bind_i64(1, after)?;
        stmt.bind_i64(2, upto)?;
        while stmt.step()? {
            let Cell::Integer(rowid) = stmt.cell(0) else {
                continue;
            };
            let mut v = Vec::with_capacity(dim);
            let vector = match stmt.cell(1) {
                Cell::Null => None,
                cell => read_vector(cell, dim, &mut v).ok().map(|()| v),
            };
            changes.push(Change { rowid, vector });
        }
        Ok(changes)
    }

    /// Forget entries up to `upto`: they are folded into the stored snapshot.
    pub(crate) fn truncate(&self, upto: i64) -> Result<()> {
        let mut stmt = self.shadow.conn().prepare(&format!(
            "DELETE FROM {} WHERE seq <= ?1",
            self.shadow.table(ShadowTable::Changes)
        ))?;
        stmt.bind_i64(1, upto)?;
        while stmt.step()? {}
        Ok(())
    }
}
