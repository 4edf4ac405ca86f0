//! A borrowed connection and its prepared statements
//! ([sqlite3](https://www.sqlite.org/c3ref/sqlite3.html),
//! [sqlite3_stmt](https://www.sqlite.org/c3ref/stmt.html)).

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};

use sqlite3ext_sys::{sqlite3, sqlite3_stmt};

use super::api::{call, libversion_number};
use super::value::{bytes, cell_from_type, Cell};
use crate::error::{Error, Result};

const SQLITE_ROW: c_int = 100;
const SQLITE_DONE: c_int = 101;
const SQLITE_FCNTL_DATA_VERSION: c_int = 35;
const SQLITE_FCNTL_VFS_POINTER: c_int = 27;

/// The Litestream transaction id each connection (by its handle) last saw
/// (`Conn::replica_position`).
static REPLICA_TXIDS: once_cell::sync::Lazy<
    std::sync::Mutex<std::collections::HashMap<usize, u64>>,
> = once_cell::sync::Lazy::new(Default::default);

/// The head of `sqlite3_vfs` (its layout is SQLite's stable ABI), up to the name.
#[repr(C)]
struct VfsHead {
    version: c_int,
    os_file_size: c_int,
    max_pathname: c_int,
    next: *mut c_void,
    name: *const std::os::raw::c_char,
}

/// A connection owned by the host; vekter never opens or closes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Conn {
    raw: *mut sqlite3,
}

impl Conn {
    /// # Safety
    /// `raw` must be an open connection for as long as the `Conn` is used.
    pub(crate) unsafe fn from_raw(raw: *mut sqlite3) -> Self {
        Conn { raw }
    }

    pub(crate) fn raw(&self) -> *mut sqlite3 {
        self.raw
    }

    /// The connection's last error message.
    pub(crate) fn errmsg(&self) -> String {
        // SAFETY: valid connection; the message is copied at once.
        unsafe {
            let p = call!(errmsg(self.raw));
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        }
    }

    pub(crate) fn prepare(&self, sql: &str) -> Result<Stmt> {
        let c_sql = CString::new(sql).map_err(|_| Error::invalid("SQL text contains NUL"))?;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: valid connection and NUL-terminated SQL.
        let rc = unsafe {
            call!(prepare_v2(
                self.raw,
                c_sql.as_ptr(),
                -1,
                &mut stmt,
                std::ptr::null_mut()
            ))
        };
        if rc != 0 {
            return Err(Error::sqlite(rc, self.errmsg()));
        }
        Ok(Stmt {
            raw: stmt,
            conn: *self,
        })
    }

    /// An incremental-I/O handle on `schema.table.column` of row `rowid`, read-only
    /// ([sqlite3_blob_open](https://www.sqlite.org/c3ref/blob_open.html)): SQLite copies
    /// overflow pages straight into the caller's buffer, with no intermediate value.
    pub(crate) fn open_blob(
        &self,
        schema: &str,
        table: &str,
        column: &str,
        rowid: i64,
        writable: bool,
    ) -> Result<Blob> {
        let name = |s: &str| CString::new(s).map_err(|_| Error::invalid("name contains NUL"));
        let (c_schema, c_table, c_column) = (name(schema)?, name(table)?, name(column)?);
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid connection and NUL-terminated names; on failure SQLite sets the handle
        // to NULL (closing NULL is a no-op).
        let rc = unsafe {
            call!(blob_open(
                self.raw,
                c_schema.as_ptr(),
                c_table.as_ptr(),
                c_column.as_ptr(),
                rowid,
                writable as c_int,
                &mut raw
            ))
        };
        let blob = Blob { raw, conn: *self };
        if rc != 0 {
            return Err(Error::sqlite(rc, self.errmsg()));
        }
        Ok(blob)
    }

    /// Run statements that return no rows.
    pub(crate) fn execute(&self, sql: &str) -> Result<()> {
        let mut stmt = self.prepare(sql)?;
        while stmt.step()? {}
        Ok(())
    }

    /// The file of schema `schema` (`main`, `temp`, an attached alias): `None` when there is
    /// no such schema, `Some("")` for in-memory and temporary databases.
    pub(crate) fn db_filename(&self, schema: &str) -> Option<String> {
        let c_schema = CString::new(schema).ok()?;
        // SAFETY: valid connection; the name is copied at once.
        unsafe {
            let p = call!(db_filename(self.raw, c_schema.as_ptr()));
            if p.is_null() {
                None
            } else {
                Some(CStr::from_ptr(p).to_string_lossy().into_owned())
            }
        }
    }

    /// Rows changed by this connection since it opened, all schemas together.
    pub(crate) fn total_changes(&self) -> i64 {
        // SAFETY: valid connection.
        unsafe {
            if libversion_number() >= 3_037_000 {
                call!(total_changes64(self.raw))
            } else {
                call!(total_changes(self.raw)) as i64
            }
        }
    }

    /// True outside an explicit transaction.
    pub(crate) fn autocommit(&self) -> bool {
        // SAFETY: valid connection.
        unsafe { call!(get_autocommit(self.raw)) != 0 }
    }

    /// The pager's data version of `schema`: changes with every commit to that file, from this
    /// connection or any other, in any process
    /// ([SQLITE_FCNTL_DATA_VERSION](https://www.sqlite.org/c3ref/c_fcntl_begin_atomic_write.html)).
    ///
    /// The pager only notices other connections' commits when a read transaction starts, so
    /// one is held (see [`hold_read`](Self::hold_read)) while the version is read.
    ///
    /// One exception: Litestream's VFS read replica changes the file change counter on every
    /// read (so that SQLite drops its cache), so its data version moves with every statement
    /// while nothing was written. There the replica's transaction id stands in for it
    /// ([`replica_position`](Self::replica_position)).
    pub(crate) fn data_version(&self, schema: &str) -> Option<u32> {
        if let Some(position) = self.replica_position(schema) {
            return Some(position);
        }
        let _held = self.hold_read(schema).ok()?;
        let c_schema = CString::new(schema).ok()?;
        let mut version: u32 = 0;
        // SAFETY: valid connection; the file control writes one u32.
        let rc = unsafe {
            call!(file_control(
                self.raw,
                c_schema.as_ptr(),
                SQLITE_FCNTL_DATA_VERSION,
                &mut version as *mut u32 as *mut c_void
            ))
        };
        (rc == 0).then_some(version)
    }

    /// For the main database read through Litestream's VFS (`vfs=litestream`) on a
    /// connection where its `litestream_txid()` is registered (it answers for `main` only):
    /// the replica's transaction id, which moves exactly when the replica applies a
    /// transaction. `None` everywhere else.
    ///
    /// The VFS advances the id as soon as it polls, but a connection holding a read lock sees
    /// the new pages only once it lets go: an id read inside a statement may be ahead of the
    /// data the statement reads. So an id is trusted only once this connection has seen it on
    /// an earlier statement too (in autocommit mode the lock was let go in between); a new one
    /// stands for "changed", with a value no stamp holds.
    pub(crate) fn replica_position(&self, schema: &str) -> Option<u32> {
        if schema != "main" || self.vfs_name(schema)? != "litestream" {
            return None;
        }
        let mut stmt = self.prepare("SELECT litestream_txid()").ok()?;
        if !stmt.step().ok()? {
            return None;
        }
        let txid = u64::from_str_radix(stmt.text(0)?.trim(), 16).ok()?;
        let previous = crate::locks::lock(&REPLICA_TXIDS).insert(self.raw as usize, txid);
        match previous == Some(txid) {
            true => Some((txid ^ (txid >> 32)) as u32),
            false => Some(crate::registry::next_generation() as u32 | 0x8000_0000),
        }
    }

    /// The name of the VFS `schema` is read through (SQLITE_FCNTL_VFS_POINTER, which SQLite
    /// answers itself: a VFS need not implement SQLITE_FCNTL_VFSNAME, and Litestream's does not).
    fn vfs_name(&self, schema: &str) -> Option<String> {
        let c_schema = CString::new(schema).ok()?;
        let mut vfs: *const VfsHead = std::ptr::null();
        // SAFETY: valid connection; the file control stores the database's registered
        // `sqlite3_vfs` (or nothing), whose name is a NUL-terminated string it owns.
        unsafe {
            let rc = call!(file_control(
                self.raw,
                c_schema.as_ptr(),
                SQLITE_FCNTL_VFS_POINTER,
                &mut vfs as *mut *const VfsHead as *mut c_void
            ));
            if rc != 0 || vfs.is_null() || (*vfs).name.is_null() {
                return None;
            }
            Some(
                std::ffi::CStr::from_ptr((*vfs).name)
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    }

    /// Make sure one read transaction on `schema` spans what follows, so that several
    /// statements see one snapshot of the database: returns a statement that holds it until
    /// dropped, or `None` when this connection already holds one.
    pub(crate) fn hold_read(&self, schema: &str) -> Result<Option<Stmt>> {
        let c_schema = CString::new(schema).map_err(|_| Error::invalid("schema name has NUL"))?;
        if self.in_read_transaction(&c_schema) {
            return Ok(None);
        }
        let mut stmt = self.schema_version_stmt(schema)?;
        // A stepped statement that has not finished keeps its read transaction open.
        stmt.step()?;
        Ok(Some(stmt))
    }

    fn schema_version_stmt(&self, schema: &str) -> Result<Stmt> {
        self.prepare(&format!("PRAGMA {}.schema_version", quote_ident(schema)))
    }

    /// The schema cookie of `schema`, which changes with every change to its schema; read
    /// from `held` (a statement [`hold_read`](Self::hold_read) returned) when there is one.
    pub(crate) fn schema_version(&self, schema: &str, held: Option<&Stmt>) -> Result<i64> {
        let read = |stmt: &Stmt| match stmt.cell(0) {
            Cell::Integer(v) => v,
            _ => -1,
        };
        match held {
            Some(stmt) => Ok(read(stmt)),
            None => {
                let mut stmt = self.schema_version_stmt(schema)?;
                stmt.step()?;
                Ok(read(&stmt))
            }
        }
    }

    /// True when this connection holds a read (or write) transaction on `schema`
    /// ([sqlite3_txn_state](https://www.sqlite.org/c3ref/txn_state.html), SQLite 3.34+).
    fn in_read_transaction(&self, schema: &CStr) -> bool {
        self.txn_state(schema) > 0
    }

    /// 0 none, 1 read, 2 write; 2 also on hosts too old to tell (the cautious answer).
    fn txn_state(&self, schema: &CStr) -> c_int {
        if libversion_number() < 3_034_000 {
            return 2;
        }
        // SAFETY: valid connection and NUL-terminated schema name.
        unsafe { call!(txn_state(self.raw, schema.as_ptr())) }
    }

    /// True when this connection has a write transaction open on `schema`: its uncommitted
    /// writes may be visible to it.
    pub(crate) fn in_write_transaction(&self, schema: &str) -> bool {
        CString::new(schema).map_or(true, |s| self.txn_state(&s) >= 2)
    }

    /// True when `schema` is opened read-only.
    pub(crate) fn readonly(&self, schema: &str) -> bool {
        let Ok(c_schema) = CString::new(schema) else {
            return true;
        };
        // SAFETY: valid connection.
        unsafe { call!(db_readonly(self.raw, c_schema.as_ptr())) == 1 }
    }
}

/// A prepared statement, finalized on drop.
pub(crate) struct Stmt {
    raw: *mut sqlite3_stmt,
    conn: Conn,
}

impl Stmt {
    fn check(&self, rc: c_int) -> Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(Error::sqlite(rc, self.conn.errmsg()))
        }
    }

    /// Bind TEXT: UTF-8 bytes, taken as they are (a key read from a row may not be valid UTF-8).
    pub(crate) fn bind_text<T: AsRef<[u8]> + ?Sized>(
        &mut self,
        index: c_int,
        text: &T,
    ) -> Result<()> {
        let text = text.as_ref();
        // SAFETY: valid statement; SQLITE_TRANSIENT makes SQLite copy the text.
        let rc = unsafe {
            call!(bind_text64(
                self.raw,
                index,
                text.as_ptr() as *const c_char,
                text.len() as u64,
                Some(std::mem::transmute::<
                    isize,
                    unsafe extern "C" fn(*mut c_void),
                >(-1)),
                1
            ))
        };
        self.check(rc)
    }

    pub(crate) fn bind_blob(&mut self, index: c_int, blob: &[u8]) -> Result<()> {
        // SAFETY: valid statement; SQLITE_TRANSIENT makes SQLite copy the bytes. A zero-length
        // blob still needs a non-NULL pointer (NULL would bind SQL NULL).
        let rc = unsafe {
            call!(bind_blob64(
                self.raw,
                index,
                if blob.is_empty() {
                    c"".as_ptr() as *const c_void
                } else {
                    blob.as_ptr() as *const c_void
                },
                blob.len() as u64,
                Some(std::mem::transmute::<
                    isize,
                    unsafe extern "C" fn(*mut c_void),
                >(-1))
            ))
        };
        self.check(rc)
    }

    pub(crate) fn bind_f64(&mut self, index: c_int, value: f64) -> Result<()> {
        // SAFETY: valid statement.
        let rc = unsafe { call!(bind_double(self.raw, index, value)) };
        self.check(rc)
    }

    pub(crate) fn bind_i64(&mut self, index: c_int, value: i64) -> Result<()> {
        // SAFETY: valid statement.
        let rc = unsafe { call!(bind_int64(self.raw, index, value)) };
        self.check(rc)
    }

    /// Rewind to run again with new bindings.
    pub(crate) fn reset(&mut self) {
        // SAFETY: valid statement; the error (if any) was already reported by step.
        unsafe {
            call!(reset(self.raw));
        }
    }

    /// Step once: `true` when a row is ready.
    pub(crate) fn step(&mut self) -> Result<bool> {
        // SAFETY: valid statement.
        match unsafe { call!(step(self.raw)) } {
            SQLITE_ROW => Ok(true),
            SQLITE_DONE => Ok(false),
            rc => Err(Error::sqlite(rc, self.conn.errmsg())),
        }
    }

    /// Column `i` of the current row, borrowed until the next `step`.
    pub(crate) fn cell(&self, i: c_int) -> Cell<'_> {
        let raw = self.raw;
        // SAFETY: valid statement positioned on a row; pointers live until the next step.
        unsafe {
            cell_from_type(
                call!(column_type(raw, i)),
                || call!(column_int64(raw, i)),
                || call!(column_double(raw, i)),
                || {
                    let p = call!(column_text(raw, i));
                    bytes(p, call!(column_bytes(raw, i)))
                },
                || {
                    let p = call!(column_blob(raw, i)) as *const u8;
                    bytes(p, call!(column_bytes(raw, i)))
                },
            )
        }
    }

    /// Column `i` as text (lossy), or `None` when it is NULL.
    pub(crate) fn text(&self, i: c_int) -> Option<String> {
        match self.cell(i) {
            Cell::Null => None,
            Cell::Text(b) | Cell::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Cell::Integer(v) => Some(v.to_string()),
            Cell::Real(v) => Some(v.to_string()),
        }
    }
}

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: finalize once; NULL is allowed.
        unsafe {
            call!(finalize(self.raw));
        }
    }
}

/// Prepared statements kept for reuse by one owner, finalized when the owner is dropped. Owners
/// are virtual tables: SQLite disconnects them before it checks for unfinalized statements at
/// `sqlite3_close`, so a cache never makes closing fail.
#[derive(Default)]
pub(crate) struct StmtCache {
    stmts: std::cell::RefCell<std::collections::HashMap<String, Stmt>>,
}

impl StmtCache {
    /// Run `f` on the statement for `sql`, prepared once. Re-entrant: a nested use of the same
    /// SQL prepares its own statement.
    pub(crate) fn with<R>(
        &self,
        conn: Conn,
        sql: &str,
        f: impl FnOnce(&mut Stmt) -> Result<R>,
    ) -> Result<R> {
        let cached = self.stmts.borrow_mut().remove(sql);
        let mut stmt = match cached {
            Some(stmt) => stmt,
            None => conn.prepare(sql)?,
        };
        let result = f(&mut stmt);
        stmt.reset();
        self.stmts.borrow_mut().insert(sql.to_string(), stmt);
        result
    }
}

/// Quote an SQL identifier: `my "table"` → `"my ""table"""`.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An open BLOB handle, closed on drop.
pub(crate) struct Blob {
    raw: *mut sqlite3ext_sys::sqlite3_blob,
    conn: Conn,
}

impl Blob {
    /// Point the handle at another row of the same table.
    pub(crate) fn reopen(&mut self, rowid: i64) -> Result<()> {
        // SAFETY: an open handle.
        let rc = unsafe { call!(blob_reopen(self.raw, rowid)) };
        if rc != 0 {
            return Err(Error::sqlite(rc, self.conn.errmsg()));
        }
        Ok(())
    }

    /// Fill `dest` from byte `offset` of the BLOB.
    pub(crate) fn read(&self, dest: &mut [u8], offset: usize) -> Result<()> {
        let (n, at) = blob_span(dest.len(), offset)?;
        // SAFETY: an open handle; `dest` holds `n` bytes; SQLite checks the range.
        let rc = unsafe { call!(blob_read(self.raw, dest.as_mut_ptr() as *mut c_void, n, at)) };
        if rc != 0 {
            return Err(Error::sqlite(rc, self.conn.errmsg()));
        }
        Ok(())
    }

    /// Overwrite the BLOB from byte `offset` with `src` (a handle opened writable; the BLOB
    /// keeps its length). Only the pages holding those bytes are written.
    pub(crate) fn write(&self, src: &[u8], offset: usize) -> Result<()> {
        let (n, at) = blob_span(src.len(), offset)?;
        // SAFETY: an open handle; `src` holds `n` bytes; SQLite checks the range.
        let rc = unsafe { call!(blob_write(self.raw, src.as_ptr() as *const c_void, n, at)) };
        if rc != 0 {
            return Err(Error::sqlite(rc, self.conn.errmsg()));
        }
        Ok(())
    }
}

/// A BLOB I/O call's length and offset as SQLite takes them.
fn blob_span(len: usize, offset: usize) -> Result<(c_int, c_int)> {
    match (c_int::try_from(len), c_int::try_from(offset)) {
        (Ok(n), Ok(at)) => Ok((n, at)),
        _ => Err(Error::invalid("BLOB I/O out of range")),
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        // SAFETY: closes the handle opened in `open_blob` (NULL is a no-op).
        unsafe {
            call!(blob_close(self.raw));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::quote_ident;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("embeddings"), "\"embeddings\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
