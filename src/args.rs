//! Arguments the SQL functions and the `faiss` table both take: `k` and names, with the limit
//! on k.

use crate::error::{bail, Error, Result};
use crate::index::Metric;
use crate::sqlite::Cell;

/// Largest k a search accepts; k beyond the number of rows simply returns every row.
pub(crate) const MAX_K: usize = 100_000;

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
/// The optional metric argument of the search functions (`'l2'` when absent).
pub(crate) fn parse_metric(cell: Option<Cell>) -> Result<Option<Metric>> {
    cell.map(|cell| Metric::parse(parse_name(cell, "metric")?))
        .transpose()
}

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
