//! The lock-free core: an open-addressing hash table of immutable nodes on crossbeam-epoch.
//!
//! Everything `unsafe` in the crate lives under this module. The safe facade
//! ([`Registry`](crate::Registry)) only validates input, mints tags and delegates here.
//!
//! - `node.rs`: the immutable binding and its inline name.
//! - `table.rs`: one table, its slot states and their encoding.
//! - `migrate.rs`: growth and tombstone shedding, incremental and lock-free.
//! - `reclaim.rs`: when a node may be freed, and panicking destructors.
//! - `len.rs`: the length, a counter striped over cache lines.
//! - `commit.rs`: the one point where every committed change is reported.
//! - `pending.rs`: removed values on their way to the epoch collector.
//! - `replace.rs`: a binding's node replaced (a new value, or new metadata under the same tag).
//! - `index.rs`: the discovery index, kept from the commit point, checked on every read.
//! - `capacity.rs`: the bound on live bindings (`max_entries`).
//!
//! # Operations
//! Every operation starts at the root table and walks the name's probe chain (linear probing
//! from `hash & mask`). A chain ends at the first `Empty` slot. A slot claimed from `Empty`
//! belongs to one name for the life of the table (its tombstone keeps the name) and never becomes
//! `Empty` again, so a name has at most one slot per table and can only be in a slot the walk has
//! not passed (see `table.rs`).
//!
//! - **get**: the first `Live`/`Frozen` node with the name is the answer; `Done` means "ask the
//!   next table"; `Empty` means absent; a `SealedEmpty` end (or a chain with no end) means "ask
//!   the next table", where names inserted during a migration go. Never writes, never waits.
//! - **insert-if-absent**: one CAS of the node into the name's own tombstone if its chain has
//!   one, else into the chain's first `Empty` slot. A lost CAS re-reads that slot: the same name
//!   live means "already registered", another name means walk on.
//! - **remove / replace if same tag**: find the name's `Live` node, compare its tag, one CAS:
//!   `Live(n) → Tomb(n)` (the node itself stays as the name's tombstone; its value is dropped
//!   later, see `reclaim.rs`) or `Live(n) → Live(new)`. A lost CAS re-reads the slot and decides
//!   again. Neither allocates anything but the replacement node.
//!
//! Every write that meets a `Frozen` node for its name first finishes that slot's copy
//! (`migrate.rs`) and continues in the next table; every write on a migrating table copies one
//! chunk first, so migrations finish as long as anyone writes.
//!
//! Each operation on one name is linearizable: at its linearization point (the successful CAS,
//! or the load that decided the answer) the name's state is the one it reports.

pub(crate) mod capacity;
mod commit;
pub(crate) mod expiry;
pub(crate) mod index;
mod len;
pub(crate) mod live;
pub(crate) mod log;
mod migrate;
pub(crate) mod node;
mod pending;
mod reclaim;
mod replace;
mod table;

use std::hash::BuildHasher;
use std::ptr;

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};

use self::capacity::Capacity;
use self::commit::{Cause, Change};
use self::expiry::Expiry;
use self::index::Index;
use self::len::Len;
use self::log::{Log, Wake};
use self::migrate::{hard_limit, soft_limit};
use self::node::{Extra, Key, NameBuf, Node, Stored, StoredRef};
use self::pending::Pending;
pub(crate) use self::reclaim::drop_caught;
pub(crate) use self::reclaim::drop_panics;
use self::reclaim::{Share, drop_node, drop_tomb, retire, retire_value};
use self::table::{FROZEN, Slot, TOMB, Table, home};
use crate::sync::{AtomicUsize, Ordering};
use crate::tag::Tag;
use crate::watch::Reason;

/// The smallest table allocated. Loom models use 4-slot tables, where every claim starts a
/// migration, so that each model races one; real registries start at 16.
#[cfg(loom)]
pub(crate) const MIN_CAPACITY: usize = 4;
#[cfg(not(loom))]
pub(crate) const MIN_CAPACITY: usize = 16;

/// The largest table ever allocated: 2^(pointer bits - 4) slots, more than the address space
/// can hold (a slot is a word), so only a corrupt size could reach it; sizes are clamped here
/// rather than overflow.
pub(crate) const MAX_CAPACITY: usize = 1 << (usize::BITS - 4);

// A table word's tag is its log2 capacity, in the bits a table's alignment leaves free.
const _: () = assert!(
    (MAX_CAPACITY.trailing_zeros() as usize) < std::mem::align_of::<table::Head<()>>(),
    "the largest capacity's log2 must fit in a table word's tag"
);

/// Slots to a cache line: a table's slots start on a line (see `table.rs`), so slot `i` is in
/// line `i / SLOTS_PER_LINE`. Only a correctness-neutral hint (under loom the atomics are bigger).
const SLOTS_PER_LINE: usize = 64 / std::mem::size_of::<usize>();

/// How many slots a lookup scans at a time past the first two of its chain (see
/// `RawMap::probe`).
const PROBE_GROUP: usize = 4;

/// What a slot that may hold `key`'s name says about it: found, absent, look in the next table,
/// or nothing (a tombstone, or another name whose fragment is the same: look on).
#[inline(always)]
fn decide<'g, V>(word: usize, key: &Key<'_>, guard: &'g Guard) -> Option<Probe<'g, V>> {
    match Slot::<V>::decode(table::shared_of(word, guard)) {
        Slot::Empty => Some(Probe::Absent),
        Slot::SealedEmpty => Some(Probe::Next),
        Slot::Tomb(_) | Slot::SealedTomb => None,
        // The name alone decides (equal names have equal hashes; the fragment already compared
        // 16 bits of the hash).
        Slot::Live(n) | Slot::Frozen(n) if n.name.matches(key) => Some(Probe::Found(n)),
        Slot::Done(n) if n.name.matches(key) => Some(Probe::Next),
        Slot::Live(_) | Slot::Frozen(_) | Slot::Done(_) => None,
    }
}

/// The rest of a probe chain (see `RawMap::probe`), from slot `next` on, `seen` slots of it
/// decided already: a group at a time, until every slot was seen once. Out of line: most lookups
/// never get here, and the fast path keeps its registers.
///
/// The last group may reach past the chain's end into slots seen at its start (where it wraps
/// around to its home). Seeing one again is harmless: a slot that held no candidate holds another
/// name's node for good; one that was an undecided candidate can since have become the name's
/// binding again (its own tombstone reused) or `Done`, which is what the lookup answers then,
/// and it can never become `Empty` or `SealedEmpty` again.
#[inline(never)]
fn probe_rest<'g, V>(
    table: &'g Table<V>,
    seen: usize,
    mut next: usize,
    key: &Key<'_>,
    guard: &'g Guard,
) -> Probe<'g, V> {
    let slots = table.slots();
    let mask = slots.len() - 1;
    let load = |i: usize| {
        // SAFETY: masked, so `<= mask`, and a table has `mask + 1` slots.
        unsafe { slots.get_unchecked(i & mask) }.load(Ordering::Acquire)
    };
    let mut left = (mask + 1).saturating_sub(seen);
    while left != 0 {
        let mut candidates = 0u32;
        for j in 0..PROBE_GROUP {
            candidates |= u32::from(table::may_own(load(next + j), key.frag)) << j;
        }
        while candidates != 0 {
            let j = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            if let Some(decided) = decide(load(next + j), key, guard) {
                return decided;
            }
        }
        next += PROBE_GROUP;
        left = left.saturating_sub(PROBE_GROUP);
    }
    // A chain with no end: every slot is claimed. New names went to the next table if any.
    match table.migration(guard) {
        Some(_) => Probe::Next,
        None => Probe::Absent,
    }
}

/// The map.
pub(crate) struct RawMap<V> {
    /// The current table. Never null.
    root: Atomic<Table<V>>,
    hasher: foldhash::fast::FixedState,
    /// Live bindings (weak ones included until purged). Incremented after a successful insert,
    /// decremented after a successful remove (see `len.rs`).
    len: Len,
    /// Nonzero once a weak binding was ever stored (then sizing a migration counts the dead
    /// ones). Relaxed: a hint for sizing only.
    weak_used: AtomicUsize,
    /// Removed values not yet handed to the epoch collector (see `pending.rs`).
    pending: Pending<V>,
    /// The event log, if events are on (see `log.rs`): every commit is recorded there.
    pub(crate) log: Option<Log<V>>,
    /// Waiters for changes (watchers, `wait_for`, `evicted`): notified at every commit.
    pub(crate) wake: Wake,
    /// The discovery index (see `index.rs`), kept at every commit that involves metadata.
    pub(crate) index: Option<Box<Index>>,
    /// The bound on live bindings, if any (see `capacity.rs`).
    pub(crate) capacity: Option<Capacity>,
    /// What the reapers are told of new bindings with a deadline (see `expiry.rs`).
    pub(crate) expiry: Expiry,
}

// SAFETY: the map owns `V`s and hands out `&V` to other threads: it is Send/Sync when `V` is.
// The raw pointers inside (node and table pointers) are only dereferenced under epoch guards.
unsafe impl<V: Send + Sync> Send for RawMap<V> {}
// SAFETY: as above.
unsafe impl<V: Send + Sync> Sync for RawMap<V> {}

/// The result of [`RawMap::insert`].
pub(crate) enum Insert<'g, V> {
    Inserted,
    /// The name is bound; the node was not inserted and is handed back.
    Exists {
        current: &'g Node<V>,
        rejected: Owned<Node<V>>,
    },
    /// The map holds its bound of bindings (see `capacity.rs`); the node is handed back.
    Full {
        rejected: Owned<Node<V>>,
    },
}

/// Why [`RawMap::bind`] refused.
pub(crate) enum Refused<'g, V> {
    /// The name is bound to this node.
    Exists(&'g Node<V>),
    /// The map holds its bound of bindings.
    Full,
}

/// What a conditional write does to a matching node.
pub(crate) enum Write<'g, V> {
    /// Removes the binding, for this reason (the event log's; a dead weak binding's removal is
    /// recorded as [`Reason::WeakOwnerDead`] whatever the reason given).
    Remove(Reason),
    Replace(Shared<'g, Node<V>>),
}

impl<V> Clone for Write<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Write<'_, V> {}

/// The result of [`RawMap::write_if`].
pub(crate) enum Written<'g, V> {
    /// The write happened; this node was unlinked (and retired).
    Done(&'g Node<V>),
    /// The name is bound, but the predicate refused its node.
    Refused(&'g Node<V>),
    NotFound,
}

/// Where a probe ended.
enum Probe<'g, V> {
    Found(&'g Node<V>),
    Absent,
    Next,
}

impl<V> RawMap<V> {
    pub(crate) fn new(capacity: usize, seed: u64) -> RawMap<V> {
        // Clamped, so that `next_power_of_two` cannot overflow (it would wrap to 0 in a release
        // build, and a 0-slot table would index out of bounds).
        let capacity = capacity
            .clamp(MIN_CAPACITY, MAX_CAPACITY)
            .next_power_of_two();
        RawMap {
            root: Atomic::from(Table::alloc(capacity)),
            hasher: foldhash::fast::FixedState::with_seed(seed),
            len: Len::new(),
            weak_used: AtomicUsize::new(0),
            pending: Pending::new(),
            log: None,
            wake: Wake::new(),
            index: None,
            capacity: None,
            expiry: Expiry::new(),
        }
    }

    /// Bounds the live bindings (at construction).
    pub(crate) fn with_capacity_limit(mut self, limit: usize) -> RawMap<V> {
        self.capacity = Some(Capacity::new(limit));
        self
    }

    /// Takes a place for a binding about to be added (see `capacity.rs`).
    #[inline(always)]
    fn admit(&self) -> bool {
        self.capacity.as_ref().is_none_or(Capacity::admit)
    }

    /// Gives back a place taken by [`admit`](Self::admit), or a removed binding's.
    #[inline(always)]
    fn release(&self) {
        if let Some(c) = &self.capacity {
            c.release();
        }
    }

    /// Turns the discovery index on (at construction).
    pub(crate) fn with_index(mut self, index: Index) -> RawMap<V> {
        self.index = Some(Box::new(index));
        self
    }

    /// Turns the event log on (at construction).
    pub(crate) fn with_log(mut self, log: Log<V>) -> RawMap<V> {
        self.log = Some(log);
        self
    }

    /// Draws `n` revisions for a CAS about to be tried (0 if events are off). Call after loading
    /// the slot word the CAS expects (see `log.rs`).
    #[inline(always)]
    fn draw(&self, n: u64) -> u64 {
        match &self.log {
            Some(log) => log.draw(n),
            None => 0,
        }
    }

    /// Publishes skips for revisions drawn for a CAS that lost.
    #[inline(always)]
    fn lost(&self, rev: u64, n: u64, guard: &Guard) {
        if let Some(log) = &self.log {
            log.skip(rev, n, guard);
            self.wake.notify();
        }
    }

    #[inline]
    pub(crate) fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    #[inline]
    fn root<'g>(&self, guard: &'g Guard) -> &'g Table<V> {
        // SAFETY: the root is never null, its word is made by `Table::alloc` or `Table::word`,
        // and a table is retired only after it stopped being the root, so it outlives every
        // guard that loaded it.
        unsafe { Table::view(self.root.load(Ordering::Acquire, guard)) }
    }

    /// Whether a binding that can die while bound (weak, or with a liveness cell) was ever
    /// stored: dead ones may then be waiting for a purge.
    pub(crate) fn mortal_used(&self) -> bool {
        self.weak_used.load(Ordering::Relaxed) != 0
    }

    /// Notes that such a binding is about to be stored (see `mortal_used`).
    pub(crate) fn note_mortal(&self) {
        if self.weak_used.load(Ordering::Relaxed) == 0 {
            self.weak_used.store(1, Ordering::Relaxed);
        }
    }

    /// Bindings stored (an instant's snapshot; weak ones count until purged).
    pub(crate) fn len(&self) -> usize {
        self.len.get()
    }

    /// The capacity of the root table (for tests and stats).
    pub(crate) fn capacity(&self, guard: &Guard) -> usize {
        self.root(guard).capacity()
    }

    /// The current node bound to `name`.
    #[inline(always)]
    pub(crate) fn get<'g>(&self, hash: u64, name: &str, guard: &'g Guard) -> Option<&'g Node<V>> {
        self.get_in(self.root(guard), &Key::new(hash, name), guard)
    }

    /// [`get`](Self::get), out of line: for the discovery paths (the index, queries), so that
    /// the registry's own lookups keep `get` inlined (another inlined caller of the same
    /// instance tips the inliner's budget: measured, +10% instructions per `Registry::get`).
    #[inline(never)]
    pub(crate) fn get_cold<'g>(
        &self,
        hash: u64,
        name: &str,
        guard: &'g Guard,
    ) -> Option<&'g Node<V>> {
        self.get(hash, name, guard)
    }

    /// Looks `name` up in one table (see the module docs for what each slot means).
    ///
    /// Shaped by the branch predictor (measured; BENCHMARKS.md, "The read path"). In a lookup in
    /// random order, whether the next slot is another name's is a coin toss (a third of hits
    /// and half of misses at half load), and a mispredicted branch costs more than a few loads.
    /// So the chain's first two slots are loaded together (the second only if it is in the home
    /// slot's cache line; what that was measured to do, three ways that disagree, is in
    /// BENCHMARKS.md) and the first that may hold the name is chosen without a branch; the rest
    /// of the chain, which a third of misses reach, is scanned four slots at a time, each
    /// group's candidates found from a bit mask.
    ///
    /// Why that is the same lookup as one slot at a time: candidates are decided in chain order,
    /// each on a load of its own made after every earlier slot was decided (a slot's word may be
    /// loaded earlier too, to find the candidates, and a few slots past the deciding one are
    /// loaded for nothing). A slot found not to be a candidate holds a node of another name
    /// (its fragment differs), and a slot claimed by one name belongs to it for the life of the
    /// table (module docs of `table.rs`), so it can be passed over whenever it was loaded.
    // Always inlined, with the slot array and mask hoisted: the read path's instruction count is
    // the lookup's cost.
    #[inline(always)]
    fn probe<'g>(&self, table: &'g Table<V>, key: &Key<'_>, guard: &'g Guard) -> Probe<'g, V> {
        // The mask from the slice's length: for the root, that is the root word's tag, so the
        // head is not read (see `Table::view`).
        let slots = table.slots();
        let mask = slots.len() - 1;
        let load = |i: usize| {
            // SAFETY: masked, so `<= mask`, and a table has `mask + 1` slots.
            unsafe { slots.get_unchecked(i & mask) }.load(Ordering::Acquire)
        };
        let home = home(key.hash, mask);
        // The second slot is loaded only from the home slot's cache line (the slots start on
        // a line, eight to a line): at the line's end, `step` is 0 and the home slot is loaded
        // twice, so that no lookup waits for a second line before it knows it needs it.
        let step = usize::from((home + 1) % SLOTS_PER_LINE != 0);
        let (first, second) = (load(home), load(home + step));
        let skip = !table::may_own(first, key.frag);
        // Branch-free select (a mask, not `if`: the compiler keeps it a select).
        let pick = usize::from(skip).wrapping_neg();
        let word = (second & pick) | (first & !pick);
        // The first slot not looked at: past both, or past home alone at a line's end.
        let mut next = home + 1 + step;
        if table::may_own(word, key.frag) {
            if let Some(decided) = decide(word, key, guard) {
                return decided;
            }
            // `word` was the second slot only if home was skipped (then `step` is 1: a
            // skipped home is never picked again).
            #[cfg(not(genreg_mutant = "probe_skip"))]
            {
                next = home + usize::from(skip) + 1;
            }
            // The planted bug (ci/mutants.sh): an undecided home slot (a tombstone, or another
            // name with the same fragment) makes the probe resume past the second slot, which
            // was never decided: a name bound right after a tombstone at its home reads absent.
            #[cfg(genreg_mutant = "probe_skip")]
            {
                next = home + 1 + step;
            }
        }
        probe_rest(table, next - home, next, key, guard)
    }

    /// Binds `new.name` to `new` unless the name is bound. `vacant(current)` may declare an
    /// existing binding vacant (a dead weak binding), in which case it is replaced.
    #[inline]
    pub(crate) fn insert<'g>(
        &self,
        new: Owned<Node<V>>,
        vacant: impl Fn(&Node<V>) -> bool,
        guard: &'g Guard,
    ) -> Insert<'g, V> {
        let new = new.into_shared(guard);
        // SAFETY: we allocated `new`; it stays alive at least until we hand it back or it is
        // unlinked, which cannot happen before this function returns and the guard is dropped.
        let node = unsafe { new.deref() };
        let key = node.key();
        let hash = key.hash;
        let mut table = self.root(guard);
        'tables: loop {
            let migration = table.migration(guard);
            if let Some(m) = migration {
                self.help_migrate(table, m, guard);
            }
            let mut i = home(hash, table.mask);
            let mut walked = 0;
            loop {
                if walked > table.mask {
                    // Every slot is claimed: the name is not here, so it goes to the next table.
                    table = self.next_for_insert(table, guard);
                    continue 'tables;
                }
                let (cur, own) = table.load_for(i, key.frag, guard);
                if !own {
                    // Another name's slot (see `probe`).
                    i = (i + 1) & table.mask;
                    walked += 1;
                    continue;
                }
                match Slot::decode(cur) {
                    Slot::Empty => {
                        if migration.is_some() {
                            // New names go to the next table while this one migrates; sealing
                            // the end of the chain first means nobody can still claim it here.
                            self.seal_empty(table, i, cur, guard);
                            continue;
                        }
                        match self.reserve(table, guard) {
                            Reserve::Granted => {}
                            Reserve::Seal => {
                                self.seal_empty(table, i, cur, guard);
                                continue;
                            }
                            Reserve::HelpPrevious => {
                                self.help_prev(table, guard);
                                table = self.root(guard);
                                continue 'tables;
                            }
                        }
                        if !self.admit() {
                            table.claimed.fetch_sub(1, Ordering::Relaxed);
                            // SAFETY: `new` was never published.
                            let rejected = unsafe { new.into_owned() };
                            return Insert::Full { rejected };
                        }
                        let rev = self.draw(1);
                        match table.cas(i, cur, new, guard) {
                            Ok(()) => {
                                let purged = None;
                                let change = Change::Bound { new: node, purged };
                                self.commit(change, rev, Reason::Explicit, guard);
                                return Insert::Inserted;
                            }
                            Err(_) => {
                                self.lost(rev, 1, guard);
                                self.release();
                                table.claimed.fetch_sub(1, Ordering::Relaxed);
                                continue; // look at slot `i` again
                            }
                        }
                    }
                    Slot::SealedEmpty => {
                        table = table
                            .next(guard)
                            .expect("a sealed slot implies a next table");
                        continue 'tables;
                    }
                    Slot::Live(n) if n.is(&key) => {
                        if !vacant(n) {
                            // SAFETY: `new` was never published.
                            let rejected = unsafe { new.into_owned() };
                            return Insert::Exists {
                                current: n,
                                rejected,
                            };
                        }
                        // Two revisions: the dead binding's removal, then the registration.
                        let rev = self.draw(2);
                        if table.cas(i, cur, new, guard).is_ok() {
                            let purged = Some(n);
                            let change = Change::Bound { new: node, purged };
                            self.commit(change, rev, n.death(), guard);
                            // SAFETY: our CAS unlinked `n`, a binding until now.
                            unsafe { retire(table, &self.pending, n, Share::Whole, guard) };
                            return Insert::Inserted;
                        }
                        self.lost(rev, 2, guard);
                        continue;
                    }
                    Slot::Frozen(n) if n.is(&key) => {
                        if !vacant(n) {
                            // SAFETY: `new` was never published.
                            let rejected = unsafe { new.into_owned() };
                            return Insert::Exists {
                                current: n,
                                rejected,
                            };
                        }
                        table = self.finish_copy(table, i, guard);
                        continue 'tables;
                    }
                    Slot::Done(n) if n.is(&key) => {
                        table = table.next(guard).expect("a done slot implies a next table");
                        continue 'tables;
                    }
                    Slot::Tomb(k) if k.is(&key) => {
                        if migration.is_some() {
                            // New bindings go to the next table while this one migrates. Seal
                            // the name's tombstone first, so that nobody can still revive it
                            // here, then walk on to the end of the chain (sealed in turn).
                            self.seal_tomb(table, i, cur, k, guard);
                            continue;
                        }
                        // The name's own slot: reuse it (a tombstone holds no slot of another
                        // name, so no table reservation is needed; a place under the bound is).
                        if !self.admit() {
                            // SAFETY: `new` was never published.
                            let rejected = unsafe { new.into_owned() };
                            return Insert::Full { rejected };
                        }
                        let rev = self.draw(1);
                        if table.cas(i, cur, new, guard).is_ok() {
                            let purged = None;
                            let change = Change::Bound { new: node, purged };
                            self.commit(change, rev, Reason::Explicit, guard);
                            // SAFETY: our CAS unlinked the tombstone.
                            unsafe { retire(table, &self.pending, k, Share::Tomb, guard) };
                            return Insert::Inserted;
                        }
                        self.lost(rev, 1, guard);
                        self.release();
                        continue; // look at slot `i` again
                    }
                    Slot::Tomb(_)
                    | Slot::SealedTomb
                    | Slot::Live(_)
                    | Slot::Frozen(_)
                    | Slot::Done(_) => {}
                }
                i = (i + 1) & table.mask;
                walked += 1;
            }
        }
    }

    /// Registers: binds `name` to a new node (`tag`, `value`) unless the name is bound to a
    /// visible binding (a dead weak one is replaced). On refusal, the current binding and the
    /// value handed back.
    #[inline]
    pub(crate) fn bind<'g>(
        &self,
        hash: u64,
        name: &str,
        tag: Tag,
        value: Stored<V>,
        extra: Extra,
        guard: &'g Guard,
    ) -> Result<(), (Refused<'g, V>, Stored<V>)> {
        let node = Owned::new(Node::with_extra(
            hash,
            tag,
            NameBuf::new(name),
            value,
            extra,
        ));
        // A binding in the way is vacant once buried: dead for good (see `Node::bury`).
        match self.insert(node, |n| n.bury().is_some(), guard) {
            Insert::Inserted => Ok(()),
            Insert::Exists { current, rejected } => Err((
                Refused::Exists(current),
                (*rejected.into_box()).into_stored(),
            )),
            Insert::Full { rejected } => Err((Refused::Full, (*rejected.into_box()).into_stored())),
        }
    }

    /// Removes or replaces the node bound to `name`, as `decide(node)` says (`None` refuses):
    /// one CAS. `decide` may be called more than once (again after a lost CAS), each time with
    /// the node bound then.
    #[inline]
    pub(crate) fn write_if<'g>(
        &self,
        hash: u64,
        name: &str,
        mut decide: impl FnMut(&'g Node<V>) -> Option<Write<'g, V>>,
        guard: &'g Guard,
    ) -> Written<'g, V> {
        self.write_if_inner(&Key::new(hash, name), &mut decide, guard)
    }

    #[inline]
    fn write_if_inner<'g>(
        &self,
        key: &Key<'_>,
        decide: &mut impl FnMut(&'g Node<V>) -> Option<Write<'g, V>>,
        guard: &'g Guard,
    ) -> Written<'g, V> {
        let mut table = self.root(guard);
        'tables: loop {
            if let Some(m) = table.migration(guard) {
                self.help_migrate(table, m, guard);
            }
            let mut i = home(key.hash, table.mask);
            let mut walked = 0;
            loop {
                if walked > table.mask {
                    match table.next(guard) {
                        Some(next) => {
                            table = next;
                            continue 'tables;
                        }
                        None => return Written::NotFound,
                    }
                }
                let (cur, own) = table.load_for(i, key.frag, guard);
                if !own {
                    // Another name's slot (see `probe`).
                    i = (i + 1) & table.mask;
                    walked += 1;
                    continue;
                }
                match Slot::decode(cur) {
                    Slot::Empty => return Written::NotFound,
                    Slot::SealedEmpty => {
                        table = table
                            .next(guard)
                            .expect("a sealed slot implies a next table");
                        continue 'tables;
                    }
                    Slot::Live(n) if n.is(key) => {
                        let Some(write) = decide(n) else {
                            return Written::Refused(n);
                        };
                        let new = match write {
                            // The node itself becomes the name's tombstone.
                            Write::Remove(_) => Shared::from(ptr::from_ref(n)).with_tag(TOMB),
                            Write::Replace(new) => new,
                        };
                        #[cfg(not(genreg_mutant = "rev_after_cas"))]
                        let rev = self.draw(1);
                        #[cfg(genreg_mutant = "cas_unregister")]
                        {
                            // The mutant: check, then store, instead of one CAS.
                            table.store_unchecked(i, new);
                            // SAFETY: none: the store may have unlinked someone else's node.
                            unsafe { self.retire_written(table, n, &write, rev, guard) };
                            return Written::Done(n);
                        }
                        #[allow(unreachable_code)]
                        if table.cas(i, cur, new, guard).is_ok() {
                            // The mutant: the revision drawn after the CAS (see `log.rs`).
                            #[cfg(genreg_mutant = "rev_after_cas")]
                            let rev = self.draw(1);
                            // SAFETY: our CAS unlinked `n` as a binding.
                            unsafe { self.retire_written(table, n, &write, rev, guard) };
                            return Written::Done(n);
                        }
                        #[cfg(not(genreg_mutant = "rev_after_cas"))]
                        self.lost(rev, 1, guard);
                        #[cfg(genreg_mutant = "loser_frees")]
                        // SAFETY: none: the mutant frees a node it did not unlink, on purpose.
                        unsafe {
                            retire(table, &self.pending, n, Share::Whole, guard)
                        };
                        continue; // the slot changed: decide again
                    }
                    Slot::Frozen(n) if n.is(key) => {
                        if decide(n).is_none() {
                            // `n` is still the current binding (nothing changes the name
                            // anywhere before its copy is done), so refusing is linearizable.
                            return Written::Refused(n);
                        }
                        table = self.finish_copy(table, i, guard);
                        continue 'tables;
                    }
                    Slot::Done(n) if n.is(key) => {
                        table = table.next(guard).expect("a done slot implies a next table");
                        continue 'tables;
                    }
                    Slot::Tomb(_)
                    | Slot::SealedTomb
                    | Slot::Live(_)
                    | Slot::Frozen(_)
                    | Slot::Done(_) => {}
                }
                i = (i + 1) & table.mask;
                walked += 1;
            }
        }
    }

    /// Commits, and retires the binding `n` that a conditional write just unlinked: a removal
    /// leaves the node as the name's tombstone and defers only its value; a replacement
    /// retires it whole.
    ///
    /// # Safety
    /// The caller's CAS just replaced `Live(n)` in slot of `table` per `write`, under `guard`.
    #[inline(always)]
    unsafe fn retire_written(
        &self,
        table: &Table<V>,
        n: &Node<V>,
        write: &Write<'_, V>,
        rev: u64,
        guard: &Guard,
    ) {
        match *write {
            Write::Remove(reason) => {
                let cause = Cause::Write;
                self.commit(Change::Removed { old: n, cause }, rev, reason, guard);
                // SAFETY: as the caller guarantees: `Live(n)` became `Tomb(n)`.
                unsafe { retire_value(&self.pending, n, guard) }
            }
            Write::Replace(new) => {
                // SAFETY: `new` was published by the caller's CAS under `guard`: it is alive.
                let new = unsafe { new.deref() };
                self.commit(
                    Change::Replaced { old: n, new },
                    rev,
                    Reason::Explicit,
                    guard,
                );
                // SAFETY: as the caller guarantees: `n` is unlinked.
                unsafe { retire(table, &self.pending, n, Share::Whole, guard) }
            }
        }
    }

    /// Completes the copy of slot `i` (which holds our name, `Frozen`), returning the next
    /// table, where the name's state now lives.
    fn finish_copy<'g>(&self, table: &'g Table<V>, i: usize, guard: &'g Guard) -> &'g Table<V> {
        let m = table
            .migration(guard)
            .expect("a frozen slot implies a migration");
        self.copy_slot_counted(table, m, i, guard);
        table
            .next(guard)
            .expect("a frozen slot implies a next table")
    }

    /// The table an insert continues in when `table` has no `Empty` slot left on its chain.
    fn next_for_insert<'g>(&self, table: &'g Table<V>, guard: &'g Guard) -> &'g Table<V> {
        if let Some(next) = table.next(guard) {
            return next;
        }
        if table.prev(guard).is_some() {
            // Only the root may migrate: finish the migration into this table first.
            self.help_prev(table, guard);
            return self.root(guard);
        }
        self.start_migration(table, guard);
        table.next(guard).expect("a migration was just started")
    }

    /// Seals the `Empty` slot `i` of a migrating table (a copy step any thread may do).
    fn seal_empty<'g>(
        &self,
        table: &Table<V>,
        i: usize,
        cur: Shared<'g, Node<V>>,
        guard: &'g Guard,
    ) {
        if table.migration(guard).is_none() {
            self.start_migration(table, guard);
        }
        if table
            .cas(i, cur, Shared::null().with_tag(FROZEN), guard)
            .is_ok()
        {
            self.count_sealed(table, 1, guard);
        }
    }

    /// Seals the tombstone in slot `i` of a migrating table (a copy step any thread may do).
    fn seal_tomb<'g>(
        &self,
        table: &Table<V>,
        i: usize,
        cur: Shared<'g, Node<V>>,
        tomb: &Node<V>,
        guard: &'g Guard,
    ) {
        let sealed = Shared::null().with_tag(TOMB | FROZEN);
        if table.cas(i, cur, sealed, guard).is_ok() {
            // SAFETY: our CAS unlinked the tombstone.
            unsafe { retire(table, &self.pending, tomb, Share::Tomb, guard) };
            self.count_sealed(table, 1, guard);
        }
    }

    /// Counts one claim in `table` before its CAS (see `migrate.rs`, "Room in the next table").
    fn reserve(&self, table: &Table<V>, guard: &Guard) -> Reserve {
        if let Some(prev) = table.prev(guard) {
            // The order is the protocol: `sealed` is read BEFORE the claim is counted. Every
            // copy counted in the `sealed` we read had its install counted in `claimed` first
            // (and that count happens-before our read, through `sealed`'s AcqRel RMW), so our
            // later RMW on `claimed` includes it. A copy that lands after our read is counted
            // twice (in `claimed`, and as uncopied), never zero times. See `migrate.rs`.
            #[cfg(not(genreg_mutant = "reserve_race"))]
            let (sealed, claimed) = {
                let sealed = prev.sealed.load(Ordering::Acquire);
                hook::reserve_window();
                (sealed, table.claimed.fetch_add(1, Ordering::Relaxed) + 1)
            };
            // The mutant: the claim first, then `sealed` (the bug of issue 8: a copy landing
            // between the two is counted in neither).
            #[cfg(genreg_mutant = "reserve_race")]
            let (sealed, claimed) = {
                let claimed = table.claimed.fetch_add(1, Ordering::Relaxed) + 1;
                hook::reserve_window();
                (prev.sealed.load(Ordering::Acquire), claimed)
            };
            let uncopied = prev.capacity() - sealed.min(prev.capacity());
            if claimed + uncopied < table.capacity() {
                return Reserve::Granted;
            }
            table.claimed.fetch_sub(1, Ordering::Relaxed);
            return Reserve::HelpPrevious;
        }
        let claimed = table.claimed.fetch_add(1, Ordering::Relaxed) + 1;
        if claimed > hard_limit(table.capacity()) {
            table.claimed.fetch_sub(1, Ordering::Relaxed);
            return Reserve::Seal;
        }
        if claimed > soft_limit(table.capacity()) {
            self.start_migration(table, guard);
        }
        Reserve::Granted
    }

    /// Every binding, weakly consistent: each binding present for the whole walk is seen
    /// exactly once; none that was freed is ever seen.
    pub(crate) fn iter<'g>(&'g self, guard: &'g Guard) -> RawIter<'g, V> {
        // A migration in progress splits the bindings over two tables; finish it so that one
        // walk over the root sees each binding once. (A migration that starts during the walk
        // is handled slot by slot in `RawIter::next`.)
        let table = loop {
            let table = self.root(guard);
            match table.migration(guard) {
                Some(m) => self.finish_migration(table, m, guard),
                None => break table,
            }
        };
        RawIter {
            map: self,
            table,
            i: 0,
            guard,
        }
    }
}

enum Reserve {
    Granted,
    /// The root table is at its hard limit: seal the slot and go to the next table.
    Seal,
    /// The table being migrated into has no room to spare until more is copied.
    HelpPrevious,
}

/// See [`RawMap::iter`].
pub(crate) struct RawIter<'g, V> {
    map: &'g RawMap<V>,
    table: &'g Table<V>,
    i: usize,
    guard: &'g Guard,
}

impl<'g, V> Iterator for RawIter<'g, V> {
    type Item = &'g Node<V>;

    fn next(&mut self) -> Option<&'g Node<V>> {
        while self.i < self.table.capacity() {
            let i = self.i;
            self.i += 1;
            match Slot::decode(self.table.load(i, self.guard)) {
                Slot::Live(n) | Slot::Frozen(n) => return Some(n),
                // A migration started during the walk: the name's current state is there.
                // Names that entered the next table directly were not present when the walk
                // started, so skipping them is allowed.
                Slot::Done(n) => {
                    let next = self
                        .table
                        .next(self.guard)
                        .expect("a done slot implies a next table");
                    if let Some(found) = self.map.get_in(next, &n.key(), self.guard) {
                        return Some(found);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

impl<V> RawMap<V> {
    /// `get`, starting at `table` instead of the root.
    #[inline(always)]
    fn get_in<'g>(
        &self,
        mut table: &'g Table<V>,
        key: &Key<'_>,
        guard: &'g Guard,
    ) -> Option<&'g Node<V>> {
        loop {
            match self.probe(table, key, guard) {
                Probe::Found(n) => return Some(n),
                Probe::Absent => return None,
                Probe::Next => {
                    table = table
                        .next(guard)
                        .expect("a sealed slot implies a next table")
                }
            }
        }
    }
}

impl<V> RawMap<V> {
    /// Hands every removed value waiting in this map to the epoch collector (see
    /// `pending.rs`).
    pub(crate) fn hand_over_removed(&self, guard: &Guard) {
        self.pending.hand_over(guard);
    }

    /// How many lists of removed nodes have been handed over.
    pub(crate) fn removed_lists_handed(&self) -> usize {
        self.pending.handed()
    }

    /// How many handed-over lists have been freed.
    pub(crate) fn removed_lists_freed(&self) -> usize {
        self.pending.ran()
    }
}

impl<V> Drop for RawMap<V> {
    fn drop(&mut self) {
        self.free_tables();
        // Nothing can reach the removed nodes waiting here: free them now (their tombstone
        // shares, if any, were released above).
        self.pending.free_all();
    }
}

impl<V> RawMap<V> {
    /// The tables and every node they own (the map's drop).
    fn free_tables(&mut self) {
        // SAFETY: `&mut self`: no other thread can reach the map, so nothing needs protecting.
        let guard = unsafe { crossbeam_epoch::unprotected() };
        let root = self.root.load(Ordering::Relaxed, guard);
        // SAFETY: the root is never null.
        let table = unsafe { root.deref() };
        let Some(m) = table.migration(guard) else {
            // SAFETY: the root is the only table; it owns its live nodes and itself.
            unsafe { free_table_and_nodes(root) };
            return;
        };
        // A migration is in progress. Nothing runs concurrently, so rather than finish it
        // (which frees nodes through `retire` while they are borrowed, and could meet a broken
        // invariant and panic again inside a destructor), free each node from the one table
        // that owns it: the next table owns what it holds; the old table owns its live and
        // frozen nodes that were never installed, and its share of its tombstones (`Done`
        // nodes belong to the next table or to the old table's graveyard).
        // SAFETY: the next table is live for as long as the migration record is.
        let next_table = unsafe { &*m.next };
        let next = next_table.word();
        for i in 0..table.capacity() {
            match Slot::decode(table.load(i, guard)) {
                // SAFETY: never frozen, so never installed: the old table's alone.
                Slot::Live(n) => unsafe { drop_node(ptr::from_ref(n).cast_mut()) },
                Slot::Frozen(n) if !installed(next_table, m, i, n, guard) => {
                    // SAFETY: frozen but not (yet) installed: still the old table's alone.
                    unsafe { drop_node(ptr::from_ref(n).cast_mut()) }
                }
                // SAFETY: the old table's share of its own tombstone.
                Slot::Tomb(k) => unsafe { drop_tomb(ptr::from_ref(k).cast_mut()) },
                _ => {}
            }
        }
        // SAFETY: the next table now owns every node it holds, and nothing else does; the old
        // table owns only its migration record and graveyard, which its `Drop` frees.
        unsafe {
            free_table_and_nodes(next);
            drop(root.into_owned());
        }
    }
}

/// Whether the frozen node `n` of old slot `i` is in the next table already (at its one
/// destination, `dest[i]`, see `migrate.rs`). Only for a map being dropped: nothing runs
/// concurrently, and the next table changes a name only after its old slot is `Done`, so the
/// destination holds `n` itself or does not hold it at all.
fn installed<V>(
    next: &Table<V>,
    m: &table::Migration<V>,
    i: usize,
    n: &Node<V>,
    guard: &Guard,
) -> bool {
    match m.dest[i].load(Ordering::Relaxed) {
        0 => false,
        d => matches!(Slot::decode(next.load(d - 1, guard)), Slot::Live(x) if ptr::eq(x, n)),
    }
}

/// Frees a table, the nodes of its `Live` slots and its share of its `Tomb` slots' nodes.
///
/// # Safety
/// No other thread can reach the table, and it owns its live nodes (it is not migrating).
unsafe fn free_table_and_nodes<V>(table: Shared<'_, Table<V>>) {
    // SAFETY: the caller guarantees exclusive access.
    let guard = unsafe { crossbeam_epoch::unprotected() };
    // SAFETY: non-null, exclusively ours.
    let t = unsafe { table.deref() };
    debug_assert!(t.migration(guard).is_none());
    for i in 0..t.capacity() {
        match Slot::decode(t.load(i, guard)) {
            // SAFETY: a binding of a table that nobody else can reach is owned by it alone.
            Slot::Live(n) => unsafe { drop_node(ptr::from_ref(n).cast_mut()) },
            // SAFETY: the table's share of a tombstone (its value job holds the other).
            Slot::Tomb(n) => unsafe { drop_tomb(ptr::from_ref(n).cast_mut()) },
            _ => {}
        }
    }
    // SAFETY: allocated by `Table::alloc`, unreachable now (`Owned`'s drop strips the tag).
    drop(unsafe { table.into_owned() });
}

/// Test-only hooks into the middle of an operation, so that a single-threaded test can replay
/// an interleaving of several threads through the real code ("switching threads" by running
/// another operation inside the window). Empty, and compiled away, outside unit tests.
pub(crate) mod hook {
    #[cfg(all(test, not(loom)))]
    thread_local! {
        /// Run once, by the next `reserve` on a next table of this thread, between its two
        /// steps (reading `prev.sealed` and counting its claim).
        pub(crate) static RESERVE_WINDOW: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
            const { std::cell::RefCell::new(None) };
    }

    /// What the unit tests' commit recorder keeps of a change: the name, the tag it bound or
    /// unbound, and which kind of change it was.
    #[cfg(all(test, not(loom)))]
    pub(crate) type Recorded = (String, crate::tag::Tag, &'static str);

    #[cfg(all(test, not(loom)))]
    thread_local! {
        /// When `Some`, every commit made by this thread is appended (see `commit.rs`).
        pub(crate) static COMMITS: std::cell::RefCell<Option<Vec<Recorded>>> =
            const { std::cell::RefCell::new(None) };
    }

    #[inline(always)]
    pub(crate) fn record_commit<V>(_change: &super::commit::Change<'_, V>) {
        #[cfg(all(test, not(loom)))]
        {
            use super::commit::{Cause, Change};
            let entry = match _change {
                Change::Bound { new, purged: None } => (new.name(), new.tag, "bound"),
                Change::Bound {
                    new,
                    purged: Some(_),
                } => (new.name(), new.tag, "bound over dead"),
                Change::Replaced { old, new } => {
                    assert_eq!(old.name(), new.name(), "a replacement keeps the name");
                    (new.name(), new.tag, "replaced")
                }
                Change::Removed {
                    old,
                    cause: Cause::Write,
                } => (old.name(), old.tag, "removed"),
                Change::Removed {
                    old,
                    cause: Cause::Dead,
                } => (old.name(), old.tag, "removed dead weak"),
            };
            COMMITS.with(|c| {
                if let Some(log) = c.borrow_mut().as_mut() {
                    log.push((entry.0.to_owned(), entry.1, entry.2));
                }
            });
        }
    }

    #[inline(always)]
    pub(crate) fn reserve_window() {
        #[cfg(all(test, not(loom)))]
        {
            let f = RESERVE_WINDOW.with(|h| h.borrow_mut().take());
            if let Some(f) = f {
                f();
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_models;
