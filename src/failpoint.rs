//! Failure injection between the steps of multi-step writes, for `tests/failpoints.rs`
//! (tantivy's failpoints are the model). Only a build with the `failpoints` feature has them:
//! in the shipped library [`failpoint`] is an empty inline function.

#[cfg(not(feature = "failpoints"))]
use crate::error::Result;

#[cfg(feature = "failpoints")]
mod armed {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use crate::error::{Error, Kind, Result};
    use crate::locks::lock;

    /// Named points, in the order a save or a sync reaches them.
    pub const POINTS: &[&str] = &[
        "save:chunks-written",
        "save:config-written",
        "save:log-truncated",
        "apply:vectors-added",
        "drop:triggers-dropped",
        "rename:tables-renamed",
    ];

    /// What an armed point does when it is reached.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Action {
        /// Return an error, as a failed SQLite write would.
        Error,
        /// Panic, as a bug would (the callback's guard turns it into an SQL error).
        Panic,
    }

    static ARMED: Mutex<Option<HashMap<String, Action>>> = Mutex::new(None);

    /// Arm `point` (one of [`POINTS`]) until [`disarm`].
    pub fn arm(point: &str, action: Action) {
        assert!(POINTS.contains(&point), "no failpoint named {point}");
        lock(&ARMED)
            .get_or_insert_with(HashMap::new)
            .insert(point.to_string(), action);
    }

    /// Disarm every point.
    pub fn disarm() {
        *lock(&ARMED) = None;
    }

    pub(crate) fn failpoint(point: &str) -> Result<()> {
        let action = lock(&ARMED).as_ref().and_then(|m| m.get(point).copied());
        match action {
            None => Ok(()),
            Some(Action::Error) => Err(Error::of(Kind::Internal, format!("failpoint {point}"))),
            Some(Action::Panic) => panic!("failpoint {point}"),
        }
    }
}

#[cfg(feature = "failpoints")]
pub(crate) use armed::failpoint;
#[cfg(feature = "failpoints")]
pub use armed::{arm, disarm, Action, POINTS};

/// Without the `failpoints` feature every point passes.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn failpoint(_point: &str) -> Result<()> {
    Ok(())
}
