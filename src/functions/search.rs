//! `faiss_search(database, table, embedding, k)` and `faiss_search_with_scores(…)` (SPEC §3).

use crate::content::{faiss_table_for, resolve_schema};
use crate::error::Result;
use crate::index::Hit;
use crate::json::{self, IdValue};
use crate::live::{LiveTable, Query, SearchParams};
use crate::registry::{registry, ConnState, Resolved};
use crate::sqlite::{Context, Output, ValueRef};
use crate::vector;

use super::{parse_k, parse_name};

pub fn search(ctx: &Context, state: &ConnState, args: &[ValueRef], scores: bool) -> Result<Output> {
    let database = parse_name(args[0].cell(), "database")?;
    let table = parse_name(args[1].cell(), "table")?;
    let query = vector::parse(args[2].cell()).map_err(|e| e.context("embedding"))?;
    let k = parse_k(args[3].cell())?;
    let conn = ctx.conn();
    let schema = resolve_schema(conn, database)?;
    // One read snapshot for everything below; its cookie validates the cached resolution.
    let held = conn.hold_read(&schema)?;
    let cookie = conn.schema_version(&schema, held.as_ref())?;
    let key = (schema.clone(), table.to_ascii_lowercase());
    let cached = state
        .resolved
        .lock()
        .expect("cache lock")
        .get(&key)
        .cloned();
    let resolved = match cached {
        Some((c, resolved)) if c == cookie => resolved,
        _ => {
            let resolved = match faiss_table_for(conn, &schema, table)? {
                Some(name) => {
                    let meta = LiveTable::open(conn, &schema, &name)?.meta;
                    Resolved::Live {
                        name,
                        meta: Box::new(meta),
                    }
                }
                None => Resolved::Plain,
            };
            let mut cache = state.resolved.lock().expect("cache lock");
            if cache.len() > 256 {
                cache.clear();
            }
            cache.insert(key, (cookie, resolved.clone()));
            resolved
        }
    };
    if let Resolved::Live { name, meta } = resolved {
        let live = LiveTable::new(conn, &schema, &name, *meta);
        let params = SearchParams::default();
        let query = Query {
            vector: &query,
            k,
            filter: None,
            params: &params,
        };
        let rows = live
            .nearest(state, &query)
            .map_err(|e| e.context(format!("faiss table '{name}'")))?;
        let out = json::list(&rows, |out, (_, id, score)| {
            push_result(out, id, *score, scores)
        });
        return Ok(Output::Text(out));
    }
    let found = registry().table_index(conn, state, &schema, table)?;
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
pub fn render(hits: &[Hit], ids: &[IdValue], scores: bool) -> String {
    json::list(hits, |out, hit| {
        push_result(out, &ids[hit.label as usize], hit.score, scores)
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
