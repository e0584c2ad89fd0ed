//! Leases and history on a real etcd: a lease revoked from outside is reported with exactly the
//! bindings it took; a process that dies (its runtime gone, nothing revoked) loses its bindings
//! when the TTL runs out; `close` removes everything at one revision; a dropped guard removes
//! its binding only if it is still the same one; compaction ends a watch that needs compacted
//! revisions, and a mirror that missed them lists again.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use genreg_etcd::local::{Cluster, Etcd};
use genreg_etcd::{
    Binding, Error, EtcdRegistry, Event, EventKind, LeaseLost, Mirror, Options, Tag, Watch,
};

type Reg = EtcdRegistry<String>;

async fn connect<E: AsRef<str>>(endpoints: &[E], root: &str, ttl_secs: u64) -> Reg {
    EtcdRegistry::connect_with(
        endpoints,
        Options::default()
            .root(root)
            .ttl(Duration::from_secs(ttl_secs)),
        genreg_etcd::Json,
    )
    .await
    .unwrap_or_else(|e| panic!("connect to {root}: {e}"))
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `limit`.
async fn poll<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads events until `done` says the collected ones are enough (30 s at most).
async fn events_until(
    watch: &mut Watch<String, genreg_etcd::Json>,
    mut done: impl FnMut(&[Event<String>]) -> bool,
) -> Vec<Event<String>> {
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&events) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, watch.next()).await {
            Ok(Ok(e)) => events.push(e),
            Ok(Err(e)) => panic!("watch failed: {e} (after {events:?})"),
            Err(_) => panic!("watch: not enough events after 30 s: {events:?}"),
        }
    }
    events
}

/// The `Removed` events among `events`, as (name, revision, tag, lease).
fn removals(events: &[Event<String>]) -> Vec<(String, i64, Option<Tag>, i64)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Removed { tag, lease, .. } => {
                Some((e.name.clone(), e.revision, *tag, *lease))
            }
            _ => None,
        })
        .collect()
}

type State = BTreeMap<String, (Tag, String, i64)>;

fn state_of_listing(bindings: &[Binding<String>]) -> State {
    bindings
        .iter()
        .map(|b| (b.name.clone(), (b.tag, b.value.clone(), b.lease)))
        .collect()
}

fn state_of_mirror(m: &Mirror<String>) -> State {
    m.local()
        .pin()
        .iter()
        .map(|e| {
            let b = e.value();
            assert_eq!(
                e.name(),
                b.name,
                "the mirror files a binding under another name"
            );
            (b.name.clone(), (b.tag, b.value.clone(), b.lease))
        })
        .collect()
}

/// Syncs the mirror, then checks it equals a linearizable listing taken at the revision the
/// sync returned (nothing else writes in these tests meanwhile).
async fn assert_mirror_equals_etcd(m: &Mirror<String>, reg: &Reg) {
    let synced = m.sync().await.unwrap();
    assert!(m.applied() >= synced);
    let (rev, listing) = reg.list().await.unwrap();
    assert_eq!(
        rev, synced,
        "a write happened between the sync and the listing"
    );
    assert_eq!(
        state_of_mirror(m),
        state_of_listing(&listing),
        "mirror at {rev}"
    );
}

fn rev_of(t: Tag) -> i64 {
    t.generation().as_raw() as i64
}

// ---------------------------------------------------------------------------------------
// Lease loss
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_lease_is_reported_with_exactly_the_bindings_it_took() {
    let etcd = Etcd::start();
    let eps = etcd.endpoints();
    let a = connect(&eps, "l1/", 2).await;
    let b = connect(&eps, "l1/", 10).await;
    let (rev0, _) = b.list().await.unwrap();
    let mirror = b.mirror().await.unwrap();
    let mut watch = b.watch(rev0 + 1);

    let tb = b.register("b-own", "b".into()).await.unwrap().detach();
    let t1 = a.register("a1", "1".into()).await.unwrap().detach();
    let t2 = a.register("a2", "2".into()).await.unwrap().detach();
    let t3 = a.register("a3", "3".into()).await.unwrap().detach();
    // A replacement moves the tag A holds; a binding A removed is not held any more.
    let t3b = a.replace_if_same("a3", t3, "3b".into()).await.unwrap();
    a.register("a4", "4".into())
        .await
        .unwrap()
        .unregister()
        .await
        .unwrap();
    let mut expected = vec![
        ("a1".to_string(), t1),
        ("a2".into(), t2),
        ("a3".into(), t3b),
    ];
    expected.sort();

    // The keeper renews the 2 s lease: after more than a TTL the bindings are all there.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(!a.is_lease_lost());
    for (name, tag) in &expected {
        let got = b
            .get(name)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{name} gone"));
        assert_eq!((got.tag, got.lease), (*tag, a.lease()), "{name}");
    }

    // Someone revokes A's lease behind its back.
    let revoked = a.client().clone().lease_revoke(a.lease()).await.unwrap();
    let revoke_rev = revoked.header().map(|h| h.revision()).unwrap();
    let t0 = Instant::now();
    let lost: LeaseLost = tokio::time::timeout(Duration::from_secs(10), a.lease_lost())
        .await
        .expect("lease_lost() did not report the revoked lease within 10 s");
    eprintln!("lease loss reported {:?} after the revoke", t0.elapsed());
    assert_eq!(lost.lease, a.lease());
    assert_eq!(lost.bindings, expected);
    assert!(a.is_lease_lost());
    // Asked again, the same report.
    assert_eq!(a.lease_lost().await, lost);

    // A makes no more registrations, and gives the value back.
    let rej = a.register("a5", "5".into()).await.unwrap_err();
    match &rej.error {
        Error::LeaseLost { lease } => assert_eq!(*lease, a.lease()),
        e => panic!("unexpected {e}"),
    }
    assert_eq!(rej.into_value(), "5");
    assert!(b.get("a5").await.unwrap().is_none());

    // B's watch sees each of A's bindings removed, at the revoke's one revision, with its tag.
    let events = events_until(&mut watch, |ev| {
        removals(ev).iter().filter(|r| r.0 != "a4").count() >= 3
    })
    .await;
    let gone: Vec<_> = removals(&events)
        .into_iter()
        .filter(|r| r.0 != "a4")
        .collect();
    let want: Vec<_> = expected
        .iter()
        .map(|(n, t)| (n.clone(), revoke_rev, Some(*t), a.lease()))
        .collect();
    let mut got = gone.clone();
    got.sort();
    assert_eq!(got, want, "events: {events:?}");

    // Only A's bindings went: B's mirror and a linearizable read agree.
    assert_mirror_equals_etcd(&mirror, &b).await;
    assert_eq!(
        state_of_mirror(&mirror).into_keys().collect::<Vec<_>>(),
        ["b-own"]
    );
    assert_eq!(b.get("b-own").await.unwrap().unwrap().tag, tb);
    assert!(!b.is_lease_lost());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_of_a_dead_process_expire_with_its_ttl() {
    let etcd = Etcd::start();
    let eps = etcd.endpoints();
    let b = connect(&eps, "l2/", 10).await;
    let (rev0, _) = b.list().await.unwrap();
    let mirror = b.mirror().await.unwrap();
    let mut watch = b.watch(rev0 + 1);

    // Process C: its own runtime, a 2 s lease, two bindings; then it "dies": the runtime stops
    // with its keeper and connections, nothing is revoked, and its guards are dropped outside
    // any runtime (so they cannot remove anything either).
    let eps_c = eps.clone();
    let (lease, tags, died) = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (c, guards) = rt.block_on(async {
            let c = connect(&eps_c, "l2/", 2).await;
            let g1 = c.register("c1", "one".into()).await.unwrap();
            let g2 = c.register("c2", "two".into()).await.unwrap();
            (c, vec![g1, g2])
        });
        let lease = c.lease();
        let tags: Vec<(String, Tag)> = guards
            .iter()
            .map(|g| (g.name().to_string(), g.tag()))
            .collect();
        rt.shutdown_background();
        let died = Instant::now();
        drop(guards);
        drop(c);
        (lease, tags, died)
    })
    .join()
    .unwrap();

    // Just after the death the bindings are still there. etcd's remaining TTL says for how
    // long at least; if the read lands within it, the bindings must be found.
    let t0 = Instant::now();
    let ttl = b
        .client()
        .clone()
        .lease_time_to_live(lease, None)
        .await
        .unwrap()
        .ttl();
    let c1 = b.get("c1").await.unwrap();
    if ttl > 0 && t0.elapsed() < Duration::from_secs(ttl as u64) {
        let c1 = c1.expect("c1 gone while its lease still had time to live");
        assert_eq!((c1.tag, c1.lease), (tags[0].1, lease));
    } else {
        eprintln!("note: lease had {ttl} s left; read took {:?}", t0.elapsed());
    }

    // Within TTL (2 s) + 5 s of slack, both are gone, and so is the lease.
    poll(
        Duration::from_secs(7).saturating_sub(died.elapsed()),
        "the dead process's bindings are still there",
        || async {
            let gone = b.get("c1").await.unwrap().is_none() && b.get("c2").await.unwrap().is_none();
            gone.then_some(())
        },
    )
    .await;
    eprintln!("bindings gone {:?} after the process died", died.elapsed());
    let ttl = b
        .client()
        .clone()
        .lease_time_to_live(lease, None)
        .await
        .unwrap()
        .ttl();
    assert_eq!(ttl, -1, "the lease should be gone (TTL -1)");

    // The watch shows both removed, at one revision (the lease's end), with their tags.
    let events = events_until(&mut watch, |ev| removals(ev).len() >= 2).await;
    let mut gone = removals(&events);
    gone.sort();
    assert_eq!(gone.len(), 2, "{events:?}");
    assert_eq!(gone[0].1, gone[1].1, "one revision for the lease's end");
    let want: Vec<_> = tags
        .iter()
        .map(|(n, t)| (n.clone(), gone[0].1, Some(*t), lease))
        .collect();
    assert_eq!(gone, want);
    // Before them: the two registrations, at their tags' revisions.
    let regs: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Registered(b) => Some((e.name.clone(), e.revision, b.tag)),
            _ => None,
        })
        .collect();
    assert_eq!(
        regs,
        tags.iter()
            .map(|(n, t)| (n.clone(), rev_of(*t), *t))
            .collect::<Vec<_>>()
    );

    // The mirror too.
    assert_mirror_equals_etcd(&mirror, &b).await;
    assert!(mirror.get("c1").is_none() && mirror.get("c2").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_removes_every_binding_at_one_revision() {
    let etcd = Etcd::start();
    let eps = etcd.endpoints();
    let a = connect(&eps, "l3/", 5).await;
    let b = connect(&eps, "l3/", 5).await;
    let (rev0, _) = b.list().await.unwrap();
    let mut watch = b.watch(rev0 + 1);

    let tb = b.register("keep", "b".into()).await.unwrap().detach();
    let mut held = Vec::new();
    for n in ["x1", "x2", "x3"] {
        held.push((
            n.to_string(),
            a.register(n, n.into()).await.unwrap().detach(),
        ));
    }
    held[1].1 = a
        .replace_if_same("x2", held[1].1, "x2b".into())
        .await
        .unwrap();
    let last_write = rev_of(held[1].1);
    let other = a.clone();

    a.close().await.unwrap();

    let events = events_until(&mut watch, |ev| removals(ev).len() >= 3).await;
    let gone = removals(&events);
    assert_eq!(gone.len(), 3, "{events:?}");
    let rev = gone[0].1;
    assert!(rev > last_write);
    let want: Vec<_> = held
        .iter()
        .map(|(n, t)| (n.clone(), rev, Some(*t), other.lease()))
        .collect();
    let mut got = gone.clone();
    got.sort();
    assert_eq!(
        got, want,
        "every binding goes at the one revision of the revoke"
    );

    // A clone of the closed registry: the lease is lost, with every binding it held.
    assert!(other.is_lease_lost());
    let lost = tokio::time::timeout(Duration::from_secs(1), other.lease_lost())
        .await
        .expect("close() must report the lease lost at once");
    assert_eq!(lost.lease, other.lease());
    assert_eq!(lost.bindings, held);
    assert!(matches!(
        other.register("x4", "4".into()).await.unwrap_err().error,
        Error::LeaseLost { .. }
    ));

    let (_, listing) = b.list().await.unwrap();
    assert_eq!(
        state_of_listing(&listing),
        State::from([("keep".to_string(), (tb, "b".to_string(), b.lease()))])
    );
}

/// A `close` that could not reach etcd must not report the lease lost while the lease lives
/// on. Here etcd is down during `close`, which fails with `Unavailable`; the registry says the
/// lease is gone with its bindings, so its keeper (kept running by a guard) must not renew it
/// once etcd is back: the bindings go within the TTL. (A regression test: the keeper used to
/// renew the lease, and the bindings stayed for good.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_close_does_not_report_a_lease_that_lives_on() {
    let mut etcd = Cluster::start(1);
    let eps = etcd.endpoints();
    let opts = Options::default()
        .root("l5/")
        .ttl(Duration::from_secs(5))
        .retry_for(Duration::from_secs(1));
    let a = EtcdRegistry::<String>::connect_with(&eps, opts, genreg_etcd::Json)
        .await
        .unwrap();
    let guard = a.register("x", "x".into()).await.unwrap();
    let other = a.clone();

    tokio::task::block_in_place(|| etcd.kill(0));
    let closed = a.close().await;
    assert!(
        matches!(closed, Err(Error::Unavailable { .. })),
        "close with etcd down: {closed:?}"
    );
    tokio::task::block_in_place(|| {
        etcd.restart(0);
        etcd.wait_member_healthy(0);
    });
    let b = connect(&eps, "l5/", 10).await;
    let lost = tokio::time::timeout(Duration::from_secs(1), other.lease_lost()).await;
    if let Ok(lost) = lost {
        // Reported gone: then it must go, within the TTL and some slack.
        assert_eq!(lost.bindings, [("x".to_string(), guard.tag())]);
        poll(
            Duration::from_secs(10),
            "the lease was reported lost, but its binding is still there",
            || async { b.get("x").await.unwrap().is_none().then_some(()) },
        )
        .await;
    }
    drop(guard);
}

// ---------------------------------------------------------------------------------------
// Guards
// ---------------------------------------------------------------------------------------

/// Drops `guards` inside a runtime of their own (a fresh thread's), waits until every task the
/// drops spawned there has finished, and returns how many they spawned.
fn drop_in_own_runtime<T: Send + 'static>(guards: T) -> usize {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let metrics = tokio::runtime::Handle::current().metrics();
            assert_eq!(metrics.num_alive_tasks(), 0);
            drop(guards);
            let spawned = metrics.num_alive_tasks();
            let deadline = Instant::now() + Duration::from_secs(20);
            while metrics.num_alive_tasks() > 0 {
                assert!(
                    Instant::now() < deadline,
                    "the guards' tasks never finished"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            spawned
        })
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_guard_removes_its_binding_only_if_still_the_same() {
    let etcd = Etcd::start();
    let eps = etcd.endpoints();
    let a = connect(&eps, "l4/", 5).await;
    let b = connect(&eps, "l4/", 5).await;

    // A guard dropped inside a runtime removes its binding (on a task: eventually).
    let g1 = a.register("g1", "1".into()).await.unwrap();
    let t1 = g1.tag();
    assert_eq!(b.get("g1").await.unwrap().unwrap().tag, t1);
    drop(g1);
    poll(
        Duration::from_secs(10),
        "dropped guard left g1 bound",
        || async { b.get("g1").await.unwrap().is_none().then_some(()) },
    )
    .await;

    // g2: another registry replaces A's binding (a new version, A's tag goes stale).
    let g2 = a.register("g2", "2".into()).await.unwrap();
    let t2 = b
        .replace_if_same("g2", g2.tag(), "2-new".into())
        .await
        .unwrap();
    assert!(t2 > g2.tag());
    // g3: another registry removes A's binding and binds the name itself.
    let g3 = a.register("g3", "3".into()).await.unwrap();
    b.unregister_if_same("g3", g3.tag()).await.unwrap();
    let t3 = b.register("g3", "3-b".into()).await.unwrap().detach();
    // g4: still current (the control: its drop must remove it).
    let g4 = a.register("g4", "4".into()).await.unwrap();

    // Each drop spawns one removal task; once all have finished, only g4 is gone.
    let spawned = tokio::task::block_in_place(|| drop_in_own_runtime((g2, g3, g4)));
    assert_eq!(spawned, 3, "one removal task per dropped guard");
    let now2 = b.get("g2").await.unwrap().expect("stale guard removed g2");
    assert_eq!(
        (now2.tag, now2.value.as_str(), now2.lease),
        (t2, "2-new", a.lease())
    );
    let now3 = b.get("g3").await.unwrap().expect("stale guard removed g3");
    assert_eq!(
        (now3.tag, now3.value.as_str(), now3.lease),
        (t3, "3-b", b.lease())
    );
    assert!(
        b.get("g4").await.unwrap().is_none(),
        "g4's guard left it bound"
    );

    // A detached guard leaves its binding, and dropping a guard outside any runtime cannot
    // remove anything (the lease does, later).
    let t5 = a.register("g5", "5".into()).await.unwrap().detach();
    let g6 = a.register("g6", "6".into()).await.unwrap();
    let t6 = g6.tag();
    tokio::task::block_in_place(|| std::thread::spawn(move || drop(g6)).join().unwrap());
    let (_, listing) = b.list().await.unwrap();
    let names: Vec<(String, Tag)> = listing.iter().map(|b| (b.name.clone(), b.tag)).collect();
    assert_eq!(
        names,
        [
            ("g2".to_string(), t2),
            ("g3".into(), t3),
            ("g5".into(), t5),
            ("g6".into(), t6)
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Compaction
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_ends_a_watch_and_a_live_mirror_goes_on() {
    let etcd = Etcd::start();
    let eps = etcd.endpoints();
    let a = connect(&eps, "c1/", 5).await;
    let (rev0, _) = a.list().await.unwrap();
    let mirror = a.mirror().await.unwrap();
    // Watches open lazily: this one asks etcd for rev0 + 1 only at its first `next`.
    let mut early = a.watch(rev0 + 1);

    let mut tags = Vec::new();
    for i in 0..5 {
        tags.push(
            a.register(&format!("k{i}"), i.to_string())
                .await
                .unwrap()
                .detach(),
        );
    }
    a.replace_if_same("k0", tags[0], "0b".into()).await.unwrap();
    a.unregister_if_same("k1", tags[1]).await.unwrap();
    let (rev1, _) = a.list().await.unwrap();
    mirror.wait_for(rev1).await;

    let compacted = a
        .client()
        .clone()
        .compact(
            rev1,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .unwrap();
    assert!(compacted.header().is_some());

    // The early watch needs compacted revisions: it is over, and says from where to restart.
    for _ in 0..2 {
        match tokio::time::timeout(Duration::from_secs(10), early.next()).await {
            Ok(Err(Error::Compacted {
                requested,
                compacted,
            })) => {
                assert_eq!(requested, rev0 + 1);
                assert_eq!(compacted, rev1);
            }
            Ok(other) => panic!("expected Compacted, got {other:?}"),
            Err(_) => panic!("the compacted watch neither failed nor delivered in 10 s"),
        }
    }

    // A watch from the compaction revision on works.
    let mut fresh = a.watch(rev1 + 1);
    let t9 = a.register("k9", "9".into()).await.unwrap().detach();
    let t2b = a.replace_if_same("k2", tags[2], "2b".into()).await.unwrap();
    a.unregister_if_same("k3", tags[3]).await.unwrap();
    let ev = events_until(&mut fresh, |ev| ev.len() >= 3).await;
    assert!(matches!(&ev[0].kind, EventKind::Registered(b) if ev[0].name == "k9" && b.tag == t9));
    assert!(
        matches!(&ev[1].kind, EventKind::Replaced { binding, old } if ev[1].name == "k2" && binding.tag == t2b && *old == Some(tags[2]))
    );
    assert!(
        matches!(&ev[2].kind, EventKind::Removed { tag, lease, .. } if ev[2].name == "k3" && *tag == Some(tags[3]) && *lease == a.lease())
    );
    assert!(
        ev[0].revision > rev1 && ev[0].revision < ev[1].revision && ev[1].revision < ev[2].revision
    );

    // The mirror had followed every change live: compaction does not concern it.
    assert_mirror_equals_etcd(&mirror, &a).await;
    assert_eq!(mirror.relists(), 0);
    assert_eq!(mirror.local().len(), 4); // k0, k2, k4, k9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_that_missed_compacted_revisions_lists_again() {
    let mut cluster = Cluster::start(3);
    let leader = tokio::task::block_in_place(|| cluster.leader());
    let lonely = (leader + 1) % 3;
    let others: Vec<String> = (0..3)
        .filter(|&i| i != lonely)
        .map(|i| cluster.member_endpoint(i))
        .collect();
    let writer = connect(&others, "c2/", 10).await;
    // The mirror's registry reaches etcd only through the member about to be killed.
    let reader = connect(&[cluster.member_endpoint(lonely)], "c2/", 10).await;

    let mut tags = Vec::new();
    for i in 0..4 {
        tags.push(
            writer
                .register(&format!("k{i}"), i.to_string())
                .await
                .unwrap()
                .detach(),
        );
    }
    let mirror = reader.mirror().await.unwrap();
    assert_mirror_equals_etcd(&mirror, &writer).await;
    let seen = state_of_mirror(&mirror);
    assert_eq!(seen.len(), 4);

    tokio::task::block_in_place(|| cluster.kill(lonely));

    // Changes the mirror cannot see, then a compaction past them.
    writer
        .replace_if_same("k0", tags[0], "0b".into())
        .await
        .unwrap();
    writer.unregister_if_same("k1", tags[1]).await.unwrap();
    writer.unregister_if_same("k2", tags[2]).await.unwrap();
    writer
        .register("k2", "2-again".into())
        .await
        .unwrap()
        .detach();
    writer.register("k4", "4".into()).await.unwrap().detach();
    let (rev, _) = writer.list().await.unwrap();
    writer
        .client()
        .clone()
        .compact(
            rev,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .unwrap();
    // Meanwhile the mirror answers from what it had.
    assert_eq!(state_of_mirror(&mirror), seen);
    assert_eq!(mirror.relists(), 0);

    // The member comes back having applied the compaction: the mirror's watch, resumed from
    // the revision after the last it applied, is compacted, so it lists again and reconciles.
    tokio::task::block_in_place(|| {
        cluster.restart(lonely);
        cluster.wait_member_healthy(lonely);
    });
    tokio::time::timeout(
        Duration::from_secs(30),
        assert_mirror_equals_etcd(&mirror, &writer),
    )
    .await
    .expect("the mirror did not catch up within 30 s of the member's restart");
    assert_eq!(mirror.relists(), 1);
    let names: Vec<String> = state_of_mirror(&mirror).into_keys().collect();
    assert_eq!(names, ["k0", "k2", "k3", "k4"]);
    assert_eq!(mirror.get("k0").unwrap().value, "0b");
    assert_eq!(mirror.get("k2").unwrap().value, "2-again");

    // And it follows the watch again from the listing on.
    let t5 = writer.register("k5", "5".into()).await.unwrap().detach();
    writer.unregister_if_same("k3", tags[3]).await.unwrap();
    assert_mirror_equals_etcd(&mirror, &writer).await;
    assert_eq!(mirror.get("k5").unwrap().tag, t5);
    assert!(mirror.get("k3").is_none());
    assert_eq!(mirror.relists(), 1);
}

/// `Mirror::sync` must not return before the mirror shows every write that completed before
/// the call. The mirror's watch is reopened from an old revision (its member was down while
/// others wrote), so etcd still has events to send it when `sync` is called. (A sync that
/// trusted etcd's progress reports failed here: etcd before 3.4.24, Debian's 3.4.23 included,
/// sends a requested report ahead of events still in flight, etcd-io/etcd#15220.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_sync_waits_for_the_events_it_vouches_for() {
    let mut cluster = Cluster::start(3);
    let leader = tokio::task::block_in_place(|| cluster.leader());
    let lonely = (leader + 1) % 3;
    let others: Vec<String> = (0..3)
        .filter(|&i| i != lonely)
        .map(|i| cluster.member_endpoint(i))
        .collect();
    let writer = connect(&others, "c3/", 10).await;
    let reader = connect(&[cluster.member_endpoint(lonely)], "c3/", 10).await;
    let mirror = reader.mirror().await.unwrap();

    tokio::task::block_in_place(|| cluster.kill(lonely));
    for i in 0..20 {
        writer
            .register(&format!("k{i}"), i.to_string())
            .await
            .unwrap()
            .detach();
    }
    tokio::task::block_in_place(|| {
        cluster.restart(lonely);
        cluster.wait_member_healthy(lonely);
    });
    let synced = tokio::time::timeout(Duration::from_secs(30), mirror.sync())
        .await
        .expect("sync did not return within 30 s")
        .unwrap();
    // Read at once: the mirror must already hold everything up to `synced`.
    let local = state_of_mirror(&mirror);
    let (rev, listing) = writer.list().await.unwrap();
    assert_eq!(rev, synced);
    assert_eq!(local.len(), 20);
    assert_eq!(
        local,
        state_of_listing(&listing),
        "sync() returned at {synced} before the mirror had the writes"
    );
    assert_eq!(mirror.relists(), 0);
}

/// A lease that expires while the keeper cannot reach etcd is reported lost once it can again.
/// The registry talks to one follower only; that follower is killed, the leader lets the
/// lease expire, the follower comes back: the keeper's reopened stream is told the lease is
/// gone. (A regression test: the keeper used to take that answer for a passing failure and
/// retry forever, so `lease_lost` never resolved.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expired_while_cut_off_is_reported_when_back() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let opts = Options::default()
        .root("l9/")
        .ttl(Duration::from_secs(2))
        .request_timeout(Duration::from_millis(500))
        .retry_for(Duration::from_secs(1));
    let a = EtcdRegistry::<String>::connect_with(
        &[cluster.member_endpoint(follower)],
        opts.clone(),
        genreg_etcd::Json,
    )
    .await
    .unwrap();
    let t = a.register("x", "1".into()).await.unwrap().detach();
    let b = EtcdRegistry::<String>::connect_with(
        &[cluster.member_endpoint(leader)],
        opts,
        genreg_etcd::Json,
    )
    .await
    .unwrap();

    cluster.kill(follower);
    // The leader expires the lease: no keepalive reaches it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match b.get("x").await {
            Ok(None) => break,
            _ => {
                assert!(Instant::now() < deadline, "the lease never expired");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert!(!a.is_lease_lost(), "nothing has told A yet");
    cluster.restart(follower);
    cluster.wait_member_healthy(follower);
    let lost = tokio::time::timeout(Duration::from_secs(20), a.lease_lost())
        .await
        .expect("the keeper reports the expired lease once etcd answers again");
    assert_eq!(lost.lease, a.lease());
    assert_eq!(lost.bindings, vec![("x".to_string(), t)]);
    assert!(matches!(
        a.register("y", "2".into()).await.unwrap_err().error,
        Error::LeaseLost { .. }
    ));
}
