//! Events, watchers, subscriptions, waits, snapshots and restore.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use genreg::{
    Event, EventKind, Filter, Generation, Reason, Registry, RestoreError, Revision,
    SNAPSHOT_FORMAT, Snapshot, SnapshotEntry, Tag, WatchError,
};

/// A builder with a collector of its own (the global one leaks at exit under Miri).
fn builder<V: Send + Sync + 'static>() -> genreg::Builder<V> {
    Registry::builder().collector(genreg::epoch::Collector::new())
}

fn with_events<V: Clone + Send + Sync + 'static>(history: usize) -> Registry<V> {
    builder().events(history).build()
}

/// Everything published so far (the watcher must not wait).
fn drain<V: Clone + Send + Sync + 'static>(w: &mut genreg::Watcher<V>) -> Vec<Event<V>> {
    let mut out = Vec::new();
    while let Some(item) = w.try_next() {
        out.push(item.expect("no error"));
    }
    out
}

fn reason_of<V>(e: &Event<V>) -> Option<Reason> {
    match e.kind() {
        EventKind::Unregistered { reason, .. } => Some(*reason),
        _ => None,
    }
}

/// Applies events to a name → (tag, value) map, as a mirror would.
fn apply<V: Clone>(state: &mut BTreeMap<String, (Tag, Option<V>)>, e: &Event<V>) {
    match e.kind() {
        EventKind::Registered { tag, value } | EventKind::Replaced { tag, value, .. } => {
            state.insert(e.name().to_owned(), (*tag, value.clone()));
        }
        EventKind::Unregistered { .. } => {
            state.remove(e.name());
        }
        _ => unreachable!(),
    }
}

#[test]
fn every_operation_is_an_event_with_its_reason() {
    let r: Registry<Arc<str>> = with_events(64);
    let mut w = r.watch(Filter::all(), Revision::ZERO).unwrap();

    let a = r.register("a", Arc::from("1")).unwrap();
    let ta = a.tag();
    let tb = r.register_detached("b", Arc::from("2")).unwrap();
    let ta2 = r.replace_if_same("a", ta, Arc::from("1'")).unwrap();
    r.unregister_if_same("b", tb).unwrap();
    r.register_detached("c", Arc::from("3")).unwrap();
    r.unregister("c").unwrap();
    drop(a); // replaced: the guard's tag is stale, nothing happens
    r.unregister_if_same("a", ta2).unwrap();
    let g = r.register("d", Arc::from("4")).unwrap();
    drop(g);
    r.register_detached("e", Arc::from("5")).unwrap();
    r.clear();
    let owner: Arc<str> = Arc::from("weak");
    r.register_weak("f", &owner).unwrap().detach();
    drop(owner);
    assert!(r.get("f").is_none()); // the read purges it

    let events = drain(&mut w);
    let got: Vec<(String, &'static str, Option<Reason>)> = events
        .iter()
        .map(|e| {
            let kind = match e.kind() {
                EventKind::Registered { .. } => "registered",
                EventKind::Replaced { .. } => "replaced",
                EventKind::Unregistered { .. } => "unregistered",
                _ => "other",
            };
            (e.name().to_owned(), kind, reason_of(e))
        })
        .collect();
    let want: Vec<(String, &str, Option<Reason>)> = [
        ("a", "registered", None),
        ("b", "registered", None),
        ("a", "replaced", None),
        ("b", "unregistered", Some(Reason::IfSame)),
        ("c", "registered", None),
        ("c", "unregistered", Some(Reason::Explicit)),
        ("a", "unregistered", Some(Reason::IfSame)),
        ("d", "registered", None),
        ("d", "unregistered", Some(Reason::GuardDropped)),
        ("e", "registered", None),
        ("e", "unregistered", Some(Reason::Cleared)),
        ("f", "registered", None),
        ("f", "unregistered", Some(Reason::WeakOwnerDead)),
    ]
    .into_iter()
    .map(|(n, k, r)| (n.to_owned(), k, r))
    .collect();
    assert_eq!(got, want);
    // Revisions strictly increase.
    assert!(events.windows(2).all(|p| p[0].revision() < p[1].revision()));
    // Values ride along (strong bindings), not for weak ones.
    assert!(
        matches!(events[2].kind(), EventKind::Replaced { old, tag, value: Some(v) }
        if *old == ta && *tag == ta2 && &**v == "1'")
    );
    assert!(matches!(
        events[11].kind(),
        EventKind::Registered { value: None, .. }
    ));
}

#[test]
fn weak_owner_death_is_an_event_when_a_writer_meets_it() {
    let r: Registry<Arc<u32>> = with_events(64);
    let owner = Arc::new(1);
    let t_weak = r.register_weak("w", &owner).unwrap().detach();
    drop(owner);
    let since = r.revision();
    let mut w = r.watch(Filter::all(), since).unwrap();
    let t_new = r.register_detached("w", Arc::new(2)).unwrap();
    let events = drain(&mut w);
    assert_eq!(events.len(), 2);
    assert!(
        matches!(events[0].kind(), EventKind::Unregistered { tag, reason: Reason::WeakOwnerDead } if *tag == t_weak)
    );
    assert!(matches!(events[1].kind(), EventKind::Registered { tag, .. } if *tag == t_new));
    assert_eq!(
        events[1].revision().as_raw(),
        events[0].revision().as_raw() + 1
    );
}

#[test]
fn watch_filters_by_prefix_and_resumes() {
    let r: Registry<u32> = with_events(64);
    let mut w = r.watch(Filter::prefix("worker-"), Revision::ZERO).unwrap();
    r.register_detached("worker-1", 1).unwrap();
    r.register_detached("planner", 2).unwrap();
    r.register_detached("worker-2", 3).unwrap();
    let first = w.try_next().unwrap().unwrap();
    assert_eq!(first.name(), "worker-1");
    // Resume from where the first watcher stopped: the rest, once.
    let mut resumed = r.watch(Filter::prefix("worker-"), w.revision()).unwrap();
    let rest = drain(&mut resumed);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].name(), "worker-2");
    assert_eq!(drain(&mut w).len(), 1);
    assert!(w.try_next().is_none());
    // One name.
    let mut one = r.watch(Filter::name("planner"), Revision::ZERO).unwrap();
    assert_eq!(drain(&mut one).len(), 1);
}

#[test]
fn compacted_and_lagged_are_typed_errors() {
    let r: Registry<u32> = with_events(4);
    let mut slow = r.watch(Filter::all(), Revision::ZERO).unwrap();
    for i in 0..20 {
        r.register_detached(&format!("n{i}"), i).unwrap();
    }
    // Revisions 1..=20 were drawn; the ring keeps 4.
    match r.watch(Filter::all(), Revision::ZERO) {
        Err(WatchError::Compacted { requested, oldest }) => {
            assert_eq!(requested, Revision::from_raw(1));
            assert_eq!(oldest, Revision::from_raw(17));
        }
        other => panic!("{other:?}"),
    }
    match slow.try_next() {
        Some(Err(WatchError::Lagged { next, .. })) => assert_eq!(next, Revision::from_raw(1)),
        other => panic!("{other:?}"),
    }
    assert!(slow.try_next().is_none(), "a lagged watcher ends");
    assert!(slow.next().is_none());
    let msg = WatchError::Compacted {
        requested: Revision::from_raw(1),
        oldest: Revision::from_raw(17),
    }
    .to_string();
    assert!(msg.contains("r1") && msg.contains("r17"), "{msg}");
}

#[test]
fn without_events_watch_is_refused_but_waits_work() {
    let r: Registry<u32> = builder().build();
    assert_eq!(
        r.watch(Filter::all(), Revision::ZERO).unwrap_err(),
        WatchError::Disabled
    );
    assert_eq!(r.snapshot().unwrap_err(), WatchError::Disabled);
    assert!(r.subscribe(Filter::all()).is_err());
    assert_eq!(r.revision(), Revision::ZERO);
    let r2 = r.clone();
    let t = thread::spawn(move || r2.wait_for("late", Duration::from_secs(30)));
    thread::sleep(Duration::from_millis(20));
    r.register_detached("late", 7).unwrap();
    assert_eq!(*t.join().unwrap().unwrap().value(), 7);
    assert!(r.wait_for("never", Duration::from_millis(10)).is_none());
}

#[test]
fn evicted_wakes_the_owner_of_a_guard() {
    let r: Registry<u32> = with_events(16);
    let g = r.register("svc", 1).unwrap();
    assert!(!g.wait_evicted(Duration::from_millis(10)));
    let tag = g.tag();
    let r2 = r.clone();
    let remover = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        r2.unregister_if_same("svc", tag).unwrap();
    });
    assert!(g.wait_evicted(Duration::from_secs(30)));
    remover.join().unwrap();
}

#[test]
#[cfg_attr(miri, ignore)] // writer threads flat out: too slow under Miri
fn snapshot_is_exact_and_subscribe_has_no_gap_and_no_duplicate() {
    let r: Registry<u64> = with_events(1 << 16);
    for i in 0..200u64 {
        r.register_detached(&format!("base-{i}"), i).unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (r, stop) = (r.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let name = format!("w{t}-{}", i % 50);
                    match r.register_detached(&name, i) {
                        Ok(tag) if i % 3 == 0 => {
                            let _ = r.replace_if_same(&name, tag, i + 1);
                        }
                        Ok(_) => {}
                        Err(_) => {
                            let _ = r.unregister(&name);
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for _ in 0..20 {
        let (snap, mut w) = r.subscribe(Filter::all()).unwrap();
        let mut state: BTreeMap<String, (Tag, Option<u64>)> = snap
            .entries()
            .iter()
            .map(|e| (e.name.clone(), (e.tag, Some(e.value))))
            .collect();
        // Every event after the snapshot's revision, once, in order.
        let mut last = snap.revision();
        for _ in 0..200 {
            let e = w.next().unwrap().unwrap();
            assert!(e.revision() > last, "{e:?} after {last:?}");
            last = e.revision();
            // A replacement or removal must find the binding it changes.
            match e.kind() {
                EventKind::Replaced { old, .. } => {
                    assert_eq!(state.get(e.name()).map(|s| s.0), Some(*old), "{e:?}")
                }
                EventKind::Unregistered { tag, .. } => {
                    assert_eq!(state.get(e.name()).map(|s| s.0), Some(*tag), "{e:?}")
                }
                EventKind::Registered { .. } => {
                    assert!(!state.contains_key(e.name()), "{e:?}")
                }
                _ => unreachable!(),
            }
            apply(&mut state, &e);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    // Quiescent: a snapshot equals the registry.
    let snap = r.snapshot().unwrap();
    let now: BTreeMap<String, (Tag, u64)> = r
        .entries()
        .into_iter()
        .map(|(n, e)| (n, (e.tag(), *e.value())))
        .collect();
    let snapped: BTreeMap<String, (Tag, u64)> = snap
        .entries()
        .iter()
        .map(|e| (e.name.clone(), (e.tag, e.value)))
        .collect();
    assert_eq!(now, snapped);
    assert_eq!(snap.revision(), r.revision());
}

#[test]
fn restore_keeps_tags_and_moves_every_counter_past() {
    let old: Registry<String> = with_events(64);
    let ta = old.register_detached("agent-a", "A".into()).unwrap();
    let tb = old.register_detached("agent-b", "B".into()).unwrap();
    let stale = old.replace_if_same("agent-b", tb, "B2".into()).unwrap();
    let tb2 = old.replace_if_same("agent-b", stale, "B3".into()).unwrap();
    old.register_auto("worker", "W".into()).unwrap().detach();
    let snap = old.snapshot().unwrap();
    assert_eq!(snap.len(), 3);
    assert_eq!(snap.get("agent-b").unwrap().tag, tb2);

    let new: Registry<String> = with_events(64);
    // Mint a little first: the restore must move past what this registry handed out too.
    let tmp = new.register_detached("tmp", "x".into()).unwrap();
    assert_eq!(
        new.restore(snap.clone()).unwrap_err(),
        RestoreError::NotEmpty { len: 1 }
    );
    new.unregister_if_same("tmp", tmp).unwrap();
    assert_eq!(new.restore(snap.clone()).unwrap(), 3);
    assert_eq!(new.tag_of("agent-a"), Some(ta));
    assert_eq!(new.tag_of("agent-b"), Some(tb2));
    // A stale tag from before the "restart" matches nothing.
    assert!(new.unregister_if_same("agent-b", stale).is_err());
    // New registrations mint generations past the snapshot's, and auto names go on.
    let fresh = new.register_detached("agent-c", "C".into()).unwrap();
    assert!(fresh.generation() > tb2.generation());
    assert!(fresh.instance().as_raw() > tb2.instance().as_raw());
    let auto = new.register_auto("worker", "W2".into()).unwrap();
    assert_eq!(auto.name(), "worker-2");
    assert!(new.revision() > snap.revision());
    // A second restore into the now non-empty registry is refused.
    assert!(matches!(
        new.restore(snap),
        Err(RestoreError::NotEmpty { .. })
    ));
}

#[test]
fn restore_refuses_bad_snapshots_with_typed_errors() {
    let src: Registry<u32> = with_events(16);
    let tag = src.register_detached("ok", 1).unwrap();
    let snap = src.snapshot().unwrap();
    let (rev, counters) = (snap.revision(), snap.counters());
    let entry = |name: &str, tag: Tag| SnapshotEntry {
        name: name.to_owned(),
        tag,
        value: 1u32,
        metadata: None,
    };
    let target: Registry<u32> = with_events(16);
    let bad =
        |format, entries| target.restore(Snapshot::from_parts(format, rev, counters, entries));
    assert_eq!(
        bad(SNAPSHOT_FORMAT + 1, vec![]).unwrap_err(),
        RestoreError::UnsupportedFormat {
            found: SNAPSHOT_FORMAT + 1,
            supported: SNAPSHOT_FORMAT
        }
    );
    assert!(matches!(
        bad(SNAPSHOT_FORMAT, vec![entry("ok", tag), entry("ok", tag)]).unwrap_err(),
        RestoreError::DuplicateName { name } if name == "ok"
    ));
    assert!(matches!(
        bad(SNAPSHOT_FORMAT, vec![entry("", tag)]).unwrap_err(),
        RestoreError::InvalidName { .. }
    ));
    let zero = Tag::new(tag.instance(), Generation::from_raw(0));
    let err = bad(SNAPSHOT_FORMAT, vec![entry("z", zero)]).unwrap_err();
    assert!(matches!(err, RestoreError::InvalidTag { .. }));
    assert!(err.to_string().contains("no registry mints"), "{err}");
    let huge = Tag::new(genreg::InstanceId::from_raw(u64::MAX), tag.generation());
    assert!(matches!(
        bad(SNAPSHOT_FORMAT, vec![entry("h", huge)]).unwrap_err(),
        RestoreError::InvalidTag { .. }
    ));
    let far = genreg::Counters {
        instance: u64::MAX,
        ..counters
    };
    let err = target
        .restore(Snapshot::from_parts(SNAPSHOT_FORMAT, rev, far, vec![]))
        .unwrap_err();
    assert_eq!(
        err,
        RestoreError::CounterOutOfRange {
            counter: "instance",
            value: u64::MAX
        }
    );
    // Nothing was bound by any refused restore.
    assert!(target.is_empty());
    assert_eq!(target.restore(snap).unwrap(), 1);
}

#[cfg(feature = "serde")]
#[test]
fn snapshot_round_trips_through_json_with_descriptors() {
    #[derive(Clone, Debug, PartialEq)]
    struct Agent {
        kind: String,
        model: String,
    }
    let r: Registry<Arc<Agent>> = with_events(64);
    let a = Arc::new(Agent {
        kind: "planner".into(),
        model: "m1".into(),
    });
    let tag = r.register_detached("planner-1", a).unwrap();
    // save_state: values become descriptors, then JSON.
    let saved = r
        .snapshot()
        .unwrap()
        .map_values(|_, agent| (agent.kind.clone(), agent.model.clone()));
    let json = serde_json::to_string(&saved).unwrap();
    // load_state: JSON, then descriptors become agents again.
    let loaded: Snapshot<(String, String)> = serde_json::from_str(&json).unwrap();
    assert_eq!(loaded, saved);
    let rebuilt = loaded.map_values(|_, (kind, model)| Arc::new(Agent { kind, model }));
    let fresh: Registry<Arc<Agent>> = with_events(64);
    fresh.restore(rebuilt).unwrap();
    assert_eq!(fresh.tag_of("planner-1"), Some(tag));
    // Corrupt and truncated input: errors, never panics.
    for cut in 0..json.len() {
        let _ = serde_json::from_str::<Snapshot<(String, String)>>(&json[..cut]).unwrap_err();
    }
    let other_format = json.replacen("\"format\":1", "\"format\":99", 1);
    let s: Snapshot<(String, String)> = serde_json::from_str(&other_format).unwrap();
    let target: Registry<Arc<Agent>> = with_events(8);
    assert!(matches!(
        target.restore(s.map_values(|_, (kind, model)| Arc::new(Agent { kind, model }))),
        Err(RestoreError::UnsupportedFormat { found: 99, .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(miri, ignore)] // a tokio runtime under Miri: slow, and tokio is not what is tested
async fn async_watch_and_waits_on_tokio() {
    use futures_core::Stream;
    use std::pin::Pin;
    use std::task::Poll;

    let r: Registry<u32> = with_events(64);
    let mut w = r.watch(Filter::all(), r.revision()).unwrap();
    let r2 = r.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let g = r2.register("x", 1).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(g);
    });
    async fn next(w: &mut genreg::Watcher<u32>) -> Option<Result<Event<u32>, WatchError>> {
        std::future::poll_fn(|cx| match Pin::new(&mut *w).poll_next(cx) {
            Poll::Ready(x) => Poll::Ready(x),
            Poll::Pending => Poll::Pending,
        })
        .await
    }
    let e1 = tokio::time::timeout(Duration::from_secs(30), next(&mut w))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(e1.kind(), EventKind::Registered { .. }));
    let e2 = next(&mut w).await.unwrap().unwrap();
    assert_eq!(reason_of(&e2), Some(Reason::GuardDropped));
    writer.await.unwrap();

    // `bound` and `evicted` as futures.
    let r3 = r.clone();
    let waiter = tokio::spawn(async move { *r3.bound("late").await.value() });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let g = r.register("late", 9).unwrap();
    assert_eq!(waiter.await.unwrap(), 9);
    let tag = g.tag();
    let r4 = r.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        r4.unregister_if_same("late", tag).unwrap();
    });
    tokio::time::timeout(Duration::from_secs(30), g.evicted())
        .await
        .unwrap();
}

#[test]
fn events_without_values_keep_no_value_alive() {
    let r: Registry<Arc<u32>> = builder().events(64).event_values(false).build();
    let mut w = r.watch(Filter::all(), Revision::ZERO).unwrap();
    let v = Arc::new(5);
    let tag = r.register_detached("a", Arc::clone(&v)).unwrap();
    let e = w.try_next().unwrap().unwrap();
    assert_eq!(e.kind(), &EventKind::Registered { tag, value: None });
    // The value, from the registry itself.
    assert_eq!(*r.get_if("a", tag).unwrap(), 5);
    // A snapshot still has it.
    assert_eq!(*r.snapshot().unwrap().get("a").unwrap().value, 5);
    // Removed and collected: dropped, the history holds no clone.
    r.unregister_if_same("a", tag).unwrap();
    assert!(r.collect());
    assert_eq!(Arc::strong_count(&v), 1);
}

/// A value whose `clone` panics on demand.
#[derive(Debug)]
struct Touchy(bool);

impl Clone for Touchy {
    fn clone(&self) -> Self {
        assert!(!self.0, "this value refuses to be cloned");
        Touchy(false)
    }
}

#[test]
#[cfg_attr(miri, ignore)] // unwinding through catch_unwind is fine under Miri, but slow
fn a_panicking_clone_while_recording_leaves_everything_consistent() {
    let r: Registry<Touchy> = with_events(16);
    let mut w = r.watch(Filter::all(), Revision::ZERO).unwrap();
    // Registered: the event is published without its value; the binding and the length stand.
    let tag = r.register_detached("t", Touchy(true)).unwrap();
    assert_eq!(r.len(), 1);
    let e = w.try_next().unwrap().unwrap();
    assert!(matches!(e.kind(), EventKind::Registered { value: None, tag: t } if *t == tag));
    assert!(r.pin().unregister_if_same("t", tag).is_ok());
    assert!(r.is_empty());
    let e = w.try_next().unwrap().unwrap();
    assert_eq!(reason_of(&e), Some(Reason::IfSame));
}

#[test]
fn watchers_go_on_after_a_restore_jumps_the_revisions() {
    let src: Registry<u32> = with_events(8);
    for i in 0..40 {
        let t = src.register_detached("x", i).unwrap();
        src.unregister_if_same("x", t).unwrap();
    }
    src.register_detached("kept", 1).unwrap();
    let snap = src.snapshot().unwrap();
    assert!(snap.revision().as_raw() > 80);
    let target: Registry<u32> = with_events(8);
    let mut before = target.watch(Filter::all(), Revision::ZERO).unwrap();
    target.restore(snap).unwrap();
    target.register_detached("after", 2).unwrap();
    // The jump reads as lag for a watcher from before it, never as a wait for ever.
    match before.next_timeout(Duration::from_secs(5)) {
        Some(Err(WatchError::Lagged { .. })) => {}
        other => panic!("{other:?}"),
    }
    // A watcher from the restore on sees the restored binding and what followed.
    let mut w = target
        .watch(
            Filter::all(),
            Revision::from_raw(target.revision().as_raw() - 2),
        )
        .unwrap();
    let names: Vec<String> = std::iter::from_fn(|| w.try_next())
        .map(|e| e.unwrap().name().to_owned())
        .collect();
    assert_eq!(names, ["kept", "after"]);
}

#[test]
fn event_values_may_come_before_events() {
    let r: Registry<u32> = builder().event_values(false).events(8).build();
    let mut w = r.watch(Filter::all(), Revision::ZERO).unwrap();
    r.register_detached("a", 1).unwrap();
    let e = w.try_next().unwrap().unwrap();
    assert!(matches!(
        e.kind(),
        EventKind::Registered { value: None, .. }
    ));
}
