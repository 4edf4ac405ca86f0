//! What changes a `faiss` table as a whole: creation, the FTS5-style commands (`rebuild`,
//! `optimize`, `integrity-check`), DROP TABLE and ALTER TABLE … RENAME. Each runs in the
//! statement's write transaction; new states are published only once they are saved.

use std::collections::HashMap;

use crate::catalog::{columns, find_column};
use crate::error::{bail, Error, Kind, Result};
use crate::failpoint::failpoint;
use crate::index::Metric;
use crate::registry::ConnState;
use crate::sqlite::{quote_ident, Conn};

use super::atomic::all_or_nothing;
use super::builder::{self, Origin};
use super::changelog::ChangeLog;
use super::config::{Config, Meta};
use super::content::{key_text, Found, Rejected};
use super::key::{KeyPart, KeyShape};
use super::params::SearchParams;
use super::persist;
use super::predicate::Predicate;
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
    /// `deterministic = 1` (`config::Key::Deterministic`).
    pub(crate) deterministic: bool,
    pub(crate) params: SearchParams,
    pub(crate) dim: Option<usize>,
    /// A partial index: only the rows that match.
    pub(crate) predicate: Option<Predicate>,
    /// A partitioned index: one FAISS index per value of this column.
    pub(crate) partition: Option<String>,
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
    let (key, pk) = super::key::key_shape(conn, schema, content)?;
    let have = columns(conn, schema, content)?;
    let column = find_column(&have, content, &definition.column, "vector")?;
    let id_column = definition
        .id
        .as_deref()
        .map(|id| find_column(&have, content, id, "id"))
        .transpose()?;
    let partition = definition
        .partition
        .as_deref()
        .map(|p| find_column(&have, content, p, "partition"))
        .transpose()?;
    if partition
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case(&column))
    {
        bail!("partition = {column}: the vector column cannot be the partition");
    }
    if let Some(p) = &definition.predicate {
        check_predicate(conn, schema, content, p)?;
    }
    let shadow = Shadow::new(conn, schema, name);
    if ChangeLog::new(&shadow).content_table()?.is_some() {
        bail!("faiss: triggers named {name}_vekter_* already exist");
    }
    let mut meta = Meta {
        content: content.clone(),
        column,
        id_column,
        pk,
        key,
        predicate: definition.predicate.clone(),
        partition,
        factory: definition.factory.clone(),
        metric: definition.metric,
        dim: definition.dim.unwrap_or(0),
        params: definition.params.clone(),
        train_size: definition.train_size,
        deterministic: definition.deterministic,
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
    table.shadow().create_tables(&table.meta().key)?;
    Config::write(table.shadow(), &table.meta().to_config())?;
    persist::save(&table, &built, built.applied_seq)?;
    table.log().create_triggers(table.meta())?;
    shared::publish(state, &table, built);
    Ok(table)
}

/// Fail unless `predicate` reads only columns `table` has (SQLite checks it in a statement that
/// reads no row).
fn check_predicate(conn: Conn, schema: &str, table: &str, predicate: &Predicate) -> Result<()> {
    let sql = format!(
        "SELECT 1 FROM {}.{} AS t WHERE {} LIMIT 0",
        quote_ident(schema),
        quote_ident(table),
        predicate.sql(Some("t"))
    );
    conn.prepare(&sql).map(drop).map_err(|e| {
        Error::invalid(format!(
            "where = '{}' does not fit table '{table}': {}",
            predicate.sql(None),
            e.message().replace("column: t.", "column: ")
        ))
    })
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
///
/// Deterministic tables (every factory but a graph's, and a graph with `deterministic = 1`)
/// also compact whenever the log changed the index: how the log was applied (in how many
/// catch-ups, which depends on when this node searched) shows in the index's bytes, and a
/// compaction is one pass over the content table, the same on every node (docs/replication.md).
pub(crate) fn optimize(table: &LiveTable, state: &ConnState) -> Result<()> {
    check_writable(table.conn(), table.schema(), "optimize")?;
    let meta = table.meta();
    // A Flat table stores no vectors (`snapshot::stored_lean`): its payload is the same
    // whatever the state, so only tombstones call for a compaction (of memory).
    let lean = super::snapshot::stored_lean(&meta.factory);
    let canonical = !lean && (meta.deterministic || !builder::batch_sensitive(&meta.factory));
    let seq = table.log().max_seq()?;
    let indexable = content_rows(table)?.indexable.len();
    // Saved as it is when it is current and clean; otherwise compacted. Either way only a read
    // lock is held, so searches go on meanwhile.
    let empty = with_current(table, state, false, |current, overlay| {
        let s = current.get();
        if s.is_stand_in() {
            // Standing in for a refused snapshot: the table's own index must be built anew.
            return Ok(Some(None));
        }
        let clean = overlay.is_empty()
            && (s.pristine || !canonical)
            && s.dead_count() == 0
            && s.live_count() == indexable
            && s.applied_seq == seq;
        if clean {
            save(table, s, seq)?;
            return Ok(None);
        }
        let empty = builder::empty_for(meta, s)?;
        Ok(Some(Some((empty, s.lineage, s.build_id.clone()))))
    })?;
    match empty {
        None => Ok(()),
        Some(None) => {
            // Retrained and filled as `rebuild` does, rows that cannot be indexed left out as
            // `optimize` always does.
            let built = builder::build_skipping_unindexable(table, Origin::next(table)?)?;
            save(table, &built, built.applied_seq)?;
            shared::publish(state, table, built);
            Ok(())
        }
        Some(Some((empty, lineage, build_id))) if lean => {
            // Tombstones dropped from memory: the stored payload does not change, nor do the
            // lineage and build id (every node and process stays on the one it has).
            let mut compact = builder::compact(table, empty, Origin::at(lineage, seq))?;
            compact.build_id = build_id;
            save(table, &compact, seq)?;
            shared::publish(state, table, compact);
            Ok(())
        }
        Some(Some((empty, _, _))) => {
            let compact = builder::compact(table, empty, Origin::next(table)?)?;
            save(table, &compact, seq)?;
            shared::publish(state, table, compact);
            Ok(())
        }
    }
}

/// The content rows as an index sees them.
struct ContentRows {
    /// The rows with an indexable vector.
    indexable: Vec<Found>,
    /// Rows whose vector cannot be indexed, and why.
    rejected: Vec<(Found, Rejected)>,
}

fn content_rows(table: &LiveTable) -> Result<ContentRows> {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    let mut buf = Vec::new();
    table.content().scan(
        |_| true,
        &mut buf,
        |found, read, buf| {
            buf.clear();
            match read {
                Ok(()) => good.push(found),
                Err(why) => bad.push((found, why)),
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
    // The stored snapshot is refused (a search then uses a stand-in, `persist::load`).
    let refused = |why: &str| {
        let name = quote_ident(table.name());
        corrupt(&format!(
            "the stored snapshot was refused ({why}); searches use an index rebuilt in memory \
             from the content table instead (INSERT INTO {name}({name}) VALUES ('rebuild') \
             stores a new snapshot)"
        ))
    };
    match stored {
        Err(e) if e.kind() == Kind::Corrupt => return Err(refused(e.message())),
        other => drop(other?),
    }
    let ContentRows {
        indexable,
        rejected: bad,
    } = content_rows(table)?;
    let keyed = matches!(table.meta().key, KeyShape::Columns { .. });
    let (rows, what) = if keyed {
        ("keys", "rows")
    } else {
        ("rowids", "rowids")
    };
    with_current(table, state, false, |current, overlay| {
        let s = current.get();
        if let Some(why) = s.refused() {
            return Err(refused(&why));
        }
        let mut indexed: HashMap<i64, Option<KeyPart>> = s
            .handles()
            .into_iter()
            .map(|h| (h, s.part_value(h).cloned()))
            .collect();
        for h in &overlay.changed {
            indexed.remove(h);
        }
        indexed.extend(overlay.rows.iter().map(|r| (r.handle, r.part.clone())));
        let name = |handle: i64| match overlay.key(handle).or_else(|| s.key(handle)) {
            Some(key) => key_text(key),
            None => handle.to_string(),
        };
        let missing: Vec<String> = indexable
            .iter()
            .filter(|f| !indexed.contains_key(&f.handle))
            .map(|f| describe(f, keyed))
            .collect();
        let expected: HashMap<i64, &Found> = indexable.iter().map(|f| (f.handle, f)).collect();
        let extra: Vec<String> = indexed
            .keys()
            .filter(|h| !expected.contains_key(h))
            .map(|&h| name(h))
            .collect();
        let misplaced = indexable
            .iter()
            .filter(|f| indexed.get(&f.handle).is_some_and(|p| *p != f.part))
            .count();
        let mut problems = Vec::new();
        if let Some((found, why)) = bad.first() {
            problems.push(format!(
                "{} content rows have a vector that cannot be indexed ({}: {why})",
                bad.len(),
                describe_row(found, keyed)
            ));
        }
        if !missing.is_empty() {
            problems.push(format!(
                "{} content rows are not in the index ({rows} {})",
                missing.len(),
                sample(missing)
            ));
        }
        if !extra.is_empty() {
            problems.push(format!(
                "{} indexed {what} are not in the content table ({rows} {})",
                extra.len(),
                sample(extra)
            ));
        }
        if misplaced > 0 {
            problems.push(format!(
                "{misplaced} rows are indexed in the wrong partition"
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(corrupt(&problems.join("; ")))
        }
    })
}

/// A row in a message: its rowid, or its key.
fn describe(found: &Found, keyed: bool) -> String {
    match (&found.key, keyed) {
        (Some(key), true) => key_text(key),
        _ => found.handle.to_string(),
    }
}

/// `row 5`, `key 'L0'`.
fn describe_row(found: &Found, keyed: bool) -> String {
    match keyed {
        true => format!("key {}", describe(found, keyed)),
        false => format!("row {}", found.handle),
    }
}

/// Up to five rows, in order, for a message.
fn sample(mut rows: Vec<String>) -> String {
    // Rowids sort as numbers, keys as text.
    rows.sort_by(|a, b| match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    });
    let shown = rows.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if rows.len() > 5 {
        format!("{shown}, …")
    } else {
        shown
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
    ChangeLog::new(&renamed).create_triggers(table.meta())?;
    shared::forget(state, table.conn(), table.schema(), table.name());
    table.renamed(renamed);
    Ok(())
}
