//! The `faiss` virtual table (SPEC §4): an index over a content table, searched with
//! `WHERE query = :q AND k = 10` or `name(:q, 10)`, maintained with FTS5-style commands.
//!
//! Query plan encoding (ARCHITECTURE.md): `idxStr` has one character per `xFilter` argument,
//! in argument order: `q` query vector, `k` k, `l` LIMIT, `o` OFFSET, `p` params, `=` a rowid,
//! `i` a whole `rowid IN (…)` list, `<` `[` `>` `]` a distance bound (<, <=, >, >=) on the
//! nearer side.

use std::collections::HashSet;
use std::sync::Arc;

use crate::args::{parse_k, MAX_K};
use crate::engine::{commands, search, LiveTable, Query, SearchParams, SHADOW_TABLES};
use crate::error::{bail, Error, Result};
use crate::json::IdValue;
use crate::registry::ConnState;
use crate::sqlite::{
    op, quote_ident, Cell, Conn, Context, Cursor, IndexInfo, Output, Plan, VTab, ValueRef,
};
use crate::vector;

use super::options;
use super::plan::{Bound, PlanArg, QueryPlan};

const COL_ID: i32 = 0;
const COL_DISTANCE: i32 = 1;
const COL_QUERY: i32 = 2;
const COL_K: i32 = 3;
const COL_PARAMS: i32 = 4;
const COL_COMMAND: i32 = 5;

pub(crate) struct FaissTable {
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

impl VTab for FaissTable {
    type Aux = Arc<ConnState>;
    type Cursor = FaissCursor;
    const SHADOW_TABLES: &'static [&'static str] = SHADOW_TABLES;
    const CREATES: bool = true;

    fn create(conn: Conn, aux: &Arc<ConnState>, args: &[String]) -> Result<(String, Self)> {
        let (schema, name) = names(args)?;
        let definition = options::parse(&args[3..]).map_err(|e| e.context("faiss"))?;
        let table = commands::create(conn, aux, (schema, name), &definition)?;
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
        let mut plan = QueryPlan::default();
        for c in info.constraints() {
            // Upper bounds on the distance keep a prefix of the nearest-first results, so
            // filtering the k results is what SQL would do (and LIMIT can still be k).
            let arg = match (c.column, c.op) {
                (COL_QUERY, op::EQ) => PlanArg::Query,
                (COL_K, op::EQ) => PlanArg::K,
                (COL_PARAMS, op::EQ) => PlanArg::Params,
                (-1, op::EQ) => PlanArg::Rowid,
                (_, op::LIMIT) => PlanArg::Limit,
                (_, op::OFFSET) => PlanArg::Offset,
                (COL_DISTANCE, op::LT) => PlanArg::Distance(Bound::Lt),
                (COL_DISTANCE, op::LE) => PlanArg::Distance(Bound::Le),
                _ => continue,
            };
            if !c.usable {
                if arg == PlanArg::Query {
                    return Ok(Plan::Unusable);
                }
                continue;
            }
            let arg = if arg == PlanArg::Rowid && info.take_in_list(&c) {
                PlanArg::RowidIn
            } else if arg == PlanArg::Rowid && crate::sqlite::api::libversion_number() < 3_038_000 {
                // Without whole-list IN support an IN would arrive one value per call and
                // yield wrong top-k sets: leave rowid terms to SQLite.
                continue;
            } else {
                arg
            };
            plan.0.push(arg);
            let omit = !matches!(arg, PlanArg::Limit | PlanArg::Offset);
            info.use_constraint(&c, plan.0.len() as i32, omit);
        }
        // Results come nearest first: ORDER BY distance (ascending) needs no sort.
        if let [(COL_DISTANCE, false)] = info.order_by().as_slice() {
            info.set_order_by_consumed();
        }
        let cost = if plan.0.contains(&PlanArg::Query) {
            10.0
        } else {
            1e12
        };
        info.set_plan(0, &plan.encode(), cost, 10);
        Ok(Plan::Use)
    }

    fn open(&self) -> Result<FaissCursor> {
        Ok(FaissCursor {
            rows: Rows::Listed(Vec::new()),
            pos: 0,
        })
    }

    fn update(&mut self, args: &[ValueRef]) -> Result<Option<i64>> {
        let command = args.get(2 + COL_COMMAND as usize).map(|v| v.cell());
        let is_insert = args.len() > 1 && args[0].cell() == Cell::Null;
        let (t, state) = (&self.table, &self.state);
        match (is_insert, command) {
            (true, Some(Cell::Text(text))) => match String::from_utf8_lossy(text).trim() {
                "rebuild" => commands::rebuild(t, state)?,
                "optimize" => commands::optimize(t, state)?,
                "integrity-check" => commands::integrity_check(t, state)?,
                other => bail!(
                    "unknown command '{other}' for faiss table '{}': use 'rebuild', 'optimize' \
                     or 'integrity-check'",
                    t.name()
                ),
            },
            _ => bail!(
                "faiss table '{}' is an index over '{}': write to '{}' instead. Commands: \
                 INSERT INTO {0}({0}) VALUES ('rebuild' | 'optimize' | 'integrity-check')",
                t.name(),
                t.meta().content,
                t.meta().content
            ),
        }
        Ok(None)
    }

    fn destroy(&mut self) -> Result<()> {
        commands::destroy(&self.table, &self.state)
    }

    fn rename(&mut self, new_name: &str) -> Result<()> {
        commands::rename(&mut self.table, &self.state, new_name)
    }
}

/// What a cursor holds: the nearest rows of a search, or, without a query, the indexed rows
/// (`SELECT count(*)`, `SELECT * … LIMIT 20`: Datasette's table page, sqlite-utils).
enum Rows {
    Found(Vec<search::Found>),
    /// Indexed rowids, ascending; their ids are read when a column asks for them.
    Listed(Vec<i64>),
}

pub(crate) struct FaissCursor {
    rows: Rows,
    pos: usize,
}

/// The decoded `xFilter` arguments.
enum Request {
    Search {
        query: Vec<f32>,
        k: usize,
        params: SearchParams,
        filter: Option<HashSet<i64>>,
        /// Distance bounds from the WHERE clause.
        bounds: Vec<(Bound, f64)>,
    },
    List {
        filter: Option<HashSet<i64>>,
    },
}

/// What `rowid = v` would match: integers, integral reals, integer text.
fn rowid_of(cell: Cell) -> Option<i64> {
    match cell {
        Cell::Integer(i) => Some(i),
        Cell::Real(x) if x.fract() == 0.0 => Some(x as i64),
        Cell::Text(_) => cell.as_str().and_then(|t| t.trim().parse().ok()),
        _ => None,
    }
}

fn parse_request(plan: &QueryPlan, args: &[ValueRef], table: &LiveTable) -> Result<Request> {
    let (mut query, mut k, mut limit, mut offset) = (None, None, None, 0usize);
    let mut params = SearchParams::default();
    let mut filter: Option<HashSet<i64>> = None;
    let mut bounds = Vec::new();
    for (arg, value) in plan.0.iter().zip(args) {
        match arg {
            PlanArg::Query => {
                query = Some(vector::parse(value.cell()).map_err(|e| e.context("query"))?)
            }
            PlanArg::K => k = Some(parse_k(value.cell())?),
            PlanArg::Limit => limit = Some(parse_k(value.cell()).map_err(|e| e.context("LIMIT"))?),
            PlanArg::Offset => {
                offset = match value.cell() {
                    Cell::Integer(o) if o >= 0 => o as usize,
                    _ => 0,
                }
            }
            PlanArg::Distance(bound) => {
                let b = match value.cell() {
                    Cell::Integer(i) => i as f64,
                    Cell::Real(x) => x,
                    other => bail!(
                        "distance can only be compared with a number, not {}",
                        other.type_name()
                    ),
                };
                bounds.push((*bound, b));
            }
            PlanArg::Params => {
                params = match value.cell() {
                    Cell::Null => SearchParams::default(),
                    cell => SearchParams::parse(cell.as_str().ok_or_else(|| {
                        Error::invalid("params must be TEXT such as 'nprobe=16,rerank=2'")
                    })?)?,
                }
            }
            PlanArg::Rowid | PlanArg::RowidIn => {
                let mut set = HashSet::new();
                if *arg == PlanArg::RowidIn {
                    value.for_each_in(|cell| set.extend(rowid_of(cell)))?;
                } else {
                    set.extend(rowid_of(value.cell()));
                }
                filter = Some(match filter.take() {
                    Some(prev) => prev.intersection(&set).copied().collect(),
                    None => set,
                });
            }
        }
    }
    let Some(query) = query else {
        return Ok(Request::List { filter });
    };
    // SQLite skips OFFSET rows itself: fetch them too.
    let Some(k) = k.or(limit.map(|l| (l + offset).min(MAX_K))) else {
        let name = table.name();
        return Err(Error::invalid(format!(
            "faiss table '{name}' needs k: add AND k = 10 (or LIMIT 10 on SQLite 3.41+)"
        ))
        .naming_table());
    };
    Ok(Request::Search {
        query,
        k,
        params,
        filter,
        bounds,
    })
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
        let plan = QueryPlan::parse(idx_str.unwrap_or(""))?;
        let request = parse_request(&plan, args, t).map_err(|e| e.in_table(t.name()))?;
        self.rows = match request {
            Request::List { filter } => Rows::Listed(
                search::listing(t, &table.state, filter.as_ref())
                    .map_err(|e| e.in_table(t.name()))?,
            ),
            Request::Search {
                query,
                k,
                params,
                filter,
                bounds,
            } => {
                let query = Query {
                    vector: &query,
                    k,
                    filter: filter.as_ref(),
                    params: &params,
                };
                let mut found =
                    search::nearest(t, &table.state, &query).map_err(|e| e.in_table(t.name()))?;
                found.retain(|(_, _, distance)| {
                    let d = *distance as f64;
                    bounds.iter().all(|&(bound, b)| bound.admits(d, b))
                });
                Rows::Found(found)
            }
        };
        self.pos = 0;
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        self.pos += 1;
        Ok(())
    }

    fn eof(&self) -> bool {
        self.pos
            >= match &self.rows {
                Rows::Found(found) => found.len(),
                Rows::Listed(rowids) => rowids.len(),
            }
    }

    fn column(&self, table: &FaissTable, ctx: &Context, i: i32) -> Result<()> {
        let id_output = |id: &IdValue| match id {
            IdValue::Null => Output::Null,
            IdValue::Integer(v) => Output::Integer(*v),
            IdValue::Real(v) => Output::Real(*v),
            IdValue::Text(s) => Output::Text(s.to_string()),
        };
        let output = match (&self.rows, i) {
            (Rows::Found(found), COL_ID) => id_output(&found[self.pos].1),
            (Rows::Found(found), COL_DISTANCE) => Output::Real(found[self.pos].2 as f64),
            (Rows::Listed(rowids), COL_ID) => {
                let ids = search::ids_of(&table.table, &rowids[self.pos..self.pos + 1])?;
                ids.into_iter()
                    .next()
                    .flatten()
                    .map_or(Output::Null, |id| id_output(&id))
            }
            _ => Output::Null,
        };
        ctx.set(&output);
        Ok(())
    }

    fn rowid(&self) -> Result<i64> {
        Ok(match &self.rows {
            Rows::Found(found) => found[self.pos].0,
            Rows::Listed(rowids) => rowids[self.pos],
        })
    }
}

/// Register the `faiss` module on a connection.
pub(crate) fn register(conn: Conn, state: &Arc<ConnState>) -> Result<()> {
    crate::sqlite::create_module::<FaissTable>(conn, "faiss", state.clone())
}
