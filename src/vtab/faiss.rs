//! The `faiss` virtual table (SPEC §4): an index over a content table, searched with
//! `WHERE query = :q AND k = 10` or `name(:q, 10)`, maintained with FTS5-style commands.
//!
//! Query plan encoding (ARCHITECTURE.md): `idxStr` has one character per `xFilter` argument,
//! in argument order: `q` query vector, `k` k, `l` LIMIT, `o` OFFSET, `p` params, `=` a rowid,
//! `i` a whole `rowid IN (…)` list, `<` `[` `>` `]` a distance bound (<, <=, >, >=) on the
//! nearer side.

use std::collections::HashSet;
use std::sync::Arc;

use crate::content::{columns, object_type};
use crate::error::{bail, Error, Result, SQLITE_READONLY};
use crate::functions::parse_k;
use crate::json::IdValue;
use crate::live::{LiveTable, Meta, Query, SearchParams};
use crate::registry::{registry, ConnState};
use crate::sqlite::{
    op, quote_ident, Cell, Conn, Context, Cursor, IndexInfo, Output, Plan, VTab, ValueRef,
};
use crate::store::{Store, SHADOW_TABLES};
use crate::vector;

use super::options::Options;

const COL_ID: i32 = 0;
const COL_DISTANCE: i32 = 1;
const COL_QUERY: i32 = 2;
const COL_K: i32 = 3;
const COL_PARAMS: i32 = 4;
const COL_COMMAND: i32 = 5;
const SQLITE_CORRUPT_VTAB: i32 = 11 | (1 << 8);

pub struct FaissTable {
    table: LiveTable,
    state: Arc<ConnState>,
}

fn declaration(name: &str) -> String {
    format!(
        "CREATE TABLE x(id, distance REAL, query HIDDEN, k HIDDEN, params HIDDEN, {} HIDDEN)",
        quote_ident(name)
    )
}

/// (schema, table name) from the module arguments.
fn names(args: &[String]) -> Result<(&str, &str)> {
    match args {
        [_, schema, name, ..] => Ok((schema, name)),
        _ => bail!("faiss: missing table name"),
    }
}

fn check_writable(conn: Conn, schema: &str, what: &str) -> Result<()> {
    if conn.readonly(schema) {
        return Err(Error::with_code(
            SQLITE_READONLY,
            format!("cannot {what}: database '{schema}' is read-only"),
        ));
    }
    Ok(())
}

/// The INTEGER PRIMARY KEY column of `table`, or an error saying why it is unfit as content.
fn content_key(conn: Conn, schema: &str, table: &str) -> Result<String> {
    match object_type(conn, schema, table)?.as_deref() {
        Some("table") => {}
        Some(other) => bail!("content '{table}' is a {other}: it must be an ordinary table"),
        None => bail!("no content table named '{table}' in database '{schema}'"),
    }
    let content = format!("{}.{}", quote_ident(schema), quote_ident(table));
    if conn
        .prepare(&format!("SELECT rowid FROM {content} LIMIT 0"))
        .is_err()
    {
        bail!("content table '{table}' is WITHOUT ROWID: faiss tables index rowid tables only");
    }
    let mut stmt = conn.prepare(
        "SELECT name, upper(type) FROM pragma_table_info(?1, ?2) WHERE pk > 0 ORDER BY pk",
    )?;
    stmt.bind_text(1, table)?;
    stmt.bind_text(2, schema)?;
    let mut keys = Vec::new();
    while stmt.step()? {
        keys.push((
            stmt.text(0).unwrap_or_default(),
            stmt.text(1).unwrap_or_default(),
        ));
    }
    match keys.as_slice() {
        [(name, kind)] if kind == "INTEGER" => Ok(name.clone()),
        _ => bail!(
            "content table '{table}' has no INTEGER PRIMARY KEY, so VACUUM may renumber its \
             rowids and the index would point at the wrong rows: add a column such as \
             `id INTEGER PRIMARY KEY` (faiss_search() works without one)"
        ),
    }
}

fn check_column(have: &[String], table: &str, column: &str, what: &str) -> Result<String> {
    have.iter()
        .find(|c| c.eq_ignore_ascii_case(column))
        .cloned()
        .ok_or_else(|| {
            Error::new(format!(
                "{what} column '{column}' is not in table '{table}' (it has: {})",
                have.join(", ")
            ))
        })
}

impl VTab for FaissTable {
    type Aux = Arc<ConnState>;
    type Cursor = FaissCursor;
    const SHADOW_TABLES: &'static [&'static str] = SHADOW_TABLES;
    const CREATES: bool = true;

    fn create(conn: Conn, aux: &Arc<ConnState>, args: &[String]) -> Result<(String, Self)> {
        let (schema, name) = names(args)?;
        let options = Options::parse(&args[3..]).map_err(|e| e.context("faiss"))?;
        check_writable(conn, schema, "create a faiss table")?;
        let pk = content_key(conn, schema, &options.content)?;
        let have = columns(conn, schema, &options.content)?;
        let column = check_column(&have, &options.content, &options.column, "vector")?;
        let id_column = options
            .id
            .as_deref()
            .map(|id| check_column(&have, &options.content, id, "id"))
            .transpose()?;
        let mut meta = Meta {
            content: options.content.clone(),
            column,
            id_column,
            pk,
            factory: options.factory.clone(),
            metric: options.metric,
            dim: options.dim.unwrap_or(0),
            params: options.params.clone(),
            train_size: options.train_size,
        };
        let store = Store::new(conn, schema, name);
        if store.content_table()?.is_some() {
            bail!("faiss: triggers named {name}_vekter_* already exist");
        }
        let mut table = LiveTable::new(conn, schema, name, meta.clone());
        let data_dim = table.first_dim()?;
        meta.dim = match (options.dim, data_dim) {
            (Some(d), Some(found)) if d != found => bail!(
                "dim = {d}, but the vectors in {} have {found} dimensions",
                options.content
            ),
            (Some(d), _) | (None, Some(d)) => d,
            (None, None) => bail!(
                "{} has no vectors to tell the dimension: add dim = N to the options",
                options.content
            ),
        };
        table.meta = meta;
        store.create_tables()?;
        store.set_config(&table.meta.to_config())?;
        let built = table
            .build()
            .map_err(|e| e.context(format!("faiss table '{name}'")))?;
        table.save(&built, built.applied_seq)?;
        store.create_triggers(&table.meta.content, &table.meta.column, &table.meta.pk)?;
        registry().publish(aux, &table, built);
        Ok((
            declaration(name),
            FaissTable {
                table,
                state: aux.clone(),
            },
        ))
    }

    fn connect(conn: Conn, aux: &Arc<ConnState>, args: &[String]) -> Result<(String, Self)> {
        let (schema, name) = names(args)?;
        let table = LiveTable::open(conn, schema, name)?;
        Ok((
            declaration(name),
            FaissTable {
                table,
                state: aux.clone(),
            },
        ))
    }

    fn best_index(&self, info: &mut IndexInfo) -> Result<Plan> {
        let mut plan = String::new();
        let mut argv = 0;
        let mut has_query = false;
        for c in info.constraints() {
            // Distance bounds on the nearer side keep a prefix of the nearest-first results,
            // so filtering the k results is what SQL would do (and LIMIT can still be k).
            let ascending = self.table.meta.metric.ascending();
            let kind = match (c.column, c.op) {
                (COL_QUERY, op::EQ) => 'q',
                (COL_K, op::EQ) => 'k',
                (COL_PARAMS, op::EQ) => 'p',
                (-1, op::EQ) => '=',
                (_, op::LIMIT) => 'l',
                (_, op::OFFSET) => 'o',
                (COL_DISTANCE, op::LT) if ascending => '<',
                (COL_DISTANCE, op::LE) if ascending => '[',
                (COL_DISTANCE, op::GT) if !ascending => '>',
                (COL_DISTANCE, op::GE) if !ascending => ']',
                _ => continue,
            };
            if !c.usable {
                if kind == 'q' {
                    return Ok(Plan::Unusable);
                }
                continue;
            }
            let kind = if kind == '=' && info.take_in_list(&c) {
                'i'
            } else if kind == '='
                && c.op == op::EQ
                && crate::sqlite::api::libversion_number() < 3_038_000
            {
                // Without whole-list IN support an IN would arrive one value per call and
                // yield wrong top-k sets: leave rowid terms to SQLite.
                continue;
            } else {
                kind
            };
            has_query |= kind == 'q';
            argv += 1;
            plan.push(kind);
            info.use_constraint(&c, argv, kind != 'l' && kind != 'o');
        }
        if let [(COL_DISTANCE, desc)] = info.order_by().as_slice() {
            if *desc != self.table.meta.metric.ascending() {
                info.set_order_by_consumed();
            }
        }
        let cost = if has_query { 10.0 } else { 1e12 };
        info.set_plan(0, &plan, cost, 10);
        Ok(Plan::Use)
    }

    fn open(&self) -> Result<FaissCursor> {
        Ok(FaissCursor::default())
    }

    fn update(&mut self, args: &[ValueRef]) -> Result<Option<i64>> {
        let command = args.get(2 + COL_COMMAND as usize).map(|v| v.cell());
        let is_insert = args.len() > 1 && args[0].cell() == Cell::Null;
        match (is_insert, command) {
            (true, Some(Cell::Text(text))) => {
                let text = String::from_utf8_lossy(text).to_string();
                self.command(text.trim())?;
                Ok(None)
            }
            _ => bail!(
                "faiss table '{}' is an index over '{}': write to '{}' instead. Commands: \
                 INSERT INTO {0}({0}) VALUES ('rebuild' | 'optimize' | 'integrity-check')",
                self.table.name,
                self.table.meta.content,
                self.table.meta.content
            ),
        }
    }

    fn destroy(&mut self) -> Result<()> {
        let t = &self.table;
        t.store().drop_all()?;
        registry().forget(&self.state, t.conn, &t.schema, &t.name);
        Ok(())
    }

    fn rename(&mut self, new_name: &str) -> Result<()> {
        let t = &self.table;
        t.store()
            .rename(new_name, &t.meta.content, &t.meta.column, &t.meta.pk)?;
        registry().forget(&self.state, t.conn, &t.schema, &t.name);
        self.table.name = new_name.to_string();
        Ok(())
    }
}

impl FaissTable {
    fn command(&self, command: &str) -> Result<()> {
        let t = &self.table;
        match command {
            "rebuild" => {
                check_writable(t.conn, &t.schema, "rebuild")?;
                let built = t.build()?;
                t.save(&built, built.applied_seq)?;
                registry().publish(&self.state, t, built);
                Ok(())
            }
            "optimize" => {
                check_writable(t.conn, &t.schema, "optimize")?;
                let seq = t.store().max_seq()?;
                let indexable = t.content_rows()?.good.len();
                // Saved as it is when it is current and clean; otherwise compacted. Either way
                // only a read lock is held, so searches go on meanwhile.
                let empty = registry().with_live(&self.state, t, false, |state, overlay| {
                    let s = state.get();
                    let clean = overlay.is_empty()
                        && s.dead_count() == 0
                        && s.live_count() == indexable
                        && s.applied_seq == seq;
                    if clean {
                        t.save(s, seq)?;
                        return Ok(None);
                    }
                    s.index.empty_copy().map(Some)
                })?;
                if let Some(empty) = empty {
                    let compact = t.compact(empty)?;
                    t.save(&compact, seq)?;
                    registry().publish(&self.state, t, compact);
                }
                Ok(())
            }
            "integrity-check" => self.integrity_check(),
            other => bail!(
                "unknown command '{other}' for faiss table '{}': use 'rebuild', 'optimize' or \
                 'integrity-check'",
                t.name
            ),
        }
    }

    /// Index and content agree, and the stored snapshot is intact; otherwise an error that
    /// says where not.
    fn integrity_check(&self) -> Result<()> {
        let t = &self.table;
        let corrupt = |what: String| {
            Error::with_code(
                SQLITE_CORRUPT_VTAB,
                format!("faiss table '{}' integrity-check failed: {what}", t.name),
            )
        };
        let store = t.store();
        let config = store.config()?;
        store
            .open_snapshot(&config)
            .map_err(|e| corrupt(e.message().to_string()))?;
        let crate::live::ContentRows {
            good: expected,
            bad,
        } = t.content_rows()?;
        registry().with_live(&self.state, t, false, |state, overlay| {
            let s = state.get();
            let mut indexed: HashSet<i64> = s.rowids().into_iter().collect();
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
                Err(corrupt(problems.join("; ")))
            }
        })
    }
}

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

/// `faiss table 'x': …` in front of an error that does not name the table yet.
fn named(e: Error, table: &str) -> Error {
    if e.message().starts_with("faiss table") {
        e
    } else {
        e.context(format!("faiss table '{table}'"))
    }
}

#[derive(Default)]
pub struct FaissCursor {
    rows: Vec<(i64, IdValue, f32)>,
    pos: usize,
}

/// The decoded `xFilter` arguments.
struct Request {
    query: Option<Vec<f32>>,
    k: Option<usize>,
    params: SearchParams,
    filter: Option<HashSet<i64>>,
    /// Distance bounds from the WHERE clause: (`<` `[` `>` `]`, value).
    bounds: Vec<(char, f64)>,
}

fn parse_request(plan: &str, args: &[ValueRef], table: &str, content: &str) -> Result<Request> {
    let mut request = Request {
        query: None,
        k: None,
        params: SearchParams::default(),
        filter: None,
        bounds: Vec::new(),
    };
    let mut limit = None;
    let mut offset = 0usize;
    for (kind, arg) in plan.chars().zip(args) {
        match kind {
            'q' => request.query = Some(vector::parse(arg.cell()).map_err(|e| e.context("query"))?),
            'k' => request.k = Some(parse_k(arg.cell())?),
            'l' => limit = Some(parse_k(arg.cell()).map_err(|e| e.context("LIMIT"))?),
            'o' => {
                offset = match arg.cell() {
                    Cell::Integer(o) if o >= 0 => o as usize,
                    _ => 0,
                }
            }
            '<' | '[' | '>' | ']' => {
                let bound = match arg.cell() {
                    Cell::Integer(i) => i as f64,
                    Cell::Real(x) => x,
                    other => bail!(
                        "distance can only be compared with a number, not {}",
                        other.type_name()
                    ),
                };
                request.bounds.push((kind, bound));
            }
            'p' => {
                request.params = match arg.cell() {
                    Cell::Null => SearchParams::default(),
                    cell => SearchParams::parse(cell.as_str().ok_or_else(|| {
                        Error::new("params must be TEXT such as 'nprobe=16,rerank=2'")
                    })?)?,
                }
            }
            '=' | 'i' => {
                let mut set = HashSet::new();
                // What `rowid = v` would match: integers, integral reals, integer text.
                let mut add = |cell: Cell| match cell {
                    Cell::Integer(i) => {
                        set.insert(i);
                    }
                    Cell::Real(x) if x.fract() == 0.0 => {
                        set.insert(x as i64);
                    }
                    Cell::Text(_) => {
                        if let Some(i) = cell.as_str().and_then(|t| t.trim().parse().ok()) {
                            set.insert(i);
                        }
                    }
                    _ => {}
                };
                if kind == 'i' {
                    arg.for_each_in(&mut add)?;
                } else {
                    add(arg.cell());
                }
                request.filter = Some(match request.filter.take() {
                    Some(prev) => prev.intersection(&set).copied().collect(),
                    None => set,
                });
            }
            _ => bail!("internal: unknown plan step '{kind}'"),
        }
    }
    // SQLite skips OFFSET rows itself: fetch them too.
    request.k = request
        .k
        .or(limit.map(|l| (l + offset).min(crate::functions::MAX_K)));
    if request.query.is_none() {
        bail!(
            "faiss table '{table}' needs a query vector: SELECT … FROM {table} WHERE query = \
             :vector AND k = 10, or SELECT … FROM {table}(:vector, 10). It cannot be written: \
             write to its content table '{content}' instead"
        );
    }
    if request.k.is_none() {
        bail!("faiss table '{table}' needs k: add AND k = 10 (or LIMIT 10 on SQLite 3.41+)");
    }
    Ok(request)
}

impl Cursor for FaissCursor {
    type Table = FaissTable;

    fn filter(
        &mut self,
        table: &FaissTable,
        _idx_num: i32,
        idx_str: Option<&str>,
        args: &[ValueRef],
    ) -> Result<()> {
        let t = &table.table;
        let request = parse_request(idx_str.unwrap_or(""), args, &t.name, &t.meta.content)
            .map_err(|e| named(e, &t.name))?;
        let (vector, k) = (request.query.expect("checked"), request.k.expect("checked"));
        let query = Query {
            vector: &vector,
            k,
            filter: request.filter.as_ref(),
            params: &request.params,
        };
        self.rows = t
            .nearest(&table.state, &query)
            .map_err(|e| named(e, &t.name))?;
        self.rows.retain(|(_, _, score)| {
            let d = *score as f64;
            request.bounds.iter().all(|&(kind, b)| match kind {
                '<' => d < b,
                '[' => d <= b,
                '>' => d > b,
                _ => d >= b,
            })
        });
        self.pos = 0;
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        self.pos += 1;
        Ok(())
    }

    fn eof(&self) -> bool {
        self.pos >= self.rows.len()
    }

    fn column(&self, ctx: &Context, i: i32) -> Result<()> {
        let (_, id, score) = &self.rows[self.pos];
        ctx.set(&match i {
            COL_ID => match id {
                IdValue::Null => Output::Null,
                IdValue::Integer(v) => Output::Integer(*v),
                IdValue::Real(v) => Output::Real(*v),
                IdValue::Text(s) => Output::Text(s.to_string()),
            },
            COL_DISTANCE => Output::Real(*score as f64),
            _ => Output::Null,
        });
        Ok(())
    }

    fn rowid(&self) -> Result<i64> {
        Ok(self.rows[self.pos].0)
    }
}

/// Register the `faiss` module on a connection.
pub fn register(conn: Conn, state: &Arc<ConnState>) -> Result<()> {
    crate::sqlite::create_module::<FaissTable>(conn, "faiss", state.clone())
}
