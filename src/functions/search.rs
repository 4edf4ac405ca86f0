//! `faiss_search(database, table, embedding, k)` and `faiss_search_with_scores(…)` (SPEC §3).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::catalog::{object_type, resolve_schema};
use crate::engine::{self, search, LiveTable, Meta, Query, SearchParams};
use crate::error::{bail, Result};
use crate::index::{Hit, Metric};
use crate::json::{self, IdValue};
use crate::locks::lock;
use crate::plain;
use crate::registry::ConnState;
use crate::sqlite::{Context, Output, ValueRef};
use crate::vector;

use crate::args::{parse_k, parse_metric, parse_name};

/// The index `faiss_search` uses for a table name.
#[derive(Clone)]
enum Resolved {
    /// A plain table (or a view): its exact index.
    Plain { view: bool },
    /// A `faiss` table (named or over the table) and what it indexes.
    Faiss { name: String, meta: Box<Meta> },
}

/// What `faiss_search(db, table, …)` resolved `table` to on one connection, with the schema
/// cookie it was resolved under: valid until the schema changes.
#[derive(Default)]
pub(crate) struct ResolveCache(Mutex<HashMap<ResolveKey, (i64, Resolved)>>);

/// Schema, table and the metric asked for (None: not named).
type ResolveKey = (String, String, Option<Metric>);

pub(crate) fn search(
    ctx: &Context,
    state: &ConnState,
    cache: &ResolveCache,
    args: &[ValueRef],
    scores: bool,
) -> Result<Output> {
    let database = parse_name(args[0].cell(), "database")?;
    let table = parse_name(args[1].cell(), "table")?;
    let query = vector::parse(args[2].cell()).map_err(|e| e.context("embedding"))?;
    let k = parse_k(args[3].cell())?;
    // An optional fifth argument: the metric of the plain-table path.
    let metric = parse_metric(args.get(4).map(|a| a.cell()))?;
    let conn = ctx.conn();
    let schema = resolve_schema(conn, database)?;
    // One read snapshot for everything below; its cookie validates the cached resolution.
    let held = conn.hold_read(&schema)?;
    let cookie = conn.schema_version(&schema, held.as_ref())?;
    let key = (schema.clone(), table.to_ascii_lowercase(), metric);
    let cached = lock(&cache.0).get(&key).cloned();
    let resolved = match cached {
        Some((c, resolved)) if c == cookie => resolved,
        _ => {
            let resolved = match engine::resolve(conn, &schema, table, metric)? {
                Some((name, meta)) => Resolved::Faiss {
                    name,
                    meta: Box::new(meta),
                },
                None => Resolved::Plain {
                    view: object_type(conn, &schema, table)?.as_deref() == Some("view"),
                },
            };
            let mut cache = lock(&cache.0);
            if cache.len() > 256 {
                cache.clear();
            }
            cache.insert(key, (cookie, resolved.clone()));
            resolved
        }
    };
    let view = match resolved {
        Resolved::Plain { view } => view,
        Resolved::Faiss { name, meta } => {
            if let Some(m) = metric.filter(|m| *m != meta.metric) {
                bail!(
                    "faiss table '{name}' has metric {}, not {}: leave out the metric",
                    meta.metric.name(),
                    m.name()
                );
            }
            let live = LiveTable::with_meta(conn, &schema, &name, *meta);
            let params = SearchParams::default();
            let query = Query {
                vectors: std::slice::from_ref(&query),
                k,
                filter: None,
                params: &params,
                partition: None,
                exclude: &[],
            };
            let rows = search::nearest(&live, state, &query)
                .map_err(|e| e.in_table(&name))?
                .pop()
                .unwrap_or_default();
            if rows.iter().any(|r| matches!(r.id, IdValue::Blob(_))) {
                bail!(
                    "faiss table '{name}' returns BLOB ids, which JSON cannot hold: select from \
                     it (SELECT id, distance FROM {name}(:q, :k)), or give it id = <an INTEGER \
                     or TEXT column>"
                );
            }
            let out = json::list(&rows, |out, found| {
                push_result(out, &found.id, found.distance, scores)
            });
            return Ok(Output::Text(out));
        }
    };
    let metric = metric.unwrap_or(Metric::L2);
    let found = plain::table_index(conn, state, (&schema, table, view), metric)?;
    let hits = if found.has_vectors() {
        found
            .index
            .search(&query, k)
            .map_err(|e| e.context(format!("table '{table}'")))?
    } else {
        Vec::new()
    };
    Ok(Output::Text(render(&hits, &found.ids, scores)))
}

/// `[id, …]` or `[[id, score], …]`, as datasette-faiss prints them.
pub(crate) fn render(hits: &[Hit], ids: &[IdValue], scores: bool) -> String {
    json::list(hits, |out, hit| {
        push_result(out, &ids[hit.label as usize], hit.distance, scores)
    })
}

/// `id` or `[id, score]`.
fn push_result(out: &mut String, id: &IdValue, score: f32, scores: bool) {
    if scores {
        out.push('[');
        json::push_id(out, id);
        out.push_str(", ");
        json::push_float(out, score as f64);
        out.push(']');
    } else {
        json::push_id(out, id);
    }
}
