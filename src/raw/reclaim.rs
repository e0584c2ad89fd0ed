//! Freeing nodes: when it is safe, and what happens if a value's `Drop` panics.
//!
//! # When a node may be freed
//! A node is retired by the one thread whose CAS unlinked it (a CAS loser never frees
//! anything). Retiring defers the free through crossbeam-epoch until every thread pinned at that
//! moment has unpinned, so no reader can still hold it.
//!
//! One case needs more: during a migration a node can be reachable from *two* tables, the old
//! one (as `Done`, still read by threads that have not moved on) and the new one, where it is
//! removed. Unlinking it from the new table does not make it unreachable, so while the new table
//! still has a `prev`, the node is buried in the previous table's graveyard and freed with that
//! table, which is itself retired only after the migration completes and nobody can reach it.
//!
//! # Panicking destructors
//! Values are dropped inside crossbeam-epoch's garbage collection, on whichever thread happens to
//! collect. A panic there would unwind through crossbeam's internals in an unrelated thread, so
//! each drop runs under `catch_unwind`: the panic is counted (see
//! [`dropped_value_panics`](crate::dropped_value_panics)) and collection goes on. The registry is
//! never affected: a node is unlinked before it is dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crossbeam_epoch::{Guard, Owned};

use super::node::Node;
use super::table::Table;
use crate::sync::{Ordering, StaticAtomicU64};

static DROP_PANICS: StaticAtomicU64 = StaticAtomicU64::new(0);

/// How many value destructors have panicked in this process (each one was caught).
pub(crate) fn drop_panics() -> u64 {
    DROP_PANICS.load(Ordering::Relaxed)
}

/// Frees a node, catching a panic from the value's destructor.
///
/// # Safety
/// `node` came from `Owned::new` and is unreachable: no thread can load it any more.
pub(crate) unsafe fn drop_node<V>(node: *mut Node<V>) {
    // SAFETY: the caller guarantees exclusive ownership of an `Owned`-allocated node.
    let owned = unsafe { Owned::from_raw(node) };
    if catch_unwind(AssertUnwindSafe(move || drop(owned))).is_err() {
        DROP_PANICS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Retires a node that the caller's CAS just unlinked from `table`.
///
/// # Safety
/// The caller won the CAS that replaced `node` in a slot of `table`, under `guard`, and
/// retires it exactly once.
pub(crate) unsafe fn retire<V>(table: &Table<V>, node: &Node<V>, guard: &Guard) {
    let ptr = node as *const Node<V> as *mut Node<V>;
    match table.prev(guard) {
        // The previous table may still hold this node as `Done`: keep it until that table is
        // freed.
        Some(prev) => prev.bury(ptr),
        // SAFETY: the node is unlinked from the only table that can reach it (a table whose
        // `prev` is null was never migrated into, or that migration completed and the old
        // table was unlinked before `prev` was cleared), so only threads pinned now can hold
        // it; the deferred free runs after they unpin.
        None => unsafe { guard.defer_unchecked(move || drop_node(ptr)) },
    }
}
