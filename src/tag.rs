//! Tags: which object is bound ([`InstanceId`]) and which binding it is ([`Generation`]).
//!
//! A [`Tag`] is the pair. It lives in the immutable node of an entry, so comparing a tag and
//! swapping the node is one pointer compare-and-swap; no 128-bit atomics are needed.
//!
//! # Why there is no ABA
//! Generations come from one registry-wide counter that only goes up (it is never reset, not
//! even by [`Registry::clear`](crate::Registry::clear)). Two bindings of a registry therefore
//! never share a generation, so a tag held from an old binding can never match a newer binding
//! of the same name, even when the very same instance is registered again under that name.
//! A 64-bit counter incremented a billion times a second lasts 584 years: it does not wrap in
//! practice, and the counter panics rather than wrap if it ever did.

use std::fmt;

use crate::sync::{AtomicU64, Ordering, StaticAtomicU64};

/// Says *which object* is bound to a name.
///
/// The registry mints a fresh one for every registration unless the caller supplies its own
/// (see [`Registry::register_as`](crate::Registry::register_as)), so that "the same agent" can
/// be recognised across re-registrations and [`Registry::unregister_instance`] can find every
/// name it holds. Ids from [`InstanceId::fresh`] are unique for the life of the process.
///
/// [`Registry::unregister_instance`]: crate::Registry::unregister_instance
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct InstanceId(u64);

/// The process-wide source of [`InstanceId::fresh`]. Starts at 1 so that 0 is never minted.
static NEXT_INSTANCE: StaticAtomicU64 = StaticAtomicU64::new(1);

/// No fresh id below this one is handed out any more (raised by a restore).
static INSTANCE_FLOOR: StaticAtomicU64 = StaticAtomicU64::new(0);

/// Ids a thread takes from [`NEXT_INSTANCE`] at once: registering threads then share that
/// counter's cache line once per block instead of once per registration.
const INSTANCE_BLOCK: u64 = 256;

thread_local! {
    /// This thread's block of ids: the next one to hand out, and the end of the block.
    static INSTANCE_IDS: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

impl InstanceId {
    /// The next block of fresh ids to be reserved (every fresh id so far is below it).
    pub(crate) fn peek_next() -> u64 {
        NEXT_INSTANCE.load(Ordering::Relaxed)
    }

    /// Fresh ids from now on are above `raw` (a restore: restored instance ids stay distinct
    /// from fresh ones).
    pub(crate) fn advance_past(raw: u64) {
        let floor = raw.saturating_add(1);
        NEXT_INSTANCE.fetch_max(floor, Ordering::Relaxed);
        INSTANCE_FLOOR.fetch_max(floor, Ordering::Relaxed);
    }

    /// Mints an id that no other call in this process has returned or will return.
    ///
    /// Unique, not ordered: each thread hands out ids from a block of its own, so ids from
    /// different threads interleave.
    pub fn fresh() -> InstanceId {
        INSTANCE_IDS.with(|ids| {
            let (mut next, mut end) = ids.get();
            // A block reserved before a restore moved the floor is given up.
            if next == end || next < INSTANCE_FLOOR.load(Ordering::Relaxed) {
                // Relaxed: uniqueness needs only the atomicity of the increment, no ordering.
                next = NEXT_INSTANCE.fetch_add(INSTANCE_BLOCK, Ordering::Relaxed);
                assert!(
                    next <= u64::MAX - INSTANCE_BLOCK,
                    "InstanceId space exhausted"
                );
                end = next + INSTANCE_BLOCK;
            }
            ids.set((next + 1, end));
            InstanceId(next)
        })
    }

    /// Wraps an id chosen by the caller (for example one stored in a database).
    ///
    /// Uniqueness is then the caller's business; generations still make every binding distinct,
    /// so a reused instance id can never cause an ABA in [`unregister_if_same`].
    ///
    /// [`unregister_if_same`]: crate::Registry::unregister_if_same
    pub const fn from_raw(raw: u64) -> InstanceId {
        InstanceId(raw)
    }

    /// The id as a number.
    pub const fn as_raw(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({})", self.0)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Says *which binding* an entry is: a number drawn from a registry-wide counter that only
/// increases, never reused for the life of the registry. Threads draw them in blocks, so they
/// increase along one thread's operations (and a replacement's is above the one it replaces),
/// but are not in time order across threads: they identify bindings, they do not order them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Generation(u64);

impl Generation {
    /// The generation as a number.
    pub const fn as_raw(self) -> u64 {
        self.0
    }

    /// Wraps a raw number, for tags rebuilt from a snapshot or forged in tests.
    pub const fn from_raw(raw: u64) -> Generation {
        Generation(raw)
    }
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Generation({})", self.0)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// The identity of one binding: `(instance, generation)`.
///
/// Conditional operations ([`unregister_if_same`], [`replace_if_same`], [`get_if`]) succeed
/// only while the entry still carries exactly this tag.
///
/// [`unregister_if_same`]: crate::Registry::unregister_if_same
/// [`replace_if_same`]: crate::Registry::replace_if_same
/// [`get_if`]: crate::Registry::get_if
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Tag {
    instance: InstanceId,
    generation: Generation,
}

impl Tag {
    /// Builds a tag from its parts (for tags restored from elsewhere, or forged in tests).
    pub const fn new(instance: InstanceId, generation: Generation) -> Tag {
        Tag {
            instance,
            generation,
        }
    }

    /// Which object is bound.
    pub const fn instance(self) -> InstanceId {
        self.instance
    }

    /// Which binding this is.
    pub const fn generation(self) -> Generation {
        self.generation
    }

    /// Whether a binding carrying `self` is the one `expected` names: both parts equal.
    ///
    /// The one place conditional operations compare tags. The `no_generation` mutant (built
    /// with `--cfg genreg_mutant="no_generation"`, to show that the tests catch it) compares
    /// instances only, reintroducing the ABA bug on purpose.
    #[inline]
    pub(crate) fn matches(self, expected: Tag) -> bool {
        #[cfg(genreg_mutant = "no_generation")]
        return self.instance == expected.instance;
        #[cfg(not(genreg_mutant = "no_generation"))]
        return self == expected;
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({}@{})", self.instance, self.generation)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.instance, self.generation)
    }
}

/// The registry-wide generation counter, drawn from in per-thread blocks.
///
/// One shared counter bumped by every registration is one cache line that every registering
/// thread takes in turn. Instead each thread takes [`GENERATION_BLOCK`] generations at once and
/// hands them out itself, so generations are:
/// - **unique** for the life of the registry (each comes from one block, and blocks from one
///   counter that only increases: never reused, `clear()` included);
/// - **increasing along each thread**, and a replacement's generation is always greater than
///   the one it replaces ([`next_after`](Self::next_after));
/// - **not ordered across threads**: a binding made later on another thread may carry a smaller
///   generation. Nothing in the registry needs more than uniqueness (a stale tag can only
///   match its own binding); commit order is another thing than identity.
pub(crate) struct GenerationCounter {
    next: AtomicU64,
    /// Which registry this is, for the per-thread caches (never reused within the process).
    /// Changed by `advance_past`, so that blocks reserved before it are given up. Not part of
    /// any protocol the loom models explore: std's atomic.
    id: StaticAtomicU64,
}

/// Generations a thread takes at once. One under loom: a model has a handful of writes.
#[cfg(not(loom))]
const GENERATION_BLOCK: u64 = 64;
#[cfg(loom)]
const GENERATION_BLOCK: u64 = 1;

/// Registry ids for the per-thread caches. Starts at 1: 0 marks an empty cache entry.
static NEXT_REGISTRY_ID: StaticAtomicU64 = StaticAtomicU64::new(1);

/// Per-thread caches: a few registries' blocks, `(registry id, next, end)`, picked by id.
const CACHED_REGISTRIES: usize = 4;

thread_local! {
    static GENERATIONS: [std::cell::Cell<(u64, u64, u64)>; CACHED_REGISTRIES] =
        const { [const { std::cell::Cell::new((0, 0, 0)) }; CACHED_REGISTRIES] };
}

impl GenerationCounter {
    pub(crate) fn new() -> Self {
        // Relaxed: uniqueness needs only the atomicity of the increment.
        let id = NEXT_REGISTRY_ID.fetch_add(1, Ordering::Relaxed);
        GenerationCounter {
            next: AtomicU64::new(1),
            id: StaticAtomicU64::new(id),
        }
    }

    /// A generation never returned before by this registry.
    #[inline]
    pub(crate) fn next(&self) -> Generation {
        self.next_after(Generation(0))
    }

    /// A generation never returned before, and greater than `floor` (a generation this
    /// registry returned: the counter has passed it, so a fresh block is always greater).
    #[inline]
    pub(crate) fn next_after(&self, floor: Generation) -> Generation {
        let id = self.id.load(Ordering::Relaxed);
        GENERATIONS.with(|cache| {
            // Truncation is fine: any bits of the id pick a cache entry.
            let entry = &cache[id as usize % CACHED_REGISTRIES];
            let (owner, next, end) = entry.get();
            if owner == id && next < end && next > floor.0 {
                entry.set((id, next + 1, end));
                return Generation(next);
            }
            let start = self.take_block();
            entry.set((id, start + 1, start + GENERATION_BLOCK));
            Generation(start)
        })
    }

    /// The next generation the counter would hand out as a block (every generation minted so
    /// far is below it).
    pub(crate) fn peek(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// Moves the counter past `generation` and gives up every block a thread has cached
    /// (restore: no generation at or below `generation` is minted again by this registry).
    pub(crate) fn advance_past(&self, generation: u64) {
        self.next
            .fetch_max(generation.saturating_add(1), Ordering::Relaxed);
        // A new key: cached blocks under the old one no longer match.
        let id = NEXT_REGISTRY_ID.fetch_add(1, Ordering::Relaxed);
        self.id.store(id, Ordering::Relaxed);
    }

    #[cold]
    fn take_block(&self) -> u64 {
        // Relaxed: uniqueness needs only the atomicity of the RMW; the generation is published
        // to other threads inside a node, by the node's Release CAS.
        let start = self.next.fetch_add(GENERATION_BLOCK, Ordering::Relaxed);
        assert!(
            start <= u64::MAX - 2 * GENERATION_BLOCK,
            "generation counter exhausted"
        );
        start
    }
}
