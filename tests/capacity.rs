//! The bound on live bindings (`Builder::max_entries`): exact on every path, under any
//! concurrency; MARSYS's `BoundedRegistry`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use genreg::{Error, Metadata, Registry, RestoreError};

/// A builder with a collector of its own (the global one leaks at exit under Miri).
fn builder<V: Send + Sync + 'static>() -> genreg::Builder<V> {
    Registry::builder().collector(genreg::epoch::Collector::new())
}

fn is_full<V>(r: &Result<impl Sized, genreg::Rejected<V>>) -> bool {
    matches!(r, Err(rej) if matches!(rej.error(), Error::Full { .. }))
}

#[test]
fn marsys_bounded_registry_refuses_when_full_and_frees_on_removal() {
    // MARSYS: MAX_AGENTS, and "Registry full" when one more registers.
    const MAX_AGENTS: usize = 3;
    let reg: Registry<Arc<str>> = builder().max_entries(MAX_AGENTS).build();
    assert_eq!(reg.max_entries(), Some(MAX_AGENTS));
    let guards: Vec<_> = (0..MAX_AGENTS)
        .map(|i| reg.register(&format!("agent-{i}"), Arc::from("a")).unwrap())
        .collect();
    let refused = reg.register("one-too-many", Arc::from("x")).unwrap_err();
    assert_eq!(
        refused.error(),
        &Error::Full {
            name: "one-too-many".into(),
            capacity: MAX_AGENTS
        }
    );
    assert_eq!(
        refused.to_string(),
        "name \"one-too-many\" was not registered: the registry is full (it holds its bound of \
         3 bindings)"
    );
    assert_eq!(&*refused.into_value(), "x", "the value is handed back");
    assert_eq!(reg.len(), MAX_AGENTS);
    // A removal frees its place before it returns.
    drop(guards.into_iter().next());
    let _again = reg.register("one-too-many", Arc::from("y")).unwrap();
    // Re-registering a name bound already is `AlreadyRegistered`, not `Full`.
    assert!(matches!(
        reg.register("one-too-many", Arc::from("z"))
            .unwrap_err()
            .error(),
        Error::AlreadyRegistered { .. }
    ));
}

#[test]
fn every_binding_path_counts() {
    let reg: Registry<Arc<u32>> = builder().max_entries(2).build();
    let a = reg.register("a", Arc::new(1)).unwrap();
    let _b = reg.register_detached("b", Arc::new(2)).unwrap();
    assert!(is_full(&reg.register_auto("w", Arc::new(3))));
    assert!(is_full(&reg.register_detached("c", Arc::new(3))));
    let owner = Arc::new(4);
    assert!(is_full(&reg.register_weak("c", &owner)));
    let meta = Metadata::builder().kind("k").build().unwrap();
    assert!(is_full(
        &reg.with_metadata(meta.clone()).register("c", Arc::new(5))
    ));
    // Replacements and metadata updates take no place.
    let tag = reg.replace_if_same("a", a.tag(), Arc::new(6)).unwrap();
    reg.update_metadata("a", tag, meta).unwrap();
    // A name's own tombstone reused counts like any registration.
    reg.unregister_if_same("a", tag).unwrap();
    let a2 = reg.register_detached("a", Arc::new(7)).unwrap();
    assert!(is_full(&reg.register_detached("a2", Arc::new(8))));
    reg.unregister_if_same("a", a2).unwrap();
    assert_eq!(reg.len(), 1);
    drop(a); // stale guard: removes nothing, frees nothing
    assert_eq!(reg.len(), 1);
    reg.register_detached("d", Arc::new(9)).unwrap();
    assert!(is_full(&reg.register_detached("e", Arc::new(10))));
    // `clear` frees every place.
    assert_eq!(reg.clear(), 2);
    reg.register_detached("x", Arc::new(11)).unwrap();
    reg.register_detached("y", Arc::new(12)).unwrap();
}

#[test]
fn dead_weak_bindings_do_not_count() {
    let reg: Registry<Arc<u32>> = builder().max_entries(2).build();
    let o1 = Arc::new(1);
    let o2 = Arc::new(2);
    let _w1 = reg.register_weak("w1", &o1).unwrap();
    let _w2 = reg.register_weak("w2", &o2).unwrap();
    assert!(is_full(&reg.register_detached("s", Arc::new(3))));
    drop(o1);
    // Full but for a dead weak binding: it is purged, and the registration goes in.
    reg.register_detached("s", Arc::new(3)).unwrap();
    assert!(is_full(&reg.register_detached("t", Arc::new(4))));
    // A registration over a dead weak binding of its own name takes that binding's place.
    drop(o2);
    reg.register_detached("w2", Arc::new(5)).unwrap();
    assert_eq!(reg.len(), 2);
}

/// Found by `pools_match_model` (a pool refused `Full` on a registry whose only other binding
/// was a dead weak one): a registration at the bound purged dead bindings and tried once more
/// only if its own purge removed one. But the purge's walk first finishes a migration in
/// progress, and the migration drops the dead bindings it meets, freeing their places; the
/// purge then found nothing to remove and the registration was refused although it fitted.
/// Removals leave tombstones, and with enough of them a registration starts a migration: the
/// churn below reaches every point of that cycle, for a plain registration and for a pool.
#[test]
fn a_dead_binding_dropped_by_a_migration_frees_its_place() {
    let churns = if cfg!(miri) { 12 } else { 24 };
    for bound in 2..=4 {
        for churn in 0..churns {
            for pool in [false, true] {
                let reg: Registry<Arc<u32>> = builder().hash_seed(7).max_entries(bound).build();
                for i in 0..churn {
                    let name = format!("c{i}");
                    let tag = reg.register_detached(&name, Arc::new(0)).unwrap();
                    reg.unregister_if_same(&name, tag).unwrap();
                }
                let owner = Arc::new(1);
                let _weak = reg.register_weak("w", &owner).unwrap();
                // The bound's worth of places held, the pool's name and member left out.
                let held = bound - 1 - usize::from(pool);
                let _held: Vec<_> = (0..held)
                    .map(|i| reg.register(&format!("s{i}"), Arc::new(2)).unwrap())
                    .collect();
                drop(owner);
                let case = format!("bound {bound}, churn {churn}, pool {pool}");
                let refused = if pool {
                    let p = reg.register_pool("p", [Arc::new(3)]);
                    p.map(|p| p.detach().tag()).err().map(|r| r.into_parts().0)
                } else {
                    let r = reg.register_detached("x", Arc::new(3));
                    r.err().map(|r| r.into_parts().0)
                };
                assert_eq!(refused, None, "{case}");
                assert_eq!(reg.len(), bound, "{case}");
            }
        }
    }
}

#[test]
fn zero_refuses_everything_and_restore_is_checked() {
    let none: Registry<u32> = builder().max_entries(0).build();
    assert!(is_full(&none.register_detached("a", 1)));
    assert!(none.is_empty());

    let src: Registry<u32> = builder().events(16).build();
    for n in ["a", "b", "c"] {
        src.register_detached(n, 1).unwrap();
    }
    let snap = src.snapshot().unwrap();
    let small: Registry<u32> = builder().events(16).max_entries(2).build();
    assert_eq!(
        small.restore(snap.clone()).unwrap_err(),
        RestoreError::Full {
            capacity: 2,
            entries: 3
        }
    );
    assert!(small.is_empty(), "refused up front, nothing bound");
    let fits: Registry<u32> = builder().events(16).max_entries(3).build();
    assert_eq!(fits.restore(snap).unwrap(), 3);
    assert!(is_full(&fits.register_detached("d", 1)));
}

#[test]
fn never_over_the_bound_under_racing_registrations() {
    // Threads register and unregister names from a pool larger than the bound; a sampler
    // takes consistent snapshots (exact at one revision) and never sees more than the bound.
    const CAP: usize = 8;
    let reg: Registry<u64> = builder().events(1 << 12).max_entries(CAP).build();
    let stop = AtomicBool::new(false);
    let (wins, fulls) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let rounds = if cfg!(miri) { 20 } else { 20_000 };
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(snap) = reg.snapshot() {
                    assert!(
                        snap.len() <= CAP,
                        "{} bindings at {:?}",
                        snap.len(),
                        snap.revision()
                    );
                }
            }
        });
        thread::scope(|w| {
            for t in 0..3u64 {
                let (reg, wins, fulls) = (&reg, &wins, &fulls);
                w.spawn(move || {
                    let mut held = Vec::new();
                    for i in 0..rounds {
                        let name = format!("n{}", (i * 7 + t * 13) % 24);
                        match reg.register_detached(&name, i) {
                            Ok(tag) => {
                                wins.fetch_add(1, Ordering::Relaxed);
                                held.push((name, tag));
                            }
                            Err(rej) => match rej.error() {
                                Error::Full { capacity, .. } => {
                                    assert_eq!(*capacity, CAP);
                                    fulls.fetch_add(1, Ordering::Relaxed);
                                }
                                Error::AlreadyRegistered { .. } => {}
                                other => panic!("{other}"),
                            },
                        }
                        if held.len() > 2 || (i % 3 == 0 && !held.is_empty()) {
                            let (name, tag) = held.remove(0);
                            reg.unregister_if_same(&name, tag).unwrap();
                        }
                    }
                    for (name, tag) in held {
                        reg.unregister_if_same(&name, tag).unwrap();
                    }
                });
            }
        });
        stop.store(true, Ordering::Relaxed);
    });
    assert!(wins.load(Ordering::Relaxed) > 0);
    // Nine places wanted at most (three threads holding three), eight given: some refused.
    assert!(cfg!(miri) || fulls.load(Ordering::Relaxed) > 0);
    assert!(reg.is_empty());
    // Every place was given back: the bound's worth of registrations fit again.
    for i in 0..CAP {
        reg.register_detached(&format!("after-{i}"), 0).unwrap();
    }
    assert!(is_full(&reg.register_detached("one-more", 0)));
}
