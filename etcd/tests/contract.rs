//! The core's contract on a real etcd: registration, refusals naming the current tag, stale
//! owners refused, replacement, register_auto, idempotent retries, the mirror.

use std::time::Duration;

use genreg_etcd::local::Etcd;
use genreg_etcd::{Error, EtcdRegistry, EventKind, InstanceId, Options, Removal};

fn opts(root: &str) -> Options {
    Options::default().root(root).ttl(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_refuse_replace_remove() {
    let etcd = Etcd::start();
    let eps = etcd.endpoints();
    let a = EtcdRegistry::<String>::connect_with(&eps, opts("t1/"), genreg_etcd::Json)
        .await
        .unwrap();
    let b = EtcdRegistry::<String>::connect_with(&eps, opts("t1/"), genreg_etcd::Json)
        .await
        .unwrap();
    assert_ne!(a.lease(), b.lease());

    let ra = a.register("agent", "on-a".into()).await.unwrap();
    let t1 = ra.tag();
    // B cannot take the name: the refusal names A's binding, and gives the value back.
    let rej = b.register("agent", "on-b".into()).await.unwrap_err();
    match &rej.error {
        Error::AlreadyRegistered { name, current } => {
            assert_eq!(name, "agent");
            assert_eq!(*current, t1);
        }
        e => panic!("unexpected {e}"),
    }
    assert_eq!(rej.into_value(), "on-b");

    let got = b.get("agent").await.unwrap().unwrap();
    assert_eq!(got.value, "on-a");
    assert_eq!(got.tag, t1);
    assert_eq!(got.lease, a.lease());

    // The agent moves: A's binding is removed by tag and B binds it anew.
    let t1_kept = ra.detach();
    a.unregister_if_same("agent", t1_kept).await.unwrap();
    let rb = b.register("agent", "on-b".into()).await.unwrap();
    let t2 = rb.tag();
    assert!(t2.generation() > t1.generation());

    // A's late cleanup with its stale tag is refused and changes nothing.
    match a.unregister_if_same("agent", t1).await.unwrap_err() {
        Error::TagMismatch {
            expected, current, ..
        } => {
            assert_eq!(expected, t1);
            assert_eq!(current, t2);
        }
        e => panic!("unexpected {e}"),
    }
    assert_eq!(a.get("agent").await.unwrap().unwrap().value, "on-b");

    // Replacement gives a new tag; the old one is stale from then on.
    let t3 = b
        .replace_if_same("agent", t2, "on-b-v2".into())
        .await
        .unwrap();
    assert!(t3.generation() > t2.generation());
    assert_eq!(t3.instance(), t2.instance());
    assert!(matches!(
        b.replace_if_same("agent", t2, "x".into())
            .await
            .unwrap_err()
            .error,
        Error::TagMismatch { .. }
    ));
    let now = a.get("agent").await.unwrap().unwrap();
    assert_eq!((now.value.as_str(), now.tag), ("on-b-v2", t3));
    assert_eq!(now.created as u64, t2.generation().as_raw());

    // A second registration by the same instance is refused, as in the core: no second
    // owner; the refusal's tag names the instance's own binding. (Retries inside one call
    // recognise their own write by its record: see both_backends and failover.)
    let inst = InstanceId::from_raw(77);
    let r1 = a.register_as("retry", inst, "v".into()).await.unwrap();
    for r in [&a, &b] {
        match r
            .register_as("retry", inst, "w".into())
            .await
            .unwrap_err()
            .error
        {
            Error::AlreadyRegistered { current, .. } => {
                assert_eq!(current, r1.tag());
                assert_eq!(current.instance(), inst);
            }
            e => panic!("unexpected {e}"),
        }
    }
    assert_eq!(a.get("retry").await.unwrap().unwrap().value, "v");
    r1.unregister().await.unwrap();
    assert!(a.get("retry").await.unwrap().is_none());
    assert!(matches!(
        a.unregister_if_same("retry", t1).await.unwrap_err(),
        Error::NotFound { .. }
    ));

    // Bad names are refused with the core's reasons.
    assert!(matches!(
        a.register("", "x".into()).await.unwrap_err().error,
        Error::InvalidName { .. }
    ));
    assert!(matches!(
        a.register("a\u{1}b", "x".into()).await.unwrap_err().error,
        Error::InvalidName { .. }
    ));
    drop(rb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_auto_never_collides_across_registries() {
    let etcd = Etcd::start();
    let eps = etcd.endpoints();
    let mut regs = Vec::new();
    for _ in 0..3 {
        regs.push(
            EtcdRegistry::<u32>::connect_with(&eps, opts("t2/"), genreg_etcd::Json)
                .await
                .unwrap(),
        );
    }
    // A name bound by hand is skipped.
    regs[0].register("worker-2", 0).await.unwrap().detach();
    let mut tasks = Vec::new();
    for (i, r) in regs.iter().enumerate() {
        for j in 0..10u32 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                r.register_auto("worker", i as u32 * 100 + j)
                    .await
                    .unwrap()
                    .detach();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, all) = regs[0].list().await.unwrap();
    assert_eq!(all.len(), 31);
    let mut names: Vec<_> = all.iter().map(|b| b.name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 31);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registrations_have_exactly_one_winner() {
    let etcd = Etcd::start();
    let eps = etcd.endpoints();
    let mut regs = Vec::new();
    for _ in 0..4 {
        regs.push(
            EtcdRegistry::<usize>::connect_with(&eps, opts("t3/"), genreg_etcd::Json)
                .await
                .unwrap(),
        );
    }
    for round in 0..20 {
        let name = format!("contested-{round}");
        let mut tasks = Vec::new();
        for (i, r) in regs.iter().enumerate() {
            let r = r.clone();
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                r.register(&name, i).await.map(|g| (i, g.detach()))
            }));
        }
        let mut winners = Vec::new();
        let mut currents = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(w) => winners.push(w),
                Err(rej) => match rej.error {
                    Error::AlreadyRegistered { current, .. } => currents.push(current),
                    e => panic!("unexpected {e}"),
                },
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        let (who, tag) = winners[0];
        assert!(currents.iter().all(|c| *c == tag));
        let b = regs[0].get(&name).await.unwrap().unwrap();
        assert_eq!((b.value, b.tag), (who, tag));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_mirror_follow_every_change() {
    let etcd = Etcd::start();
    let eps = etcd.endpoints();
    let a = EtcdRegistry::<String>::connect_with(&eps, opts("t4/"), genreg_etcd::Json)
        .await
        .unwrap();
    let (rev0, _) = a.list().await.unwrap();
    let mirror = a.mirror().await.unwrap();
    let mut watch = a.watch(rev0 + 1);

    let g = a.register("x", "1".into()).await.unwrap();
    let t1 = g.tag();
    let t2 = a.replace_if_same("x", t1, "2".into()).await.unwrap();
    a.unregister_if_same("x", t2).await.unwrap();
    g.detach();

    let e1 = watch.next().await.unwrap();
    assert!(matches!(&e1.kind, EventKind::Registered(b) if b.tag == t1 && b.value == "1"));
    let e2 = watch.next().await.unwrap();
    assert!(
        matches!(&e2.kind, EventKind::Replaced { binding, old } if binding.tag == t2 && *old == Some(t1))
    );
    let e3 = watch.next().await.unwrap();
    assert!(matches!(&e3.kind, EventKind::Removed { tag, reason, .. }
        if *tag == Some(t2) && *reason == Removal::IfSame));
    assert!(e1.revision < e2.revision && e2.revision < e3.revision);

    // Reasons: a plain removal, and a lease's end (the registry closed).
    let c = EtcdRegistry::<String>::connect_with(&eps, opts("t4/"), genreg_etcd::Json)
        .await
        .unwrap();
    c.register("p", "1".into()).await.unwrap().detach();
    c.register("q", "2".into()).await.unwrap().detach();
    a.unregister("p").await.unwrap().expect("p was bound");
    c.close().await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(watch.next().await.unwrap());
    }
    assert!(matches!(
        &seen[2].kind,
        EventKind::Removed {
            reason: Removal::Explicit,
            ..
        }
    ));
    assert_eq!(seen[2].name, "p");
    assert!(matches!(
        &seen[3].kind,
        EventKind::Removed {
            reason: Removal::LeaseEnded,
            ..
        }
    ));
    assert_eq!(seen[3].name, "q");

    // Two removals at one revision (a lease's end), returned one by one: a watch resumed from
    // `next_revision()` between them misses neither.
    let d = EtcdRegistry::<String>::connect_with(&eps, opts("t4/"), genreg_etcd::Json)
        .await
        .unwrap();
    d.register("d1", "1".into()).await.unwrap().detach();
    d.register("d2", "2".into()).await.unwrap().detach();
    d.close().await.unwrap();
    watch.next().await.unwrap();
    watch.next().await.unwrap();
    let first = watch.next().await.unwrap();
    assert!(matches!(
        first.kind,
        EventKind::Removed {
            reason: Removal::LeaseEnded,
            ..
        }
    ));
    assert_eq!(watch.next_revision(), first.revision);
    let mut resumed = a.watch(watch.next_revision());
    let second = watch.next().await.unwrap();
    assert_eq!(second.revision, first.revision);
    let again: Vec<String> = vec![
        resumed.next().await.unwrap().name,
        resumed.next().await.unwrap().name,
    ];
    assert!(again.contains(&second.name));

    mirror.wait_for(e3.revision).await;
    assert!(mirror.get("x").is_none());
    let g = a.register("y", "yy".into()).await.unwrap();
    mirror.wait_for(g.tag().generation().as_raw() as i64).await;
    assert_eq!(mirror.get("y").unwrap().value, "yy");
    assert_eq!(mirror.get("y").unwrap().tag, g.tag());
    // A write through another registry is seen after a sync.
    let b = EtcdRegistry::<String>::connect_with(&eps, opts("t4/"), genreg_etcd::Json)
        .await
        .unwrap();
    b.register("z", "zz".into()).await.unwrap().detach();
    assert_eq!(mirror.fenced_get("z").await.unwrap().unwrap().value, "zz");
    assert_eq!(mirror.local().len(), 2);

    // A revision made outside the mirror's root is reached too (etcd's progress reports).
    let other = EtcdRegistry::<String>::connect_with(&eps, opts("elsewhere/"), genreg_etcd::Json)
        .await
        .unwrap();
    let far = other.register("w", "ww".into()).await.unwrap().detach();
    let far = far.generation().as_raw() as i64;
    tokio::time::timeout(Duration::from_secs(10), mirror.wait_for(far))
        .await
        .expect("the mirror reaches a revision made under another root");
    assert!(mirror.applied() >= far);
    assert!(mirror.get("w").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused() {
    let etcd = Etcd::start();
    let eps = etcd.endpoints();
    for o in [
        Options::default().ttl(Duration::from_secs(1)),
        Options::default().root(""),
        Options::default().request_timeout(Duration::ZERO),
    ] {
        match EtcdRegistry::<String>::connect_with(&eps, o, genreg_etcd::Json).await {
            Err(Error::InvalidOption { what }) => assert!(!what.is_empty()),
            other => panic!("expected InvalidOption, got {other:?}"),
        }
    }
    // register_auto refuses a prefix that would make names too long, and gives the value back.
    let r = EtcdRegistry::<String>::connect_with(&eps, opts("t5/"), genreg_etcd::Json)
        .await
        .unwrap();
    let rej = r
        .register_auto(&"p".repeat(250), "v".into())
        .await
        .unwrap_err();
    assert!(matches!(rej.error, Error::InvalidName { .. }));
    assert_eq!(rej.value, "v");
    r.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_travels_and_discovery_runs_on_the_mirror() {
    use genreg_etcd::Metadata;
    let etcd = Etcd::start();
    let eps = etcd.endpoints();
    let a = EtcdRegistry::<String>::connect_with(&eps, opts("t6/"), genreg_etcd::Json)
        .await
        .unwrap();
    let b = EtcdRegistry::<String>::connect_with(&eps, opts("t6/"), genreg_etcd::Json)
        .await
        .unwrap();
    let mirror = b.mirror().await.unwrap();
    let sql = Metadata::builder()
        .kind("worker")
        .capability("sql")
        .label("zone", "eu")
        .build()
        .unwrap();
    let mut w1 = a
        .register_with("worker-1", "w1".into(), sql.clone())
        .await
        .unwrap();
    a.register_with(
        "worker-2",
        "w2".into(),
        Metadata::builder()
            .kind("worker")
            .capability("ml")
            .build()
            .unwrap(),
    )
    .await
    .unwrap()
    .detach();
    a.register("planner", "p".into()).await.unwrap().detach();

    let got = b.get("worker-1").await.unwrap().unwrap();
    assert_eq!(got.metadata.as_deref(), Some(&sql));
    assert!(b.get("planner").await.unwrap().unwrap().metadata.is_none());

    mirror.sync().await.unwrap();
    let workers = mirror.local().find().kind("worker").run().unwrap();
    assert_eq!(workers.len(), 2);
    let sql_workers = mirror.local().find_by_capability("sql").unwrap();
    assert_eq!(sql_workers.len(), 1);
    assert_eq!(sql_workers[0].name, "worker-1");
    assert_eq!(sql_workers[0].value.tag, w1.tag());

    // A replacement keeps the metadata; an update of the metadata gives a new tag, and the
    // mirror's queries follow it.
    let t = w1.replace("w1-v2".into()).await.unwrap();
    assert_eq!(
        b.get("worker-1")
            .await
            .unwrap()
            .unwrap()
            .metadata
            .as_deref(),
        Some(&sql)
    );
    let ml = Metadata::builder()
        .kind("worker")
        .capability("ml")
        .build()
        .unwrap();
    let t2 = w1.update_metadata(ml).await.unwrap();
    assert!(t2.generation() > t.generation());
    // The stale tag is refused.
    assert!(matches!(
        a.update_metadata("worker-1", t, Metadata::new()).await,
        Err(Error::TagMismatch { .. })
    ));
    mirror.wait_for(t2.generation().as_raw() as i64).await;
    assert!(mirror.local().find_by_capability("sql").unwrap().is_empty());
    assert_eq!(mirror.local().find_by_capability("ml").unwrap().len(), 2);
    assert_eq!(mirror.get("worker-1").unwrap().value, "w1-v2");
}
