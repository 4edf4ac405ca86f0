//! The `vtab_options` target: the `faiss` table's arguments, search parameters, and the
//! config they are stored as.

use crate::engine::config::Config;
use crate::engine::{Meta, SearchParams};
use crate::index::Metric;
use crate::vector::MAX_DIM;
use crate::vtab::options;

/// The `faiss` virtual table's arguments: `data` split at NUL bytes (SQLite hands each argument
/// as a C string, so none contains one). Accepted options are within their documented bounds,
/// their search parameters print and parse back unchanged, and the config they are stored as
/// reads back to the same metadata.
pub fn vtab_options(data: &[u8]) {
    let args: Vec<String> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    };
    // The other parsers that take the same strings.
    if let Some(first) = args.first() {
        let _ = Metric::parse(first);
        let _ = crate::index::check_factory(first);
        if let Ok(p) = SearchParams::parse(first) {
            check_params(&p);
        }
    }
    let o = match options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            assert!(!e.message().is_empty());
            return;
        }
    };
    assert!(!o.content.is_empty() && !o.column.is_empty());
    assert!(!o.factory.is_empty() && o.factory.len() <= 256 && !o.factory.contains('\0'));
    assert!((1..=options::MAX_TRAIN_SIZE).contains(&o.train_size));
    assert!(o.dim.is_none_or(|d| (1..=MAX_DIM).contains(&d)));
    assert!(o
        .id
        .as_deref()
        .is_none_or(|i| !i.eq_ignore_ascii_case("rowid")));
    check_params(&o.params);
    let _ = crate::index::check_factory(&o.factory);

    // What create stores in `<name>_config` reads back to the same metadata.
    let meta = Meta {
        content: o.content.clone(),
        column: o.column.clone(),
        id_column: o.id.clone(),
        pk: "id".to_string(),
        key: crate::engine::key::KeyShape::Rowid,
        predicate: o.predicate.clone(),
        partition: o.partition.clone(),
        factory: o.factory.clone(),
        metric: o.metric,
        dim: o.dim.unwrap_or(1),
        params: o.params.clone(),
        train_size: o.train_size,
        deterministic: o.deterministic,
    };
    let config = Config::from_pairs(meta.to_config().into_iter().map(|(k, v)| (k.name(), v)));
    let back = Meta::from_config(&config, o.content.clone())
        .unwrap_or_else(|e| panic!("stored config of {meta:?} does not read back: {e}"));
    assert_eq!(back, meta);
}

fn check_params(p: &SearchParams) {
    assert!(p.rerank.is_none_or(|r| (1..=100).contains(&r)));
    for (name, value) in &p.faiss {
        assert!(!name.is_empty() && name != "rerank");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert!(value.is_finite() && *value >= 0.0);
    }
    let text = p.to_string();
    let back = SearchParams::parse(&text)
        .unwrap_or_else(|e| panic!("parameters {p:?} print as {text:?}, which fails: {e}"));
    assert_eq!(&back, p, "{text}");
    let _ = p.check_per_query();
}
