//! The one rule for `std::sync::Mutex` in the daemon: a lock poisoned by a
//! panic elsewhere is still used. Every guarded value here is a record or
//! a table that stays consistent between statements (no invariant spans a
//! panic point), and a daemon that stopped serving because one task
//! panicked would lose every app it supervises.

use std::sync::{Mutex, MutexGuard};

pub(crate) trait LockExt<T> {
    /// Locks, recovering the guard of a poisoned mutex.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
