//! Registering scalar and aggregate SQL functions
//! ([sqlite3_create_function_v2](https://www.sqlite.org/c3ref/create_function.html)).
//!
//! Every trampoline runs the Rust body inside [`guard`], so neither a panic nor an error can
//! cross into SQLite as anything but an SQL error.

use std::ffi::CString;
use std::os::raw::{c_int, c_void};

use sqlite3ext_sys::{sqlite3, sqlite3_context, sqlite3_value};

use super::api::call;
use super::context::{Context, Output};
use super::guard::guard;
use super::value::{args, ValueRef};
use crate::error::{Error, Kind, Result};

const SQLITE_UTF8: c_int = 1;
const SQLITE_DETERMINISTIC: c_int = 0x800;
const SQLITE_DIRECTONLY: c_int = 0x80000;
const SQLITE_INNOCUOUS: c_int = 0x200000;

/// How much SQLite may trust a function ([Function Flags](https://www.sqlite.org/c3ref/c_deterministic.html)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    /// Pure and harmless: usable in indexes, views, triggers and by untrusted schemas.
    PureInnocuous,
    /// Reads shared state (indexes, the registry): callable only from top-level SQL, never from
    /// a view, trigger or schema a database file brings with it.
    DirectOnly,
}

impl Trust {
    fn flags(self) -> c_int {
        SQLITE_UTF8
            | match self {
                Trust::PureInnocuous => SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS,
                Trust::DirectOnly => SQLITE_DIRECTONLY,
            }
    }
}

/// The body of a scalar function.
pub(crate) trait ScalarFn:
    Fn(&Context, &[ValueRef]) -> Result<Output> + Send + Sync + 'static
{
}
impl<F: Fn(&Context, &[ValueRef]) -> Result<Output> + Send + Sync + 'static> ScalarFn for F {}

/// Register `f` as `name` taking `n_args` arguments (-1: any number).
pub(crate) fn create_scalar<F: ScalarFn>(
    db: *mut sqlite3,
    name: &'static str,
    n_args: c_int,
    trust: Trust,
    f: F,
) -> Result<()> {
    let user_data = Box::into_raw(Box::new(Named { name, f })) as *mut c_void;
    register(
        db,
        name,
        n_args,
        trust,
        user_data,
        Some(scalar_trampoline::<F>),
        None,
        None,
        Some(drop_boxed::<Named<F>>),
    )
}

/// A function body with the SQL name its error messages start with.
struct Named<F> {
    name: &'static str,
    f: F,
}

/// The SQL name a function was registered with (its user data starts with it).
unsafe fn name_of(ctx: *mut sqlite3_context) -> &'static str {
    let p = call!(user_data(ctx)) as *const &'static str;
    if p.is_null() {
        "vekter"
    } else {
        *p
    }
}

unsafe extern "C" fn scalar_trampoline<F: ScalarFn>(
    ctx: *mut sqlite3_context,
    argc: c_int,
    argv: *mut *mut sqlite3_value,
) {
    let context = Context::from_raw(ctx);
    let result = guard(|| {
        let named = &*(call!(user_data(ctx)) as *const Named<F>);
        (named.f)(&context, args(argc, argv)).map_err(|e| e.context(named.name))
    });
    match result {
        Ok(output) => context.set(&output),
        Err(error) => context.set_error(&error),
    }
}

unsafe extern "C" fn drop_boxed<T>(p: *mut c_void) {
    if !p.is_null() {
        // Dropping never panics in our types, but a guard costs nothing here.
        let _ = guard(|| {
            drop(Box::from_raw(p as *mut T));
            Ok(())
        });
    }
}

/// The state of an aggregate over one group of rows.
pub(crate) trait Aggregate: Default + 'static {
    fn step(&mut self, ctx: &Context, args: &[ValueRef]) -> Result<()>;
    /// The result; called once, also for a group of zero rows (on a fresh `Default`).
    fn finish(self, ctx: &Context) -> Result<Output>;
}

/// Register aggregate `A` as `name`.
pub(crate) fn create_aggregate<A: Aggregate>(
    db: *mut sqlite3,
    name: &'static str,
    n_args: c_int,
    trust: Trust,
) -> Result<()> {
    let user_data = Box::into_raw(Box::new(name)) as *mut c_void;
    register(
        db,
        name,
        n_args,
        trust,
        user_data,
        None,
        Some(step_trampoline::<A>),
        Some(final_trampoline::<A>),
        Some(drop_boxed::<&'static str>),
    )
}

/// The per-group slot SQLite zero-fills for us holds a pointer to the boxed state.
unsafe fn state_slot<A>(ctx: *mut sqlite3_context, create: bool) -> *mut *mut A {
    let size = if create {
        std::mem::size_of::<*mut A>() as c_int
    } else {
        0
    };
    call!(aggregate_context(ctx, size)) as *mut *mut A
}

unsafe extern "C" fn step_trampoline<A: Aggregate>(
    ctx: *mut sqlite3_context,
    argc: c_int,
    argv: *mut *mut sqlite3_value,
) {
    let context = Context::from_raw(ctx);
    let result = guard(|| {
        let slot = state_slot::<A>(ctx, true);
        if slot.is_null() {
            return Err(Error::of(Kind::Internal, "out of memory"));
        }
        if (*slot).is_null() {
            *slot = Box::into_raw(Box::<A>::default());
        }
        (**slot)
            .step(&context, args(argc, argv))
            .map_err(|e| e.context(name_of(ctx)))
    });
    if let Err(error) = result {
        context.set_error(&error);
    }
}

unsafe extern "C" fn final_trampoline<A: Aggregate>(ctx: *mut sqlite3_context) {
    let context = Context::from_raw(ctx);
    let result = guard(|| {
        let slot = state_slot::<A>(ctx, false);
        let state = if slot.is_null() || (*slot).is_null() {
            A::default()
        } else {
            let boxed = Box::from_raw(*slot);
            *slot = std::ptr::null_mut();
            *boxed
        };
        state.finish(&context).map_err(|e| e.context(name_of(ctx)))
    });
    match result {
        Ok(output) => context.set(&output),
        Err(error) => context.set_error(&error),
    }
}

type XFunc = unsafe extern "C" fn(*mut sqlite3_context, c_int, *mut *mut sqlite3_value);

#[allow(clippy::too_many_arguments)]
fn register(
    db: *mut sqlite3,
    name: &str,
    n_args: c_int,
    trust: Trust,
    user_data: *mut c_void,
    x_func: Option<XFunc>,
    x_step: Option<XFunc>,
    x_final: Option<unsafe extern "C" fn(*mut sqlite3_context)>,
    x_destroy: Option<unsafe extern "C" fn(*mut c_void)>,
) -> Result<()> {
    let c_name = CString::new(name).expect("function names have no NUL");
    // SAFETY: valid connection from the entry point; on failure SQLite calls xDestroy itself.
    let rc = unsafe {
        call!(create_function_v2(
            db,
            c_name.as_ptr(),
            n_args,
            trust.flags(),
            user_data,
            x_func,
            x_step,
            x_final,
            x_destroy
        ))
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::sqlite(
            rc,
            format!("cannot register function {name}"),
        ))
    }
}
