//! The SQL functions (SPEC §1–3, §5), registered from one table with one policy of flags.

mod aggregate;
mod codec;
mod info;
mod search;

use std::sync::Arc;

use sqlite3ext_sys::sqlite3;

use crate::error::{bail, Error, Result};
use crate::registry::ConnState;
use crate::sqlite::{create_aggregate, create_scalar, Cell, Trust};

/// Largest k a search accepts; k beyond the number of rows simply returns every row.
pub(crate) const MAX_K: usize = 100_000;

/// Register every function on connection `db`.
pub(crate) fn register(db: *mut sqlite3, state: &Arc<ConnState>) -> Result<()> {
    use Trust::{DirectOnly, PureInnocuous};
    create_scalar(db, "faiss_encode", 1, PureInnocuous, codec::encode)?;
    create_scalar(db, "faiss_decode", 1, PureInnocuous, codec::decode)?;
    create_scalar(db, "vekter_version", 0, PureInnocuous, info::version)?;
    create_scalar(db, "vekter_debug", 0, DirectOnly, info::debug)?;
    create_scalar(db, "vekter_threads", 0, DirectOnly, info::threads)?;
    create_scalar(db, "vekter_threads", 1, DirectOnly, info::threads)?;
    let cache = Arc::new(search::ResolveCache::default());
    for (name, scores) in [("faiss_search", false), ("faiss_search_with_scores", true)] {
        let (state, cache) = (state.clone(), cache.clone());
        create_scalar(db, name, 4, DirectOnly, move |ctx, args| {
            search::search(ctx, &state, &cache, args, scores)
        })?;
    }
    create_aggregate::<aggregate::Nearest<false>>(db, "faiss_agg", 4, DirectOnly)?;
    create_aggregate::<aggregate::Nearest<true>>(db, "faiss_agg_with_scores", 4, DirectOnly)?;
    Ok(())
}

/// The `k` argument: a positive integer (also as integral REAL or as TEXT, which is how
/// Datasette passes `:k` parameters from its form).
pub(crate) fn parse_k(cell: Cell) -> Result<usize> {
    let k: i64 = match cell {
        Cell::Integer(k) => k,
        Cell::Real(x) if x.fract() == 0.0 && x.abs() < 1e18 => x as i64,
        Cell::Text(_) => match cell.as_str().map(str::trim).and_then(|s| s.parse().ok()) {
            Some(k) => k,
            None => bail!("k must be an integer, got the text '{}'", lossy(cell)),
        },
        Cell::Null => bail!("k must be an integer, got NULL"),
        other => bail!(
            "k must be an integer, got {} {}",
            other.type_name(),
            lossy(other)
        ),
    };
    if k <= 0 {
        bail!("k must be a positive integer, got {k}");
    }
    if k as u64 > MAX_K as u64 {
        bail!(TooBig: "k = {k} is more than the limit of {MAX_K}");
    }
    Ok(k as usize)
}

/// A TEXT argument such as a database or table name.
pub(crate) fn parse_name<'a>(cell: Cell<'a>, what: &str) -> Result<&'a str> {
    match cell {
        Cell::Text(_) => cell
            .as_str()
            .ok_or_else(|| Error::invalid(format!("{what} name is not valid UTF-8"))),
        other => bail!("{what} must be a name (TEXT), got {}", other.type_name()),
    }
}

fn lossy(cell: Cell) -> String {
    match cell {
        Cell::Text(b) | Cell::Blob(b) => {
            let s = String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned();
            if b.len() > 40 {
                format!("{s}…")
            } else {
                s
            }
        }
        Cell::Integer(i) => i.to_string(),
        Cell::Real(x) => x.to_string(),
        Cell::Null => "NULL".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_forms() {
        assert_eq!(parse_k(Cell::Integer(5)).unwrap(), 5);
        assert_eq!(parse_k(Cell::Real(5.0)).unwrap(), 5);
        assert_eq!(parse_k(Cell::Text(b" 7 ")).unwrap(), 7);
        for bad in [
            Cell::Integer(0),
            Cell::Integer(-3),
            Cell::Real(2.5),
            Cell::Text(b"ten"),
            Cell::Null,
            Cell::Blob(b"\x01"),
            Cell::Integer(MAX_K as i64 + 1),
            Cell::Real(f64::NAN),
        ] {
            assert!(parse_k(bad).is_err(), "{bad:?}");
        }
    }
}
