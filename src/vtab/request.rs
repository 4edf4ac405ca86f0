//! The `faiss` table's `xFilter` arguments, decoded: what a search asks (one query vector,
//! many, or stored rows), k, parameters, filters, bounds and the partition, checked and bounded
//! before anything large is allocated. The plan they follow is `plan::QueryPlan`.

use std::collections::HashSet;

use crate::args::{parse_k, MAX_K};
use crate::engine::key::{Affinity, KeyPart};
use crate::engine::{LiveTable, SearchParams};
use crate::error::{bail, Error, Kind, Result};
use crate::sqlite::{Cell, Conn, Output, ValueRef};
use crate::vector;

use super::plan::{Bound, PlanArg, QueryPlan};

/// What a search looks for the neighbours of.
pub(super) enum Questions {
    /// `query = ?` or `query IN (…)`: vectors, each with the value it was given as.
    Vectors(Vec<(Output, Vec<f32>)>),
    /// `neighbours_of = ?` or `neighbours_of IN (…)`: stored rows, by faiss-table rowid.
    Rows(Vec<i64>),
}

/// The decoded `xFilter` arguments.
pub(super) enum Request {
    Search {
        questions: Questions,
        k: usize,
        params: SearchParams,
        filter: Option<HashSet<i64>>,
        /// Distance bounds from the WHERE clause.
        bounds: Vec<(Bound, f64)>,
        partition: Option<KeyPart>,
    },
    List {
        filter: Option<HashSet<i64>>,
        partition: Option<KeyPart>,
    },
}

/// What `rowid = v` would match: integers, integral reals, integer text.
pub(super) fn rowid_of(cell: Cell) -> Option<i64> {
    match cell {
        Cell::Integer(i) => Some(i),
        Cell::Real(x) if x.fract() == 0.0 => Some(x as i64),
        Cell::Text(_) => cell.as_str().and_then(|t| t.trim().parse().ok()),
        _ => None,
    }
}

/// The partition `value` names, converted as SQLite converts it for `column = value` (a text
/// `'2'` names partition 2 of an INTEGER column: Datasette's parameters are text).
fn partition_of(value: Cell, affinity: Affinity, conn: Conn) -> Result<KeyPart> {
    let text_of_real = |x: f64| {
        let mut stmt = conn.prepare("SELECT CAST(?1 AS TEXT)")?;
        stmt.bind_f64(1, x)?;
        stmt.step()?;
        Ok(stmt.text(0).unwrap_or_default())
    };
    KeyPart::compared_with(value, affinity, text_of_real)?
        .ok_or_else(|| Error::invalid("the partition cannot be NULL"))
}

pub(super) fn parse_request(
    plan: &QueryPlan,
    args: &[ValueRef],
    table: &LiveTable,
    partition_affinity: Affinity,
) -> Result<Request> {
    let (mut vectors, mut stored, mut k, mut limit, mut offset) = (None, None, None, None, 0usize);
    let mut params = SearchParams::default();
    let mut filter: Option<HashSet<i64>> = None;
    let mut bounds = Vec::new();
    let mut partition = None;
    let name = table.name();
    let mut null_query = false;
    for (arg, value) in plan.0.iter().zip(args) {
        match arg {
            // NULL: left out, when neighbours_of asks instead (the table-valued form).
            PlanArg::Query if value.cell() == Cell::Null => null_query = true,
            PlanArg::Query => {
                let vector = vector::parse(value.cell()).map_err(|e| e.context("query"))?;
                vectors = Some(vec![(owned(value.cell()), vector)]);
            }
            PlanArg::QueryIn => {
                // NULL matches nothing in an IN list: it asks nothing.
                let (mut given, mut floats, mut failed) = (Vec::new(), 0usize, None);
                value.for_each_in(|cell| {
                    if failed.is_some() || cell == Cell::Null {
                        return;
                    }
                    match vector::parse(cell) {
                        Ok(v)
                            if given.len() < MAX_QUESTIONS
                                && floats + v.len() <= MAX_QUERY_FLOATS =>
                        {
                            floats += v.len();
                            given.push((owned(cell), v));
                        }
                        Ok(_) => failed = Some(too_many_questions()),
                        Err(e) => {
                            let n = given.len() + 1;
                            failed = Some(e.context(format!("query (IN list value {n})")));
                        }
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
                vectors = Some(given);
            }
            PlanArg::NeighboursOf | PlanArg::NeighboursOfIn => {
                let mut rowids = Vec::new();
                let mut too_many = false;
                let most = MAX_QUESTIONS.min(MAX_QUERY_FLOATS / table.meta().dim.max(1));
                let mut push = |cell: Cell| {
                    if rowids.len() >= most {
                        too_many = true;
                    } else {
                        rowids.extend(rowid_of(cell));
                    }
                };
                if *arg == PlanArg::NeighboursOfIn {
                    value.for_each_in(&mut push)?;
                } else {
                    push(value.cell());
                }
                if too_many {
                    return Err(too_many_questions());
                }
                stored = Some(rowids);
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
            PlanArg::Partition => {
                let conn = table.conn();
                partition = Some(partition_of(value.cell(), partition_affinity, conn)?)
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
    // The table-valued form passes NULL for the arguments it leaves out: a NULL neighbours_of
    // beside a query is not a second question.
    let questions = match (vectors, stored) {
        (Some(_), Some(rows)) if !rows.is_empty() => {
            bail!("search by query or by neighbours_of, not both")
        }
        (Some(given), _) => Questions::Vectors(given),
        (None, Some(rows)) if !(null_query && rows.is_empty()) => Questions::Rows(rows),
        _ if null_query => bail!("query: vector is NULL"),
        _ => return Ok(Request::List { filter, partition }),
    };
    // SQLite skips OFFSET rows itself: fetch them too. A LIMIT counts the rows of every
    // question together, so it cannot stand for k when there are several.
    let many = plan.0.iter().any(|a| a.is_many());
    let Some(k) = k.or(limit.filter(|_| !many).map(|l| (l + offset).min(MAX_K))) else {
        let how = if many {
            " (a LIMIT counts the rows of every question together, so it cannot stand for k)"
        } else {
            " (or LIMIT 10 on SQLite 3.41+)"
        };
        return Err(
            Error::invalid(format!("faiss table '{name}' needs k: add AND k = 10{how}"))
                .naming_table(),
        );
    };
    Ok(Request::Search {
        questions,
        k,
        params,
        filter,
        bounds,
        partition,
    })
}

/// One search answers at most this many questions (query vectors or stored rows): each costs a
/// few hundred bytes of bookkeeping besides its vector and its k results.
const MAX_QUESTIONS: usize = 100_000;

/// The query vectors (or stored rows' vectors) of one search hold at most this many numbers
/// together (64 MB).
const MAX_QUERY_FLOATS: usize = 1 << 24;

fn too_many_questions() -> Error {
    Error::of(
        Kind::TooBig,
        format!(
            "one search answers at most {MAX_QUESTIONS} questions holding {MAX_QUERY_FLOATS} \
             numbers in all: split the IN list into several searches"
        ),
    )
}

/// A value as the statement gave it, to show in the result rows.
fn owned(cell: Cell) -> Output {
    match cell {
        Cell::Null => Output::Null,
        Cell::Integer(v) => Output::Integer(v),
        Cell::Real(v) => Output::Real(v),
        Cell::Text(t) => Output::Text(String::from_utf8_lossy(t).into_owned()),
        Cell::Blob(b) => Output::Blob(b.to_vec()),
    }
}
