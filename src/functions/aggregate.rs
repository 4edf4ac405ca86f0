//! `faiss_agg(id, embedding, compare_embedding, k [, metric])` and `faiss_agg_with_scores(…)`:
//! the k rows of the aggregated group nearest to `compare_embedding`, so any `WHERE` clause can
//! filter a search in plain SQL (SPEC §3).

use crate::catalog::id_value;
use crate::error::{bail, Result};
use crate::index::{Index, Metric};
use crate::json::IdValue;
use crate::sqlite::{Aggregate, Cell, Context, Output, ValueRef};
use crate::vector;

use super::search::render;
use crate::args::{parse_k, parse_metric};

/// The most vector data one group may gather (floats × 4 bytes).
const MAX_GROUP_BYTES: usize = 1 << 30;

/// The group's rows; `SCORES` selects the `_with_scores` output.
#[derive(Default)]
pub(crate) struct Nearest<const SCORES: bool> {
    /// `compare_embedding`, `k` and the metric, taken from the group's first row.
    query: Option<(Vec<f32>, usize, Metric)>,
    ids: Vec<IdValue>,
    vectors: Vec<f32>,
    rows: usize,
}

impl<const SCORES: bool> Aggregate for Nearest<SCORES> {
    fn step(&mut self, _: &Context, args: &[ValueRef]) -> Result<()> {
        self.rows += 1;
        if self.query.is_none() {
            let query =
                vector::parse(args[2].cell()).map_err(|e| e.context("compare_embedding"))?;
            let metric = parse_metric(args.get(4).map(|a| a.cell()))?.unwrap_or(Metric::L2);
            self.query = Some((query, parse_k(args[3].cell())?, metric));
        }
        let dim = self.query.as_ref().map_or(0, |(q, _, _)| q.len());
        let embedding = args[1].cell();
        if embedding == Cell::Null {
            return Ok(());
        }
        if (self.vectors.len() + dim) * 4 > MAX_GROUP_BYTES {
            bail!(TooBig: "the group holds more than {MAX_GROUP_BYTES} bytes of vectors");
        }
        let row = self.rows;
        let got = vector::append(embedding, &mut self.vectors)
            .map_err(|e| e.context(format!("row {row}: embedding")))?;
        if got != dim {
            self.vectors.truncate(self.vectors.len() - got);
            bail!("row {row}: embedding has {got} dimensions but compare_embedding has {dim}");
        }
        self.ids
            .push(id_value(args[0].cell()).map_err(|e| e.context(format!("row {row}")))?);
        Ok(())
    }

    fn finish(self, _: &Context) -> Result<Output> {
        let Some((query, k, metric)) = self.query else {
            return Ok(Output::Null);
        };
        let mut index = Index::new("Flat", query.len(), metric)?;
        index.add(&self.vectors)?;
        let hits = index.search(&query, k)?;
        Ok(Output::Text(render(&hits, &self.ids, SCORES)))
    }
}
