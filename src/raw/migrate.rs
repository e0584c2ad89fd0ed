//! Growing the table, and shedding tombstones, without stopping anyone.
//!
//! # The protocol
//! When a root table's claimed slots pass [`soft_limit`] (5/8), a writer allocates the next
//! table (see [`next_capacity`]) and publishes it with one CAS
//! on `table.migration`. From then on every writer that touches the old table first copies one
//! chunk of [`CHUNK`] slots (claimed with `cursor.fetch_add`). Readers never copy and never wait.
//!
//! Copying slot `i` (`copy_slot`, which any thread may run, any number of times):
//! 1. `Empty → SealedEmpty`, `Tomb → SealedTomb` (retiring the tombstone node): nothing to
//!    move; the slot is final.
//! 2. `Live(n) → Frozen(n)`: from now on no writer changes this slot. Readers still return `n`:
//!    it is the current binding, because nothing can change the name's state elsewhere until step
//!    4 below.
//! 3. Install `n` in the next table at `dest[i]` (`install`).
//! 4. `Frozen(n) → Done(n)`: the slot is final; the next table holds the name's current state.
//!
//! Writers that find their name `Frozen` run `copy_slot` themselves and continue in the next
//! table, so nobody waits for a helper that was descheduled: the migration is lock-free.
//!
//! # Exactly one copy
//! A late helper must never install a node a second time (after the first copy was, say,
//! removed from the next table, a second copy would resurrect it). So each old slot has one
//! destination index, `dest[i]`, chosen by CAS, and a copy can only land there:
//! - if `next[dest]` holds `n`, the copy is done;
//! - if it is `Empty`, CAS `n` into it;
//! - if it holds anything else, either someone else finished the copy and the name changed since
//!   (then the old slot is `Done`, which is checked *after* reading `next[dest]`), or another
//!   name took that slot first and `n` was never installed: only then is `dest` moved, by CAS,
//!   to the chain's new first `Empty` slot.
//!
//! This is sound because of one rule: **the old slot is `Done` before anything in the next table
//! changes the name**. Writers reach the name through the old slot (it keeps the name's identity
//! in every state) and complete step 4 before writing in the next table. A helper that reads
//! `next[dest]` changed by such a write (an `Acquire` load of a value stored by `AcqRel` CAS)
//! then sees `Done` in the old slot, because the writer set `Done` first.
//!
//! # Room in the next table
//! An install must always find an `Empty` slot. A table that starts migrating has fewer slots
//! claimed than its capacity (a root refuses claims past [`hard_limit`], 7/8; a promoted next
//! table kept its claims under its capacity, see below), so a migration copies fewer nodes than
//! the next table (never smaller) has slots. And the next table admits a new name only while it
//! still has room for every copy that may yet come (at most one per old slot that is not final):
//! `claimed + (old capacity − sealed) < capacity` (`reserve` in `raw/mod.rs`).
//!
//! The two numbers are read in an order that makes the check sound under any interleaving:
//! `sealed` first, then the claim is counted (a `fetch_add` on `claimed`). A copy is counted in
//! `claimed` (by its `install`) before its slot is final and counted in `sealed`; so a copy in
//! the `sealed` we read happens-before that read, hence before our `fetch_add`, which therefore
//! counts it too; a copy not in it is counted as still to come. Either way every copy is counted
//! once or twice, never zero times. (The other order misses a copy that lands between the two
//! steps, and two claims caught that way can take one slot too many: the last copy then finds
//! no room. A deterministic replay and a three-thread loom model keep it fixed.) Claims are
//! counted before their CAS and uncounted if it fails. A writer refused room copies another
//! chunk and tries again.
//!
//! # Completion
//! Each slot's final transition is a CAS won exactly once, and its winner counts it in `sealed`
//! (`AcqRel`, so the count carries every install with it). Whoever brings `sealed` to the
//! capacity promotes the next table to root. A thread that copies every slot itself (iteration,
//! or a writer that ran out of chunks to claim) promotes after its pass, whatever the count says,
//! so a helper descheduled between its CAS and its count cannot hold the migration up.
//!
//! Promotion: CAS the root from the old table to the next; clear the next table's `prev`; retire
//! the old table. Only the root ever starts a migration, so at most two tables are live.

use crossbeam_epoch::{Guard, Owned, Shared};

use super::RawMap;
use super::commit::{Cause, Change};
use super::node::Node;
use super::reclaim::{Share, retire, retire_value};
use super::table::{DONE, FROZEN, Migration, Slot, TOMB, Table};
use crate::sync::Ordering;

/// Slots copied per helping writer. Small under loom so that models interleave copies.
///
/// 16: a chunk is the pause one write takes while a table grows (about 2 µs here), and the
/// copying is spread over 4× as many writes as with 64 (measured while growing to 1M names: p99
/// 5.1 µs and p99.9 9–10 µs, against 7.9–8.3 µs and 14.3–15.7 µs with 64).
#[cfg(not(loom))]
pub(crate) const CHUNK: usize = 16;
#[cfg(loom)]
pub(crate) const CHUNK: usize = 1;

/// A root table starts migrating when more than 5/8 of its slots are claimed (live bindings
/// and tombstones).
///
/// For tables under 8 slots this is 0: every claim starts a migration. Only loom models use
/// such tables (see [`MIN_CAPACITY`](super::MIN_CAPACITY)): there it makes every model race a
/// migration.
pub(crate) fn soft_limit(capacity: usize) -> usize {
    capacity / 8 * 5
}

/// A root table never has more than this many slots claimed: a claim beyond it is refused and
/// the name goes to the next table. This bounds how many nodes a migration can copy, so the
/// next table (never smaller) always has an `Empty` slot left for every copy.
pub(crate) fn hard_limit(capacity: usize) -> usize {
    capacity - (capacity / 8).max(1)
}

/// The next table's capacity: room for twice the live bindings, and never smaller than the
/// current table (a table whose slots are mostly tombstones is rebuilt at the same size).
pub(crate) fn next_capacity(current: usize, live: usize) -> usize {
    let wanted = live
        .saturating_mul(2)
        .saturating_add(1)
        .min(super::MAX_CAPACITY)
        .next_power_of_two();
    current.max(wanted)
}

impl<V> RawMap<V> {
    /// Starts a migration out of `table` unless one has started.
    pub(crate) fn start_migration(&self, table: &Table<V>, guard: &Guard) {
        if table.migration(guard).is_some() {
            return;
        }
        let capacity = next_capacity(table.capacity(), self.live_for_sizing(table, guard));
        let next = Table::<V>::alloc(capacity);
        next.prev.store(table.word(), Ordering::Relaxed);
        let next = next.into_shared(guard);
        let migration = Owned::new(Migration {
            // SAFETY: allocated above, not freed before this function returns.
            next: std::ptr::from_ref(unsafe { next.deref() }),
            dest: crate::sync::zeroed_atomics(table.capacity()),
        });
        // AcqRel: Release publishes the new table and its `prev`.
        if let Err(e) = table.migration.compare_exchange(
            Shared::null(),
            migration,
            Ordering::AcqRel,
            Ordering::Acquire,
            guard,
        ) {
            // Lost the race: neither allocation was ever visible to another thread.
            drop(e.new);
            // SAFETY: `next` came from `Table::alloc` above and was never published.
            drop(unsafe { next.into_owned() });
        }
    }

    /// The bindings a migration out of `table` will copy, for sizing the next table: the
    /// length, less the dead bindings (which the migration drops, see `copy_slot`). Those
    /// are counted by a walk over `table`, only in a map that has held mortal bindings.
    fn live_for_sizing(&self, table: &Table<V>, guard: &Guard) -> usize {
        let len = self.len();
        if self.weak_used.load(Ordering::Relaxed) == 0 {
            return len;
        }
        let dead = (0..table.capacity())
            .filter(|&i| match Slot::decode(table.load(i, guard)) {
                Slot::Live(n) | Slot::Frozen(n) => !n.is_visible(),
                _ => false,
            })
            .count();
        len.saturating_sub(dead)
    }

    /// Copies one chunk of `table`'s migration. Returns false if every chunk was already handed
    /// out (the migration may still be finishing in other threads).
    pub(crate) fn help_migrate(&self, table: &Table<V>, m: &Migration<V>, guard: &Guard) -> bool {
        // A load first: once every chunk is handed out, writers stop taking the cursor's line
        // exclusively (a failed `fetch_add` would still write it).
        if table.cursor.load(Ordering::Relaxed) >= table.capacity() {
            return false;
        }
        let start = table.cursor.fetch_add(CHUNK, Ordering::Relaxed);
        if start >= table.capacity() {
            return false;
        }
        let end = (start + CHUNK).min(table.capacity());
        let finished = (start..end)
            .filter(|&i| self.copy_slot(table, m, i, guard))
            .count();
        self.count_sealed(table, finished, guard);
        true
    }

    /// Copies every slot of `table` that is not final yet, then promotes the next table.
    pub(crate) fn finish_migration(&self, table: &Table<V>, m: &Migration<V>, guard: &Guard) {
        let finished = self.copy_all(table, m, guard);
        self.count_sealed(table, finished, guard);
        // Every slot was seen final by this thread: promote even if a helper that won a final
        // CAS has not counted it yet.
        self.promote(table, m, guard);
    }

    /// Copies every slot that is not final yet; returns how many this call finished. Does not
    /// promote.
    pub(crate) fn copy_all(&self, table: &Table<V>, m: &Migration<V>, guard: &Guard) -> usize {
        (0..table.capacity())
            .filter(|&i| self.copy_slot(table, m, i, guard))
            .count()
    }

    /// Helps the migration into `table`, if there is one, to make room in `table`.
    pub(crate) fn help_prev(&self, table: &Table<V>, guard: &Guard) {
        if let Some(prev) = table.prev(guard) {
            if let Some(m) = prev.migration(guard) {
                if !self.help_migrate(prev, m, guard) {
                    self.finish_migration(prev, m, guard);
                }
            }
        }
    }

    /// Copies slot `i` and counts it if this call finished it.
    pub(crate) fn copy_slot_counted(
        &self,
        table: &Table<V>,
        m: &Migration<V>,
        i: usize,
        guard: &Guard,
    ) {
        if self.copy_slot(table, m, i, guard) {
            self.count_sealed(table, 1, guard);
        }
    }

    pub(crate) fn count_sealed(&self, table: &Table<V>, n: usize, guard: &Guard) {
        if n == 0 {
            return;
        }
        // AcqRel: the count carries every install counted before it to the promoting thread,
        // and from there (through the root's Release CAS) to every thread that starts at the
        // new root.
        let total = table.sealed.fetch_add(n, Ordering::AcqRel) + n;
        debug_assert!(total <= table.capacity());
        if total == table.capacity() {
            if let Some(m) = table.migration(guard) {
                self.promote(table, m, guard);
            }
        }
    }

    /// Makes the next table the root, if `table` still is.
    fn promote(&self, table: &Table<V>, m: &Migration<V>, guard: &Guard) {
        let old = table.word();
        // SAFETY: `m.next` is a live table (owned by the map; the root, or about to be).
        let next_table = unsafe { &*m.next };
        let next = next_table.word();
        if self
            .root
            .compare_exchange(old, next, Ordering::AcqRel, Ordering::Acquire, guard)
            .is_ok()
        {
            next_table.prev.store(Shared::null(), Ordering::Release);
            // SAFETY: the old table is unreachable from the root now; threads that loaded it
            // before are pinned, and the free waits for them. Only the CAS winner retires it.
            unsafe { guard.defer_destroy(old) };
        } else {
            // Promoted by another thread, which may not have cleared `prev` yet: clear it here,
            // or a writer refused room in the new root would wait for that thread (the old
            // table is unlinked from the root either way, which is all that clearing needs; a
            // lost CAS means it was cleared already).
            let _ = next_table.prev.compare_exchange(
                old,
                Shared::null(),
                Ordering::Release,
                Ordering::Relaxed,
                guard,
            );
        }
    }

    /// Moves slot `i` to a final state. Returns true if this call made the final transition.
    fn copy_slot(&self, table: &Table<V>, m: &Migration<V>, i: usize, guard: &Guard) -> bool {
        let mut cur = table.load(i, guard);
        loop {
            let (new, tomb) = match Slot::decode(cur) {
                Slot::Empty => (Shared::null().with_tag(FROZEN), None),
                // Tombstones are not copied: the name is not bound.
                Slot::Tomb(k) => (Shared::null().with_tag(TOMB | FROZEN), Some(k)),
                Slot::SealedEmpty | Slot::SealedTomb | Slot::Done(_) => return false,
                // A dead binding (a weak one whose owner died, an expired or condemned one) is
                // invisible and, once buried, stays dead: it is not copied but removed here, as
                // a purge would (one CAS on its own node, a committed removal like any other),
                // so that a binding already dead when the migration reaches it does not survive
                // it (one that dies after its slot is frozen is copied, and met by the next
                // migration, a read, a write or a reaper).
                Slot::Live(n) if n.bury().is_some() => {
                    let rev = self.draw(1);
                    if table.cas(i, cur, node_word(n, TOMB), guard).is_ok() {
                        let cause = Cause::Dead;
                        let change = Change::Removed { old: n, cause };
                        self.commit(change, rev, n.death(), guard);
                        // SAFETY: our CAS made the binding `n` a tombstone.
                        unsafe { retire_value(&self.pending, n, guard) };
                        cur = node_word(n, TOMB);
                    } else {
                        self.lost(rev, 1, guard);
                        cur = table.load(i, guard);
                    }
                    continue;
                }
                Slot::Live(n) => (node_word(n, FROZEN), None),
                Slot::Frozen(n) => {
                    self.install(table, m, i, n, guard);
                    (node_word(n, FROZEN | DONE), None)
                }
            };
            match table.cas(i, cur, new, guard) {
                Ok(()) if new.tag() == FROZEN && !new.is_null() => cur = new,
                Ok(()) => {
                    if let Some(k) = tomb {
                        // SAFETY: our CAS unlinked the tombstone.
                        unsafe { retire(table, &self.pending, k, Share::Tomb, guard) };
                    }
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Puts `n`, frozen in old slot `i`, into the next table at `dest[i]` (module docs).
    fn install(&self, table: &Table<V>, m: &Migration<V>, i: usize, n: &Node<V>, guard: &Guard) {
        // SAFETY: see `Table::next`.
        let next = unsafe { &*m.next };
        let dest = &m.dest[i];
        let n_word = node_word(n, 0);
        let done = || matches!(Slot::decode(table.load(i, guard)), Slot::Done(_));
        loop {
            let chosen = dest.load(Ordering::Acquire);
            let e = if chosen == 0 {
                let Some(e) = next.first_empty(n.hash, guard) else {
                    // We read `dest` before another helper set it, finished the copy, and the
                    // next table filled up or migrated on since.
                    assert!(
                        done(),
                        "genreg internal invariant broken: the next table always keeps room for every copy"
                    );
                    return;
                };
                match dest.compare_exchange(0, e + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => e,
                    Err(_) => continue,
                }
            } else {
                chosen - 1
            };
            let found = next.load(e, guard);
            if found.as_raw() == n_word.as_raw() {
                return; // installed (by us or a helper), whatever has happened to it since
            }
            if matches!(Slot::decode(found), Slot::Empty) {
                next.claimed.fetch_add(1, Ordering::Relaxed);
                match next.cas(e, found, n_word, guard) {
                    Ok(()) => return,
                    Err(_) => {
                        next.claimed.fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            // Something else is at `dest`. If the old slot is `Done`, the copy finished and the
            // name has been written since; otherwise `n` was never installed there, because
            // nothing in the next table changes the name before the old slot is `Done`.
            if done() {
                return;
            }
            let Some(e2) = next.first_empty(n.hash, guard) else {
                assert!(
                    done(),
                    "genreg internal invariant broken: the next table always keeps room for every copy"
                );
                return;
            };
            // A lost CAS means another helper moved `dest` (or installed): just look again.
            let _ = dest.compare_exchange(e + 1, e2 + 1, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

/// The slot word for node `n` with `tag`.
#[inline]
pub(crate) fn node_word<'g, V>(n: &'g Node<V>, tag: usize) -> Shared<'g, Node<V>> {
    Shared::from(n as *const Node<V>).with_tag(tag)
}
