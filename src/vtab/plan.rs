//! The `faiss` table's query plan: which WHERE terms (and LIMIT/OFFSET) `xBestIndex` passes to
//! `xFilter`, in argument order. SQLite carries it between the two as `idxStr`, one character
//! per argument; this is its only encoder and its only parser. Keep the table in ARCHITECTURE.md
//! ("Query plan encoding") in step with [`PlanArg::code`].

use crate::error::{bail, Result};

/// An upper bound on the distance (`distance < ?`, `distance <= ?`): it keeps a prefix of the
/// nearest-first results, so it can be applied to the k nearest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    Lt,
    Le,
}

impl Bound {
    /// True when `distance` satisfies `distance <op> bound`.
    pub(crate) fn admits(self, distance: f64, bound: f64) -> bool {
        match self {
            Bound::Lt => distance < bound,
            Bound::Le => distance <= bound,
        }
    }
}

/// What one `xFilter` argument is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanArg {
    /// `query = ?`: the query vector (blob or JSON).
    Query,
    /// `query IN (…)`, passed whole (`sqlite3_vtab_in`): several query vectors, one search.
    QueryIn,
    /// `neighbours_of = ?`: the faiss-table rowid of a stored row whose neighbours to find.
    NeighboursOf,
    /// `neighbours_of IN (…)`, passed whole: several stored rows, one search.
    NeighboursOfIn,
    /// `k = ?`.
    K,
    /// `LIMIT ?` (SQLite 3.41+): k when no `k = ?` is given.
    Limit,
    /// `OFFSET ?` (SQLite 3.41+): added to the LIMIT-derived k.
    Offset,
    /// `params = ?`: per-query search parameters.
    Params,
    /// `<partition column> = ?`: the partition to search or list.
    Partition,
    /// `rowid = ?`: a one-row filter.
    Rowid,
    /// `rowid IN (…)`, passed whole (`sqlite3_vtab_in`): the filter set.
    RowidIn,
    /// `distance <op> ?`.
    Distance(Bound),
}

impl PlanArg {
    /// True for the arguments that make a search (rather than a listing of the indexed rows).
    pub(crate) fn searches(self) -> bool {
        matches!(
            self,
            PlanArg::Query | PlanArg::QueryIn | PlanArg::NeighboursOf | PlanArg::NeighboursOfIn
        )
    }

    /// True for an argument that brings several query vectors (results grouped per query).
    pub(crate) fn is_many(self) -> bool {
        matches!(self, PlanArg::QueryIn | PlanArg::NeighboursOfIn)
    }

    const ALL: [PlanArg; 13] = [
        PlanArg::Query,
        PlanArg::QueryIn,
        PlanArg::NeighboursOf,
        PlanArg::NeighboursOfIn,
        PlanArg::K,
        PlanArg::Limit,
        PlanArg::Offset,
        PlanArg::Params,
        PlanArg::Partition,
        PlanArg::Rowid,
        PlanArg::RowidIn,
        PlanArg::Distance(Bound::Lt),
        PlanArg::Distance(Bound::Le),
    ];

    /// Its character in `idxStr` (shown by EXPLAIN QUERY PLAN).
    pub(crate) const fn code(self) -> char {
        match self {
            PlanArg::Query => 'q',
            PlanArg::QueryIn => 'Q',
            PlanArg::NeighboursOf => 'n',
            PlanArg::NeighboursOfIn => 'N',
            PlanArg::K => 'k',
            PlanArg::Limit => 'l',
            PlanArg::Offset => 'o',
            PlanArg::Params => 'p',
            PlanArg::Partition => 't',
            PlanArg::Rowid => '=',
            PlanArg::RowidIn => 'i',
            PlanArg::Distance(Bound::Lt) => '<',
            PlanArg::Distance(Bound::Le) => '[',
        }
    }

    fn from_code(code: char) -> Option<PlanArg> {
        Self::ALL.into_iter().find(|a| a.code() == code)
    }
}

/// The arguments `xFilter` receives, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QueryPlan(pub(crate) Vec<PlanArg>);

impl QueryPlan {
    pub(crate) fn encode(&self) -> String {
        self.0.iter().map(|a| a.code()).collect()
    }

    pub(crate) fn parse(idx_str: &str) -> Result<QueryPlan> {
        idx_str
            .chars()
            .map(|c| match PlanArg::from_code(c) {
                Some(arg) => Ok(arg),
                None => bail!(Internal: "internal: unknown plan step '{c}'"),
            })
            .collect::<Result<Vec<_>>>()
            .map(QueryPlan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_argument_round_trips_through_idx_str() {
        let plan = QueryPlan(PlanArg::ALL.to_vec());
        let text = plan.encode();
        assert_eq!(text, "qQnNklopt=i<[");
        assert_eq!(QueryPlan::parse(&text).unwrap(), plan);
        assert_eq!(QueryPlan::parse("").unwrap(), QueryPlan::default());
        assert!(QueryPlan::parse("qx").is_err());
    }

    #[test]
    fn bounds_compare_like_sql() {
        assert!(Bound::Lt.admits(1.0, 2.0) && !Bound::Lt.admits(2.0, 2.0));
        assert!(Bound::Le.admits(2.0, 2.0) && !Bound::Le.admits(2.5, 2.0));
    }
}
