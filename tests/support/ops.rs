//! The one operation enum and sequential model, shared by the property tests (`tests/model.rs`),
//! the corpus replay (`tests/fuzz_replay.rs`) and both fuzz targets (`fuzz/fuzz_targets/`).
//!
//! Included with `#[path]`, so it may depend only on `genreg`, `std` and `arbitrary`.
//!
//! - [`Op`]: every public operation of the registry, its guards and its pinned handles, with
//!   names from a tiny colliding name space plus invalid and edge-case names.
//! - [`Model`]: a plain `BTreeMap<String, (Tag, value)>`. The registry mints tags, so the model
//!   learns each new tag from the registry's result and checks it (generation strictly above
//!   every generation seen, instance as expected).
//! - [`Harness`] / [`apply`] / [`check_invariants`]: run an op against both and assert that the
//!   results agree exactly.
//! - [`ConcurrentInput`] / [`run_concurrent`]: the same ops split across 2-4 threads on one
//!   registry, each result logged, then checked for consistency after the join.
//!
//! Split in three files: this one (the inputs: ops, names, tags, decoding), `sequential.rs` (the
//! model and the differential harness) and `concurrent.rs` (threads and the consistency check).
#![allow(dead_code, unused_imports)]

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use std::time::Duration;

use genreg::liveness::ManualClock;
use genreg::{
    Entry, EntryRef, Error, Generation, HealthState, InstanceId, InvalidNameReason,
    MAX_AUTO_PREFIX_LEN, MAX_NAME_LEN, Match, Metadata, MetadataError, Reason, Registry, Tag,
};

#[path = "sequential.rs"]
mod sequential;
pub use sequential::*;

#[path = "concurrent.rs"]
mod concurrent;
pub use concurrent::*;

/// The value type: a unique number per operation, behind an `Arc` (weak bindings need one).
pub type V = Arc<u64>;

/// What a successful registration hands back: a guard, or (`register_detached`) just the tag.
pub enum Bound {
    Guard(genreg::Registration<V>),
    Detached(Tag),
}

impl Bound {
    pub fn tag(&self) -> Tag {
        match self {
            Bound::Guard(g) => g.tag(),
            Bound::Detached(t) => *t,
        }
    }
}

impl From<genreg::Registration<V>> for Bound {
    fn from(g: genreg::Registration<V>) -> Bound {
        Bound::Guard(g)
    }
}

impl From<Tag> for Bound {
    fn from(t: Tag) -> Bound {
        Bound::Detached(t)
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// The tiny name space: 4 names, so registrations collide. Two of them are what
/// `register_auto("auto", ..)` produces first, so auto-naming has to skip them.
pub const POOL_NAMES: [&str; 4] = ["a", "b", "auto-1", "auto-2"];

/// Caller-supplied instance ids come from here: far above anything `InstanceId::fresh` mints.
pub const POOL_INSTANCE_BASE: u64 = 1 << 62;
pub const POOL_INSTANCES: u64 = 3;

/// A name: mostly one of [`POOL_NAMES`], sometimes an edge case (invalid or unusual).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct NameSel(pub u8);

impl NameSel {
    pub fn get(self) -> String {
        if self.0 < 208 {
            POOL_NAMES[usize::from(self.0) % POOL_NAMES.len()].to_owned()
        } else {
            edge_name(self.0 - 208)
        }
    }
}

/// Unusual names, valid and invalid.
pub fn edge_name(i: u8) -> String {
    match i % 16 {
        0 => String::new(),                         // empty
        1 => "x".repeat(MAX_NAME_LEN),              // longest valid
        2 => "y".repeat(MAX_NAME_LEN + 1),          // one byte too long
        3 => "é".repeat(MAX_NAME_LEN / 2 + 1),      // 128 chars but 256 bytes: too long
        4 => "a\n".to_owned(),                      // control char at byte 1
        5 => "é\u{85}".to_owned(),                  // C1 control char at byte 2
        6 => "\u{7f}".to_owned(),                   // DEL
        7 => "名前".to_owned(),                     // non-ASCII, valid
        8 => "exactly-23-bytes-name!!".to_owned(),  // the longest inline name
        9 => "exactly-24-bytes-name!!!".to_owned(), // the shortest boxed name
        10 => "h".repeat(100_000),                  // huge
        11 => "a ".to_owned(),                      // not "a"
        12 => "A".to_owned(),                       // not "a"
        13 => "\0".to_owned(),                      // NUL
        14 => "-1".to_owned(),                      // what register_auto("") makes first
        _ => "zé\u{200b}".to_owned(),               // zero-width space: format, not control
    }
}

/// A `register_auto` prefix.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct PrefixSel(pub u8);

impl PrefixSel {
    pub fn get(self) -> String {
        match self.0 % 8 {
            0 | 1 => "auto".to_owned(), // collides with POOL_NAMES
            2 => "p".to_owned(),
            3 => String::new(), // "-1", "-2", ...: valid names
            4 => "a\n".to_owned(),
            // 253 + "-" + 1 digit = 255 bytes (valid); from n = 10 on, too long.
            5 => "x".repeat(MAX_NAME_LEN - 2),
            6 => "z".repeat(300),
            _ => "é".to_owned(),
        }
    }
}

/// A caller-supplied instance id.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum InstSel {
    /// One of a tiny pool, so the same instance re-registers.
    Pool(u8),
    /// The instance of a tag seen before (maybe a fresh one the registry minted).
    Seen(u16),
    /// A brand-new id.
    Fresh,
}

impl InstSel {
    pub fn get(self, seen: &[Tag]) -> InstanceId {
        match self {
            InstSel::Pool(k) => pool_instance(k),
            InstSel::Seen(i) if !seen.is_empty() => seen[usize::from(i) % seen.len()].instance(),
            InstSel::Seen(i) => pool_instance(i as u8),
            InstSel::Fresh => InstanceId::fresh(),
        }
    }
}

pub fn pool_instance(k: u8) -> InstanceId {
    InstanceId::from_raw(POOL_INSTANCE_BASE + u64::from(k) % POOL_INSTANCES)
}

pub(crate) fn is_pool_instance(i: InstanceId) -> bool {
    (POOL_INSTANCE_BASE..POOL_INSTANCE_BASE + POOL_INSTANCES).contains(&i.as_raw())
}

/// The tag presented to a conditional operation.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TagSel {
    /// The name's current tag (or, if unbound, the last tag seen).
    Current,
    /// Any tag seen so far (usually stale).
    Seen(u16),
    /// A made-up tag.
    Forged { instance: u64, generation: u64 },
    /// The current tag with its generation moved by `d` (0: the current tag itself).
    BumpGeneration(i8),
    /// The current tag's generation with another instance (catches "instance not compared").
    OtherInstance(u8),
}

impl TagSel {
    pub fn get(self, current: Option<Tag>, seen: &[Tag]) -> Tag {
        let base = current
            .or_else(|| seen.last().copied())
            .unwrap_or_else(|| Tag::new(InstanceId::from_raw(0), Generation::from_raw(0)));
        match self {
            TagSel::Current => base,
            TagSel::Seen(i) if !seen.is_empty() => seen[usize::from(i) % seen.len()],
            TagSel::Seen(_) => base,
            TagSel::Forged {
                instance,
                generation,
            } => Tag::new(
                InstanceId::from_raw(instance),
                Generation::from_raw(generation),
            ),
            TagSel::BumpGeneration(d) => Tag::new(
                base.instance(),
                Generation::from_raw(base.generation().as_raw().wrapping_add_signed(i64::from(d))),
            ),
            TagSel::OtherInstance(d) => Tag::new(
                InstanceId::from_raw(base.instance().as_raw().wrapping_add(u64::from(d) | 1)),
                base.generation(),
            ),
        }
    }
}

/// Which weak owner to bind.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum OwnerSel {
    New,
    Existing(u8),
}

// ---------------------------------------------------------------------------------------------
// Metadata and queries
// ---------------------------------------------------------------------------------------------

/// The capabilities and kinds metadata is drawn from (few, so that queries match often).
pub const CAPS: [&str; 4] = ["a", "b", "c", "d"];
pub const KINDS: [&str; 2] = ["w", "x"];
pub const REGIONS: [&str; 2] = ["eu", "us"];

/// Metadata: an optional kind, a subset of [`CAPS`], an optional `region` label.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct MetaSel {
    pub kind: u8,
    pub caps: u8,
    pub region: u8,
}

impl MetaSel {
    pub fn get(self) -> Metadata {
        let mut b = Metadata::builder();
        if let Some(k) = (self.kind % 3).checked_sub(1) {
            b = b.kind(KINDS[usize::from(k)]);
        }
        for (i, c) in CAPS.iter().enumerate() {
            if self.caps & (1 << i) != 0 {
                b = b.capability(*c);
            }
        }
        if let Some(r) = (self.region % 3).checked_sub(1) {
            b = b.label("region", REGIONS[usize::from(r)]);
        }
        b.build().expect("valid by construction")
    }
}

/// A capability as a query names it: mostly one of [`CAPS`], sometimes unknown or invalid.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct CapSel(pub u8);

impl CapSel {
    pub fn get(self) -> &'static str {
        match self.0 % 8 {
            i @ 0..=3 => CAPS[usize::from(i)],
            4 => "zz",  // valid, matches nothing
            5 => "",    // invalid: empty
            6 => "b c", // invalid: a space
            _ => "a",
        }
    }

    pub fn valid(self) -> bool {
        !matches!(self.0 % 8, 5 | 6)
    }
}

/// A discovery query.
#[derive(Arbitrary, Debug, Clone)]
pub struct QuerySel {
    pub kind: u8,
    pub all: Vec<CapSel>,
    pub any: Option<Vec<CapSel>>,
    pub region: u8,
    pub prefix: u8,
    pub limit: u8,
    /// `Query::healthy`: only entries whose health is passing or warning.
    pub healthy: bool,
}

impl QuerySel {
    fn kind(&self) -> Option<&'static str> {
        match self.kind % 4 {
            0 | 1 => None,
            2 => Some(KINDS[0]),
            _ => Some(KINDS[1]),
        }
    }

    fn region(&self) -> Option<&'static str> {
        (self.region % 3)
            .checked_sub(1)
            .map(|r| REGIONS[usize::from(r)])
    }

    fn prefix(&self) -> Option<&'static str> {
        match self.prefix % 6 {
            0 | 1 => None,
            2 => Some("a"),
            3 => Some("auto"),
            4 => Some(""),
            _ => Some("a\n"), // invalid: a control character
        }
    }

    fn limit(&self) -> usize {
        match self.limit % 4 {
            0 => 1,
            1 => 2,
            _ => usize::MAX,
        }
    }

    fn all(&self) -> impl Iterator<Item = CapSel> + '_ {
        self.all.iter().take(3).copied()
    }

    fn any(&self) -> Option<impl Iterator<Item = CapSel> + '_> {
        self.any.as_ref().map(|a| a.iter().take(3).copied())
    }

    /// Runs the query on `reg`.
    pub fn run(&self, reg: &Registry<V>) -> Result<Vec<Match<V>>, MetadataError> {
        let mut q = reg.find().limit(self.limit());
        if let Some(k) = self.kind() {
            q = q.kind(k);
        }
        q = q.all_capabilities(self.all().map(CapSel::get));
        if let Some(any) = self.any() {
            q = q.any_capability(any.map(CapSel::get));
        }
        if let Some(r) = self.region() {
            q = q.label("region", r);
        }
        if let Some(p) = self.prefix() {
            q = q.prefix(p);
        }
        if self.healthy {
            q = q.healthy();
        }
        q.run()
    }

    /// Whether the registry must refuse it (an invalid term).
    pub fn invalid(&self) -> bool {
        self.all().any(|c| !c.valid())
            || self.any().is_some_and(|mut a| a.any(|c| !c.valid()))
            || self.prefix() == Some("a\n")
    }

    /// Whether a binding named `name` with `meta` matches (for a valid query).
    pub fn accepts(&self, name: &str, meta: &Metadata) -> bool {
        self.kind().is_none_or(|k| meta.kind() == Some(k))
            && self.all().all(|c| meta.has_capability(c.get()))
            && self
                .any()
                .is_none_or(|mut a| a.any(|c| meta.has_capability(c.get())))
            && self
                .region()
                .is_none_or(|r| meta.label("region") == Some(r))
            && self.prefix().is_none_or(|p| name.starts_with(p))
    }

    /// The most results it may return.
    pub fn max(&self) -> usize {
        self.limit()
    }
}

/// `best_match` over up to three capabilities.
pub fn best_match(reg: &Registry<V>, caps: &[CapSel]) -> Result<Option<Match<V>>, MetadataError> {
    let caps: Vec<&str> = caps.iter().take(3).map(|c| c.get()).collect();
    reg.best_match(&caps)
}

/// How many of `caps` (up to three) `meta` has.
pub fn score(meta: &Metadata, caps: &[CapSel]) -> usize {
    caps.iter()
        .take(3)
        .filter(|c| meta.has_capability(c.get()))
        .count()
}

/// What a match shows: name, tag, value number, metadata.
pub fn obs_match(m: &Match<V>) -> (String, Tag, u64, Metadata) {
    (m.name.clone(), m.tag, *m.value, (*m.metadata).clone())
}

// ---------------------------------------------------------------------------------------------
// Liveness: time, TTLs, health
// ---------------------------------------------------------------------------------------------

/// One tick of the harnesses' `ManualClock`. The model keeps time in nanoseconds (a TTL of zero
/// is one nanosecond), the ops move the clock by whole ticks.
pub const TICK: Duration = Duration::from_secs(1);
pub const TICK_NS: u64 = 1_000_000_000;

/// A time to live: zero (taken as one nanosecond: gone at the next tick) or 1 to 5 ticks.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct TtlSel(pub u8);

impl TtlSel {
    pub fn get(self) -> Duration {
        TICK * u32::from(self.0 % 6)
    }

    /// The TTL the registry applies, in nanoseconds (zero is one nanosecond).
    pub fn nanos(self) -> u64 {
        (u64::from(self.0 % 6) * TICK_NS).max(1)
    }
}

/// How a binding with a TTL is registered.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TtlKind {
    /// `with_ttl(..).register`: a guard.
    Guard,
    /// `with_ttl(..).register_detached`.
    Detached,
    /// `with_ttl(..).register_weak`: dies of either its owner or its deadline.
    Weak(OwnerSel),
}

/// What a keepalive renews.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum KeepSel {
    /// `Registry::keepalive(name, tag)`.
    Name { name: NameSel, tag: TagSel },
    /// `Registration::keepalive` of a held guard.
    Guard(u8),
    /// `Registry::keepalive` of a binding that expired (its name and tag), if any did: the
    /// answer is `Expired` while it is still stored, `NotFound` once purged.
    Expired(u8),
}

/// A health state.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct StateSel(pub u8);

impl StateSel {
    pub fn get(self) -> HealthState {
        match self.0 % 5 {
            0 => HealthState::Unknown,
            1 => HealthState::Passing,
            2 => HealthState::Warning,
            // Critical twice as often: the critical limit needs repeated records.
            _ => HealthState::Critical,
        }
    }
}

/// The reasons a binding is removed without anyone asking for it.
pub fn is_death(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::Expired | Reason::WeakOwnerDead | Reason::Critical
    )
}

/// One operation.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    Register {
        name: NameSel,
    },
    /// `register_detached`: a binding with no guard, identified by the tag it returns.
    RegisterDetached {
        name: NameSel,
    },
    RegisterAs {
        name: NameSel,
        inst: InstSel,
    },
    EnsureRegistered {
        name: NameSel,
        inst: InstSel,
    },
    RegisterAuto {
        prefix: PrefixSel,
    },
    RegisterWeak {
        name: NameSel,
        owner: OwnerSel,
    },
    /// `register_weak_as`: a weak binding under an instance id of the caller's.
    RegisterWeakAs {
        name: NameSel,
        inst: InstSel,
        owner: OwnerSel,
    },
    /// `ensure_registered_weak`: idempotent for the same instance.
    EnsureRegisteredWeak {
        name: NameSel,
        inst: InstSel,
        owner: OwnerSel,
    },
    /// `Registry::collect`: changes nothing a read can see.
    Collect,
    /// Drops the only strong reference to a weak owner.
    DropOwner {
        owner: u8,
    },
    Get {
        name: NameSel,
    },
    /// `Registry::read`: the per-call borrowed read (a closure over the entry).
    Read {
        name: NameSel,
    },
    GetIf {
        name: NameSel,
        tag: TagSel,
    },
    IsCurrent {
        name: NameSel,
        tag: TagSel,
    },
    TagOf {
        name: NameSel,
    },
    Contains {
        name: NameSel,
    },
    UnregisterIfSame {
        name: NameSel,
        tag: TagSel,
    },
    ReplaceIfSame {
        name: NameSel,
        tag: TagSel,
    },
    Unregister {
        name: NameSel,
    },
    UnregisterInstance {
        inst: InstSel,
    },
    /// Drops a held `Registration` guard.
    DropGuard {
        guard: u8,
    },
    /// `Registration::detach`.
    DetachGuard {
        guard: u8,
    },
    /// `Registration::replace`.
    GuardReplace {
        guard: u8,
    },
    /// `Registration::unregister`.
    GuardUnregister {
        guard: u8,
    },
    /// `Registration::{is_current, get, name, tag}`.
    GuardCheck {
        guard: u8,
    },
    Len,
    IsEmpty,
    Names,
    Entries,
    Clear,
    PurgeDead,
    /// `with_metadata(..).register` (a guard) or `.register_detached`.
    RegisterMeta {
        name: NameSel,
        meta: MetaSel,
        detached: bool,
    },
    /// `with_metadata(..).register_auto`.
    RegisterAutoMeta {
        prefix: PrefixSel,
        meta: MetaSel,
    },
    /// `with_metadata(..).register_weak`.
    RegisterWeakMeta {
        name: NameSel,
        owner: OwnerSel,
        meta: MetaSel,
    },
    /// `update_metadata(name, tag, meta)`.
    UpdateMetadata {
        name: NameSel,
        tag: TagSel,
        meta: MetaSel,
    },
    /// `Registry::metadata(name)`.
    GetMetadata {
        name: NameSel,
    },
    /// A discovery query.
    Find {
        query: QuerySel,
    },
    /// `best_match`.
    BestMatch {
        caps: Vec<CapSel>,
    },
    /// `with_ttl(ttl)` registration (with metadata if `meta`).
    RegisterTtl {
        name: NameSel,
        ttl: TtlSel,
        kind: TtlKind,
        meta: Option<MetaSel>,
    },
    /// A keepalive (see [`KeepSel`]).
    Keepalive {
        target: KeepSel,
    },
    /// Moves the clock forward by `ticks % 4` ticks.
    AdvanceClock {
        ticks: u8,
    },
    /// `Reaper::reap` (the harness attaches one reaper at the first `Reap`).
    Reap,
    /// `set_health` (or, with `record`, `record_health`) by tag.
    SetHealth {
        name: NameSel,
        tag: TagSel,
        state: StateSel,
        record: bool,
    },
    /// `Registry::health(name)`.
    GetHealth {
        name: NameSel,
    },
    /// A run of operations through one `Pinned` handle. With `hold`, every borrowed entry
    /// returned is kept until the end of the run and checked again then (they must stay
    /// readable and unchanged while the handle lives, removed or not); without, `Repin`
    /// re-pins between operations.
    Pinned {
        hold: bool,
        ops: Vec<PinnedOp>,
    },
    /// `register_pool` / `register_pool_with` (see [`PoolSpec`]).
    RegisterPool {
        name: PoolNameSel,
        spec: PoolSpec,
    },
    /// `unregister_pool(name)`, or with a tag `unregister_pool_if_same(name, tag)` (the tag
    /// from the pools' tags seen, so often stale).
    UnregisterPool {
        name: AnyNameSel,
        tag: Option<PoolTagSel>,
    },
    /// A held `PoolRegistration`: drop it, `unregister()` it, or `detach()` it.
    PoolGuard {
        guard: u8,
        how: u8,
    },
    /// A lease from a pool handle (every pool ever registered, open or removed).
    Acquire {
        pool: u8,
        how: AcquireSel,
    },
    /// `Registry::acquire(name)` or (with a key) `get_or_acquire(name, key)`: a pool, a member
    /// or an agent (a task lease).
    RegistryAcquire {
        name: AnyNameSel,
        key: Option<KeySel>,
    },
    /// Drops held lease `lease`.
    DropLease {
        lease: u8,
    },
    /// The pool reads of a name: `kind`, `is_pool`, `pool`, `normalize`, `same_logical`,
    /// `instance_count`, `available_count`, `load`, `tag_of`; and `listing`, `least_loaded`.
    PoolRead {
        name: AnyNameSel,
        other: AnyNameSel,
        prefix: u8,
    },
    /// `Pool::stats` of a pool handle, then with `reset`, `reset_stats`.
    PoolStats {
        pool: u8,
        reset: bool,
    },
    /// An agent's write or read on a name that may be a pool's or a member's: refused with
    /// `IsPool` / `PoolMember` where the contract says so.
    NameCall {
        name: AnyNameSel,
        tag: TagSel,
        what: u8,
    },
}

/// The name a pool is registered under: agents' names (`a`, `b`), pools' (`p`, `q`), a
/// member's (`p_0`, `a_1`: a pool inside a pool's name space), a name whose members are too
/// long, an invalid one.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct PoolNameSel(pub u8);

impl PoolNameSel {
    pub fn get(self) -> String {
        match self.0 % 16 {
            0..=3 => "p".to_owned(),
            4 | 5 => "q".to_owned(),
            6 | 7 => "a".to_owned(),
            8 => "b".to_owned(),
            9 => "p_0".to_owned(),
            10 => "a_1".to_owned(),
            11 => "q_2".to_owned(),
            12 => "p_1".to_owned(),
            // Valid, but `{name}_0` is one byte too long: refused at the first member.
            13 => "x".repeat(MAX_NAME_LEN - 1),
            14 => String::new(),
            _ => "p".to_owned(),
        }
    }
}

/// Any name an op may meet: agents, pools, members (of every pool name above), nested ones.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct AnyNameSel(pub u8);

pub const ANY_NAMES: [&str; 16] = [
    "p", "p_0", "p_1", "p_2", "p_3", "q", "q_0", "q_1", "q_2", "a", "a_0", "a_1", "b", "b_0",
    "p_0_0", "a_1_0",
];

impl AnyNameSel {
    pub fn get(self) -> String {
        if self.0 < 248 {
            ANY_NAMES[usize::from(self.0) % ANY_NAMES.len()].to_owned()
        } else {
            edge_name(self.0)
        }
    }
}

/// A pool's shape: 1 to 4 members (sometimes none: refused), `max_in_flight` 1 to 3
/// (sometimes 0 or 65: refused), the selection, and whether the guard is kept or detached.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct PoolSpec {
    pub size: u8,
    pub max: u8,
    pub power_of_two: bool,
    /// Keep the `PoolRegistration` guard (else `detach()` it at once).
    pub guard: bool,
    /// `register_pool` (default options) instead of `register_pool_with`.
    pub plain: bool,
}

impl PoolSpec {
    pub fn size(self) -> usize {
        if self.size % 32 == 31 {
            0
        } else {
            1 + usize::from(self.size % 4)
        }
    }

    pub fn max_in_flight(self) -> usize {
        if self.plain {
            return 1;
        }
        match self.max % 32 {
            31 => 0,
            30 => genreg::pool::MAX_IN_FLIGHT + 1,
            m => 1 + usize::from(m % 3),
        }
    }

    pub fn power_of_two(self) -> bool {
        self.power_of_two && !self.plain
    }
}

/// A pool tag for `unregister_pool_if_same`: one of the pools' tags seen (the current one or a
/// stale one), or a made-up one.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum PoolTagSel {
    Seen(u8),
    Forged(u64),
}

/// A key for `acquire_for` / `get_or_acquire`: three valid keys and an invalid one.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct KeySel(pub u8);

impl KeySel {
    pub fn get(self) -> &'static str {
        match self.0 % 16 {
            0..=5 => "k1",
            6..=10 => "k2",
            11..=14 => "k3",
            _ => "",
        }
    }
}

/// How a pool handle is asked for a lease.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum AcquireSel {
    /// `acquire()`.
    Any,
    /// `acquire_member(i)` (`i` up to 4: sometimes past the last member).
    Member(u8),
    /// `acquire_for(key)`.
    Key(KeySel),
}

/// An operation inside [`Op::Pinned`].
#[derive(Arbitrary, Debug, Clone)]
pub enum PinnedOp {
    Get {
        name: NameSel,
    },
    Contains {
        name: NameSel,
    },
    Iter,
    Register {
        name: NameSel,
    },
    RegisterAs {
        name: NameSel,
        inst: InstSel,
    },
    EnsureRegistered {
        name: NameSel,
        inst: InstSel,
    },
    RegisterAuto {
        prefix: PrefixSel,
    },
    UnregisterIfSame {
        name: NameSel,
        tag: TagSel,
    },
    Unregister {
        name: NameSel,
    },
    ReplaceIfSame {
        name: NameSel,
        tag: TagSel,
    },
    UnregisterInstance {
        inst: InstSel,
    },
    Clear,
    PurgeDead,
    Flush,
    Repin,
    /// Operations that have no pinned form run on the registry while the handle is pinned.
    DropOwner {
        owner: u8,
    },
    DropGuard {
        guard: u8,
    },
    GuardReplace {
        guard: u8,
    },
}

impl PinnedOp {
    /// The top-level op this pinned op corresponds to (`None` for Iter / Flush / Repin).
    fn as_op(&self) -> Option<Op> {
        Some(match *self {
            PinnedOp::Get { name } => Op::Get { name },
            PinnedOp::Contains { name } => Op::Contains { name },
            PinnedOp::Register { name } => Op::Register { name },
            PinnedOp::RegisterAs { name, inst } => Op::RegisterAs { name, inst },
            PinnedOp::EnsureRegistered { name, inst } => Op::EnsureRegistered { name, inst },
            PinnedOp::RegisterAuto { prefix } => Op::RegisterAuto { prefix },
            PinnedOp::UnregisterIfSame { name, tag } => Op::UnregisterIfSame { name, tag },
            PinnedOp::Unregister { name } => Op::Unregister { name },
            PinnedOp::ReplaceIfSame { name, tag } => Op::ReplaceIfSame { name, tag },
            PinnedOp::UnregisterInstance { inst } => Op::UnregisterInstance { inst },
            PinnedOp::Clear => Op::Clear,
            PinnedOp::PurgeDead => Op::PurgeDead,
            PinnedOp::DropOwner { owner } => Op::DropOwner { owner },
            PinnedOp::DropGuard { guard } => Op::DropGuard { guard },
            PinnedOp::GuardReplace { guard } => Op::GuardReplace { guard },
            PinnedOp::Iter | PinnedOp::Flush | PinnedOp::Repin => return None,
        })
    }
}

/// Decodes an op sequence exactly as libfuzzer-sys does for `fuzz_target!(|ops: Vec<Op>| ..)`.
pub fn decode<'a, T: Arbitrary<'a>>(data: &'a [u8]) -> Option<T> {
    if data.len() < <T as Arbitrary>::size_hint(0).0 {
        return None;
    }
    T::arbitrary_take_rest(Unstructured::new(data)).ok()
}

// ---------------------------------------------------------------------------------------------
// Registries and what their results show
// ---------------------------------------------------------------------------------------------

/// How a harness's registry is built.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub capacity: usize,
    pub seed: u64,
    pub owned_collector: bool,
    /// With the event log on, the harnesses also watch from revision zero and check that
    /// replaying the events rebuilds the registry's state (`EventMirror`).
    pub events: bool,
    /// `Builder::max_entries`, if any (the model refuses a registration as `Full` when it
    /// already holds that many visible bindings).
    pub max_entries: Option<usize>,
    /// `Builder::remove_critical_after`, in ticks, if any.
    pub critical_after: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            capacity: 1,
            seed: 0x5eed,
            owned_collector: true,
            events: true,
            max_entries: None,
            critical_after: None,
        }
    }
}

/// A registry as the harnesses use it, on a `ManualClock` at zero (returned: the harness moves
/// it).
pub fn build_registry(cfg: Config) -> (Registry<V>, ManualClock) {
    let clock = ManualClock::new();
    let b = Registry::builder()
        .capacity(cfg.capacity)
        .hash_seed(cfg.seed)
        .clock(clock.clone());
    let b = match cfg.critical_after {
        Some(ticks) => b.remove_critical_after(TICK * ticks as u32),
        None => b,
    };
    let b = if cfg.owned_collector {
        b.collector(genreg::epoch::Collector::new())
    } else {
        b
    };
    // A quarter of the seeds keep events without values (tags only).
    let b = if cfg.events {
        b.events(1 << 16).event_values(cfg.seed % 4 != 2)
    } else {
        b
    };
    let b = match cfg.max_entries {
        Some(n) => b.max_entries(n),
        None => b,
    };
    (b.build(), clock)
}

// ---------------------------------------------------------------------------------------------
// Events: a mirror rebuilt from a watcher
// ---------------------------------------------------------------------------------------------

/// The registry's state as a watcher from revision zero rebuilds it: name -> (tag, value
/// number; `None` for a weak binding, whose events carry no value).
pub struct EventMirror {
    watcher: genreg::Watcher<V>,
    pub state: std::collections::BTreeMap<String, (Tag, Option<u64>)>,
    last: genreg::Revision,
    pub events: usize,
    /// `MetadataUpdated` events that carry no metadata, as `(name, tag)`: the first task on an
    /// agent (`Registry::acquire`) publishes one (a known bug, pinned by
    /// `tests/model.rs::a_task_publishes_no_metadata_event`). The sequential harness takes
    /// those it expects; any other fails `check_with`.
    pub bare_updates: Vec<(String, Tag)>,
}

impl EventMirror {
    /// Watches `reg` from revision zero, if it keeps an event log.
    pub fn new(reg: &Registry<V>) -> Option<EventMirror> {
        let watcher = reg
            .watch(genreg::Filter::all(), genreg::Revision::ZERO)
            .ok()?;
        Some(EventMirror {
            watcher,
            state: Default::default(),
            last: genreg::Revision::ZERO,
            events: 0,
            bare_updates: Vec::new(),
        })
    }

    /// Applies every event published so far, checking that each is in revision order, seen
    /// once, and consistent with the state it applies to. Returns the removals applied, as
    /// `(name, tag, reason)`, in revision order.
    pub fn catch_up(&mut self) -> Vec<(String, Tag, Reason)> {
        use genreg::EventKind;
        let mut removals = Vec::new();
        while let Some(item) = self.watcher.try_next() {
            let e = item.expect("the history is large enough for any harness run");
            assert!(
                e.revision() > self.last,
                "{e:?} delivered after revision {:?}",
                self.last
            );
            self.last = e.revision();
            self.events += 1;
            let name = e.name().to_owned();
            let current = self.state.get(&name).map(|(t, _)| *t);
            match e.kind() {
                EventKind::Registered { tag, value } => {
                    assert_eq!(current, None, "{e:?}: registered over a binding");
                    self.state.insert(name, (*tag, value.as_ref().map(|v| **v)));
                }
                EventKind::Replaced { old, tag, value } => {
                    assert_eq!(current, Some(*old), "{e:?}: replaced another binding");
                    self.state.insert(name, (*tag, value.as_ref().map(|v| **v)));
                }
                EventKind::Unregistered { tag, reason } => {
                    assert_eq!(current, Some(*tag), "{e:?}: removed another binding");
                    self.state.remove(&name);
                    removals.push((name, *tag, *reason));
                }
                EventKind::MetadataUpdated { tag } => {
                    assert_eq!(current, Some(*tag), "{e:?}: updated another binding");
                    if e.metadata().is_none() {
                        self.bare_updates.push((name, *tag));
                    }
                }
                other => panic!("unknown event kind {other:?}"),
            }
        }
        removals
    }

    /// Checks the mirror against the visible bindings (name -> (tag, value number)): equal,
    /// but for weak bindings whose owner died and that no one has purged yet (invisible, so
    /// missing from `visible`, still bound in the mirror).
    pub fn check(&mut self, visible: &std::collections::BTreeMap<String, (Tag, u64)>) {
        self.check_with(visible, &|_| false);
    }

    /// As [`check`](Self::check), and bindings for which `invisible` holds (expired, not yet
    /// purged) may also still be bound in the mirror.
    pub fn check_with(
        &mut self,
        visible: &std::collections::BTreeMap<String, (Tag, u64)>,
        invisible: &dyn Fn(&Tag) -> bool,
    ) {
        self.catch_up();
        assert!(
            self.bare_updates.is_empty(),
            "metadata updates without metadata: {:?}",
            self.bare_updates
        );
        for (name, (tag, value)) in visible {
            match self.state.get(name) {
                Some((t, v)) => {
                    assert_eq!(t, tag, "events rebuilt {name:?} with another tag");
                    if let Some(v) = v {
                        assert_eq!(v, value, "events rebuilt {name:?} with another value");
                    }
                }
                None => panic!("events never bound {name:?} ({tag:?})"),
            }
        }
        for (name, (tag, value)) in &self.state {
            if !visible.contains_key(name) {
                assert!(
                    value.is_none() || invisible(tag),
                    "events left {name:?} ({tag:?}) bound, but it is not: a removal without \
                     an event"
                );
            }
        }
    }
}

/// Borrowed entries kept while a `Pinned` handle lives, with what they showed when taken.
pub type Held<'p> = Vec<(EntryRef<'p, V>, (Tag, u64))>;

/// What an owned entry shows: its tag and value number.
pub fn obs_entry(e: &Entry<V>) -> (Tag, u64) {
    (e.tag(), **e.value())
}

/// What a borrowed entry shows.
pub fn obs_ref(e: &EntryRef<'_, V>) -> (Tag, u64) {
    (e.tag(), **e.value())
}

/// An index chosen by a fuzz byte into a list of `len`, if any.
pub fn idx(i: u8, len: usize) -> Option<usize> {
    (len > 0).then(|| usize::from(i) % len)
}

// ---------------------------------------------------------------------------------------------
// Names, by the contract (independent of the crate's own validator)
// ---------------------------------------------------------------------------------------------

/// What the registry must answer for a name: `Ok` or the exact `InvalidName` error.
pub fn validate(name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        InvalidNameReason::Empty
    } else if name.len() > MAX_NAME_LEN {
        InvalidNameReason::TooLong { len: name.len() }
    } else if let Some((at, _)) = name.char_indices().find(|(_, c)| c.is_control()) {
        InvalidNameReason::ControlChar { at }
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.into(),
        reason,
    })
}

/// What `register_auto(prefix, ..)` must answer up front: room for `-` and any number.
pub fn validate_prefix(prefix: &str) -> Result<(), Error> {
    let reason = if prefix.len() > MAX_AUTO_PREFIX_LEN {
        InvalidNameReason::PrefixTooLong { len: prefix.len() }
    } else if let Some((at, _)) = prefix.char_indices().find(|(_, c)| c.is_control()) {
        InvalidNameReason::ControlChar { at }
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: prefix.into(),
        reason,
    })
}

/// A refused query's message is not empty and names what it refused.
pub fn check_display_meta(err: &MetadataError) {
    let msg = err.to_string();
    assert!(!msg.is_empty(), "empty Display for {err:?}");
}

/// Every refusal has a `Display` message naming the name and the current tag.
pub fn check_display(err: &Error) {
    let msg = err.to_string();
    assert!(!msg.is_empty(), "empty Display for {err:?}");
    let (name, current) = match err {
        Error::AlreadyRegistered { name, current } => (name, Some(current)),
        Error::TagMismatch { name, current, .. } => (name, Some(current)),
        Error::NotFound { name } => (name, None),
        Error::InvalidName { name, .. } => (name, None),
        Error::Full { name, .. } => (name, None),
        Error::Expired { name, .. } => (name, None),
        _ => return,
    };
    let plain = name.chars().count() <= 64
        && name.chars().all(|c| {
            c == ' ' || (c.is_ascii_graphic() && c != '"' && c != '\\') || c.is_alphanumeric()
        });
    if plain && !name.is_empty() {
        assert!(
            msg.contains(name.as_str()),
            "message {msg:?} does not name {name:?}"
        );
    }
    if let Some(t) = current {
        assert!(
            msg.contains(&t.to_string()),
            "message {msg:?} does not show tag {t}"
        );
    }
}
