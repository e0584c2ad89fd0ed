//! Liveness: TTL with keepalive, reapers, health and its critical limit, on a clock the tests
//! drive (no test sleeps to wait for an expiry).

use std::sync::Arc;
use std::time::Duration;

use genreg::liveness::ManualClock;
use genreg::{
    Error, Event, EventKind, Filter, HealthReport, HealthState, Metadata, Reason, Registry,
    Revision,
};

const S: Duration = Duration::from_secs(1);

/// A builder with a collector of its own (the global one leaks at exit under Miri).
fn builder<V: Send + Sync + 'static>() -> genreg::Builder<V> {
    Registry::builder().collector(genreg::epoch::Collector::new())
}

fn registry(clock: &ManualClock) -> Registry<Arc<str>> {
    builder().clock(clock.clone()).events(1024).build()
}

fn v(s: &str) -> Arc<str> {
    Arc::from(s)
}

/// Every event so far.
fn events(r: &Registry<Arc<str>>) -> Vec<Event<Arc<str>>> {
    let mut w = r.watch(Filter::all(), Revision::ZERO).unwrap();
    std::iter::from_fn(|| w.try_next().map(Result::unwrap)).collect()
}

/// The removal events so far, as `(name, reason)`.
fn removals(r: &Registry<Arc<str>>) -> Vec<(String, Reason)> {
    events(r)
        .into_iter()
        .filter_map(|e| match e.kind() {
            EventKind::Unregistered { reason, .. } => Some((e.name().to_owned(), *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_entry_is_invisible_at_its_deadline_and_its_guard_knows() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let g = r.with_ttl(10 * S).register("a", v("A")).unwrap();
    assert_eq!(g.time_left(), Some(10 * S));
    clock.advance(9 * S);
    assert!(r.get("a").is_some());
    assert!(g.is_current() && !g.expired());
    clock.advance(S);
    // At the deadline: invisible to every read at once.
    assert!(r.get("a").is_none());
    assert!(!r.contains("a"));
    assert!(r.get_if("a", g.tag()).is_none());
    assert!(!r.is_current("a", g.tag()));
    assert!(r.names().is_empty());
    assert!(r.entries().is_empty());
    assert!(!g.is_current());
    assert!(g.expired());
    assert_eq!(g.time_left(), Some(Duration::ZERO));
    // A keepalive cannot revive it.
    assert!(matches!(g.keepalive(), Err(Error::Expired { tag, .. }) if tag == g.tag()));
    assert!(r.get("a").is_none());
}

#[test]
fn an_expired_entry_never_blocks_its_name_and_is_removed_as_expired() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let old = r.with_ttl(S).register_detached("a", v("old")).unwrap();
    clock.advance(2 * S);
    // The writer that meets it removes it (reason "expired") and binds the name.
    let new = r.register("a", v("new")).unwrap();
    assert_ne!(new.tag(), old);
    assert_eq!(&**r.get("a").unwrap().value(), "new");
    assert_eq!(removals(&r), vec![("a".to_owned(), Reason::Expired)]);
    assert_eq!(r.len(), 1);
    // The old binding's tag refers to nothing.
    assert!(matches!(
        r.keepalive("a", old),
        Err(Error::TagMismatch { .. })
    ));
}

#[test]
fn keepalive_renews_for_the_ttl_from_now() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let g = r.with_ttl(10 * S).register("a", v("A")).unwrap();
    clock.advance(9 * S);
    assert_eq!(g.keepalive().unwrap(), Some(19 * S));
    clock.advance(9 * S);
    assert!(
        r.get("a").is_some(),
        "renewed at 9 s for 10 s: alive at 18 s"
    );
    clock.advance(S);
    assert!(r.get("a").is_none(), "expired at 19 s");
    // A registration without TTL: a keepalive does nothing, successfully.
    let p = r.register("p", v("P")).unwrap();
    assert_eq!(p.keepalive().unwrap(), None);
    assert_eq!(p.time_left(), None);
    assert!(!p.expired());
}

#[test]
fn keepalive_is_tag_checked() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let t1 = r.with_ttl(10 * S).register_detached("a", v("A")).unwrap();
    r.unregister_if_same("a", t1).unwrap();
    let t2 = r.with_ttl(10 * S).register_detached("a", v("B")).unwrap();
    assert!(matches!(
        r.keepalive("a", t1),
        Err(Error::TagMismatch { current, .. }) if current == t2
    ));
    assert!(matches!(r.keepalive("b", t1), Err(Error::NotFound { .. })));
    assert!(matches!(
        r.keepalive("", t1),
        Err(Error::InvalidName { .. })
    ));
    // The stale keepalive did not renew the new binding.
    clock.advance(10 * S);
    assert!(r.get("a").is_none());
}

#[test]
fn a_reaper_removes_each_binding_when_its_time_comes() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    // Half registered before the reaper exists (its walk finds them), half after (the intake).
    let before: Vec<_> = (0..50)
        .map(|i| {
            r.with_ttl((i + 1) * S)
                .register_detached(&format!("a{i}"), v("x"))
                .unwrap()
        })
        .collect();
    let mut reaper = r.reaper();
    for i in 50..100 {
        r.with_ttl((i + 1) * S)
            .register_detached(&format!("a{i}"), v("x"))
            .unwrap();
    }
    let _plain = r.register("plain", v("p")).unwrap();
    assert_eq!(reaper.reap(), 0);
    assert_eq!(reaper.scheduled(), 100);
    clock.advance(50 * S);
    assert_eq!(reaper.reap(), 50);
    assert_eq!(r.len(), 51);
    assert_eq!(reaper.next_due(), Some(51 * S));
    clock.advance(100 * S);
    assert_eq!(reaper.reap(), 50);
    assert_eq!(r.len(), 1);
    assert_eq!(reaper.scheduled(), 0);
    let gone = removals(&r);
    assert_eq!(gone.len(), 100);
    assert!(gone.iter().all(|(_, reason)| *reason == Reason::Expired));
    assert_eq!(before.len(), 50);
}

#[test]
fn a_reaper_reschedules_a_renewed_binding() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let mut reaper = r.reaper();
    let g = r.with_ttl(10 * S).register("a", v("A")).unwrap();
    clock.advance(9 * S);
    g.keepalive().unwrap();
    clock.advance(2 * S);
    assert_eq!(reaper.reap(), 0, "renewed in time: not removed");
    assert!(g.is_current());
    clock.advance(8 * S);
    assert_eq!(reaper.reap(), 1);
    assert!(g.expired());
    assert!(matches!(g.keepalive(), Err(Error::Expired { .. })));
    assert_eq!(removals(&r), vec![("a".to_owned(), Reason::Expired)]);
}

#[test]
fn a_reaper_thread_removes_expired_bindings() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let reaper = r.spawn_reaper(Duration::from_millis(1));
    let g = r.with_ttl(S).register("a", v("A")).unwrap();
    let mut w = r.watch(Filter::all(), r.revision()).unwrap();
    clock.advance(2 * S);
    // The binding is invisible at once (so `wait_evicted` returns at once too); this waits
    // for the event of its removal.
    assert!(g.wait_evicted(Duration::from_secs(30)));
    let e = w.next_timeout(Duration::from_secs(30)).unwrap().unwrap();
    assert!(matches!(
        e.kind(),
        EventKind::Unregistered {
            reason: Reason::Expired,
            ..
        }
    ));
    // The event is published before the count moves: stop (join) the reaper, then count.
    drop(reaper);
    assert_eq!(r.len(), 0);
}

#[test]
fn purge_dead_and_writes_remove_expired_bindings() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let a = r.with_ttl(S).register_detached("a", v("A")).unwrap();
    let _b = r.with_ttl(S).register_detached("b", v("B")).unwrap();
    let _c = r.with_ttl(10 * S).register_detached("c", v("C")).unwrap();
    clock.advance(S);
    // A conditional removal of an expired binding is a purge: not found.
    assert!(matches!(
        r.unregister_if_same("a", a),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(r.purge_dead(), 1);
    assert_eq!(r.len(), 1);
    let mut gone = removals(&r);
    gone.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        gone,
        vec![
            ("a".to_owned(), Reason::Expired),
            ("b".to_owned(), Reason::Expired)
        ]
    );
}

#[test]
fn replacement_and_metadata_keep_the_deadline() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let t = r.with_ttl(10 * S).register_detached("a", v("A")).unwrap();
    clock.advance(5 * S);
    let t2 = r.replace_if_same("a", t, v("B")).unwrap();
    let meta = Metadata::builder().kind("worker").build().unwrap();
    r.update_metadata("a", t2, meta).unwrap();
    // Same tag: the renewal goes to the same cell.
    assert_eq!(r.keepalive("a", t2).unwrap(), Some(15 * S));
    clock.advance(9 * S);
    assert!(r.get("a").is_some());
    clock.advance(S);
    assert!(r.get("a").is_none());
    let meta = Metadata::builder().kind("worker").build().unwrap();
    assert!(matches!(
        r.update_metadata("a", t2, meta),
        Err(Error::NotFound { .. })
    ));
    assert!(r.find_by_kind("worker").unwrap().is_empty());
}

#[test]
fn a_weak_binding_with_a_ttl_dies_of_either() {
    let clock = ManualClock::new();
    let r: Registry<Arc<str>> = builder().clock(clock.clone()).build();
    let owner: Arc<str> = v("owner");
    let g = r.with_ttl(10 * S).register_weak("w", &owner).unwrap();
    assert!(r.get("w").is_some());
    drop(owner);
    assert!(r.get("w").is_none());
    assert!(!g.expired(), "its owner died; it did not expire");
    let owner: Arc<str> = v("owner2");
    let g = r.with_ttl(10 * S).register_weak("w", &owner).unwrap();
    clock.advance(10 * S);
    assert!(r.get("w").is_none());
    assert!(g.expired());
}

#[test]
fn the_bound_does_not_count_expired_bindings() {
    let clock = ManualClock::new();
    let r: Registry<u32> = builder().clock(clock.clone()).max_entries(2).build();
    r.with_ttl(S).register_detached("a", 1).unwrap();
    r.with_ttl(S).register_detached("b", 2).unwrap();
    assert!(matches!(
        r.register_detached("c", 3).unwrap_err().error(),
        Error::Full { .. }
    ));
    clock.advance(S);
    // Full: the registration purges the expired ones and tries again.
    r.register_detached("c", 3).unwrap();
    r.register_detached("d", 4).unwrap();
    assert_eq!(r.len(), 2);
}

#[test]
fn ttl_churn_with_a_reaper_keeps_the_live_set_and_the_schedule_steady() {
    let clock = ManualClock::new();
    let r: Registry<u64> = builder().clock(clock.clone()).build();
    let mut reaper = r.reaper();
    let mut keep = Vec::new();
    for i in 0..10 {
        keep.push(r.with_ttl(5 * S).register(&format!("keep{i}"), i).unwrap());
    }
    let rounds = if cfg!(miri) { 12 } else { 200u64 };
    for round in 0..rounds {
        for i in 0..50 {
            r.with_ttl(3 * S)
                .register_detached(&format!("churn{round}-{i}"), i)
                .unwrap();
        }
        clock.advance(S);
        for g in &keep {
            g.keepalive().unwrap();
        }
        reaper.reap();
        // At most three rounds of churn are alive (or scheduled), plus the kept ten.
        assert!(r.len() <= 10 + 3 * 50, "round {round}: {}", r.len());
        assert!(
            reaper.scheduled() <= 10 + 4 * 50,
            "round {round}: {}",
            reaper.scheduled()
        );
    }
    assert!(keep.iter().all(|g| g.is_current()));
}

#[test]
fn health_is_set_by_tag_and_installs_no_change() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let g = r.register("a", v("A")).unwrap();
    let h = r.health("a").unwrap();
    assert_eq!(
        (h.tag, h.state, h.since),
        (g.tag(), HealthState::Unknown, None)
    );
    let before = events(&r).len();
    clock.advance(3 * S);
    g.set_health(HealthState::Passing).unwrap();
    // The guard stays current; the value and tag are the same; no event.
    assert!(g.is_current());
    assert_eq!(r.tag_of("a"), Some(g.tag()));
    assert_eq!(events(&r).len(), before);
    let h = g.health().unwrap();
    assert_eq!((h.state, h.since), (HealthState::Passing, Some(3 * S)));
    clock.advance(S);
    g.set_health(HealthState::Passing).unwrap();
    assert_eq!(
        g.health().unwrap().since,
        Some(3 * S),
        "same state: since stays"
    );
    // Tag-checked.
    r.unregister_if_same("a", g.tag()).unwrap();
    let g2 = r.register("a", v("A2")).unwrap();
    assert!(matches!(
        r.set_health("a", g.tag(), HealthState::Critical),
        Err(Error::TagMismatch { current, .. }) if current == g2.tag()
    ));
    assert_eq!(r.health("a").unwrap().state, HealthState::Unknown);
    assert!(matches!(
        r.set_health("zz", g.tag(), HealthState::Passing),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_health_record_keeps_what_the_check_found() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let g = r.register("a", v("A")).unwrap();
    clock.advance(7 * S);
    let report = HealthReport::new(HealthState::Critical)
        .with_latency(Duration::from_millis(12))
        .with_error("connection refused");
    g.record_health(report).unwrap();
    let last = g.health().unwrap().last_check.unwrap();
    assert_eq!(last.state, HealthState::Critical);
    assert_eq!(last.checked_at, 7 * S);
    assert_eq!(last.latency, Some(Duration::from_millis(12)));
    assert_eq!(last.error.as_deref(), Some("connection refused"));
}

#[test]
fn queries_can_ask_for_healthy_entries_only() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let meta = Arc::new(Metadata::builder().capability("sql").build().unwrap());
    let a = r
        .with_metadata(Arc::clone(&meta))
        .register("a", v("A"))
        .unwrap();
    let b = r
        .with_metadata(Arc::clone(&meta))
        .register("b", v("B"))
        .unwrap();
    let c = r
        .with_metadata(Arc::clone(&meta))
        .register("c", v("C"))
        .unwrap();
    let _d = r.with_metadata(meta).register("d", v("D")).unwrap();
    a.set_health(HealthState::Passing).unwrap();
    b.set_health(HealthState::Warning).unwrap();
    c.set_health(HealthState::Critical).unwrap();
    let names = |q: Vec<genreg::Match<Arc<str>>>| q.into_iter().map(|m| m.name).collect::<Vec<_>>();
    assert_eq!(
        names(r.find().capability("sql").run().unwrap()),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        names(r.find().capability("sql").healthy().run().unwrap()),
        ["a", "b"]
    );
    // Installing a health cell kept the metadata and the index.
    assert_eq!(
        r.metadata("c").unwrap().1.unwrap().capabilities().count(),
        1
    );
}

#[test]
fn an_entry_critical_for_too_long_is_removed() {
    let clock = ManualClock::new();
    let r: Registry<Arc<str>> = builder()
        .clock(clock.clone())
        .events(64)
        .remove_critical_after(30 * S)
        .build();
    let g = r.register("a", v("A")).unwrap();
    g.set_health(HealthState::Critical).unwrap();
    clock.advance(20 * S);
    g.set_health(HealthState::Critical).unwrap();
    assert!(g.is_current());
    // Healthy again: the clock restarts.
    clock.advance(5 * S);
    g.set_health(HealthState::Passing).unwrap();
    clock.advance(S);
    g.set_health(HealthState::Critical).unwrap();
    clock.advance(29 * S);
    g.set_health(HealthState::Critical).unwrap();
    assert!(g.is_current(), "critical for 29 s only");
    clock.advance(S);
    g.set_health(HealthState::Critical).unwrap();
    assert!(!g.is_current());
    assert!(r.get("a").is_none());
    assert!(!g.expired(), "removed as critical, not expired");
    assert_eq!(removals(&r), vec![("a".to_owned(), Reason::Critical)]);
    // Nothing can be recorded for it any more.
    assert!(matches!(
        g.set_health(HealthState::Passing),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_reaper_removes_an_entry_critical_for_too_long() {
    let clock = ManualClock::new();
    let r: Registry<Arc<str>> = builder()
        .clock(clock.clone())
        .events(64)
        .remove_critical_after(30 * S)
        .build();
    let mut reaper = r.reaper();
    let g = r.register("a", v("A")).unwrap();
    let h = r.register("h", v("H")).unwrap();
    g.set_health(HealthState::Critical).unwrap();
    h.set_health(HealthState::Critical).unwrap();
    clock.advance(10 * S);
    h.set_health(HealthState::Passing).unwrap();
    clock.advance(20 * S);
    assert_eq!(reaper.reap(), 1);
    assert!(!g.is_current());
    assert!(h.is_current(), "recorded healthy in time");
    assert_eq!(removals(&r), vec![("a".to_owned(), Reason::Critical)]);
}

/// MARSYS's `HealthMonitor`: ping every agent with a timeout, record healthy / latency / error
/// and when; here concurrently, with a panicking and a hanging agent contained.
#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marsys_health_monitor_pattern() {
    use genreg::liveness::HealthCheck;

    #[derive(Debug)]
    struct Agent {
        behaviour: &'static str,
    }
    impl Agent {
        async fn run(&self, _task: &str) -> Result<&'static str, String> {
            match self.behaviour {
                "ok" => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Ok("pong")
                }
                "error" => Err("model overloaded".into()),
                "hang" => std::future::pending().await,
                _ => panic!("agent bug"),
            }
        }
    }
    let r: Registry<Arc<Agent>> = Registry::new();
    let mut guards = Vec::new();
    for i in 0..20 {
        guards.push(
            r.register(&format!("ok-{i}"), Arc::new(Agent { behaviour: "ok" }))
                .unwrap(),
        );
    }
    for b in ["error", "hang", "panic", "sync-panic"] {
        guards.push(r.register(b, Arc::new(Agent { behaviour: b })).unwrap());
    }
    let outcomes = HealthCheck::new(Duration::from_millis(300))
        .run_all(&r, |name, agent| {
            // A probe that panics before it even returns its future.
            assert_ne!(name, "sync-panic", "probe bug");
            async move { agent.run("ping").await.map(drop) }
        })
        .await;
    assert_eq!(outcomes.len(), 24);
    assert!(outcomes.iter().all(|o| o.recorded));
    for i in 0..20 {
        let h = r.health(&format!("ok-{i}")).unwrap();
        assert_eq!(h.state, HealthState::Passing);
        assert!(h.last_check.unwrap().latency.is_some());
    }
    let error = |name: &str| r.health(name).unwrap().last_check.unwrap().error.unwrap();
    assert_eq!(r.health("error").unwrap().state, HealthState::Critical);
    assert_eq!(error("error"), "model overloaded");
    assert!(error("hang").contains("timed out"));
    assert_eq!(error("panic"), "probe panicked");
    assert_eq!(error("sync-panic"), "probe panicked");
    assert_eq!(r.len(), 24);
    // A binding replaced while its probe ran is not recorded.
    let g = r
        .register("late", Arc::new(Agent { behaviour: "ok" }))
        .unwrap();
    let target = vec![("late".to_owned(), g.tag())];
    let r2 = r.clone();
    let outcomes = HealthCheck::new(Duration::from_secs(5))
        .run(&r, target, move |name, _agent| {
            let r2 = r2.clone();
            async move {
                let e = r2.get(&name).unwrap();
                r2.replace_if_same(&name, e.tag(), Arc::new(Agent { behaviour: "ok" }))
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        })
        .await;
    assert_eq!(outcomes.len(), 1);
    assert!(!outcomes[0].recorded);
    g.detach();
}

/// The reaper as a task (the `tokio` feature).
#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaper_task_removes_expired_bindings() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    use futures_core::Stream;
    let task = tokio::spawn(r.reaper().run(Duration::from_millis(1)));
    let _g = r.with_ttl(S).register("a", v("A")).unwrap();
    let mut w = r.watch(Filter::all(), r.revision()).unwrap();
    clock.advance(2 * S);
    let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut w).poll_next(cx));
    let e = tokio::time::timeout(Duration::from_secs(30), next)
        .await
        .expect("the reaper task removed it");
    assert!(matches!(
        e.unwrap().unwrap().kind(),
        EventKind::Unregistered { .. }
    ));
    task.abort();
    assert_eq!(removals(&r), vec![("a".to_owned(), Reason::Expired)]);
}

#[test]
fn a_snapshot_leaves_out_expired_bindings() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    r.with_ttl(S).register_detached("gone", v("G")).unwrap();
    r.with_ttl(10 * S)
        .register_detached("kept", v("K"))
        .unwrap();
    clock.advance(S);
    let snap = r.snapshot().unwrap();
    assert!(
        snap.get("gone").is_none(),
        "an expired binding would be restored for good"
    );
    assert!(snap.get("kept").is_some());
}

#[test]
fn every_writer_that_meets_an_expired_binding_removes_it() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let a = r.with_ttl(S).register_detached("a", v("A")).unwrap();
    let b = r.with_ttl(S).register_detached("b", v("B")).unwrap();
    let c = r.with_ttl(S).register_detached("c", v("C")).unwrap();
    clock.advance(S);
    assert!(matches!(
        r.replace_if_same("a", a, v("A2")).unwrap_err().error(),
        Error::NotFound { .. }
    ));
    let meta = Metadata::builder().kind("worker").build().unwrap();
    assert!(matches!(
        r.update_metadata("b", b, meta),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        r.set_health("c", c, HealthState::Passing),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        r.len(),
        0,
        "each refusal removed the expired binding it met"
    );
    let gone = removals(&r);
    assert_eq!(gone.len(), 3);
    assert!(gone.iter().all(|(_, reason)| *reason == Reason::Expired));
}

#[test]
fn a_reaper_forgets_bindings_removed_alive() {
    let clock = ManualClock::new();
    let r: Registry<u64> = builder().clock(clock.clone()).build();
    let mut reaper = r.reaper();
    let rounds = if cfg!(miri) { 300 } else { 20_000u64 };
    for i in 0..rounds {
        // A long TTL, removed alive at once: nothing will ever fall due.
        let g = r.with_ttl(3600 * S).register("n", i).unwrap();
        drop(g);
        if i % 64 == 0 {
            reaper.reap();
        }
    }
    reaper.reap();
    assert!(
        reaper.scheduled() <= 2 * 1024 + 64,
        "the schedule follows the churn: {}",
        reaper.scheduled()
    );
}

#[test]
fn a_guard_removed_alive_never_says_it_expired() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let g = r.with_ttl(S).register("a", v("A")).unwrap();
    r.unregister_if_same("a", g.tag()).unwrap();
    clock.advance(2 * S);
    assert!(!g.expired());
    assert_eq!(g.time_left(), None);
    assert!(matches!(g.keepalive(), Err(Error::NotFound { .. })));
}
