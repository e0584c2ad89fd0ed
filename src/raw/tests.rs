//! Unit tests of the raw core: slot encoding, limits, and single-threaded walks through a
//! migration that reach every path (graveyard included). They also run under Miri.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};

use crossbeam_epoch::{Collector, Owned, Shared};

use super::migrate::{hard_limit, next_capacity, soft_limit};
use super::node::{INLINE, Key, NameBuf, Node, Stored};
use super::table::{DONE, FROZEN, Slot, TOMB, Table, frag, home};
use super::{Insert, RawMap, SLOTS_PER_LINE, Write, Written};
use crate::tag::{Generation, InstanceId, Tag};
use crate::watch::Reason;

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
fn table_words_carry_the_capacity() {
    // Head and slots share one allocation; a table word is tagged with its log2 capacity, and
    // `view` (the lookup's way in, which reads no head) agrees with `deref` (which does).
    let collector = Collector::new();
    let handle = collector.register();
    let guard = &handle.pin();
    let top = if cfg!(miri) { 10 } else { 20 };
    for log2 in 0..=top {
        let capacity = 1usize << log2;
        let table = Table::<u32>::alloc(capacity).into_shared(guard);
        assert_eq!(table.tag(), log2);
        // SAFETY: allocated above, freed below.
        let (seen, read) = unsafe { (Table::view(table), table.deref()) };
        assert!(std::ptr::eq(seen, read));
        assert_eq!(
            (seen.capacity(), read.capacity(), read.mask),
            (capacity, capacity, capacity - 1)
        );
        assert_eq!(seen.word(), table, "word() is the tagged word");
        let addr = std::ptr::from_ref(seen).cast::<u8>();
        assert_eq!(addr.addr() % 64, 0, "six tag bits");
        assert_eq!(
            seen.slots().as_ptr().cast::<u8>(),
            addr.wrapping_add(64),
            "slots after the head"
        );
        // Every slot is an `Empty` word, and writable.
        for i in [0, capacity / 2, capacity - 1] {
            assert!(matches!(
                Slot::<u32>::decode(seen.load(i, guard)),
                Slot::Empty
            ));
            assert!(seen.cas(i, Shared::null(), Shared::null(), guard).is_ok());
        }
        // SAFETY: never published.
        drop(unsafe { table.into_owned() });
    }
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

/// Names whose hashes share the home slot and the fragment: the probe cannot tell them apart
/// from the slot word and must decide by name, also where the home slot is another name's
/// tombstone (the case where a lookup resumes right after its home slot).
#[test]
#[cfg_attr(miri, ignore = "searches about 2^21 hashes: minutes under Miri")]
fn home_and_fragment_collisions_are_decided_by_name() {
    // Each scenario twice: with the home slot inside a cache line, where the probe loads the
    // slot after it at once, and at a line's end, where it does not (`RawMap::probe`).
    for line_end in [false, true] {
        collisions_with_home(line_end);
    }
}

fn collisions_with_home(line_end: bool) {
    let drops = Arc::new(AtomicUsize::new(0));
    let collector = Collector::new();
    let handle = collector.register();
    let guard = &handle.pin();
    // A name whose home slot is (or is not) the last of its cache line.
    let base = |map: &RawMap<Counted>, prefix: &str| {
        let mask = map.capacity(guard) - 1;
        (0u64..)
            .map(|i| format!("{prefix}{i}"))
            .find(|n| (home(map.hash(n), mask) % SLOTS_PER_LINE == SLOTS_PER_LINE - 1) == line_end)
            .unwrap()
    };
    let map = RawMap::<Counted>::new(16, 7);
    let mask = map.capacity(guard) - 1;
    let sig = |name: &str| {
        let h = map.hash(name);
        (home(h, mask), frag(h))
    };
    // Three names with one home slot and one fragment (a search of about 2^20 hashes each).
    let y = base(&map, "y");
    let want = sig(&y);
    let mut twins = (0u64..)
        .map(|i| format!("t{i}"))
        .filter(|n| sig(n) == want)
        .take(2);
    let (x, z) = (twins.next().unwrap(), twins.next().unwrap());
    let put = |name: &str, g| {
        let inserted = map.insert(node(&map, name, g, &drops), |_| false, guard);
        assert!(matches!(inserted, Insert::Inserted), "{name}");
    };
    let read = |name: &str| {
        map.get(map.hash(name), name, guard)
            .map(|n| n.tag.generation().as_raw())
    };
    put(&y, 1);
    put(&x, 2);
    put(&z, 3);
    assert_eq!((read(&y), read(&x), read(&z)), (Some(1), Some(2), Some(3)));
    // `y`'s slot (the home of all three) becomes a tombstone with their fragment: `x`, in the
    // slot right after it, and `z`, after that, are still found.
    let removed = map.write_if(
        map.hash(&y),
        &y,
        |_| Some(Write::Remove(Reason::Explicit)),
        guard,
    );
    assert!(matches!(removed, Written::Done(_)));
    assert_eq!((read(&y), read(&x), read(&z)), (None, Some(2), Some(3)));
    // A fourth name of the same signature is absent, not confused with any of them.
    let w = (0u64..)
        .map(|i| format!("u{i}"))
        .find(|n| sig(n) == want)
        .unwrap();
    assert_eq!(read(&w), None);

    // The other order: the home slot is another name's (no candidate), the second the name
    // (then, removed, an undecided candidate: a tombstone with the fragment), a twin in the
    // third.
    let map = RawMap::<Counted>::new(16, 11);
    let mask = map.capacity(guard) - 1;
    let sig = |name: &str| {
        let h = map.hash(name);
        (home(h, mask), frag(h))
    };
    let b = base(&map, "b");
    let want = sig(&b);
    let a = (0u64..)
        .map(|i| format!("a{i}"))
        .find(|n| sig(n).0 == want.0 && sig(n).1 != want.1)
        .unwrap();
    let x = (0u64..)
        .map(|i| format!("x{i}"))
        .find(|n| sig(n) == want)
        .unwrap();
    for (g, name) in [a.as_str(), b.as_str(), x.as_str()].into_iter().enumerate() {
        let inserted = map.insert(node(&map, name, g as u64, &drops), |_| false, guard);
        assert!(matches!(inserted, Insert::Inserted), "{name}");
    }
    let read = |name: &str| {
        map.get(map.hash(name), name, guard)
            .map(|n| n.tag.generation().as_raw())
    };
    assert_eq!((read(&a), read(&b), read(&x)), (Some(0), Some(1), Some(2)));
    let removed = map.write_if(
        map.hash(&b),
        &b,
        |_| Some(Write::Remove(Reason::Explicit)),
        guard,
    );
    assert!(matches!(removed, Written::Done(_)));
    assert_eq!((read(&a), read(&b), read(&x)), (Some(0), None, Some(2)));
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
            Insert::Full { .. } => panic!("unbounded"),
        }
        for i in (0..n).step_by(2) {
            let name = format!("n{i}");
            let hash = map.hash(&name);
            let w = map.write_if(
                hash,
                &name,
                |n| (n.tag.generation().as_raw() == i).then_some(Write::Remove(Reason::Explicit)),
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
                |n| (n.tag.generation().as_raw() == i).then_some(Write::Replace(new)),
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
                |n| {
                    (n.tag.generation().as_raw() == round)
                        .then_some(Write::Remove(Reason::Explicit))
                },
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
        |n| (n.tag.generation().as_raw() == g).then_some(Write::Remove(Reason::Explicit)),
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

/// Issue 8, bug 1, replayed through the real `reserve`, copy and `install` code: the next
/// table's room check must never be granted to two claims that a copy landing in their window
/// would leave without room.
///
/// The interleaving (16-slot tables): the old table holds 4 live names, 6 tombstones and 6
/// empty slots; its tombstones and empties are sealed (`sealed` = 12); 11 fresh names go to the
/// next table (11 + 4 pending copies = 15, the bound). Then G1 and G2 each start `reserve`, and
/// inside their window a helper copies two live slots. With the claim counted before `sealed`
/// is read (the bug), both are granted: 15 slots used with 2 copies pending, and the last copy
/// panics ("the next table always keeps room for every copy"). With `sealed` read first, both
/// are refused, help finish the migration, and land in the new root.
#[test]
fn next_table_room_is_never_granted_twice() {
    use super::hook::RESERVE_WINDOW;
    let drops = Arc::new(AtomicUsize::new(0));
    let collector = Collector::new();
    let handle = std::rc::Rc::new(collector.register());
    let map = Arc::new(RawMap::<Counted>::new(16, 7));
    let guard = &handle.pin();
    let root = map.root(guard);
    assert_eq!(root.capacity(), 16);
    // 10 names (the soft limit: no migration yet), 6 of them removed: 4 live, 6 tombstones.
    for i in 0..10u64 {
        assert!(matches!(
            map.insert(node(&map, &format!("old{i}"), i, &drops), |_| false, guard),
            Insert::Inserted
        ));
    }
    assert!(root.migration(guard).is_none());
    for i in 4..10u64 {
        let name = format!("old{i}");
        let w = map.write_if(
            map.hash(&name),
            &name,
            |_| Some(Write::Remove(Reason::Explicit)),
            guard,
        );
        assert!(matches!(w, Written::Done(_)));
    }
    map.start_migration(root, guard);
    let m = root.migration(guard).expect("started");
    let next = root.next(guard).expect("a next table");
    assert_eq!(next.capacity(), 16);
    // No writer hands out chunks: the copies below are the only ones.
    root.cursor.store(root.capacity(), StdOrdering::Relaxed);
    let mut live = Vec::new();
    for i in 0..16 {
        match Slot::decode(root.load(i, guard)) {
            Slot::Empty | Slot::Tomb(_) => map.copy_slot_counted(root, m, i, guard),
            Slot::Live(_) => live.push(i),
            _ => unreachable!(),
        }
    }
    assert_eq!(live.len(), 4);
    assert_eq!(root.sealed.load(StdOrdering::Relaxed), 12);
    for i in 0..11u64 {
        assert!(matches!(
            map.insert(
                node(&map, &format!("new{i}"), 100 + i, &drops),
                |_| false,
                guard
            ),
            Insert::Inserted
        ));
    }
    assert_eq!(next.claimed.load(StdOrdering::Relaxed), 11);
    // Where the two copies will land, and two fresh names whose chains end elsewhere: each of
    // the four writes must get a slot of its own, or a lost CAS would hide the bug.
    let empty_from = |hash: u64, taken: &[usize]| {
        let mut i = super::table::home(hash, next.mask);
        while !matches!(Slot::decode(next.load(i, guard)), Slot::Empty) || taken.contains(&i) {
            i = (i + 1) & next.mask;
        }
        i
    };
    let live_hash = |i: usize| match Slot::decode(root.load(i, guard)) {
        Slot::Live(n) => n.hash,
        _ => unreachable!(),
    };
    let x = empty_from(live_hash(live[0]), &[]);
    let y = empty_from(live_hash(live[1]), &[x]);
    let fresh = |prefix: &str, taken: &[usize]| {
        (0..10_000)
            .map(|k| format!("{prefix}{k}"))
            .find(|name| {
                let home = super::table::home(map.hash(name), next.mask);
                matches!(Slot::decode(next.load(home, guard)), Slot::Empty)
                    && !taken.contains(&home)
            })
            .expect("some name has its home in a free slot")
    };
    let g1_name = fresh("g1-", &[x, y]);
    let g1_home = super::table::home(map.hash(&g1_name), next.mask);
    let g2_name = fresh("g2-", &[x, y, g1_home]);

    // G1's window runs G2, whose window runs the helper's two copies.
    let (map2, handle2, drops2) = (Arc::clone(&map), handle.clone(), Arc::clone(&drops));
    let helper = move || {
        let (map, guard) = (&*map2, &handle2.pin());
        let root = map.root(guard);
        let m = root.migration(guard).expect("migrating");
        for &i in &live[..2] {
            map.copy_slot_counted(root, m, i, guard);
        }
        assert_eq!(root.sealed.load(StdOrdering::Relaxed), 14);
        drop(drops2);
    };
    let (map3, handle3, drops3) = (Arc::clone(&map), handle.clone(), Arc::clone(&drops));
    let g2_inserted = g2_name.clone();
    let g2 = move || {
        RESERVE_WINDOW.with(|h| *h.borrow_mut() = Some(Box::new(helper)));
        let (map, guard) = (&*map3, &handle3.pin());
        assert!(matches!(
            map.insert(node(map, &g2_inserted, 200, &drops3), |_| false, guard),
            Insert::Inserted
        ));
    };
    RESERVE_WINDOW.with(|h| *h.borrow_mut() = Some(Box::new(g2)));
    assert!(matches!(
        map.insert(node(&map, &g1_name, 201, &drops), |_| false, guard),
        Insert::Inserted
    ));
    assert!(
        RESERVE_WINDOW.with(|h| h.borrow().is_none()),
        "both windows ran"
    );

    // Finish whatever migration is left (this is where the bug panicked) and check every name.
    assert_eq!(map.iter(guard).count(), 17);
    let mut names: Vec<String> = (0..4).map(|i| format!("old{i}")).collect();
    names.extend((0..11).map(|i| format!("new{i}")));
    names.extend([g1_name, g2_name]);
    for name in &names {
        assert!(map.get(map.hash(name), name, guard).is_some(), "{name}");
    }
    assert_eq!(map.len(), 17);
}

/// A map dropped in the middle of a migration frees every node exactly once, from the table
/// that owns it: live and tombstoned nodes of the old table, nodes already copied (`Done` in
/// the old table, live in the next), a node removed from the next table while the old one
/// still points at it (the graveyard), and dead weak bindings, more of them than a batch of
/// the pending list. (Miri checks that nothing leaks and nothing is freed while borrowed.)
#[test]
fn dropping_a_migrating_map_frees_every_node_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let collector = Collector::new();
    let handle = collector.register();
    let map = RawMap::<Counted>::new(256, 11);
    let mut created = 0;
    {
        let guard = &handle.pin();
        // Tombstones, then names up to the soft limit: the last insert starts a migration and
        // copies the first chunk.
        for i in 0..8u64 {
            created += 1;
            let name = format!("gone{i}");
            assert!(matches!(
                map.insert(node(&map, &name, i, &drops), |_| false, guard),
                Insert::Inserted
            ));
            let w = map.write_if(
                map.hash(&name),
                &name,
                |_| Some(Write::Remove(Reason::Explicit)),
                guard,
            );
            assert!(matches!(w, Written::Done(_)));
        }
        let mut i = 100;
        while map.root(guard).migration(guard).is_none() {
            created += 1;
            let inserted = map.insert(node(&map, &format!("n{i}"), i, &drops), |_| false, guard);
            assert!(matches!(inserted, Insert::Inserted));
            i += 1;
        }
        // Remove a name copied by that chunk (its node goes to the old table's graveyard).
        let root = map.root(guard);
        let copied = (100..i)
            .map(|k| format!("n{k}"))
            .find(|name| super::table::home(map.hash(name), root.mask) < 8)
            .expect("a name in the first chunk");
        let w = map.write_if(
            map.hash(&copied),
            &copied,
            |_| Some(Write::Remove(Reason::Explicit)),
            guard,
        );
        assert!(matches!(w, Written::Done(_)));
    }
    drop(map);
    drop(handle);
    drop(collector);
    assert_eq!(
        drops.load(StdOrdering::Relaxed),
        created,
        "every value dropped exactly once"
    );

    // Dead weak bindings in a migrating map, more than a pending batch.
    let collector = Collector::new();
    let handle = collector.register();
    let map = RawMap::<Arc<u32>>::new(256, 3);
    {
        let guard = &handle.pin();
        let owner = Arc::new(5u32);
        map.note_mortal();
        for i in 0..70u64 {
            let name = format!("w{i}");
            let weak: Box<dyn super::node::WeakRef<Arc<u32>>> = Box::new(Arc::downgrade(&owner));
            let n = Owned::new(Node::new(
                map.hash(&name),
                Tag::new(InstanceId::from_raw(1), Generation::from_raw(i)),
                NameBuf::new(&name),
                Stored::Weak(weak),
            ));
            assert!(matches!(map.insert(n, |_| false, guard), Insert::Inserted));
        }
        drop(owner);
        map.start_migration(map.root(guard), guard);
        assert!(map.root(guard).migration(guard).is_some());
    }
    drop(map);
    drop(handle);
    drop(collector);
}

/// The commit point reports every committed change once, and nothing else: not a refused
/// insert or write, not a copy, a seal or a tombstone's reuse as such.
#[test]
fn every_commit_is_reported_once() {
    use super::hook::COMMITS;
    let collector = Collector::new();
    let handle = collector.register();
    let map = RawMap::<Arc<u32>>::new(16, 5);
    let guard = &handle.pin();
    let strong = |name: &str, g: u64| {
        Owned::new(Node::new(
            map.hash(name),
            Tag::new(InstanceId::from_raw(1), Generation::from_raw(g)),
            NameBuf::new(name),
            Stored::Strong(Arc::new(g as u32)),
        ))
    };
    let weak = |name: &str, g: u64, owner: &Arc<u32>| {
        let w: Box<dyn super::node::WeakRef<Arc<u32>>> = Box::new(Arc::downgrade(owner));
        Owned::new(Node::new(
            map.hash(name),
            Tag::new(InstanceId::from_raw(2), Generation::from_raw(g)),
            NameBuf::new(name),
            Stored::Weak(w),
        ))
    };
    let tag = |g: u64| Tag::new(InstanceId::from_raw(1), Generation::from_raw(g));
    let wtag = |g: u64| Tag::new(InstanceId::from_raw(2), Generation::from_raw(g));
    let dead = |n: &Node<Arc<u32>>| !n.is_visible();
    COMMITS.with(|c| *c.borrow_mut() = Some(Vec::new()));

    assert!(matches!(
        map.insert(strong("a", 1), dead, guard),
        Insert::Inserted
    ));
    assert!(matches!(
        map.insert(strong("a", 2), dead, guard),
        Insert::Exists { .. }
    ));
    let h = map.hash("a");
    assert!(matches!(
        map.write_if(h, "a", |_| None, guard),
        Written::Refused(_)
    ));
    let new = strong("a", 3).into_shared(guard);
    assert!(matches!(
        map.write_if(h, "a", |_| Some(Write::Replace(new)), guard),
        Written::Done(_)
    ));
    assert!(matches!(
        map.write_if(h, "a", |_| Some(Write::Remove(Reason::Explicit)), guard),
        Written::Done(_)
    ));
    assert!(matches!(
        map.write_if(h, "a", |_| Some(Write::Remove(Reason::Explicit)), guard),
        Written::NotFound
    ));
    assert!(matches!(
        map.insert(strong("a", 4), dead, guard),
        Insert::Inserted
    )); // reuses its tombstone
    let owner = Arc::new(0);
    map.note_mortal();
    assert!(matches!(
        map.insert(weak("w", 5, &owner), dead, guard),
        Insert::Inserted
    ));
    assert!(matches!(
        map.insert(weak("x", 6, &owner), dead, guard),
        Insert::Inserted
    ));
    drop(owner);
    let owner2 = Arc::new(1);
    assert!(matches!(
        map.insert(weak("w", 7, &owner2), dead, guard),
        Insert::Inserted
    ));
    // A migration: copies report nothing; the dead weak `x` is dropped, and reported.
    map.start_migration(map.root(guard), guard);
    assert_eq!(map.iter(guard).count(), 2);

    let log = COMMITS.with(|c| c.borrow_mut().take()).unwrap();
    let want: Vec<(String, Tag, &str)> = vec![
        ("a".into(), tag(1), "bound"),
        ("a".into(), tag(3), "replaced"),
        ("a".into(), tag(3), "removed"),
        ("a".into(), tag(4), "bound"),
        ("w".into(), wtag(5), "bound"),
        ("x".into(), wtag(6), "bound"),
        ("w".into(), wtag(7), "bound over dead"),
        ("x".into(), wtag(6), "removed dead weak"),
    ];
    assert_eq!(log, want);
    assert_eq!(map.len(), 2, "the length follows the commits");
    drop(owner2);
}
