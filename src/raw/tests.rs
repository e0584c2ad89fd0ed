//! Unit tests of the raw core: slot encoding, limits, and single-threaded walks through a
//! migration that reach every path (graveyard included). They also run under Miri.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};

use crossbeam_epoch::{Collector, Owned, Shared};

use super::migrate::{hard_limit, next_capacity, soft_limit};
use super::node::{INLINE, Key, NameBuf, Node, Stored};
use super::table::{DONE, FROZEN, Slot, TOMB};
use super::{Insert, RawMap, Write, Written};
use crate::tag::{Generation, InstanceId, Tag};

/// A value that counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, StdOrdering::Relaxed);
    }
}

fn node(
    map: &RawMap<Counted>,
    name: &str,
    g: u64,
    drops: &Arc<AtomicUsize>,
) -> Owned<Node<Counted>> {
    Owned::new(Node::new(
        map.hash(name),
        Tag::new(InstanceId::from_raw(1), Generation::from_raw(g)),
        NameBuf::new(name),
        Stored::Strong(Counted(Arc::clone(drops))),
    ))
}

#[test]
fn slot_words_decode() {
    let collector = Collector::new();
    let handle = collector.register();
    let guard = &handle.pin();
    let n = Owned::new(Node::new(
        7,
        Tag::new(InstanceId::from_raw(1), Generation::from_raw(1)),
        NameBuf::new("x"),
        Stored::Strong(()),
    ))
    .into_shared(guard);
    let null = Shared::<Node<()>>::null();
    assert!(matches!(Slot::decode(null), Slot::Empty));
    assert!(matches!(Slot::decode(n.with_tag(TOMB)), Slot::Tomb(_)));
    assert!(matches!(
        Slot::decode(null.with_tag(FROZEN)),
        Slot::SealedEmpty
    ));
    assert!(matches!(
        Slot::decode(null.with_tag(TOMB | FROZEN)),
        Slot::SealedTomb
    ));
    assert!(matches!(Slot::decode(n), Slot::Live(_)));
    assert!(matches!(Slot::decode(n.with_tag(FROZEN)), Slot::Frozen(_)));
    assert!(matches!(
        Slot::decode(n.with_tag(FROZEN | DONE)),
        Slot::Done(_)
    ));
    // SAFETY: never published.
    drop(unsafe { n.into_owned() });
}

#[test]
fn limits_leave_room_for_every_copy() {
    for shift in 1..20 {
        let cap = 1usize << shift;
        assert!(soft_limit(cap) <= hard_limit(cap));
        assert!(
            hard_limit(cap) < cap,
            "a root table always keeps an empty slot"
        );
        for live in [0, 1, cap / 4, cap / 2, cap] {
            let next = next_capacity(cap, live);
            assert!(next >= cap && next.is_power_of_two());
            // Every copy fits with an empty slot to spare.
            assert!(hard_limit(cap) < next);
        }
    }
}

#[test]
fn names_round_trip_inline_and_boxed() {
    for len in 0..=(INLINE + 10) {
        let s: String = "é".repeat(len / 2) + &"a".repeat(len % 2);
        let b = NameBuf::new(&s);
        assert_eq!(b.as_str(), s);
        assert_eq!(b.is_inline(), s.len() <= INLINE);
    }
}

/// `NameBuf::matches` (three word compares inline) agrees with `==` on every pair of names of
/// lengths 0..=40, including names that differ only in their last byte, in their length, or in
/// a trailing NUL (which the zero padding must not confuse with a shorter name).
#[test]
fn name_match_agrees_with_str_eq() {
    let mut names: Vec<String> = Vec::new();
    let step = if cfg!(miri) { 5 } else { 1 };
    for len in (0..=40).step_by(step) {
        let base: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        names.push(base.clone());
        if len > 0 {
            let mut last = base.clone().into_bytes();
            *last.last_mut().unwrap() = b'Z';
            names.push(String::from_utf8(last).unwrap());
            names.push(format!("{}\0", &base[..len - 1]));
        }
        names.push("é".repeat(len / 2));
    }
    for a in &names {
        let buf = NameBuf::new(a);
        for b in &names {
            let key = Key::new(0, b);
            assert_eq!(buf.matches(&key), a == b, "{a:?} vs {b:?}");
        }
    }
}

/// Inserts, removes and replaces across several migrations, checking every name after each
/// phase, and checks that every value is dropped exactly once.
#[test]
fn single_thread_walk_through_migrations() {
    let drops = Arc::new(AtomicUsize::new(0));
    let collector = Collector::new();
    let handle = collector.register();
    let map = RawMap::<Counted>::new(4, 42);
    let n: u64 = if cfg!(miri) { 200 } else { 3000 };
    let mut created = 0;
    {
        let guard = &handle.pin();
        for i in 0..n {
            created += 1;
            let inserted = map.insert(node(&map, &format!("n{i}"), i, &drops), |_| false, guard);
            assert!(matches!(inserted, Insert::Inserted));
        }
        assert_eq!(map.len(), n as usize);
        // Duplicates are refused and handed back.
        created += 1;
        match map.insert(node(&map, "n0", 0, &drops), |_| false, guard) {
            Insert::Exists { current, rejected } => {
                assert_eq!(current.tag.generation().as_raw(), 0);
                drop(rejected);
            }
            Insert::Inserted => panic!("duplicate inserted"),
        }
        for i in (0..n).step_by(2) {
            let name = format!("n{i}");
            let hash = map.hash(&name);
            let w = map.write_if(
                hash,
                &name,
                Write::Remove,
                |n| n.tag.generation().as_raw() == i,
                guard,
            );
            assert!(matches!(w, Written::Done(_)));
        }
        for i in (1..n).step_by(4) {
            let name = format!("n{i}");
            let hash = map.hash(&name);
            created += 1;
            let new = node(&map, &name, n + i, &drops).into_shared(guard);
            let w = map.write_if(
                hash,
                &name,
                Write::Replace(new),
                |n| n.tag.generation().as_raw() == i,
                guard,
            );
            assert!(matches!(w, Written::Done(_)));
        }
        for i in 0..n {
            let name = format!("n{i}");
            let got = map
                .get(map.hash(&name), &name, guard)
                .map(|n| n.tag.generation().as_raw());
            let want = match i {
                _ if i % 2 == 0 => None,
                _ if i % 4 == 1 => Some(n + i),
                _ => Some(i),
            };
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(map.iter(guard).count(), (n / 2) as usize);
        assert_eq!(map.len(), (n / 2) as usize);
        // Re-register the removed names: each reuses its own tombstone (or, after a migration,
        // lands in the new table); churn one name many times: its chain must not grow.
        for i in (0..n).step_by(2) {
            created += 1;
            let inserted = map.insert(
                node(&map, &format!("n{i}"), 2 * n + i, &drops),
                |_| false,
                guard,
            );
            assert!(matches!(inserted, Insert::Inserted));
        }
        let cap = map.capacity(guard);
        for round in 0..200 {
            created += 1;
            assert!(matches!(
                map.insert(node(&map, "churn", round, &drops), |_| false, guard),
                Insert::Inserted
            ));
            let hash = map.hash("churn");
            let w = map.write_if(
                hash,
                "churn",
                Write::Remove,
                |n| n.tag.generation().as_raw() == round,
                guard,
            );
            assert!(matches!(w, Written::Done(_)));
        }
        assert_eq!(
            map.capacity(guard),
            cap,
            "reusing its tombstone, one churning name never grows the table"
        );
        assert_eq!(map.len(), n as usize);
    }
    drop(handle);
    drop(map);
    drop(collector);
    assert_eq!(drops.load(StdOrdering::Relaxed), created);
}

/// A node removed from the next table while the old table can still point at it goes to the
/// old table's graveyard and is freed with that table, exactly once.
#[test]
fn removal_during_migration_uses_the_graveyard() {
    let drops = Arc::new(AtomicUsize::new(0));
    let collector = Collector::new();
    let handle = collector.register();
    let map = RawMap::<Counted>::new(256, 7);
    let pinned = handle.pin();
    let guard = &pinned;
    // Fill to the soft limit: the next insert starts a migration.
    let mut names = Vec::new();
    let mut created = 0;
    for i in 0..=soft_limit(256) as u64 {
        let name = format!("g{i}");
        created += 1;
        assert!(matches!(
            map.insert(node(&map, &name, i, &drops), |_| false, guard),
            Insert::Inserted
        ));
        names.push((name, i));
    }
    let root = map.root(guard);
    assert!(root.migration(guard).is_some(), "the migration started");
    // The first write helps one chunk (slots 0..64); find a name copied by it.
    let (name, g) = names
        .iter()
        .find(|(name, _)| super::table::home(map.hash(name), root.mask) < 8)
        .cloned()
        .expect("some name lives in the first chunk");
    let hash = map.hash(&name);
    let w = map.write_if(
        hash,
        &name,
        Write::Remove,
        |n| n.tag.generation().as_raw() == g,
        guard,
    );
    assert!(matches!(w, Written::Done(_)));
    assert!(map.get(hash, &name, guard).is_none());
    // Nothing was freed yet: the removed node is either deferred or buried.
    assert_eq!(drops.load(StdOrdering::Relaxed), 0);
    drop(map);
    drop(pinned);
    drop(handle);
    drop(collector);
    assert_eq!(drops.load(StdOrdering::Relaxed), created);
}

/// The striped length: adds from many threads (each on its own stripe, some removing what
/// others added, so stripes go negative) sum exactly once the threads are done.
#[test]
fn striped_len_sums_exactly() {
    let len = super::len::Len::new();
    let threads: usize = if cfg!(miri) { 3 } else { 8 };
    let per: usize = if cfg!(miri) { 50 } else { 10_000 };
    std::thread::scope(|s| {
        for t in 0..threads {
            let len = &len;
            s.spawn(move || {
                for i in 0..per {
                    // Even threads add two and remove one; odd threads remove one.
                    if t % 2 == 0 {
                        len.add(1);
                        len.add(1);
                        if i % 2 == 0 {
                            len.add(-1);
                        }
                    } else {
                        len.add(-1);
                    }
                }
            });
        }
    });
    let evens = threads.div_ceil(2);
    let odds = threads / 2;
    let want = evens * (2 * per - per.div_ceil(2)) - odds * per;
    assert_eq!(len.get(), want);
    // A negative sum reads as zero.
    let empty = super::len::Len::new();
    empty.add(-1);
    assert_eq!(empty.get(), 0);
}
