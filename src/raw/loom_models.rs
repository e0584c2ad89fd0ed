//! loom models of the raw core's protocols that need more than the public API can set up: they
//! build a table's state slot by slot, then race the real functions on it.
//!
//! Run with the rest of the loom suite (`ci/loom.sh`):
//! ```sh
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom -C debug-assertions" \
//!   cargo test --release --lib --target-dir target/loom -- --nocapture
//! ```

use std::sync::Arc;
use std::time::Instant;

use crossbeam_epoch::{Collector, Owned, Shared};
use loom::thread;

use super::node::{NameBuf, Node, Stored};
use super::table::home;
use super::{Insert, RawMap, Reserve};
use crate::sync::Ordering;
use crate::tag::{Generation, InstanceId, Tag};

const SEED: u64 = 0x5eed_0002;

fn node(map: &RawMap<u32>, name: &str, g: u64) -> Owned<Node<u32>> {
    Owned::new(Node::new(
        map.hash(name),
        Tag::new(InstanceId::from_raw(1), Generation::from_raw(g)),
        NameBuf::new(name),
        Stored::Strong(g as u32),
    ))
}

/// The first name `{prefix}{k}` whose home is `slot` in a table of `capacity` slots.
fn name_at(map: &RawMap<u32>, prefix: &str, slot: usize, capacity: usize) -> String {
    (0..100_000)
        .map(|k| format!("{prefix}{k}"))
        .find(|n| home(map.hash(n), capacity - 1) == slot)
        .expect("some name hashes there")
}

fn check(model: &str, bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let iterations = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&iterations);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(bound);
    builder.max_branches = 100_000;
    builder.max_duration = None;
    builder.max_permutations = None;
    let started = Instant::now();
    builder.check(move || {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let iterations = iterations.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "loom model {model}: preemption bound {bound}, {iterations} iterations, {:.1?}",
        started.elapsed()
    );
    assert!(
        iterations > 1,
        "{model}: loom explored a single interleaving"
    );
}

/// Issue 8, bug 1: `reserve` on a next table against `install`, with three threads (two
/// cannot reach it: one grant in the window fills the table exactly, at most).
///
/// A 4-slot old table holds 3 live names and one empty slot (sealed); its migration goes to an
/// 8-slot table holding 4 fresh names (4 + 3 pending copies = 7, the bound). Then, racing: G1
/// and G2 each run the real `reserve` on the next table and, if granted, claim an `Empty` slot
/// of their own with one CAS (what `insert` does next); H copies two of the live names with
/// the real `copy_slot` / `install`. Whatever the interleaving, every copy must still find
/// room: the main thread then finishes the migration (the third copy is where the bug
/// panicked) and every name must be bound. The homes are chosen so that the four racing
/// writes target four different slots (a lost CAS would hide the bug). The full `insert`
/// around `reserve` is left to the deterministic replay in `raw/tests.rs` and the stress test:
/// with it, this model does not finish in reasonable time.
#[test]
fn reserve_races_install() {
    check("reserve_races_install", 3, || {
        let collector = Collector::new();
        let map = Arc::new(RawMap::<u32>::new(4, SEED));
        let handle = collector.register();
        let guard = &handle.pin();
        let root = map.root(guard);
        assert_eq!(root.capacity(), 4);
        // Old table: live names homed (in the 8-slot table) at 6, 7 and 0, so at 2, 3 and 0
        // in the old one; slot 1 stays empty.
        let live = [
            name_at(&map, "L", 6, 8),
            name_at(&map, "M", 7, 8),
            name_at(&map, "N", 0, 8),
        ];
        for (g, name) in live.iter().enumerate() {
            let n = node(&map, name, g as u64).into_shared(guard);
            let i = home(map.hash(name), root.mask);
            root.cas(i, Shared::null(), n, guard).expect("empty");
            root.claimed.fetch_add(1, Ordering::Relaxed);
            map.len.add(1);
        }
        map.start_migration(root, guard);
        let m = root.migration(guard).expect("started");
        let next = root.next(guard).expect("next");
        assert_eq!(next.capacity(), 8);
        root.cursor.store(root.capacity(), Ordering::Relaxed);
        map.copy_slot_counted(root, m, 1, guard);
        // Four fresh names in the next table, at 0..4.
        let mut names: Vec<String> = live.to_vec();
        for slot in 0..4 {
            let name = name_at(&map, "F", slot, 8);
            assert!(matches!(
                map.insert(node(&map, &name, 10 + slot as u64), |_| false, guard),
                Insert::Inserted
            ));
            names.push(name);
        }
        assert_eq!(next.claimed.load(Ordering::Relaxed), 4);
        let copied: Vec<usize> = live[..2]
            .iter()
            .map(|n| home(map.hash(n), root.mask))
            .collect();

        // G1 and G2: reserve, then claim slot 4 or 5 (empty, and no copy's destination).
        let spawn_claim = |name: String, slot: usize| {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                // SAFETY: nothing is retired while the three threads race (no removal, and no
                // promotion: H leaves one old slot uncopied), so no memory they can reach is
                // freed; unprotected guards keep the pins' own atomics out of the model.
                let guard = unsafe { crossbeam_epoch::unprotected() };
                let next = map
                    .root(guard)
                    .next(guard)
                    .expect("the migration cannot finish before H's copies are joined");
                match map.reserve(next, guard) {
                    Reserve::Granted => {
                        let n = node(&map, &name, 20 + slot as u64).into_shared(guard);
                        next.cas(slot, Shared::null(), n, guard)
                            .expect("a slot of its own");
                        map.len.add(1);
                        Some(name)
                    }
                    Reserve::HelpPrevious => None,
                    Reserve::Seal => unreachable!("only a root table seals"),
                }
            })
        };
        let t1 = spawn_claim(name_at(&map, "G", 4, 8), 4);
        let t2 = spawn_claim(name_at(&map, "H", 5, 8), 5);
        // H: two copies. A thread of its own (the main thread only joins), so that the bug's
        // schedule needs two preemptions (G1 and G2 each stopped inside `reserve`); H running
        // to its end, and the joins, cost none.
        let h = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                // SAFETY: as for G1 and G2.
                let guard = unsafe { crossbeam_epoch::unprotected() };
                let root = map.root(guard);
                let m = root.migration(guard).expect("migrating");
                for &i in &copied {
                    map.copy_slot_counted(root, m, i, guard);
                }
            })
        };
        h.join().unwrap();
        names.extend(t1.join().unwrap());
        names.extend(t2.join().unwrap());

        // Finish the migration (the third copy needs a slot) and check every name.
        assert_eq!(map.iter(guard).count(), names.len());
        for name in &names {
            let found = map.get(map.hash(name), name, guard);
            assert!(found.is_some(), "{name} lost");
        }
    });
}

/// Found by the first version of `reserve_races_install` (as a writer spinning for ever): a
/// thread whose promotion CAS lost must not leave the new root's `prev` set, or a writer
/// refused room there waits for the promoting thread to clear it (not lock-free). Two threads
/// finish the same migration; whichever returns first, the new root has no `prev` by then.
#[test]
fn promotion_never_leaves_a_stale_prev() {
    check("promotion_never_leaves_a_stale_prev", 2, || {
        let collector = Collector::new();
        let map = Arc::new(RawMap::<u32>::new(4, SEED));
        let (old, next) = {
            let handle = collector.register();
            let guard = &handle.pin();
            let root = map.root(guard);
            let name = name_at(&map, "P", 0, 4);
            let n = node(&map, &name, 1).into_shared(guard);
            root.cas(0, Shared::null(), n, guard).expect("empty");
            root.claimed.fetch_add(1, Ordering::Relaxed);
            map.len.add(1);
            map.start_migration(root, guard);
            let m = root.migration(guard).expect("started");
            // Every slot final, none counted, every chunk handed out: only the promotion is
            // left.
            map.copy_all(root, m, guard);
            root.cursor.store(root.capacity(), Ordering::Relaxed);
            (
                std::ptr::from_ref(root).cast::<u8>() as usize,
                m.next.cast::<u8>() as usize,
            )
        };
        let finish = move |map: &RawMap<u32>, collector: &Collector| {
            let handle = collector.register();
            let guard = &handle.pin();
            let root = map.root(guard);
            match root.migration(guard) {
                // Still the old root: finish its migration (a walk does this).
                Some(m) if std::ptr::from_ref(root).cast::<u8>() as usize == old => {
                    map.finish_migration(root, m, guard)
                }
                // Already the new root: what a writer refused room there does.
                _ => map.help_prev(root, guard),
            }
            let root = map.root(guard);
            assert_eq!(
                std::ptr::from_ref(root).cast::<u8>() as usize,
                next,
                "promoted"
            );
            assert!(root.prev(guard).is_none(), "the new root still has a prev");
        };
        let t = {
            let (map, collector) = (Arc::clone(&map), collector.clone());
            thread::spawn(move || finish(&map, &collector))
        };
        finish(&map, &collector);
        t.join().unwrap();
    });
}
