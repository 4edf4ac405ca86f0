//! The only module that touches SQLite's C API: values in, results out, statements,
//! function registration and the panic guard. Everything above it works with safe types.

pub(crate) mod api;
mod conn;
mod context;
mod function;
mod guard;
mod value;
mod vtab;

pub(crate) use conn::{quote_ident, Blob, Conn, Stmt, StmtCache};
pub(crate) use context::{Context, Output};
pub(crate) use function::{create_aggregate, create_scalar, Aggregate, Trust};
pub(crate) use guard::{guard, panic_error};
pub(crate) use value::{Cell, ValueRef};
pub(crate) use vtab::{create_module, op, sqlite_string, Cursor, IndexInfo, Plan, VTab};
