//! The faiss-table engine: one `faiss` virtual table's index over its content table, kept in
//! step through a change log, stored in shadow tables, shared by every connection of the process
//! (ARCHITECTURE.md, "The faiss table"). The SQL surface (`vtab::faiss`, `faiss_search`) calls
//! in through [`LiveTable`], [`commands`] and [`search`]; nothing here calls back up.
//!
//! | module | role |
//! | --- | --- |
//! | `config` | `<name>_config`: every key, typed, with one rule for missing keys; [`Meta`] |
//! | `params` | search parameters (`nprobe`, `efSearch`, `rerank`) and their bounds |
//! | `shadow` | the shadow tables' names, creation, removal and renaming |
//! | `content` | all SQL on the content table; the one parse-and-check of a stored vector |
//! | `changelog` | triggers, reading what changed, truncation |
//! | `snapshot` | the stored format: payload, chunks, checksum |
//! | `state` | the in-memory index: slots, tombstones, applying changes |
//! | `builder` | training and building from the content table, compaction |
//! | `persist` | saving a state as the snapshot, loading it back with the log replayed |
//! | `atomic` | a command's save happens whole or rolls the transaction back |
//! | `shared` | the process-wide entries and their locks, for `faiss_indexes` too |
//! | `sync` | what must happen before a search (a pure decision) and doing it |
//! | `search` | filters, per-query parameters, re-rank, merge |
//! | `commands` | create, rebuild, optimize, integrity-check, drop, rename |

mod atomic;
pub(crate) mod builder;
mod changelog;
pub(crate) mod commands;
pub(crate) mod config;
mod content;
pub(crate) mod key;
mod params;
pub(crate) mod persist;
pub(crate) mod predicate;
mod rowid_hash;
pub(crate) mod search;
pub(crate) mod shadow;
pub(crate) mod shared;
pub(crate) mod snapshot;
pub(crate) mod state;
mod sync;

use crate::error::{Error, Result};
use crate::index::Metric;
use crate::sqlite::{quote_ident, Conn, StmtCache};

pub(crate) use builder::DEFAULT_TRAIN_SIZE;
pub(crate) use commands::Definition;
pub(crate) use config::Meta;
pub(crate) use params::SearchParams;
pub(crate) use predicate::Predicate;
pub(crate) use search::Query;
pub(crate) use shadow::DECLARED as SHADOW_TABLES;

use changelog::{ChangeLog, INSERT_TRIGGER_SUFFIX};
use config::{Config, Key};
use content::Content;
use shadow::Shadow;

/// One `faiss` table seen from one connection: where it lives and what it indexes.
pub(crate) struct LiveTable {
    shadow: Shadow,
    meta: Meta,
    /// Statements run on every search (ids, vectors of candidates), prepared once.
    stmts: StmtCache,
    /// Content rows this connection's searches found there, while nothing changes.
    verified: std::cell::RefCell<content::Verified>,
}

impl LiveTable {
    fn new(shadow: Shadow, meta: Meta) -> LiveTable {
        LiveTable {
            shadow,
            meta,
            stmts: StmtCache::default(),
            verified: Default::default(),
        }
    }

    /// `schema.name`, whose metadata the caller already read (see [`open`](Self::open)).
    pub(crate) fn with_meta(conn: Conn, schema: &str, name: &str, meta: Meta) -> LiveTable {
        LiveTable::new(Shadow::new(conn, schema, name), meta)
    }

    /// Read `faiss` table `schema.name`'s metadata.
    pub(crate) fn open(conn: Conn, schema: &str, name: &str) -> Result<LiveTable> {
        let shadow = Shadow::new(conn, schema, name);
        let config = Config::read(&shadow).map_err(|e| {
            e.context(format!("faiss table '{name}' has no readable config"))
                .naming_table()
        })?;
        // Without its trigger the content table is gone: the table can still be opened, and
        // dropped; searches fail on the missing content table.
        let content = match ChangeLog::new(&shadow).content_table()? {
            Some(content) => content,
            None => config.text(Key::Content)?.to_string(),
        };
        let meta = Meta::from_config(&config, content).map_err(|e| e.in_table(name))?;
        Ok(LiveTable::new(shadow, meta))
    }

    pub(crate) fn conn(&self) -> Conn {
        self.shadow.conn()
    }

    pub(crate) fn schema(&self) -> &str {
        self.shadow.schema()
    }

    pub(crate) fn name(&self) -> &str {
        self.shadow.name()
    }

    pub(crate) fn meta(&self) -> &Meta {
        &self.meta
    }

    fn shadow(&self) -> &Shadow {
        &self.shadow
    }

    fn log(&self) -> ChangeLog<'_> {
        ChangeLog::new(&self.shadow)
    }

    fn content(&self) -> Content<'_> {
        Content::new(
            self.conn(),
            self.schema(),
            &self.meta,
            &self.stmts,
            &self.verified,
        )
    }

    /// After ALTER TABLE … RENAME.
    fn renamed(&mut self, shadow: Shadow) {
        self.shadow = shadow;
    }
}

/// The `faiss` table that `faiss_search(…, table, …)` should use: `table` itself when it is
/// one, or the single `faiss` table over it that indexes every row at once (no `where`, no
/// `partition`: a partial index must not answer for the whole table) with the `metric` asked
/// for, if any. `None`: the plain path.
pub(crate) fn resolve(
    conn: Conn,
    schema: &str,
    table: &str,
    metric: Option<Metric>,
) -> Result<Option<(String, Meta)>> {
    let master = format!("{}.sqlite_master", quote_ident(schema));
    let mut stmt = conn.prepare(&format!(
        "SELECT name, sql FROM {master} WHERE type = 'table' AND name = ?1 COLLATE NOCASE"
    ))?;
    stmt.bind_text(1, table)?;
    if stmt.step()? {
        let sql = stmt.text(1).unwrap_or_default().to_ascii_lowercase();
        let words: Vec<&str> = sql
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .collect();
        if words.windows(2).any(|w| w == ["using", "faiss"]) && sql.starts_with("create virtual") {
            if let Some(name) = stmt.text(0) {
                let meta = LiveTable::open(conn, schema, &name)?.meta().clone();
                return Ok(Some((name, meta)));
            }
        }
    }
    // Each faiss table keeps an insert trigger `<name>_vekter_ai` on its content table.
    let suffix_len = INSERT_TRIGGER_SUFFIX.len();
    let mut stmt = conn.prepare(&format!(
        "SELECT v.name FROM {master} AS t JOIN {master} AS v \
         ON v.type = 'table' AND v.name = substr(t.name, 1, length(t.name) - {suffix_len}) \
         WHERE t.type = 'trigger' AND t.tbl_name = ?1 COLLATE NOCASE \
         AND substr(t.name, -{suffix_len}) = ?2 ORDER BY 1"
    ))?;
    stmt.bind_text(1, table)?;
    stmt.bind_text(2, INSERT_TRIGGER_SUFFIX)?;
    let mut whole = Vec::new();
    while stmt.step()? {
        let Some(name) = stmt.text(0) else { continue };
        let meta = LiveTable::open(conn, schema, &name)?.meta().clone();
        let metric_fits = metric.is_none_or(|m| m == meta.metric);
        if meta.predicate.is_none() && meta.partition.is_none() && metric_fits {
            whole.push((name, meta));
        }
    }
    match whole.len() {
        0 | 1 => Ok(whole.pop()),
        _ => Err(Error::invalid(format!(
            "table '{table}' has {} faiss indexes ({}): name the one to search",
            whole.len(),
            whole
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
