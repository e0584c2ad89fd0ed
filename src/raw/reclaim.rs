//! Freeing nodes: when it is safe, and what happens if a value's `Drop` panics.
//!
//! # When a node may be freed
//! A node is retired by the one thread whose CAS unlinked it (a CAS loser never frees
//! anything). Retiring defers the free through crossbeam-epoch until every thread pinned at that
//! moment has unpinned, so no reader can still hold it.
//!
//! A removal does not unlink its node: the node becomes the name's tombstone (`Live(n)` →
//! `Tomb(n)`), which a later registration of the name reuses. Its value is dropped by a job
//! deferred at the removal ([`retire_value`]); its memory has two owners from then on, the job
//! and the tombstone, and the last of the two to let go frees it (`Node::refs`). So a removal
//! allocates nothing, and a tombstone costs no allocation of its own.
//!
//! One case needs more: during a migration a node can be reachable from *two* tables, the old
//! one (as `Done`, still read by threads that have not moved on) and the new one, where it is
//! removed. Unlinking it from the new table does not make it unreachable, so while the new table
//! still has a `prev`, the node's memory is buried in the previous table's graveyard and freed
//! with that table, which is itself retired only after the migration completes and nobody can
//! reach it. Its value is not: a `Done` slot is matched by name only, never read as a binding,
//! so the value goes through the registry's list of removed values like any other
//! (`pending.rs`), and is dropped as promptly.
//!
//! # Panicking destructors
//! Values are dropped inside crossbeam-epoch's garbage collection, on whichever thread happens to
//! collect. A panic there would unwind through crossbeam's internals in an unrelated thread, so
//! each drop runs under `catch_unwind`: the panic is counted (see
//! [`dropped_value_panics`](crate::dropped_value_panics)) and collection goes on. The registry is
//! never affected: a node is unlinked before it is dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crossbeam_epoch::{Guard, Owned};

use super::node::{Node, VALUE_GONE};
use super::pending::{Kind, Pending};
use super::table::Table;
use crate::sync::{Ordering, StaticAtomicU64};

static DROP_PANICS: StaticAtomicU64 = StaticAtomicU64::new(0);

/// How many value destructors have panicked in this process (each one was caught).
pub(crate) fn drop_panics() -> u64 {
    DROP_PANICS.load(Ordering::Relaxed)
}

/// Drops `x`, catching a panic from its destructor (counted with the values' ones): for what
/// the registry drops on a collector's thread besides values (the event log's records).
pub(crate) fn drop_caught<T>(x: T) {
    if catch_unwind(AssertUnwindSafe(move || drop(x))).is_err() {
        DROP_PANICS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Drops a node's value in place, catching a panic from its destructor.
///
/// # Safety
/// Called once per node, when no thread can read its value any more.
unsafe fn drop_value<V>(node: *mut Node<V>) {
    // SAFETY: the caller guarantees the last access to the value; the node is allocated (the
    // caller holds a share of its memory).
    if catch_unwind(AssertUnwindSafe(|| unsafe { (*node).drop_value() })).is_err() {
        DROP_PANICS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Gives up one owner's share of a node's memory; the last owner frees it (its value is gone
/// by then: the owners are the slot's tombstone and the removal's value job, which drops the
/// value before giving up its share).
///
/// # Safety
/// The caller holds one share (see [`Node::refs`](super::node::Node)) and gives it up once.
unsafe fn release<V>(node: *mut Node<V>) {
    // AcqRel: the last owner's free happens after every other owner's last access (the value
    // job's drop in particular).
    // SAFETY: the caller's share keeps the node allocated until this decrement.
    if unsafe { (*node).refs.fetch_sub(1, Ordering::AcqRel) } == 1 {
        // SAFETY: the last share: nobody else can reach the node. Its value is gone already:
        // marked so, dropping the box drops only the name.
        unsafe { (*node).refs.store(VALUE_GONE, Ordering::Relaxed) };
        // SAFETY: as above; allocated by `Owned::new`.
        drop(unsafe { Owned::from_raw(node) }.into_box());
    }
}

/// Frees a node that was never a tombstone: its value, then its memory.
///
/// # Safety
/// `node` came from `Owned::new`, is unreachable (no thread can load it any more) and its value
/// is alive; the caller owns the node's only share.
pub(crate) unsafe fn drop_node<V>(node: *mut Node<V>) {
    // SAFETY: as the caller guarantees.
    unsafe {
        drop_value(node);
        release(node);
    }
}

/// Frees a tombstone's memory share (its value job owns the other).
///
/// # Safety
/// `node` was a tombstone that is now unreachable, and this is the slot's one release of it.
pub(crate) unsafe fn drop_tomb<V>(node: *mut Node<V>) {
    // SAFETY: as the caller guarantees.
    unsafe { release(node) }
}

/// What a retirement gives up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Share {
    /// A node that was a binding until now (replaced, or purged in favour of a new one): its
    /// value and memory.
    Whole,
    /// A tombstone's memory share (its value was taken care of when it was removed).
    Tomb,
}

/// Frees a node per `share` (for graves).
///
/// # Safety
/// As [`drop_node`] for `Share::Whole`, as [`drop_tomb`] for `Share::Tomb`.
pub(crate) unsafe fn free<V>(node: *mut Node<V>, share: Share) {
    // SAFETY: as the caller guarantees.
    unsafe {
        match share {
            Share::Whole => drop_node(node),
            Share::Tomb => drop_tomb(node),
        }
    }
}

/// Retires what the caller's CAS just unlinked from `table`: a binding (`Share::Whole`) or a
/// tombstone (`Share::Tomb`).
///
/// # Safety
/// The caller won the CAS that replaced `node` in a slot of `table`, under `guard`, and
/// retires it exactly once.
pub(crate) unsafe fn retire<V>(
    table: &Table<V>,
    pending: &Pending<V>,
    node: &Node<V>,
    share: Share,
    guard: &Guard,
) {
    let ptr = node as *const Node<V> as *mut Node<V>;
    match (table.prev(guard), share) {
        // The previous table may still hold this node as `Done`: keep its memory until that
        // table is freed. Its value, though, nobody can read any more (a `Done` slot is matched
        // by name only), so it goes through the registry's list like any removed value (as
        // for a tombstone, the node then has two owners: the grave and the value job).
        (Some(prev), Share::Whole) => {
            // Relaxed: as in `retire_value`.
            node.refs.fetch_add(1, Ordering::Relaxed);
            prev.bury(ptr, Share::Tomb);
            // SAFETY: the node is unlinked from the next table, so only threads pinned now can
            // read its value (the old table's `Done` slot does not), and the list's job runs
            // after they unpin; the job owns the share just added.
            unsafe { pending.push(node, Kind::Value, guard) }
        }
        (Some(prev), Share::Tomb) => prev.bury(ptr, share),
        // A binding's value goes through the registry's list, so that any thread can hand it
        // over (see `pending.rs`).
        // SAFETY: the node is unlinked from the only table that can reach it (a table whose
        // `prev` is null was never migrated into, or that migration completed and the old
        // table was unlinked before `prev` was cleared), so only threads pinned now can hold
        // it, and the list's job runs after they unpin; the list takes the whole node, once.
        (None, Share::Whole) => unsafe { pending.push(node, Kind::Whole, guard) },
        // A tombstone holds no value: nobody waits for its memory.
        // SAFETY: as above; the deferred free runs after every thread pinned now unpins.
        (None, Share::Tomb) => unsafe { guard.defer_unchecked(move || free(ptr, share)) },
    }
}

/// The job a removal defers for its value: drop it, then give up the job's share.
///
/// # Safety
/// As `retire_value` set it up: the job's share is held, and no thread can read the value.
pub(crate) unsafe fn drop_value_job<V>(node: *mut Node<V>) {
    // SAFETY: as the caller guarantees.
    unsafe {
        drop_value(node);
        release(node);
    }
}

/// Turns a binding the caller's CAS just made a tombstone (`Live(node)` → `Tomb(node)`) into
/// one: the node stays, as the tombstone, and its value is dropped by a job deferred past every
/// thread pinned now, the only ones that can have reached it as a binding (a thread pinned
/// later finds `Tomb` here, or `Done` in a previous table, and neither reads a value). The job
/// goes through the registry's list of pending removals (`pending.rs`).
///
/// # Safety
/// The caller won that CAS under `guard`, once.
pub(crate) unsafe fn retire_value<V>(pending: &Pending<V>, node: &Node<V>, guard: &Guard) {
    // Relaxed: the job that gives this share up runs after this thread unpins, which orders
    // it after this increment; so does any release of the tombstone's share (also deferred or
    // buried, by a thread that saw the tombstone this CAS published).
    node.refs.fetch_add(1, Ordering::Relaxed);
    // SAFETY: as above; the list's entry holds the share just added, so the node is allocated
    // until its job runs.
    unsafe { pending.push(node, Kind::Value, guard) };
}
