//! The public API, scenario by scenario: the MARSYS registry's documented behaviour (the
//! Coordinator late-destructor race, duplicate names, auto names, weak entries), the contract of
//! every conditional operation (the crate docs), and bad input and faults.
//!
//! Every registry here is built by [`registry`] (or [`small`]) with a collector of its own, so
//! that tests are isolated from each other's garbage and Miri sees no leak from crossbeam's
//! global collector:
//!
//! ```text
//! MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-permissive-provenance" cargo +nightly miri test --test api
//! ```
//!
//! Loops are small by default; the few big ones are `#[cfg_attr(miri, ignore)]` and have a
//! small twin that Miri runs.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::task::{Context, Poll, Waker};

use genreg::epoch::Collector;
use genreg::{
    Ensured, Entry, EntryRef, Error, Generation, InstanceId, InvalidNameReason, MAX_NAME_LEN,
    Registration, Registry, Rejected, Tag,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A registry with its own collector (see the module docs).
fn registry<V: Send + Sync + 'static>() -> Registry<V> {
    Registry::builder().collector(Collector::new()).build()
}

/// A registry that starts at the smallest table, so that a few names already make it migrate.
fn small<V: Send + Sync + 'static>() -> Registry<V> {
    Registry::builder()
        .capacity(1)
        .collector(Collector::new())
        .build()
}

/// Both configurations, for the scenarios worth running across a migration too.
fn configs<V: Send + Sync + 'static>() -> [Registry<V>; 2] {
    [registry(), small()]
}

fn s(v: &str) -> Arc<str> {
    Arc::from(v)
}

/// The value bound to `name`, as a `String` (for `Registry<Arc<str>>`).
fn value_of(reg: &Registry<Arc<str>>, name: &str) -> Option<String> {
    reg.get(name).map(|e| e.value().to_string())
}

/// Unwraps an `AlreadyRegistered` refusal: `(name, current, value handed back)`.
#[track_caller]
fn already<V>(result: Result<Registration<V>, Rejected<V>>) -> (String, Tag, V) {
    match result
        .expect_err("the registration should have been refused")
        .into_parts()
    {
        (Error::AlreadyRegistered { name, current }, value) => (name.into_string(), current, value),
        (other, _) => panic!("expected AlreadyRegistered, got {other:?}"),
    }
}

/// Unwraps a `TagMismatch`: `(expected, current)`.
#[track_caller]
fn mismatch(error: Error) -> (Tag, Tag) {
    match error {
        Error::TagMismatch {
            expected, current, ..
        } => (expected, current),
        other => panic!("expected TagMismatch, got {other:?}"),
    }
}

/// Unwraps an `InvalidName`: `(name, reason)`.
#[track_caller]
fn invalid(error: &Error) -> (String, InvalidNameReason) {
    match error {
        Error::InvalidName { name, reason } => (name.to_string(), reason.clone()),
        other => panic!("expected InvalidName, got {other:?}"),
    }
}

#[track_caller]
fn assert_not_found(error: &Error, expected_name: &str) {
    match error {
        Error::NotFound { name } => assert_eq!(name, expected_name),
        other => panic!("expected NotFound for {expected_name:?}, got {other:?}"),
    }
}

/// Runs a future that never actually waits to completion (no executor needed).
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// A future that is pending once, so that whatever is held across it really is held across a
/// suspension point.
fn yield_once() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |_| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            Poll::Pending
        }
    })
}

/// Many iterations natively, a few under Miri.
const fn scale(native: usize, miri: usize) -> usize {
    if cfg!(miri) { miri } else { native }
}

// ---------------------------------------------------------------------------------------------
// Static guarantees
// ---------------------------------------------------------------------------------------------

fn assert_send_sync_static<T: Send + Sync + 'static>() {}
fn assert_send<T: Send>(_: &T) {}

#[test]
fn owned_types_are_send_sync_static() {
    assert_send_sync_static::<Registry<Arc<str>>>();
    assert_send_sync_static::<Registration<Arc<str>>>();
    assert_send_sync_static::<Entry<Arc<str>>>();
    assert_send_sync_static::<Error>();
    assert_send_sync_static::<Rejected<Arc<str>>>();
    assert_send_sync_static::<Ensured<Arc<str>>>();
    assert_send_sync_static::<Tag>();
}

#[test]
fn entries_and_guards_can_be_held_across_await() {
    let reg: Registry<Arc<str>> = registry();
    let task = {
        let reg = reg.clone();
        async move {
            let guard = reg.register("agent", s("A")).unwrap();
            let entry = reg.get("agent").unwrap();
            yield_once().await;
            // Both are still usable after the suspension point.
            assert_eq!(&**entry.value(), "A");
            assert!(guard.is_current());
            let tag = guard.tag();
            yield_once().await;
            drop(guard);
            (entry, tag)
        }
    };
    // The future holds a Registration and an Entry across `.await` and is still Send.
    assert_send(&task);
    let (entry, tag) = block_on(task);
    assert_eq!(entry.tag(), tag);
    assert!(
        !reg.contains("agent"),
        "the guard dropped inside the task unbinds"
    );
    // The entry outlives the binding: it owns its value.
    assert_eq!(&**entry, "A");
}

// ---------------------------------------------------------------------------------------------
// MARSYS scenario: the Coordinator late-destructor race
// ---------------------------------------------------------------------------------------------

#[test]
fn coordinator_late_destructor_cannot_remove_newer_instance() {
    for reg in configs::<Arc<str>>() {
        // 1. Task 1 creates "Coordinator" (instance A).
        let a = reg.register("Coordinator", s("A")).unwrap();
        let tag_a = a.tag();
        // 2. Task 1 completes; the orchestrator removes A's binding identity-safely ...
        let removed = reg.unregister_if_same("Coordinator", tag_a).unwrap();
        assert_eq!(removed.tag(), tag_a);
        assert_eq!(&**removed.value(), "A");
        // ... while A itself (its guard) is still alive, queued for collection.
        assert!(!a.is_current());
        // 3. Task 2 creates "Coordinator" (instance B), which registers successfully.
        let b = reg.register("Coordinator", s("B")).unwrap();
        let tag_b = b.tag();
        assert_ne!(tag_a, tag_b);
        assert_ne!(tag_a.instance(), tag_b.instance());
        // 4./5. A's destructor fires late: it must not remove B.
        drop(a);
        assert_eq!(reg.tag_of("Coordinator"), Some(tag_b));
        assert_eq!(value_of(&reg, "Coordinator").as_deref(), Some("B"));
        assert!(b.is_current());
        // A's tag can do nothing to B's binding.
        let (expected, current) =
            mismatch(reg.unregister_if_same("Coordinator", tag_a).unwrap_err());
        assert_eq!((expected, current), (tag_a, tag_b));
        assert_eq!(reg.tag_of("Coordinator"), Some(tag_b));
        // B's own guard still removes it.
        drop(b);
        assert!(!reg.contains("Coordinator"));
        assert!(reg.is_empty());
    }
}

#[test]
fn coordinator_race_when_a_is_replaced_rather_than_removed() {
    // Variant: B takes over through replace_if_same; A's guard is then stale.
    let reg: Registry<Arc<str>> = registry();
    let a = reg.register("Coordinator", s("A")).unwrap();
    let tag_b = reg.replace_if_same("Coordinator", a.tag(), s("B")).unwrap();
    assert_eq!(
        tag_b.instance(),
        a.tag().instance(),
        "replace keeps the instance"
    );
    assert!(tag_b.generation() > a.tag().generation());
    assert!(!a.is_current());
    assert!(a.get().is_none(), "a stale guard reads nothing");
    drop(a);
    assert_eq!(reg.tag_of("Coordinator"), Some(tag_b));
    assert_eq!(value_of(&reg, "Coordinator").as_deref(), Some("B"));
}

#[test]
fn coordinator_late_destructor_on_another_thread() {
    let reg: Registry<Arc<str>> = registry();
    let a = reg.register("Coordinator", s("A")).unwrap();
    let tag_a = a.tag();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    // A's guard lives in another thread (Task 1), which drops it only when told to.
    let task1 = std::thread::spawn(move || {
        go_rx.recv().unwrap();
        drop(a);
    });
    reg.unregister_if_same("Coordinator", tag_a).unwrap();
    let b = reg.register("Coordinator", s("B")).unwrap();
    go_tx.send(()).unwrap();
    task1.join().unwrap();
    assert_eq!(reg.tag_of("Coordinator"), Some(b.tag()));
    assert_eq!(value_of(&reg, "Coordinator").as_deref(), Some("B"));
}

#[test]
fn aba_same_instance_reregistered_old_tag_cannot_remove_new_binding() {
    for reg in configs::<Arc<str>>() {
        let agent = InstanceId::fresh();
        let first = reg.register_as("Coordinator", agent, s("first")).unwrap();
        let old = first.tag();
        assert_eq!(old.instance(), agent);
        reg.unregister_if_same("Coordinator", old).unwrap();
        // The very same instance registers again under the same name.
        let second = reg.register_as("Coordinator", agent, s("second")).unwrap();
        let new = second.tag();
        assert_eq!(new.instance(), agent, "same instance id");
        assert!(new.generation() > old.generation(), "a new generation");
        assert_ne!(old, new);

        // Every fenced operation with the old tag is refused and changes nothing.
        let (expected, current) = mismatch(reg.unregister_if_same("Coordinator", old).unwrap_err());
        assert_eq!((expected, current), (old, new));
        assert!(!reg.is_current("Coordinator", old));
        assert!(reg.is_current("Coordinator", new));
        assert_eq!(reg.get_if("Coordinator", old), None);
        let refused = reg
            .replace_if_same("Coordinator", old, s("intruder"))
            .unwrap_err();
        assert_eq!(mismatch(refused.error().clone()), (old, new));
        assert_eq!(&*refused.into_value(), "intruder");
        assert!(!first.is_current());
        // The late destructor of the first registration.
        drop(first);
        assert_eq!(reg.tag_of("Coordinator"), Some(new));
        assert_eq!(value_of(&reg, "Coordinator").as_deref(), Some("second"));
        drop(second);
        assert!(reg.is_empty());
    }
}

#[test]
fn aba_with_a_detached_old_tag() {
    // The old binding is removed by its own guard, then the instance re-registers; a tag kept
    // from the first binding (detach) is as stale as the guard would be.
    let reg: Registry<u32> = registry();
    let agent = InstanceId::from_raw(7);
    let old = reg.register_as("worker", agent, 1).unwrap().detach();
    assert!(reg.is_current("worker", old));
    reg.unregister_if_same("worker", old).unwrap();
    for round in 0..3 {
        let g = reg.register_as("worker", agent, 10 + round).unwrap();
        assert_eq!(
            mismatch(reg.unregister_if_same("worker", old).unwrap_err()),
            (old, g.tag())
        );
        assert_eq!(reg.get_if("worker", g.tag()), Some(10 + round));
        drop(g);
    }
    assert!(reg.is_empty());
}

#[test]
fn legacy_unregister_is_not_identity_safe() {
    // What MARSYS's old `A.__del__ -> unregister("Coordinator")` does: it removes B.
    let reg: Registry<Arc<str>> = registry();
    let a = reg.register("Coordinator", s("A")).unwrap();
    reg.unregister_if_same("Coordinator", a.tag()).unwrap();
    let b = reg.register("Coordinator", s("B")).unwrap();
    let removed = reg.unregister("Coordinator").unwrap();
    assert_eq!(
        removed.tag(),
        b.tag(),
        "the unconditional call removed the newer binding"
    );
    assert_eq!(&**removed.value(), "B");
    assert!(!reg.contains("Coordinator"));
    assert!(!b.is_current());
    // Nothing left for either guard.
    drop(a);
    assert_not_found(&b.unregister().unwrap_err(), "Coordinator");
    assert_not_found(&reg.unregister("Coordinator").unwrap_err(), "Coordinator");
}

// ---------------------------------------------------------------------------------------------
// MARSYS scenario: duplicate names
// ---------------------------------------------------------------------------------------------

#[test]
fn duplicate_name_is_refused_with_winner_tag_and_value_back() {
    for reg in configs::<Arc<str>>() {
        let winner = reg.register("processor", s("first")).unwrap();
        let loser_value = s("second");
        let (name, current, back) = already(reg.register("processor", Arc::clone(&loser_value)));
        assert_eq!(name, "processor");
        assert_eq!(current, winner.tag());
        assert!(
            Arc::ptr_eq(&back, &loser_value),
            "the very value is handed back"
        );
        // Also through `into_value`.
        let rejected = reg.register("processor", s("third")).unwrap_err();
        assert!(
            matches!(rejected.error(), Error::AlreadyRegistered { current, .. } if *current == winner.tag())
        );
        assert_eq!(&*rejected.into_value(), "third");
        // And through register_as with another instance.
        let (_, current, _) = already(reg.register_as("processor", InstanceId::fresh(), s("x")));
        assert_eq!(current, winner.tag());
        // Nothing changed.
        assert_eq!(value_of(&reg, "processor").as_deref(), Some("first"));
        assert_eq!(reg.len(), 1);
        // MARSYS's fallback: pick another name.
        let other = reg.register("processor_2", back).unwrap();
        assert_eq!(reg.len(), 2);
        drop((winner, other));
        assert!(reg.is_empty());
    }
}

#[test]
fn duplicate_of_own_instance_reports_it_is_own() {
    let reg: Registry<u32> = registry();
    let me = InstanceId::fresh();
    let g = reg.register_as("me", me, 1).unwrap();
    let (_, current, back) = already(reg.register_as("me", me, 2));
    assert_eq!(current, g.tag());
    assert_eq!(
        current.instance(),
        me,
        "the refusal shows the binding is the caller's own"
    );
    assert_eq!(back, 2);
    assert_eq!(reg.get_if("me", g.tag()), Some(1));
}

#[test]
fn concurrent_registrations_of_one_free_name_have_exactly_one_winner() {
    let threads = 4;
    let rounds = scale(50, 3);
    let reg: Registry<usize> = registry();
    for round in 0..rounds {
        let name = format!("contended-{round}");
        let barrier = Barrier::new(threads);
        let outcomes: Vec<Result<Tag, (Tag, usize)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (reg, name, barrier) = (&reg, &name, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        match reg.register(name, t) {
                            Ok(g) => Ok(g.detach()),
                            Err(r) => {
                                let (_, current, v) = already(Err(r));
                                Err((current, v))
                            }
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<Tag> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok().copied())
            .collect();
        assert_eq!(winners.len(), 1, "exactly one winner: {outcomes:?}");
        let winner = winners[0];
        let mut values = HashSet::new();
        for o in &outcomes {
            match o {
                Ok(_) => {}
                Err((current, v)) => {
                    assert_eq!(*current, winner, "losers see the winner's tag");
                    values.insert(*v);
                }
            }
        }
        assert_eq!(
            values.len(),
            threads - 1,
            "every loser got its own value back"
        );
        let bound = reg.get(&name).unwrap();
        assert_eq!(bound.tag(), winner);
        assert!(!values.contains(bound.value()));
    }
    assert_eq!(reg.len(), rounds);
}

// ---------------------------------------------------------------------------------------------
// MARSYS scenario: auto names
// ---------------------------------------------------------------------------------------------

#[test]
fn auto_names_count_up() {
    let reg: Registry<u32> = registry();
    let w1 = reg.register_auto("worker", 1).unwrap();
    let w2 = reg.register_auto("worker", 2).unwrap();
    let w3 = reg.register_auto("worker", 3).unwrap();
    assert_eq!(w1.name(), "worker-1");
    assert_eq!(w2.name(), "worker-2");
    assert_eq!(w3.name(), "worker-3");
    assert_eq!(reg.get("worker-2").map(|e| *e.value()), Some(2));
    assert_eq!(reg.names(), vec!["worker-1", "worker-2", "worker-3"]);
    // Each has its own instance.
    let instances: HashSet<InstanceId> =
        [&w1, &w2, &w3].iter().map(|g| g.tag().instance()).collect();
    assert_eq!(instances.len(), 3);
}

/// The number `n` of a `{prefix}-{n}` name.
fn auto_number(name: &str, prefix: &str) -> u64 {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name:?} is not an auto name of {prefix:?}"))
}

#[test]
fn auto_names_never_restart_after_removals_or_clear() {
    for reg in configs::<u32>() {
        let mut seen = HashSet::new();
        let mut last = 0;
        let mut next = |reg: &Registry<u32>, v: u32| {
            let g = reg.register_auto("worker", v).unwrap();
            let n = auto_number(g.name(), "worker");
            assert!(n > last, "{} after worker-{last}", g.name());
            assert!(
                seen.insert(g.name().to_owned()),
                "{} handed out twice",
                g.name()
            );
            last = n;
            g
        };
        let a = next(&reg, 1);
        let b = next(&reg, 2);
        let a_name = a.name().to_owned();
        // Removing worker-1 does not make its number available again.
        drop(a);
        let c = next(&reg, 3);
        assert_ne!(c.name(), a_name);
        let b_tag = b.detach();
        let c_tag = c.detach();
        assert_eq!(reg.clear(), 2);
        assert!(reg.is_empty());
        assert!(!reg.is_current("worker-2", b_tag) && !reg.is_current("worker-3", c_tag));
        // After clear, numbers go on.
        let d = next(&reg, 4);
        assert!(auto_number(d.name(), "worker") > 3);
        for v in 0..20 {
            next(&reg, v).detach();
        }
        assert_eq!(reg.len(), 21);
    }
}

#[test]
fn auto_names_skip_names_taken_by_hand() {
    let reg: Registry<&'static str> = registry();
    let hand2 = reg.register("worker-2", "by hand 2").unwrap();
    let hand3 = reg.register("worker-3", "by hand 3").unwrap();
    let hand5 = reg.register("worker-5", "by hand 5").unwrap();
    let names: Vec<String> = (0..3)
        .map(|_| reg.register_auto("worker", "auto").unwrap())
        .map(|g| {
            let name = g.name().to_owned();
            g.detach();
            name
        })
        .collect();
    assert_eq!(names, vec!["worker-1", "worker-4", "worker-6"]);
    // The hand-registered bindings were not touched.
    assert_eq!(reg.get("worker-2").map(|e| *e.value()), Some("by hand 2"));
    assert_eq!(reg.get("worker-3").map(|e| *e.value()), Some("by hand 3"));
    assert_eq!(reg.get("worker-5").map(|e| *e.value()), Some("by hand 5"));
    assert!(hand2.is_current() && hand3.is_current() && hand5.is_current());
    assert_eq!(reg.len(), 6);
}

#[test]
fn auto_names_never_collide_across_prefixes_or_threads() {
    let reg: Registry<usize> = registry();
    let per_thread = scale(200, 5);
    let names: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let reg = &reg;
                scope.spawn(move || {
                    let prefix = if t % 2 == 0 { "worker" } else { "pool" };
                    (0..per_thread)
                        .map(|i| {
                            let g = reg.register_auto(prefix, t * 1000 + i).unwrap();
                            assert!(g.name().starts_with(prefix));
                            let name = g.name().to_owned();
                            g.detach();
                            name
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len());
    assert_eq!(reg.len(), names.len());
    assert_eq!(reg.names().len(), names.len());
}

#[test]
fn auto_name_with_invalid_prefix_is_refused_with_value_back() {
    let reg: Registry<u32> = registry();
    let rejected = reg.register_auto("bad\nprefix", 9).unwrap_err();
    let (name, reason) = invalid(rejected.error());
    assert_eq!(name, "bad\nprefix", "the error names the prefix");
    assert_eq!(reason, InvalidNameReason::ControlChar { at: 3 });
    assert_eq!(rejected.into_value(), 9);
    // A prefix that already fills the limit makes every auto name too long.
    let long = "p".repeat(MAX_NAME_LEN);
    let rejected = reg.register_auto(&long, 10).unwrap_err();
    assert!(
        matches!(invalid(rejected.error()).1, InvalidNameReason::PrefixTooLong { len } if len == MAX_NAME_LEN)
    );
    assert_eq!(rejected.into_value(), 10);
    assert!(reg.is_empty());
}

// ---------------------------------------------------------------------------------------------
// MARSYS scenario: weak entries
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Agent {
    name: &'static str,
}

#[test]
fn weak_entry_visible_while_owner_alive() {
    let reg: Registry<Arc<Agent>> = registry();
    let owner = Arc::new(Agent { name: "assistant" });
    let g = reg.register_weak("assistant", &owner).unwrap();
    assert_eq!(
        Arc::strong_count(&owner),
        1,
        "the registry does not keep the owner alive"
    );
    let got = reg.get("assistant").expect("visible while the owner lives");
    assert!(
        Arc::ptr_eq(got.value(), &owner),
        "AgentRegistry.get(name) is agent"
    );
    assert_eq!(got.tag(), g.tag());
    drop(got);
    assert!(reg.contains("assistant"));
    assert_eq!(reg.tag_of("assistant"), Some(g.tag()));
    assert!(reg.is_current("assistant", g.tag()));
    assert!(reg.get_if("assistant", g.tag()).is_some());
    assert_eq!(reg.names(), vec!["assistant"]);
    assert_eq!(reg.len(), 1);
    assert_eq!(reg.pin().iter().count(), 1);
    assert_eq!(reg.entries().len(), 1);
    assert!(g.is_current());
    assert!(Arc::ptr_eq(g.get().unwrap().value(), &owner));
    // Registering over a live weak binding is refused; the owner is handed back.
    let (_, current, back) = already(reg.register_weak("assistant", &owner));
    assert_eq!(current, g.tag());
    assert!(Arc::ptr_eq(&back, &owner));
    drop(back);
    let (_, current, _) = already(reg.register("assistant", Arc::new(Agent { name: "other" })));
    assert_eq!(current, g.tag());
    assert_eq!(Arc::strong_count(&owner), 1);
    // The guard of a weak binding unbinds it like any other.
    drop(g);
    assert!(!reg.contains("assistant"));
    assert_eq!(owner.name, "assistant");
}

#[test]
fn weak_entry_invisible_after_owner_drops() {
    for reg in configs::<Arc<Agent>>() {
        let owner = Arc::new(Agent {
            name: "temp_worker",
        });
        let g = reg.register_weak("temp_worker", &owner).unwrap();
        let tag = g.tag();
        let strong = reg
            .register("keeper", Arc::new(Agent { name: "keeper" }))
            .unwrap();
        // "Agent automatically removed from registry when garbage collected".
        drop(owner);
        assert!(reg.get("temp_worker").is_none());
        assert!(!reg.contains("temp_worker"));
        assert_eq!(reg.tag_of("temp_worker"), None);
        assert!(!reg.is_current("temp_worker", tag));
        assert!(reg.get_if("temp_worker", tag).is_none());
        assert!(!g.is_current());
        assert!(g.get().is_none());
        assert_eq!(reg.names(), vec!["keeper"]);
        assert_eq!(reg.len(), 1);
        assert!(!reg.is_empty());
        let pinned = reg.pin();
        let seen: Vec<&str> = pinned.iter().map(|e| e.name()).collect();
        assert_eq!(seen, vec!["keeper"]);
        assert!(pinned.get("temp_worker").is_none());
        drop(pinned);
        assert_eq!(
            reg.entries()
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>(),
            vec!["keeper"]
        );
        // Conditional operations see nothing there.
        assert_not_found(
            &reg.unregister_if_same("temp_worker", tag).unwrap_err(),
            "temp_worker",
        );
        assert_not_found(&reg.unregister("temp_worker").unwrap_err(), "temp_worker");
        let refused = reg
            .replace_if_same("temp_worker", tag, Arc::new(Agent { name: "x" }))
            .unwrap_err();
        assert_not_found(refused.error(), "temp_worker");
        assert_eq!(refused.into_value().name, "x");
        // The dead binding's guard reports that there was nothing left to remove.
        assert_not_found(&g.unregister().unwrap_err(), "temp_worker");
        assert_eq!(reg.len(), 1);
        drop(strong);
        assert!(reg.is_empty());
    }
}

#[test]
fn dead_weak_entry_never_blocks_reregistration() {
    for reg in configs::<Arc<Agent>>() {
        let first = Arc::new(Agent { name: "first" });
        let old = reg.register_weak("browser", &first).unwrap();
        drop(first);
        // A strong registration takes the name at once, without any purge first.
        let strong = reg
            .register("browser", Arc::new(Agent { name: "strong" }))
            .unwrap();
        assert_eq!(reg.get("browser").unwrap().value().name, "strong");
        assert!(strong.tag().generation() > old.tag().generation());
        // The dead binding's late guard cannot remove the new one.
        drop(old);
        assert!(strong.is_current());
        assert_eq!(reg.len(), 1);
        drop(strong);

        // Weak over dead weak as well.
        let second = Arc::new(Agent { name: "second" });
        let w2 = reg.register_weak("browser", &second).unwrap();
        drop(second);
        let third = Arc::new(Agent { name: "third" });
        let w3 = reg.register_weak("browser", &third).unwrap();
        assert_eq!(reg.get("browser").unwrap().value().name, "third");
        drop(w2);
        assert!(w3.is_current());
        assert_eq!(reg.tag_of("browser"), Some(w3.tag()));
        // ensure_registered also treats the dead binding as free.
        drop(third);
        let inst = InstanceId::fresh();
        match reg
            .ensure_registered("browser", inst, Arc::new(Agent { name: "ensured" }))
            .unwrap()
        {
            Ensured::Registered(g) => assert_eq!(g.tag().instance(), inst),
            Ensured::Existing { tag, .. } => panic!("a dead weak binding is not existing: {tag:?}"),
        }
        drop(w3);
        assert!(reg.is_empty());
    }
}

#[test]
fn purge_dead_removes_only_dead_weak_entries() {
    let reg: Registry<Arc<Agent>> = registry();
    let owners: Vec<Arc<Agent>> = (0..5).map(|_| Arc::new(Agent { name: "w" })).collect();
    let tags: Vec<Tag> = owners
        .iter()
        .enumerate()
        .map(|(i, o)| reg.register_weak(&format!("weak-{i}"), o).unwrap().detach())
        .collect();
    let _strong = reg
        .register("strong", Arc::new(Agent { name: "s" }))
        .unwrap();
    let mut owners: Vec<Option<Arc<Agent>>> = owners.into_iter().map(Some).collect();
    owners[1] = None;
    owners[3] = None;
    owners[4] = None;
    assert_eq!(reg.purge_dead(), 3);
    assert_eq!(reg.purge_dead(), 0, "nothing left to purge");
    assert_eq!(reg.len(), 3);
    assert_eq!(reg.names(), vec!["strong", "weak-0", "weak-2"]);
    assert!(reg.is_current("weak-0", tags[0]));
    assert!(reg.is_current("weak-2", tags[2]));
    // A purge after the owner of a re-registered name died again.
    owners[0] = None;
    assert_eq!(
        reg.len(),
        3,
        "len is O(1): a dead weak binding counts until purged"
    );
    assert!(!reg.contains("weak-0"));
    assert_eq!(reg.len(), 2, "the read purged it");
    assert_eq!(reg.purge_dead(), 0);
    drop(owners);
    assert_eq!(reg.names(), vec!["strong"]);
    assert_eq!(reg.len(), 2, "weak-2 is dead but not purged yet");
    assert_eq!(reg.purge_dead(), 1);
    assert_eq!(reg.len(), 1);
}

#[test]
fn weak_entries_removed_by_instance_and_clear() {
    let reg: Registry<Arc<Agent>> = registry();
    let alive = Arc::new(Agent { name: "alive" });
    let dead = Arc::new(Agent { name: "dead" });
    let ga = reg.register_weak("alive", &alive).unwrap();
    let gd = reg.register_weak("dead", &dead).unwrap();
    drop(dead);
    // unregister_instance of a dead binding reports nothing removed.
    assert!(reg.unregister_instance(gd.tag().instance()).is_empty());
    assert_eq!(
        reg.unregister_instance(ga.tag().instance()),
        vec![("alive".to_owned(), ga.tag())]
    );
    let gd2 = reg.register_weak("alive", &alive).unwrap();
    assert_eq!(reg.clear(), 1, "clear counts only visible bindings");
    assert!(reg.is_empty());
    drop((ga, gd, gd2));
    assert_eq!(Arc::strong_count(&alive), 1);
}

// ---------------------------------------------------------------------------------------------
// ensure_registered
// ---------------------------------------------------------------------------------------------

#[test]
fn ensure_registered_is_idempotent_and_creates_no_second_owner() {
    let reg: Registry<Arc<str>> = registry();
    let me = InstanceId::fresh();
    let guard = match reg.ensure_registered("assistant", me, s("v1")).unwrap() {
        Ensured::Registered(g) => g,
        Ensured::Existing { tag, .. } => panic!("the name was free, got Existing({tag:?})"),
    };
    assert_eq!(guard.tag().instance(), me);
    for _ in 0..3 {
        match reg.ensure_registered("assistant", me, s("v2")).unwrap() {
            Ensured::Existing { tag, .. } => assert_eq!(tag, guard.tag()),
            Ensured::Registered(g) => panic!("a second owner was created: {g:?}"),
        }
    }
    // Nothing changed: same tag, first value (the second one was not stored).
    assert_eq!(reg.tag_of("assistant"), Some(guard.tag()));
    assert_eq!(value_of(&reg, "assistant").as_deref(), Some("v1"));
    assert_eq!(reg.len(), 1);
    // Another instance is refused, with the value back.
    let rejected = reg
        .ensure_registered("assistant", InstanceId::fresh(), s("intruder"))
        .unwrap_err();
    assert!(
        matches!(rejected.error(), Error::AlreadyRegistered { current, .. } if *current == guard.tag())
    );
    assert_eq!(&*rejected.into_value(), "intruder");
    // The one owner still owns it; its drop removes it.
    drop(guard);
    assert!(!reg.contains("assistant"));
    // And ensure_registered binds again afterwards, with a new generation.
    match reg.ensure_registered("assistant", me, s("v3")).unwrap() {
        Ensured::Registered(g) => {
            assert_eq!(g.tag().instance(), me);
            assert_eq!(g.name(), "assistant");
        }
        Ensured::Existing { tag, .. } => panic!("unexpected Existing({tag:?})"),
    }
    assert!(reg.is_empty());
}

#[test]
fn ensure_registered_existing_follows_replacement() {
    let reg: Registry<u32> = registry();
    let me = InstanceId::fresh();
    let mut g = reg.register_as("n", me, 1).unwrap();
    let new_tag = g.replace(2).unwrap();
    match reg.ensure_registered("n", me, 3).unwrap() {
        Ensured::Existing { tag, .. } => assert_eq!(tag, new_tag),
        Ensured::Registered(_) => panic!("second owner"),
    }
    assert_eq!(reg.get_if("n", new_tag), Some(2));
}

#[test]
fn ensure_registered_rejects_invalid_names() {
    let reg: Registry<u32> = registry();
    let rejected = reg
        .ensure_registered("", InstanceId::fresh(), 5)
        .unwrap_err();
    assert_eq!(invalid(rejected.error()).1, InvalidNameReason::Empty);
    assert_eq!(rejected.into_value(), 5);
}

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

#[test]
fn get_get_if_is_current_tag_of_contains() {
    for reg in configs::<Arc<str>>() {
        assert!(reg.get("x").is_none());
        assert_eq!(reg.tag_of("x"), None);
        assert!(!reg.contains("x"));
        let g = reg.register("x", s("value")).unwrap();
        let tag = g.tag();
        let e = reg.get("x").unwrap();
        assert_eq!(e.tag(), tag);
        assert_eq!(&**e.value(), "value");
        assert_eq!(&**e, "value", "Entry derefs to the value");
        assert_eq!(e.clone(), e);
        assert_eq!(&*e.into_value(), "value");
        assert_eq!(reg.get_if("x", tag).as_deref(), Some("value"));
        assert!(reg.is_current("x", tag));
        assert_eq!(reg.tag_of("x"), Some(tag));
        assert!(reg.contains("x"));
        // Fenced reads with any other tag see nothing.
        let other_gen = Tag::new(
            tag.instance(),
            Generation::from_raw(tag.generation().as_raw() + 1),
        );
        let other_inst = Tag::new(
            InstanceId::from_raw(tag.instance().as_raw() + 1),
            tag.generation(),
        );
        for wrong in [other_gen, other_inst] {
            assert_eq!(reg.get_if("x", wrong), None);
            assert!(!reg.is_current("x", wrong));
        }
        // Nor with the right tag under another name.
        assert_eq!(reg.get_if("y", tag), None);
        assert!(!reg.is_current("y", tag));
        // Reads are exact: no prefix, case or whitespace matching.
        for near in ["X", "x ", " x", "xx", ""] {
            assert!(reg.get(near).is_none(), "{near:?}");
            assert!(!reg.contains(near), "{near:?}");
        }
        drop(g);
        assert!(reg.get("x").is_none());
        assert_eq!(reg.get_if("x", tag), None);
    }
}

#[test]
fn pinned_reads_borrow() {
    let reg: Registry<String> = registry();
    let g = reg.register("borrowed", "a long value".to_owned()).unwrap();
    let pinned = reg.pin();
    let e: EntryRef<'_, String> = pinned.get("borrowed").unwrap();
    assert_eq!(e.name(), "borrowed");
    assert_eq!(e.tag(), g.tag());
    assert_eq!(e.value(), "a long value");
    assert_eq!(
        e.len(),
        "a long value".len(),
        "EntryRef derefs to the value"
    );
    assert_eq!(e.to_entry(), reg.get("borrowed").unwrap());
    assert!(pinned.contains("borrowed"));
    assert!(!pinned.contains("other"));
    // A binding removed through the same handle stays readable through the returned reference.
    let removed = pinned.unregister_if_same("borrowed", g.tag()).unwrap();
    assert_eq!(removed.value(), "a long value");
    assert!(pinned.get("borrowed").is_none());
    assert!(!g.is_current());
}

#[test]
fn pinned_handle_writes() {
    let reg: Registry<u32> = registry();
    let mut pinned = reg.pin();
    let a = pinned.register("a", 1).unwrap();
    let b = pinned
        .register_as("b", InstanceId::from_raw(99), 2)
        .unwrap();
    let c = pinned.register_auto("c", 3).unwrap();
    assert_eq!(b.tag().instance(), InstanceId::from_raw(99));
    let new_a = pinned.replace_if_same("a", a.tag(), 10).unwrap();
    assert_eq!(*pinned.get("a").unwrap().value(), 10);
    pinned.repin();
    assert_eq!(pinned.unregister("b").unwrap().tag(), b.tag());
    assert_eq!(pinned.unregister_instance(c.tag().instance()).len(), 1);
    assert_eq!(pinned.clear(), 1);
    assert!(matches!(
        pinned.ensure_registered("a", InstanceId::fresh(), 1),
        Ok(Ensured::Registered(_))
    ));
    pinned.flush();
    drop(pinned);
    assert!(!reg.is_current("a", new_a));
    drop((a, b, c));
    assert!(reg.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Conditional writes
// ---------------------------------------------------------------------------------------------

#[test]
fn unregister_if_same_returns_removed_entry() {
    for reg in configs::<Arc<str>>() {
        let tag = reg.register("n", s("v")).unwrap().detach();
        let removed = reg.unregister_if_same("n", tag).unwrap();
        assert_eq!(removed.tag(), tag);
        assert_eq!(&**removed.value(), "v");
        assert!(!reg.contains("n"));
        assert!(reg.is_empty());
        // Twice: nothing there any more.
        assert_not_found(&reg.unregister_if_same("n", tag).unwrap_err(), "n");
    }
}

#[test]
fn unregister_if_same_with_stale_tag_changes_nothing() {
    let reg: Registry<Arc<str>> = registry();
    let old = reg.register("n", s("old")).unwrap().detach();
    let mid = reg.replace_if_same("n", old, s("mid")).unwrap();
    let err = reg.unregister_if_same("n", old).unwrap_err();
    match &err {
        Error::TagMismatch {
            name,
            expected,
            current,
        } => {
            assert_eq!(name, "n");
            assert_eq!(*expected, old);
            assert_eq!(*current, mid);
        }
        other => panic!("expected TagMismatch, got {other:?}"),
    }
    assert_eq!(reg.tag_of("n"), Some(mid));
    assert_eq!(value_of(&reg, "n").as_deref(), Some("mid"));
    assert_eq!(reg.len(), 1);
}

#[test]
fn unregister_if_same_missing_name() {
    let reg: Registry<u32> = registry();
    let tag = Tag::new(InstanceId::fresh(), Generation::from_raw(1));
    assert_not_found(
        &reg.unregister_if_same("missing", tag).unwrap_err(),
        "missing",
    );
    // A name that exists only as a neighbour in the table.
    let _g = reg.register("present", 1).unwrap();
    assert_not_found(
        &reg.unregister_if_same("presen", tag).unwrap_err(),
        "presen",
    );
    assert_eq!(reg.len(), 1);
}

#[test]
fn forged_tags() {
    let reg: Registry<u32> = registry();
    let real = reg.register("target", 1).unwrap().detach();
    let forgeries = [
        Tag::new(InstanceId::from_raw(0), Generation::from_raw(0)),
        Tag::new(
            InstanceId::from_raw(u64::MAX),
            Generation::from_raw(u64::MAX),
        ),
        Tag::new(
            real.instance(),
            Generation::from_raw(real.generation().as_raw() + 1),
        ),
        Tag::new(
            real.instance(),
            Generation::from_raw(real.generation().as_raw() - 1),
        ),
        Tag::new(
            InstanceId::from_raw(real.instance().as_raw() + 1),
            real.generation(),
        ),
        Tag::new(InstanceId::fresh(), real.generation()),
    ];
    for forged in forgeries {
        assert_ne!(forged, real);
        assert_eq!(
            mismatch(reg.unregister_if_same("target", forged).unwrap_err()),
            (forged, real)
        );
        let r = reg.replace_if_same("target", forged, 2).unwrap_err();
        assert_eq!(mismatch(r.error().clone()), (forged, real));
        assert_eq!(r.into_value(), 2);
        assert!(!reg.is_current("target", forged));
        assert_eq!(reg.get_if("target", forged), None);
        assert_eq!(reg.tag_of("target"), Some(real));
    }
    // A tag is just a value: rebuilt from its raw parts it is the same tag, and works.
    let rebuilt = Tag::new(
        InstanceId::from_raw(real.instance().as_raw()),
        Generation::from_raw(real.generation().as_raw()),
    );
    assert_eq!(rebuilt, real);
    assert_eq!(reg.get_if("target", rebuilt), Some(1));
    assert_eq!(
        reg.unregister_if_same("target", rebuilt).unwrap().tag(),
        real
    );
    assert!(reg.is_empty());
}

#[test]
fn replace_if_same_new_generation_same_instance() {
    for reg in configs::<Arc<str>>() {
        let me = InstanceId::fresh();
        let g = reg.register_as("n", me, s("v1")).unwrap();
        let t1 = g.tag();
        let t2 = reg.replace_if_same("n", t1, s("v2")).unwrap();
        assert_eq!(t2.instance(), me);
        assert!(t2.generation() > t1.generation());
        assert_eq!(reg.get_if("n", t2).as_deref(), Some("v2"));
        assert_eq!(reg.len(), 1);
        // The stale tag is refused and the value handed back.
        let refused = reg.replace_if_same("n", t1, s("v3")).unwrap_err();
        assert_eq!(mismatch(refused.error().clone()), (t1, t2));
        assert_eq!(&*refused.into_value(), "v3");
        assert_eq!(value_of(&reg, "n").as_deref(), Some("v2"));
        // The chain goes on from the current tag.
        let t3 = reg.replace_if_same("n", t2, s("v3")).unwrap();
        assert!(t3.generation() > t2.generation());
        assert_eq!(t3.instance(), me);
        // The guard holding t1 is stale: its drop does nothing (documented).
        assert!(!g.is_current());
        drop(g);
        assert_eq!(reg.tag_of("n"), Some(t3));
        // Missing name: NotFound, value back.
        let refused = reg.replace_if_same("missing", t3, s("v4")).unwrap_err();
        assert_not_found(refused.error(), "missing");
        assert_eq!(&*refused.into_value(), "v4");
        assert!(!reg.contains("missing"));
        // Removed name: NotFound too.
        reg.unregister_if_same("n", t3).unwrap();
        let refused = reg.replace_if_same("n", t3, s("v5")).unwrap_err();
        assert_not_found(refused.error(), "n");
        assert!(reg.is_empty());
    }
}

#[test]
fn unregister_legacy_is_unconditional() {
    let reg: Registry<u32> = registry();
    let g = reg.register("n", 1).unwrap();
    let removed = reg.unregister("n").unwrap();
    assert_eq!(removed.tag(), g.tag());
    assert_eq!(*removed.value(), 1);
    assert!(!reg.contains("n"));
    assert_not_found(&reg.unregister("n").unwrap_err(), "n");
    // The guard's drop after that is a no-op, even once the name is bound again.
    let g2 = reg.register("n", 2).unwrap();
    drop(g);
    assert!(g2.is_current());
    assert_eq!(reg.get_if("n", g2.tag()), Some(2));
}

#[test]
fn unregister_instance_removes_all_its_names_and_only_those() {
    for reg in configs::<u32>() {
        let x = InstanceId::fresh();
        let y = InstanceId::fresh();
        let xa = reg.register_as("x-a", x, 1).unwrap();
        let xb = reg.register_as("x-b", x, 2).unwrap().detach();
        let mut xc = reg.register_as("x-c", x, 3).unwrap();
        let xc_tag = xc.replace(30).unwrap();
        let ya = reg.register_as("y-a", y, 4).unwrap();
        let other = reg.register("other", 5).unwrap();
        let mut removed = reg.unregister_instance(x);
        removed.sort();
        assert_eq!(
            removed,
            vec![
                ("x-a".to_owned(), xa.tag()),
                ("x-b".to_owned(), xb),
                ("x-c".to_owned(), xc_tag),
            ]
        );
        assert_eq!(reg.names(), vec!["other", "y-a"]);
        assert!(ya.is_current() && other.is_current());
        assert!(!xa.is_current() && !xc.is_current());
        assert!(reg.unregister_instance(x).is_empty(), "nothing left of x");
        assert!(reg.unregister_instance(InstanceId::fresh()).is_empty());
        // x's guards dropping late do not touch a new binding of x's name.
        let newer = reg.register_as("x-a", x, 6).unwrap();
        drop((xa, xc));
        assert!(newer.is_current());
        assert_eq!(
            reg.unregister_instance(x),
            vec![("x-a".to_owned(), newer.tag())]
        );
        assert_eq!(reg.len(), 2);
    }
}

// ---------------------------------------------------------------------------------------------
// The Registration guard
// ---------------------------------------------------------------------------------------------

#[test]
fn registration_accessors() {
    let reg: Registry<Arc<str>> = registry();
    let g = reg.register("agent", s("A")).unwrap();
    assert_eq!(g.name(), "agent");
    assert_eq!(Some(g.tag()), reg.tag_of("agent"));
    assert!(g.is_current());
    let e = g.get().unwrap();
    assert_eq!((e.tag(), &*e.into_value()), (g.tag(), "A"));
    assert!(g.registry().contains("agent"));
    let debug = format!("{g:?}");
    assert!(debug.contains("agent"), "{debug}");
}

#[test]
fn registration_drop_unbinds() {
    let reg: Registry<u32> = registry();
    {
        let _g = reg.register("scoped", 1).unwrap();
        assert!(reg.contains("scoped"));
    }
    assert!(!reg.contains("scoped"));
    assert!(reg.is_empty());
}

#[test]
fn registration_detach_keeps_binding() {
    let reg: Registry<u32> = registry();
    let g = reg.register("kept", 1).unwrap();
    let expected = g.tag();
    let tag = g.detach();
    assert_eq!(tag, expected);
    assert_eq!(reg.get_if("kept", tag), Some(1));
    assert_eq!(reg.len(), 1);
    reg.unregister_if_same("kept", tag).unwrap();
    assert!(reg.is_empty());
}

#[test]
fn registration_unregister_reports_outcome() {
    let reg: Registry<u32> = registry();
    // Own binding: removed, tag reported.
    let g = reg.register("n", 1).unwrap();
    let tag = g.tag();
    assert_eq!(g.unregister().unwrap(), tag);
    assert!(!reg.contains("n"));
    // Removed by someone else: NotFound.
    let g = reg.register("n", 2).unwrap();
    reg.unregister("n").unwrap();
    assert_not_found(&g.unregister().unwrap_err(), "n");
    // Replaced by someone else: TagMismatch, and the newer binding stays.
    let g = reg.register("n", 3).unwrap();
    let old = g.tag();
    reg.unregister("n").unwrap();
    let newer = reg.register("n", 4).unwrap().detach();
    assert_eq!(mismatch(g.unregister().unwrap_err()), (old, newer));
    assert_eq!(reg.get_if("n", newer), Some(4));
}

#[test]
fn registration_replace_keeps_guard_current() {
    let reg: Registry<Arc<str>> = registry();
    let mut g = reg.register("n", s("v1")).unwrap();
    let t1 = g.tag();
    let t2 = g.replace(s("v2")).unwrap();
    assert_eq!(g.tag(), t2);
    assert_eq!(t2.instance(), t1.instance());
    assert!(t2.generation() > t1.generation());
    assert!(g.is_current());
    assert_eq!(&*g.get().unwrap().into_value(), "v2");
    // Someone else replaces it: the guard's replace is refused, value back, guard unchanged.
    let t3 = reg.replace_if_same("n", t2, s("other")).unwrap();
    let refused = g.replace(s("mine")).unwrap_err();
    assert_eq!(mismatch(refused.error().clone()), (t2, t3));
    assert_eq!(&*refused.into_value(), "mine");
    assert_eq!(g.tag(), t2);
    assert!(!g.is_current());
    assert!(g.get().is_none());
    drop(g);
    assert_eq!(value_of(&reg, "n").as_deref(), Some("other"));
    // A guard that replaced its own value removes the newest value on drop.
    let mut g = reg.register("m", s("m1")).unwrap();
    g.replace(s("m2")).unwrap();
    g.replace(s("m3")).unwrap();
    drop(g);
    assert!(!reg.contains("m"));
}

#[test]
fn registration_keeps_registry_alive() {
    let reg: Registry<u32> = registry();
    let g = reg.register("n", 1).unwrap();
    let other_handle = reg.clone();
    drop(reg);
    // The guard holds a clone; the registry is still there.
    assert!(g.is_current());
    assert_eq!(g.get().map(|e| *e.value()), Some(1));
    assert!(other_handle.contains("n"));
    drop(g);
    assert!(other_handle.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Whole-registry views
// ---------------------------------------------------------------------------------------------

#[test]
fn len_is_empty_names_entries() {
    for reg in configs::<u32>() {
        assert_eq!(reg.len(), 0);
        assert!(reg.is_empty());
        assert!(reg.names().is_empty());
        assert!(reg.entries().is_empty());
        let mut guards = Vec::new();
        for (i, name) in ["delta", "alpha", "charlie", "bravo"].iter().enumerate() {
            guards.push(reg.register(name, i as u32).unwrap());
        }
        assert_eq!(reg.len(), 4);
        assert!(!reg.is_empty());
        assert_eq!(
            reg.names(),
            vec!["alpha", "bravo", "charlie", "delta"],
            "sorted"
        );
        let entries = reg.entries();
        assert_eq!(
            entries
                .iter()
                .map(|(n, e)| (n.as_str(), *e.value()))
                .collect::<Vec<_>>(),
            vec![("alpha", 1), ("bravo", 3), ("charlie", 2), ("delta", 0)]
        );
        for (name, e) in &entries {
            assert_eq!(reg.tag_of(name), Some(e.tag()));
        }
        drop(guards.remove(0)); // unbinds "delta"
        assert_eq!(reg.len(), 3);
        assert_eq!(reg.names(), vec!["alpha", "bravo", "charlie"]);
        guards.clear();
        assert_eq!(reg.len(), 0);
        assert!(reg.is_empty());
    }
}

#[test]
fn pinned_iter_sees_each_binding_once() {
    for reg in configs::<usize>() {
        let n = scale(300, 40);
        let mut expected: HashMap<String, (Tag, usize)> = HashMap::new();
        for i in 0..n {
            let name = format!("agent-{i}");
            let tag = reg.register(&name, i).unwrap().detach();
            expected.insert(name, (tag, i));
        }
        // Remove every third, replace every fifth.
        for i in (0..n).step_by(3) {
            let name = format!("agent-{i}");
            let (tag, _) = expected.remove(&name).unwrap();
            reg.unregister_if_same(&name, tag).unwrap();
        }
        for i in (1..n).step_by(5) {
            let name = format!("agent-{i}");
            if let Some((tag, _)) = expected.get(&name).copied() {
                let new = reg.replace_if_same(&name, tag, i + 1_000_000).unwrap();
                expected.insert(name, (new, i + 1_000_000));
            }
        }
        let pinned = reg.pin();
        let mut seen: HashMap<String, (Tag, usize)> = HashMap::new();
        for e in pinned.iter() {
            let prev = seen.insert(e.name().to_owned(), (e.tag(), *e.value()));
            assert!(prev.is_none(), "{} seen twice", e.name());
        }
        assert_eq!(seen, expected);
        assert_eq!(reg.len(), expected.len());
        assert_eq!(reg.names().len(), expected.len());
    }
}

#[test]
fn iter_during_growth_sees_every_present_binding_exactly_once() {
    let reg: Registry<usize> = small();
    let before = scale(100, 20);
    let during = scale(2000, 60);
    let mut present = HashMap::new();
    for i in 0..before {
        let name = format!("old-{i}");
        present.insert(name.clone(), reg.register(&name, i).unwrap().detach());
    }
    let pinned = reg.pin();
    let mut seen: HashMap<(String, Tag), usize> = HashMap::new();
    let mut added = 0;
    for (k, e) in pinned.iter().enumerate() {
        *seen.entry((e.name().to_owned(), e.tag())).or_default() += 1;
        if k % 3 == 0 && added < during {
            // Force migrations while the walk is under way.
            for _ in 0..during / 10 {
                pinned
                    .register(&format!("new-{added}"), added)
                    .unwrap()
                    .detach();
                added += 1;
            }
        }
    }
    for ((name, tag), count) in &seen {
        assert_eq!(*count, 1, "binding {name} {tag:?} seen {count} times");
    }
    for (name, tag) in &present {
        assert!(
            seen.contains_key(&(name.clone(), *tag)),
            "{name} present all along, not seen"
        );
    }
    drop(pinned);
    assert_eq!(reg.len(), before + added);
    assert_eq!(reg.pin().iter().count(), before + added);
}

#[test]
fn clear_removes_everything_and_generations_keep_increasing() {
    for reg in configs::<u32>() {
        let guards: Vec<_> = (0..10u32)
            .map(|i| reg.register(&format!("n{i}"), i).unwrap())
            .collect();
        let max_before = guards.iter().map(|g| g.tag()).max().unwrap();
        assert_eq!(reg.clear(), 10);
        assert!(reg.is_empty());
        assert!(reg.names().is_empty());
        assert_eq!(reg.clear(), 0);
        // New bindings of the same names, with greater tags (generation-wise).
        let after: Vec<_> = (0..10u32)
            .map(|i| reg.register(&format!("n{i}"), i + 100).unwrap())
            .collect();
        for g in &after {
            assert!(g.tag().generation() > max_before.generation());
        }
        // Old guards dropping late leave the new bindings alone.
        drop(guards);
        assert_eq!(reg.len(), 10);
        for (i, g) in after.iter().enumerate() {
            assert_eq!(reg.get_if(&format!("n{i}"), g.tag()), Some(i as u32 + 100));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_names_are_refused_with_a_reason() {
    let reg: Registry<u32> = registry();
    let too_long = "a".repeat(MAX_NAME_LEN + 1);
    let multibyte_too_long = "é".repeat(MAX_NAME_LEN / 2 + 1); // 2 bytes each
    let cases: Vec<(String, InvalidNameReason)> = vec![
        (String::new(), InvalidNameReason::Empty),
        (
            too_long.clone(),
            InvalidNameReason::TooLong {
                len: MAX_NAME_LEN + 1,
            },
        ),
        (
            multibyte_too_long.clone(),
            InvalidNameReason::TooLong {
                len: multibyte_too_long.len(),
            },
        ),
        (
            "line\nbreak".into(),
            InvalidNameReason::ControlChar { at: 4 },
        ),
        ("\0".into(), InvalidNameReason::ControlChar { at: 0 }),
        ("tab\t".into(), InvalidNameReason::ControlChar { at: 3 }),
        ("del\u{7f}".into(), InvalidNameReason::ControlChar { at: 3 }),
        ("é\u{85}".into(), InvalidNameReason::ControlChar { at: 2 }), // C1, after a 2-byte char
        (
            "esc\u{1b}[31m".into(),
            InvalidNameReason::ControlChar { at: 3 },
        ),
    ];
    for (name, reason) in &cases {
        let check = |e: &Error| {
            let (got_name, got_reason) = invalid(e);
            assert_eq!(&got_name, name, "the name is reported whole");
            assert_eq!(&got_reason, reason, "{name:?}");
        };
        let r = reg.register(name, 1).unwrap_err();
        check(r.error());
        assert_eq!(r.into_value(), 1);
        let r = reg.register_as(name, InstanceId::fresh(), 2).unwrap_err();
        check(r.error());
        assert_eq!(r.into_value(), 2);
        let r = reg
            .ensure_registered(name, InstanceId::fresh(), 3)
            .unwrap_err();
        check(r.error());
        assert_eq!(r.into_value(), 3);
        let tag = Tag::new(InstanceId::fresh(), Generation::from_raw(1));
        check(&reg.unregister_if_same(name, tag).unwrap_err());
        check(&reg.unregister(name).unwrap_err());
        let r = reg.replace_if_same(name, tag, 4).unwrap_err();
        check(r.error());
        assert_eq!(r.into_value(), 4);
        // Reads of an invalid name simply find nothing.
        assert!(reg.get(name).is_none());
        assert!(!reg.contains(name));
    }
    let weak: Registry<Arc<u8>> = registry();
    let owner = Arc::new(0u8);
    let r = weak.register_weak("", &owner).unwrap_err();
    assert_eq!(invalid(r.error()).1, InvalidNameReason::Empty);
    assert!(Arc::ptr_eq(&r.into_value(), &owner));
    assert!(reg.is_empty() && weak.is_empty());
}

#[test]
fn names_at_the_limit_are_accepted() {
    let reg: Registry<u32> = registry();
    let ascii = "x".repeat(MAX_NAME_LEN);
    // 85 three-byte chars = 255 bytes.
    let cjk = "名".repeat(MAX_NAME_LEN / 3);
    assert_eq!(cjk.len(), MAX_NAME_LEN);
    let one = "1";
    for (i, name) in [ascii.as_str(), cjk.as_str(), one, " ", "a b"]
        .iter()
        .enumerate()
    {
        let g = reg.register(name, i as u32).unwrap();
        assert_eq!(g.name(), *name);
        assert_eq!(reg.get(name).map(|e| *e.value()), Some(i as u32));
        g.detach();
    }
    assert_eq!(reg.len(), 5);
}

#[test]
fn long_and_non_ascii_names_round_trip_byte_for_byte() {
    let reg: Registry<usize> = registry();
    // 200 bytes, every byte position distinct enough that truncation anywhere would show.
    let long: String = (0..200)
        .map(|i| char::from(b'!' + (i % 90) as u8))
        .collect();
    assert_eq!(long.len(), 200);
    // Same first 199 bytes, different last one.
    let mut sibling = long[..199].to_owned();
    sibling.push('~');
    let names = vec![
        long.clone(),
        sibling.clone(),
        "агент-координатор".to_owned(),
        "エージェント🚀".to_owned(),
        "café".to_owned(),        // é precomposed
        "cafe\u{301}".to_owned(), // e + combining acute: a different name, not normalised
        "Ωmega/αlpha:β".to_owned(),
        "emoji-👩‍💻-zwj".to_owned(),
        "x".repeat(22),
        "x".repeat(23), // at the inline limit of the implementation
        "x".repeat(24), // just past it
    ];
    let mut guards = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let g = reg.register(name, i).unwrap();
        assert_eq!(g.name().as_bytes(), name.as_bytes());
        guards.push(g);
    }
    assert_eq!(reg.len(), names.len(), "no two names collapsed into one");
    for (i, name) in names.iter().enumerate() {
        assert_eq!(reg.get(name).map(|e| *e.value()), Some(i), "{name:?}");
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        reg.names(),
        sorted,
        "names() returns the names byte for byte"
    );
    let pinned = reg.pin();
    for e in pinned.iter() {
        assert_eq!(e.name().as_bytes(), names[*e.value()].as_bytes());
    }
    drop(pinned);
    // Prefixes of the long name are not bound.
    assert!(reg.get(&long[..199]).is_none());
    assert!(reg.get(&long[..64]).is_none());
    // Errors carry the whole name.
    let (name, current, _) = already(reg.register(&long, 0));
    assert_eq!(name, long);
    assert_eq!(current, guards[0].tag());
    drop(guards);
    assert!(reg.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Error messages
// ---------------------------------------------------------------------------------------------

#[test]
fn error_messages_name_the_name_and_the_tags() {
    let reg: Registry<u32> = registry();
    let g = reg.register("Coordinator", 1).unwrap();
    let current = g.tag();

    let rejected = reg.register("Coordinator", 2).unwrap_err();
    let msg = rejected.error().to_string();
    assert!(msg.contains("Coordinator"), "{msg}");
    assert!(
        msg.contains(&current.to_string()),
        "{msg} should show {current}"
    );
    assert_eq!(rejected.to_string(), msg, "Rejected displays its error");
    let debug = format!("{rejected:?}");
    assert!(debug.contains("AlreadyRegistered"), "{debug}");
    // Rejected displays its error and does not give it again as its source: error reporters
    // that print the chain (anyhow's `{:#}`) print the message once.
    assert!(std::error::Error::source(&rejected).is_none());
    let mut chain = vec![rejected.to_string()];
    let mut source = std::error::Error::source(&rejected);
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    assert_eq!(
        chain,
        std::slice::from_ref(&msg),
        "the message appears once in the chain"
    );
    let as_error: Error = rejected.into();
    assert_eq!(as_error.to_string(), msg);

    let stale = Tag::new(
        current.instance(),
        Generation::from_raw(current.generation().as_raw() + 7),
    );
    let msg = reg
        .unregister_if_same("Coordinator", stale)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("Coordinator"), "{msg}");
    assert!(
        msg.contains(&current.to_string()),
        "{msg} should show {current}"
    );
    assert!(
        msg.contains(&stale.to_string()),
        "{msg} should show {stale}"
    );

    let msg = reg
        .unregister_if_same("Nobody", stale)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("Nobody"), "{msg}");

    let msg = reg.register("", 1).unwrap_err().to_string();
    assert!(msg.contains("empty"), "{msg}");
    let msg = reg.register(&"z".repeat(300), 1).unwrap_err().to_string();
    assert!(
        msg.contains("300") && msg.contains(&MAX_NAME_LEN.to_string()),
        "{msg}"
    );
    let msg = reg.register("bell\u{7}", 1).unwrap_err().to_string();
    assert!(msg.contains("bell") && msg.contains("control"), "{msg}");
    // The control character is shown escaped, not raw.
    assert!(!msg.contains('\u{7}'), "{msg:?}");

    // Errors are values: comparable, clonable, typed.
    let e1 = reg.unregister("Nobody").unwrap_err();
    let e2 = e1.clone();
    assert_eq!(e1, e2);
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e1);
    assert!(boxed.to_string().contains("Nobody"));
}

#[test]
fn error_messages_for_very_long_names_stay_readable() {
    let reg: Registry<u32> = registry();
    let long = format!("{}{}", "head".repeat(20), "TAIL".repeat(40)); // 240 bytes
    let g = reg.register(&long, 1).unwrap();
    let rejected = reg.register(&long, 2).unwrap_err();
    let msg = rejected.to_string();
    assert!(msg.contains("headhead"), "{msg}");
    assert!(msg.contains(&g.tag().to_string()), "{msg}");
    assert!(
        msg.len() < long.len() + 100,
        "the message shortens a long name: {msg}"
    );
    // ... but the error itself keeps the name whole.
    match rejected.error() {
        Error::AlreadyRegistered { name, .. } => assert_eq!(name, &long),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Faults: panicking destructors, exactly-once drops
// ---------------------------------------------------------------------------------------------

/// Panics when dropped, if armed.
struct Bomb {
    armed: bool,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.armed && !std::thread::panicking() {
            panic!("Bomb dropped (this panic is expected by the test)");
        }
    }
}

#[test]
fn panicking_drop_leaves_registry_consistent() {
    let before = genreg::dropped_value_panics();
    let reg: Registry<Bomb> = registry();
    let doomed = reg.register("doomed", Bomb { armed: true }).unwrap();
    let keeper = reg.register("keeper", Bomb { armed: false }).unwrap();
    let at_drop = reg
        .register("live-at-drop", Bomb { armed: true })
        .unwrap()
        .detach();
    let doomed_tag = doomed.tag();
    assert_eq!(doomed.unregister().unwrap(), doomed_tag);
    // Force collection: the owned collector has no other participant, so `collect` frees the
    // removed node.
    reg.collect();
    assert!(
        genreg::dropped_value_panics() > before,
        "the removed Bomb should have been dropped (and its panic caught) by now"
    );
    // Still consistent and usable.
    assert!(!reg.contains("doomed"));
    assert!(keeper.is_current());
    assert!(reg.is_current("live-at-drop", at_drop));
    assert_eq!(reg.len(), 2);
    let mut again = reg.register("doomed", Bomb { armed: true }).unwrap();
    assert_eq!(reg.names(), vec!["doomed", "keeper", "live-at-drop"]);
    // Replacing a bomb retires it as well.
    let after_first = genreg::dropped_value_panics();
    again.replace(Bomb { armed: false }).unwrap();
    reg.collect();
    assert!(
        genreg::dropped_value_panics() > after_first,
        "the replaced Bomb was dropped"
    );
    assert!(again.is_current());
    assert_eq!(reg.len(), 3);
    drop((again, keeper));
    assert_eq!(reg.len(), 1);
    let mid = genreg::dropped_value_panics();
    // Dropping the registry drops the live bomb; its panic is caught too.
    drop(reg);
    assert!(
        genreg::dropped_value_panics() > mid,
        "the live Bomb's panic was caught at registry drop"
    );
}

/// Counts drops per id.
struct Counted {
    id: usize,
    drops: Arc<Vec<AtomicUsize>>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn every_value_is_dropped_exactly_once() {
    let ids = 64;
    let drops: Arc<Vec<AtomicUsize>> = Arc::new((0..ids).map(|_| AtomicUsize::new(0)).collect());
    let make = |id: usize| Counted {
        id,
        drops: Arc::clone(&drops),
    };
    let count = |id: usize| drops[id].load(Ordering::SeqCst);
    for reg in [registry::<Counted>(), small::<Counted>()] {
        for d in drops.iter() {
            d.store(0, Ordering::SeqCst);
        }
        let mut live = HashSet::new();
        let mut guards = Vec::new();
        // 0..20: registered, kept.
        for id in 0..20 {
            guards.push(reg.register(&format!("n{id}"), make(id)).unwrap());
            live.insert(id);
        }
        // 20..25: refused (names taken), handed back and dropped here.
        for id in 20..25 {
            let rejected = reg
                .register(&format!("n{}", id - 20), make(id))
                .unwrap_err();
            let back = rejected.into_value();
            assert_eq!(back.id, id);
            drop(back);
            assert_eq!(
                count(id),
                1,
                "a refused value is handed back, not dropped twice"
            );
        }
        // 25..30: replace n0..n5 (the old values 0..5 are retired).
        for id in 25..30 {
            let g = &mut guards[id - 25];
            g.replace(make(id)).unwrap();
            live.remove(&(id - 25));
            live.insert(id);
        }
        // 30..35: refused replacement (stale tag), handed back.
        for id in 30..35 {
            let stale = Tag::new(InstanceId::fresh(), Generation::from_raw(1));
            let r = reg
                .replace_if_same(&format!("n{}", id - 20), stale, make(id))
                .unwrap_err();
            drop(r.into_value());
            assert_eq!(count(id), 1);
        }
        // Unregister n10..n15 (values 10..15) by dropping their guards.
        for g in guards.drain(10..15) {
            drop(g);
        }
        for id in 10..15 {
            live.remove(&id);
        }
        // 35..45: registered then cleared.
        for id in 35..45 {
            reg.register(&format!("c{id}"), make(id)).unwrap().detach();
        }
        assert_eq!(reg.clear(), 10 + 15);
        guards.clear(); // stale now: dropping them removes nothing
        // 45..55: registered after the clear and left in place.
        for id in 45..55 {
            reg.register(&format!("n{id}"), make(id)).unwrap().detach();
        }
        live.clear();
        live.extend(45..55);
        // Nothing still bound has been dropped.
        for &id in &live {
            assert_eq!(
                count(id),
                0,
                "value {id} is still bound and must not be dropped"
            );
        }
        assert_eq!(reg.len(), live.len());
        drop(reg);
        for id in 0..55 {
            assert_eq!(count(id), 1, "value {id} dropped {} times", count(id));
        }
        for id in 55..ids {
            assert_eq!(count(id), 0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Growth and churn
// ---------------------------------------------------------------------------------------------

fn grow_and_churn(names: usize, rounds: usize) {
    let reg: Registry<usize> = small();
    assert!(reg.capacity() >= 1);
    let mut tags: Vec<Tag> = (0..names)
        .map(|i| reg.register(&format!("agent-{i}"), i).unwrap().detach())
        .collect();
    assert_eq!(reg.len(), names);
    assert!(
        reg.capacity() >= names,
        "capacity {} < {names} names",
        reg.capacity()
    );
    for (i, tag) in tags.iter().enumerate() {
        let e = reg
            .get(&format!("agent-{i}"))
            .unwrap_or_else(|| panic!("agent-{i} lost"));
        assert_eq!((e.tag(), *e.value()), (*tag, i));
    }
    assert_eq!(reg.names().len(), names);
    let peak = reg.capacity();
    // Churn the same names: remove and re-register, or replace.
    for round in 0..rounds {
        for (i, tag) in tags.iter_mut().enumerate() {
            let name = format!("agent-{i}");
            if (round + i) % 2 == 0 {
                reg.unregister_if_same(&name, *tag).unwrap();
                *tag = reg.register(&name, round * names + i).unwrap().detach();
            } else {
                *tag = reg.replace_if_same(&name, *tag, round * names + i).unwrap();
            }
        }
        assert_eq!(reg.len(), names);
        assert!(
            reg.capacity() <= peak.max(4 * names.next_power_of_two()),
            "capacity grew to {} under churn (peak after fill {peak}, {names} names)",
            reg.capacity()
        );
    }
    for (i, tag) in tags.iter().enumerate() {
        assert!(reg.is_current(&format!("agent-{i}"), *tag), "agent-{i}");
    }
    assert_eq!(reg.pin().iter().count(), names);
}

#[test]
#[cfg_attr(miri, ignore)]
fn growth_from_capacity_one_and_churn() {
    grow_and_churn(3000, 30);
}

#[test]
fn growth_from_capacity_one_and_churn_small() {
    grow_and_churn(70, 4);
}

fn churn_few_names(live: usize, ops: usize) {
    let reg: Registry<usize> = small();
    let guards: Vec<_> = (0..live)
        .map(|i| reg.register(&format!("stay-{i}"), i).unwrap())
        .collect();
    for i in 0..ops {
        let g = reg.register(&format!("churn-{}", i % 3), i).unwrap();
        assert!(g.is_current());
        drop(g);
    }
    assert_eq!(reg.len(), live);
    assert!(
        reg.capacity() <= 4 * (live + 3).next_power_of_two().max(4),
        "capacity {} for {live} live names after {ops} register/unregister",
        reg.capacity()
    );
    for g in &guards {
        assert!(g.is_current());
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn churn_keeps_capacity_bounded() {
    churn_few_names(10, 100_000);
}

#[test]
fn churn_keeps_capacity_bounded_small() {
    churn_few_names(3, 200);
}

#[test]
fn concurrent_guard_churn_on_shared_names() {
    // Threads register and drop guards on a few shared names; whoever holds a guard owns the
    // binding, and no guard's drop ever removes a binding it does not own.
    let threads = 4;
    let iters = scale(2000, 20);
    let reg: Registry<usize> = registry();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let reg = &reg;
            scope.spawn(move || {
                for i in 0..iters {
                    let name = format!("shared-{}", i % 3);
                    match reg.register(&name, t) {
                        Ok(g) => {
                            // Nobody else can remove or replace it while we hold the guard
                            // (everyone here only uses guards).
                            assert!(g.is_current());
                            assert_eq!(g.get().map(|e| *e.value()), Some(t));
                            assert_eq!(g.unregister().map(|_| ()), Ok(()));
                        }
                        Err(r) => {
                            let (_, current, v) = already(Err(r));
                            assert_eq!(v, t);
                            assert_ne!(current.instance(), InstanceId::from_raw(0));
                        }
                    }
                }
            });
        }
    });
    assert!(reg.is_empty(), "left behind: {:?}", reg.names());
}

#[test]
fn readers_never_miss_a_stable_binding_while_the_table_grows() {
    // Stable bindings are present for the whole test: every read must find them with their
    // tag, every walk must see each once, and stale or forged tags must never remove them,
    // while another thread grows the table from its smallest size and churns other names.
    let stable = scale(16, 4);
    let grow = scale(3000, 40);
    let readers = 2;
    let reg: Registry<usize> = small();
    let tags: Vec<(String, Tag)> = (0..stable)
        .map(|i| {
            let name = format!("stable-{i}");
            let tag = reg.register(&name, i).unwrap().detach();
            (name, tag)
        })
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (reg, tags, done) = (&reg, &tags, &done);
        scope.spawn(move || {
            for i in 0..grow {
                let g = reg.register(&format!("grow-{i}"), i).unwrap();
                if i % 4 == 0 {
                    drop(g); // churn: leaves a tombstone
                } else {
                    g.detach();
                }
                // Forged tags on stable names never remove anything.
                let (name, tag) = &tags[i % tags.len()];
                let forged = Tag::new(
                    tag.instance(),
                    Generation::from_raw(tag.generation().as_raw() + 1),
                );
                assert_eq!(
                    mismatch(reg.unregister_if_same(name, forged).unwrap_err()),
                    (forged, *tag)
                );
            }
            done.store(true, Ordering::SeqCst);
        });
        for r in 0..readers {
            scope.spawn(move || {
                let mut rounds = 0;
                while !done.load(Ordering::SeqCst) || rounds < 2 {
                    rounds += 1;
                    for (i, (name, tag)) in tags.iter().enumerate() {
                        let e = reg
                            .get(name)
                            .unwrap_or_else(|| panic!("{name} missed by a read"));
                        assert_eq!((e.tag(), *e.value()), (*tag, i));
                        assert!(reg.is_current(name, *tag));
                    }
                    if r == 0 {
                        let pinned = reg.pin();
                        let mut seen = vec![0usize; tags.len()];
                        for e in pinned.iter() {
                            if let Some(i) = e.name().strip_prefix("stable-") {
                                seen[i.parse::<usize>().unwrap()] += 1;
                                assert_eq!(
                                    Some(&(e.name().to_owned(), e.tag())),
                                    tags.get(*e.value())
                                );
                            }
                        }
                        assert!(
                            seen.iter().all(|&n| n == 1),
                            "a walk saw stable names {seen:?} times"
                        );
                    }
                }
            });
        }
    });
    assert_eq!(reg.len(), stable + grow - grow.div_ceil(4));
    for (name, tag) in &tags {
        assert!(reg.is_current(name, *tag));
    }
}

/// `register_detached` binds with no guard: the tag it returns is the binding's, nothing
/// unbinds it but an explicit removal, a refusal hands the value back with the same error
/// `register` gives, and a stale tag cannot remove a later binding.
#[test]
fn register_detached_binds_without_a_guard() {
    for reg in configs::<Arc<str>>() {
        let t1 = reg.register_detached("planner", s("v1")).unwrap();
        assert_eq!(reg.tag_of("planner"), Some(t1));
        assert_eq!(value_of(&reg, "planner").as_deref(), Some("v1"));

        // Taken: the same refusal as `register`, the value handed back.
        let rejected = reg.register_detached("planner", s("v2")).unwrap_err();
        match rejected.error() {
            Error::AlreadyRegistered { name, current } => {
                assert_eq!(name, "planner");
                assert_eq!(*current, t1);
            }
            e => panic!("wrong refusal {e:?}"),
        }
        assert_eq!(&*rejected.into_value(), "v2");
        let guarded = reg.register("planner", s("v3")).map(|g| g.tag());
        assert!(guarded.is_err(), "a detached binding still holds its name");

        // Invalid names are refused before anything is bound.
        let bad = reg.register_detached("bad\nname", s("v")).unwrap_err();
        assert!(matches!(bad.error(), Error::InvalidName { .. }));

        // Removal by tag; then a stale tag cannot remove the next binding.
        assert_eq!(reg.unregister_if_same("planner", t1).unwrap().tag(), t1);
        let t2 = reg.pin().register_detached("planner", s("v4")).unwrap();
        assert_ne!(t1, t2);
        assert!(t2.generation() > t1.generation());
        assert_eq!(
            mismatch(reg.unregister_if_same("planner", t1).unwrap_err()),
            (t1, t2)
        );
        assert_eq!(value_of(&reg, "planner").as_deref(), Some("v4"));
        assert_eq!(reg.len(), 1);
    }
}

/// Refusals report the name through `Name`, which reads like the `&str` it was given, inline
/// or boxed.
#[test]
fn error_names_read_as_the_name_given() {
    let reg = registry::<u32>();
    for name in [
        "n",
        "x".repeat(23).as_str(),
        "y".repeat(24).as_str(),
        "名前-エージェント-🚀",
    ] {
        let Error::NotFound { name: got } = reg.unregister(name).unwrap_err() else {
            panic!("expected NotFound");
        };
        assert_eq!(got, name);
        assert_eq!(got.as_str(), name);
        assert_eq!(got.len(), name.len());
        assert_eq!(got.to_string(), name);
        assert_eq!(format!("{got:?}"), format!("{name:?}"));
        assert_eq!(String::from(got.clone()), name);
        assert_eq!(got, genreg::Name::from(name));
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 8: defects and sharp edges (each test failed before its fix, unless it says otherwise)
// ---------------------------------------------------------------------------------------------

/// Bug 2: builder inputs at their extremes are clamped, never undefined behaviour. (Before:
/// `capacity(n)` with n > 2^62 wrapped `next_power_of_two` to 0 in a release build, and the
/// first lookup indexed an empty slot array: SIGSEGV.) `cargo test --release` runs this
/// without overflow checks, as a release build of a user's program would.
#[test]
#[cfg_attr(miri, ignore)] // allocates the largest pre-size (256 MiB)
fn builder_capacity_extremes_are_clamped() {
    let max_slots = 2 * genreg::Builder::<u32>::MAX_PRESIZE;
    for names in [usize::MAX, (1usize << 62) + 1, usize::MAX / 2 + 1] {
        let reg: Registry<u32> = Registry::builder().capacity(names).build();
        assert_eq!(reg.capacity(), max_slots, "capacity({names}) clamped");
        let tag = reg.register_detached("a", 1).unwrap();
        assert_eq!(reg.get("a").map(|e| e.tag()), Some(tag));
        assert!(reg.get("b").is_none());
        drop(reg);
    }
    for names in [0, 1] {
        let reg: Registry<u32> = Registry::builder().capacity(names).build();
        assert!(reg.capacity() >= 1);
        reg.register_detached("a", 1).unwrap();
        assert!(reg.contains("a"));
    }
    // Any seed is a seed.
    for seed in [0, u64::MAX] {
        let reg: Registry<u32> = Registry::builder().hash_seed(seed).build();
        reg.register_detached("a", 1).unwrap();
        assert!(reg.contains("a"));
    }
}

/// Bug 3: dead weak bindings are shed by migrations: with no visible binding at all, 20,000
/// weak registrations (detached guards, owners dropped at once) keep the table small. (Before:
/// migrations copied every dead weak binding, and the table grew to 32,768 slots, each dead
/// binding holding its owner's allocation through the `Weak`.)
#[test]
fn dead_weak_bindings_are_shed_by_migrations() {
    let reg: Registry<Arc<[u8; 4096]>> = small();
    let n = if cfg!(miri) { 300 } else { 20_000 };
    let mut peak = 0;
    for i in 0..n {
        let owner = Arc::new([0u8; 4096]);
        reg.register_weak(&format!("w{i}"), &owner)
            .unwrap()
            .detach();
        drop(owner);
        peak = peak.max(reg.capacity());
    }
    assert!(
        peak <= 64,
        "the table grew to {peak} slots for 0 visible bindings"
    );
    // What is still stored is only what the last migration has not met yet.
    assert!(reg.len() <= peak, "{} dead bindings stored", reg.len());
    assert!(reg.names().is_empty());
    reg.purge_dead();
    assert_eq!(reg.len(), 0);
}

/// Bug 4: a replacement of a weak binding stays weak, owned by the new value: once the new
/// owner is dropped the binding is gone. (Before: it silently became strong, and the registry
/// kept the new value alive.)
#[test]
fn replacing_a_weak_binding_keeps_it_weak() {
    for reg in configs::<Arc<str>>() {
        let owner = s("first");
        let mut guard = reg.register_weak("W", &owner).unwrap();
        let second = s("second");
        let tag = guard.replace(Arc::clone(&second)).unwrap();
        assert_eq!(value_of(&reg, "W").as_deref(), Some("second"));
        assert_eq!(
            Arc::strong_count(&second),
            1,
            "the registry keeps no strong ref"
        );
        drop(owner);
        assert!(reg.is_current("W", tag), "the old owner no longer matters");
        // Through the registry too, with its own new owner.
        let third = s("third");
        let tag = reg.replace_if_same("W", tag, Arc::clone(&third)).unwrap();
        assert!(guard.is_current() || guard.tag() != tag);
        drop(second);
        assert_eq!(value_of(&reg, "W").as_deref(), Some("third"));
        drop(third);
        assert!(
            reg.get("W").is_none(),
            "the binding died with its new owner"
        );
        assert!(!reg.contains("W"));
        // A dead weak binding cannot be replaced; the value comes back.
        let back = reg.replace_if_same("W", tag, s("fourth")).unwrap_err();
        assert!(matches!(back.error(), Error::NotFound { .. }));
        assert_eq!(&*back.into_value(), "fourth");
        drop(guard);
        // A strong binding's replacement stays strong.
        let g = reg.register("S", s("one")).unwrap();
        reg.replace_if_same("S", g.tag(), s("two")).unwrap();
        assert_eq!(value_of(&reg, "S").as_deref(), Some("two"));
    }
}

/// Bug 5: a removed value is dropped by `collect()` called from another thread, although the
/// removing thread is still alive and idle. (On an owned collector, as here, a call's garbage
/// already left with its short-lived thread handle before the fix; `tests/reclaim.rs` checks
/// the global collector, where it did not.)
#[test]
fn removed_values_are_dropped_by_collect_from_any_thread() {
    let reg: Registry<mpsc::Sender<u32>> = registry();
    let (tx, rx) = mpsc::channel::<u32>();
    let (removed_tx, removed_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let agent = {
        let reg = reg.clone();
        std::thread::spawn(move || {
            let guard = reg.register("agent", tx).unwrap();
            drop(guard); // removes the binding; the Sender is now garbage
            removed_tx.send(()).unwrap();
            // Stay alive and idle (not pinned) until the main thread has checked.
            done_rx.recv().unwrap();
        })
    };
    removed_rx.recv().unwrap();
    assert_eq!(
        rx.try_recv(),
        Err(mpsc::TryRecvError::Empty),
        "the removed Sender waits for a collection"
    );
    assert!(reg.collect());
    assert_eq!(
        rx.try_recv(),
        Err(mpsc::TryRecvError::Disconnected),
        "collect() from another thread dropped the removed Sender"
    );
    done_tx.send(()).unwrap();
    agent.join().unwrap();
}

/// Bug 5, the rule for a registry that goes idle: at most one batch (32) of removed values per
/// removing thread waits in the registry; the rest are handed to the epoch collector as they
/// are removed, and dropped by the removing thread's own later collections, without any
/// `collect()`. (It states the rule; an owned collector passed it before the fix too.)
#[test]
fn an_idle_registry_keeps_at_most_a_batch_of_removed_values() {
    let drops = Arc::new(AtomicUsize::new(0));
    let reg: Registry<DropCount> = registry();
    let n = if cfg!(miri) { 300 } else { 2_000 };
    {
        let (reg, drops) = (reg.clone(), Arc::clone(&drops));
        std::thread::spawn(move || {
            for i in 0..n {
                let g = reg
                    .register(&format!("a{i}"), DropCount(Arc::clone(&drops)))
                    .unwrap();
                drop(g);
            }
        })
        .join()
        .unwrap();
    }
    let waiting = n - drops.load(Ordering::Relaxed);
    // One batch (32, one thread: one stripe) in the registry, and the last two batches handed
    // over, which wait for two more epoch advances.
    assert!(
        waiting <= 3 * 32,
        "{waiting} of {n} removed values still alive"
    );
    reg.collect();
    assert_eq!(
        drops.load(Ordering::Relaxed),
        n,
        "collect() dropped the rest"
    );
}

struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sharp edge 6: `register_auto` checks its prefix once, up front, with room for any number.
/// (Before: a 253-byte prefix worked for 9 names, then failed with `InvalidName`.)
#[test]
fn register_auto_prefix_is_checked_up_front() {
    let reg: Registry<u32> = registry();
    let long = "p".repeat(253);
    let rejected = reg.register_auto(&long, 1).unwrap_err();
    match rejected.error() {
        Error::InvalidName { name, reason } => {
            assert_eq!(name, &long);
            assert_eq!(*reason, InvalidNameReason::PrefixTooLong { len: 253 });
        }
        other => panic!("{other:?}"),
    }
    assert!(
        rejected
            .to_string()
            .contains(&genreg::MAX_AUTO_PREFIX_LEN.to_string())
    );
    assert_eq!(rejected.into_value(), 1);
    assert!(reg.is_empty(), "nothing was bound");
    // The longest prefix accepted works for every number, the largest included.
    let ok = "q".repeat(genreg::MAX_AUTO_PREFIX_LEN);
    for i in 0..20 {
        reg.register_auto(&ok, i).unwrap().detach();
    }
    assert!(format!("{ok}-{}", u64::MAX).len() <= MAX_NAME_LEN);
    // The empty prefix makes valid names.
    assert_eq!(reg.register_auto("", 0).unwrap().name(), "-21");
}

/// Sharp edge 7: `ensure_registered` hands the value back when the name is already the
/// caller's, as every refusal does. (Before: it dropped it.)
#[test]
fn ensure_registered_hands_the_value_back() {
    let reg: Registry<Arc<str>> = registry();
    let me = InstanceId::fresh();
    let first = match reg.ensure_registered("svc", me, s("v1")).unwrap() {
        Ensured::Registered(g) => g,
        other => panic!("{other:?}"),
    };
    let again = s("v2");
    match reg
        .ensure_registered("svc", me, Arc::clone(&again))
        .unwrap()
    {
        Ensured::Existing { tag, value } => {
            assert_eq!(tag, first.tag());
            assert!(Arc::ptr_eq(&value, &again), "the value handed back");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(value_of(&reg, "svc").as_deref(), Some("v1"));
}

/// Sharp edge 9: weak bindings take the caller's instance id, so idempotent re-registration and
/// `unregister_instance` work for a MARSYS-style port (which registers every agent weakly).
#[test]
fn weak_bindings_take_the_callers_instance() {
    let reg: Registry<Arc<str>> = registry();
    let agent = s("agent");
    let me = InstanceId::fresh();
    let g = reg.register_weak_as("a", me, &agent).unwrap();
    assert_eq!(g.tag().instance(), me);
    match reg.ensure_registered_weak("a", me, &agent).unwrap() {
        Ensured::Existing { tag, value } => {
            assert_eq!(tag, g.tag());
            assert!(Arc::ptr_eq(&value, &agent));
        }
        other => panic!("{other:?}"),
    }
    let other = reg
        .ensure_registered_weak("a", InstanceId::fresh(), &agent)
        .unwrap_err();
    assert!(
        matches!(other.error(), Error::AlreadyRegistered { current, .. } if *current == g.tag())
    );
    assert!(
        Arc::ptr_eq(&other.into_value(), &agent),
        "a strong clone handed back"
    );
    let b = match reg.ensure_registered_weak("b", me, &agent).unwrap() {
        Ensured::Registered(b) => b.detach(),
        other => panic!("{other:?}"),
    };
    let mut removed = reg.unregister_instance(me);
    removed.sort();
    assert_eq!(
        removed,
        vec![("a".to_owned(), g.tag()), ("b".to_owned(), b)]
    );
    assert!(reg.is_empty());
    // Weak still: once the agent is dropped, a new instance takes the name.
    let g2 = reg.register_weak_as("c", me, &agent).unwrap().detach();
    drop(agent);
    let newer = s("newer");
    assert!(matches!(
        reg.ensure_registered_weak("c", InstanceId::fresh(), &newer),
        Ok(Ensured::Registered(_))
    ));
    assert!(!reg.is_current("c", g2));
    drop(g);
}

/// Sharp edge 11: `len` is O(1) also once weak bindings exist; a dead one counts until purged
/// (by a read of its name, a migration, or `purge_dead`).
#[test]
fn len_stays_o1_with_weak_bindings() {
    let reg: Registry<Arc<str>> = registry();
    let owner = s("o");
    reg.register_weak("w", &owner).unwrap().detach();
    reg.register("s", s("s")).unwrap().detach();
    assert_eq!(reg.len(), 2);
    drop(owner);
    assert_eq!(reg.len(), 2, "len does not walk the table to purge");
    assert_eq!(reg.names(), ["s"]);
    assert!(reg.get("w").is_none());
    assert_eq!(reg.len(), 1, "the read purged the dead binding");
}

/// Dropping a registry in the middle of a migration, with a tombstone whose value was already
/// dropped (found by review: the drop used to finish the migration with an unprotected guard,
/// and freed that tombstone inside a call that still borrowed it, which Miri reports).
#[test]
fn dropping_a_registry_mid_migration_frees_everything_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let reg: Registry<DropCount> = Registry::builder()
        .capacity(100)
        .collector(Collector::new())
        .build();
    let tag = reg
        .register_detached("n0", DropCount(Arc::clone(&drops)))
        .unwrap();
    assert_eq!(reg.pin().unregister_if_same("n0", tag).unwrap().tag(), tag);
    reg.collect();
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    // 256 slots: the 161st claim passes the soft limit (5/8) and starts a migration, which no
    // insert has helped yet when the registry is dropped.
    let n = 160;
    for i in 1..=n {
        reg.register_detached(&format!("n{i}"), DropCount(Arc::clone(&drops)))
            .unwrap();
    }
    drop(reg);
    assert_eq!(
        drops.load(Ordering::Relaxed),
        1 + n,
        "every value dropped exactly once"
    );
}
