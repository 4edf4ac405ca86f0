//! `vekter_version()` and `vekter_debug()` (SPEC §5): what was built and what it is doing.

use std::ffi::CStr;
use std::os::raw::c_int;
use std::sync::atomic::Ordering;

use crate::error::Result;
use crate::index::faiss_version;
use crate::registry::registry;
use crate::sqlite::api::call;
use crate::sqlite::{Context, Output, ValueRef};

extern "C" {
    /// From libgomp, which FAISS links.
    fn omp_get_max_threads() -> c_int;
}

pub fn version(_: &Context, _: &[ValueRef]) -> Result<Output> {
    Ok(Output::Text(env!("CARGO_PKG_VERSION").to_string()))
}

pub fn debug(_: &Context, _: &[ValueRef]) -> Result<Output> {
    // SAFETY: both return static data.
    let (sqlite_version, threads) = unsafe {
        (
            CStr::from_ptr(call!(libversion()))
                .to_string_lossy()
                .into_owned(),
            omp_get_max_threads(),
        )
    };
    let stats = &registry().stats;
    let info = serde_json::json!({
        "vekter": env!("CARGO_PKG_VERSION"),
        "faiss": faiss_version(),
        "sqlite": sqlite_version,
        "simd": "generic",
        "omp_max_threads": threads,
        "build": {
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            "arch": std::env::consts::ARCH,
            "os": std::env::consts::OS,
        },
        "registry": {
            "table_indexes": registry().table_count(),
            "builds": stats.builds.load(Ordering::Relaxed),
            "checks": stats.checks.load(Ordering::Relaxed),
        },
    });
    Ok(Output::Text(info.to_string()))
}
