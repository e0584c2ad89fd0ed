//! Pools and load: MARSYS's `AgentPool` behaviours (acquire, exhausted, idempotent per branch,
//! release, statistics, peak, async timeout, cleanup) and the namespace rules, on a clock the
//! tests drive.

use std::sync::Arc;
use std::time::Duration;

use genreg::liveness::ManualClock;
use genreg::pool::{MAX_IN_FLIGHT, Selection};
use genreg::{Error, EventKind, Filter, Kind, PoolOptions, Reason, Registry, Revision};

const S: Duration = Duration::from_secs(1);

/// A builder with a collector of its own (the global one leaks at exit under Miri).
fn builder<V: Send + Sync + 'static>() -> genreg::Builder<V> {
    Registry::builder().collector(genreg::epoch::Collector::new())
}

fn registry() -> Registry<Arc<str>> {
    builder().events(1024).build()
}

fn v(s: &str) -> Arc<str> {
    Arc::from(s)
}

fn browsers(n: usize) -> Vec<Arc<str>> {
    (0..n).map(|i| v(&format!("browser-{i}"))).collect()
}

/// The removal events so far, as `(name, reason)`.
fn removals(r: &Registry<Arc<str>>) -> Vec<(String, Reason)> {
    let mut w = r.watch(Filter::all(), Revision::ZERO).unwrap();
    std::iter::from_fn(|| w.try_next().map(Result::unwrap))
        .filter_map(|e| match e.kind() {
            EventKind::Unregistered { reason, .. } => Some((e.name().to_owned(), *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_pool_binds_its_name_and_members_and_says_what_each_name_is() {
    let r = registry();
    let _agent = r.register("solo", v("S")).unwrap();
    let pool = r.register_pool("Browser", browsers(3)).unwrap();
    assert_eq!(pool.name(), "Browser");
    assert_eq!(pool.size(), 3);
    assert_eq!(r.kind("Browser"), Some(Kind::Pool { members: 3 }));
    assert_eq!(
        r.kind("Browser_2"),
        Some(Kind::Member {
            pool: "Browser".into(),
            index: 2
        })
    );
    assert_eq!(r.kind("solo"), Some(Kind::Agent));
    assert_eq!(r.kind("nobody"), None);
    assert!(r.is_pool("Browser") && !r.is_pool("Browser_0") && !r.is_pool("solo"));
    // A member reads as its value; the pool's own name has none.
    assert_eq!(&**r.get("Browser_1").unwrap().value(), "browser-1");
    assert!(r.get("Browser").is_none());
    assert!(r.contains("Browser"));
    assert_eq!(r.tag_of("Browser"), Some(pool.tag()));
    // MARSYS's all_with_pools.
    assert_eq!(
        r.listing(),
        vec![
            ("Browser".to_owned(), Kind::Pool { members: 3 }),
            (
                "Browser_0".to_owned(),
                Kind::Member {
                    pool: "Browser".into(),
                    index: 0
                }
            ),
            (
                "Browser_1".to_owned(),
                Kind::Member {
                    pool: "Browser".into(),
                    index: 1
                }
            ),
            (
                "Browser_2".to_owned(),
                Kind::Member {
                    pool: "Browser".into(),
                    index: 2
                }
            ),
            ("solo".to_owned(), Kind::Agent),
        ]
    );
    assert_eq!(r.normalize("Browser_1"), "Browser");
    assert_eq!(r.normalize("Browser"), "Browser");
    assert_eq!(r.normalize("solo"), "solo");
    // Not a member: a name that only looks like one.
    assert_eq!(r.normalize("Browser_9"), "Browser_9");
    assert!(r.same_logical("Browser_0", "Browser_2"));
    assert!(r.same_logical("Browser", "Browser_1"));
    assert!(!r.same_logical("Browser_0", "solo"));
    assert_eq!(r.instance_count("Browser"), 3);
    assert_eq!(r.instance_count("Browser_0"), 1);
    assert_eq!(r.instance_count("solo"), 1);
    assert_eq!(r.instance_count("nobody"), 0);
}

#[test]
fn registration_is_all_or_nothing_and_names_the_collision() {
    let r = registry();
    let _squatter = r.register("Browser_2", v("squatter")).unwrap();
    let refused = r.register_pool("Browser", browsers(4)).unwrap_err();
    let (error, values) = refused.into_parts();
    assert!(
        matches!(&error, Error::AlreadyRegistered { name, .. } if name.as_str() == "Browser_2"),
        "{error:?}"
    );
    // The values come back, and nothing of the pool stays bound.
    assert_eq!(values, browsers(4));
    for name in ["Browser", "Browser_0", "Browser_1", "Browser_3"] {
        assert!(!r.contains(name), "{name} stayed bound");
    }
    assert_eq!(&**r.get("Browser_2").unwrap().value(), "squatter");
    assert_eq!(r.len(), 1);
    // The pool's own name taken by an agent.
    let _agent = r.register("Other", v("agent")).unwrap();
    let e = r.register_pool("Other", browsers(2)).unwrap_err();
    assert!(matches!(e.error(), Error::AlreadyRegistered { name, .. } if name.as_str() == "Other"));
    assert!(!r.contains("Other_0"));
    // Bad shapes are refused up front.
    let e = r
        .register_pool("Empty", Vec::<Arc<str>>::new())
        .unwrap_err();
    assert!(matches!(e.error(), Error::InvalidPool { .. }), "{e:?}");
    for m in [0, MAX_IN_FLIGHT + 1] {
        let e = r
            .register_pool_with("Bad", browsers(1), PoolOptions::new().max_in_flight(m))
            .unwrap_err();
        assert!(matches!(e.error(), Error::InvalidPool { .. }), "{e:?}");
    }
    assert!(!r.contains("Bad") && !r.contains("Empty"));
}

#[test]
fn an_agent_cannot_take_a_pools_names_nor_a_member_go_alone() {
    let r = registry();
    let pool = r.register_pool("P", browsers(2)).unwrap();
    for name in ["P", "P_0", "P_1"] {
        let e = r.register(name, v("intruder")).unwrap_err();
        assert!(
            matches!(e.error(), Error::AlreadyRegistered { .. }),
            "{e:?}"
        );
    }
    // A member cannot be unregistered alone, nor replaced; the pool's name neither.
    let e = r.unregister("P_1").unwrap_err();
    assert_eq!(
        e,
        Error::PoolMember {
            name: "P_1".into(),
            pool: "P".into(),
            index: 1
        }
    );
    assert!(e.to_string().contains("member 1 of pool"));
    let tag = r.tag_of("P_1").unwrap();
    assert!(matches!(
        r.unregister_if_same("P_1", tag),
        Err(Error::PoolMember { .. })
    ));
    assert!(matches!(
        r.replace_if_same("P_1", tag, v("x"))
            .map_err(|e| e.into_parts().0),
        Err(Error::PoolMember { .. })
    ));
    assert!(matches!(r.unregister("P"), Err(Error::IsPool { .. })));
    assert!(matches!(
        r.unregister_pool("P_0"),
        Err(Error::PoolMember { .. })
    ));
    let _agent = r.register("agent", v("A")).unwrap();
    assert!(matches!(
        r.unregister_pool("agent"),
        Err(Error::NotAPool { .. })
    ));
    assert!(matches!(
        r.unregister_pool("none"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        r.set_health("P", pool.tag(), genreg::HealthState::Passing),
        Err(Error::IsPool { .. })
    ));
    assert!(matches!(
        r.keepalive("P_1", tag),
        Err(Error::PoolMember { .. })
    ));
    assert_eq!(r.len(), 4);
    drop(pool);
    // The guard removed the pool and every member, each an event.
    assert_eq!(r.len(), 1);
    let mut gone = removals(&r);
    gone.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        gone,
        vec![
            ("P".into(), Reason::GuardDropped),
            ("P_0".into(), Reason::PoolRemoved),
            ("P_1".into(), Reason::PoolRemoved),
        ]
    );
}

#[test]
fn acquire_hands_out_each_member_once_then_reports_exhausted() {
    let r = registry();
    let pool = r.register_pool("P", browsers(3)).unwrap();
    let a = pool.acquire().unwrap();
    let b = pool.acquire().unwrap();
    let c = pool.acquire().unwrap();
    let mut held: Vec<usize> = [&a, &b, &c].iter().map(|l| l.index().unwrap()).collect();
    held.sort();
    assert_eq!(held, vec![0, 1, 2]);
    assert_eq!(a.pool(), Some("P"));
    assert_eq!(&**a, &*browsers(3)[a.index().unwrap()]);
    assert_eq!(a.name(), format!("P_{}", a.index().unwrap()));
    assert_eq!(a.tag(), r.tag_of(a.name()).unwrap());
    let e = pool.acquire().unwrap_err();
    assert_eq!(
        e,
        Error::Exhausted {
            pool: "P".into(),
            total: 3,
            in_use: 3
        }
    );
    assert_eq!(r.available_count("P"), 0);
    // Release: the member is free again, and the next acquire gets it.
    let freed = b.index().unwrap();
    drop(b);
    assert_eq!(r.available_count("P"), 1);
    assert_eq!(pool.acquire().unwrap().index(), Some(freed));
}

#[test]
fn least_loaded_spreads_shared_members_and_power_of_two_respects_the_limit() {
    let r = registry();
    let pool = r
        .register_pool_with("P", browsers(4), PoolOptions::new().max_in_flight(3))
        .unwrap();
    let leases: Vec<_> = (0..8).map(|_| pool.acquire().unwrap()).collect();
    // Least loaded: 8 leases over 4 members, two each.
    for i in 0..4 {
        assert_eq!(pool.load(i), Some(2));
    }
    drop(leases);
    let p2 = r
        .register_pool_with(
            "Q",
            browsers(5),
            PoolOptions::new()
                .max_in_flight(2)
                .selection(Selection::PowerOfTwo),
        )
        .unwrap();
    let leases: Vec<_> = (0..10).map(|_| p2.acquire().unwrap()).collect();
    for i in 0..5 {
        assert_eq!(p2.load(i), Some(2));
    }
    assert!(matches!(
        p2.acquire(),
        Err(Error::Exhausted {
            total: 10,
            in_use: 10,
            ..
        })
    ));
    drop(leases);
    assert_eq!(p2.in_use(), 0);
}

#[test]
fn acquire_for_a_key_is_idempotent_and_frees_with_its_last_lease() {
    let r = registry();
    let pool = r.register_pool("P", browsers(2)).unwrap();
    let a1 = pool.acquire_for("branch-1").unwrap();
    let a2 = r.get_or_acquire("P", "branch-1").unwrap();
    assert_eq!(a1.index(), a2.index());
    assert_eq!(a1.key(), Some("branch-1"));
    let b = pool.acquire_for("branch-2").unwrap();
    assert_ne!(a1.index(), b.index());
    assert!(matches!(
        pool.acquire_for("branch-3"),
        Err(Error::Exhausted { .. })
    ));
    let stats = pool.stats();
    assert_eq!(stats.in_use, 2);
    let mut keys: Vec<_> = stats.holders.iter().filter_map(|h| h.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, vec!["branch-1".to_owned(), "branch-2".to_owned()]);
    // The key's slot is freed by its last lease only.
    drop(a1);
    assert!(pool.acquire_for("branch-3").is_err());
    drop(a2);
    let c = pool.acquire_for("branch-3").unwrap();
    assert_ne!(c.index(), b.index());
    assert!(matches!(
        pool.acquire_for(""),
        Err(Error::InvalidName { .. })
    ));
}

#[test]
fn statistics_count_allocations_releases_peak_and_holders_and_reset() {
    let clock = ManualClock::new();
    let r: Registry<Arc<str>> = builder().clock(clock.clone()).build();
    let pool = r.register_pool("P", browsers(3)).unwrap();
    let a = pool.acquire().unwrap();
    clock.advance(2 * S);
    let b = pool.acquire().unwrap();
    clock.advance(S);
    let s = pool.stats();
    assert_eq!((s.total, s.available, s.in_use), (3, 1, 2));
    assert_eq!((s.allocations, s.releases, s.peak), (2, 0, Some(2)));
    let mut held: Vec<_> = s.holders.iter().map(|h| (h.member, h.held_for)).collect();
    held.sort_by_key(|h| std::cmp::Reverse(h.1));
    assert_eq!(
        held,
        vec![
            (a.index().unwrap(), Some(3 * S)),
            (b.index().unwrap(), Some(S))
        ]
    );
    drop(a);
    let c = pool.acquire().unwrap();
    let d = pool.acquire().unwrap();
    let s = pool.stats();
    assert_eq!(
        (s.allocations, s.releases, s.peak, s.in_use),
        (4, 1, Some(3), 3)
    );
    drop((b, c));
    pool.reset_stats();
    let s = pool.stats();
    assert_eq!(
        (s.allocations, s.releases, s.peak, s.in_use),
        (0, 0, Some(1), 1)
    );
    drop(d);
    let s = pool.stats();
    assert_eq!(
        (s.allocations, s.releases, s.in_use, s.available),
        (0, 1, 0, 3)
    );
    assert!(s.holders.is_empty());
}

#[test]
fn removing_a_pool_while_leased_keeps_leases_usable_and_their_release_harmless() {
    let r = registry();
    let pool = r.register_pool("P", browsers(2)).unwrap().detach();
    let lease = pool.acquire().unwrap();
    assert_eq!(r.unregister_pool("P"), Ok(2));
    assert!(!pool.is_open());
    assert!(r.is_empty());
    // The lease still reads its member; nothing more is leased.
    assert!(lease.starts_with("browser-"));
    assert!(matches!(pool.acquire(), Err(Error::NotFound { .. })));
    assert!(r.get("P_0").is_none());
    // A pool registered again under the name is a new pool.
    let again = r.register_pool("P", browsers(1)).unwrap();
    drop(lease);
    assert_eq!(again.in_use(), 0);
    assert!(again.acquire().is_ok());
    // A stale guard's late cleanup does not remove the new pool.
    assert!(matches!(
        r.unregister_pool_if_same("P", pool.tag()),
        Err(Error::TagMismatch { .. })
    ));
    assert!(r.is_pool("P"));
}

#[test]
fn clear_closes_pools_and_snapshots_leave_them_out() {
    let r = registry();
    let _a = r.register("a", v("A")).unwrap();
    let pool = r.register_pool("P", browsers(2)).unwrap().detach();
    let snap = r.snapshot().unwrap();
    assert_eq!(
        snap.entries()
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        vec!["a"]
    );
    assert_eq!(r.clear(), 4);
    assert!(!pool.is_open());
    assert!(r.is_empty());
}

#[test]
fn tasks_on_single_agents_count_per_binding_and_feed_least_loaded() {
    let r = registry();
    let a = r.register("worker-a", v("A")).unwrap();
    let _b = r.register("worker-b", v("B")).unwrap();
    let _x = r.register("other", v("X")).unwrap();
    assert_eq!(r.available_count("worker-a"), 1);
    let t1 = r.acquire("worker-a").unwrap();
    let t2 = r.get_or_acquire("worker-a", "any").unwrap();
    assert_eq!(t1.tag(), a.tag());
    assert_eq!((t1.pool(), t1.index()), (None, None));
    assert_eq!(r.load("worker-a"), Some(2));
    // A leased single agent counts as unavailable (unlike MARSYS).
    assert_eq!(r.available_count("worker-a"), 0);
    let (name, entry) = r.least_loaded("worker-").unwrap();
    assert_eq!((name.as_str(), &**entry.value()), ("worker-b", "B"));
    // The load belongs to the binding: the name bound again starts at zero.
    drop(a);
    let a2 = r.register("worker-a", v("A2")).unwrap();
    assert_eq!(r.load("worker-a"), Some(0));
    drop((t1, t2));
    assert_eq!(r.load("worker-a"), Some(0));
    let _t = r.acquire("worker-b").unwrap();
    assert_eq!(r.least_loaded("worker-").unwrap().0, "worker-a");
    drop(a2);
    // Pool members are candidates, by their leases.
    let pool = r.register_pool("worker-pool", browsers(2)).unwrap();
    let _l = pool.acquire_member(0).unwrap();
    assert_eq!(r.load("worker-pool"), Some(1));
    assert_eq!(r.least_loaded("worker-pool").unwrap().0, "worker-pool_1");
}

#[test]
fn blocking_acquire_is_woken_by_a_release_and_times_out_otherwise() {
    let r = registry();
    let pool = r.register_pool("P", browsers(1)).unwrap().detach();
    let held = pool.acquire().unwrap();
    assert!(matches!(
        pool.acquire_timeout(Duration::from_millis(20)),
        Err(Error::Timeout { .. })
    ));
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            pool.acquire_timeout(Duration::from_secs(60))
                .map(|l| l.index())
        });
        while pool.stats().waiting == 0 {
            std::thread::yield_now();
        }
        drop(held);
        assert_eq!(waiter.join().unwrap(), Ok(Some(0)));
    });
    let s = pool.stats();
    assert_eq!((s.waited, s.in_use, s.waiting), (1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(miri, ignore)] // a tokio runtime under Miri: slow, and tokio is not what is tested
async fn async_acquire_waits_for_a_release_and_times_out_as_marsys() {
    let r = registry();
    let pool = r.register_pool("P", browsers(2)).unwrap().detach();
    let a = pool.acquire().unwrap();
    let b = pool.acquire().unwrap();
    // MARSYS's acquire_instance_async(timeout): nothing frees, so it times out.
    #[cfg(feature = "tokio")]
    assert!(matches!(
        pool.acquire_within(Duration::from_millis(20)).await,
        Err(Error::Timeout { .. })
    ));
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.acquire_async().await.map(|l| l.index()) });
    while pool.stats().waiting == 0 {
        tokio::task::yield_now().await;
    }
    let freed = b.index();
    drop(b);
    assert_eq!(waiter.await.unwrap(), Ok(freed));
    // A pool removed while someone waits: the waiter wakes to find it gone.
    let _full = pool.acquire().unwrap();
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.acquire_async().await.map(|l| l.index()) });
    while pool.stats().waiting < 1 {
        tokio::task::yield_now().await;
    }
    r.unregister_pool("P").unwrap();
    assert!(matches!(waiter.await.unwrap(), Err(Error::NotFound { .. })));
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(miri, ignore)] // as above; loom's model of cancellation runs under ci/loom.sh
async fn a_cancelled_waiter_passes_its_wake_on_and_every_member_ends_free() {
    let r = registry();
    let pool = r
        .register_pool_with("P", browsers(3), PoolOptions::new().max_in_flight(2))
        .unwrap()
        .detach();
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            // Some wait with timeouts short enough to cancel mid-wait.
            let wait = Duration::from_micros(50 + (i * 7919) % 2000);
            for _ in 0..20 {
                if let Ok(Ok(lease)) = tokio::time::timeout(wait, p.acquire_async()).await {
                    tokio::task::yield_now().await;
                    drop(lease);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = pool.stats();
    assert_eq!((s.in_use, s.available, s.waiting), (0, 3, 0));
    assert_eq!(s.allocations, s.releases);
    assert!(s.peak.is_some_and(|p| p <= 6));
    // Nothing lost: every slot can be taken again at once.
    let all: Vec<_> = (0..6).map(|_| pool.acquire().unwrap()).collect();
    assert_eq!(all.len(), 6);
}

#[test]
fn least_loaded_runs_over_any_discovery_query() {
    let r = registry();
    let meta = |cap: &str| genreg::Metadata::builder().capability(cap).build().unwrap();
    let _a = r
        .with_metadata(meta("browse"))
        .register("a", v("A"))
        .unwrap();
    let _b = r
        .with_metadata(meta("browse"))
        .register("b", v("B"))
        .unwrap();
    let _c = r
        .with_metadata(meta("write"))
        .register("c", v("C"))
        .unwrap();
    let q = || r.find().capability("browse");
    assert_eq!(q().least_loaded().unwrap().unwrap().name, "a");
    let _t = r.acquire("a").unwrap();
    assert_eq!(q().least_loaded().unwrap().unwrap().name, "b");
    let _t2 = r.acquire("b").unwrap();
    let _t3 = r.acquire("b").unwrap();
    assert_eq!(q().least_loaded().unwrap().unwrap().name, "a");
    assert!(
        r.find()
            .capability("none")
            .least_loaded()
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(miri, ignore)] // a tokio runtime under Miri: slow, and tokio is not what is tested
async fn a_keyed_waiter_gets_its_keys_member_at_once_or_the_next_freed_slot() {
    let r = registry();
    let pool = r.register_pool("P", browsers(2)).unwrap().detach();
    let mine = pool.acquire_for("branch").unwrap();
    let other = pool.acquire().unwrap();
    // The key holds a member: at once, the same one.
    let again = pool.acquire_for_async("branch").await.unwrap();
    assert_eq!(again.index(), mine.index());
    // A key holding none waits for a release.
    let p = pool.clone();
    let waiter = tokio::spawn(async move {
        p.acquire_for_async("late")
            .await
            .map(|l| (l.index(), l.key().map(str::to_owned)))
    });
    while pool.stats().waiting == 0 {
        tokio::task::yield_now().await;
    }
    let freed = other.index();
    drop(other);
    assert_eq!(waiter.await.unwrap(), Ok((freed, Some("late".to_owned()))));
    assert!(matches!(
        pool.acquire_for_async("").await,
        Err(Error::InvalidName { .. })
    ));
    drop((mine, again));
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn members_carry_health_but_are_never_removed_as_critical() {
    let clock = ManualClock::new();
    let r: Registry<Arc<str>> = builder()
        .clock(clock.clone())
        .remove_critical_after(S)
        .build();
    let pool = r.register_pool("P", browsers(2)).unwrap();
    let meta = genreg::Metadata::builder()
        .capability("browse")
        .build()
        .unwrap();
    for i in 0..2 {
        let name = format!("P_{i}");
        let tag = r.tag_of(&name).unwrap();
        r.update_metadata(&name, tag, meta.clone()).unwrap();
        r.set_health(&name, tag, genreg::HealthState::Passing)
            .unwrap();
    }
    let healthy: Vec<String> = r
        .find()
        .capability("browse")
        .healthy()
        .run()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(healthy, vec!["P_0".to_owned(), "P_1".to_owned()]);
    // Critical past the limit: out of healthy queries, never removed (it goes with its pool).
    let tag = r.tag_of("P_1").unwrap();
    r.set_health("P_1", tag, genreg::HealthState::Critical)
        .unwrap();
    clock.advance(10 * S);
    r.set_health("P_1", tag, genreg::HealthState::Critical)
        .unwrap();
    let mut reaper = r.reaper();
    assert_eq!(reaper.reap(), 0);
    assert_eq!(
        r.kind("P_1"),
        Some(Kind::Member {
            pool: "P".into(),
            index: 1
        })
    );
    assert_eq!(
        r.find().capability("browse").healthy().run().unwrap().len(),
        1
    );
    assert_eq!(
        r.health("P_1").map(|h| h.state),
        Some(genreg::HealthState::Critical)
    );
    assert_eq!(pool.acquire_member(1).unwrap().name(), "P_1");
}
