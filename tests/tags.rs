//! Tags: [`InstanceId`], [`Generation`] and [`Tag`] as values (their contract is in the crate
//! docs), and the promises the registry makes about them: fresh instance ids are unique across
//! threads, and generations are unique and strictly increase along one thread's writes, of every
//! kind, `clear()` included.
//!
//! Every registry is built with a collector of its own (see `tests/api.rs`); loops are small
//! under Miri.

use std::collections::{BTreeSet, HashSet};
use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::sync::{Arc, Barrier};

use genreg::epoch::Collector;
use genreg::{Ensured, Generation, InstanceId, Registry, Tag};

fn registry<V: Send + Sync + 'static>() -> Registry<V> {
    Registry::builder().collector(Collector::new()).build()
}

const fn scale(native: usize, miri: usize) -> usize {
    if cfg!(miri) { miri } else { native }
}

fn assert_value_type<T: Copy + Eq + Hash + Ord + Debug + Display + Send + Sync + 'static>() {}

#[test]
fn tags_are_plain_values() {
    assert_value_type::<Tag>();
    assert_value_type::<InstanceId>();
    assert_value_type::<Generation>();
    // Newtypes, not bare integers, and small.
    assert_eq!(std::mem::size_of::<InstanceId>(), 8);
    assert_eq!(std::mem::size_of::<Generation>(), 8);
    assert_eq!(std::mem::size_of::<Tag>(), 16);
}

#[test]
fn raw_round_trips() {
    for raw in [0, 1, 42, u64::MAX / 2, u64::MAX] {
        assert_eq!(InstanceId::from_raw(raw).as_raw(), raw);
        assert_eq!(Generation::from_raw(raw).as_raw(), raw);
    }
    let tag = Tag::new(InstanceId::from_raw(3), Generation::from_raw(9));
    assert_eq!(tag.instance(), InstanceId::from_raw(3));
    assert_eq!(tag.generation(), Generation::from_raw(9));
    // Copy: the original is still usable after a move-by-copy.
    let copy = tag;
    assert_eq!(copy, tag);
    const CONST_TAG: Tag = Tag::new(InstanceId::from_raw(1), Generation::from_raw(2));
    assert_eq!(CONST_TAG.generation().as_raw(), 2);
}

#[test]
fn equality_and_hashing_use_both_parts() {
    let i1 = InstanceId::from_raw(1);
    let i2 = InstanceId::from_raw(2);
    let g1 = Generation::from_raw(10);
    let g2 = Generation::from_raw(20);
    let tags = [
        Tag::new(i1, g1),
        Tag::new(i1, g2),
        Tag::new(i2, g1),
        Tag::new(i2, g2),
    ];
    for (a, ta) in tags.iter().enumerate() {
        for (b, tb) in tags.iter().enumerate() {
            assert_eq!(ta == tb, a == b, "{ta:?} vs {tb:?}");
        }
    }
    let set: HashSet<Tag> = tags.iter().chain(tags.iter()).copied().collect();
    assert_eq!(set.len(), 4);
    assert!(set.contains(&Tag::new(InstanceId::from_raw(2), Generation::from_raw(10))));
    let ids: HashSet<InstanceId> = [i1, i2, InstanceId::from_raw(1)].into_iter().collect();
    assert_eq!(ids.len(), 2);
    let gens: HashSet<Generation> = [g1, g2, Generation::from_raw(10)].into_iter().collect();
    assert_eq!(gens.len(), 2);
}

#[test]
fn ordering() {
    assert!(Generation::from_raw(1) < Generation::from_raw(2));
    assert!(Generation::from_raw(u64::MAX) > Generation::from_raw(0));
    assert!(InstanceId::from_raw(1) < InstanceId::from_raw(2));
    // For one instance, tags order by generation: a newer binding is a greater tag.
    let i = InstanceId::from_raw(5);
    let older = Tag::new(i, Generation::from_raw(3));
    let newer = Tag::new(i, Generation::from_raw(4));
    assert!(older < newer);
    assert_eq!(older.cmp(&older), std::cmp::Ordering::Equal);
    // Ord is total and agrees with Eq.
    let tags: Vec<Tag> = (0..4u64)
        .flat_map(|a| {
            (0..4u64).map(move |b| Tag::new(InstanceId::from_raw(a), Generation::from_raw(b)))
        })
        .collect();
    let sorted: BTreeSet<Tag> = tags.iter().rev().copied().collect();
    assert_eq!(sorted.len(), tags.len());
    for a in &tags {
        for b in &tags {
            assert_eq!(a.cmp(b) == std::cmp::Ordering::Equal, a == b);
            assert_eq!(a.cmp(b), b.cmp(a).reverse());
        }
    }
}

#[test]
fn display_and_debug_formats() {
    let i = InstanceId::from_raw(42);
    let g = Generation::from_raw(7);
    let t = Tag::new(i, g);
    assert_eq!(i.to_string(), "#42");
    assert_eq!(g.to_string(), "g7");
    assert_eq!(t.to_string(), "#42@g7");
    assert_eq!(format!("{i:?}"), "InstanceId(42)");
    assert_eq!(format!("{g:?}"), "Generation(7)");
    assert_eq!(format!("{t:?}"), "Tag(#42@g7)");
    let max = Tag::new(
        InstanceId::from_raw(u64::MAX),
        Generation::from_raw(u64::MAX),
    );
    assert_eq!(max.to_string(), format!("#{0}@g{0}", u64::MAX));
    // Distinct tags display distinctly.
    let shown: HashSet<String> = [
        Tag::new(InstanceId::from_raw(1), Generation::from_raw(12)),
        Tag::new(InstanceId::from_raw(11), Generation::from_raw(2)),
        Tag::new(InstanceId::from_raw(112), Generation::from_raw(0)),
    ]
    .iter()
    .map(Tag::to_string)
    .collect();
    assert_eq!(shown.len(), 3);
}

#[test]
fn fresh_instance_ids_are_unique_across_threads() {
    let threads = 4;
    let per_thread = scale(2000, 30);
    let barrier = Barrier::new(threads);
    let all: Vec<InstanceId> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    (0..per_thread)
                        .map(|_| InstanceId::fresh())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let unique: HashSet<InstanceId> = all.iter().copied().collect();
    assert_eq!(unique.len(), threads * per_thread);
    assert!(
        !unique.contains(&InstanceId::from_raw(0)),
        "0 is never minted"
    );
}

#[test]
fn registry_mints_a_fresh_instance_per_registration() {
    let reg: Registry<u32> = registry();
    let mut seen = HashSet::new();
    for i in 0..10 {
        let tag = reg.register(&format!("n{i}"), i).unwrap().detach();
        assert!(seen.insert(tag.instance()));
        assert_ne!(tag.instance(), InstanceId::from_raw(0));
    }
    // The same name registered twice in a row gets two instances.
    let a = reg.register("again", 1).unwrap();
    let a_instance = a.tag().instance();
    drop(a);
    let b = reg.register("again", 2).unwrap();
    assert_ne!(b.tag().instance(), a_instance);
    // Auto names too.
    let c = reg.register_auto("auto", 3).unwrap();
    assert!(seen.insert(c.tag().instance()));
    // A caller-supplied instance is kept as given, also by replacement.
    let mine = InstanceId::from_raw(123_456);
    let mut g = reg.register_as("mine", mine, 4).unwrap();
    assert_eq!(g.tag().instance(), mine);
    assert_eq!(g.replace(5).unwrap().instance(), mine);
    assert_eq!(
        reg.replace_if_same("mine", g.tag(), 6).unwrap().instance(),
        mine
    );
}

#[test]
fn generations_strictly_increase_across_every_write() {
    let reg: Registry<Arc<u32>> = registry();
    let mut tags: Vec<Tag> = Vec::new();
    let mut keep = Vec::new();

    let a = reg.register("a", Arc::new(1)).unwrap();
    tags.push(a.tag());
    let me = InstanceId::fresh();
    let b = reg.register_as("b", me, Arc::new(2)).unwrap();
    tags.push(b.tag());
    let auto = reg.register_auto("w", Arc::new(3)).unwrap();
    tags.push(auto.tag());
    let t = reg.replace_if_same("a", a.tag(), Arc::new(4)).unwrap();
    tags.push(t);
    let mut b = b;
    tags.push(b.replace(Arc::new(5)).unwrap());
    match reg
        .ensure_registered("c", InstanceId::fresh(), Arc::new(6))
        .unwrap()
    {
        Ensured::Registered(g) => {
            tags.push(g.tag());
            keep.push(g);
        }
        Ensured::Existing { tag: t, .. } => panic!("c was free: {t:?}"),
    }
    let owner = Arc::new(7);
    let weak = reg.register_weak("weak", &owner).unwrap();
    tags.push(weak.tag());
    // A refused registration in between changes nothing about the order of later ones.
    assert!(reg.register("a", Arc::new(8)).is_err());
    // Re-registration of a removed name.
    drop(auto);
    tags.push(reg.register("w-1", Arc::new(9)).unwrap().detach());
    // Clear, then bindings of the same names again.
    let before_clear = *tags.last().unwrap();
    assert!(reg.clear() >= 5);
    for name in ["a", "b", "c", "weak", "w-1"] {
        tags.push(reg.register(name, Arc::new(10)).unwrap().detach());
    }
    assert!(tags.last().unwrap().generation() > before_clear.generation());
    // Several clear cycles.
    for _ in 0..3 {
        reg.clear();
        tags.push(reg.register("a", Arc::new(11)).unwrap().detach());
    }

    for pair in tags.windows(2) {
        assert!(
            pair[0].generation() < pair[1].generation(),
            "generation went from {} to {}",
            pair[0],
            pair[1]
        );
    }
    let unique: HashSet<Generation> = tags.iter().map(|t| t.generation()).collect();
    assert_eq!(unique.len(), tags.len(), "a generation is never reused");
    drop((a, b, weak, keep, owner));
}

#[test]
fn generations_are_unique_across_threads() {
    let threads = 4;
    let per_thread = scale(500, 10);
    let reg: Registry<usize> = registry();
    let barrier = Barrier::new(threads);
    let per_thread_tags: Vec<Vec<Tag>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (reg, barrier) = (&reg, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let mut tags = Vec::new();
                    for i in 0..per_thread {
                        let name = format!("t{t}-{}", i % 4);
                        // Register, replace, unregister: three writes, three generations.
                        let mut g = reg.register(&name, i).unwrap();
                        tags.push(g.tag());
                        tags.push(g.replace(i + 1).unwrap());
                        tags.push(g.unregister().unwrap());
                    }
                    tags
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = HashSet::new();
    for tags in &per_thread_tags {
        // Registering and replacing take a new generation each, in program order per thread
        // (unregister reports the tag it removed, the replaced one).
        for chunk in tags.chunks(3) {
            assert!(chunk[0].generation() < chunk[1].generation());
            assert_eq!(chunk[2], chunk[1]);
        }
        for pair in tags.chunks(3).collect::<Vec<_>>().windows(2) {
            assert!(pair[0][1].generation() < pair[1][0].generation());
        }
        for chunk in tags.chunks(3) {
            assert!(all.insert(chunk[0].generation()));
            assert!(all.insert(chunk[1].generation()));
        }
    }
    assert_eq!(all.len(), threads * per_thread * 2);
    assert!(reg.is_empty());
}

#[test]
fn tags_of_separate_registries_do_not_interfere() {
    // Generations are per registry; instance ids are per process. A tag from one registry used
    // on another is just a tag that does not match (unless it happens to be identical, which
    // needs the same instance id: fresh ids never coincide).
    let r1: Registry<u32> = registry();
    let r2: Registry<u32> = registry();
    let t1 = r1.register("same", 1).unwrap().detach();
    let t2 = r2.register("same", 2).unwrap().detach();
    assert_ne!(t1.instance(), t2.instance());
    assert!(r2.unregister_if_same("same", t1).is_err());
    assert!(r1.unregister_if_same("same", t2).is_err());
    assert_eq!(r1.get_if("same", t1), Some(1));
    assert_eq!(r2.get_if("same", t2), Some(2));
}

/// Generations come in per-thread blocks, cached per registry: one thread writing to many
/// registries in turn (more than its cache holds, so entries are evicted and blocks retaken)
/// still gets unique, increasing generations from each registry; and a replacement's
/// generation is above the replaced one even when that one came from another thread's block.
#[test]
fn generation_blocks_with_many_registries_and_threads() {
    let regs: Vec<Registry<usize>> = (0..9).map(|_| registry()).collect();
    let mut seen: Vec<Vec<Generation>> = vec![Vec::new(); regs.len()];
    for round in 0..scale(200, 20) {
        for (k, reg) in regs.iter().enumerate() {
            let tag = reg.register_detached(&format!("n{round}"), round).unwrap();
            if let Some(last) = seen[k].last() {
                assert!(tag.generation() > *last, "registry {k}: not increasing");
            }
            seen[k].push(tag.generation());
        }
    }
    for gens in &seen {
        let unique: HashSet<_> = gens.iter().collect();
        assert_eq!(unique.len(), gens.len());
    }
    // Another thread takes a block far ahead; replacing its binding here still goes up.
    let reg = &regs[0];
    let theirs = std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..scale(300, 30) {
                reg.register_detached(&format!("far{i}"), i).unwrap();
            }
            reg.register_detached("shared", 0).unwrap()
        })
        .join()
        .unwrap()
    });
    let mine = reg.replace_if_same("shared", theirs, 1).unwrap();
    assert!(mine.generation() > theirs.generation());
}
