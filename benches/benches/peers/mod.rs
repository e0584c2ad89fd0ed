//! Thin adapters that give genreg and every peer map the same *registry* semantics, shared by
//! the criterion benches (`benches/benches/registry.rs`) and the throughput harness
//! (`benches/src/throughput.rs`, which includes this file with `#[path]`).
//!
//! Semantics every adapter implements, each with the peer's own primitives:
//! - `register(name, value)`: insert-if-absent; mints a tag `(instance, generation)` from a
//!   process-wide instance counter and a per-map generation counter (what genreg does), and
//!   returns it, or `None` if the name is bound.
//! - `get(name)`: the tag and an owned clone of the value (the `Registry::get` contract: the
//!   result holds no lock or guard).
//! - `peek(name)`: a borrowed read that copies out the tag and the payload id, no clone.
//! - `unregister_if_same(name, tag)`: the peer's own conditional remove on the tag.
//! - `remove(name)`: the peer's own plain remove by key, whatever is bound (not identity-safe;
//!   for workloads that remove by key: the bustle binary, `benches/src/bustle.rs`).
//! - `replace_if_same(name, tag, value)`: swap the value under a new generation iff the tag
//!   matches.
//! - `for_each`: visit every entry (weakly consistent where the peer is).
//! - `handle()`: the peer's reusable read handle (genreg `Pinned`, papaya's pinned guard, scc
//!   `HashIndex` with one `Guard`, arc-swap's `Cache`); peers without one get [`PerCall`].
//!
//! Every peer hashes with foldhash (what genreg uses), so that the comparison is of data
//! structures, not of hash functions (SipHash alone costs ~30 ns here).
#![allow(dead_code)]

use std::borrow::Borrow;
use std::cell::{RefCell, UnsafeCell};
use std::collections::HashMap as StdHashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use foldhash::fast::RandomState as Fold;

/// What a name is bound to: an `Arc` of a small agent-like object. `id` is the name's index,
/// so that every read can be checked against the name it asked for.
#[derive(Debug)]
pub struct Payload {
    pub id: u64,
}

pub type Val = Arc<Payload>;

/// The tag every peer mints, like genreg's `Tag`: `(instance, generation)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PTag {
    pub instance: u64,
    pub generation: u64,
}

/// A per-map generation counter plus genreg's own instance minting (`InstanceId::fresh`, a
/// per-thread block of a process-wide counter): exactly the work genreg does to mint a tag.
#[derive(Default)]
struct Minter(AtomicU64);

impl Minter {
    #[inline]
    fn fresh(&self) -> PTag {
        PTag {
            instance: genreg::InstanceId::fresh().as_raw(),
            generation: self.0.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }
    #[inline]
    fn next_gen(&self, instance: u64) -> PTag {
        PTag {
            instance,
            generation: self.0.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }
}

/// A peer's stored entry.
#[derive(Clone)]
pub struct Bound {
    pub tag: PTag,
    pub val: Val,
}

/// A map with registry semantics. `Tag` is what `register` hands back.
pub trait Peer: Send + Sync + Sized + 'static {
    /// The label in tables, CSV and the chart.
    const NAME: &'static str;
    /// False for the unsynchronised ceiling: the harness runs it on one thread only.
    const CONCURRENT: bool = true;
    /// False when every write copies the whole map (arc-swap): the harness caps sizes.
    const CHEAP_WRITES: bool = true;
    /// Whether `handle()` reuses a guard or cache (otherwise it is [`PerCall`]).
    const HAS_HANDLE: bool = false;
    type Tag: Copy + Eq + Send + Sync + std::fmt::Debug + 'static;
    type Handle<'a>: Handle<Tag = Self::Tag>
    where
        Self: 'a;

    fn with_capacity(names: usize) -> Self;
    fn handle(&self) -> Self::Handle<'_>;
    fn register(&self, name: &str, v: &Val) -> Option<Self::Tag>;
    fn get(&self, name: &str) -> Option<(Self::Tag, Val)>;
    fn peek(&self, name: &str) -> Option<(Self::Tag, u64)>;
    fn unregister_if_same(&self, name: &str, tag: Self::Tag) -> bool;
    /// Unbinds `name` whatever it is bound to; true iff it removed a binding.
    fn remove(&self, name: &str) -> bool;
    fn replace_if_same(&self, name: &str, tag: Self::Tag, v: &Val) -> Option<Self::Tag>;
    /// Calls `f(name_len, payload_id)` for each entry; returns how many.
    fn for_each(&self, f: &mut dyn FnMut(usize, u64)) -> usize;
    /// Registers many names at once (arc-swap overrides it to build one map, not n copies).
    fn bulk_register(&self, items: &mut dyn Iterator<Item = (String, Val)>) -> Vec<Self::Tag> {
        items
            .map(|(n, v)| {
                self.register(&n, &v)
                    .expect("bulk_register: duplicate name")
            })
            .collect()
    }
    /// Unregisters many `(name, tag)` pairs (arc-swap overrides it: one copy, not n).
    /// Returns how many were removed.
    fn bulk_unregister(&self, items: &[(String, Self::Tag)]) -> usize {
        items
            .iter()
            .filter(|(n, t)| self.unregister_if_same(n, *t))
            .count()
    }
    /// Lets deferred reclamation run (before a memory reading).
    fn settle(&self) {}
}

/// Calls `visit::<P>()` for every peer, genreg first, the ceiling last.
pub trait Visit {
    fn visit<P: Peer>(&mut self);
}

pub fn each_peer(v: &mut impl Visit) {
    v.visit::<Genreg>();
    v.visit::<Papaya>();
    v.visit::<SccIndex>();
    v.visit::<SccMap>();
    v.visit::<Dash>();
    v.visit::<RwMap>();
    v.visit::<MutexWeak>();
    v.visit::<ArcSwapMap>();
    v.visit::<Ceiling>();
}

/// Operations through a reusable handle (pinned guard) where the peer has one.
pub trait Handle {
    type Tag: Copy;
    fn peek(&self, name: &str) -> Option<(Self::Tag, u64)>;
    fn register(&self, name: &str, v: &Val) -> Option<Self::Tag>;
    fn unregister_if_same(&self, name: &str, tag: Self::Tag) -> bool;
}

/// The handle of peers that have no reusable guard: every call is a per-call operation.
pub struct PerCall<'a, P>(pub &'a P);

impl<P: Peer> Handle for PerCall<'_, P> {
    type Tag = P::Tag;
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(P::Tag, u64)> {
        self.0.peek(name)
    }
    #[inline]
    fn register(&self, name: &str, v: &Val) -> Option<P::Tag> {
        self.0.register(name, v)
    }
    #[inline]
    fn unregister_if_same(&self, name: &str, tag: P::Tag) -> bool {
        self.0.unregister_if_same(name, tag)
    }
}

// ---------------------------------------------------------------------------------------------
// genreg

/// genreg; `GenregWith<true>` keeps an event log (`Builder::events`, default history, no
/// watcher): the cost of events to a registry nobody watches.
pub struct GenregWith<const EVENTS: bool>(pub genreg::Registry<Val>);

/// genreg as it is built by default (no event log).
pub type Genreg = GenregWith<false>;

impl<const EVENTS: bool> Peer for GenregWith<EVENTS> {
    const NAME: &'static str = if EVENTS { "genreg-events" } else { "genreg" };
    const HAS_HANDLE: bool = true;
    type Tag = genreg::Tag;
    type Handle<'a> = GenregPinned<'a>;

    fn with_capacity(names: usize) -> Self {
        let b = genreg::Registry::builder().capacity(names);
        let b = if EVENTS {
            b.events(genreg::Builder::<Val>::DEFAULT_HISTORY)
        } else {
            b
        };
        GenregWith(b.build())
    }
    fn handle(&self) -> GenregPinned<'_> {
        GenregPinned(self.0.pin())
    }
    #[inline]
    fn register(&self, name: &str, v: &Val) -> Option<genreg::Tag> {
        self.0.register_detached(name, Arc::clone(v)).ok()
    }
    #[inline(always)]
    fn get(&self, name: &str) -> Option<(genreg::Tag, Val)> {
        self.0.get(name).map(|e| (e.tag(), e.into_value()))
    }
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(genreg::Tag, u64)> {
        // The per-call borrowed read users call: `Registry::read`.
        self.0.read(name, |e| (e.tag(), e.value().id))
    }
    #[inline]
    fn unregister_if_same(&self, name: &str, tag: genreg::Tag) -> bool {
        self.0.unregister_if_same(name, tag).is_ok()
    }
    #[inline(always)]
    fn remove(&self, name: &str) -> bool {
        // `Registry::unregister`: what users call (it hands back the removed entry, a clone).
        self.0.unregister(name).is_ok()
    }
    #[inline]
    fn replace_if_same(&self, name: &str, tag: genreg::Tag, v: &Val) -> Option<genreg::Tag> {
        self.0.replace_if_same(name, tag, Arc::clone(v)).ok()
    }
    fn settle(&self) {
        for _ in 0..4 {
            self.0.pin().flush();
        }
    }
    fn for_each(&self, f: &mut dyn FnMut(usize, u64)) -> usize {
        let p = self.0.pin();
        let mut n = 0;
        for e in p.iter() {
            f(e.name().len(), e.value().id);
            n += 1;
        }
        n
    }
}

/// genreg's `Pinned` handle: one epoch guard, borrowed reads.
pub struct GenregPinned<'a>(pub genreg::Pinned<'a, Val>);

impl Handle for GenregPinned<'_> {
    type Tag = genreg::Tag;
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(genreg::Tag, u64)> {
        self.0.get(name).map(|e| (e.tag(), e.value().id))
    }
    #[inline]
    fn register(&self, name: &str, v: &Val) -> Option<genreg::Tag> {
        self.0.register_detached(name, Arc::clone(v)).ok()
    }
    #[inline]
    fn unregister_if_same(&self, name: &str, tag: genreg::Tag) -> bool {
        self.0.unregister_if_same(name, tag).is_ok()
    }
}

// ---------------------------------------------------------------------------------------------
// papaya

pub struct Papaya {
    map: papaya::HashMap<String, Bound, Fold>,
    minter: Minter,
}

impl Peer for Papaya {
    const NAME: &'static str = "papaya";
    const HAS_HANDLE: bool = true;
    type Tag = PTag;
    type Handle<'a> = PapayaPinned<'a>;

    fn with_capacity(names: usize) -> Self {
        Papaya {
            map: papaya::HashMap::with_capacity_and_hasher(names, Fold::default()),
            minter: Minter::default(),
        }
    }
    fn handle(&self) -> PapayaPinned<'_> {
        PapayaPinned {
            map: self.map.pin(),
            minter: &self.minter,
        }
    }
    #[inline]
    fn register(&self, name: &str, v: &Val) -> Option<PTag> {
        papaya_register(&self.map.pin(), &self.minter, name, v)
    }
    #[inline(always)]
    fn get(&self, name: &str) -> Option<(PTag, Val)> {
        self.map
            .pin()
            .get(name)
            .map(|b| (b.tag, Arc::clone(&b.val)))
    }
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(PTag, u64)> {
        self.map.pin().get(name).map(|b| (b.tag, b.val.id))
    }
    #[inline]
    fn unregister_if_same(&self, name: &str, tag: PTag) -> bool {
        papaya_remove(&self.map.pin(), name, tag)
    }
    #[inline(always)]
    fn remove(&self, name: &str) -> bool {
        self.map.pin().remove(name).is_some()
    }
    fn replace_if_same(&self, name: &str, tag: PTag, v: &Val) -> Option<PTag> {
        let new = self.minter.next_gen(tag.instance);
        let m = self.map.pin();
        // `compute` takes an owned key: one allocation per call (papaya's API).
        match m.compute(name.to_owned(), |cur| match cur {
            Some((_, b)) if b.tag == tag => papaya::Operation::Insert(Bound {
                tag: new,
                val: Arc::clone(v),
            }),
            _ => papaya::Operation::Abort(()),
        }) {
            papaya::Compute::Updated { .. } => Some(new),
            _ => None,
        }
    }
    fn for_each(&self, f: &mut dyn FnMut(usize, u64)) -> usize {
        let m = self.map.pin();
        let mut n = 0;
        for (k, b) in m.iter() {
            f(k.len(), b.val.id);
            n += 1;
        }
        n
    }
}

type PapayaRef<'a> = papaya::HashMapRef<'a, String, Bound, Fold, papaya::LocalGuard<'a>>;

#[inline]
fn papaya_register(m: &PapayaRef<'_>, minter: &Minter, name: &str, v: &Val) -> Option<PTag> {
    let tag = minter.fresh();
    m.try_insert(
        name.to_owned(),
        Bound {
            tag,
            val: Arc::clone(v),
        },
    )
    .ok()
    .map(|_| tag)
}

#[inline]
fn papaya_remove(m: &PapayaRef<'_>, name: &str, tag: PTag) -> bool {
    matches!(m.remove_if(name, |_, b| b.tag == tag), Ok(Some(_)))
}

/// papaya with its guard reused.
pub struct PapayaPinned<'a> {
    map: PapayaRef<'a>,
    minter: &'a Minter,
}

impl Handle for PapayaPinned<'_> {
    type Tag = PTag;
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(PTag, u64)> {
        self.map.get(name).map(|b| (b.tag, b.val.id))
    }
    #[inline]
    fn register(&self, name: &str, v: &Val) -> Option<PTag> {
        papaya_register(&self.map, self.minter, name, v)
    }
    #[inline]
    fn unregister_if_same(&self, name: &str, tag: PTag) -> bool {
        papaya_remove(&self.map, name, tag)
    }
}

// ---------------------------------------------------------------------------------------------
// scc HashIndex (lock-free reads)

pub struct SccIndex {
    map: scc::HashIndex<String, Bound, Fold>,
    minter: Minter,
}

impl Peer for SccIndex {
    const NAME: &'static str = "scc-HashIndex";
    const HAS_HANDLE: bool = true;
    type Tag = PTag;
    type Handle<'a> = SccIndexGuarded<'a>;

    fn with_capacity(names: usize) -> Self {
        SccIndex {
            map: scc::HashIndex::with_capacity_and_hasher(names, Fold::default()),
            minter: Minter::default(),
        }
    }
    fn handle(&self) -> SccIndexGuarded<'_> {
        SccIndexGuarded {
            peer: self,
            guard: scc::Guard::new(),
        }
    }
    #[inline]
    fn register(&self, name: &str, v: &Val) -> Option<PTag> {
        let tag = self.minter.fresh();
        self.map
            .insert_sync(
                name.to_owned(),
                Bound {
                    tag,
                    val: Arc::clone(v),
                },
            )
            .ok()
            .map(|_| tag)
    }
    #[inline(always)]
    fn get(&self, name: &str) -> Option<(PTag, Val)> {
        self.map.peek_with(name, |_, b| (b.tag, Arc::clone(&b.val)))
    }
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(PTag, u64)> {
        self.map.peek_with(name, |_, b| (b.tag, b.val.id))
    }
    #[inline]
    fn unregister_if_same(&self, name: &str, tag: PTag) -> bool {
        self.map.remove_if_sync(name, |b| b.tag == tag)
    }
    #[inline(always)]
    fn remove(&self, name: &str) -> bool {
        self.map.remove_sync(name)
    }
    fn replace_if_same(&self, name: &str, tag: PTag, v: &Val) -> Option<PTag> {
        let mut e = self.map.get_sync(name)?;
        if e.get().tag != tag {
            return None;
        }
        let new = self.minter.next_gen(tag.instance);
        e.update(Bound {
            tag: new,
            val: Arc::clone(v),
        });
        Some(new)
    }
    fn for_each(&self, f: &mut dyn FnMut(usize, u64)) -> usize {
        let guard = scc::Guard::new();
        let mut n = 0;
        for (k, b) in self.map.iter(&guard) {
            f(k.len(), b.val.id);
            n += 1;
        }
        n
    }
}

/// scc `HashIndex` with one `Guard` reused for reads.
pub struct SccIndexGuarded<'a> {
    peer: &'a SccIndex,
    guard: scc::Guard,
}

impl Handle for SccIndexGuarded<'_> {
    type Tag = PTag;
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(PTag, u64)> {
        self.peer
            .map
            .peek(name, &self.guard)
            .map(|b| (b.tag, b.val.id))
    }
    #[inline]
    fn register(&self, name: &str, v: &Val) -> Option<PTag> {
        self.peer.register(name, v)
    }
    #[inline]
    fn unregister_if_same(&self, name: &str, tag: PTag) -> bool {
        self.peer.unregister_if_same(name, tag)
    }
}

// ---------------------------------------------------------------------------------------------
// scc HashMap (a read-write lock per bucket)

pub struct SccMap {
    map: scc::HashMap<String, Bound, Fold>,
    minter: Minter,
}

impl Peer for SccMap {
    const NAME: &'static str = "scc-HashMap";
    type Tag = PTag;
    type Handle<'a> = PerCall<'a, Self>;

    fn with_capacity(names: usize) -> Self {
        SccMap {
            map: scc::HashMap::with_capacity_and_hasher(names, Fold::default()),
            minter: Minter::default(),
        }
    }
    fn handle(&self) -> PerCall<'_, Self> {
        PerCall(self)
    }
    #[inline]
    fn register(&self, name: &str, v: &Val) -> Option<PTag> {
        let tag = self.minter.fresh();
        self.map
            .insert_sync(
                name.to_owned(),
                Bound {
                    tag,
                    val: Arc::clone(v),
                },
            )
            .ok()
            .map(|_| tag)
    }
    #[inline(always)]
    fn get(&self, name: &str) -> Option<(PTag, Val)> {
        self.map.read_sync(name, |_, b| (b.tag, Arc::clone(&b.val)))
    }
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(PTag, u64)> {
        self.map.read_sync(name, |_, b| (b.tag, b.val.id))
    }
    #[inline]
    fn unregister_if_same(&self, name: &str, tag: PTag) -> bool {
        self.map.remove_if_sync(name, |b| b.tag == tag).is_some()
    }
    #[inline(always)]
    fn remove(&self, name: &str) -> bool {
        self.map.remove_sync(name).is_some()
    }
    fn replace_if_same(&self, name: &str, tag: PTag, v: &Val) -> Option<PTag> {
        self.map
            .update_sync(name, |_, b| {
                if b.tag != tag {
                    return None;
                }
                let new = self.minter.next_gen(tag.instance);
                *b = Bound {
                    tag: new,
                    val: Arc::clone(v),
                };
                Some(new)
            })
            .flatten()
    }
    fn for_each(&self, f: &mut dyn FnMut(usize, u64)) -> usize {
        let mut n = 0;
        self.map.iter_sync(|k, b| {
            f(k.len(), b.val.id);
            n += 1;
            true
        });
        n
    }
}

// ---------------------------------------------------------------------------------------------
// dashmap

pub struct Dash {
    map: dashmap::DashMap<String, Bound, Fold>,
    minter: Minter,
}

impl Peer for Dash {
    const NAME: &'static str = "dashmap";
    type Tag = PTag;
    type Handle<'a> = PerCall<'a, Self>;

    fn with_capacity(names: usize) -> Self {
        Dash {
            map: dashmap::DashMap::with_capacity_and_hasher(names, Fold::default()),
            minter: Minter::default(),
        }
    }
    fn handle(&self) -> PerCall<'_, Self> {
        PerCall(self)
    }
    #[inline]
    fn register(&self, name: &str, v: &Val) -> Option<PTag> {
        // The entry API takes an owned key: one allocation even when the name is taken.
        match self.map.entry(name.to_owned()) {
            dashmap::Entry::Occupied(_) => None,
            dashmap::Entry::Vacant(e) => {
                let tag = self.minter.fresh();
                e.insert(Bound {
                    tag,
                    val: Arc::clone(v),
                });
                Some(tag)
            }
        }
    }
    #[inline(always)]
    fn get(&self, name: &str) -> Option<(PTag, Val)> {
        self.map.get(name).map(|b| (b.tag, Arc::clone(&b.val)))
    }
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(PTag, u64)> {
        self.map.get(name).map(|b| (b.tag, b.val.id))
    }
    #[inline]
    fn unregister_if_same(&self, name: &str, tag: PTag) -> bool {
        self.map.remove_if(name, |_, b| b.tag == tag).is_some()
    }
    #[inline(always)]
    fn remove(&self, name: &str) -> bool {
        self.map.remove(name).is_some()
    }
    fn replace_if_same(&self, name: &str, tag: PTag, v: &Val) -> Option<PTag> {
        let mut b = self.map.get_mut(name)?;
        if b.tag != tag {
            return None;
        }
        let new = self.minter.next_gen(tag.instance);
        *b = Bound {
            tag: new,
            val: Arc::clone(v),
        };
        Some(new)
    }
    fn for_each(&self, f: &mut dyn FnMut(usize, u64)) -> usize {
        let mut n = 0;
        for r in self.map.iter() {
            f(r.key().len(), r.value().val.id);
            n += 1;
        }
        n
    }
}

// ---------------------------------------------------------------------------------------------
// std RwLock<HashMap>

pub struct RwMap {
    map: RwLock<StdHashMap<String, Bound, Fold>>,
    minter: Minter,
}

impl Peer for RwMap {
    const NAME: &'static str = "RwLock<HashMap>";
    type Tag = PTag;
    type Handle<'a> = PerCall<'a, Self>;

    fn with_capacity(names: usize) -> Self {
        RwMap {
            map: RwLock::new(StdHashMap::with_capacity_and_hasher(names, Fold::default())),
            minter: Minter::default(),
        }
    }
    fn handle(&self) -> PerCall<'_, Self> {
        PerCall(self)
    }
    #[inline]
    fn register(&self, name: &str, v: &Val) -> Option<PTag> {
        let mut m = self.map.write().unwrap();
        if m.contains_key(name) {
            return None;
        }
        let tag = self.minter.fresh();
        m.insert(
            name.to_owned(),
            Bound {
                tag,
                val: Arc::clone(v),
            },
        );
        Some(tag)
    }
    #[inline(always)]
    fn get(&self, name: &str) -> Option<(PTag, Val)> {
        let m = self.map.read().unwrap();
        m.get(name).map(|b| (b.tag, Arc::clone(&b.val)))
    }
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(PTag, u64)> {
        let m = self.map.read().unwrap();
        m.get(name).map(|b| (b.tag, b.val.id))
    }
    #[inline]
    fn unregister_if_same(&self, name: &str, tag: PTag) -> bool {
        let mut m = self.map.write().unwrap();
        match m.get(name) {
            Some(b) if b.tag == tag => m.remove(name).is_some(),
            _ => false,
        }
    }
    #[inline(always)]
    fn remove(&self, name: &str) -> bool {
        self.map.write().unwrap().remove(name).is_some()
    }
    fn replace_if_same(&self, name: &str, tag: PTag, v: &Val) -> Option<PTag> {
        let mut m = self.map.write().unwrap();
        let b = m.get_mut(name)?;
        if b.tag != tag {
            return None;
        }
        let new = self.minter.next_gen(tag.instance);
        *b = Bound {
            tag: new,
            val: Arc::clone(v),
        };
        Some(new)
    }
    fn for_each(&self, f: &mut dyn FnMut(usize, u64)) -> usize {
        let m = self.map.read().unwrap();
        for (k, b) in m.iter() {
            f(k.len(), b.val.id);
        }
        m.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Mutex<HashMap<_, Weak>>: the MARSYS design (a WeakValueDictionary behind one lock)

pub struct MutexWeak {
    map: Mutex<StdHashMap<String, (PTag, Weak<Payload>), Fold>>,
    minter: Minter,
}

impl Peer for MutexWeak {
    const NAME: &'static str = "Mutex<HashMap<Weak>>";
    type Tag = PTag;
    type Handle<'a> = PerCall<'a, Self>;

    fn with_capacity(names: usize) -> Self {
        MutexWeak {
            map: Mutex::new(StdHashMap::with_capacity_and_hasher(names, Fold::default())),
            minter: Minter::default(),
        }
    }
    fn handle(&self) -> PerCall<'_, Self> {
        PerCall(self)
    }
    #[inline]
    fn register(&self, name: &str, v: &Val) -> Option<PTag> {
        let mut m = self.map.lock().unwrap();
        let tag = self.minter.fresh();
        match m.get_mut(name) {
            // A dead owner does not block the name (weak-value semantics).
            Some(e) if e.1.strong_count() == 0 => *e = (tag, Arc::downgrade(v)),
            Some(_) => return None,
            None => {
                m.insert(name.to_owned(), (tag, Arc::downgrade(v)));
            }
        }
        Some(tag)
    }
    #[inline(always)]
    fn get(&self, name: &str) -> Option<(PTag, Val)> {
        let m = self.map.lock().unwrap();
        let (tag, w) = m.get(name)?;
        w.upgrade().map(|v| (*tag, v))
    }
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(PTag, u64)> {
        // A weak binding can only be read by upgrading it: the clone is inherent.
        let m = self.map.lock().unwrap();
        let (tag, w) = m.get(name)?;
        w.upgrade().map(|v| (*tag, v.id))
    }
    #[inline]
    fn unregister_if_same(&self, name: &str, tag: PTag) -> bool {
        let mut m = self.map.lock().unwrap();
        match m.get(name) {
            Some((t, _)) if *t == tag => m.remove(name).is_some(),
            _ => false,
        }
    }
    #[inline(always)]
    fn remove(&self, name: &str) -> bool {
        // A dead owner's entry reads as unbound (weak-value semantics): removing it removes
        // nothing that was bound.
        let removed = self.map.lock().unwrap().remove(name);
        removed.is_some_and(|(_, w)| w.strong_count() > 0)
    }
    fn replace_if_same(&self, name: &str, tag: PTag, v: &Val) -> Option<PTag> {
        let mut m = self.map.lock().unwrap();
        let e = m.get_mut(name)?;
        if e.0 != tag {
            return None;
        }
        let new = self.minter.next_gen(tag.instance);
        *e = (new, Arc::downgrade(v));
        Some(new)
    }
    fn for_each(&self, f: &mut dyn FnMut(usize, u64)) -> usize {
        let m = self.map.lock().unwrap();
        let mut n = 0;
        for (k, (_, w)) in m.iter() {
            if let Some(v) = w.upgrade() {
                f(k.len(), v.id);
                n += 1;
            }
        }
        n
    }
}

// ---------------------------------------------------------------------------------------------
// arc-swap over a map: copy-on-write, `rcu` for writes

type CowMap = StdHashMap<String, Bound, Fold>;

pub struct ArcSwapMap {
    map: arc_swap::ArcSwap<CowMap>,
    minter: Minter,
}

impl Peer for ArcSwapMap {
    const NAME: &'static str = "arc-swap<HashMap>";
    const CHEAP_WRITES: bool = false;
    const HAS_HANDLE: bool = true;
    type Tag = PTag;
    type Handle<'a> = ArcSwapCached<'a>;

    fn with_capacity(names: usize) -> Self {
        ArcSwapMap {
            map: arc_swap::ArcSwap::from_pointee(StdHashMap::with_capacity_and_hasher(
                names,
                Fold::default(),
            )),
            minter: Minter::default(),
        }
    }
    fn handle(&self) -> ArcSwapCached<'_> {
        ArcSwapCached {
            peer: self,
            cache: RefCell::new(arc_swap::Cache::new(&self.map)),
        }
    }
    fn register(&self, name: &str, v: &Val) -> Option<PTag> {
        if self.map.load().contains_key(name) {
            return None;
        }
        let tag = self.minter.fresh();
        let mut won = false;
        self.map.rcu(|m| {
            if m.contains_key(name) {
                won = false;
                return Arc::clone(m);
            }
            let mut copy = CowMap::clone(m);
            copy.insert(
                name.to_owned(),
                Bound {
                    tag,
                    val: Arc::clone(v),
                },
            );
            won = true;
            Arc::new(copy)
        });
        won.then_some(tag)
    }
    #[inline(always)]
    fn get(&self, name: &str) -> Option<(PTag, Val)> {
        self.map
            .load()
            .get(name)
            .map(|b| (b.tag, Arc::clone(&b.val)))
    }
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(PTag, u64)> {
        self.map.load().get(name).map(|b| (b.tag, b.val.id))
    }
    fn unregister_if_same(&self, name: &str, tag: PTag) -> bool {
        if !matches!(self.map.load().get(name), Some(b) if b.tag == tag) {
            return false;
        }
        let mut won = false;
        self.map.rcu(|m| match m.get(name) {
            Some(b) if b.tag == tag => {
                let mut copy = CowMap::clone(m);
                copy.remove(name);
                won = true;
                Arc::new(copy)
            }
            _ => {
                won = false;
                Arc::clone(m)
            }
        });
        won
    }
    #[inline(always)]
    fn remove(&self, name: &str) -> bool {
        if !self.map.load().contains_key(name) {
            return false;
        }
        let mut won = false;
        self.map.rcu(|m| {
            won = m.contains_key(name);
            if !won {
                return Arc::clone(m);
            }
            let mut copy = CowMap::clone(m);
            copy.remove(name);
            Arc::new(copy)
        });
        won
    }
    fn replace_if_same(&self, name: &str, tag: PTag, v: &Val) -> Option<PTag> {
        if !matches!(self.map.load().get(name), Some(b) if b.tag == tag) {
            return None;
        }
        let new = self.minter.next_gen(tag.instance);
        let mut won = false;
        self.map.rcu(|m| match m.get(name) {
            Some(b) if b.tag == tag => {
                let mut copy = CowMap::clone(m);
                copy.insert(
                    name.to_owned(),
                    Bound {
                        tag: new,
                        val: Arc::clone(v),
                    },
                );
                won = true;
                Arc::new(copy)
            }
            _ => {
                won = false;
                Arc::clone(m)
            }
        });
        won.then_some(new)
    }
    fn for_each(&self, f: &mut dyn FnMut(usize, u64)) -> usize {
        let m = self.map.load();
        for (k, b) in m.iter() {
            f(k.len(), b.val.id);
        }
        m.len()
    }
    fn bulk_register(&self, items: &mut dyn Iterator<Item = (String, Val)>) -> Vec<PTag> {
        // One copy for the whole batch (registering 1M names one `rcu` at a time is O(n²)).
        let mut copy = CowMap::clone(&self.map.load());
        let mut tags = Vec::new();
        for (n, v) in items {
            let tag = self.minter.fresh();
            assert!(copy.insert(n, Bound { tag, val: v }).is_none(), "duplicate");
            tags.push(tag);
        }
        self.map.store(Arc::new(copy));
        tags
    }
    fn bulk_unregister(&self, items: &[(String, PTag)]) -> usize {
        let mut removed = 0;
        self.map.rcu(|m| {
            let mut copy = CowMap::clone(m);
            removed = 0;
            for (n, t) in items {
                if matches!(copy.get(n.as_str()), Some(b) if b.tag == *t) {
                    copy.remove(n.as_str());
                    removed += 1;
                }
            }
            Arc::new(copy)
        });
        removed
    }
}

/// arc-swap's `Cache`: reads check one pointer instead of taking a debt slot.
pub struct ArcSwapCached<'a> {
    peer: &'a ArcSwapMap,
    cache: RefCell<arc_swap::Cache<&'a arc_swap::ArcSwap<CowMap>, Arc<CowMap>>>,
}

impl Handle for ArcSwapCached<'_> {
    type Tag = PTag;
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(PTag, u64)> {
        let mut c = self.cache.borrow_mut();
        c.load().get(name).map(|b| (b.tag, b.val.id))
    }
    fn register(&self, name: &str, v: &Val) -> Option<PTag> {
        self.peer.register(name, v)
    }
    fn unregister_if_same(&self, name: &str, tag: PTag) -> bool {
        self.peer.unregister_if_same(name, tag)
    }
}

// ---------------------------------------------------------------------------------------------
// The ceiling: no synchronisation at all, names inline like genreg's nodes. One thread only.

/// A name stored like genreg's `NameBuf`: inline up to 22 bytes, boxed beyond.
#[derive(Clone, PartialEq, Eq)]
pub enum InlineKey {
    Inline { len: u8, bytes: [u8; 22] },
    Heap(Box<str>),
}

impl InlineKey {
    pub fn new(s: &str) -> Self {
        if s.len() <= 22 {
            let mut bytes = [0u8; 22];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            InlineKey::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            InlineKey::Heap(s.into())
        }
    }
    #[inline]
    pub fn as_str(&self) -> &str {
        match self {
            // SAFETY: copied from a `&str` in `new`.
            InlineKey::Inline { len, bytes } => unsafe {
                std::str::from_utf8_unchecked(&bytes[..usize::from(*len)])
            },
            InlineKey::Heap(s) => s,
        }
    }
}

impl Hash for InlineKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // Must agree with `str`'s hash, for `Borrow<str>` lookups.
        self.as_str().hash(h)
    }
}

impl Borrow<str> for InlineKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

pub struct Ceiling {
    map: UnsafeCell<StdHashMap<InlineKey, Bound, Fold>>,
    generation: std::cell::Cell<u64>,
}

// SAFETY: never shared: the harness runs peers with `CONCURRENT == false` on one thread only
// (asserted there), and criterion benches are single-threaded.
unsafe impl Sync for Ceiling {}
// SAFETY: as above (moved between threads only while nobody else holds it).
unsafe impl Send for Ceiling {}

impl Ceiling {
    #[allow(clippy::mut_from_ref)]
    #[inline]
    fn m(&self) -> &mut StdHashMap<InlineKey, Bound, Fold> {
        // SAFETY: single-threaded use only (see the `Sync` impl), and no reference handed out
        // by one call outlives it.
        unsafe { &mut *self.map.get() }
    }
    #[inline]
    fn mint(&self, instance: u64) -> PTag {
        let g = self.generation.get() + 1;
        self.generation.set(g);
        PTag {
            instance,
            generation: g,
        }
    }
}

impl Peer for Ceiling {
    const NAME: &'static str = "ceiling (unsync, inline keys)";
    const CONCURRENT: bool = false;
    type Tag = PTag;
    type Handle<'a> = PerCall<'a, Self>;

    fn with_capacity(names: usize) -> Self {
        Ceiling {
            map: UnsafeCell::new(StdHashMap::with_capacity_and_hasher(names, Fold::default())),
            generation: std::cell::Cell::new(0),
        }
    }
    fn handle(&self) -> PerCall<'_, Self> {
        PerCall(self)
    }
    #[inline]
    fn register(&self, name: &str, v: &Val) -> Option<PTag> {
        let m = self.m();
        if m.contains_key(name) {
            return None;
        }
        let tag = self.mint(genreg::InstanceId::fresh().as_raw());
        m.insert(
            InlineKey::new(name),
            Bound {
                tag,
                val: Arc::clone(v),
            },
        );
        Some(tag)
    }
    #[inline(always)]
    fn get(&self, name: &str) -> Option<(PTag, Val)> {
        self.m().get(name).map(|b| (b.tag, Arc::clone(&b.val)))
    }
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(PTag, u64)> {
        self.m().get(name).map(|b| (b.tag, b.val.id))
    }
    #[inline]
    fn unregister_if_same(&self, name: &str, tag: PTag) -> bool {
        let m = self.m();
        match m.get(name) {
            Some(b) if b.tag == tag => m.remove(name).is_some(),
            _ => false,
        }
    }
    #[inline(always)]
    fn remove(&self, name: &str) -> bool {
        self.m().remove(name).is_some()
    }
    fn replace_if_same(&self, name: &str, tag: PTag, v: &Val) -> Option<PTag> {
        let new = self.mint(tag.instance);
        let b = self.m().get_mut(name)?;
        if b.tag != tag {
            return None;
        }
        *b = Bound {
            tag: new,
            val: Arc::clone(v),
        };
        Some(new)
    }
    fn for_each(&self, f: &mut dyn FnMut(usize, u64)) -> usize {
        let m = self.m();
        for (k, b) in m.iter() {
            f(k.as_str().len(), b.val.id);
        }
        m.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Names and key streams shared by benches and harness

/// Writes the name of index `i` into `buf` (`len` bytes, 8..=64). Names of 16 bytes and more
/// are `"agent-"` (`"ghost-"` for names never registered, used for misses), ten hex digits of
/// `i` (lowest first), then padding drawn from a scramble of `i`; shorter names are `'a'`/`'g'`
/// and `len - 1` hex digits. Distinct indices give distinct names (for `i < 2^28`). Cheap
/// enough (a few ns) to build in a timed loop.
#[inline]
pub fn name_into(buf: &mut [u8; 64], i: u64, len: usize, miss: bool) -> &str {
    assert!((8..=64).contains(&len));
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let p = if len >= 16 {
        buf[..6].copy_from_slice(if miss { b"ghost-" } else { b"agent-" });
        6
    } else {
        buf[0] = if miss { b'g' } else { b'a' };
        1
    };
    let digits = (len - p).min(10);
    for k in 0..digits {
        buf[p + k] = HEX[((i >> (4 * k)) & 0xF) as usize];
    }
    let scramble = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for k in p + digits..len {
        buf[k] = HEX[((scramble >> (4 * (k % 16))) & 0xF) as usize];
    }
    // SAFETY: ASCII only.
    unsafe { std::str::from_utf8_unchecked(&buf[..len]) }
}

/// An owned name (for registration and arenas).
pub fn name(i: u64, len: usize) -> String {
    let mut b = [0u8; 64];
    name_into(&mut b, i, len, false).to_owned()
}

/// A name that is never registered.
pub fn miss_name(i: u64, len: usize) -> String {
    let mut b = [0u8; 64];
    name_into(&mut b, i, len, true).to_owned()
}

/// Names laid out contiguously, in lookup order, so that reading the query name is a
/// sequential (prefetched) access and only the map's own accesses are random.
pub struct Arena {
    buf: Vec<u8>,
    ends: Vec<u32>,
}

impl Arena {
    pub fn new(names: impl Iterator<Item = String>) -> Arena {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for n in names {
            buf.extend_from_slice(n.as_bytes());
            ends.push(buf.len() as u32);
        }
        Arena { buf, ends }
    }
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    #[inline]
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        // SAFETY: built from `String`s, split at their boundaries.
        unsafe { std::str::from_utf8_unchecked(&self.buf[start..self.ends[i] as usize]) }
    }
}

/// xorshift64*: a tiny deterministic generator (benchmarks need repeatable streams, not
/// statistical quality).
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }
    #[inline]
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A shuffled permutation of `0..n` (Fisher-Yates).
pub fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    let mut r = Rng(seed | 1);
    for i in (1..n).rev() {
        let j = r.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

/// Zipf(s) over ranks `0..n` by rejection-inversion (Hörmann & Derflinger 1996), the method
/// of `rand_distr::Zipf`, written out here to avoid a dependency. O(1) per draw.
pub struct Zipf {
    n: f64,
    s: f64,
    h_x1: f64,
    h_n: f64,
    q: f64,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Zipf {
        assert!(n >= 1 && s > 0.0);
        let n = n as f64;
        let q = if s == 1.0 { 0.0 } else { 1.0 - s };
        let mut z = Zipf {
            n,
            s,
            h_x1: 0.0,
            h_n: 0.0,
            q,
        };
        z.h_x1 = z.h(1.5) - 1.0;
        z.h_n = z.h(n + 0.5);
        z
    }
    fn h(&self, x: f64) -> f64 {
        if self.s == 1.0 {
            x.ln()
        } else {
            x.powf(self.q) / self.q
        }
    }
    fn h_inv(&self, x: f64) -> f64 {
        if self.s == 1.0 {
            x.exp()
        } else {
            (x * self.q).powf(1.0 / self.q)
        }
    }
    /// A rank in `0..n`, rank 0 the most frequent.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_n + rng.f64() * (self.h_x1 - self.h_n);
            let x = self.h_inv(u);
            let k = x.round().clamp(1.0, self.n);
            if k - x <= self.s || u >= self.h(k + 0.5) - (-k.ln() * self.s).exp() {
                return k as u64 - 1;
            }
        }
    }
}

/// The machine line the harnesses print above their tables: the CPU's model, the threads
/// available and the compiler.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let n = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cpu}, {n} threads available, {rustc}")
}
