//! The only module that touches SQLite's C API: values in, results out, statements,
//! function registration and the panic guard. Everything above it works with safe types.

pub mod api;
mod conn;
mod context;
mod function;
mod guard;
mod value;
mod vtab;

pub use conn::{quote_ident, Blob, Conn, Stmt, StmtCache};
pub use context::{Context, Output};
pub use function::{create_aggregate, create_scalar, Aggregate, Trust};
pub use guard::guard;
pub use value::{Cell, ValueRef};
pub use vtab::{create_module, op, sqlite_string, Constraint, Cursor, IndexInfo, Plan, VTab};
