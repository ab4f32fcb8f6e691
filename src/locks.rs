//! Taking a lock that a panic elsewhere poisoned.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, also when a panic poisoned it. Every mutex of this crate guards data that each
/// operation leaves consistent (a cache, a map of bodies, a producer slot, delivery counters), so
/// taking a poisoned lock over is safe, where failing would fail every later invocation.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
