//! Which FAISS build serves this process.
//!
//! `make build` produces two libraries from this source: `vekter.so`, whose bundled FAISS is
//! compiled for the x86-64 baseline (SSE2), and `vekter_avx2.so` (cargo feature `avx2`), whose
//! FAISS is compiled with `-mavx2 -mfma -mf16c -mpopcnt`. Users load `vekter.so`. Its entry point
//! checks the CPU and, when the CPU has all four features, opens `vekter_avx2.so` from the same
//! directory and hands the connection to its entry point. The AVX2 library is never mapped on a
//! CPU without those features, so none of its instructions (static constructors run at `dlopen`)
//! can raise SIGILL there. `VEKTER_SIMD=generic` keeps the baseline build; `VEKTER_SIMD=avx2`
//! insists on the AVX2 build (loading fails with a clear message when it cannot be used).
//!
//! The two libraries keep separate registries, but a process only ever registers functions from
//! one of them: the choice is made once, on the first load, and reused by every later connection.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_uint, c_void};

use once_cell::sync::OnceCell;
use sqlite3ext_sys::{sqlite3, sqlite3_api_routines};

/// The FAISS compile flags of this library.
pub const FAISS_FLAGS: &str = if cfg!(feature = "avx2") {
    "-mavx2 -mfma -mf16c -mpopcnt"
} else {
    ""
};

/// The SIMD level this library's FAISS was compiled for.
pub const LEVEL: &str = if cfg!(feature = "avx2") {
    "avx2"
} else {
    "generic"
};

type EntryPoint =
    unsafe extern "C" fn(*mut sqlite3, *mut *mut c_char, *mut sqlite3_api_routines) -> c_uint;

/// What the baseline library decided on its first load.
enum Choice {
    /// Serve from this library; the string says why (for `vekter_debug()`).
    Stay(String),
    /// Forward every load to the AVX2 library's entry point.
    Forward(EntryPoint),
    /// Refuse to load (only when `VEKTER_SIMD` asks for something impossible).
    Refuse(String),
}

static CHOICE: OnceCell<Choice> = OnceCell::new();

/// What the CPU offers, as FAISS's AVX2 build needs it.
pub fn cpu_has_avx2() -> bool {
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

/// Outcome of [`dispatch`] for the entry point.
pub enum Dispatch {
    /// Register the functions from this library.
    Here,
    /// Another library's entry point handled the load and returned this code.
    Done(c_uint),
    /// Loading must fail with this message.
    Refused(String),
}

/// Decide, on the first load, which library serves the process, and forward this load if it is
/// the other one.
///
/// # Safety
/// The arguments are the entry point's own, passed on unchanged.
pub unsafe fn dispatch(
    db: *mut sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut sqlite3_api_routines,
) -> Dispatch {
    if cfg!(feature = "avx2") {
        // Loaded directly on a CPU without AVX2 it may already have faulted in a constructor;
        // where it has not, refuse rather than fault on the first distance computation.
        return if cpu_has_avx2() {
            Dispatch::Here
        } else {
            Dispatch::Refused(
                "vekter_avx2.so needs a CPU with AVX2, FMA, F16C and POPCNT; load vekter.so, \
                 which picks the build this CPU can run"
                    .into(),
            )
        };
    }
    match CHOICE.get_or_init(choose) {
        Choice::Stay(_) => Dispatch::Here,
        Choice::Forward(entry) => Dispatch::Done(entry(db, pz_err_msg, p_api)),
        Choice::Refuse(message) => Dispatch::Refused(message.clone()),
    }
}

/// Why this library serves the process (for `vekter_debug()`).
pub fn reason() -> String {
    if cfg!(feature = "avx2") {
        return "the CPU has AVX2, FMA, F16C and POPCNT".into();
    }
    match CHOICE.get() {
        Some(Choice::Stay(why)) => why.clone(),
        _ => "not decided".into(),
    }
}

fn choose() -> Choice {
    let wanted = std::env::var("VEKTER_SIMD").unwrap_or_default();
    match wanted.as_str() {
        "" | "auto" | "avx2" => {}
        "generic" => return Choice::Stay("VEKTER_SIMD=generic".into()),
        other => {
            return Choice::Refuse(format!(
                "VEKTER_SIMD={other:?} is not a SIMD level: use auto, generic or avx2"
            ))
        }
    }
    let insist = wanted == "avx2";
    let stay_or_refuse = |why: String| {
        if insist {
            Choice::Refuse(format!("VEKTER_SIMD=avx2 cannot be honoured: {why}"))
        } else {
            Choice::Stay(why)
        }
    };
    if !cpu_has_avx2() {
        return stay_or_refuse("the CPU lacks AVX2, FMA, F16C or POPCNT".into());
    }
    let Some(path) = sibling_path() else {
        return stay_or_refuse("the path of vekter.so is unknown".into());
    };
    if !std::path::Path::new(&path).exists() {
        return stay_or_refuse(format!("{path} does not exist"));
    }
    match open_entry_point(&path) {
        Ok(entry) => Choice::Forward(entry),
        Err(why) => stay_or_refuse(why),
    }
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
pub fn library_path() -> Option<String> {
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
fn sibling_path() -> Option<String> {
    let own = library_path()?;
    let path = std::path::Path::new(&own);
    let stem = path.file_stem()?.to_str()?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("so");
    Some(
        path.with_file_name(format!("{stem}_avx2.{ext}"))
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
pub fn report() -> serde_json::Value {
    #[cfg(target_arch = "x86_64")]
    let cpu = serde_json::json!({
        "avx2": std::arch::is_x86_feature_detected!("avx2"),
        "fma": std::arch::is_x86_feature_detected!("fma"),
        "f16c": std::arch::is_x86_feature_detected!("f16c"),
        "avx512f": std::arch::is_x86_feature_detected!("avx512f"),
    });
    #[cfg(not(target_arch = "x86_64"))]
    let cpu = serde_json::json!({});
    serde_json::json!({
        "level": LEVEL,
        "faiss_cxxflags": FAISS_FLAGS,
        "library": library_path(),
        "reason": reason(),
        "cpu": cpu,
    })
}
