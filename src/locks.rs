//! Locks that survive a panic. Every SQLite callback catches panics (`sqlite::guard`), so a
//! panic while a lock is held must not brick what the lock protects for the rest of the process:
//! a poisoned mutex is taken over as it is (it guards plain maps and counters), and a poisoned
//! index lock gives up the index it held, which the next search reloads from the database.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Lock `m`, whether or not a panic poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Write-lock a slot holding state that a panicking writer may have left half-changed: on
/// poison the state is dropped (`None`), so it is rebuilt rather than trusted.
pub(crate) fn write<T>(slot: &RwLock<Option<T>>) -> RwLockWriteGuard<'_, Option<T>> {
    slot.write().unwrap_or_else(|poisoned| {
        let mut guard = poisoned.into_inner();
        *guard = None;
        slot.clear_poison();
        guard
    })
}

/// Read-lock such a slot if no writer holds it (`None` otherwise, and when it is poisoned).
pub(crate) fn try_read<T>(slot: &RwLock<Option<T>>) -> Option<RwLockReadGuard<'_, Option<T>>> {
    slot.try_read().ok()
}

/// Read-lock such a slot; a poisoned one is reset first (see [`write`]).
pub(crate) fn read<T>(slot: &RwLock<Option<T>>) -> RwLockReadGuard<'_, Option<T>> {
    loop {
        match slot.read() {
            Ok(guard) => return guard,
            Err(poisoned) => {
                drop(poisoned);
                drop(write(slot));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_writer_resets_the_slot_instead_of_poisoning_it() {
        let slot = RwLock::new(Some(7));
        let result = std::panic::catch_unwind(|| {
            let mut guard = slot.write().unwrap();
            *guard = Some(8);
            panic!("half-way through a change");
        });
        assert!(result.is_err() && slot.is_poisoned());
        assert_eq!(*read(&slot), None, "the half-changed state is dropped");
        assert!(!slot.is_poisoned());
        *write(&slot) = Some(9);
        assert_eq!(*read(&slot), Some(9), "the slot works again");

        let m = Mutex::new(1);
        let _ = std::panic::catch_unwind(|| {
            let _g = m.lock().unwrap();
            panic!("boom");
        });
        assert_eq!(*lock(&m), 1);
    }
}
