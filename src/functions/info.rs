//! `vekter_version()` and `vekter_debug()` (SPEC §5): what was built and what it is doing.

use std::ffi::CStr;
use std::sync::atomic::Ordering;

use crate::error::Result;
use crate::index::faiss_version;
use crate::plain;
use crate::sqlite::api::call;
use crate::sqlite::{Cell, Context, Output, ValueRef};

pub(crate) fn version(_: &Context, _: &[ValueRef]) -> Result<Output> {
    Ok(Output::Text(env!("CARGO_PKG_VERSION").to_string()))
}

pub(crate) fn debug(_: &Context, _: &[ValueRef]) -> Result<Output> {
    // SAFETY: returns static data.
    let sqlite_version = unsafe {
        CStr::from_ptr(call!(libversion()))
            .to_string_lossy()
            .into_owned()
    };
    let stats = &plain::STATS;
    let verified = crate::engine::snapshot::chunks::LAST_VERIFY.get();
    let saved = crate::engine::snapshot::chunks::LAST_SAVE.get();
    let info = serde_json::json!({
        "vekter": env!("CARGO_PKG_VERSION"),
        "faiss": faiss_version(),
        "sqlite": sqlite_version,
        "simd": crate::simd::report(),
        "threads": crate::threads::report(),
        "build": {
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            "arch": std::env::consts::ARCH,
            "os": std::env::consts::OS,
        },
        "snapshots": {
            "key": match crate::engine::snapshot::seal::key() {
                Ok(key) => key.describe(),
                Err(why) => format!("none: {why}"),
            },
            "last_verified": {
                "bytes": verified.0,
                "ms": verified.1 as f64 / 1000.0,
                "seal_ms": verified.2 as f64 / 1000.0,
            },
            "last_saved": {
                "bytes": saved.0,
                "written": saved.1,
            },
        },
        "registry": {
            "table_indexes": plain::count(),
            "builds": stats.builds.load(Ordering::Relaxed),
            "checks": stats.checks.load(Ordering::Relaxed),
        },
    });
    Ok(Output::Text(info.to_string()))
}

/// `vekter_threads()` reads, `vekter_threads(n)` sets the number of threads FAISS may use to
/// build, train and add (searches always use one); returns the count in effect.
pub(crate) fn threads(ctx: &Context, args: &[ValueRef]) -> Result<Output> {
    let n = match args.first() {
        None => crate::threads::build_threads(),
        // A process-wide setting: not for connections opened read-only, which is how Datasette
        // runs strangers' SQL (the environment variable is for those processes).
        Some(_) if ctx.conn().readonly("main") => crate::error::bail!(
            "changes a process-wide setting and the connection is read-only; \
             set VEKTER_THREADS in the environment instead"
        ),
        Some(arg) => match arg.cell() {
            Cell::Integer(n) => crate::threads::set_build_threads(n)?,
            _ => crate::error::bail!("thread count must be an integer"),
        },
    };
    Ok(Output::Integer(n as i64))
}
