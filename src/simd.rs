//! Which FAISS build serves this process.
//!
//! `make build` produces three libraries from this source: `vekter.so`, whose bundled FAISS is
//! compiled for the x86-64 baseline (SSE2), and `vekter_avx2.so` / `vekter_avx512.so` (cargo
//! features `avx2` / `avx512`), whose FAISS is compiled with FAISS's own AVX2 or AVX-512 flags.
//! Users load `vekter.so`. Its entry point checks the CPU and hands the connection to the best
//! sibling library the CPU can run, found in the same directory; otherwise it serves itself. A
//! SIMD library is never mapped on a CPU without its features, so none of its instructions
//! (static constructors run at `dlopen`) can raise SIGILL there. `VEKTER_SIMD=generic` keeps the
//! baseline build; `VEKTER_SIMD=avx2` or `avx512` insists on that build (loading fails with a
//! clear message when it cannot be used).
//!
//! The libraries keep separate registries, but a process only ever registers functions from one
//! of them: the choice is made once, on the first load, and reused by every later connection.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_uint, c_void};

use once_cell::sync::OnceCell;
use sqlite3ext_sys::{sqlite3, sqlite3_api_routines};

/// A FAISS build: its name, the `simd.mk` variable holding its FAISS compile flags, and the CPU
/// features it needs.
struct Level {
    name: &'static str,
    flags_var: &'static str,
    needs: &'static str,
    cpu_ok: fn() -> bool,
}

const AVX2: Level = Level {
    name: "avx2",
    flags_var: "AVX2_CXXFLAGS",
    needs: "AVX2, FMA, F16C and POPCNT",
    cpu_ok: cpu_has_avx2,
};

const AVX512: Level = Level {
    name: "avx512",
    flags_var: "AVX512_CXXFLAGS",
    needs: "AVX2, FMA, F16C, POPCNT and AVX-512 F/CD/VL/DQ/BW",
    cpu_ok: cpu_has_avx512,
};

/// The Makefile fragment that defines the SIMD builds' flags (the Makefile includes it).
const SIMD_MK: &str = include_str!("simd.mk");

/// The value of `var` in `simd.mk`.
fn mk_flags(var: &str) -> &'static str {
    SIMD_MK
        .lines()
        .find_map(|line| line.strip_prefix(var)?.trim_start().strip_prefix(":="))
        .map_or("", str::trim)
}

/// Sibling builds, best first.
const SIBLINGS: [Level; 2] = [AVX512, AVX2];

/// This library's own build.
const OWN: Option<Level> = if cfg!(feature = "avx512") {
    Some(AVX512)
} else if cfg!(feature = "avx2") {
    Some(AVX2)
} else {
    None
};

/// The SIMD level this library's FAISS was compiled for.
pub(crate) const LEVEL: &str = match OWN {
    Some(level) => level.name,
    None => "generic",
};

/// The FAISS compile flags of this library.
fn faiss_flags() -> &'static str {
    OWN.map_or("", |level| mk_flags(level.flags_var))
}

type EntryPoint =
    unsafe extern "C" fn(*mut sqlite3, *mut *mut c_char, *mut sqlite3_api_routines) -> c_uint;

/// What the baseline library decided on its first load.
enum Choice {
    /// Serve from this library; the string says why (for `vekter_debug()`).
    Stay(String),
    /// Forward every load to a SIMD library's entry point.
    Forward(EntryPoint),
    /// Refuse to load (only when `VEKTER_SIMD` asks for something impossible).
    Refuse(String),
}

static CHOICE: OnceCell<Choice> = OnceCell::new();

/// Whether the CPU (and the OS, for the wider registers) offers what FAISS's AVX2 build uses.
pub(crate) fn cpu_has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
            && std::arch::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The same for FAISS's AVX-512 build.
pub(crate) fn cpu_has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cpu_has_avx2()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512cd")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Outcome of [`dispatch`] for the entry point.
pub(crate) enum Dispatch {
    /// Register the functions from this library.
    Here,
    /// Another library's entry point handled the load and returned this code.
    Done(c_uint),
    /// Loading must fail with this message.
    Refused(String),
}

/// Decide, on the first load, which library serves the process, and forward this load if it is
/// another one.
///
/// # Safety
/// The arguments are the entry point's own, passed on unchanged.
pub(crate) unsafe fn dispatch(
    db: *mut sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut sqlite3_api_routines,
) -> Dispatch {
    if let Some(own) = OWN {
        // Loaded directly on a CPU without the features it may already have faulted in a
        // constructor; where it has not, refuse rather than fault on the first distance.
        return if (own.cpu_ok)() {
            Dispatch::Here
        } else {
            Dispatch::Refused(format!(
                "vekter_{}.so needs a CPU with {}; load vekter.so, which picks the build this \
                 CPU can run",
                own.name, own.needs
            ))
        };
    }
    match CHOICE.get_or_init(choose) {
        Choice::Stay(_) => Dispatch::Here,
        Choice::Forward(entry) => Dispatch::Done(entry(db, pz_err_msg, p_api)),
        Choice::Refuse(message) => Dispatch::Refused(message.clone()),
    }
}

/// Why this library serves the process (for `vekter_debug()`).
pub(crate) fn reason() -> String {
    if let Some(own) = OWN {
        return format!("the CPU has {}", own.needs);
    }
    match CHOICE.get() {
        Some(Choice::Stay(why)) => why.clone(),
        _ => "not decided".into(),
    }
}

fn choose() -> Choice {
    let wanted = std::env::var("VEKTER_SIMD").unwrap_or_default();
    let candidates: Vec<&Level> = match wanted.as_str() {
        "" | "auto" => SIBLINGS.iter().collect(),
        "generic" => return Choice::Stay("VEKTER_SIMD=generic".into()),
        name => match SIBLINGS.iter().find(|l| l.name == name) {
            Some(level) => vec![level],
            None => {
                return Choice::Refuse(format!(
                    "VEKTER_SIMD={name:?} is not a SIMD level: use auto, generic, avx2 or avx512"
                ))
            }
        },
    };
    let insist = candidates.len() == 1;
    let mut skipped = Vec::new();
    for level in candidates {
        match try_level(level) {
            Ok(entry) => return Choice::Forward(entry),
            Err(why) => skipped.push(why),
        }
    }
    let why = skipped.join("; ");
    if insist {
        Choice::Refuse(format!("VEKTER_SIMD={wanted} cannot be honoured: {why}"))
    } else {
        Choice::Stay(why)
    }
}

/// The entry point of `level`'s sibling library, or why it cannot be used.
fn try_level(level: &Level) -> Result<EntryPoint, String> {
    if !(level.cpu_ok)() {
        return Err(format!("the CPU lacks {} ({})", level.name, level.needs));
    }
    let path = sibling_path(level.name).ok_or("the path of vekter.so is unknown")?;
    if !std::path::Path::new(&path).exists() {
        return Err(format!("{path} does not exist"));
    }
    open_entry_point(&path)
}

#[repr(C)]
struct DlInfo {
    dli_fname: *const c_char,
    dli_fbase: *mut c_void,
    dli_sname: *const c_char,
    dli_saddr: *mut c_void,
}

const RTLD_NOW: c_int = 2;
const RTLD_LOCAL: c_int = 0;

extern "C" {
    fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *mut c_char;
}

/// The file this library was loaded from, as the dynamic loader knows it.
pub(crate) fn library_path() -> Option<String> {
    let mut info = DlInfo {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // A private static, not the exported entry point: SQLite loads extensions RTLD_GLOBAL, so
    // in vekter_avx2.so the entry point's address resolves to vekter.so's.
    static ANCHOR: u8 = 0;
    let here = &ANCHOR as *const u8 as *const c_void;
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    let found = unsafe { dladdr(here, &mut info) } != 0;
    if !found || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated string owned by the loader for the life of the mapping.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(name.to_string_lossy().into_owned())
}

/// `dir/vekter.so` → `dir/vekter_avx2.so` (and `libvekter.so` → `libvekter_avx2.so`).
fn sibling_path(level: &str) -> Option<String> {
    let own = library_path()?;
    let path = std::path::Path::new(&own);
    let stem = path.file_stem()?.to_str()?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("so");
    Some(
        path.with_file_name(format!("{stem}_{level}.{ext}"))
            .to_string_lossy()
            .into_owned(),
    )
}

fn open_entry_point(path: &str) -> Result<EntryPoint, String> {
    let c_path = CString::new(path).map_err(|_| format!("{path} contains NUL"))?;
    // SAFETY: plain libdl calls; RTLD_LOCAL keeps the two copies' symbols apart (they export
    // only the entry point anyway). The handle is never closed: the process keeps the library.
    unsafe {
        let handle = dlopen(c_path.as_ptr(), RTLD_NOW | RTLD_LOCAL);
        if handle.is_null() {
            return Err(format!("cannot open {path}: {}", last_dl_error()));
        }
        let symbol = dlsym(handle, c"sqlite3_vekter_init".as_ptr());
        if symbol.is_null() {
            return Err(format!("{path} has no sqlite3_vekter_init"));
        }
        Ok(std::mem::transmute::<*mut c_void, EntryPoint>(symbol))
    }
}

unsafe fn last_dl_error() -> String {
    let message = dlerror();
    if message.is_null() {
        "unknown error".into()
    } else {
        CStr::from_ptr(message).to_string_lossy().into_owned()
    }
}

/// For `vekter_debug()`.
pub(crate) fn report() -> serde_json::Value {
    #[cfg(target_arch = "x86_64")]
    let cpu = serde_json::json!({
        "avx2": std::arch::is_x86_feature_detected!("avx2"),
        "fma": std::arch::is_x86_feature_detected!("fma"),
        "f16c": std::arch::is_x86_feature_detected!("f16c"),
        "avx512f": std::arch::is_x86_feature_detected!("avx512f"),
        "avx512_build_ok": cpu_has_avx512(),
    });
    #[cfg(not(target_arch = "x86_64"))]
    let cpu = serde_json::json!({});
    serde_json::json!({
        "level": LEVEL,
        "faiss_cxxflags": faiss_flags(),
        "library": library_path(),
        "reason": reason(),
        "cpu": cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_come_from_simd_mk() {
        assert_eq!(mk_flags("AVX2_CXXFLAGS"), "-mavx2 -mfma -mf16c -mpopcnt");
        assert!(mk_flags("AVX512_CXXFLAGS").contains("-mavx512f"));
        assert_eq!(mk_flags("NO_SUCH_FLAGS"), "");
        for level in SIBLINGS {
            assert!(
                mk_flags(level.flags_var).starts_with("-mavx2"),
                "{}",
                level.name
            );
        }
    }
}
