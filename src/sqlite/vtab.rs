//! Virtual-table modules ([The Virtual Table Mechanism](https://www.sqlite.org/vtab.html)):
//! the raw `sqlite3_module` callbacks, each panic-guarded, forwarding to a safe [`VTab`].
//!
//! `sqlite-loadable`'s table wrappers are not used: they lack `xShadowName`, `xRename`, writes
//! with a rowid, and a panic guard (see `shared/PITFALLS.md`).

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};

use sqlite3ext_sys::{
    sqlite3, sqlite3_context, sqlite3_index_info, sqlite3_module, sqlite3_value, sqlite3_vtab,
    sqlite3_vtab_cursor,
};

use super::api::{call, libversion_number};
use super::conn::Conn;
use super::context::Context;
use super::guard::guard;
use super::value::{args, ValueRef};
use crate::error::{Error, Result};

/// SQLITE_CONSTRAINT from xBestIndex: "this plan cannot be used", not an error.
const SQLITE_CONSTRAINT: c_int = 19;

/// A virtual table implementation. `Aux` is the module's client data.
pub(crate) trait VTab: Sized + 'static {
    type Aux: 'static;
    type Cursor: Cursor<Table = Self>;

    /// Names of shadow tables, without the `<table>_` prefix.
    const SHADOW_TABLES: &'static [&'static str];

    /// False for an eponymous-only module (no `CREATE VIRTUAL TABLE`).
    const CREATES: bool;

    /// `SQLITE_VTAB_DIRECTONLY`: usable from top-level SQL only, never from a view or trigger
    /// ([sqlite3_vtab_config](https://www.sqlite.org/c3ref/vtab_config.html)).
    const DIRECT_ONLY: bool = false;

    /// `CREATE VIRTUAL TABLE`: the schema to declare and the table.
    fn create(conn: Conn, aux: &Self::Aux, args: &[String]) -> Result<(String, Self)>;
    /// Reattach to an existing table (any later connection, or an eponymous table).
    fn connect(conn: Conn, aux: &Self::Aux, args: &[String]) -> Result<(String, Self)>;
    fn best_index(&self, info: &mut IndexInfo) -> Result<Plan>;
    fn open(&self) -> Result<Self::Cursor>;
    /// `xUpdate`: `args` as SQLite passes them (argv[0] old rowid, argv[1] new rowid, …).
    fn update(&mut self, _args: &[ValueRef]) -> Result<Option<i64>> {
        Err(Error::invalid("this table is read-only"))
    }
    fn destroy(&mut self) -> Result<()> {
        Ok(())
    }
    fn rename(&mut self, _new_name: &str) -> Result<()> {
        Ok(())
    }
}

/// What `best_index` decided.
pub(crate) enum Plan {
    Use,
    /// Needed arguments are not usable in this combination: ask SQLite for another plan.
    Unusable,
}

pub(crate) trait Cursor: Sized + 'static {
    type Table: VTab;
    fn filter(
        &mut self,
        table: &Self::Table,
        idx_num: i32,
        idx_str: Option<&str>,
        args: &[ValueRef],
    ) -> Result<()>;
    fn next(&mut self) -> Result<()>;
    fn eof(&self) -> bool;
    fn column(&self, table: &Self::Table, ctx: &Context, i: i32) -> Result<()>;
    fn rowid(&self, table: &Self::Table) -> Result<i64>;
}

/// A copy of `msg` in memory SQLite frees with `sqlite3_free`.
pub(crate) fn sqlite_string(msg: &str) -> *mut c_char {
    let bytes = msg.as_bytes();
    // SAFETY: sqlite3_malloc returns memory of the requested size or NULL.
    unsafe {
        let p = call!(malloc((bytes.len() + 1) as c_int)) as *mut u8;
        if !p.is_null() {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
            *p.add(bytes.len()) = 0;
        }
        p as *mut c_char
    }
}

#[repr(C)]
struct TableBox<T: VTab> {
    base: sqlite3_vtab,
    aux: *const T::Aux,
    table: T,
}

#[repr(C)]
struct CursorBox<C: Cursor> {
    base: sqlite3_vtab_cursor,
    cursor: C,
}

/// The module struct and its client data live in one allocation that SQLite frees (through
/// `xDestroy` of `create_module_v2`) when the connection closes.
struct ModuleData<T: VTab> {
    module: sqlite3_module,
    aux: T::Aux,
}

/// Register module `name` on `db`.
pub(crate) fn create_module<T: VTab>(conn: Conn, name: &str, aux: T::Aux) -> Result<()> {
    let module = sqlite3_module {
        iVersion: 3,
        xCreate: if T::CREATES {
            Some(x_create::<T>)
        } else {
            None
        },
        xConnect: Some(x_connect::<T>),
        xBestIndex: Some(x_best_index::<T>),
        xDisconnect: Some(x_disconnect::<T>),
        xDestroy: Some(if T::CREATES {
            x_destroy::<T>
        } else {
            x_disconnect::<T>
        }),
        xOpen: Some(x_open::<T>),
        xClose: Some(x_close::<T>),
        xFilter: Some(x_filter::<T>),
        xNext: Some(x_next::<T>),
        xEof: Some(x_eof::<T>),
        xColumn: Some(x_column::<T>),
        xRowid: Some(x_rowid::<T>),
        xUpdate: Some(x_update::<T>),
        xBegin: None,
        xSync: None,
        xCommit: None,
        xRollback: None,
        xFindFunction: None,
        xRename: Some(x_rename::<T>),
        xSavepoint: None,
        xRelease: None,
        xRollbackTo: None,
        xShadowName: Some(x_shadow_name::<T>),
    };
    let data = Box::into_raw(Box::new(ModuleData::<T> { module, aux }));
    let c_name = CString::new(name).expect("module names have no NUL");
    // SAFETY: `data` stays alive until SQLite calls `drop_module` (also on failure).
    let rc = unsafe {
        call!(create_module_v2(
            conn.raw(),
            c_name.as_ptr(),
            &(*data).module,
            data as *mut c_void,
            Some(drop_module::<T>)
        ))
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::sqlite(rc, format!("cannot register module {name}")))
    }
}

unsafe extern "C" fn drop_module<T: VTab>(p: *mut c_void) {
    if !p.is_null() {
        let _ = guard(|| {
            drop(Box::from_raw(p as *mut ModuleData<T>));
            Ok(())
        });
    }
}

unsafe fn set_vtab_error(vtab: *mut sqlite3_vtab, e: &Error) -> c_int {
    if !(*vtab).zErrMsg.is_null() {
        call!(free((*vtab).zErrMsg as *mut c_void));
    }
    (*vtab).zErrMsg = sqlite_string(e.message());
    e.code()
}

unsafe fn construct<T: VTab>(
    create: bool,
    db: *mut sqlite3,
    p_aux: *mut c_void,
    argc: c_int,
    argv: *const *const c_char,
    pp_vtab: *mut *mut sqlite3_vtab,
    pz_err: *mut *mut c_char,
) -> c_int {
    let result = guard(|| {
        let data = &*(p_aux as *const ModuleData<T>);
        let conn = Conn::from_raw(db);
        let args: Vec<String> = (0..argc as usize)
            .map(|i| CStr::from_ptr(*argv.add(i)).to_string_lossy().into_owned())
            .collect();
        let (schema, table) = if create {
            T::create(conn, &data.aux, &args)?
        } else {
            T::connect(conn, &data.aux, &args)?
        };
        let c_schema = CString::new(schema).map_err(|_| Error::invalid("schema has NUL"))?;
        let rc = call!(declare_vtab(db, c_schema.as_ptr()));
        if rc != 0 {
            return Err(Error::sqlite(rc, conn.errmsg()));
        }
        if T::DIRECT_ONLY {
            const SQLITE_VTAB_DIRECTONLY: c_int = 3;
            call!(vtab_config(db, SQLITE_VTAB_DIRECTONLY));
        }
        Ok(Box::new(TableBox::<T> {
            base: sqlite3_vtab {
                pModule: std::ptr::null(),
                nRef: 0,
                zErrMsg: std::ptr::null_mut(),
            },
            aux: &data.aux,
            table,
        }))
    });
    match result {
        Ok(boxed) => {
            *pp_vtab = Box::into_raw(boxed) as *mut sqlite3_vtab;
            0
        }
        Err(e) => {
            if !pz_err.is_null() {
                *pz_err = sqlite_string(e.message());
            }
            e.code()
        }
    }
}

unsafe extern "C" fn x_create<T: VTab>(
    db: *mut sqlite3,
    p_aux: *mut c_void,
    argc: c_int,
    argv: *const *const c_char,
    pp_vtab: *mut *mut sqlite3_vtab,
    pz_err: *mut *mut c_char,
) -> c_int {
    construct::<T>(true, db, p_aux, argc, argv, pp_vtab, pz_err)
}

unsafe extern "C" fn x_connect<T: VTab>(
    db: *mut sqlite3,
    p_aux: *mut c_void,
    argc: c_int,
    argv: *const *const c_char,
    pp_vtab: *mut *mut sqlite3_vtab,
    pz_err: *mut *mut c_char,
) -> c_int {
    construct::<T>(false, db, p_aux, argc, argv, pp_vtab, pz_err)
}

unsafe extern "C" fn x_disconnect<T: VTab>(vtab: *mut sqlite3_vtab) -> c_int {
    let _ = guard(|| {
        drop(Box::from_raw(vtab as *mut TableBox<T>));
        Ok(())
    });
    0
}

unsafe extern "C" fn x_destroy<T: VTab>(vtab: *mut sqlite3_vtab) -> c_int {
    let result = guard(|| (*(vtab as *mut TableBox<T>)).table.destroy());
    match result {
        Ok(()) => x_disconnect::<T>(vtab),
        Err(e) => set_vtab_error(vtab, &e),
    }
}

unsafe extern "C" fn x_best_index<T: VTab>(
    vtab: *mut sqlite3_vtab,
    info: *mut sqlite3_index_info,
) -> c_int {
    let result = guard(|| {
        let table = &(*(vtab as *mut TableBox<T>)).table;
        table.best_index(&mut IndexInfo { raw: info })
    });
    match result {
        Ok(Plan::Use) => 0,
        Ok(Plan::Unusable) => SQLITE_CONSTRAINT,
        Err(e) => set_vtab_error(vtab, &e),
    }
}

unsafe extern "C" fn x_open<T: VTab>(
    vtab: *mut sqlite3_vtab,
    pp_cursor: *mut *mut sqlite3_vtab_cursor,
) -> c_int {
    let result = guard(|| (*(vtab as *mut TableBox<T>)).table.open());
    match result {
        Ok(cursor) => {
            let boxed = Box::new(CursorBox::<T::Cursor> {
                base: sqlite3_vtab_cursor {
                    pVtab: std::ptr::null_mut(),
                },
                cursor,
            });
            *pp_cursor = Box::into_raw(boxed) as *mut sqlite3_vtab_cursor;
            0
        }
        Err(e) => set_vtab_error(vtab, &e),
    }
}

unsafe extern "C" fn x_close<T: VTab>(cursor: *mut sqlite3_vtab_cursor) -> c_int {
    let _ = guard(|| {
        drop(Box::from_raw(cursor as *mut CursorBox<T::Cursor>));
        Ok(())
    });
    0
}

/// Run `f` on a cursor and its table; errors go to the table's error message.
unsafe fn with_cursor<T: VTab, R>(
    cursor: *mut sqlite3_vtab_cursor,
    f: impl FnOnce(&mut T::Cursor, &T) -> Result<R>,
) -> Result<R, c_int> {
    let vtab = (*cursor).pVtab;
    let result = guard(|| {
        let table = &(*(vtab as *mut TableBox<T>)).table;
        f(&mut (*(cursor as *mut CursorBox<T::Cursor>)).cursor, table)
    });
    result.map_err(|e| set_vtab_error(vtab, &e))
}

unsafe extern "C" fn x_filter<T: VTab>(
    cursor: *mut sqlite3_vtab_cursor,
    idx_num: c_int,
    idx_str: *const c_char,
    argc: c_int,
    argv: *mut *mut sqlite3_value,
) -> c_int {
    let idx_str = (!idx_str.is_null()).then(|| CStr::from_ptr(idx_str).to_str().unwrap_or(""));
    with_cursor::<T, ()>(cursor, |c, t| {
        c.filter(t, idx_num, idx_str, args(argc, argv))
    })
    .err()
    .unwrap_or(0)
}

unsafe extern "C" fn x_next<T: VTab>(cursor: *mut sqlite3_vtab_cursor) -> c_int {
    with_cursor::<T, ()>(cursor, |c, _| c.next())
        .err()
        .unwrap_or(0)
}

unsafe extern "C" fn x_eof<T: VTab>(cursor: *mut sqlite3_vtab_cursor) -> c_int {
    with_cursor::<T, bool>(cursor, |c, _| Ok(c.eof())).unwrap_or(true) as c_int
}

unsafe extern "C" fn x_column<T: VTab>(
    cursor: *mut sqlite3_vtab_cursor,
    ctx: *mut sqlite3_context,
    i: c_int,
) -> c_int {
    let context = Context::from_raw(ctx);
    with_cursor::<T, ()>(cursor, |c, t| c.column(t, &context, i))
        .err()
        .unwrap_or(0)
}

unsafe extern "C" fn x_rowid<T: VTab>(
    cursor: *mut sqlite3_vtab_cursor,
    p_rowid: *mut i64,
) -> c_int {
    match with_cursor::<T, i64>(cursor, |c, t| c.rowid(t)) {
        Ok(rowid) => {
            *p_rowid = rowid;
            0
        }
        Err(rc) => rc,
    }
}

unsafe extern "C" fn x_update<T: VTab>(
    vtab: *mut sqlite3_vtab,
    argc: c_int,
    argv: *mut *mut sqlite3_value,
    p_rowid: *mut i64,
) -> c_int {
    let result = guard(|| (*(vtab as *mut TableBox<T>)).table.update(args(argc, argv)));
    match result {
        Ok(rowid) => {
            if let (Some(rowid), false) = (rowid, p_rowid.is_null()) {
                *p_rowid = rowid;
            }
            0
        }
        Err(e) => set_vtab_error(vtab, &e),
    }
}

unsafe extern "C" fn x_rename<T: VTab>(vtab: *mut sqlite3_vtab, new_name: *const c_char) -> c_int {
    let result = guard(|| {
        let name = CStr::from_ptr(new_name).to_string_lossy().into_owned();
        (*(vtab as *mut TableBox<T>)).table.rename(&name)
    });
    match result {
        Ok(()) => 0,
        Err(e) => set_vtab_error(vtab, &e),
    }
}

unsafe extern "C" fn x_shadow_name<T: VTab>(name: *const c_char) -> c_int {
    if name.is_null() {
        return 0;
    }
    let name = CStr::from_ptr(name).to_bytes();
    T::SHADOW_TABLES
        .iter()
        .any(|s| s.as_bytes().eq_ignore_ascii_case(name)) as c_int
}

/// Operators of [sqlite3_index_info](https://www.sqlite.org/c3ref/index_info.html) constraints.
pub(crate) mod op {
    pub(crate) const EQ: u8 = 2;
    pub(crate) const LE: u8 = 8;
    pub(crate) const LT: u8 = 16;
    pub(crate) const LIMIT: u8 = 73;
    pub(crate) const OFFSET: u8 = 74;
}

/// One WHERE-clause term SQLite offers to the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Constraint {
    pub(crate) index: usize,
    /// Column number; -1 is the rowid.
    pub(crate) column: i32,
    pub(crate) op: u8,
    pub(crate) usable: bool,
}

/// Safe access to `sqlite3_index_info` during `xBestIndex`.
pub(crate) struct IndexInfo {
    raw: *mut sqlite3_index_info,
}

impl IndexInfo {
    pub(crate) fn constraints(&self) -> Vec<Constraint> {
        // SAFETY: SQLite provides nConstraint entries for the duration of xBestIndex.
        unsafe {
            let info = &*self.raw;
            (0..info.nConstraint.max(0) as usize)
                .map(|i| {
                    let c = &*info.aConstraint.add(i);
                    Constraint {
                        index: i,
                        column: c.iColumn,
                        op: c.op,
                        usable: c.usable != 0,
                    }
                })
                .collect()
        }
    }

    /// ORDER BY terms: (column, descending).
    pub(crate) fn order_by(&self) -> Vec<(i32, bool)> {
        // SAFETY: as above, nOrderBy entries.
        unsafe {
            let info = &*self.raw;
            (0..info.nOrderBy.max(0) as usize)
                .map(|i| {
                    let o = &*info.aOrderBy.add(i);
                    (o.iColumn, o.desc != 0)
                })
                .collect()
        }
    }

    /// Pass constraint `c`'s value as `xFilter` argument number `argv` (1-based).
    pub(crate) fn use_constraint(&mut self, c: &Constraint, argv: i32, omit: bool) {
        // SAFETY: index < nConstraint.
        unsafe {
            let usage = &mut *(*self.raw).aConstraintUsage.add(c.index);
            usage.argvIndex = argv;
            usage.omit = omit as u8;
        }
    }

    /// Ask for the whole right-hand side of `rowid IN (…)` at once
    /// ([sqlite3_vtab_in](https://www.sqlite.org/c3ref/vtab_in.html), SQLite 3.38+).
    pub(crate) fn take_in_list(&mut self, c: &Constraint) -> bool {
        if libversion_number() < 3_038_000 {
            return false;
        }
        // SAFETY: valid index_info and constraint index.
        unsafe {
            call!(vtab_in(self.raw, c.index as c_int, -1)) != 0
                && call!(vtab_in(self.raw, c.index as c_int, 1)) != 0
        }
    }

    pub(crate) fn set_plan(&mut self, idx_num: i32, idx_str: &str, cost: f64, rows: i64) {
        // SAFETY: valid index_info; the string is allocated with sqlite3_malloc and SQLite
        // frees it (needToFreeIdxStr).
        unsafe {
            let info = &mut *self.raw;
            info.idxNum = idx_num;
            info.idxStr = sqlite_string(idx_str);
            info.needToFreeIdxStr = 1;
            info.estimatedCost = cost;
            info.estimatedRows = rows;
        }
    }

    pub(crate) fn set_order_by_consumed(&mut self) {
        // SAFETY: valid index_info.
        unsafe { (*self.raw).orderByConsumed = 1 }
    }
}

impl ValueRef<'_> {
    /// Visit the values of an `IN (…)` list passed whole
    /// ([sqlite3_vtab_in_first](https://www.sqlite.org/c3ref/vtab_in_first.html)). Each value
    /// is only valid during its visit: SQLite reuses it for the next one.
    pub(crate) fn for_each_in(&self, mut visit: impl FnMut(super::Cell)) -> Result<()> {
        let mut v: *mut sqlite3_value = std::ptr::null_mut();
        // SAFETY: `self` is an IN-list argument of the current xFilter call.
        unsafe {
            let mut rc = call!(vtab_in_first(self.raw(), &mut v));
            while rc == 0 && !v.is_null() {
                visit(ValueRef::from_raw(v).cell());
                rc = call!(vtab_in_next(self.raw(), &mut v));
            }
            if rc != 0 && rc != 101 {
                return Err(Error::sqlite(rc, "cannot read the IN list"));
            }
        }
        Ok(())
    }
}
