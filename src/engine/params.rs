//! Search parameters: FAISS `ParameterSpace` names (`nprobe`, `efSearch`, …) plus vekter's own
//! `rerank`, as a table default (`params=` at creation) or per query (`params = '…'`), with the
//! bounds a query may set them within.

use crate::error::{bail, Error, Result};
use crate::index::Index;

/// Search parameters: FAISS `ParameterSpace` names (`nprobe`, `efSearch`, …) plus vekter's
/// `rerank` (fetch `rerank × k` candidates and re-order them by exact distance).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SearchParams {
    pub(crate) faiss: Vec<(String, f64)>,
    pub(crate) rerank: Option<usize>,
}

/// Parameters a query may set for itself, with FAISS's built-in value to restore afterwards.
const PER_QUERY: &[(&str, f64, f64)] = &[
    ("nprobe", 1.0, 65_536.0),
    ("efSearch", 16.0, 16_384.0),
    ("quantizer_efSearch", 16.0, 16_384.0),
];
const MAX_RERANK: usize = 100;

impl SearchParams {
    /// `nprobe` as the only FAISS parameter: IVF indexes take it inside the search's own
    /// `SearchParametersIVF`, so the query shares the index with other searches.
    pub(crate) fn nprobe_only(&self) -> Option<usize> {
        match self.faiss.as_slice() {
            [(name, value)] if name == "nprobe" => Some(*value as usize),
            _ => None,
        }
    }

    /// `nprobe=32,efSearch=128,rerank=4` (spaces allowed).
    pub(crate) fn parse(text: &str) -> Result<SearchParams> {
        let mut params = SearchParams::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((name, value)) = item.split_once('=') else {
                bail!("search parameter '{item}' is not name=value");
            };
            let (name, value) = (name.trim(), value.trim());
            let number: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    Error::invalid(format!("search parameter {name}={value}: not a number ≥ 0"))
                })?;
            if name == "rerank" {
                if number < 1.0 || number > MAX_RERANK as f64 || number.fract() != 0.0 {
                    bail!("rerank={value}: must be an integer from 1 to {MAX_RERANK}");
                }
                params.rerank = Some(number as usize);
            } else {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    bail!("'{name}' is not a search parameter name");
                }
                params.faiss.retain(|(n, _)| n != name);
                params.faiss.push((name.to_string(), number));
            }
        }
        Ok(params)
    }

    /// Fail unless every FAISS parameter may be set per query, within its bounds.
    pub(crate) fn check_per_query(&self) -> Result<()> {
        for (name, value) in &self.faiss {
            match PER_QUERY.iter().find(|(n, _, _)| n == name) {
                None => bail!(
                    "search parameter '{name}' can only be a table default (params= at \
                     creation); per query: {}, rerank",
                    PER_QUERY.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
                ),
                Some((_, _, max)) if value > max => {
                    bail!("search parameter {name}={value:e} is above its limit {max}")
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl SearchParams {
    /// What to set back after a query that set these parameters: the table's default
    /// (`table`), else FAISS's built-in value.
    pub(crate) fn restore_values(&self, table: &SearchParams) -> Vec<(String, f64)> {
        self.faiss
            .iter()
            .map(|(name, _)| {
                let default = table.faiss.iter().find(|(n, _)| n == name);
                let builtin = PER_QUERY.iter().find(|(n, _, _)| n == name);
                (
                    name.clone(),
                    default.map_or(builtin.map_or(0.0, |b| b.1), |d| d.1),
                )
            })
            .collect()
    }
}

impl std::fmt::Display for SearchParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut items: Vec<String> = self.faiss.iter().map(|(n, v)| format!("{n}={v}")).collect();
        items.extend(self.rerank.map(|r| format!("rerank={r}")));
        f.write_str(&items.join(","))
    }
}

/// Set each FAISS parameter of `params` on `index` (it mutates the index: callers hold it
/// exclusively).
pub(crate) fn apply(index: &mut Index, params: &[(String, f64)]) -> Result<()> {
    for (name, value) in params {
        index.set_parameter(name, *value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_print() {
        let p = SearchParams::parse(" nprobe = 32, efSearch=128 ,rerank=4").unwrap();
        assert_eq!(
            p.faiss,
            vec![("nprobe".into(), 32.0), ("efSearch".into(), 128.0)]
        );
        assert_eq!(p.rerank, Some(4));
        assert_eq!(p.to_string(), "nprobe=32,efSearch=128,rerank=4");
        assert_eq!(SearchParams::parse("").unwrap(), SearchParams::default());
        for bad in [
            "nprobe",
            "nprobe=x",
            "rerank=0",
            "rerank=1000",
            "a b=1",
            "nprobe=-1",
        ] {
            assert!(SearchParams::parse(bad).is_err(), "{bad}");
        }
        assert!(SearchParams::parse("efSearch=99999")
            .unwrap()
            .check_per_query()
            .is_err());
        assert!(SearchParams::parse("ht=3")
            .unwrap()
            .check_per_query()
            .is_err());
    }

    #[test]
    fn per_query_values_are_restored_to_the_table_default_or_faiss_builtin() {
        let table = SearchParams::parse("efSearch=64").unwrap();
        let query = SearchParams::parse("efSearch=200,nprobe=8").unwrap();
        assert_eq!(
            query.restore_values(&table),
            vec![("efSearch".into(), 64.0), ("nprobe".into(), 1.0)]
        );
    }
}
