//! The SQL functions (SPEC §1–3, §5), registered from one table with one policy of flags.

mod aggregate;
mod check;
mod codec;
mod info;
mod search;

use std::sync::Arc;

use sqlite3ext_sys::sqlite3;

use crate::error::Result;
use crate::registry::ConnState;
use crate::sqlite::{create_aggregate, create_scalar, Trust};

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
        // (database, table, embedding, k [, metric])
        for n_args in [4, 5] {
            let (state, cache) = (state.clone(), cache.clone());
            create_scalar(db, name, n_args, DirectOnly, move |ctx, args| {
                search::search(ctx, &state, &cache, args, scores)
            })?;
        }
    }
    // ([database,] table): the read-only integrity-check.
    for n_args in [1, 2] {
        let state = state.clone();
        create_scalar(
            db,
            "faiss_integrity_check",
            n_args,
            DirectOnly,
            move |ctx, args| check::integrity_check(ctx, &state, args),
        )?;
    }
    // (id, embedding, compare_embedding, k [, metric])
    for n_args in [4, 5] {
        create_aggregate::<aggregate::Nearest<false>>(db, "faiss_agg", n_args, DirectOnly)?;
        create_aggregate::<aggregate::Nearest<true>>(
            db,
            "faiss_agg_with_scores",
            n_args,
            DirectOnly,
        )?;
    }
    Ok(())
}
