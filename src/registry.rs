//! The safe facade: [`Registry`], its builder, and the owned [`Entry`] it returns.
//!
//! Every method validates its input, mints tags, pins, and delegates to [`crate::raw`]. The
//! operations themselves are written once, in [`Pinned`], and the registry's methods pin a
//! guard for the length of one call and drop it before returning, so nothing they return holds
//! an epoch guard: results can be kept across `.await` points and sent to other threads.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_epoch::{Collector, Guard, LocalHandle};

use crate::discovery::Reserved;
use crate::error::{Error, Rejected};
use crate::liveness::clock::{SharedClock, nanos};
use crate::liveness::{Clock, SystemClock};
use crate::pinned::{EntryRef, Pinned};
use crate::raw::RawMap;
use crate::raw::index::Index;
use crate::raw::log::{Capture, Log};
use crate::raw::node::{Extra, Stored, StoredRef, WeakRef};
use crate::registration::{Ensured, Registration};
use crate::sync::AtomicU64;
use crate::tag::{GenerationCounter, InstanceId, Tag};

/// The most collection passes one [`Registry::collect`] makes (each frees at most a few
/// batches of garbage; a pinned thread can keep any of them from freeing anything).
const COLLECT_PASSES: usize = 4096;

/// How long a snapshot waits for one grace period before it starts again (a thread that
/// stays pinned that long holds it back).
const GRACE_PERIOD_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A lock-free, generation-tagged registry of named values.
///
/// Cheap to clone: clones share one registry, so a [`Registration`] guard (which holds a clone)
/// is `'static` and `Send`. `V` is what a name is bound to, typically an `Arc` of an agent or a
/// channel handle; methods that return values clone them (cheap for `Arc`), so that nothing
/// returned borrows the registry. [`Registry::pin`] gives borrowed access for hot loops.
///
/// See the [crate docs](crate) for the guarantees.
pub struct Registry<V> {
    pub(crate) inner: Arc<Inner<V>>,
}

pub(crate) struct Inner<V> {
    // Field order matters: the map (and its nodes) is dropped before the collector that may
    // still hold deferred frees of its nodes.
    pub(crate) map: RawMap<V>,
    pub(crate) generations: GenerationCounter,
    /// The number for the next `register_auto` name. Never restarts.
    pub(crate) auto: AtomicU64,
    /// Names that may not be registered ([`Builder::reserved_names`]).
    pub(crate) reserved: Option<Reserved>,
    /// Where deadlines and health records read the time.
    pub(crate) clock: SharedClock,
    /// [`Builder::remove_critical_after`], in clock nanoseconds.
    pub(crate) critical_after: Option<u64>,
    collector: Option<Collector>,
}

impl<V> Clone for Registry<V> {
    fn clone(&self) -> Self {
        Registry {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Configures a [`Registry`]; from [`Registry::builder`].
pub struct Builder<V> {
    capacity: usize,
    collector: Option<Collector>,
    seed: Option<u64>,
    /// The event log's history and how an event captures a value (see [`Builder::events`]).
    events: Option<(usize, Capture<V>)>,
    /// Whether events carry values ([`Builder::event_values`]).
    event_values: bool,
    reserved: Option<Reserved>,
    max_entries: Option<usize>,
    clock: Option<SharedClock>,
    critical_after: Option<u64>,
    _values: PhantomData<fn() -> V>,
}

impl<V> fmt::Debug for Builder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("capacity", &self.capacity)
            .field("own_collector", &self.collector.is_some())
            .finish_non_exhaustive()
    }
}

impl<V: Send + Sync + 'static> Builder<V> {
    fn new() -> Self {
        Builder {
            capacity: 0,
            collector: None,
            seed: None,
            events: None,
            event_values: true,
            reserved: None,
            max_entries: None,
            clock: None,
            critical_after: None,
            _values: PhantomData,
        }
    }

    /// Pre-sizes the table for about this many names (it grows as needed anyway).
    ///
    /// A hint above [`MAX_PRESIZE`](Self::MAX_PRESIZE) names is clamped to it: pre-sizing
    /// allocates 16 bytes per name up front, and a table larger than that is better reached by
    /// growing. Any `usize` is accepted.
    pub fn capacity(mut self, names: usize) -> Self {
        self.capacity = names.min(Self::MAX_PRESIZE).saturating_mul(2);
        self
    }

    /// The largest [`capacity`](Self::capacity) hint honoured: 2^24 names (a 256 MiB slot
    /// array). Larger hints are clamped; the table still grows past it as names arrive.
    pub const MAX_PRESIZE: usize = 1 << 24;

    /// Reclaims memory through this collector instead of crossbeam-epoch's global one.
    ///
    /// An owned collector isolates the registry's garbage (tests, Miri and loom models use it);
    /// every call then registers the thread with it, which costs more than pinning the global
    /// collector. [`Registry::pin`] amortises that over many operations.
    pub fn collector(mut self, collector: Collector) -> Self {
        self.collector = Some(collector);
        self
    }

    /// Fixes the hash seed (by default each registry draws a random one, so that names chosen
    /// by an adversary cannot force long probe chains). For reproducible tests.
    pub fn hash_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Refuses these names at registration, in any case (`"Start"` is refused if `"start"`
    /// is reserved), with [`Error::Reserved`], which lists them. MARSYS reserves
    /// [`MARSYS_RESERVED`](crate::discovery::MARSYS_RESERVED) (`start`, `end`, `user`).
    ///
    /// Every way of binding a name checks it, restoring a snapshot included. Replaces any list
    /// given before; an empty list reserves nothing. A name that could never be registered
    /// anyway (empty, too long) may be listed and changes nothing.
    pub fn reserved_names<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, names: I) -> Self {
        self.reserved = Reserved::new(names);
        self
    }

    /// Bounds the registry to `n` live bindings: never more than `n` **at any instant**, under
    /// any concurrency. A registration that would make `n + 1` is refused with
    /// [`Error::Full`] (its value handed back) and changes nothing; every way of binding
    /// counts (a name's own tombstone reused, weak bindings, auto names, restore), and a
    /// removal frees its place before it returns, for the next registration.
    ///
    /// A weak binding whose owner died keeps its place until it is purged: a registration
    /// that finds the registry full purges dead weak bindings and tries once more before it
    /// refuses, so they never make it refuse. Replacements and metadata updates take no place.
    ///
    /// Fixed for the registry's life (there is no way to change it later: shrinking below the
    /// live count could not be honoured at once). `0` refuses every registration. Off by
    /// default; with it, each registration and removal also updates one counter shared by
    /// every thread (see the crate docs for its cost).
    ///
    /// ```
    /// use genreg::{Error, Registry};
    /// let reg: Registry<u32> = Registry::builder().max_entries(2).build();
    /// let a = reg.register("a", 1)?;
    /// reg.register_detached("b", 2)?;
    /// let full = reg.register("c", 3).unwrap_err();
    /// assert!(matches!(full.error(), Error::Full { capacity: 2, .. }));
    /// drop(a); // the guard unbinds "a": its place is free at once
    /// reg.register_detached("c", 3)?;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = Some(n);
        self
    }

    /// The clock that deadlines (TTL) and health records read ([`SystemClock`], monotonic, by
    /// default). Tests pass a [`ManualClock`](crate::liveness::ManualClock) and move it, so
    /// that no test sleeps to wait for an expiry.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Removes an entry that has been [`Critical`](crate::HealthState::Critical) for `limit`
    /// (Consul's `DeregisterCriticalServiceAfter`): when a health record finds it so, or when a
    /// [`Reaper`](crate::Reaper) reaches it; the event's reason is
    /// [`Critical`](crate::Reason::Critical). Off by default. A `limit` of zero removes an
    /// entry at its first critical record.
    pub fn remove_critical_after(mut self, limit: Duration) -> Self {
        self.critical_after = Some(nanos(limit));
        self
    }

    /// Builds the registry.
    pub fn build(self) -> Registry<V> {
        let seed = self.seed.unwrap_or_else(random_seed);
        let mut map = RawMap::new(self.capacity, seed).with_index(Index::new(seed));
        if let Some(n) = self.max_entries {
            map = map.with_capacity_limit(n);
        }
        if let Some((history, capture)) = self.events {
            fn none<V>(_: StoredRef<'_, V>) -> Option<V> {
                None
            }
            let capture: Capture<V> = if self.event_values {
                capture
            } else {
                none::<V>
            };
            map = map.with_log(Log::new(history, capture));
        }
        Registry {
            inner: Arc::new(Inner {
                map,
                generations: GenerationCounter::new(),
                auto: AtomicU64::new(1),
                reserved: self.reserved,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
                critical_after: self.critical_after,
                collector: self.collector,
            }),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Builder<V> {
    /// Keeps an event log: every committed change gets a [`Revision`](crate::Revision) and an
    /// [`Event`](crate::Event), and the last `history` of them (rounded up to a power of two,
    /// at least 2, at most 2^30) stay readable for [`watch`](Registry::watch),
    /// [`subscribe`](Registry::subscribe) and [`snapshot`](Registry::snapshot).
    ///
    /// Off by default. With it on, each write also draws a revision from one shared counter
    /// and allocates its event (with a clone of the value, unless
    /// [`event_values(false)`](Self::event_values)); memory is the history (one event per
    /// slot) plus what the epoch collector has not freed yet. See the crate docs for the
    /// measured cost. [`DEFAULT_HISTORY`](Self::DEFAULT_HISTORY) suits most users.
    pub fn events(mut self, history: usize) -> Self {
        self.events = Some((history, capture::<V>));
        self
    }

    /// A history of 4,096 events: a watcher may fall that far behind before it lags.
    pub const DEFAULT_HISTORY: usize = 4096;

    /// Whether events carry a clone of the bound value (the default, once
    /// [`events`](Self::events) is on) or only the tag (`false`).
    ///
    /// A value in the history lives until its event is overwritten, `history` changes later:
    /// for `V = Arc<Agent>`, a removed agent is then dropped only after that, not when the
    /// removal is collected. Turn values off when drops must be prompt (an agent's inbox that
    /// must close), or values are costly to clone; watchers then fetch a value with
    /// [`get_if(name, tag)`](Registry::get_if), and a snapshot reads values from the table
    /// (starting again if a binding it needs changes meanwhile). Without
    /// [`events`](Self::events) it has no effect; the two may come in either order. If a
    /// value's `clone` panics while its event is recorded, that event carries no value.
    pub fn event_values(mut self, on: bool) -> Self {
        self.event_values = on;
        self
    }
}

/// How an event captures a value: a clone of a strong one; never a weak one's (the history
/// must not keep the owner of a weak binding alive).
fn capture<V: Clone>(stored: StoredRef<'_, V>) -> Option<V> {
    match stored {
        StoredRef::Strong(v) => Some(v.clone()),
        StoredRef::Weak(_) => None,
    }
}

fn random_seed() -> u64 {
    #[cfg(loom)]
    {
        // Models must be deterministic.
        0x5eed
    }
    #[cfg(not(loom))]
    {
        use std::hash::BuildHasher;
        foldhash::fast::RandomState::default().hash_one(0x9e37_79b9_7f4a_7c15_u64)
    }
}

impl<V> Inner<V> {
    /// The registry's own collector, if it has one (else it uses crossbeam-epoch's global one).
    pub(crate) fn collector(&self) -> Option<&Collector> {
        self.collector.as_ref()
    }

    /// Whether the registry has a collector of its own (else crossbeam-epoch's global one).
    pub(crate) fn has_own_collector(&self) -> bool {
        self.collector.is_some()
    }

    /// Waits until every thread pinned on the registry's collector when it was called has
    /// unpinned (a grace period): a job deferred now runs only then. `each(guard)` runs at
    /// every pass (the snapshot reads the event log there); it returns false to give up.
    /// `Some(true)`: the grace period ended; `Some(false)`: `each` gave up; `None`: it did not
    /// end within [`GRACE_PERIOD_LIMIT`] (a thread that stays pinned).
    pub(crate) fn grace_period(&self, mut each: impl FnMut(&Guard) -> bool) -> Option<bool> {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (guard, local) = self.pin();
        let flag = Arc::clone(&done);
        guard.defer(move || flag.store(true, std::sync::atomic::Ordering::Release));
        drop(guard);
        let pin = || match &local {
            Some(handle) => handle.pin(),
            None => crate::sync::pin(),
        };
        let start = std::time::Instant::now();
        for pass in 0u64.. {
            let guard = pin();
            // Pushes our bag (the job) to the global queue, advances the epoch if every pinned
            // thread has caught up, and frees what has expired.
            guard.flush();
            if !each(&guard) {
                return Some(false);
            }
            drop(guard);
            if done.load(std::sync::atomic::Ordering::Acquire) {
                return Some(true);
            }
            // A spin, for the model checker: let the threads that hold the epoch back run.
            #[cfg(loom)]
            loom::thread::yield_now();
            if pass % 64 == 63 {
                // A thread preempted while pinned holds the epoch back for its time slice.
                if start.elapsed() > GRACE_PERIOD_LIMIT {
                    return None;
                }
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
        unreachable!("the loop returns")
    }

    /// Up to [`COLLECT_PASSES`] rounds of pin, `step`, flush, unpin, on one thread handle
    /// (registered once, for an owned collector), until `step(guard, pass)` says it is done;
    /// returns whether it did.
    fn collect_passes(&self, mut step: impl FnMut(&Guard, usize) -> bool) -> bool {
        let pass = |guard: Guard, n: usize, step: &mut dyn FnMut(&Guard, usize) -> bool| {
            guard.flush();
            let done = step(&guard, n);
            drop(guard);
            done
        };
        match &self.collector {
            None => (0..COLLECT_PASSES).any(|n| pass(crate::sync::pin(), n, &mut step)),
            Some(c) => {
                let handle = c.register();
                (0..COLLECT_PASSES).any(|n| pass(handle.pin(), n, &mut step))
            }
        }
    }

    /// Pins the current thread on the registry's collector.
    #[inline(always)]
    pub(crate) fn pin(&self) -> (Guard, Option<LocalHandle>) {
        match &self.collector {
            None => (crate::sync::pin(), None),
            Some(c) => {
                let handle = c.register();
                (handle.pin(), Some(handle))
            }
        }
    }
}

impl<V: Send + Sync + 'static> Default for Registry<V> {
    fn default() -> Self {
        Registry::new()
    }
}

impl<V: Send + Sync + 'static> Registry<V> {
    /// An empty registry on crossbeam-epoch's global collector.
    pub fn new() -> Registry<V> {
        Builder::new().build()
    }

    /// A [`Builder`] for capacity, collector and hash seed.
    pub fn builder() -> Builder<V> {
        Builder::new()
    }

    /// Binds `name` to `value` under a fresh [`InstanceId`], if the name is free.
    ///
    /// Of any number of concurrent registrations of one free name exactly one succeeds; the
    /// others get [`Error::AlreadyRegistered`] with the winner's tag, and their values back.
    /// The returned guard unbinds the name when dropped, but only if the binding is still its
    /// own ([`Registration`]).
    pub fn register(&self, name: &str, value: V) -> Result<Registration<V>, Rejected<V>> {
        self.pin().register(name, value)
    }

    /// Like [`register`](Self::register), without the guard: returns the binding's tag, and
    /// unbinding is up to the caller (`unregister_if_same(name, tag)`).
    ///
    /// For callers that keep the tag in a record of their own: it skips the guard's reference
    /// to the registry (an atomic increment and decrement on a counter every registering
    /// thread shares) and its copy of the name. `register(name, v)?.detach()` does the same
    /// thing, slower.
    pub fn register_detached(&self, name: &str, value: V) -> Result<Tag, Rejected<V>> {
        self.pin().register_detached(name, value)
    }

    /// Like [`register`](Self::register), with an instance id of the caller's (so that the same
    /// object can be recognised across registrations and found by
    /// [`unregister_instance`](Self::unregister_instance)).
    pub fn register_as(
        &self,
        name: &str,
        instance: InstanceId,
        value: V,
    ) -> Result<Registration<V>, Rejected<V>> {
        self.pin().register_as(name, instance, value)
    }

    /// Idempotent registration of `instance` under `name`: binds it if the name is free; if the
    /// name is already bound to this same instance, returns the existing tag and creates no
    /// second owner (no second guard); if it is bound to another instance, refuses.
    pub fn ensure_registered(
        &self,
        name: &str,
        instance: InstanceId,
        value: V,
    ) -> Result<Ensured<V>, Rejected<V>> {
        self.pin().ensure_registered(name, instance, value)
    }

    /// Binds `{prefix}-{n}` for the next `n` of a per-registry counter that never restarts (not
    /// after removals, not after [`clear`](Self::clear)), skipping names that are taken.
    ///
    /// The prefix is checked up front, with room for any number: it fails, always and at once,
    /// with [`Error::InvalidName`] naming the prefix, if the prefix is longer than
    /// [`MAX_AUTO_PREFIX_LEN`](crate::MAX_AUTO_PREFIX_LEN) bytes or contains a control
    /// character (the empty prefix is allowed: names `-1`, `-2`, ...), and never otherwise.
    pub fn register_auto(&self, prefix: &str, value: V) -> Result<Registration<V>, Rejected<V>> {
        self.pin().register_auto(prefix, value)
    }

    /// Whether `name` is bound (to a visible binding).
    pub fn contains(&self, name: &str) -> bool {
        self.pin().contains(name)
    }

    /// The tag of the binding of `name`, if any.
    pub fn tag_of(&self, name: &str) -> Option<Tag> {
        let pinned = self.pin();
        match pinned.get(name) {
            Some(e) => Some(e.tag()),
            // A pool's name has a tag but no value.
            None => self.pool_tag(&pinned, name),
        }
    }

    /// Whether `name` is still bound with exactly `tag`.
    pub fn is_current(&self, name: &str, tag: Tag) -> bool {
        self.tag_of(name) == Some(tag)
    }

    /// Unbinds every name bound to `instance`, each with its own identity-safe CAS. Returns the
    /// names and tags removed. Walks the whole table (O(capacity)).
    pub fn unregister_instance(&self, instance: InstanceId) -> Vec<(String, Tag)> {
        self.pin().unregister_instance(instance)
    }

    /// Swaps in `value` under a new generation (same instance) only if `name` still carries
    /// `tag`. Returns the new tag; on refusal hands `value` back. Guards holding the old tag go
    /// stale (their drop then does nothing): use [`Registration::replace`] to keep one current.
    pub fn replace_if_same(&self, name: &str, tag: Tag, value: V) -> Result<Tag, Rejected<V>> {
        self.pin().replace_if_same(name, tag, value)
    }

    /// The bound on live bindings ([`Builder::max_entries`]), if any.
    pub fn max_entries(&self) -> Option<usize> {
        self.inner.map.capacity.as_ref().map(|c| c.limit())
    }

    /// Bindings stored right now: O(1), a sum of a few per-thread counters (an instant's
    /// estimate while writers run, exact once they are quiet).
    ///
    /// A weak binding whose owner has died counts until it is purged: by the first read or
    /// write of its name, by the next migration of the table (which never copies a dead weak
    /// binding), or by [`purge_dead`](Self::purge_dead), which makes the count exact.
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Whether [`len`](Self::len) is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound names, sorted, each once; weakly consistent (see the crate docs: a name bound
    /// for the whole walk is listed, one bound or unbound meanwhile may or may not be). Pools'
    /// names and their members' are listed ([`listing`](Self::listing) says which is which).
    pub fn names(&self) -> Vec<String> {
        let pinned = self.pin();
        let mut names: Vec<String> = (self.inner.map.iter(pinned.guard()))
            .filter(|n| n.is_visible())
            .map(|n| n.name().to_owned())
            .collect();
        // A walk lists each name at most once (see the crate docs): no dedup needed.
        names.sort_unstable();
        debug_assert!(
            names.windows(2).all(|w| w[0] != w[1]),
            "a name walked twice"
        );
        names
    }

    /// Removes every binding (each with its own CAS, so a concurrent re-registration is never
    /// removed by mistake... it is simply one more binding after the clear). Generations keep
    /// increasing. Returns how many bindings were removed.
    pub fn clear(&self) -> usize {
        self.pin().clear()
    }

    /// Removes weak bindings whose owner has died (identity-safely). Reads never see them
    /// anyway; this only frees their slots and fixes [`len`](Self::len).
    pub fn purge_dead(&self) -> usize {
        self.pin().purge_dead()
    }

    /// A handle that keeps one epoch guard for many operations (no re-pinning per call) and
    /// gives borrowed access to values. Not `Send`; do not hold it across `.await`, and drop or
    /// [`repin`](Pinned::repin) it now and then in long loops, since a pinned thread holds up
    /// memory reclamation for everyone.
    #[inline(always)]
    pub fn pin(&self) -> Pinned<'_, V> {
        Pinned::new(self)
    }

    /// Runs `f` on the binding of `name`, borrowed, and returns what it returns; `None` if
    /// `name` is unbound (or reads as no value: a pool's own name, a dead weak binding).
    ///
    /// A lookup that neither clones the value nor keeps anything pinned: the epoch guard is
    /// taken and released inside the call, so the result can be kept across `.await`, while
    /// nothing in `f`'s [`EntryRef`] can escape it. Reading a field, cloning part of the value
    /// or comparing a tag costs no write to shared memory beyond the pin itself, which matters
    /// when threads read one hot name: [`get`](Self::get)'s `Arc` clone makes them contend on
    /// the value's reference count.
    ///
    /// ```
    /// let registry = genreg::Registry::new();
    /// registry.register_detached("planner", std::sync::Arc::new(String::from("gpt")))?;
    /// let len = registry.read("planner", |entry| entry.value().len());
    /// assert_eq!(len, Some(3));
    /// assert_eq!(registry.read("nobody", |entry| entry.tag()), None);
    /// # Ok::<(), genreg::Rejected<std::sync::Arc<String>>>(())
    /// ```
    ///
    /// `f` runs while the thread is pinned: keep it short (a long `f` delays memory
    /// reclamation as a held [`Pinned`] does). It may call the registry.
    // Always inlined, the guard kept in registers: BENCHMARKS.md, "The read path".
    #[inline(always)]
    pub fn read<R>(&self, name: &str, f: impl FnOnce(EntryRef<'_, V>) -> R) -> Option<R> {
        let inner = &*self.inner;
        if inner.collector.is_none() {
            // crossbeam's default collector: pinned through genreg's thread-local handle,
            // no `Pinned` built.
            let guard = crate::sync::pin();
            return crate::pinned::read_in(self, name, &guard, f);
        }
        self.read_owned_collector(name, f)
    }

    /// [`read`](Self::read) on a registry with a collector of its own (a handle registered per
    /// call, so out of line).
    #[cold]
    #[inline(never)]
    fn read_owned_collector<R>(
        &self,
        name: &str,
        f: impl FnOnce(EntryRef<'_, V>) -> R,
    ) -> Option<R> {
        let pinned = self.pin();
        crate::pinned::read_in(self, name, pinned.guard(), f)
    }

    /// Drops what has been removed from this registry, as far as pinned threads allow.
    ///
    /// Hands every removed value still waiting in the registry to the epoch collector (see
    /// the crate docs, "Memory"), from whichever thread calls it, then runs collection passes
    /// (each advances the epoch if no pinned thread holds it back, and runs what has expired)
    /// until every value ever handed over has been dropped. Returns `true` then: every value
    /// whose removal returned before the call has been dropped.
    ///
    /// Returns `false` if it stopped at its bound (4,096 passes) first: a thread that stays
    /// pinned (a [`Pinned`] handle or an iterator held somewhere) holds every later collection
    /// back, or other threads kept removing faster than the passes caught up. The values are
    /// then dropped by later collections, once that thread unpins. It never blocks and never
    /// waits for another thread.
    ///
    /// Never needed for correctness; call it after removing something whose drop you wait for
    /// (an agent's inbox), before measuring memory, or in tests that count drops.
    pub fn collect(&self) -> bool {
        let map = &self.inner.map;
        // Each pass pins afresh (a pin held across would stall the epoch itself), advances the
        // epoch if every pinned thread allows and runs up to a few expired batches, ours or
        // anyone's (the collector's queue is first in, first out). Done when every list handed
        // over so far has run: counts, so exact only when they are equal (jobs can finish out
        // of order), which is why it waits for all of them rather than for the first `n`.
        self.inner.collect_passes(|guard, pass| {
            if pass == 0 {
                map.hand_over_removed(guard);
            }
            map.removed_lists_freed() >= map.removed_lists_handed()
        })
    }

    /// The number of slots of the current table (for monitoring; the table grows by itself).
    pub fn capacity(&self) -> usize {
        let (guard, _local) = self.inner.pin();
        self.inner.map.capacity(&guard)
    }
}

impl<V: Clone + Send + Sync + 'static> Registry<V> {
    /// The value bound to `name` and its tag, or `None`. Never blocks; the result holds no
    /// guard, so it can be kept across `.await`. A pool's own name has no value (its members
    /// do): [`kind`](Self::kind) says what a name is.
    ///
    /// It clones the value (for an `Arc`, an increment on the value's own cache line, which
    /// threads reading one hot name contend on); [`read`](Self::read) borrows instead.
    // Always inlined, the guard kept in registers: BENCHMARKS.md, "The read path".
    #[inline(always)]
    pub fn get(&self, name: &str) -> Option<Entry<V>> {
        self.read(name, |e| e.to_entry())
    }

    /// The value bound to `name` only if the binding still carries `tag` (a fenced read).
    pub fn get_if(&self, name: &str, tag: Tag) -> Option<V> {
        self.pin()
            .get(name)
            .filter(|e| e.tag() == tag)
            .map(|e| e.value().clone())
    }

    /// Unbinds `name` only if it still carries `tag`: one compare-and-swap. This is the
    /// identity-safe removal (a late destructor of an old instance can never remove a newer
    /// binding of the same name, even one of the same instance, because generations differ).
    ///
    /// Returns the removed entry, or [`Error::NotFound`] if the name is not bound, or
    /// [`Error::TagMismatch`] with the current tag if it is bound to another binding. Nothing
    /// is changed on error.
    pub fn unregister_if_same(&self, name: &str, tag: Tag) -> Result<Entry<V>, Error> {
        self.pin()
            .unregister_if_same(name, tag)
            .map(|e| e.to_entry())
    }

    /// Unbinds `name` whatever it is bound to, returning the removed entry. **Not
    /// identity-safe**: it can remove a binding made after you last looked (the MARSYS race).
    /// Prefer [`unregister_if_same`](Self::unregister_if_same) or dropping the
    /// [`Registration`].
    pub fn unregister(&self, name: &str) -> Result<Entry<V>, Error> {
        self.pin().unregister(name).map(|e| e.to_entry())
    }

    /// Every binding: `(name, entry)` pairs sorted by name, each name once; weakly consistent
    /// (see the crate docs), not a snapshot at one instant.
    pub fn entries(&self) -> Vec<(String, Entry<V>)> {
        let mut all: Vec<(String, Entry<V>)> = self
            .pin()
            .iter()
            .map(|e| (e.name().to_owned(), e.to_entry()))
            .collect();
        // Names are unique in a walk (see the crate docs).
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

impl<T: ?Sized + Send + Sync + 'static> Registry<Arc<T>> {
    /// Binds `name` without keeping `owner` alive (MARSYS's weak references). Once every
    /// strong reference to the owner is dropped the binding is invisible to every read, never
    /// blocks a new registration of the name, and is purged identity-safely by the next read
    /// or write that meets it, or by the next migration of the table.
    ///
    /// A replacement of a weak binding ([`Registration::replace`],
    /// [`replace_if_same`](Self::replace_if_same)) stays weak: the registry keeps only a weak
    /// reference to the new value, so keep a strong one yourself (pass a clone).
    pub fn register_weak(
        &self,
        name: &str,
        owner: &Arc<T>,
    ) -> Result<Registration<Arc<T>>, Rejected<Arc<T>>> {
        self.register_weak_as(name, InstanceId::fresh(), owner)
    }

    /// [`register_weak`](Self::register_weak) with an instance id of the caller's (as
    /// [`register_as`](Self::register_as)), so that [`unregister_instance`] and
    /// [`ensure_registered_weak`](Self::ensure_registered_weak) recognise the object.
    ///
    /// [`unregister_instance`]: Self::unregister_instance
    pub fn register_weak_as(
        &self,
        name: &str,
        instance: InstanceId,
        owner: &Arc<T>,
    ) -> Result<Registration<Arc<T>>, Rejected<Arc<T>>> {
        self.register_weak_with(name, instance, owner, Extra::default())
    }

    /// [`register_weak_as`](Self::register_weak_as), with metadata, a liveness cell or
    /// neither.
    pub(crate) fn register_weak_with(
        &self,
        name: &str,
        instance: InstanceId,
        owner: &Arc<T>,
        extra: Extra,
    ) -> Result<Registration<Arc<T>>, Rejected<Arc<T>>> {
        self.inner.map.note_mortal();
        let weak: Box<dyn WeakRef<Arc<T>>> = Box::new(Arc::downgrade(owner));
        self.pin()
            .register_stored(name, instance, Stored::Weak(weak), extra)
            .map_err(|(e, _)| Rejected::new(e, Arc::clone(owner)))
    }

    /// Idempotent weak registration (as [`ensure_registered`](Self::ensure_registered)): binds
    /// `owner` weakly if the name is free; if the name is already bound to `instance`, returns
    /// the existing tag and creates no second owner; if it is bound to another instance,
    /// refuses. (A dead weak binding of the name counts as free.)
    pub fn ensure_registered_weak(
        &self,
        name: &str,
        instance: InstanceId,
        owner: &Arc<T>,
    ) -> Result<Ensured<Arc<T>>, Rejected<Arc<T>>> {
        Ensured::from_registration(self.register_weak_as(name, instance, owner), instance)
    }
}

impl<V> fmt::Debug for Registry<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("len", &self.inner.map.len())
            .finish_non_exhaustive()
    }
}

/// An owned binding: its tag and a clone of its value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Entry<V> {
    pub(crate) tag: Tag,
    pub(crate) value: V,
}

impl<V> Entry<V> {
    /// The binding's tag.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// The value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// The value, by move.
    pub fn into_value(self) -> V {
        self.value
    }
}

impl<V> std::ops::Deref for Entry<V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.value
    }
}

impl<V: fmt::Debug> fmt::Debug for Entry<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("tag", &self.tag)
            .field("value", &self.value)
            .finish()
    }
}

impl<'g, V: Clone> EntryRef<'g, V> {
    /// An owned copy (clones the value).
    pub fn to_entry(&self) -> Entry<V> {
        Entry {
            tag: self.tag(),
            value: self.value().clone(),
        }
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync + 'static>() {}
    is::<Registry<Arc<str>>>();
    is::<Registration<Arc<str>>>();
    is::<Entry<Arc<str>>>();
    // A watcher moves into a task or a thread, and so do snapshots and events.
    is::<crate::Watcher<Arc<str>>>();
    is::<crate::Snapshot<Arc<str>>>();
    is::<crate::Event<Arc<str>>>();
}
