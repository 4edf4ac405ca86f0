//! The arguments of `CREATE VIRTUAL TABLE … USING faiss(key = value, …)`, parsed into the
//! engine's [`Definition`].

use crate::engine::{Definition, Predicate, SearchParams, DEFAULT_TRAIN_SIZE};
use crate::error::{bail, Result};
use crate::index::Metric;
use crate::vector::MAX_DIM;

/// Largest training sample accepted (rows).
pub(crate) const MAX_TRAIN_SIZE: usize = 10_000_000;

const KEYS: &str =
    "content, column, id, factory, metric, train_size, params, dim, where, partition, deterministic";

/// Strip one level of SQL quoting: `'a''b'` → `a'b`, `"x"` → `x`, `[x]` → `x`.
fn unquote(value: &str) -> String {
    let v = value.trim();
    let b = v.as_bytes();
    if b.len() >= 2 {
        let (first, last) = (b[0], b[b.len() - 1]);
        if (first == b'\'' || first == b'"' || first == b'`') && last == first {
            let q = first as char;
            return v[1..v.len() - 1].replace(&format!("{q}{q}"), &q.to_string());
        }
        if first == b'[' && last == b']' {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

/// Parse the module arguments (everything after module, schema and table names).
pub(crate) fn parse(args: &[String]) -> Result<Definition> {
    let mut content = None;
    let mut column = None;
    let mut id = None;
    let mut factory = None;
    let mut metric = None;
    let mut train_size = None;
    let mut params = None;
    let mut dim = None;
    let mut predicate = None;
    let mut partition = None;
    let mut deterministic = None;
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            bail!("argument '{arg}' is not key = value (keys: {KEYS})");
        };
        let key = key.trim().to_ascii_lowercase();
        let value = unquote(value);
        if value.is_empty() {
            bail!("option {key} has an empty value");
        }
        let slot: &mut Option<String> = match key.as_str() {
            "content" => &mut content,
            "column" => &mut column,
            "id" => &mut id,
            "factory" => &mut factory,
            "metric" => &mut metric,
            "train_size" => &mut train_size,
            "params" => &mut params,
            "dim" => &mut dim,
            "where" => &mut predicate,
            "partition" => &mut partition,
            "deterministic" => &mut deterministic,
            other => bail!("unknown option '{other}' (options: {KEYS})"),
        };
        if slot.replace(value).is_some() {
            bail!("option {key} is given twice");
        }
    }
    let Some(content) = content else {
        bail!("the content option is required: faiss(content = <table>, …)");
    };
    let factory = factory.unwrap_or_else(|| "Flat".to_string());
    if factory.len() > 256 || factory.contains('\0') {
        bail!("factory string is too long");
    }
    let number = |key: &str, value: Option<String>, max: usize| -> Result<Option<usize>> {
        match value {
            None => Ok(None),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
                _ => bail!("{key} = {v}: must be an integer from 1 to {max}"),
            },
        }
    };
    if let Some(p) = &partition {
        let reserved = ["id", "distance", "query", "k", "params", "rowid"];
        if reserved.iter().any(|r| p.eq_ignore_ascii_case(r)) {
            bail!(
                "partition = {p}: the faiss table has its own column named {p}; \
                 a partition column cannot be named id, distance, query, k, params or rowid \
                 (index a view that renames it: CREATE VIEW v AS SELECT *, {p} AS part FROM …)"
            );
        }
    }
    Ok(Definition {
        content,
        column: column.unwrap_or_else(|| "embedding".to_string()),
        id: id.filter(|i| !i.eq_ignore_ascii_case("rowid")),
        factory,
        metric: metric.as_deref().map_or(Ok(Metric::L2), Metric::parse)?,
        train_size: number("train_size", train_size, MAX_TRAIN_SIZE)?.unwrap_or(DEFAULT_TRAIN_SIZE),
        params: SearchParams::parse(params.as_deref().unwrap_or(""))?,
        dim: number("dim", dim, MAX_DIM)?,
        deterministic: match deterministic.as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(v) => bail!("deterministic = {v}: must be 0 or 1"),
        },
        predicate: predicate.as_deref().map(Predicate::parse).transpose()?,
        partition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Definition> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn refuses_a_partition_named_like_a_column_of_the_faiss_table() {
        for name in ["id", "Distance", "query", "k", "params", "rowid"] {
            let e = parse_strs(&["content=t", &format!("partition={name}")]).unwrap_err();
            assert!(e.to_string().contains("cannot be named"), "{e}");
        }
        assert!(parse_strs(&["content=t", "partition=tenant"]).is_ok());
    }

    #[test]
    fn parses_all_options() {
        let o = parse_strs(&[
            "content = docs",
            " column=\"vec\"",
            "id = doc_id",
            "factory = 'IVF4,Flat'",
            "metric = cosine",
            "train_size = 100",
            "params = 'nprobe=2, rerank=3'",
            "dim = 8",
        ])
        .unwrap();
        assert_eq!(o.content, "docs");
        assert_eq!(o.column, "vec");
        assert_eq!(o.id.as_deref(), Some("doc_id"));
        assert_eq!(o.factory, "IVF4,Flat");
        assert_eq!(o.metric, Metric::Cosine);
        assert_eq!(o.train_size, 100);
        assert_eq!(o.params.rerank, Some(3));
        assert_eq!(o.dim, Some(8));
        let d = parse_strs(&["content=[my docs]", "id=rowid"]).unwrap();
        assert_eq!(
            (d.content.as_str(), d.column.as_str(), d.id),
            ("my docs", "embedding", None)
        );
        assert_eq!(d.factory, "Flat");
        assert_eq!(parse_strs(&["content='it''s'"]).unwrap().content, "it's");
    }

    #[test]
    fn rejects_bad_options() {
        for (args, needle) in [
            (&["factory=Flat"][..], "content option is required"),
            (&["content=t", "colour=red"][..], "unknown option 'colour'"),
            (&["content=t", "content=u"][..], "given twice"),
            (&["content=t", "metric=manhattan"][..], "unknown metric"),
            (&["content=t", "dim=0"][..], "dim = 0"),
            (&["content=t", "dim=70000"][..], "dim = 70000"),
            (&["content=t", "train_size=x"][..], "train_size = x"),
            (&["content=t", "params='nprobe'"][..], "not name=value"),
            (&["content"][..], "not key = value"),
            (&["content="][..], "empty value"),
        ] {
            let e = parse_strs(args).unwrap_err();
            assert!(e.message().contains(needle), "{args:?}: {}", e.message());
        }
    }
}
