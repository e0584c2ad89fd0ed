//! Multi-threaded stress tests with checkable invariants.
//!
//! Every test starts its threads together (a `Barrier`, inside `std::thread::scope`), records
//! what each operation returned, and checks invariants on the records afterwards. None asserts
//! anything about time. The tests in this file run one at a time (see [`serial`]): they share
//! crossbeam-epoch's global collector, and the memory tests measure it, so a test that pins
//! (or churns) next to them would distort their figures.
//!
//! | test | invariant |
//! | --- | --- |
//! | `racing_registrations_have_one_winner` | of N racing `register`s of one name exactly one wins; each loser's `AlreadyRegistered { current }` is the winner's tag |
//! | `unregister_if_same_removes_exactly_the_named_binding` | every successful conditional removal removed the binding it named; per-name reconstruction agrees with the final state |
//! | `no_registration_is_lost_across_migrations` | names registered while others churn and the table grows from capacity 1 are all there; iteration during migrations sees every name present throughout exactly once |
//! | `readers_never_see_torn_or_freed_entries` | a value read is always intact and consistent with the tag read with it |
//! | `weak_bindings_hold_while_owned_and_never_block_once_dead` | a weak binding stays while its owner lives; once dead it is never read and never blocks its name |
//! | `memory_stays_bounded_under_churn` | live values, capacity and RSS stay bounded over millions of register/unregister cycles |
//! | `stalled_pinned_thread_holds_back_reclamation` | a pinned thread makes garbage grow with churn; unpinning releases it |
//! | `linearizable_short_histories` | short real-thread histories on two names are linearizable (Wing–Gong checker) |
//! | `checker_rejects_bad_histories` | the checker is not vacuous |
//! | `ttl_churn_keeps_renewed_bindings_and_reaps_the_rest` | under TTL churn with a moving `ManualClock`, a reaper thread and `purge_dead`, bindings renewed in time are never removed; a keepalive that returned `Ok(d)` leaves its binding current until `d` (and no removal as expired is seen before `d`); churned bindings are all removed, once, as expired; `len` stays bounded and ends equal to the renewed set |
//! | `pool_leases_are_exclusive_and_released_once` | with more threads than slots, leasing every way there is (`acquire`, `acquire_for`, `acquire_timeout`, `get_or_acquire`), a member never has more than `max_in_flight` holders (a marker per member); every lease is released once: allocations = releases = leases handed out, nothing in use or waiting at the end |
//!
//! Sizes: the memory test runs 10,000,000 register/unregister cycles in an optimised build
//! (`cargo test --release`: 4-8 s on 2 shared cores) and 1,000,000 in an unoptimised one
//! (about ten times slower per cycle), unless `GENREG_STRESS_FULL=1` (10M) or
//! `GENREG_STRESS_CYCLES=n` says otherwise; the stalled-pin test always churns 500,000 cycles
//! (its garbage grows with them by design). `GENREG_STRESS_SEED=n` fixes the seed of the
//! operation mixes (thread interleavings are not reproducible anyway). The small tests also
//! run under Miri, with their own collector and fewer rounds. Run with `--nocapture` to see
//! the measured figures.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::thread;

use genreg::{Ensured, Error, InstanceId, Registration, Registry, Tag};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Runs the tests of this file one at a time (see the module docs). A failed test poisons the
/// lock; the next test takes it anyway.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A registry for a test. Under Miri it gets its own collector (the global one leaks at exit
/// under Miri); otherwise the default, global one, which is what users get.
fn new_registry<V: Send + Sync + 'static>(capacity: usize) -> Registry<V> {
    let builder = Registry::builder().capacity(capacity);
    if cfg!(miri) {
        builder.collector(genreg::epoch::Collector::new()).build()
    } else {
        builder.build()
    }
}

/// The seed for the operation mix of a test: `GENREG_STRESS_SEED`, or a random one (printed).
fn seed(test: &str) -> u64 {
    let seed = std::env::var("GENREG_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(test)
        });
    println!("{test}: GENREG_STRESS_SEED={seed}");
    seed
}

/// xorshift64*: a small deterministic generator for operation mixes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng((seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            | 1);
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Packs (thread, sequence number) into a value.
fn value_of(thread: usize, seq: usize) -> u64 {
    ((thread as u64) << 32) | seq as u64
}

/// The page size, from the auxiliary vector (`AT_PAGESZ`; pairs of native-endian 64-bit words
/// on 64-bit Linux), or 4 KiB if it cannot be read.
fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return 4096;
    };
    auxv.chunks_exact(16)
        .map(|pair| {
            let key = u64::from_ne_bytes(pair[..8].try_into().unwrap());
            let value = u64::from_ne_bytes(pair[8..].try_into().unwrap());
            (key, value)
        })
        .find(|&(key, _)| key == AT_PAGESZ)
        .map_or(4096, |(_, value)| value)
}

/// The resident set size of this process in bytes (`/proc/self/statm`), if it can be read.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident * page_size())
}

const MIB: f64 = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------
// 1. Racing registrations
// ---------------------------------------------------------------------------------------------

/// What one thread's registration attempt in one round returned.
#[derive(Clone, Copy, Debug)]
enum Attempt {
    Won(Tag),
    /// Lost: the `current` tag reported, and whether the value handed back was our own.
    Lost {
        current: Tag,
        own_value_back: bool,
    },
}

#[test]
fn racing_registrations_have_one_winner() {
    let _serial = serial();
    let rounds_per_size = if cfg!(miri) { 3 } else { 1_000 };
    let sizes = if cfg!(miri) { 4..=4 } else { 4..=8 };
    let mut total_rounds = 0;
    for threads in sizes {
        // Capacity 1: the races run across growth, and the names reused round after round leave
        // tombstones, so rebuilding migrations run during races too.
        let registry: Registry<u64> = new_registry(1);
        // Half the rounds every thread registers the same instance (only generations differ).
        let shared: Vec<InstanceId> = (0..rounds_per_size).map(|_| InstanceId::fresh()).collect();
        let start = Barrier::new(threads);
        let raced = Barrier::new(threads);
        let results: Vec<Vec<Attempt>> = thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (registry, start, raced, shared) = (&registry, &start, &raced, &shared);
                    s.spawn(move || {
                        let mut log = Vec::with_capacity(rounds_per_size);
                        for (round, &instance) in shared.iter().enumerate() {
                            let name = format!("race-{}", round % 8);
                            let value = value_of(t, round);
                            start.wait();
                            let attempt = if round % 2 == 0 {
                                registry.register(&name, value)
                            } else {
                                registry.register_as(&name, instance, value)
                            };
                            let attempt = match attempt {
                                Ok(guard) => Attempt::Won(guard.detach()),
                                Err(rejected) => {
                                    let (error, back) = rejected.into_parts();
                                    match error {
                                        Error::AlreadyRegistered { name: n, current } => {
                                            assert_eq!(n, name);
                                            Attempt::Lost {
                                                current,
                                                own_value_back: back == value,
                                            }
                                        }
                                        other => panic!("round {round}: unexpected {other:?}"),
                                    }
                                }
                            };
                            raced.wait();
                            if let Attempt::Won(tag) = attempt {
                                // Free the name for the next round that uses it; this also
                                // proves the winner's binding was the current one.
                                let removed = registry.unregister_if_same(&name, tag).unwrap();
                                assert_eq!((removed.tag(), *removed.value()), (tag, value));
                            }
                            log.push(attempt);
                        }
                        log
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for round in 0..rounds_per_size {
            let winners: Vec<(usize, Tag)> = (0..threads)
                .filter_map(|t| match results[t][round] {
                    Attempt::Won(tag) => Some((t, tag)),
                    Attempt::Lost { .. } => None,
                })
                .collect();
            assert_eq!(
                winners.len(),
                1,
                "{threads} threads, round {round}: {winners:?}"
            );
            let (_, winner) = winners[0];
            if round % 2 == 1 {
                assert_eq!(winner.instance(), shared[round]);
            }
            for (t, result) in results.iter().enumerate() {
                if let Attempt::Lost {
                    current,
                    own_value_back,
                } = result[round]
                {
                    assert_eq!(
                        current, winner,
                        "thread {t}, round {round}: wrong current tag"
                    );
                    assert!(
                        own_value_back,
                        "thread {t}, round {round}: value not handed back"
                    );
                }
            }
        }
        assert!(registry.is_empty());
        total_rounds += rounds_per_size;
    }
    println!("racing registrations: {total_rounds} rounds, one winner each");
}

// ---------------------------------------------------------------------------------------------
// 2. Conditional removal removes exactly what it names
// ---------------------------------------------------------------------------------------------

/// One outcome, as recorded by the thread that saw it. Names are indices into `NAMES`.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// A binding was created (register, register_as, ensure_registered, or the new side of a
    /// replace) with this tag and value.
    Bound { name: usize, tag: Tag, value: u64 },
    /// A binding was removed by a successful conditional operation (unregister_if_same,
    /// `Registration::unregister`, unregister_instance, or the old side of a replace). `value`
    /// is what the operation returned, where it returns one.
    Unbound {
        name: usize,
        tag: Tag,
        value: Option<u64>,
    },
    /// A binding was seen (get, or the `current` of an error); `value` where one was returned.
    Seen {
        name: usize,
        tag: Tag,
        value: Option<u64>,
    },
}

/// Per-thread memory of tags, to pick from (most are stale by the time they are used).
struct Tags {
    per_name: Vec<Vec<Tag>>,
}

impl Tags {
    fn remember(&mut self, name: usize, tag: Tag) {
        let tags = &mut self.per_name[name];
        if tags.len() == 8 {
            tags.remove(0);
        }
        tags.push(tag);
    }

    fn pick(&self, name: usize, rng: &mut Rng) -> Option<Tag> {
        let tags = &self.per_name[name];
        (!tags.is_empty()).then(|| tags[rng.below(tags.len())])
    }
}

#[test]
fn unregister_if_same_removes_exactly_the_named_binding() {
    let _serial = serial();
    const NAMES: usize = 6;
    let threads = 4;
    let ops = if cfg!(miri) { 120 } else { 100_000 };
    let seed = seed("unregister_if_same_removes_exactly_the_named_binding");
    let registry: Registry<u64> = new_registry(1);
    let names: Vec<String> = (0..NAMES).map(|i| format!("svc-{i}")).collect();
    // Names 2k and 2k+1 share an instance id, so that register_as re-registers the same
    // instance (only the generation tells its bindings apart) and unregister_instance removes
    // up to two names.
    let instances: Vec<InstanceId> = (0..NAMES / 2).map(|_| InstanceId::fresh()).collect();
    let start = Barrier::new(threads);
    // Conditional removals refused because the tag was stale (the case this test is about).
    let refused = AtomicUsize::new(0);

    let logs: Vec<Vec<Event>> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (registry, names, instances, start) = (&registry, &names, &instances, &start);
                let refused = &refused;
                s.spawn(move || {
                    let mut rng = Rng::new(seed, t as u64);
                    let mut log = Vec::new();
                    let mut tags = Tags {
                        per_name: vec![Vec::new(); NAMES],
                    };
                    let mut guards: Vec<(usize, Registration<u64>)> = Vec::new();
                    start.wait();
                    for seq in 0..ops {
                        let k = rng.below(NAMES);
                        let name = names[k].as_str();
                        let value = value_of(t, seq);
                        let op = rng.below(100);
                        match op {
                            // Register: fresh instance, the name's shared instance, or the
                            // idempotent form.
                            0..=29 => {
                                let result = match op % 3 {
                                    0 => registry.register(name, value).map(Some),
                                    1 => registry
                                        .register_as(name, instances[k / 2], value)
                                        .map(Some),
                                    _ => match registry.ensure_registered(
                                        name,
                                        instances[k / 2],
                                        value,
                                    ) {
                                        Ok(Ensured::Registered(guard)) => Ok(Some(guard)),
                                        Ok(Ensured::Existing { tag, .. }) => {
                                            assert_eq!(tag.instance(), instances[k / 2]);
                                            log.push(Event::Seen {
                                                name: k,
                                                tag,
                                                value: None,
                                            });
                                            tags.remember(k, tag);
                                            Ok(None)
                                        }
                                        Err(rejected) => Err(rejected),
                                    },
                                };
                                match result {
                                    Ok(Some(guard)) => {
                                        let tag = guard.tag();
                                        log.push(Event::Bound {
                                            name: k,
                                            tag,
                                            value,
                                        });
                                        tags.remember(k, tag);
                                        if op < 10 && guards.len() < 4 {
                                            guards.push((k, guard));
                                        } else {
                                            guard.detach();
                                        }
                                    }
                                    Ok(None) => {}
                                    Err(rejected) => {
                                        let (error, back) = rejected.into_parts();
                                        assert_eq!(back, value, "value not handed back");
                                        let Error::AlreadyRegistered { current, .. } = error else {
                                            panic!("unexpected {error:?}");
                                        };
                                        log.push(Event::Seen {
                                            name: k,
                                            tag: current,
                                            value: None,
                                        });
                                        tags.remember(k, current);
                                    }
                                }
                            }
                            // Conditional removal with a remembered (often stale) tag.
                            30..=59 => {
                                let Some(asked) = tags.pick(k, &mut rng) else {
                                    continue;
                                };
                                match registry.unregister_if_same(name, asked) {
                                    Ok(entry) => {
                                        assert_eq!(entry.tag(), asked, "removed another binding");
                                        log.push(Event::Unbound {
                                            name: k,
                                            tag: asked,
                                            value: Some(*entry.value()),
                                        });
                                    }
                                    Err(Error::TagMismatch {
                                        expected, current, ..
                                    }) => {
                                        assert_eq!(expected, asked);
                                        assert_ne!(current, asked);
                                        refused.fetch_add(1, Ordering::Relaxed);
                                        log.push(Event::Seen {
                                            name: k,
                                            tag: current,
                                            value: None,
                                        });
                                        tags.remember(k, current);
                                    }
                                    Err(Error::NotFound { .. }) => {}
                                    Err(other) => panic!("unexpected {other:?}"),
                                }
                            }
                            // Replace with a remembered tag.
                            60..=74 => {
                                let Some(asked) = tags.pick(k, &mut rng) else {
                                    continue;
                                };
                                match registry.replace_if_same(name, asked, value) {
                                    Ok(new) => {
                                        assert_eq!(new.instance(), asked.instance());
                                        assert!(new.generation() > asked.generation());
                                        log.push(Event::Unbound {
                                            name: k,
                                            tag: asked,
                                            value: None,
                                        });
                                        log.push(Event::Bound {
                                            name: k,
                                            tag: new,
                                            value,
                                        });
                                        tags.remember(k, new);
                                    }
                                    Err(rejected) => {
                                        let (error, back) = rejected.into_parts();
                                        assert_eq!(back, value);
                                        match error {
                                            Error::TagMismatch { current, .. } => {
                                                assert_ne!(current, asked);
                                                log.push(Event::Seen {
                                                    name: k,
                                                    tag: current,
                                                    value: None,
                                                });
                                                tags.remember(k, current);
                                            }
                                            Error::NotFound { .. } => {}
                                            other => panic!("unexpected {other:?}"),
                                        }
                                    }
                                }
                            }
                            // Look up.
                            75..=92 => {
                                if let Some(entry) = registry.get(name) {
                                    log.push(Event::Seen {
                                        name: k,
                                        tag: entry.tag(),
                                        value: Some(*entry.value()),
                                    });
                                    tags.remember(k, entry.tag());
                                }
                            }
                            // Unregister through a held guard, which reports its outcome.
                            93..=97 => {
                                if !guards.is_empty() {
                                    let (k, guard) = guards.swap_remove(rng.below(guards.len()));
                                    let tag = guard.tag();
                                    match guard.unregister() {
                                        Ok(removed) => {
                                            assert_eq!(removed, tag);
                                            log.push(Event::Unbound {
                                                name: k,
                                                tag,
                                                value: None,
                                            });
                                        }
                                        Err(Error::TagMismatch { .. } | Error::NotFound { .. }) => {
                                        }
                                        Err(other) => panic!("unexpected {other:?}"),
                                    }
                                }
                            }
                            // Remove every name bound to one shared instance.
                            _ => {
                                let j = k / 2;
                                for (n, tag) in registry.unregister_instance(instances[j]) {
                                    let k = names.iter().position(|x| *x == n).expect("our name");
                                    assert_eq!(k / 2, j, "{n} is not bound to instance {j}");
                                    assert_eq!(tag.instance(), instances[j]);
                                    log.push(Event::Unbound {
                                        name: k,
                                        tag,
                                        value: None,
                                    });
                                }
                            }
                        }
                    }
                    // Keep the held bindings: dropping the guards would remove them with an
                    // outcome nobody records.
                    for (_, guard) in guards {
                        guard.detach();
                    }
                    log
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // Every binding created, by tag (tags are unique: generations are never reused).
    let mut bound: HashMap<Tag, (usize, u64)> = HashMap::new();
    for event in logs.iter().flatten() {
        if let Event::Bound { name, tag, value } = *event {
            assert!(
                bound.insert(tag, (name, value)).is_none(),
                "tag {tag:?} minted twice"
            );
        }
    }
    // Every removal removed a binding that existed, of that name, with that value, and no
    // binding was removed twice.
    let mut unbound: HashSet<Tag> = HashSet::new();
    let (mut removals, mut observations) = (0, 0);
    for event in logs.iter().flatten() {
        match *event {
            Event::Unbound { name, tag, value } => {
                let &(n, v) = bound
                    .get(&tag)
                    .unwrap_or_else(|| panic!("removed unknown {tag:?}"));
                assert_eq!(n, name, "{tag:?} removed under another name");
                if let Some(value) = value {
                    assert_eq!(v, value, "{tag:?} removed with another value");
                }
                assert!(unbound.insert(tag), "{tag:?} removed twice");
                removals += 1;
            }
            Event::Seen { name, tag, value } => {
                let &(n, v) = bound
                    .get(&tag)
                    .unwrap_or_else(|| panic!("saw unknown {tag:?}"));
                assert_eq!(n, name, "{tag:?} seen under another name");
                if let Some(value) = value {
                    assert_eq!(v, value, "{tag:?} seen with another value");
                }
                observations += 1;
            }
            Event::Bound { .. } => {}
        }
    }
    // Per name: the bindings created and never removed are exactly the final binding.
    let mut alive: Vec<Vec<Tag>> = vec![Vec::new(); NAMES];
    for (&tag, &(name, _)) in &bound {
        if !unbound.contains(&tag) {
            alive[name].push(tag);
        }
    }
    for (k, name) in names.iter().enumerate() {
        let now = registry.get(name);
        match (&alive[k][..], now) {
            ([], None) => {}
            (&[tag], Some(entry)) => {
                assert_eq!(
                    entry.tag(),
                    tag,
                    "{name}: final binding is not the reconstructed one"
                );
                assert_eq!(*entry.value(), bound[&tag].1);
            }
            (tags, now) => panic!("{name}: reconstructed {tags:?}, registry holds {now:?}"),
        }
    }
    let live = alive.iter().map(Vec::len).sum::<usize>();
    assert_eq!(registry.len(), live);
    assert_eq!(registry.names().len(), live);
    let refused = refused.into_inner();
    println!(
        "conditional removal: {} bindings, {removals} removals, {refused} stale-tag removals \
         refused, {observations} observations, {live} left, final capacity {}",
        bound.len(),
        registry.capacity()
    );
    if !cfg!(miri) {
        // A thread's own remembered tags go stale even without interference, so some must be.
        assert!(refused > 0, "no stale tag was ever presented");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. No registration is lost across migrations
// ---------------------------------------------------------------------------------------------

#[test]
#[cfg_attr(miri, ignore)]
fn no_registration_is_lost_across_migrations() {
    let _serial = serial();
    const KEEPERS: usize = 2;
    const PER_KEEPER: usize = 40_000;
    let registry: Registry<u64> = new_registry(1);
    let initial_capacity = registry.capacity();
    // How many names each keeper has registered so far (names 0..progress[t] are bound, and
    // stay bound: keepers never remove anything).
    let progress: Vec<AtomicUsize> = (0..KEEPERS).map(|_| AtomicUsize::new(0)).collect();
    let keepers_running = AtomicUsize::new(KEEPERS);
    let start = Barrier::new(KEEPERS + 2);
    let keeper_name = |t: usize, i: usize| format!("keep-{t}-{i}");

    let (tags, capacities, walks, churned) = thread::scope(|s| {
        let keepers: Vec<_> = (0..KEEPERS)
            .map(|t| {
                let (registry, progress, running, start) =
                    (&registry, &progress, &keepers_running, &start);
                s.spawn(move || {
                    let mut rng = Rng::new(0x6b65_6570, t as u64);
                    let mut tags = Vec::with_capacity(PER_KEEPER);
                    let mut capacities = vec![registry.capacity()];
                    start.wait();
                    for i in 0..PER_KEEPER {
                        let name = keeper_name(t, i);
                        let tag = registry.register(&name, value_of(t, i)).unwrap().detach();
                        tags.push(tag);
                        progress[t].store(i + 1, Ordering::Release);
                        // Spot-check an earlier name now, so a loss is reported where it
                        // happens.
                        if i % 16 == 0 {
                            let j = rng.below(i + 1);
                            let entry = registry.get(&keeper_name(t, j));
                            let entry = entry.unwrap_or_else(|| panic!("keep-{t}-{j} lost"));
                            assert_eq!((entry.tag(), *entry.value()), (tags[j], value_of(t, j)));
                        }
                        let capacity = registry.capacity();
                        if capacities.last() != Some(&capacity) {
                            capacities.push(capacity);
                        }
                    }
                    running.fetch_sub(1, Ordering::Release);
                    (tags, capacities)
                })
            })
            .collect();

        // Churn: unrelated names come and go (tombstones), and unique auto names.
        let churner = s.spawn(|| {
            let names: Vec<String> = (0..32).map(|i| format!("churn-{i}")).collect();
            let mut cycles = 0usize;
            start.wait();
            while keepers_running.load(Ordering::Acquire) > 0 {
                let name = &names[cycles % names.len()];
                let tag = registry.register(name, cycles as u64).unwrap().detach();
                assert_eq!(registry.unregister_if_same(name, tag).unwrap().tag(), tag);
                let guard = registry.register_auto("auto", cycles as u64).unwrap();
                guard.unregister().unwrap();
                cycles += 1;
            }
            cycles
        });

        // Walks: every keeper name bound when a walk starts is seen by it exactly once.
        let walker = s.spawn(|| {
            let mut walks = 0;
            start.wait();
            while keepers_running.load(Ordering::Acquire) > 0 {
                let before: Vec<usize> =
                    progress.iter().map(|p| p.load(Ordering::Acquire)).collect();
                let mut seen: Vec<Vec<u8>> = (0..KEEPERS).map(|_| vec![0; PER_KEEPER]).collect();
                for entry in registry.pin().iter() {
                    let Some(rest) = entry.name().strip_prefix("keep-") else {
                        continue;
                    };
                    let (t, i) = rest.split_once('-').unwrap();
                    let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
                    assert_eq!(*entry.value(), value_of(t, i));
                    seen[t][i] += 1;
                }
                for t in 0..KEEPERS {
                    for (i, &count) in seen[t][..before[t]].iter().enumerate() {
                        assert_eq!(count, 1, "walk {walks}: keep-{t}-{i} seen {count} times");
                    }
                    assert!(seen[t].iter().all(|&c| c <= 1), "a keeper name seen twice");
                }
                walks += 1;
            }
            walks
        });

        let results: Vec<_> = keepers.into_iter().map(|h| h.join().unwrap()).collect();
        let churned = churner.join().unwrap();
        let walks = walker.join().unwrap();
        let (tags, capacities): (Vec<_>, Vec<_>) = results.into_iter().unzip();
        (tags, capacities, walks, churned)
    });

    let total = KEEPERS * PER_KEEPER;
    for (t, tags) in tags.iter().enumerate() {
        for (i, &tag) in tags.iter().enumerate() {
            let entry = registry.get(&keeper_name(t, i));
            let entry = entry.unwrap_or_else(|| panic!("keep-{t}-{i} lost"));
            assert_eq!((entry.tag(), *entry.value()), (tag, value_of(t, i)));
        }
    }
    let names = registry.names();
    assert_eq!(registry.len(), names.len());
    assert_eq!(names.len(), total, "only the keepers' names are left");
    assert!(names.iter().all(|n| n.starts_with("keep-")));
    let entries = registry.entries();
    assert_eq!(entries.len(), total);
    // The table grew through several migrations while the keepers registered: a migration at
    // most doubles it (`next_capacity`: the next power of two above 2 x live, live < 7/8 of the
    // old capacity), so growing 4 -> 256k takes at least 16. Which sizes a keeper saw in
    // passing depends on scheduling, so only the growth factor (at least 10 doublings) is
    // asserted.
    let final_capacity = registry.capacity();
    assert!(
        final_capacity >= 1024 * initial_capacity,
        "capacity {initial_capacity} -> {final_capacity}"
    );
    let mut seen: Vec<usize> = capacities.concat();
    seen.sort_unstable();
    seen.dedup();
    println!(
        "no loss: {total} names kept, capacity {initial_capacity} -> {final_capacity} (sizes \
         seen by the keepers: {seen:?}), {churned} churn cycles, {walks} concurrent walks",
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Readers never see a torn or freed entry
// ---------------------------------------------------------------------------------------------

const MAGIC: u64 = 0x5afe_c0de_5afe_c0de;
const DEAD: u64 = 0xdead_dead_dead_dead;

/// A value that describes itself: the name it is bound under, the instance it was registered
/// as, its sequence number and a checksum, behind a pointer. Its destructor poisons the magic
/// before the memory is freed, so a read of a freed value is very likely to fail `verify`.
struct SelfDescribing(Box<Payload>);

#[derive(Clone, Copy)]
struct Payload {
    magic: u64,
    name: u64,
    instance: u64,
    seq: u64,
    check: u64,
}

fn checksum(name: u64, instance: u64, seq: u64) -> u64 {
    (name ^ instance.rotate_left(21) ^ seq.rotate_left(42)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl SelfDescribing {
    fn new(name: usize, instance: InstanceId, seq: u64) -> Self {
        let (name, instance) = (name as u64, instance.as_raw());
        SelfDescribing(Box::new(Payload {
            magic: MAGIC,
            name,
            instance,
            seq,
            check: checksum(name, instance, seq),
        }))
    }

    /// Checks the value is intact and belongs to `name` under `tag`; returns its sequence
    /// number.
    fn verify(&self, name: usize, tag: Tag) -> u64 {
        let p = *self.0;
        assert_eq!(
            p.magic, MAGIC,
            "read a dropped value (name {name}, {tag:?})"
        );
        assert_eq!(p.check, checksum(p.name, p.instance, p.seq), "torn value");
        assert_eq!(p.name, name as u64, "value of another name");
        assert_eq!(
            p.instance,
            tag.instance().as_raw(),
            "value inconsistent with its tag"
        );
        p.seq
    }
}

impl Clone for SelfDescribing {
    fn clone(&self) -> Self {
        assert_eq!(self.0.magic, MAGIC, "cloned a dropped value");
        SelfDescribing(Box::new(*self.0))
    }
}

impl Drop for SelfDescribing {
    fn drop(&mut self) {
        self.0.magic = DEAD;
        // Keep the poisoning store from being optimised away before the free.
        std::hint::black_box(&mut *self.0);
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn readers_never_see_torn_or_freed_entries() {
    let _serial = serial();
    const NAMES: usize = 32;
    const WRITERS: usize = 2;
    const READERS: usize = 2;
    const OPS: usize = 150_000;
    let seed = seed("readers_never_see_torn_or_freed_entries");
    let registry: Registry<SelfDescribing> = new_registry(1);
    let names: Vec<String> = (0..NAMES).map(|i| format!("agent-{i}")).collect();
    let writers_running = AtomicUsize::new(WRITERS);
    let start = Barrier::new(WRITERS + READERS);

    let (writes, samples, reads) = thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (registry, names, running, start) =
                    (&registry, &names, &writers_running, &start);
                s.spawn(move || {
                    let mut rng = Rng::new(seed, w as u64);
                    // Every binding this writer created: tag -> sequence number.
                    let mut written: Vec<(Tag, u64)> = Vec::new();
                    start.wait();
                    for i in 0..OPS {
                        let k = rng.below(NAMES);
                        let name = names[k].as_str();
                        let seq = value_of(w, i);
                        match registry.tag_of(name) {
                            None => {
                                let instance = InstanceId::fresh();
                                let value = SelfDescribing::new(k, instance, seq);
                                if let Ok(guard) = registry.register_as(name, instance, value) {
                                    written.push((guard.detach(), seq));
                                }
                            }
                            Some(tag) if rng.below(3) == 0 => {
                                let _ = registry.unregister_if_same(name, tag);
                            }
                            Some(tag) => {
                                let value = SelfDescribing::new(k, tag.instance(), seq);
                                if let Ok(new) = registry.replace_if_same(name, tag, value) {
                                    written.push((new, seq));
                                }
                            }
                        }
                        // Unique names come and go: tombstones pile up, so the table keeps
                        // rebuilding itself under the readers.
                        if i % 4 == 0 {
                            let value = SelfDescribing::new(usize::MAX, InstanceId::fresh(), 0);
                            drop(registry.register_auto("tmp", value).unwrap());
                        }
                    }
                    running.fetch_sub(1, Ordering::Release);
                    written
                })
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                let (registry, names, running, start) =
                    (&registry, &names, &writers_running, &start);
                s.spawn(move || {
                    let mut samples: Vec<(Tag, u64)> = Vec::new();
                    let mut reads = 0u64;
                    start.wait();
                    while running.load(Ordering::Acquire) > 0 {
                        // Owned reads: the clone happens under the registry's pin.
                        for (k, name) in names.iter().enumerate() {
                            if let Some(entry) = registry.get(name) {
                                let seq = entry.value().verify(k, entry.tag());
                                reads += 1;
                                if reads % 8 == 0 {
                                    samples.push((entry.tag(), seq));
                                }
                            }
                        }
                        // Borrowed reads through one pinned handle, re-pinned between rounds.
                        let mut pinned = registry.pin();
                        for round in 0..4 {
                            for k in (0..NAMES).skip(r + round % 2).step_by(2) {
                                if let Some(entry) = pinned.get(&names[k]) {
                                    entry.value().verify(k, entry.tag());
                                    reads += 1;
                                }
                            }
                            pinned.repin();
                        }
                    }
                    (samples, reads)
                })
            })
            .collect();
        let writes: Vec<(Tag, u64)> = writers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let mut samples = Vec::new();
        let mut reads = 0;
        for h in readers {
            let (s, n) = h.join().unwrap();
            samples.extend(s);
            reads += n;
        }
        (writes, samples, reads)
    });

    // Each sampled read returned exactly the value written under the tag it came with.
    let written: HashMap<Tag, u64> = writes.iter().copied().collect();
    assert_eq!(written.len(), writes.len(), "a tag was minted twice");
    for (tag, seq) in &samples {
        assert_eq!(
            written.get(tag),
            Some(seq),
            "read {tag:?} with a value not written under it"
        );
    }
    for (k, name) in names.iter().enumerate() {
        if let Some(entry) = registry.get(name) {
            let seq = entry.value().verify(k, entry.tag());
            assert_eq!(written.get(&entry.tag()), Some(&seq));
        }
    }
    println!(
        "readers: {reads} verified reads ({} checked against the write log), {} writes, \
         final capacity {}",
        samples.len(),
        writes.len(),
        registry.capacity()
    );
}

// ---------------------------------------------------------------------------------------------
// 4b. Weak bindings: a live owner's binding stays; a dead owner's never blocks
// ---------------------------------------------------------------------------------------------

#[test]
#[cfg_attr(miri, ignore)]
fn weak_bindings_hold_while_owned_and_never_block_once_dead() {
    let _serial = serial();
    const NAMES: usize = 8;
    let threads = 4;
    let ops = 150_000;
    let seed = seed("weak_bindings_hold_while_owned_and_never_block_once_dead");
    let registry: Registry<Arc<(usize, usize)>> = new_registry(1);
    let names: Vec<String> = (0..NAMES).map(|i| format!("weak-{i}")).collect();
    let start = Barrier::new(threads);

    // Per thread: bindings made (tag, owner), bindings seen (tag, owner where read), and how
    // many deaths were checked at once.
    type Log = (
        Vec<(Tag, (usize, usize))>,
        Vec<(Tag, Option<(usize, usize)>)>,
        usize,
    );
    let logs: Vec<Log> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (registry, names, start) = (&registry, &names, &start);
                s.spawn(move || {
                    let mut rng = Rng::new(seed, t as u64);
                    let (mut bound, mut seen) = (Vec::new(), Vec::new());
                    let mut dead_checked = 0;
                    // Up to 3 live owners per thread, released oldest first.
                    let mut held = std::collections::VecDeque::new();
                    // Checks the binding held until now, drops its owner, and if that was the
                    // last strong reference (a reader may hold an upgraded one for a moment),
                    // checks it is dead: never read, never blocking the name.
                    let release = |name: &str,
                                   tag: Tag,
                                   owner: Arc<(usize, usize)>,
                                   bound: &mut Vec<(Tag, (usize, usize))>,
                                   dead_checked: &mut usize| {
                        let entry = registry.get(name).expect("owned weak binding vanished");
                        assert_eq!(entry.tag(), tag, "owned weak binding replaced");
                        assert!(Arc::ptr_eq(entry.value(), &owner));
                        drop(entry);
                        if Arc::into_inner(owner).is_none() {
                            return;
                        }
                        assert_ne!(registry.tag_of(name), Some(tag), "dead binding read");
                        let next = Arc::new((t, usize::MAX));
                        match registry.register_weak(name, &next) {
                            Ok(guard) => {
                                bound.push((guard.tag(), *next));
                                drop(guard);
                            }
                            Err(rejected) => match rejected.error() {
                                Error::AlreadyRegistered { current, .. } => {
                                    assert_ne!(*current, tag, "a dead binding blocked")
                                }
                                other => panic!("unexpected {other:?}"),
                            },
                        }
                        *dead_checked += 1;
                    };
                    start.wait();
                    for i in 0..ops {
                        let k = rng.below(NAMES);
                        let name = names[k].as_str();
                        if rng.below(2) == 0 {
                            if let Some(entry) = registry.get(name) {
                                seen.push((entry.tag(), Some(**entry.value())));
                            }
                            continue;
                        }
                        let owner = Arc::new((t, i));
                        let tag = match registry.register_weak(name, &owner) {
                            Ok(guard) => guard.detach(),
                            Err(rejected) => {
                                let Error::AlreadyRegistered { current, .. } = rejected.error()
                                else {
                                    panic!("unexpected {rejected:?}");
                                };
                                seen.push((*current, None));
                                continue;
                            }
                        };
                        bound.push((tag, (t, i)));
                        held.push_back((k, tag, owner));
                        if held.len() > 3 {
                            let (k, tag, owner) = held.pop_front().unwrap();
                            release(&names[k], tag, owner, &mut bound, &mut dead_checked);
                        }
                    }
                    for (k, tag, owner) in held {
                        release(&names[k], tag, owner, &mut bound, &mut dead_checked);
                    }
                    (bound, seen, dead_checked)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // Every binding read (or reported as current) is one that was made, with its own owner.
    let bound: HashMap<Tag, (usize, usize)> = logs
        .iter()
        .flat_map(|(b, _, _)| b.iter().copied())
        .collect();
    let mut reads = 0;
    for (tag, value) in logs.iter().flat_map(|(_, s, _)| s.iter()) {
        let made = bound
            .get(tag)
            .unwrap_or_else(|| panic!("{tag:?} seen but never made"));
        if let Some(value) = value {
            assert_eq!(made, value, "{tag:?} read with another owner");
        }
        reads += 1;
    }
    // Every owner is gone: nothing is visible, `len` purges the dead, and every name is free.
    assert_eq!(registry.len(), 0);
    assert!(registry.names().is_empty());
    for name in &names {
        assert!(registry.get(name).is_none());
        let owner = Arc::new((0, 0));
        registry
            .register_weak(name, &owner)
            .expect("a dead binding blocked")
            .detach();
    }
    let dead_checked: usize = logs.iter().map(|l| l.2).sum();
    println!(
        "weak bindings: {} made, {reads} reads checked, {dead_checked} deaths checked at once",
        bound.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Memory stays bounded under churn, and what a stalled pinned thread does to it
// ---------------------------------------------------------------------------------------------

/// Counts the values created (including clones) and dropped.
#[derive(Default)]
struct Stats {
    created: AtomicU64,
    dropped: AtomicU64,
}

impl Stats {
    /// Values alive right now, anywhere (bound, in flight, or removed but not yet reclaimed).
    fn outstanding(&self) -> u64 {
        // Read `dropped` first: a value is created before it is dropped, so this never goes
        // below the true count.
        let dropped = self.dropped.load(Ordering::Acquire);
        self.created.load(Ordering::Acquire).saturating_sub(dropped)
    }
}

/// A value that counts itself.
struct Counted {
    _id: u64,
    stats: &'static Stats,
}

impl Counted {
    fn new(id: u64, stats: &'static Stats) -> Counted {
        stats.created.fetch_add(1, Ordering::Relaxed);
        Counted { _id: id, stats }
    }
}

impl Clone for Counted {
    fn clone(&self) -> Counted {
        Counted::new(self._id, self.stats)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.stats.dropped.fetch_add(1, Ordering::Release);
    }
}

/// The constant live set of the memory tests.
const LIVE: usize = 1_000;
/// Churning threads (more than the 2 cores CI has, so pinned threads get preempted).
const CHURNERS: usize = 3;

/// Maxima sampled while churning.
#[derive(Default)]
struct Maxima {
    outstanding: AtomicU64,
    capacity: AtomicUsize,
    rss: AtomicU64,
    /// The outstanding maximum per tenth of the run (to show there is no trend).
    by_tenth: [AtomicU64; 10],
}

/// The cycle count of the memory test: `GENREG_STRESS_CYCLES` if set; else 10M in an optimised
/// build (about 5 s on 2 cores) or with `GENREG_STRESS_FULL=1`; else 1M (an unoptimised build
/// is about ten times slower).
fn memory_cycles() -> u64 {
    if let Some(n) = std::env::var("GENREG_STRESS_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return n;
    }
    let full = std::env::var("GENREG_STRESS_FULL").is_ok_and(|v| v == "1");
    if full || !cfg!(debug_assertions) {
        10_000_000
    } else {
        1_000_000
    }
}

/// Registers the live set: `live-{i}`, detached; returns their tags.
fn register_live_set(registry: &Registry<Counted>, stats: &'static Stats) -> Vec<Tag> {
    (0..LIVE)
        .map(|i| {
            let name = format!("live-{i}");
            registry
                .register(&name, Counted::new(i as u64, stats))
                .unwrap()
                .detach()
        })
        .collect()
}

/// `cycles` register/unregister cycles spread over [`CHURNERS`] threads. Each cycle binds a
/// name and removes it: three of four reuse one of 64 names per thread, one of four is a
/// fresh `register_auto` name (so tombstones of names that never come back pile up). Every
/// 256 cycles a thread also replaces the value of one of its share of the live set. Samples
/// into `maxima` as it goes.
fn churn(
    registry: &Registry<Counted>,
    stats: &'static Stats,
    live_tags: &mut [Tag],
    cycles: u64,
    maxima: &Maxima,
) {
    let per_thread = cycles.div_ceil(CHURNERS as u64);
    let start = Barrier::new(CHURNERS);
    let shares: Vec<&mut [Tag]> = live_tags.chunks_mut(LIVE.div_ceil(CHURNERS)).collect();
    let mut first_index = 0;
    thread::scope(|s| {
        for (t, share) in shares.into_iter().enumerate() {
            let offset = first_index;
            first_index += share.len();
            let start = &start;
            s.spawn(move || {
                let names: Vec<String> = (0..64).map(|i| format!("churn-{t}-{i}")).collect();
                start.wait();
                for i in 0..per_thread {
                    if i % 4 == 3 {
                        let guard = registry
                            .register_auto("auto", Counted::new(i, stats))
                            .unwrap();
                        guard.unregister().unwrap();
                    } else {
                        let name = &names[(i % 64) as usize];
                        let tag = registry
                            .register(name, Counted::new(i, stats))
                            .unwrap()
                            .detach();
                        let removed = registry.unregister_if_same(name, tag).unwrap();
                        assert_eq!(removed.tag(), tag);
                    }
                    if i % 256 == 0 {
                        let j = (i / 256) as usize % share.len();
                        let name = format!("live-{}", offset + j);
                        share[j] = registry
                            .replace_if_same(&name, share[j], Counted::new(i, stats))
                            .unwrap();
                    }
                    if i % 1024 == 0 {
                        let outstanding = stats.outstanding();
                        maxima.outstanding.fetch_max(outstanding, Ordering::Relaxed);
                        let tenth = (i * 10 / per_thread) as usize;
                        maxima.by_tenth[tenth].fetch_max(outstanding, Ordering::Relaxed);
                        maxima
                            .capacity
                            .fetch_max(registry.capacity(), Ordering::Relaxed);
                    }
                    if t == 0 && i % 65_536 == 0 {
                        if let Some(rss) = rss_bytes() {
                            maxima.rss.fetch_max(rss, Ordering::Relaxed);
                        }
                    }
                }
                // Hand this thread's local garbage to the global queue now. Otherwise it
                // waits for the thread's TLS destructor, which runs only after the scope has
                // returned (under load, milliseconds later).
                registry.pin().flush();
            });
        }
    });
}

/// Pins and flushes until at most `target` values are outstanding, for at most `max_rounds`
/// rounds. Returns the rounds it took, or `None`.
///
/// Each round pins afresh and flushes: crossbeam-epoch advances the epoch at most once and
/// frees at most 8 bags (of up to 64 deferred frees) per collection, so a backlog of `n` values
/// takes about `n / 448` rounds.
fn flush_until(
    registry: &Registry<Counted>,
    stats: &Stats,
    target: u64,
    max_rounds: usize,
) -> Option<usize> {
    for round in 1..=max_rounds {
        registry.collect();
        if stats.outstanding() <= target {
            return Some(round);
        }
        if round % 1024 == 0 {
            thread::yield_now();
        }
    }
    None
}

/// How [`reclaim_all`] got there.
struct Reclaimed {
    /// Flush rounds in all.
    flushes: usize,
    /// Writes it took to finish a migration left in progress (0 if there was none to finish).
    writes: usize,
    /// Values still outstanding, beyond the target, when flushing alone stopped helping.
    held_by_migration: u64,
}

/// Brings the outstanding values of a quiescent registry down to `target`, and panics if it
/// cannot.
///
/// Flushing frees everything retired through the epoch. What is left after that sits in the
/// graveyard of a migration that stopped when the writers did: a node removed while a
/// migration runs is buried in the old table and freed with it, once the migration completes
/// (`raw/reclaim.rs`), and only writes move a migration on. So then it writes (a register and
/// an unregister of a probe name) until the migration completes.
fn reclaim_all(registry: &Registry<Counted>, stats: &'static Stats, target: u64) -> Reclaimed {
    let mut flushes = match flush_until(registry, stats, target, 20_000) {
        Some(rounds) => {
            return Reclaimed {
                flushes: rounds,
                writes: 0,
                held_by_migration: 0,
            };
        }
        None => 20_000,
    };
    let held_by_migration = stats.outstanding() - target;
    for writes in 1..=10_000 {
        let tag = registry
            .register("reclaim-probe", Counted::new(0, stats))
            .unwrap()
            .detach();
        registry.unregister_if_same("reclaim-probe", tag).unwrap();
        if let Some(rounds) = flush_until(registry, stats, target, 100) {
            flushes += rounds;
            return Reclaimed {
                flushes,
                writes,
                held_by_migration,
            };
        }
        flushes += 100;
    }
    panic!(
        "{} values never reclaimed ({held_by_migration} after flushing alone)",
        stats.outstanding() - target
    );
}

#[test]
#[cfg_attr(miri, ignore)]
fn memory_stays_bounded_under_churn() {
    let _serial = serial();
    let cycles = memory_cycles();
    let stats: &'static Stats = Box::leak(Box::default());
    let rss_before = rss_bytes();
    let registry: Registry<Counted> = Registry::new();
    let mut live_tags = register_live_set(&registry, stats);
    let maxima = Maxima::default();
    churn(&registry, stats, &mut live_tags, cycles, &maxima);

    let outstanding_max = maxima.outstanding.load(Ordering::Relaxed);
    let capacity_max = maxima.capacity.load(Ordering::Relaxed);
    let unreclaimed_max = outstanding_max.saturating_sub(LIVE as u64);
    let rss_max = maxima.rss.load(Ordering::Relaxed);
    let rss_growth = rss_before.map(|b| rss_max.saturating_sub(b));
    let after_churn = stats.outstanding();
    let reclaimed = reclaim_all(&registry, stats, LIVE as u64);
    let by_tenth: Vec<u64> = maxima
        .by_tenth
        .iter()
        .map(|m| m.load(Ordering::Relaxed).saturating_sub(LIVE as u64))
        .collect();
    println!(
        "memory, {cycles} cycles by {CHURNERS} threads, {LIVE} live names:\n  \
         unreclaimed values max {unreclaimed_max} (outstanding max {outstanding_max}); \
         per tenth of the run: {by_tenth:?}\n  \
         capacity max {capacity_max}\n  \
         RSS max {:.1} MiB (+{:.1} MiB over {:.1} MiB before)\n  \
         outstanding when the threads finished {after_churn}, {} after {} flushes and {} \
         writes ({} values were held by a migration left unfinished)",
        rss_max as f64 / MIB,
        rss_growth.unwrap_or(0) as f64 / MIB,
        rss_before.unwrap_or(0) as f64 / MIB,
        stats.outstanding(),
        reclaimed.flushes,
        reclaimed.writes,
        reclaimed.held_by_migration,
    );

    // The bounds. None grows with the cycle count, and a leak of one node (or value) per cycle
    // breaks each of them at 10M cycles (the capacity one at any count).
    // - The table is sized by the live set, not by the churn: tombstones are shed, and
    //   rebuilding a table of tombstones keeps its size. (next_capacity gives the smallest
    //   power of two above 2 x live: 2048 here.)
    assert!(
        capacity_max <= 4 * LIVE.next_power_of_two(),
        "capacity {capacity_max}: more than 4 x the live set"
    );
    // - Removed values are reclaimed as the run goes. What waits at any instant is about what
    //   the other threads remove while one thread is preempted inside a pinned section (3
    //   threads on 2 shared cores: a timeslice of several ms, at millions of removals a
    //   second; measured 50k-120k). 500k leaves room for a loaded machine and is 5% of the
    //   10M cycles.
    assert!(
        unreclaimed_max <= 500_000,
        "{unreclaimed_max} removed values unreclaimed at once"
    );
    // - The process: the table, the live set and that garbage stay within 128 MiB (measured
    //   20-40 MiB); a node per cycle would be about 1 GiB.
    if let Some(growth) = rss_growth {
        assert!(
            growth <= 128 << 20,
            "RSS grew by {:.1} MiB",
            growth as f64 / MIB
        );
    }
    // - Nothing leaks: once quiescent, every removed value is dropped (by flushing, plus, if
    //   the churn stopped in the middle of a migration, the few writes that complete it; see
    //   `reclaim_all`, which panics otherwise) ...
    assert_eq!(
        stats.outstanding(),
        LIVE as u64,
        "removed values never dropped"
    );
    assert_eq!(registry.len(), LIVE);
    for (i, tag) in live_tags.iter().enumerate() {
        assert!(registry.is_current(&format!("live-{i}"), *tag));
    }
    // ... and dropping the registry drops the live set too.
    drop(registry);
    flush_until(&Registry::new(), stats, 0, 100_000);
    assert_eq!(
        stats.outstanding(),
        0,
        "values leaked by the registry's drop"
    );
}

#[test]
#[cfg_attr(miri, ignore)]
fn stalled_pinned_thread_holds_back_reclamation() {
    let _serial = serial();
    // Garbage grows by one value (and node) per cycle while pinned, so this stays smaller than
    // the memory test: 5 phases of 100k cycles.
    const PHASES: u64 = 5;
    const PER_PHASE: u64 = 100_000;
    let stats: &'static Stats = Box::leak(Box::default());
    let rss_before = rss_bytes();
    let registry: Registry<Counted> = Registry::new();
    let mut live_tags = register_live_set(&registry, stats);
    let maxima = Maxima::default();

    let (pinned_tx, pinned_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let mut table: Vec<(u64, u64, u64, u64)> = Vec::new(); // (cycles, removed, unreclaimed, RSS)
    let mut removed: u64 = 0;
    thread::scope(|s| {
        let registry = &registry;
        let stalled = s.spawn(move || {
            let pinned = registry.pin();
            pinned_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            drop(pinned);
        });
        pinned_rx.recv().unwrap();
        let unreclaimed_at_pin = stats.outstanding() - LIVE as u64;
        for phase in 1..=PHASES {
            churn(registry, stats, &mut live_tags, PER_PHASE, &maxima);
            // Each cycle removes one value; each thread's replaces remove one more per 256.
            let per_thread = PER_PHASE.div_ceil(CHURNERS as u64);
            removed += CHURNERS as u64 * (per_thread + per_thread.div_ceil(256));
            let unreclaimed = stats.outstanding() - LIVE as u64;
            table.push((
                phase * PER_PHASE,
                removed,
                unreclaimed,
                rss_bytes().unwrap_or(0),
            ));
            // Everything removed since the pin is still allocated: the pinned thread may still
            // read it, so nothing retired after it pinned can be freed.
            assert!(
                unreclaimed + unreclaimed_at_pin >= removed,
                "phase {phase}: only {unreclaimed} of {removed} removed values kept while pinned"
            );
        }
        release_tx.send(()).unwrap();
        stalled.join().unwrap();
    });
    let before_flush = stats.outstanding() - LIVE as u64;
    let reclaimed = reclaim_all(&registry, stats, LIVE as u64);
    let after_flush = stats.outstanding() - LIVE as u64;
    let rss_after = rss_bytes().unwrap_or(0);

    println!("stalled pinned thread, {LIVE} live names, {CHURNERS} churning threads:");
    println!(
        "  {:>9} {:>9} {:>12} {:>9}",
        "cycles", "removed", "unreclaimed", "RSS MiB"
    );
    for (cycles, removed, unreclaimed, rss) in &table {
        println!(
            "  {cycles:>9} {removed:>9} {unreclaimed:>12} {:>9.1}",
            *rss as f64 / MIB
        );
    }
    println!(
        "  unpinned: {before_flush} unreclaimed, {after_flush} after {} flushes with fresh pins \
         (and {} writes for {} values held by an unfinished migration); capacity max {}, \
         outstanding max {}, RSS max {:.1} MiB (before {:.1} MiB, after {:.1} MiB)",
        reclaimed.flushes,
        reclaimed.writes,
        reclaimed.held_by_migration,
        maxima.capacity.load(Ordering::Relaxed),
        maxima.outstanding.load(Ordering::Relaxed),
        table.iter().map(|r| r.3).max().unwrap_or(0) as f64 / MIB,
        rss_before.unwrap_or(0) as f64 / MIB,
        rss_after as f64 / MIB,
    );
    // Growth is linear in the churn (checked per phase above), and it all goes once unpinned.
    assert_eq!(
        after_flush, 0,
        "garbage not reclaimed after the pinned thread left"
    );
    assert!(maxima.capacity.load(Ordering::Relaxed) <= 4 * LIVE.next_power_of_two());
}

// ---------------------------------------------------------------------------------------------
// 6. Linearizability of short histories (Wing & Gong)
// ---------------------------------------------------------------------------------------------

/// A Wing–Gong linearizability checker for `register` / `get` / `unregister_if_same` on a few
/// names, against a sequential model: each name is free or bound to (tag, value).
mod lin {
    use std::collections::HashSet;

    use genreg::Tag;

    /// An operation as invoked.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Op {
        Register { name: usize, value: u64 },
        Get { name: usize },
        UnregisterIfSame { name: usize, tag: Tag },
    }

    /// What it returned.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Ret {
        Registered(Tag),
        AlreadyRegistered(Tag),
        Got(Option<(Tag, u64)>),
        Removed(Tag, u64),
        NotFound,
        TagMismatch(Tag),
    }

    /// One completed call: invoked at `invoke`, returned at `respond` (one logical clock).
    #[derive(Clone, Copy, Debug)]
    pub struct Call {
        pub op: Op,
        pub ret: Ret,
        pub invoke: u64,
        pub respond: u64,
    }

    /// The model: per name, free or (tag, value).
    pub type State = Vec<Option<(Tag, u64)>>;

    /// Applies `op` with result `ret` to `state`, if the model allows that result.
    fn step(state: &State, op: Op, ret: Ret) -> Option<State> {
        let mut next = state.clone();
        let ok = match (op, ret) {
            (Op::Register { name, value }, Ret::Registered(tag)) => {
                next[name] = Some((tag, value));
                state[name].is_none()
            }
            (Op::Register { name, .. }, Ret::AlreadyRegistered(current)) => {
                matches!(state[name], Some((t, _)) if t == current)
            }
            (Op::Get { name }, Ret::Got(seen)) => state[name] == seen,
            (Op::UnregisterIfSame { name, tag }, Ret::Removed(t, v)) => {
                next[name] = None;
                t == tag && state[name] == Some((tag, v))
            }
            (Op::UnregisterIfSame { name, .. }, Ret::NotFound) => state[name].is_none(),
            (Op::UnregisterIfSame { name, tag }, Ret::TagMismatch(current)) => {
                current != tag && matches!(state[name], Some((t, _)) if t == current)
            }
            _ => false,
        };
        ok.then_some(next)
    }

    /// Whether `history` (at most 64 calls) has a linearization from `initial`: a total order
    /// of the calls that respects real time (a call that returned before another was invoked
    /// comes first) and in which every call's result is the model's.
    pub fn check(history: &[Call], initial: &State) -> bool {
        assert!(history.len() <= 64);
        let mut seen = HashSet::new();
        search(history, 0, initial, &mut seen)
    }

    fn search(
        history: &[Call],
        done: u64,
        state: &State,
        seen: &mut HashSet<(u64, State)>,
    ) -> bool {
        if done.count_ones() as usize == history.len() {
            return true;
        }
        if !seen.insert((done, state.clone())) {
            return false; // explored already, without success
        }
        let pending = |i: &usize| done & (1 << i) == 0;
        // A call can go next only if no pending call returned before it was invoked.
        let first_return = (0..history.len())
            .filter(pending)
            .map(|i| history[i].respond)
            .min()
            .unwrap();
        (0..history.len())
            .filter(pending)
            .filter(|&i| history[i].invoke < first_return)
            .any(|i| {
                step(state, history[i].op, history[i].ret)
                    .is_some_and(|next| search(history, done | (1 << i), &next, seen))
            })
    }
}

/// Runs `op` on the registry and records its result.
fn run_op(registry: &Registry<u64>, names: &[&str], op: lin::Op) -> lin::Ret {
    use lin::{Op, Ret};
    match op {
        Op::Register { name, value } => match registry.register(names[name], value) {
            Ok(guard) => Ret::Registered(guard.detach()),
            Err(rejected) => match rejected.error() {
                Error::AlreadyRegistered { current, .. } => Ret::AlreadyRegistered(*current),
                other => panic!("unexpected {other:?}"),
            },
        },
        Op::Get { name } => Ret::Got(registry.get(names[name]).map(|e| (e.tag(), *e.value()))),
        Op::UnregisterIfSame { name, tag } => match registry.unregister_if_same(names[name], tag) {
            Ok(entry) => Ret::Removed(entry.tag(), *entry.value()),
            Err(Error::NotFound { .. }) => Ret::NotFound,
            Err(Error::TagMismatch { current, .. }) => Ret::TagMismatch(current),
            Err(other) => panic!("unexpected {other:?}"),
        },
    }
}

#[test]
fn linearizable_short_histories() {
    use lin::{Call, Op, Ret};
    let _serial = serial();
    let histories = if cfg!(miri) { 4 } else { 1_000 };
    let threads = 3;
    let ops_per_thread = if cfg!(miri) { 3 } else { 5 };
    let seed = seed("linearizable_short_histories");
    let names = ["a", "b"];
    let mut calls_checked = 0;
    for h in 0..histories {
        // One name in a third of the histories (more contention), two otherwise.
        let name_count = if h % 3 == 0 { 1 } else { 2 };
        let registry: Registry<u64> = new_registry(1);
        // Start from a bound name sometimes, so the first operations can be refused.
        let mut initial: lin::State = vec![None; names.len()];
        if h % 2 == 0 {
            let tag = registry.register("a", 1_000_000).unwrap().detach();
            initial[0] = Some((tag, 1_000_000));
        }
        let clock = AtomicU64::new(0);
        let start = Barrier::new(threads);
        let history: Vec<Call> = thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (registry, clock, start, names, initial) =
                        (&registry, &clock, &start, &names, &initial);
                    s.spawn(move || {
                        let mut rng = Rng::new(seed ^ h as u64, t as u64);
                        // Tags this thread has seen, to unregister with; a forged one otherwise.
                        let mut known: Vec<(usize, Tag)> = initial
                            .iter()
                            .enumerate()
                            .filter_map(|(n, b)| b.map(|(tag, _)| (n, tag)))
                            .collect();
                        let mut calls = Vec::new();
                        start.wait();
                        for i in 0..ops_per_thread {
                            let name = rng.below(name_count);
                            let op = match rng.below(3) {
                                0 => Op::Register {
                                    name,
                                    value: value_of(t, i),
                                },
                                1 => Op::Get { name },
                                _ => {
                                    let tag = known
                                        .iter()
                                        .rev()
                                        .find(|(n, _)| *n == name)
                                        .map(|&(_, tag)| tag)
                                        .unwrap_or(Tag::new(
                                            InstanceId::fresh(),
                                            genreg::Generation::from_raw(u64::MAX),
                                        ));
                                    Op::UnregisterIfSame { name, tag }
                                }
                            };
                            // SeqCst: one total order of invocations and responses across
                            // threads, consistent with the real-time order of the calls.
                            let invoke = clock.fetch_add(1, Ordering::SeqCst);
                            let ret = run_op(registry, names, op);
                            let respond = clock.fetch_add(1, Ordering::SeqCst);
                            match ret {
                                Ret::Registered(tag)
                                | Ret::AlreadyRegistered(tag)
                                | Ret::TagMismatch(tag)
                                | Ret::Got(Some((tag, _))) => known.push((name, tag)),
                                _ => {}
                            }
                            calls.push(Call {
                                op,
                                ret,
                                invoke,
                                respond,
                            });
                        }
                        calls
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert!(
            lin::check(&history, &initial),
            "history {h} is not linearizable (initial {initial:?}):\n{history:#?}"
        );
        calls_checked += history.len();
    }
    println!("linearizability: {histories} histories, {calls_checked} calls, all linearizable");
}

#[test]
fn checker_rejects_bad_histories() {
    use genreg::Generation;
    use lin::{Call, Op, Ret};
    let tag = |i: u64, g: u64| Tag::new(InstanceId::from_raw(i), Generation::from_raw(g));
    let call = |op, ret, invoke, respond| Call {
        op,
        ret,
        invoke,
        respond,
    };
    let free: lin::State = vec![None, None];
    let (t1, t2) = (tag(1, 1), tag(2, 2));

    // Two registrations of one name, one after the other, both won.
    let double_win = [
        call(
            Op::Register { name: 0, value: 1 },
            Ret::Registered(t1),
            0,
            1,
        ),
        call(
            Op::Register { name: 0, value: 2 },
            Ret::Registered(t2),
            2,
            3,
        ),
    ];
    assert!(!lin::check(&double_win, &free));
    // The same, overlapping: still only one may win.
    let overlapping_wins = [
        call(
            Op::Register { name: 0, value: 1 },
            Ret::Registered(t1),
            0,
            3,
        ),
        call(
            Op::Register { name: 0, value: 2 },
            Ret::Registered(t2),
            1,
            2,
        ),
    ];
    assert!(!lin::check(&overlapping_wins, &free));
    // A read after a completed removal still sees the removed binding.
    let stale_read = [
        call(
            Op::Register { name: 0, value: 1 },
            Ret::Registered(t1),
            0,
            1,
        ),
        call(
            Op::UnregisterIfSame { name: 0, tag: t1 },
            Ret::Removed(t1, 1),
            2,
            3,
        ),
        call(Op::Get { name: 0 }, Ret::Got(Some((t1, 1))), 4, 5),
    ];
    assert!(!lin::check(&stale_read, &free));
    // A loser told about a binding that never existed.
    let wrong_current = [
        call(
            Op::Register { name: 1, value: 1 },
            Ret::Registered(t1),
            0,
            1,
        ),
        call(
            Op::Register { name: 1, value: 2 },
            Ret::AlreadyRegistered(t2),
            2,
            3,
        ),
    ];
    assert!(!lin::check(&wrong_current, &free));
    // A removal by a stale tag that succeeded (the ABA the generations prevent).
    let stale_removal = [
        call(
            Op::Register { name: 0, value: 1 },
            Ret::Registered(t1),
            0,
            1,
        ),
        call(
            Op::UnregisterIfSame { name: 0, tag: t1 },
            Ret::Removed(t1, 1),
            2,
            3,
        ),
        call(
            Op::Register { name: 0, value: 2 },
            Ret::Registered(t2),
            4,
            5,
        ),
        call(
            Op::UnregisterIfSame { name: 0, tag: t1 },
            Ret::Removed(t1, 2),
            6,
            7,
        ),
    ];
    assert!(!lin::check(&stale_removal, &free));

    // And it accepts what is fine: a read overlapping a registration may see it or not, but
    // the real-time order must hold.
    let sees_overlapping = [
        call(
            Op::Register { name: 0, value: 1 },
            Ret::Registered(t1),
            0,
            3,
        ),
        call(Op::Get { name: 0 }, Ret::Got(Some((t1, 1))), 1, 2),
        call(Op::Get { name: 0 }, Ret::Got(None), 1, 4),
    ];
    assert!(lin::check(&sees_overlapping, &free));
    let unseen_after = [
        call(
            Op::Register { name: 0, value: 1 },
            Ret::Registered(t1),
            0,
            1,
        ),
        call(Op::Get { name: 0 }, Ret::Got(None), 2, 3),
    ];
    assert!(!lin::check(&unseen_after, &free));
    let mismatch_then_remove = [
        call(
            Op::Register { name: 0, value: 1 },
            Ret::Registered(t1),
            0,
            5,
        ),
        call(
            Op::UnregisterIfSame { name: 0, tag: t2 },
            Ret::TagMismatch(t1),
            1,
            2,
        ),
        call(
            Op::UnregisterIfSame { name: 0, tag: t1 },
            Ret::Removed(t1, 1),
            3,
            4,
        ),
    ];
    assert!(lin::check(&mismatch_then_remove, &free));
}

// ---------------------------------------------------------------------------------------------
// Issue 8: the next table's room, and whole-registry views under churn
// ---------------------------------------------------------------------------------------------

/// Issue 8, bug 1: drives next tables to their room limit with four threads. The live set is
/// small and the churn leaves tombstones, so most migrations rebuild at the same size and the
/// next table fills with fresh names while copies are still pending: writers are refused room
/// there (and help the migration) all the time, and copies race those refusals. Any grant too
/// many made an `install` panic ("the next table always keeps room for every copy") and left
/// the name frozen for good. Every thread then checks that every name it kept is bound.
#[test]
#[cfg_attr(miri, ignore)]
fn next_table_room_limit_under_four_threads() {
    let _serial = serial();
    const THREADS: usize = 4;
    let rounds: usize = if cfg!(debug_assertions) {
        2_000
    } else {
        20_000
    };
    let registry: Registry<u64> = new_registry(1);
    let start = Barrier::new(THREADS);
    let max_capacity = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (registry, start, max_capacity) = (&registry, &start, &max_capacity);
            s.spawn(move || {
                let mut kept = Vec::new();
                start.wait();
                for r in 0..rounds {
                    // A burst of fresh names, removed again (tombstones), one of them kept
                    // now and then: many migrations of a table that is mostly tombstones.
                    let burst: Vec<(String, Tag)> = (0..6)
                        .map(|i| {
                            let name = format!("t{t}-r{r}-{i}");
                            let tag = registry.register_detached(&name, r as u64).unwrap();
                            (name, tag)
                        })
                        .collect();
                    for (i, (name, tag)) in burst.into_iter().enumerate() {
                        if i == 0 && r % 500 == 0 {
                            kept.push((name, tag));
                        } else {
                            registry.unregister_if_same(&name, tag).unwrap();
                        }
                    }
                    if r % 256 == 0 {
                        max_capacity.fetch_max(registry.capacity(), Ordering::Relaxed);
                    }
                }
                for (name, tag) in &kept {
                    assert!(registry.is_current(name, *tag), "{name} lost");
                }
                kept.len()
            });
        }
    });
    let kept = THREADS * rounds.div_ceil(500);
    assert_eq!(registry.len(), kept);
    assert_eq!(registry.names().len(), kept);
    let capacity = max_capacity.load(Ordering::Relaxed);
    assert!(capacity <= 1024, "the table grew to {capacity} slots");
}

/// Sharp edge 10: whole-registry views never list a name twice, whatever runs meanwhile: each
/// name has one slot per table and a walk reads each slot once (see the crate docs). Names
/// bound for the whole walk appear exactly once, with their binding.
#[test]
#[cfg_attr(miri, ignore)]
fn views_never_list_a_name_twice() {
    let _serial = serial();
    let registry: Registry<u64> = new_registry(1);
    let stable: Vec<(String, Tag)> = (0..200)
        .map(|i| {
            let name = format!("stable-{i}");
            let tag = registry.register_detached(&name, i).unwrap();
            (name, tag)
        })
        .collect();
    let running = AtomicUsize::new(3);
    thread::scope(|s| {
        for t in 0..3u64 {
            let (registry, running) = (&registry, &running);
            s.spawn(move || {
                // Names removed and re-bound over and over (same slots, and across the
                // migrations that growth and tombstones cause), plus growth.
                for r in 0..20_000u64 {
                    let name = format!("churn-{t}-{}", r % 40);
                    let tag = registry.register_detached(&name, r).unwrap();
                    registry.unregister_if_same(&name, tag).unwrap();
                    let grow = format!("grow-{t}-{r}");
                    let tag = registry.register_detached(&grow, r).unwrap();
                    if r % 3 != 0 {
                        registry.unregister_if_same(&grow, tag).unwrap();
                    }
                }
                running.fetch_sub(1, Ordering::Release);
            });
        }
        let mut walks = 0;
        while running.load(Ordering::Acquire) > 0 || walks < 10 {
            let entries = registry.entries();
            let mut seen = HashSet::new();
            for (name, _) in &entries {
                assert!(seen.insert(name.clone()), "entries() listed {name} twice");
            }
            let names = registry.names();
            assert!(
                names.windows(2).all(|w| w[0] < w[1]),
                "names() repeats a name"
            );
            for (name, tag) in &stable {
                let found: Vec<_> = entries.iter().filter(|(n, _)| n == name).collect();
                assert_eq!(found.len(), 1, "{name} seen {} times", found.len());
                assert_eq!(found[0].1.tag(), *tag);
            }
            walks += 1;
        }
    });
}

/// Several writers (registrations, replacements, removals, guards, weak bindings whose owners
/// die) and several watchers on real threads: every watcher's replay of the events equals the
/// registry's state at quiescence, and no watcher sees a revision twice or out of order.
#[test]
#[cfg_attr(miri, ignore)]
fn watchers_replay_the_state_of_racing_writers() {
    use genreg::{EventKind, Filter, Revision};
    use std::collections::BTreeMap;

    const WRITERS: usize = 3;
    const WATCHERS: usize = 3;
    const OPS: u64 = 100_000;
    let reg: Registry<Arc<u64>> = Registry::builder().events(1 << 20).build();
    let watchers: Vec<_> = (0..WATCHERS)
        .map(|_| reg.watch(Filter::all(), Revision::ZERO).unwrap())
        .collect();
    let done = Arc::new(AtomicU64::new(u64::MAX));
    let readers: Vec<_> = watchers
        .into_iter()
        .map(|mut w| {
            let done = Arc::clone(&done);
            thread::spawn(move || {
                let mut state: BTreeMap<String, (Tag, Option<u64>)> = BTreeMap::new();
                let mut last = Revision::ZERO;
                loop {
                    let target = done.load(Ordering::Acquire);
                    if last.as_raw() >= target {
                        return state;
                    }
                    let Some(item) = w.next_timeout(std::time::Duration::from_millis(50)) else {
                        continue;
                    };
                    let e = item.expect("the history holds the whole run");
                    assert!(e.revision() > last, "{e:?} after {last:?}");
                    last = e.revision();
                    let name = e.name().to_owned();
                    let current = state.get(&name).map(|s| s.0);
                    match e.kind() {
                        EventKind::Registered { tag, value } => {
                            assert_eq!(current, None, "{e:?}");
                            state.insert(name, (*tag, value.as_ref().map(|v| **v)));
                        }
                        EventKind::Replaced { old, tag, value } => {
                            assert_eq!(current, Some(*old), "{e:?}");
                            state.insert(name, (*tag, value.as_ref().map(|v| **v)));
                        }
                        EventKind::Unregistered { tag, .. } => {
                            assert_eq!(current, Some(*tag), "{e:?}");
                            state.remove(&name);
                        }
                        other => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    let barrier = Arc::new(Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS as u64)
        .map(|t| {
            let (reg, barrier) = (reg.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let mut guards = Vec::new();
                let mut owners = Vec::new();
                for i in 0..OPS {
                    // Names shared by all writers, so that they race on them.
                    let name = format!("n{}", (i * 7 + t) % 40);
                    match i % 6 {
                        0 | 1 => {
                            if let Ok(tag) = reg.register_detached(&name, Arc::new(i)) {
                                let _ = reg.replace_if_same(&name, tag, Arc::new(i + 1));
                            }
                        }
                        2 => {
                            if let Ok(g) = reg.register(&name, Arc::new(i)) {
                                guards.push(g);
                            }
                        }
                        3 => {
                            let owner = Arc::new(i);
                            if reg.register_weak(&name, &owner).is_ok_and(|g| {
                                g.detach();
                                true
                            }) && i % 12 == 3
                            {
                                owners.push(owner); // the others die at once
                            }
                        }
                        4 => {
                            let _ = reg.unregister(&name);
                        }
                        _ => {
                            if guards.len() > 4 {
                                drop(guards.swap_remove(0));
                            }
                            let _ = reg.get(&name); // may purge a dead weak binding
                        }
                    }
                }
                drop(guards);
                owners.len()
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    reg.purge_dead();
    done.store(reg.revision().as_raw(), Ordering::Release);
    let now: BTreeMap<String, (Tag, u64)> = reg
        .entries()
        .into_iter()
        .map(|(n, e)| (n, (e.tag(), **e.value())))
        .collect();
    for r in readers {
        let replayed = r.join().unwrap();
        let replayed_tags: BTreeMap<&String, Tag> =
            replayed.iter().map(|(n, (t, _))| (n, *t)).collect();
        let now_tags: BTreeMap<&String, Tag> = now.iter().map(|(n, (t, _))| (n, *t)).collect();
        assert_eq!(
            replayed_tags, now_tags,
            "a watcher's replay differs from the state"
        );
        for (n, (_, v)) in &replayed {
            if let Some(v) = v {
                assert_eq!(*v, now[n].1, "{n:?}: replayed value");
            }
        }
    }
}

/// Revisions extend real time: whenever one committed write returned before another was
/// called (whatever their names), the first has the lower revision. Several threads write a
/// few shared names; every call is stamped on a shared SeqCst clock before and after; the
/// events give each successful write its revision.
#[test]
#[cfg_attr(miri, ignore)]
fn revisions_extend_the_real_time_order_of_writes() {
    use genreg::{EventKind, Filter, Revision};

    const THREADS: usize = 3;
    const OPS: usize = 20_000;
    let reg: Registry<u64> = Registry::builder().events(1 << 18).build();
    let mut w = reg.watch(Filter::all(), Revision::ZERO).unwrap();
    let clock = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    // (called, returned, name, the tag the write made or removed, removal?)
    type Done = (u64, u64, String, Tag, bool);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (reg, clock, barrier) = (reg.clone(), Arc::clone(&clock), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let mut done: Vec<Done> = Vec::new();
                for i in 0..OPS {
                    let name = format!("n{}", (i * 5 + t) % 8);
                    let called = clock.fetch_add(1, Ordering::SeqCst);
                    let outcome = match i % 3 {
                        0 => reg
                            .register_detached(&name, i as u64)
                            .ok()
                            .map(|t| (t, false)),
                        1 => reg.unregister(&name).ok().map(|e| (e.tag(), true)),
                        _ => match reg.tag_of(&name) {
                            Some(old) => reg
                                .replace_if_same(&name, old, i as u64)
                                .ok()
                                .map(|t| (t, false)),
                            None => None,
                        },
                    };
                    let returned = clock.fetch_add(1, Ordering::SeqCst);
                    if let Some((tag, removal)) = outcome {
                        done.push((called, returned, name, tag, removal));
                    }
                }
                done
            })
        })
        .collect();
    let done: Vec<Done> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    // Each write's revision, from its event.
    let mut revision: HashMap<(String, Tag, bool), u64> = HashMap::new();
    while let Some(item) = w.try_next() {
        let e = item.expect("the history holds the run");
        let key = match e.kind() {
            EventKind::Registered { tag, .. } | EventKind::Replaced { tag, .. } => {
                (e.name().to_owned(), *tag, false)
            }
            EventKind::Unregistered { tag, .. } => (e.name().to_owned(), *tag, true),
            other => panic!("{other:?}"),
        };
        assert!(revision.insert(key, e.revision().as_raw()).is_none());
    }
    let mut ops: Vec<(u64, u64, u64)> = done
        .iter()
        .map(|(called, returned, name, tag, removal)| {
            let rev = revision[&(name.clone(), *tag, *removal)];
            (*called, *returned, rev)
        })
        .collect();
    assert!(ops.len() > OPS, "enough writes succeeded to test anything");
    // Sweep: for each op in call order, every op that returned before its call has a lower
    // revision (the largest of them, kept as a running maximum, is enough).
    let mut by_return: Vec<(u64, u64)> = ops.iter().map(|&(_, r, rev)| (r, rev)).collect();
    by_return.sort_unstable();
    ops.sort_unstable();
    let (mut k, mut max_before) = (0, 0u64);
    for &(called, _, rev) in &ops {
        while k < by_return.len() && by_return[k].0 < called {
            max_before = max_before.max(by_return[k].1);
            k += 1;
        }
        assert!(
            max_before < rev,
            "a write with revision {rev} was called after one with revision {max_before} \
             had returned"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Liveness: TTL churn with keepalives, a moving clock and a reaper
// ---------------------------------------------------------------------------------------------

/// TTL churn on real threads, with a `ManualClock` that one thread moves a tick at a time:
///
/// - two keepers each hold 8 *kept* bindings (TTL 8 ticks), renewed every pass, and the clock
///   never runs more than 4 ticks ahead of a keeper's last full pass: they are never removed
///   and every keepalive of them returns a deadline after the time it started at;
/// - each keeper also holds 8 *edge* bindings (TTL 2 ticks), renewed only when at most one
///   tick is left, so their keepalives race the clock and the reapers at the deadline: a
///   keepalive that returned `Ok(d)` leaves the binding current until the clock reaches `d`
///   (checked right after it, and against the event log: no removal as expired observed before
///   `d`); one that lost returns `Expired`, and the keeper registers the name again;
/// - a churner registers 16 fresh names a tick with a TTL of 1 to 3 ticks and never renews
///   them: they are all removed, as expired;
/// - a reaper thread (`spawn_reaper`) and a thread calling `purge_dead` remove expired
///   bindings; the clock does not move on while `len()` is over what can be alive plus three
///   ticks of churn (so `len` stays bounded, or the test fails after 10 s);
/// - at the end, after the clock passes every deadline and `purge_dead`, `len()` equals the
///   kept set (and the edge set, renewed to the end), and every churned binding was removed
///   once, as expired.
#[test]
fn ttl_churn_keeps_renewed_bindings_and_reaps_the_rest() {
    use std::time::{Duration, Instant};

    use genreg::liveness::{Clock, ManualClock};
    use genreg::{EventKind, Filter, Reason, Revision};

    let _serial = serial();
    const TICK: Duration = Duration::from_secs(1);
    const KEEPERS: usize = 2;
    const KEPT: usize = 8;
    const EDGE: usize = 8;
    const KEPT_TTL: u32 = 8;
    const EDGE_TTL: u32 = 2;
    const CHURN_PER_TICK: usize = 16;
    let steps: u64 = if cfg!(miri) {
        10
    } else if cfg!(debug_assertions) {
        150
    } else {
        600
    };
    let clock = ManualClock::new();
    let builder = Registry::builder()
        .capacity(4)
        .clock(clock.clone())
        .events(1 << 18);
    let registry: Registry<u64> = if cfg!(miri) {
        builder.collector(genreg::epoch::Collector::new()).build()
    } else {
        builder.build()
    };
    let mut watcher = registry.watch(Filter::all(), Revision::ZERO).unwrap();
    let ticks = |d: Duration| d.as_nanos() / TICK.as_nanos();
    let done = std::sync::atomic::AtomicBool::new(false);
    // The tick each keeper last started a full pass at (all its renewals came after it).
    let progress: Vec<AtomicU64> = (0..KEEPERS).map(|_| AtomicU64::new(0)).collect();
    let reaper = registry.spawn_reaper(Duration::from_millis(1));
    let max_len = AtomicUsize::new(0);
    let bound = KEEPERS * (KEPT + EDGE) + CHURN_PER_TICK * (3 + 3);

    // (tag, deadline) of every keepalive that returned Ok, per keeper; the kept and edge guards.
    type Kept = (
        Vec<(Tag, Duration)>,
        Vec<Registration<u64>>,
        Vec<Registration<u64>>,
    );
    // A removal seen by the watcher: the tag, why, and the clock when it was seen.
    type Seen = Vec<(Tag, Reason, Duration)>;
    let (kept, churned, observed): (Vec<Kept>, Vec<Tag>, Seen) = thread::scope(|s| {
        let keepers: Vec<_> = (0..KEEPERS)
            .map(|k| {
                let (registry, clock) = (&registry, &clock);
                let (progress, done) = (&progress[k], &done);
                s.spawn(move || {
                    let reg = |name: &str, ttl: u32| {
                        registry
                            .with_ttl(TICK * ttl)
                            .register(name, k as u64)
                            .unwrap()
                    };
                    let mut kept: Vec<_> = (0..KEPT)
                        .map(|i| reg(&format!("kept-{k}-{i}"), KEPT_TTL))
                        .collect();
                    let mut edge: Vec<_> = (0..EDGE)
                        .map(|i| reg(&format!("edge-{k}-{i}"), EDGE_TTL))
                        .collect();
                    let mut renewed = Vec::new();
                    let mut check = |g: &Registration<u64>, t0: Duration, d: Duration| {
                        assert!(d > t0, "{g:?} renewed to {d:?}, not after {t0:?}");
                        renewed.push((g.tag(), d));
                        // Current until the clock reaches the deadline (`is_current`, then
                        // the clock: if the clock is still before `d`, it was at the read).
                        let current = g.is_current();
                        let now = clock.now();
                        assert!(
                            current || now >= d,
                            "{g:?} renewed to {d:?} at {t0:?}, gone at {now:?}"
                        );
                    };
                    while !done.load(Ordering::Acquire) {
                        let t0 = clock.now();
                        for g in &mut kept {
                            let d = g.keepalive().unwrap().expect("a TTL");
                            check(g, t0, d);
                        }
                        for g in &mut edge {
                            let t = clock.now();
                            if g.time_left().is_some_and(|left| left > TICK) {
                                continue;
                            }
                            match g.keepalive() {
                                Ok(d) => check(g, t, d.expect("a TTL")),
                                Err(Error::Expired { tag, .. }) => {
                                    assert_eq!(tag, g.tag());
                                    assert!(clock.now() >= t, "{g:?}");
                                    let name = g.name().to_owned();
                                    *g = reg(&name, EDGE_TTL);
                                }
                                Err(e) => panic!("{g:?}: {e:?}"),
                            }
                        }
                        progress.store(ticks(t0) as u64, Ordering::Release);
                        thread::yield_now();
                    }
                    (renewed, kept, edge)
                })
            })
            .collect();
        let churner = {
            let (registry, clock, done) = (&registry, &clock, &done);
            s.spawn(move || {
                let mut tags = Vec::new();
                let mut last = u128::MAX;
                let mut n = 0u64;
                while !done.load(Ordering::Acquire) {
                    let t = ticks(clock.now());
                    if t == last {
                        thread::yield_now();
                        continue;
                    }
                    last = t;
                    for _ in 0..CHURN_PER_TICK {
                        n += 1;
                        let ttl = TICK * (1 + (n % 3) as u32);
                        let tag = registry
                            .with_ttl(ttl)
                            .register_detached(&format!("churn-{n}"), n)
                            .unwrap();
                        tags.push(tag);
                    }
                }
                tags
            })
        };
        let purger = {
            let (registry, done) = (&registry, &done);
            s.spawn(move || {
                while !done.load(Ordering::Acquire) {
                    registry.purge_dead();
                    thread::sleep(Duration::from_micros(300));
                }
            })
        };
        // The event watcher: each removal stamped with the clock when it was seen (the
        // removal happened at or before).
        let events = {
            let (clock, done) = (&clock, &done);
            let watcher = &mut watcher;
            s.spawn(move || {
                let mut seen = Vec::new();
                loop {
                    let finished = done.load(Ordering::Acquire);
                    while let Some(e) = watcher.try_next() {
                        let e = e.expect("the log holds the whole run");
                        if let EventKind::Unregistered { tag, reason } = e.kind() {
                            seen.push((*tag, *reason, clock.now()));
                        }
                    }
                    if finished {
                        return seen;
                    }
                    thread::yield_now();
                }
            })
        };
        // The clock: a tick at a time, never more than 4 ticks ahead of a keeper's last pass
        // (so kept bindings, renewed for 8, never come due), and only while `len` is
        // within the bound.
        let deadline = Instant::now() + Duration::from_secs(60);
        for step in 1..=steps {
            let now = step - 1;
            loop {
                let behind = progress.iter().any(|p| p.load(Ordering::Acquire) + 4 < now);
                let len = registry.len();
                max_len.fetch_max(len, Ordering::Relaxed);
                if !behind && len <= bound {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "stuck at tick {now}: len {len} (bound {bound}), keepers behind: {behind}"
                );
                thread::yield_now();
            }
            clock.advance(TICK);
            thread::sleep(Duration::from_micros(100));
        }
        done.store(true, Ordering::Release);
        let kept: Vec<Kept> = keepers
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        let churned = churner
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        purger
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let observed = events
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (kept, churned, observed)
    });
    drop(reaper);

    // Kept bindings were never removed and are current; no binding renewed to `d` was seen
    // removed as expired before `d`.
    let mut renewed_to: HashMap<Tag, Duration> = HashMap::new();
    for (renewed, _, _) in &kept {
        for (tag, d) in renewed {
            let e = renewed_to.entry(*tag).or_default();
            *e = (*e).max(*d);
        }
    }
    let kept_tags: HashSet<Tag> = kept
        .iter()
        .flat_map(|(_, k, _)| k.iter().map(|g| g.tag()))
        .collect();
    for (tag, reason, seen_at) in &observed {
        assert!(
            !kept_tags.contains(tag),
            "kept {tag:?} removed ({reason:?})"
        );
        if *reason == Reason::Expired {
            if let Some(d) = renewed_to.get(tag) {
                assert!(
                    seen_at >= d,
                    "{tag:?} renewed to {d:?}, removed as expired by {seen_at:?}"
                );
            }
        }
    }
    for (_, k, e) in &kept {
        assert!(k.iter().all(|g| g.is_current()), "a kept binding is gone");
        for g in e {
            assert!(g.is_current() || g.expired(), "{g:?} gone, not expired");
        }
    }
    // Past every churned deadline (4 ticks, renewing the kept and edge bindings at each): only
    // they stay, and every churned binding was removed once, as expired.
    for _ in 0..4 {
        for (_, k, e) in &kept {
            for g in k.iter().chain(e) {
                if g.is_current() {
                    g.keepalive().unwrap();
                }
            }
        }
        clock.advance(TICK);
    }
    let live: usize = kept
        .iter()
        .flat_map(|(_, k, e)| k.iter().chain(e))
        .filter(|g| g.is_current())
        .count();
    registry.purge_dead();
    assert_eq!(registry.len(), live, "len after purge_dead");
    assert!(live >= KEEPERS * KEPT);
    let mut removed: HashMap<Tag, Vec<Reason>> = HashMap::new();
    for (tag, reason, _) in &observed {
        removed.entry(*tag).or_default().push(*reason);
    }
    while let Some(e) = watcher.try_next() {
        if let EventKind::Unregistered { tag, reason } = e.unwrap().kind() {
            removed.entry(*tag).or_default().push(*reason);
        }
    }
    for tag in &churned {
        assert_eq!(
            removed.get(tag).map(Vec::as_slice),
            Some(&[Reason::Expired][..]),
            "churned {tag:?}"
        );
    }
    println!(
        "ttl churn: {steps} ticks, {} churned, {} keepalives, {} removal events, max len {} \
         (bound {bound})",
        churned.len(),
        kept.iter().map(|(r, _, _)| r.len()).sum::<usize>(),
        removed.values().map(Vec::len).sum::<usize>(),
        max_len.load(Ordering::Relaxed),
    );
}

// ---------------------------------------------------------------------------------------------
// Pools: leases are exclusive, each released once, and the statistics add up
// ---------------------------------------------------------------------------------------------

/// Threads lease the members of a pool every way there is (`acquire`, `acquire_for` a key,
/// the blocking `acquire_timeout`, `get_or_acquire` by name), hold them briefly and release
/// them, while another thread reads the statistics. Each member carries a marker that a
/// holder sets on entry and clears on exit: with `max_in_flight = 1` a second holder would
/// find it set. With `max_in_flight = 2` a count per member must stay at most 2. At the end,
/// every lease was released once: allocations = releases = leases handed out, nothing in use,
/// nobody waiting, every member free.
#[test]
fn pool_leases_are_exclusive_and_released_once() {
    let _serial = serial();
    let seed = seed("pool_leases_are_exclusive_and_released_once");
    // (members, max_in_flight, threads, rounds, every way of leasing): more threads than slots
    // (as many with max_in_flight = 2), so acquirers contend and wait; then one member fought
    // over by as many threads as cores with plain `acquire`s, where two claims of one slot
    // would meet most often.
    let configs: [(usize, usize, usize, usize, bool); 3] = if cfg!(miri) {
        [
            (3, 1, 6, 30, true),
            (3, 2, 6, 30, true),
            (1, 1, 2, 100, false),
        ]
    } else {
        [
            (3, 1, 6, 20_000, true),
            (3, 2, 6, 20_000, true),
            (1, 1, 2, 500_000, false),
        ]
    };
    for (members, max_in_flight, threads, rounds, every_way) in configs {
        let registry: Registry<usize> = new_registry(16);
        let pool = registry
            .register_pool_with(
                "workers",
                0..members,
                genreg::PoolOptions::new().max_in_flight(max_in_flight),
            )
            .unwrap();
        let inside: Vec<AtomicUsize> = (0..members).map(|_| AtomicUsize::new(0)).collect();
        let handed = AtomicU64::new(0);
        let done = std::sync::atomic::AtomicBool::new(false);
        let barrier = Barrier::new(threads + 1);
        thread::scope(|s| {
            let mut workers = Vec::new();
            for t in 0..threads {
                let (pool, registry, inside, handed, barrier) =
                    (&pool, &registry, &inside, &handed, &barrier);
                workers.push(s.spawn(move || {
                    let mut rng = Rng::new(seed, t as u64);
                    barrier.wait();
                    for _ in 0..rounds {
                        let lease = match if every_way { rng.below(4) } else { 0 } {
                            0 => pool.acquire(),
                            1 => pool.acquire_for(&format!("branch-{t}")),
                            2 => pool.acquire_timeout(std::time::Duration::from_millis(50)),
                            _ => registry.get_or_acquire("workers", &format!("key-{t}")),
                        };
                        let lease = match lease {
                            Ok(lease) => lease,
                            Err(Error::Exhausted { .. } | Error::Timeout { .. }) => continue,
                            Err(e) => panic!("unexpected: {e:?}"),
                        };
                        handed.fetch_add(1, Ordering::Relaxed);
                        let m = *lease;
                        assert_eq!(lease.index(), Some(m));
                        let before = inside[m].fetch_add(1, Ordering::SeqCst);
                        assert!(
                            before < max_in_flight,
                            "member {m} held by {} leases (max {max_in_flight})",
                            before + 1
                        );
                        if every_way && rng.below(4) == 0 {
                            thread::yield_now();
                        }
                        inside[m].fetch_sub(1, Ordering::SeqCst);
                        drop(lease);
                    }
                }));
            }
            let (pool, done, barrier) = (&pool, &done, &barrier);
            let reader = s.spawn(move || {
                barrier.wait();
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let st = pool.stats();
                    assert!(st.in_use <= members * max_in_flight);
                    assert!(st.peak.unwrap() <= members * max_in_flight);
                    assert!(st.holders.len() <= members * max_in_flight);
                    reads += 1;
                    thread::yield_now();
                }
                reads
            });
            // The workers end; then the reader.
            // Every worker joined before the reader is stopped, and only then a worker's panic
            // is passed on (else the reader would spin forever in the scope).
            let joined: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
            done.store(true, Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
            for j in joined {
                if let Err(panic) = j {
                    std::panic::resume_unwind(panic);
                }
            }
        });
        let st = pool.stats();
        let handed = handed.load(Ordering::Relaxed);
        assert!(handed > 0);
        assert_eq!(st.allocations, handed, "allocations vs leases handed out");
        assert_eq!(st.releases, handed, "releases vs leases handed out");
        assert_eq!((st.in_use, st.waiting, st.available), (0, 0, members));
        assert!(st.holders.is_empty());
        assert!(
            st.peak
                .is_some_and(|p| p >= 1 && p <= members * max_in_flight)
        );
        for m in 0..members {
            assert_eq!(pool.load(m), Some(0));
        }
        println!(
            "pool stress ({members} members, max_in_flight {max_in_flight}, {threads} threads): \
             {handed} leases, peak {:?}, {} waited",
            st.peak, st.waited
        );
    }
}
