//! The thread policy: how many threads FAISS may use, and when.
//!
//! FAISS parallelises with OpenMP over queries. A search runs on the calling thread, one query
//! vector or many at once (`query IN`, `neighbours_of IN`): measured on 2 cores, FAISS's exact
//! search of 20,000 x 128 against itself took 2.3 s so, 2.7 s with an OpenMP team of two (its
//! idle member spins while OpenBLAS works); OpenBLAS keeps the thread count the last build gave
//! it (its workers help the distance blocks).
//!
//! One exception: a large exact scan of a few query vectors (a Flat index of at least
//! [`SHARD_MIN_FLOATS`] x 2 numbers, fewer than 20 queries) is split into contiguous ranges of the
//! index, one per thread of a [`SearchTeam`], when cores are idle. The caller scans the first
//! range; helper threads (plain threads, each with an OpenMP team of one) scan the others, and
//! the hits are merged. A team only takes cores no other vekter search holds: every search, of
//! any index and from any connection, counts itself in a process-wide gauge while it runs, and
//! helpers are only added while the gauge is below the CPU count (capped by `vekter_threads`).
//! So one connection gets every idle core for a big scan, while many connections searching at
//! once each run alone and never oversubscribe. Measured on 2 cores: one thread scans
//! 1M x 128 in 34 ms, two threads each scanning half take 19 ms (the memory bandwidth grows
//! with the second core, 14 to 26 GB/s).
//!
//! Building, training and adding many vectors are where FAISS fans out. Those run with
//! [`build_threads`] OpenMP threads, set on the calling thread just before each call (OpenMP's
//! thread count is per calling thread, so a SQLite thread that never built keeps its default).
//! OpenBLAS (called by k-means and OPQ training outside OpenMP regions) gets the same count.
//! Several connections that build at the same time each get their own team: with the default of
//! one thread per CPU, two concurrent builds on 2 cores use 4 threads, which is the price of
//! builds that use the whole machine when alone. `vekter_threads(1)` trades that away, and
//! keeps every scan on one thread too.
//!
//! Default: the CPUs this process may run on, or `VEKTER_THREADS` when set (1..=256).

use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use once_cell::sync::Lazy;

use crate::error::Result;

pub(crate) const MAX_THREADS: usize = 256;

extern "C" {
    /// From libgomp, which FAISS links.
    fn omp_set_num_threads(n: c_int);
    fn omp_get_max_threads() -> c_int;
    fn dlsym(handle: *mut c_void, symbol: *const std::os::raw::c_char) -> *mut c_void;
}

/// `RTLD_DEFAULT`: look the symbol up in the global scope (the BLAS the process linked).
const RTLD_DEFAULT: *mut c_void = std::ptr::null_mut();

static BUILD_THREADS: Lazy<AtomicUsize> = Lazy::new(|| AtomicUsize::new(default_threads()));

fn default_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    match std::env::var("VEKTER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(n) if (1..=MAX_THREADS).contains(&n) => n,
        _ => cpus.min(MAX_THREADS),
    }
}

/// The number of threads a build, training or bulk add may use.
pub(crate) fn build_threads() -> usize {
    BUILD_THREADS.load(Ordering::Relaxed)
}

/// Change the process-wide build thread count (`vekter_threads(n)`).
pub(crate) fn set_build_threads(n: i64) -> Result<usize> {
    if !(1..=MAX_THREADS as i64).contains(&n) {
        crate::error::bail!("thread count must be between 1 and {MAX_THREADS}, got {n}");
    }
    BUILD_THREADS.store(n as usize, Ordering::Relaxed);
    Ok(n as usize)
}

thread_local! {
    /// While non-zero, builds on this thread run on one thread ([`SingleThreaded::begin`]).
    static SINGLE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Trainings that need OpenBLAS on one thread, running now ([`SingleThreaded::blas`]).
/// OpenBLAS's thread count is process-wide: while one runs, every build sets it to 1, so
/// that no other thread raises it under that training. The count and the setting change
/// together, under this lock.
static BLAS_PINNED: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// While it lives, the builds of the calling thread run on one thread, or call OpenBLAS on
/// one thread, whatever `vekter_threads` says: for builds that must come out the same on
/// every node (docs/replication.md).
/// (Not `Send`: it must be dropped on the thread that began it.)
pub(crate) struct SingleThreaded {
    blas_only: bool,
    _here: std::marker::PhantomData<*const ()>,
}

impl SingleThreaded {
    /// OpenMP and OpenBLAS on one thread: a deterministic graph build (`deterministic = 1`).
    pub(crate) fn begin() -> SingleThreaded {
        SINGLE.with(|s| s.set(s.get() + 1));
        SingleThreaded {
            blas_only: false,
            _here: std::marker::PhantomData,
        }
    }

    /// OpenBLAS on one thread, in the whole process while it lives: the training of an index
    /// whose LAPACK and matrix sums OpenBLAS splits by thread count (OPQ, PCA, ITQ, LSQ, RQ).
    pub(crate) fn blas() -> SingleThreaded {
        let mut pinned = crate::locks::lock(&BLAS_PINNED);
        *pinned += 1;
        set_blas_threads(1);
        SingleThreaded {
            blas_only: true,
            _here: std::marker::PhantomData,
        }
    }
}

impl Drop for SingleThreaded {
    fn drop(&mut self) {
        match self.blas_only {
            true => *crate::locks::lock(&BLAS_PINNED) -= 1,
            false => SINGLE.with(|s| s.set(s.get() - 1)),
        }
    }
}

fn set_blas_threads(n: c_int) {
    if let Some(set) = *OPENBLAS_SET {
        // SAFETY: OpenBLAS's setter takes any positive count.
        unsafe { set(n) }
    }
}

/// Call before a FAISS call that fans out (train, add): the calling thread's OpenMP team size and
/// OpenBLAS's thread count follow the policy.
pub(crate) fn for_build() {
    let n = match SINGLE.with(|s| s.get()) {
        0 => build_threads() as c_int,
        _ => 1,
    };
    // SAFETY: sets the calling thread's OpenMP ICV.
    unsafe { omp_set_num_threads(n) };
    let pinned = crate::locks::lock(&BLAS_PINNED);
    set_blas_threads(if *pinned > 0 { 1 } else { n });
}

/// Call before a search, on the thread that calls FAISS: an OpenMP team of one (the
/// parallelism of a scan is the [`SearchTeam`]'s, not OpenMP's).
pub(crate) fn for_search() {
    // SAFETY: sets the calling thread's OpenMP ICV only.
    unsafe { omp_set_num_threads(1) }
}

/// The fewest numbers (vectors x dimension) a helper thread of a scan gets: 4 MiB of floats,
/// about 0.3 ms of scanning, against some 30 µs to start a thread.
pub(crate) const SHARD_MIN_FLOATS: usize = 1 << 20;

/// Threads inside a vekter search right now, callers and helpers together.
static SEARCHING: AtomicUsize = AtomicUsize::new(0);

static CPUS: Lazy<usize> =
    Lazy::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

/// The threads one search runs on: the caller, plus helpers taken from the idle cores. Every
/// search holds one while it calls FAISS; dropping it gives the cores back.
#[must_use]
pub(crate) struct SearchTeam {
    size: usize,
}

impl SearchTeam {
    /// Join the searching threads with up to `wanted - 1` helpers, as many as the idle cores
    /// allow (never more than the CPUs, nor than `vekter_threads`, in all searches at once).
    pub(crate) fn join(wanted: usize) -> SearchTeam {
        let mut size = 1;
        let busy = SEARCHING.fetch_add(1, Ordering::AcqRel) + 1;
        let cap = build_threads().min(*CPUS);
        let mut now = busy;
        while size < wanted && now < cap {
            match SEARCHING.compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    size += 1;
                    now += 1;
                }
                Err(actual) => now = actual,
            }
        }
        SearchTeam { size }
    }

    /// The caller and its helpers.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Give back helpers that could not be started.
    pub(crate) fn shrink_to(&mut self, size: usize) {
        let size = size.clamp(1, self.size);
        SEARCHING.fetch_sub(self.size - size, Ordering::AcqRel);
        self.size = size;
    }
}

impl Drop for SearchTeam {
    fn drop(&mut self) {
        SEARCHING.fetch_sub(self.size, Ordering::AcqRel);
    }
}

/// Scans split between threads since the process started (for `vekter_debug()` and tests).
static SPLIT_SCANS: AtomicUsize = AtomicUsize::new(0);

/// Count one scan split between threads.
pub(crate) fn count_split_scan() {
    SPLIT_SCANS.fetch_add(1, Ordering::Relaxed);
}

/// Catch-ups with the change log applied by a helper thread beside the reading one (for
/// `vekter_debug()` and tests).
static APPLIES_BESIDE: AtomicUsize = AtomicUsize::new(0);

/// Count one catch-up applied beside the reading thread.
pub(crate) fn count_apply_beside() {
    APPLIES_BESIDE.fetch_add(1, Ordering::Relaxed);
}

/// Threads inside vekter searches right now (for `vekter_debug()` and tests).
pub(crate) fn searching() -> usize {
    SEARCHING.load(Ordering::Acquire)
}

/// The OpenMP team size the calling thread would get now.
pub(crate) fn omp_max_threads() -> usize {
    // SAFETY: reads the calling thread's ICV.
    unsafe { omp_get_max_threads() as usize }
}

type SetThreads = unsafe extern "C" fn(c_int);
type GetThreads = unsafe extern "C" fn() -> c_int;

/// OpenBLAS's thread setter, when the BLAS in the process is OpenBLAS (Debian's `libblas.so`
/// alternative may be another implementation, so the symbol is looked up, not linked).
static OPENBLAS_SET: Lazy<Option<SetThreads>> = Lazy::new(|| {
    // SAFETY: dlsym on the global scope; the symbol, when present, has this C signature.
    unsafe {
        let p = dlsym(RTLD_DEFAULT, c"openblas_set_num_threads".as_ptr());
        (!p.is_null()).then(|| std::mem::transmute::<*mut c_void, SetThreads>(p))
    }
});

/// OpenBLAS's current thread count, when the BLAS is OpenBLAS.
pub(crate) fn openblas_threads() -> Option<usize> {
    // SAFETY: as above.
    unsafe {
        let p = dlsym(RTLD_DEFAULT, c"openblas_get_num_threads".as_ptr());
        (!p.is_null()).then(|| std::mem::transmute::<*mut c_void, GetThreads>(p)() as usize)
    }
}

/// For `vekter_debug()`.
pub(crate) fn report() -> serde_json::Value {
    serde_json::json!({
        "build": build_threads(),
        "search": 1,
        "scan": build_threads().min(*CPUS),
        "searching_now": searching(),
        "split_scans": SPLIT_SCANS.load(Ordering::Relaxed),
        "applies_beside": APPLIES_BESIDE.load(Ordering::Relaxed),
        "omp_max_threads_this_thread": omp_max_threads(),
        "openblas": openblas_threads(),
        "cpus": *CPUS,
    })
}
