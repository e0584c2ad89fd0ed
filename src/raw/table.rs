//! One open-addressing table: an array of tagged node pointers, probed linearly.
//!
//! # Slot states
//! A slot is one `Atomic<Node>`; the three low bits of the pointer (nodes are 8-aligned) say
//! what the slot is:
//!
//! | pointer | bits | state | meaning |
//! | --- | --- | --- | --- |
//! | null | `000` | `Empty` | never claimed; ends every probe chain that reaches it |
//! | node | `001` | `Tomb` | a removed binding: `node` is a tombstone holding only the name; reads skip it, and only an insert of that same name may reuse the slot |
//! | null | `010` | `SealedEmpty` | an empty slot the migration passed: ends the chain *here*, continue in the next table |
//! | null | `011` | `SealedTomb` | a tombstone the migration passed; skipped |
//! | node | `000` | `Live` | the current binding of `node.name` |
//! | node | `010` | `Frozen` | still the current binding, but being copied: no writes here |
//! | node | `110` | `Done` | copied: the next table has the current state of this name |
//!
//! Transitions (every one a compare-and-swap): `Empty → Live | SealedEmpty`,
//! `Live → Live' | Tomb | Frozen`, `Tomb → Live (same name) | SealedTomb`, `Frozen → Done`.
//! A slot, once claimed from `Empty`, belongs to one name for the life of the table (live,
//! tombstone, frozen or done), and nothing ever becomes `Empty` again. So once a probe has passed
//! a slot that does not hold its name, that slot can never start holding it, and a name has at
//! most one slot per table: insert-if-absent is a single CAS, on the name's own tombstone if the
//! chain has one, else on the chain's first `Empty` slot (see `raw/mod.rs`). Reusing its own
//! tombstone keeps a name that is registered and unregistered all day from laying a run of
//! tombstones along its chain.
//!
//! # Orderings
//! - Slot loads are `Acquire`: a reader dereferences the node that the inserting thread
//!   initialised before its `Release` CAS.
//! - Slot CASes are `AcqRel` on success (`Release` publishes a node; `Acquire` orders the
//!   migration protocol's "mark the old slot `Done` before touching the copy" rule) and
//!   `Acquire` on failure (the caller dereferences what it found).
//! - Counters (`claimed`, `cursor`) are `Relaxed`: they size work and never publish memory.
//!   `sealed` is `AcqRel`; see `raw/migrate.rs`.

use std::ptr;

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};

use super::node::Node;
use super::reclaim::drop_node;
use crate::sync::{AtomicPtr, AtomicUsize, Ordering};

pub(crate) const TOMB: usize = 0b001;
pub(crate) const FROZEN: usize = 0b010;
pub(crate) const DONE: usize = 0b100;

const _: () = assert!(
    std::mem::align_of::<Node<()>>() >= 8,
    "three tag bits need 8-aligned nodes"
);

/// A decoded slot (see the module docs).
pub(crate) enum Slot<'g, V> {
    Empty,
    Tomb(&'g Node<V>),
    SealedEmpty,
    SealedTomb,
    Live(&'g Node<V>),
    Frozen(&'g Node<V>),
    Done(&'g Node<V>),
}

impl<'g, V> Slot<'g, V> {
    /// Decodes a loaded slot word.
    #[inline]
    pub(crate) fn decode(word: Shared<'g, Node<V>>) -> Slot<'g, V> {
        // SAFETY: 1. Slots only ever hold null or pointers to nodes allocated by `Owned::new`.
        // 2. The word was loaded under the guard `'g`, and a node is retired only after it is
        //    unreachable from every slot a thread pinned now could load it from (see
        //    `raw/reclaim.rs`), so it stays allocated for `'g`.
        match (unsafe { word.as_ref() }, word.tag()) {
            (None, 0) => Slot::Empty,
            (None, FROZEN) => Slot::SealedEmpty,
            (None, t) if t == TOMB | FROZEN => Slot::SealedTomb,
            (Some(n), 0) => Slot::Live(n),
            (Some(n), TOMB) => Slot::Tomb(n),
            (Some(n), FROZEN) => Slot::Frozen(n),
            (Some(n), t) if t == FROZEN | DONE => Slot::Done(n),
            (n, t) => unreachable!("corrupt slot: null={} tag={t:#b}", n.is_none()),
        }
    }
}

/// The state of a migration out of a table.
pub(crate) struct Migration<V> {
    /// The table being filled. Owned by the map: it becomes the root when the migration
    /// completes, and is never freed while this migration is reachable.
    pub(crate) next: *const Table<V>,
    /// For old slot `i`, where its node goes in `next`: 0 if not chosen yet, else index + 1.
    /// This gives every copy one place it can land, so a helper that wakes up late can never
    /// install a second copy of a node (see `raw/migrate.rs`).
    pub(crate) dest: Box<[AtomicUsize]>,
}

/// A removed node that the previous table may still point at; freed with that table.
struct Grave<V> {
    node: *mut Node<V>,
    next: *mut Grave<V>,
}

pub(crate) struct Table<V> {
    /// `capacity - 1`; the capacity is a power of two.
    pub(crate) mask: usize,
    slots: Box<[Atomic<Node<V>>]>,
    /// An upper bound on the slots claimed (taken from `Empty`) in this table: incremented
    /// before a claim's CAS and decremented if the CAS fails.
    pub(crate) claimed: AtomicUsize,
    /// The migration out of this table, once one starts. Set once, never cleared.
    pub(crate) migration: Atomic<Migration<V>>,
    /// The next chunk of slots to hand to a migrating helper.
    pub(crate) cursor: AtomicUsize,
    /// How many slots have reached a final state (`Done` or sealed).
    pub(crate) sealed: AtomicUsize,
    /// The table migrating into this one, until that migration completes; then null.
    pub(crate) prev: AtomicPtr<Table<V>>,
    /// Nodes removed from this table's successor while this table could still point at them
    /// (see `reclaim::retire`). A push-only Treiber stack, drained when this table is freed.
    graveyard: AtomicPtr<Grave<V>>,
}

impl<V> Table<V> {
    pub(crate) fn new(capacity: usize) -> Table<V> {
        debug_assert!(capacity.is_power_of_two());
        Table {
            mask: capacity - 1,
            slots: (0..capacity).map(|_| Atomic::null()).collect(),
            claimed: AtomicUsize::new(0),
            migration: Atomic::null(),
            cursor: AtomicUsize::new(0),
            sealed: AtomicUsize::new(0),
            prev: AtomicPtr::new(ptr::null_mut()),
            graveyard: AtomicPtr::new(ptr::null_mut()),
        }
    }

    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
    }

    #[inline]
    pub(crate) fn load<'g>(&self, i: usize, guard: &'g Guard) -> Shared<'g, Node<V>> {
        self.slots[i].load(Ordering::Acquire, guard)
    }

    /// One CAS on slot `i`; on failure returns what the slot holds.
    #[inline]
    pub(crate) fn cas<'g>(
        &self,
        i: usize,
        current: Shared<'g, Node<V>>,
        new: Shared<'g, Node<V>>,
        guard: &'g Guard,
    ) -> Result<(), Shared<'g, Node<V>>> {
        self.slots[i]
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire, guard)
            .map(|_| ())
            .map_err(|e| e.current)
    }

    /// A plain store: only the `cas_unregister` mutant uses it (the bug it plants on purpose).
    #[cfg(genreg_mutant = "cas_unregister")]
    pub(crate) fn store_unchecked(&self, i: usize, new: Shared<'_, Node<V>>) {
        self.slots[i].store(new, Ordering::Release);
    }

    /// The migration out of this table, if one has started.
    #[inline]
    pub(crate) fn migration<'g>(&self, guard: &'g Guard) -> Option<&'g Migration<V>> {
        let m = self.migration.load(Ordering::Acquire, guard);
        // SAFETY: a migration is freed only with its table, and the table outlives `'g`
        // (the caller reached it under this guard).
        unsafe { m.as_ref() }
    }

    /// The table this one is migrating into.
    #[inline]
    pub(crate) fn next<'g>(&self, guard: &'g Guard) -> Option<&'g Table<V>> {
        // SAFETY: `next` is a live table for as long as the migration is reachable: it is
        // retired only after it, in turn, has been promoted and migrated out of, which happens
        // after this table was retired (see `raw/migrate.rs`).
        self.migration(guard).map(|m| unsafe { &*m.next })
    }

    /// The table migrating into this one, while that migration runs.
    #[inline]
    pub(crate) fn prev<'g>(&self, _guard: &'g Guard) -> Option<&'g Table<V>> {
        let p = self.prev.load(Ordering::Acquire);
        // SAFETY: `prev` is cleared before the previous table is retired, and retired tables
        // are freed only after every guard that could have loaded the pointer is gone.
        unsafe { p.as_ref() }
    }

    /// The first `Empty` slot of the probe chain starting at `hash`, if any.
    pub(crate) fn first_empty(&self, hash: u64, guard: &Guard) -> Option<usize> {
        let mut i = home(hash, self.mask);
        for _ in 0..=self.mask {
            if matches!(Slot::decode(self.load(i, guard)), Slot::Empty) {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Keeps `node` until this table is freed (see `reclaim::retire`).
    pub(crate) fn bury(&self, node: *mut Node<V>) {
        let grave = Box::into_raw(Box::new(Grave {
            node,
            next: ptr::null_mut(),
        }));
        let mut head = self.graveyard.load(Ordering::Relaxed);
        loop {
            // SAFETY: `grave` is ours until the CAS below publishes it.
            unsafe { (*grave).next = head };
            // Release: whoever drains the stack sees `next` initialised.
            match self.graveyard.compare_exchange_weak(
                head,
                grave,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }
}

/// Where the probe chain of `hash` starts.
#[inline]
pub(crate) fn home(hash: u64, mask: usize) -> usize {
    // Truncation on 32-bit targets is fine: any bits of a good hash will do.
    (hash as usize) & mask
}

impl<V> Drop for Table<V> {
    /// Frees what only this table owns: its migration record and its graveyard. The nodes its
    /// slots point at are freed by whoever removed them or, for `Done` slots, by the next
    /// table, which owns them now.
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no other thread can reach this table any more.
        let guard = unsafe { crossbeam_epoch::unprotected() };
        let m = self.migration.load(Ordering::Relaxed, guard);
        if !m.is_null() {
            // SAFETY: the migration was allocated by `Owned::new` and only this table owns it.
            drop(unsafe { m.into_owned() });
        }
        let mut grave = self.graveyard.load(Ordering::Acquire);
        while !grave.is_null() {
            // SAFETY: graves are allocated by `Box::new` in `bury` and only reachable from here.
            let g = unsafe { Box::from_raw(grave) };
            // SAFETY: a buried node was unlinked from every live table before it was buried,
            // and this table (the last place that could still point at it) is being freed.
            unsafe { drop_node(g.node) };
            grave = g.next;
        }
    }
}

/// Allocates a table on the heap for the `root`/`next` pointers.
pub(crate) fn boxed<V>(capacity: usize) -> Owned<Table<V>> {
    Owned::new(Table::new(capacity))
}
