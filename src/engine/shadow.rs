//! The shadow tables of one `faiss` table: their names, creation, removal and renaming
//! (ARCHITECTURE.md, "Shadow tables"). What each one holds is read and written by its own
//! module: `config`, `snapshot::chunks` and `changelog`.

use crate::error::Result;
use crate::sqlite::{quote_ident, Conn};

use super::changelog::log_columns;
use super::key::KeyShape;

/// One of the three shadow tables, `<name>_<suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShadowTable {
    /// `<name>_config (key PRIMARY KEY, value) WITHOUT ROWID`: see `config::Key`.
    Config,
    /// `<name>_chunks (chunk INTEGER PRIMARY KEY, data BLOB)`: the snapshot, chunked.
    Chunks,
    /// `<name>_changes (seq INTEGER PRIMARY KEY, rid)`: the change log. Tables made before
    /// 2026-12-02 have `AUTOINCREMENT`, which costs each write a second B-tree update (of
    /// `sqlite_sequence`); now the log never empties instead (see `ChangeLog::truncate`), so
    /// its next `seq` is always past every `seq` ever folded.
    Changes,
}

impl ShadowTable {
    const ALL: [ShadowTable; 3] = [
        ShadowTable::Config,
        ShadowTable::Chunks,
        ShadowTable::Changes,
    ];

    pub(crate) const fn suffix(self) -> &'static str {
        match self {
            ShadowTable::Config => "config",
            ShadowTable::Chunks => "chunks",
            ShadowTable::Changes => "changes",
        }
    }

    /// The columns, for a table whose rows are identified as `shape` says.
    fn create_sql(self, shape: &KeyShape) -> String {
        match (self, shape) {
            (ShadowTable::Config, _) => "(key TEXT PRIMARY KEY, value) WITHOUT ROWID".into(),
            (ShadowTable::Chunks, _) => "(chunk INTEGER PRIMARY KEY, data BLOB NOT NULL)".into(),
            (ShadowTable::Changes, KeyShape::Columns { .. }) => format!(
                "(seq INTEGER PRIMARY KEY, {})",
                log_columns(shape).join(", ")
            ),
            (ShadowTable::Changes, _) => "(seq INTEGER PRIMARY KEY, rid INTEGER NOT NULL)".into(),
        }
    }
}

/// Shadow tables declared to SQLite (`xShadowName`): read-only to ordinary SQL under
/// `SQLITE_DBCONFIG_DEFENSIVE`. The change log is not one of them: the sync triggers, which
/// run as the writer's ordinary SQL, must be able to append to it.
pub(crate) const DECLARED: &[&str] = &[ShadowTable::Config.suffix(), ShadowTable::Chunks.suffix()];

/// Where one `faiss` table's shadow tables live.
#[derive(Debug, Clone)]
pub(crate) struct Shadow {
    conn: Conn,
    schema: String,
    name: String,
}

impl Shadow {
    pub(crate) fn new(conn: Conn, schema: &str, name: &str) -> Shadow {
        Shadow {
            conn,
            schema: schema.to_string(),
            name: name.to_string(),
        }
    }

    pub(crate) fn conn(&self) -> Conn {
        self.conn
    }

    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// The faiss table's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// `<name>_<suffix>`, unquoted.
    pub(crate) fn table_name(&self, table: ShadowTable) -> String {
        format!("{}_{}", self.name, table.suffix())
    }

    /// `"schema"."<name>_<suffix>"`, for SQL.
    pub(crate) fn table(&self, table: ShadowTable) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(&self.table_name(table))
        )
    }

    pub(crate) fn create_tables(&self, shape: &KeyShape) -> Result<()> {
        for table in ShadowTable::ALL {
            self.conn.execute(&format!(
                "CREATE TABLE {} {}",
                self.table(table),
                table.create_sql(shape)
            ))?;
        }
        Ok(())
    }

    pub(crate) fn drop_tables(&self) -> Result<()> {
        for table in ShadowTable::ALL {
            self.conn
                .execute(&format!("DROP TABLE IF EXISTS {}", self.table(table)))?;
        }
        Ok(())
    }

    /// `ALTER TABLE … RENAME`: the shadow tables follow the faiss table's new name.
    pub(crate) fn rename_tables(&self, new_name: &str) -> Result<Shadow> {
        let renamed = Shadow::new(self.conn, &self.schema, new_name);
        for table in ShadowTable::ALL {
            self.conn.execute(&format!(
                "ALTER TABLE {} RENAME TO {}",
                self.table(table),
                quote_ident(&renamed.table_name(table))
            ))?;
        }
        Ok(renamed)
    }
}
