//! One open-addressing table: an array of tagged node pointers, probed linearly.
//!
//! # Slot words
//! A slot is one atomic word: a node pointer, three state bits in its low bits (nodes are
//! 8-aligned) and, on 64-bit x86 and ARM, a fragment of the name's hash in its high bits, which
//! user-space pointers leave zero (16 bits on x86-64, 8 on AArch64, whose top byte may carry a
//! pointer tag; none elsewhere). The fragment lets a probe pass another name's slot without
//! dereferencing its node: at a million names that is a cache miss saved per probe. It is
//! stamped from `node.hash` whenever a word is built ([`Table::cas`]), so every word naming a
//! node carries that node's fragment, and since a claimed slot belongs to one name for the life
//! of the table, a slot's fragment never changes once claimed.
//!
//! # Slot states
//! The three low bits say what the slot is:
//!
//! | pointer | bits | state | meaning |
//! | --- | --- | --- | --- |
//! | null | `000` | `Empty` | never claimed; ends every probe chain that reaches it |
//! | node | `001` | `Tomb` | a removed binding: `node` is the removed node itself, kept as the name's tombstone (its value is dropped by a deferred job; only its name is read again); reads skip it, and only an insert of that same name may reuse the slot |
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

use std::alloc::{self, Layout};
use std::{mem, ptr};

use crossbeam_epoch::{Atomic, Guard, Owned, Pointable, Pointer, Shared};

use super::node::Node;
use super::reclaim::{Share, free};
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
        let node = unsafe { word.as_ref() };
        // The common states first: a lookup mostly meets `Live` and `Empty`.
        match (word.tag(), node) {
            (0, Some(n)) => Slot::Live(n),
            (0, None) => Slot::Empty,
            (TOMB, Some(n)) => Slot::Tomb(n),
            (FROZEN, None) => Slot::SealedEmpty,
            (t, None) if t == TOMB | FROZEN => Slot::SealedTomb,
            (FROZEN, Some(n)) => Slot::Frozen(n),
            (t, Some(n)) if t == FROZEN | DONE => Slot::Done(n),
            (t, n) => unreachable!("corrupt slot: null={} tag={t:#b}", n.is_none()),
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
    share: Share,
    next: *mut Grave<V>,
}

/// A table's fields other than its slots. Aligned to a cache line, so that the slots that
/// follow it start on one, and so that a pointer to a table has six low bits free: the root
/// pointer carries its table's log2 capacity there (see [`Table::view`]).
#[repr(C, align(64))]
pub(crate) struct Head<V> {
    /// `capacity - 1`; the capacity is a power of two.
    pub(crate) mask: usize,
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
    pub(crate) prev: Atomic<Table<V>>,
    /// Nodes removed from this table's successor while this table could still point at them
    /// (see `reclaim::retire`). A push-only Treiber stack, drained when this table is freed.
    graveyard: AtomicPtr<Grave<V>>,
    /// How far into its allocation the table starts (see [`Table`]'s `init`): freed from there.
    offset: usize,
}

/// One table: its head and, in the same allocation, its slot words (see the module docs).
///
/// One allocation, so that a lookup goes from the root pointer straight to a slot: the slots'
/// address is the table's plus a constant, and the root pointer's tag says the capacity, so the
/// head is not read on the way (measured: three instructions and 0.4 ns less per hit;
/// BENCHMARKS.md, "The read path"). Tables are reached through a thin pointer ([`Atomic`],
/// [`Shared`], a tagged word), whose slot count is read from the head, or from the root's tag, to
/// make the wide reference; only a migration's `next` keeps the wide pointer itself.
#[repr(C)]
pub(crate) struct Table<V> {
    head: Head<V>,
    slots: [AtomicUsize],
}

impl<V> std::ops::Deref for Table<V> {
    type Target = Head<V>;

    #[inline(always)]
    fn deref(&self) -> &Head<V> {
        &self.head
    }
}

/// The alignment asked of the allocator: no more than it gives anyway (16 on the 64-bit targets
/// the system allocator serves), so that a zeroed request is `calloc`, which hands a large table
/// fresh zero pages instead of writing it. The table is then aligned inside its allocation.
const ALLOC_ALIGN: usize = 16;

/// The allocation of a table of `capacity` slots: the table's own size (padded to its
/// alignment), plus the slack that lets it start on a cache line anywhere in a block aligned to
/// [`ALLOC_ALIGN`].
fn layout<V>(capacity: usize) -> Layout {
    let slots = Layout::array::<AtomicUsize>(capacity).expect("table size overflows");
    let (table, offset) = Layout::new::<Head<V>>()
        .extend(slots)
        .expect("table size overflows");
    debug_assert_eq!(offset, mem::size_of::<Head<V>>());
    // Padded: a reference to the table covers its size rounded up to its alignment.
    let slack = mem::align_of::<Head<V>>() - ALLOC_ALIGN;
    let size = table
        .pad_to_align()
        .size()
        .checked_add(slack)
        .expect("table size overflows");
    Layout::from_size_align(size, ALLOC_ALIGN).expect("table size overflows")
}

/// The wide pointer to the table at `addr`, whose capacity is `capacity`.
#[inline(always)]
fn wide<V>(addr: usize, capacity: usize) -> *mut Table<V> {
    // `with_exposed_provenance`: the address came from a word (crossbeam's tagged pointer, or
    // a slot-free root word), whose provenance `init` exposed.
    let base = std::ptr::with_exposed_provenance_mut::<AtomicUsize>(addr);
    ptr::slice_from_raw_parts_mut(base, capacity) as *mut Table<V>
}

// SAFETY (of the trait's contract): `init` returns the address of a fresh allocation aligned to
// `ALIGN` (the head's alignment); `deref`/`deref_mut`/`drop` are called, as crossbeam requires,
// only with such an address, never after `drop`.
impl<V> Pointable for Table<V> {
    const ALIGN: usize = mem::align_of::<Head<V>>();

    /// The capacity (a power of two).
    type Init = usize;

    unsafe fn init(capacity: usize) -> usize {
        // Not a debug assertion: the probes index with `i & mask` unchecked, which is in
        // bounds only for a power of two (0 would make the mask `usize::MAX` over no slots).
        assert!(capacity.is_power_of_two(), "table capacity {capacity}");
        let layout = layout::<V>(capacity);
        // Outside loom, the memory comes zeroed from the allocator. A zero word is an `Empty`
        // slot: `AtomicUsize` has `usize`'s bit validity. At `ALLOC_ALIGN` this is `calloc`,
        // whose large blocks are fresh pages, zero without a write: the thread that starts a
        // migration does not write the next table (16 MiB of slots at 2M). Asked at the head's
        // 64-byte alignment, the same call is `posix_memalign` and a `memset` of the whole
        // block (measured: an insert maximum of 9-11 ms instead of under 1 ms growing to 1M).
        #[cfg(not(loom))]
        // SAFETY: `layout` has a nonzero size (the head alone is 64 bytes).
        let block = unsafe { alloc::alloc_zeroed(layout) };
        #[cfg(loom)]
        // SAFETY: as above.
        let block = unsafe { alloc::alloc(layout) };
        if block.is_null() {
            alloc::handle_alloc_error(layout);
        }
        // Not `align_offset`, which may give up (`usize::MAX`): the distance to the next
        // multiple of the head's alignment, a power of two.
        let offset = block.addr().wrapping_neg() & (mem::align_of::<Head<V>>() - 1);
        debug_assert!(offset <= mem::align_of::<Head<V>>() - ALLOC_ALIGN);
        // SAFETY: `block` is a fresh allocation of `layout`, which has room for the slack
        // `offset` (less than the head's alignment, a multiple of `ALLOC_ALIGN`) and then the
        // head and `capacity` slots, all in bounds and aligned.
        unsafe {
            let base = block.add(offset);
            ptr::write(base.cast::<Head<V>>(), Head::new(capacity, offset));
            // Loom's atomics are not plain words: written one by one.
            #[cfg(loom)]
            for i in 0..capacity {
                let slot = base.add(mem::size_of::<Head<V>>()).cast::<AtomicUsize>();
                ptr::write(slot.add(i), AtomicUsize::new(0));
            }
            base.expose_provenance()
        }
    }

    unsafe fn deref<'a>(addr: usize) -> &'a Table<V> {
        // SAFETY: the caller passes a live table's address (the trait's contract); its head
        // says its capacity, and the wide pointer covers exactly its allocation.
        unsafe { &*wide(addr, (*wide::<V>(addr, 0)).head.mask + 1) }
    }

    unsafe fn deref_mut<'a>(addr: usize) -> &'a mut Table<V> {
        // SAFETY: as in `deref`, and the caller guarantees exclusive access.
        unsafe { &mut *wide(addr, (*wide::<V>(addr, 0)).head.mask + 1) }
    }

    unsafe fn drop(addr: usize) {
        // SAFETY: the caller passes a live table's address and gives up all access to it.
        unsafe {
            let capacity = (*wide::<V>(addr, 0)).head.mask + 1;
            let table = wide::<V>(addr, capacity);
            let offset = (*table).head.offset;
            let layout = layout::<V>(capacity);
            ptr::drop_in_place(table);
            alloc::dealloc(table.cast::<u8>().sub(offset), layout);
        }
    }
}

impl<V> Head<V> {
    fn new(capacity: usize, offset: usize) -> Head<V> {
        Head {
            offset,
            mask: capacity - 1,
            claimed: AtomicUsize::new(0),
            migration: Atomic::null(),
            cursor: AtomicUsize::new(0),
            sealed: AtomicUsize::new(0),
            prev: Atomic::null(),
            graveyard: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

impl<V> Table<V> {
    /// A new table of `capacity` (a power of two) empty slots, as the root pointer stores it:
    /// tagged with its log2 capacity (see [`view`](Self::view)).
    pub(crate) fn alloc(capacity: usize) -> Owned<Table<V>> {
        Owned::<Table<V>>::init(capacity).with_tag(capacity.trailing_zeros() as usize)
    }

    /// This table as a pointer word: tagged as [`alloc`](Self::alloc) tags it, so that it
    /// compares equal to the root word of this table.
    #[inline]
    pub(crate) fn word<'g>(&'g self) -> Shared<'g, Table<V>> {
        let addr = ptr::from_ref(self).cast::<u8>().expose_provenance();
        // SAFETY: the address of a live table, which `init` allocated, tagged within the six
        // bits its alignment leaves free (a capacity is at most 2^60).
        unsafe { Shared::from_usize(addr | self.capacity().trailing_zeros() as usize) }
    }

    /// The table a word made by [`alloc`](Self::alloc) or [`word`](Self::word) points at,
    /// without reading its head: the capacity is the word's tag. This is how a lookup goes
    /// from the root to a slot with one load less.
    ///
    /// # Safety
    /// `word` is non-null, made by `alloc` or `word`, and its table outlives `'g`.
    #[inline(always)]
    pub(crate) unsafe fn view<'g>(word: Shared<'g, Table<V>>) -> &'g Table<V> {
        let log2 = word.tag();
        let addr = word.into_usize() & !(Self::ALIGN_MASK);
        // SAFETY: the caller's contract; the tag is the log2 of the capacity.
        let table = unsafe { &*wide::<V>(addr, 1 << log2) };
        debug_assert_eq!(
            table.head.mask + 1,
            1 << log2,
            "a table word's tag is its log2 capacity"
        );
        table
    }

    const ALIGN_MASK: usize = <Table<V> as Pointable>::ALIGN - 1;

    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn slot(&self, i: usize) -> &AtomicUsize {
        debug_assert!(i < self.slots.len());
        // SAFETY: `i & mask <= mask < slots.len()` (`slots.len() == mask + 1`).
        unsafe { self.slots.get_unchecked(i & self.head.mask) }
    }

    /// The slot words, for a probe loop that hoists them (`len()` is the capacity, a power of
    /// two).
    #[inline(always)]
    pub(crate) fn slots(&self) -> &[AtomicUsize] {
        &self.slots
    }

    /// Slot `i`'s word (Acquire: see the module docs).
    #[inline]
    pub(crate) fn load<'g>(&self, i: usize, _guard: &'g Guard) -> Shared<'g, Node<V>> {
        word_to_shared(self.slot(i).load(Ordering::Acquire))
    }

    /// Slot `i`'s word, and whether it can hold the name whose fragment is `frag` (a word of
    /// another name's slot answers `false` without its node being touched).
    #[inline]
    pub(crate) fn load_for<'g>(
        &self,
        i: usize,
        frag: usize,
        _guard: &'g Guard,
    ) -> (Shared<'g, Node<V>>, bool) {
        let word = self.slot(i).load(Ordering::Acquire);
        (word_to_shared(word), may_own(word, frag))
    }

    /// One CAS on slot `i`; on failure returns what the slot holds.
    #[inline]
    pub(crate) fn cas<'g>(
        &self,
        i: usize,
        current: Shared<'g, Node<V>>,
        new: Shared<'g, Node<V>>,
        _guard: &'g Guard,
    ) -> Result<(), Shared<'g, Node<V>>> {
        self.slot(i)
            .compare_exchange(
                encode(current),
                encode(new),
                // SeqCst (the same instruction as AcqRel on x86): the writer's half of the
                // Dekker pair with waiters (see `log.rs`, `Wake`).
                Ordering::SeqCst, // necessary: see the comment above
                Ordering::Acquire,
            )
            .map(|_| ())
            .map_err(word_to_shared)
    }

    /// A plain store: only the `cas_unregister` mutant uses it (the bug it plants on purpose).
    #[cfg(genreg_mutant = "cas_unregister")]
    pub(crate) fn store_unchecked(&self, i: usize, new: Shared<'_, Node<V>>) {
        self.slot(i).store(encode(new), Ordering::Release);
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
    pub(crate) fn prev<'g>(&self, guard: &'g Guard) -> Option<&'g Table<V>> {
        let p = self.prev.load(Ordering::Acquire, guard);
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
    pub(crate) fn bury(&self, node: *mut Node<V>, share: Share) {
        let grave = Box::into_raw(Box::new(Grave {
            node,
            share,
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

/// Where the hash fragment lives in a slot word: the high bits that user-space pointers leave
/// zero (see the module docs).
#[cfg(all(target_pointer_width = "64", target_arch = "x86_64"))]
const FRAG_BITS: u32 = 16;
#[cfg(all(target_pointer_width = "64", target_arch = "aarch64"))]
const FRAG_BITS: u32 = 8;
#[cfg(not(all(
    target_pointer_width = "64",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
const FRAG_BITS: u32 = 0;

/// The fragment's bits in a slot word (0 where there is no fragment).
const FRAG_MASK: usize = if FRAG_BITS == 0 {
    0
} else {
    ((1usize << FRAG_BITS) - 1) << 48
};

/// The fragment of `hash`, placed where it goes in a slot word: the hash's top bits ([`home`]
/// uses its bottom ones).
#[cfg(all(
    target_pointer_width = "64",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[inline]
pub(crate) fn frag(hash: u64) -> usize {
    // Cannot truncate: a 64-bit target.
    ((hash >> (64 - FRAG_BITS)) << 48) as usize
}

/// No fragment on this target: every slot word looks like it may hold any name.
#[cfg(not(all(
    target_pointer_width = "64",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
#[inline]
pub(crate) fn frag(_hash: u64) -> usize {
    0
}

/// The slot word of `s`: its crossbeam word, plus its node's fragment.
#[inline]
fn encode<V>(s: Shared<'_, Node<V>>) -> usize {
    let word = s.into_usize();
    // SAFETY: `s` was loaded or allocated under the caller's guard: the node is alive.
    match unsafe { s.as_ref() } {
        None => word,
        Some(node) => {
            // A user-space pointer never has these bits set on the targets with fragments (the
            // kernels hand out higher addresses only on request); if one ever did, a fragment
            // would corrupt it, so refuse loudly rather than misread it later.
            assert!(
                word & FRAG_MASK == 0,
                "genreg: a node address uses the pointer's high bits ({word:#x}), which the slot \
                 word needs for the hash fragment"
            );
            word | frag(node.hash)
        }
    }
}

/// Whether a slot word may hold the name whose fragment is `frag`: its fragment matches, or it
/// points at no node (empty, a tomb, sealed). `false` decides another name's slot without
/// touching its node.
#[inline(always)]
pub(crate) fn may_own(word: usize, frag: usize) -> bool {
    // A word with no node has no fragment either (`encode`): it is one of the three state bits
    // alone, below 8.
    (word ^ frag) & FRAG_MASK == 0 || word < 8
}

/// A slot word loaded under `_guard`, as the `Shared` it encodes.
#[inline(always)]
pub(crate) fn shared_of<'g, V>(word: usize, _guard: &'g Guard) -> Shared<'g, Node<V>> {
    word_to_shared(word)
}

/// The crossbeam word of a slot word (the fragment dropped).
#[inline(always)]
fn word_to_shared<'g, V>(word: usize) -> Shared<'g, Node<V>> {
    // SAFETY: `word & !FRAG_MASK` is a word `encode` took from a `Shared` (or 0, the null word).
    unsafe { Shared::from_usize(word & !FRAG_MASK) }
}

/// Where the probe chain of `hash` starts.
#[inline]
pub(crate) fn home(hash: u64, mask: usize) -> usize {
    // Truncation on 32-bit targets is fine: any bits of a good hash will do.
    (hash as usize) & mask
}

impl<V> Drop for Head<V> {
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
            unsafe { free(g.node, g.share) };
            grave = g.next;
        }
    }
}
