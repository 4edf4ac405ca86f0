//! What changes a `faiss` table as a whole: creation, the FTS5-style commands (`rebuild`,
//! `optimize`, `integrity-check`), DROP TABLE and ALTER TABLE … RENAME. Each runs in the
//! statement's write transaction; new states are published only once they are saved.

use std::collections::HashSet;

use crate::catalog::{columns, find_column};
use crate::error::{bail, Error, Kind, Result};
use crate::failpoint::failpoint;
use crate::index::Metric;
use crate::registry::ConnState;
use crate::sqlite::Conn;

use super::atomic::all_or_nothing;
use super::builder::{self, Origin};
use super::changelog::ChangeLog;
use super::config::{Config, Meta};
use super::content::{self, Rejected};
use super::params::SearchParams;
use super::persist;
use super::shadow::Shadow;
use super::shared;
use super::snapshot::chunks;
use super::state::LiveState;
use super::sync::with_current;
use super::LiveTable;

/// What `CREATE VIRTUAL TABLE … USING faiss(…)` asks for (parsed by `vtab::options`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Definition {
    pub(crate) content: String,
    pub(crate) column: String,
    /// `None`: the rowid is the id.
    pub(crate) id: Option<String>,
    pub(crate) factory: String,
    pub(crate) metric: Metric,
    pub(crate) train_size: usize,
    pub(crate) params: SearchParams,
    pub(crate) dim: Option<usize>,
}

fn check_writable(conn: Conn, schema: &str, what: &str) -> Result<()> {
    if conn.readonly(schema) {
        bail!(ReadOnly: "cannot {what}: database '{schema}' is read-only");
    }
    Ok(())
}

/// Create `schema.name` as `definition` asks: shadow tables, the index built from the rows
/// already there, its snapshot, and the triggers that keep it in sync.
pub(crate) fn create(
    conn: Conn,
    state: &ConnState,
    (schema, name): (&str, &str),
    definition: &Definition,
) -> Result<LiveTable> {
    let content = &definition.content;
    check_writable(conn, schema, "create a faiss table")?;
    let pk = content::key_column(conn, schema, content)?;
    let have = columns(conn, schema, content)?;
    let column = find_column(&have, content, &definition.column, "vector")?;
    let id_column = definition
        .id
        .as_deref()
        .map(|id| find_column(&have, content, id, "id"))
        .transpose()?;
    let shadow = Shadow::new(conn, schema, name);
    if ChangeLog::new(&shadow).content_table()?.is_some() {
        bail!("faiss: triggers named {name}_vekter_* already exist");
    }
    let mut meta = Meta {
        content: content.clone(),
        column,
        id_column,
        pk,
        factory: definition.factory.clone(),
        metric: definition.metric,
        dim: definition.dim.unwrap_or(0),
        params: definition.params.clone(),
        train_size: definition.train_size,
    };
    let data_dim = LiveTable::new(shadow.clone(), meta.clone())
        .content()
        .first_dim()?;
    meta.dim = match (definition.dim, data_dim) {
        (Some(d), Some(found)) if d != found => {
            bail!("dim = {d}, but the vectors in {content} have {found} dimensions")
        }
        (Some(d), _) | (None, Some(d)) => d,
        (None, None) => {
            bail!("{content} has no vectors to tell the dimension: add dim = N to the options")
        }
    };
    let table = LiveTable::new(shadow, meta);
    // Build first: it only reads, so a training error leaves nothing to undo. (CREATE VIRTUAL
    // TABLE has a statement journal: SQLite undoes a failed one whole, see `atomic`.)
    let built = builder::build(&table, Origin::FIRST).map_err(|e| e.in_table(name))?;
    table.shadow().create_tables()?;
    Config::write(table.shadow(), &table.meta().to_config())?;
    persist::save(&table, &built, built.applied_seq)?;
    let meta = table.meta();
    table
        .log()
        .create_triggers(&meta.content, &meta.column, &meta.pk)?;
    shared::publish(state, &table, built);
    Ok(table)
}

/// A save from a command, which runs inside an INSERT into the faiss table: see `atomic`.
fn save(table: &LiveTable, state: &LiveState, seq: i64) -> Result<()> {
    all_or_nothing(|| persist::save(table, state, seq))
}

/// `rebuild`: retrain and rebuild from the content table, as a new lineage.
pub(crate) fn rebuild(table: &LiveTable, state: &ConnState) -> Result<()> {
    check_writable(table.conn(), table.schema(), "rebuild")?;
    let built = builder::build(table, Origin::next(table)?)?;
    save(table, &built, built.applied_seq)?;
    shared::publish(state, table, built);
    Ok(())
}

/// `optimize`: fold the change log into the stored snapshot; compact first when there are
/// tombstones or the index is not exactly the content table.
pub(crate) fn optimize(table: &LiveTable, state: &ConnState) -> Result<()> {
    check_writable(table.conn(), table.schema(), "optimize")?;
    let seq = table.log().max_seq()?;
    let indexable = content_rows(table)?.indexable.len();
    // Saved as it is when it is current and clean; otherwise compacted. Either way only a read
    // lock is held, so searches go on meanwhile.
    let empty = with_current(table, state, false, |current, overlay| {
        let s = current.get();
        let clean = overlay.is_empty()
            && s.dead_count() == 0
            && s.live_count() == indexable
            && s.applied_seq == seq;
        if clean {
            save(table, s, seq)?;
            return Ok(None);
        }
        s.index.empty_copy().map(Some)
    })?;
    if let Some(empty) = empty {
        let compact = builder::compact(table, empty, Origin::next(table)?)?;
        save(table, &compact, seq)?;
        shared::publish(state, table, compact);
    }
    Ok(())
}

/// The content rows as an index sees them.
struct ContentRows {
    /// Rowids of rows with an indexable vector, ascending.
    indexable: Vec<i64>,
    /// Rows whose vector cannot be indexed, and why.
    rejected: Vec<(i64, Rejected)>,
}

fn content_rows(table: &LiveTable) -> Result<ContentRows> {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    let mut buf = Vec::new();
    table.content().scan(
        |_| true,
        &mut buf,
        |rowid, read, buf| {
            buf.clear();
            match read {
                Ok(()) => good.push(rowid),
                Err(why) => bad.push((rowid, why)),
            }
            Ok(())
        },
    )?;
    Ok(ContentRows {
        indexable: good,
        rejected: bad,
    })
}

/// `integrity-check`: the stored snapshot is intact, and index and content agree; otherwise an
/// error (`SQLITE_CORRUPT_VTAB`) that says where not. Failures that are not damage (BUSY, out of
/// memory) are reported as themselves.
pub(crate) fn integrity_check(table: &LiveTable, state: &ConnState) -> Result<()> {
    let corrupt = |what: &str| {
        Error::of(
            Kind::Corrupt,
            format!(
                "faiss table '{}' integrity-check failed: {what}",
                table.name()
            ),
        )
        .naming_table()
    };
    let stored = Config::read(table.shadow())
        .and_then(|config| config.record())
        .and_then(|record| chunks::open(table.shadow(), &record));
    match stored {
        Err(e) if e.kind() == Kind::Corrupt => return Err(corrupt(e.message())),
        other => drop(other?),
    }
    let ContentRows {
        indexable: expected,
        rejected: bad,
    } = content_rows(table)?;
    with_current(table, state, false, |current, overlay| {
        let mut indexed: HashSet<i64> = current.get().rowids().into_iter().collect();
        overlay.apply_to(&mut indexed);
        let missing: Vec<i64> = expected
            .iter()
            .filter(|r| !indexed.contains(r))
            .copied()
            .collect();
        let expected: HashSet<i64> = expected.into_iter().collect();
        let extra: Vec<i64> = indexed
            .iter()
            .filter(|r| !expected.contains(r))
            .copied()
            .collect();
        let mut problems = Vec::new();
        if let Some((rowid, why)) = bad.first() {
            problems.push(format!(
                "{} content rows have a vector that cannot be indexed (row {rowid}: {why})",
                bad.len()
            ));
        }
        if !missing.is_empty() {
            problems.push(format!(
                "{} content rows are not in the index (rowids {})",
                missing.len(),
                sample(&missing)
            ));
        }
        if !extra.is_empty() {
            problems.push(format!(
                "{} indexed rowids are not in the content table (rowids {})",
                extra.len(),
                sample(&extra)
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(corrupt(&problems.join("; ")))
        }
    })
}

/// Up to five rowids, ascending, for a message.
fn sample(rowids: &[i64]) -> String {
    let mut v = rowids.to_vec();
    v.sort_unstable();
    let shown: Vec<String> = v.iter().take(5).map(|r| r.to_string()).collect();
    if v.len() > 5 {
        format!("{}, …", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// DROP TABLE: the shadow tables, the triggers and the shared state go. (DROP TABLE has a
/// statement journal: SQLite undoes a failed one whole.)
pub(crate) fn destroy(table: &LiveTable, state: &ConnState) -> Result<()> {
    table.log().drop_triggers()?;
    failpoint("drop:triggers-dropped")?;
    table.shadow().drop_tables()?;
    shared::forget(state, table.conn(), table.schema(), table.name());
    Ok(())
}

/// ALTER TABLE … RENAME: the shadow tables and triggers follow the new name. (ALTER TABLE has a
/// statement journal: SQLite undoes a failed one whole.)
pub(crate) fn rename(table: &mut LiveTable, state: &ConnState, new_name: &str) -> Result<()> {
    table.log().drop_triggers()?;
    let renamed = table.shadow().rename_tables(new_name)?;
    failpoint("rename:tables-renamed")?;
    let meta = table.meta();
    ChangeLog::new(&renamed).create_triggers(&meta.content, &meta.column, &meta.pk)?;
    shared::forget(state, table.conn(), table.schema(), table.name());
    table.renamed(renamed);
    Ok(())
}
