//! The `faiss` virtual table (SPEC §4): an index over a content table, searched with
//! `WHERE query = :q AND k = 10` or `name(:q, 10)`, maintained with FTS5-style commands.
//!
//! Columns: `id`, `distance`, the partition column when the table is partitioned, then the
//! hidden `query`, `k`, `params`, `neighbours_of` and the command column named after the table.
//! The query plan is `plan::QueryPlan` (ARCHITECTURE.md, "Query plan encoding").

use std::cell::RefCell;
use std::sync::Arc;

use crate::catalog::declared_type;
use crate::engine::key::{Affinity, KeyPart};
use crate::engine::{commands, search, LiveTable, Query, SHADOW_TABLES};
use crate::error::{bail, Result};
use crate::json::IdValue;
use crate::registry::ConnState;
use crate::sqlite::{
    op, quote_ident, Cell, Conn, Context, Cursor, IndexInfo, Output, Plan, VTab, ValueRef,
};

use super::options;
use super::plan::{Bound, PlanArg, QueryPlan};
use super::request::{parse_request, Questions, Request};

const COL_ID: i32 = 0;
const COL_DISTANCE: i32 = 1;

/// Where the other columns are: after the partition column, when there is one.
#[derive(Debug, Clone, Copy)]
struct Columns {
    partition: Option<i32>,
    query: i32,
    k: i32,
    params: i32,
    neighbours_of: i32,
    command: i32,
}

impl Columns {
    fn of(table: &LiveTable) -> Columns {
        let first = if table.meta().partition.is_some() {
            3
        } else {
            2
        };
        Columns {
            partition: (first == 3).then_some(2),
            query: first,
            k: first + 1,
            params: first + 2,
            neighbours_of: first + 3,
            command: first + 4,
        }
    }
}

pub(crate) struct FaissTable {
    table: LiveTable,
    state: Arc<ConnState>,
    columns: Columns,
    /// How `partition = value` converts the value: the partition column's affinity.
    partition_affinity: Affinity,
}

impl FaissTable {
    fn new(table: LiveTable, state: &Arc<ConnState>) -> Result<(String, FaissTable)> {
        let partition = match &table.meta().partition {
            Some(p) => format!("{}, ", quote_ident(p)),
            None => String::new(),
        };
        let declaration = format!(
            "CREATE TABLE x(id, distance REAL, {partition}query HIDDEN, k HIDDEN, params HIDDEN, \
             neighbours_of HIDDEN, {} HIDDEN)",
            quote_ident(table.name())
        );
        let columns = Columns::of(&table);
        let partition_affinity = match &table.meta().partition {
            Some(column) => Affinity::of_declared(&declared_type(
                table.conn(),
                table.schema(),
                &table.meta().content,
                column,
            )?),
            None => Affinity::Blob,
        };
        let table = FaissTable {
            table,
            state: state.clone(),
            columns,
            partition_affinity,
        };
        Ok((declaration, table))
    }
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
        FaissTable::new(table, aux)
    }

    fn connect(conn: Conn, aux: &Arc<ConnState>, args: &[String]) -> Result<(String, Self)> {
        let (schema, name) = names(args)?;
        let table = LiveTable::open(conn, schema, name)?;
        FaissTable::new(table, aux)
    }

    fn best_index(&self, info: &mut IndexInfo) -> Result<Plan> {
        let mut plan = QueryPlan::default();
        let cols = self.columns;
        for c in info.constraints() {
            // Upper bounds on the distance keep a prefix of the nearest-first results, so
            // filtering the k results is what SQL would do (and LIMIT can still be k).
            let arg = match (c.column, c.op) {
                (col, op::EQ) if col == cols.query => PlanArg::Query,
                (col, op::EQ) if col == cols.neighbours_of => PlanArg::NeighboursOf,
                (col, op::EQ) if col == cols.k => PlanArg::K,
                (col, op::EQ) if col == cols.params => PlanArg::Params,
                (col, op::EQ) if Some(col) == cols.partition => PlanArg::Partition,
                (-1, op::EQ) => PlanArg::Rowid,
                (_, op::LIMIT) => PlanArg::Limit,
                (_, op::OFFSET) => PlanArg::Offset,
                (COL_DISTANCE, op::LT) => PlanArg::Distance(Bound::Lt),
                (COL_DISTANCE, op::LE) => PlanArg::Distance(Bound::Le),
                _ => continue,
            };
            if !c.usable {
                // A query or partition that comes from another table of a join: this order
                // cannot run; SQLite finds the one where the other table is read first.
                if arg.searches() || arg == PlanArg::Partition {
                    return Ok(Plan::Unusable);
                }
                continue;
            }
            // An IN list is taken whole: every query vector (or stored row) of it is answered
            // by one search, and `rowid IN (…)` is one filter set.
            let arg = match arg {
                PlanArg::Query if info.take_in_list(&c) => PlanArg::QueryIn,
                PlanArg::NeighboursOf if info.take_in_list(&c) => PlanArg::NeighboursOfIn,
                PlanArg::Rowid if info.take_in_list(&c) => PlanArg::RowidIn,
                // Without whole-list IN support an IN would arrive one value per call and
                // yield wrong top-k sets: leave rowid terms to SQLite.
                PlanArg::Rowid if crate::sqlite::api::libversion_number() < 3_038_000 => continue,
                arg => arg,
            };
            plan.0.push(arg);
            let omit = !matches!(arg, PlanArg::Limit | PlanArg::Offset);
            info.use_constraint(&c, plan.0.len() as i32, omit);
        }
        // Results come nearest first: ORDER BY distance (ascending) needs no sort, unless
        // several queries' results follow one another.
        let many = plan.0.iter().any(|a| a.is_many());
        if let ([(COL_DISTANCE, false)], false) = (info.order_by().as_slice(), many) {
            info.set_order_by_consumed();
        }
        // A search reads the whole index, a listing every indexed row: both cost far more than
        // a lookup by key, so in a join SQLite runs the search once, as the outer loop, and
        // looks the content rows up by key afterwards (never a search per content row).
        let (cost, rows) = if plan.0.iter().any(|a| a.searches()) {
            (1e6, 10)
        } else {
            (1e12, 1_000_000)
        };
        info.set_plan(0, &plan.encode(), cost, rows);
        Ok(Plan::Use)
    }

    fn open(&self) -> Result<FaissCursor> {
        Ok(FaissCursor {
            rows: Rows::Listed(Vec::new()),
            pos: 0,
            located: RefCell::new(None),
        })
    }

    fn update(&mut self, args: &[ValueRef]) -> Result<Option<i64>> {
        let command = args
            .get(2 + self.columns.command as usize)
            .map(|v| v.cell());
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
    Found {
        /// Each result with the position of the question it answers in `asked`.
        rows: Vec<(usize, search::Found)>,
        asked: Vec<Asked>,
        /// The partition searched (partitioned tables), shown in every row.
        partition: Option<KeyPart>,
    },
    /// Indexed rows; where each is (rowid, id) is read when a column asks for it.
    Listed(Vec<search::Listed>),
}

/// One question of a search, as its result rows show it in `query` and `neighbours_of`.
struct Asked {
    query: Output,
    neighbours_of: Output,
}

/// Where a row is in the content table now: its rowid and `id` (`None`: gone).
type Location = Option<(i64, IdValue)>;

pub(crate) struct FaissCursor {
    rows: Rows,
    pos: usize,
    /// Where the listed row at `.0` is, read once per row.
    located: RefCell<Option<(usize, Location)>>,
}

fn id_output(id: &IdValue) -> Output {
    match id {
        IdValue::Null => Output::Null,
        IdValue::Integer(v) => Output::Integer(*v),
        IdValue::Real(v) => Output::Real(*v),
        IdValue::Text(s) => Output::Text(s.to_string()),
        IdValue::Blob(b) => Output::Blob(b.to_vec()),
    }
}

fn part_output(part: Option<&KeyPart>) -> Output {
    match part {
        None => Output::Null,
        Some(KeyPart::Int(v)) => Output::Integer(*v),
        Some(KeyPart::Real(v)) => Output::Real(*v),
        Some(KeyPart::Text(v)) => Output::Text(String::from_utf8_lossy(v).into_owned()),
        Some(KeyPart::Blob(v)) => Output::Blob(v.clone()),
    }
}

impl FaissCursor {
    /// Where the listed row at the cursor is now (read once per row).
    fn located(
        &self,
        table: &FaissTable,
        rows: &[search::Listed],
    ) -> Result<Option<(i64, IdValue)>> {
        if let Some((pos, at)) = &*self.located.borrow() {
            if *pos == self.pos {
                return Ok(at.clone());
            }
        }
        let at = search::locate(&table.table, &rows[self.pos])?;
        *self.located.borrow_mut() = Some((self.pos, at.clone()));
        Ok(at)
    }
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
        let request = parse_request(&plan, args, t, table.partition_affinity)
            .map_err(|e| e.in_table(t.name()))?;
        self.rows = match request {
            Request::List { filter, partition } => Rows::Listed(
                search::listing(t, &table.state, filter.as_ref(), partition.as_ref())
                    .map_err(|e| e.in_table(t.name()))?,
            ),
            Request::Search {
                questions,
                k,
                params,
                filter,
                bounds,
                partition,
            } => {
                let (asked, vectors, exclude) = match questions {
                    Questions::Vectors(given) => {
                        let (asked, vectors): (Vec<_>, Vec<_>) = given
                            .into_iter()
                            .map(|(value, v)| {
                                let asked = Asked {
                                    query: value,
                                    neighbours_of: Output::Null,
                                };
                                (asked, v)
                            })
                            .unzip();
                        (asked, vectors, Vec::new())
                    }
                    // A stored row with no vector (gone, NULL, another dimension) asks nothing.
                    Questions::Rows(rowids) => {
                        let stored = search::stored_vectors(t, &table.state, &rowids)
                            .map_err(|e| e.in_table(t.name()))?;
                        let mut asked = Vec::new();
                        let (mut vectors, mut exclude) = (Vec::new(), Vec::new());
                        for (rowid, vector) in rowids.into_iter().zip(stored) {
                            if let Some(v) = vector {
                                asked.push(Asked {
                                    query: Output::Null,
                                    neighbours_of: Output::Integer(rowid),
                                });
                                vectors.push(v);
                                exclude.push(Some(rowid));
                            }
                        }
                        (asked, vectors, exclude)
                    }
                };
                let query = Query {
                    vectors: &vectors,
                    k,
                    filter: filter.as_ref(),
                    params: &params,
                    partition: partition.as_ref(),
                    exclude: &exclude,
                };
                let found = if vectors.is_empty() {
                    Vec::new()
                } else {
                    search::nearest(t, &table.state, &query).map_err(|e| e.in_table(t.name()))?
                };
                let rows = found
                    .into_iter()
                    .enumerate()
                    .flat_map(|(i, rows)| rows.into_iter().map(move |r| (i, r)))
                    .filter(|(_, found)| {
                        let d = found.distance as f64;
                        bounds.iter().all(|&(bound, b)| bound.admits(d, b))
                    })
                    .collect();
                Rows::Found {
                    rows,
                    asked,
                    partition,
                }
            }
        };
        self.pos = 0;
        *self.located.borrow_mut() = None;
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        self.pos += 1;
        Ok(())
    }

    fn eof(&self) -> bool {
        self.pos
            >= match &self.rows {
                Rows::Found { rows, .. } => rows.len(),
                Rows::Listed(rows) => rows.len(),
            }
    }

    fn column(&self, table: &FaissTable, ctx: &Context, i: i32) -> Result<()> {
        let cols = table.columns;
        let output = match (&self.rows, i) {
            (Rows::Found { rows, .. }, COL_ID) => id_output(&rows[self.pos].1.id),
            (Rows::Found { rows, .. }, COL_DISTANCE) => {
                Output::Real(rows[self.pos].1.distance as f64)
            }
            (Rows::Found { partition, .. }, i) if Some(i) == cols.partition => {
                part_output(partition.as_ref())
            }
            (Rows::Found { rows, asked, .. }, i) if i == cols.query => {
                asked[rows[self.pos].0].query.clone()
            }
            (Rows::Found { rows, asked, .. }, i) if i == cols.neighbours_of => {
                asked[rows[self.pos].0].neighbours_of.clone()
            }
            (Rows::Listed(rows), COL_ID) => match self.located(table, rows)? {
                Some((_, id)) => id_output(&id),
                None => Output::Null,
            },
            (Rows::Listed(rows), i) if Some(i) == table.columns.partition => {
                part_output(rows[self.pos].part.as_ref())
            }
            _ => Output::Null,
        };
        ctx.set(&output);
        Ok(())
    }

    fn rowid(&self, table: &FaissTable) -> Result<i64> {
        Ok(match &self.rows {
            Rows::Found { rows, .. } => rows[self.pos].1.rowid,
            Rows::Listed(rows) => match self.located(table, rows)? {
                Some((rowid, _)) => rowid,
                None => rows[self.pos].handle,
            },
        })
    }
}

/// Register the `faiss` module on a connection.
pub(crate) fn register(conn: Conn, state: &Arc<ConnState>) -> Result<()> {
    crate::sqlite::create_module::<FaissTable>(conn, "faiss", state.clone())
}
