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
        let ascending = self.table.meta().metric.ascending();
        let mut plan = QueryPlan::default();
        for c in info.constraints() {
            // Distance bounds on the nearer side keep a prefix of the nearest-first results,
            // so filtering the k results is what SQL would do (and LIMIT can still be k).
            let arg = match (c.column, c.op) {
                (COL_QUERY, op::EQ) => PlanArg::Query,
                (COL_K, op::EQ) => PlanArg::K,
                (COL_PARAMS, op::EQ) => PlanArg::Params,
                (-1, op::EQ) => PlanArg::Rowid,
                (_, op::LIMIT) => PlanArg::Limit,
                (_, op::OFFSET) => PlanArg::Offset,
                (COL_DISTANCE, op::LT) if ascending => PlanArg::Distance(Bound::Lt),
                (COL_DISTANCE, op::LE) if ascending => PlanArg::Distance(Bound::Le),
                (COL_DISTANCE, op::GT) if !ascending => PlanArg::Distance(Bound::Gt),
                (COL_DISTANCE, op::GE) if !ascending => PlanArg::Distance(Bound::Ge),
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
        if let [(COL_DISTANCE, desc)] = info.order_by().as_slice() {
            if *desc != ascending {
                info.set_order_by_consumed();
            }
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
        Ok(FaissCursor::default())
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

#[derive(Default)]
pub(crate) struct FaissCursor {
    rows: Vec<search::Found>,
    pos: usize,
}

/// The decoded `xFilter` arguments.
struct Request {
    query: Vec<f32>,
    k: usize,
    params: SearchParams,
    filter: Option<HashSet<i64>>,
    /// Distance bounds from the WHERE clause.
    bounds: Vec<(Bound, f64)>,
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
    let name = table.name();
    let Some(query) = query else {
        return Err(Error::invalid(format!(
            "faiss table '{name}' needs a query vector: SELECT … FROM {name} WHERE query = \
             :vector AND k = 10, or SELECT … FROM {name}(:vector, 10). It cannot be written: \
             write to its content table '{}' instead",
            table.meta().content
        ))
        .naming_table());
    };
    // SQLite skips OFFSET rows itself: fetch them too.
    let Some(k) = k.or(limit.map(|l| (l + offset).min(MAX_K))) else {
        return Err(Error::invalid(format!(
            "faiss table '{name}' needs k: add AND k = 10 (or LIMIT 10 on SQLite 3.41+)"
        ))
        .naming_table());
    };
    Ok(Request {
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
        let query = Query {
            vector: &request.query,
            k: request.k,
            filter: request.filter.as_ref(),
            params: &request.params,
        };
        self.rows = search::nearest(t, &table.state, &query).map_err(|e| e.in_table(t.name()))?;
        self.rows.retain(|(_, _, score)| {
            let d = *score as f64;
            request.bounds.iter().all(|&(bound, b)| bound.admits(d, b))
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
pub(crate) fn register(conn: Conn, state: &Arc<ConnState>) -> Result<()> {
    crate::sqlite::create_module::<FaissTable>(conn, "faiss", state.clone())
}
