//! The per-call read path: [`Registry::read`] and [`Registry::get`] on every kind of binding,
//! on crossbeam-epoch's default collector (pinned through genreg's own thread-local handle, the
//! fast path) and on a collector of the registry's own (the out-of-line path), with a panicking
//! closure, at thread exit, and with what depends on the pin being genreg's: the grace period
//! of `collect` and the snapshot's refusal on a pinned thread.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use genreg::epoch::Collector;
use genreg::liveness::ManualClock;
use genreg::{Metadata, Registry, WatchError};

type V = Arc<str>;

fn v(s: &str) -> V {
    Arc::from(s)
}

/// Both collectors: crossbeam's default one (the fast path) and an owned one.
fn both(clock: &ManualClock) -> [Registry<V>; 2] {
    [
        Registry::builder().clock(clock.clone()).build(),
        Registry::builder()
            .clock(clock.clone())
            .collector(Collector::new())
            .build(),
    ]
}

/// What `read` sees, and that `get` sees the same.
fn seen(r: &Registry<V>, name: &str) -> Option<(genreg::Tag, String)> {
    let read = r.read(name, |e| {
        assert_eq!(e.name(), name);
        (e.tag(), e.value().to_string())
    });
    let got = r.get(name).map(|e| (e.tag(), e.value().to_string()));
    assert_eq!(read, got, "read and get disagree on {name}");
    read
}

#[test]
fn read_and_get_agree_on_every_kind_of_binding() {
    let clock = ManualClock::new();
    for r in both(&clock) {
        // A plain strong binding: the fast path.
        let plain = r.register_detached("plain", v("p")).unwrap();
        assert_eq!(seen(&r, "plain"), Some((plain, "p".into())));
        assert_eq!(seen(&r, "nobody"), None);

        // A weak binding, alive, then dead: the dead one reads as nothing and is purged.
        let owner = v("w");
        let weak = r.register_weak("weak", &owner).unwrap();
        assert_eq!(seen(&r, "weak"), Some((weak.tag(), "w".into())));
        weak.detach();
        drop(owner);
        assert_eq!(seen(&r, "weak"), None);
        assert!(!r.contains("weak"), "a read purges a dead weak binding");

        // Metadata: the value, and the metadata through the borrowed entry.
        let meta = Metadata::builder().kind("writer").build().unwrap();
        let with = r
            .with_metadata(meta)
            .register_detached("meta", v("m"))
            .unwrap();
        assert_eq!(seen(&r, "meta"), Some((with, "m".into())));
        let kind = r.read("meta", |e| {
            e.metadata().map(|m| m.kind().map(str::to_owned))
        });
        assert_eq!(kind, Some(Some(Some("writer".into()))));

        // A TTL: visible until it expires, then nothing.
        let ttl = r
            .with_ttl(Duration::from_secs(5))
            .register_detached("ttl", v("t"))
            .unwrap();
        assert_eq!(seen(&r, "ttl"), Some((ttl, "t".into())));
        clock.advance(Duration::from_secs(6));
        assert_eq!(seen(&r, "ttl"), None);

        // A pool: its own name has no value, its members read as their values.
        let pool = r.register_pool("pool", vec![v("m0"), v("m1")]).unwrap();
        assert_eq!(seen(&r, "pool"), None);
        assert!(r.contains("pool"));
        assert_eq!(seen(&r, "pool_1").map(|(_, s)| s), Some("m1".into()));
        drop(pool);
        assert_eq!(seen(&r, "pool_1"), None);

        // A replaced binding reads with its new tag; an unbound one reads as nothing.
        let new = r.replace_if_same("plain", plain, v("p2")).unwrap();
        assert_eq!(seen(&r, "plain"), Some((new, "p2".into())));
        r.unregister_if_same("plain", new).unwrap();
        assert_eq!(seen(&r, "plain"), None);
    }
}

/// A closure that panics unwinds out of `read` with the thread unpinned: the registry stays
/// usable, `collect` finishes and a snapshot is not refused as if the thread were pinned.
#[test]
fn a_panicking_closure_leaves_the_thread_unpinned() {
    for own in [false, true] {
        let mut b = Registry::builder().events(64);
        if own {
            b = b.collector(Collector::new());
        }
        let r: Registry<V> = b.build();
        r.register_detached("a", v("A")).unwrap();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            r.read("a", |_| panic!("a user's closure panics"));
        }));
        assert!(caught.is_err());
        assert_eq!(seen(&r, "a").map(|(_, s)| s), Some("A".into()));
        let snap = snapshot_within(&r, Duration::from_secs(60));
        assert_eq!(snap.len(), 1);
        let tag = r.tag_of("a").unwrap();
        r.unregister_if_same("a", tag).unwrap();
        assert!(collect_within(&r, Duration::from_secs(10)));
    }
}

/// `f` may call the registry, writes included (it runs pinned; the writes pin again).
#[test]
fn the_closure_may_call_the_registry() {
    let clock = ManualClock::new();
    for r in both(&clock) {
        let a = r.register_detached("a", v("A")).unwrap();
        let removed = r.read("a", |e| r.unregister_if_same("a", e.tag()).is_ok());
        assert_eq!(removed, Some(true));
        assert_eq!(r.tag_of("a"), None);
        assert!(r.unregister_if_same("a", a).is_err());
        r.register_detached("b", v("B")).unwrap();
        let nested = r.read("b", |_| r.read("b", |e| e.value().to_string()));
        assert_eq!(nested, Some(Some("B".into())));
    }
}

/// A snapshot on a thread that holds a [`genreg::Pinned`] handle of a registry on the default
/// collector is refused (it would wait for itself): the check sees genreg's own pin.
#[test]
fn a_snapshot_is_refused_on_a_pinned_thread() {
    let r: Registry<V> = Registry::builder().events(64).build();
    r.register_detached("a", v("A")).unwrap();
    let other: Registry<V> = Registry::new();
    let pinned = other.pin();
    assert!(matches!(r.snapshot(), Err(WatchError::Busy)));
    drop(pinned);
    assert_eq!(snapshot_within(&r, Duration::from_secs(60)).len(), 1);
}

/// Removed values are dropped by `collect` on the default collector: the job deferred by the
/// grace period and the flush that hands it over are on the same (genreg's) participant.
#[test]
fn collect_drops_removed_values_on_the_default_collector() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }
    let r: Registry<Arc<Counted>> = Registry::new();
    let names: Vec<String> = (0..200).map(|i| format!("n{i}")).collect();
    let tags: Vec<_> = names
        .iter()
        .map(|n| r.register_detached(n, Arc::new(Counted)).unwrap())
        .collect();
    for n in &names {
        assert!(r.read(n, |_| ()).is_some());
    }
    for (n, t) in names.iter().zip(tags) {
        r.unregister_if_same(n, t).unwrap();
    }
    assert!(collect_within(&r, Duration::from_secs(10)));
    assert_eq!(DROPS.load(Ordering::Relaxed), 200);
}

/// Reads from a thread-local destructor, when genreg's own thread-local handle may already be
/// gone: they fall back to a fresh handle, as crossbeam's `pin` does, and see the binding.
#[test]
fn reads_work_during_thread_exit() {
    struct ReadsOnDrop(Registry<V>, Arc<AtomicUsize>);
    impl Drop for ReadsOnDrop {
        fn drop(&mut self) {
            let r = &self.0;
            let ok = r.read("a", |e| e.value().to_string()) == Some("A".into())
                && r.get("a").is_some_and(|e| &**e.value() == "A");
            if ok {
                self.1.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    thread_local! {
        static LATE: RefCell<Option<ReadsOnDrop>> = const { RefCell::new(None) };
    }
    let r: Registry<V> = Registry::new();
    r.register_detached("a", v("A")).unwrap();
    let ok = Arc::new(AtomicUsize::new(0));
    for first in [true, false] {
        let (r, ok) = (r.clone(), Arc::clone(&ok));
        std::thread::spawn(move || {
            // Either order of first use, so that either thread-local may be destroyed first.
            if first {
                assert!(r.read("a", |_| ()).is_some());
            }
            LATE.with(|l| *l.borrow_mut() = Some(ReadsOnDrop(r.clone(), ok)));
            if !first {
                assert!(r.read("a", |_| ()).is_some());
            }
        })
        .join()
        .unwrap();
    }
    assert_eq!(ok.load(Ordering::Relaxed), 2);
}

/// Many threads reading one hot name, by `read` and by `get`, while another replaces it: every
/// read sees one of the values bound, never a freed one (Miri and TSan run this small).
#[test]
fn concurrent_reads_of_one_hot_name() {
    let r: Registry<V> = Registry::new();
    let mut tag = r.register_detached("hot", v("0")).unwrap();
    let rounds = if cfg!(miri) { 20 } else { 2_000 };
    std::thread::scope(|s| {
        for t in 0..2 {
            let r = &r;
            s.spawn(move || {
                for i in 0..rounds {
                    let x = if (i + t) % 2 == 0 {
                        r.read("hot", |e| e.value().parse::<u32>().unwrap())
                    } else {
                        r.get("hot").map(|e| e.value().parse::<u32>().unwrap())
                    };
                    assert!(x.is_some_and(|x| x <= rounds));
                }
            });
        }
        for i in 1..=rounds {
            tag = r.replace_if_same("hot", tag, v(&i.to_string())).unwrap();
        }
    });
}

/// A snapshot, asked again while it reports `Busy`: it waits for every thread pinned on the
/// global collector, and the other tests of this binary run beside it (slowly, under TSan or
/// Miri), so one grace period may outlast its bound. A thread of ours that stayed pinned would
/// make it `Busy` every time, and the deadline fails the test.
fn snapshot_within(r: &Registry<V>, limit: Duration) -> genreg::Snapshot<V> {
    let start = Instant::now();
    loop {
        match r.snapshot() {
            Ok(s) => return s,
            Err(WatchError::Busy) if start.elapsed() < limit => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("snapshot: {e}"),
        }
    }
}

fn collect_within(r: &Registry<impl Send + Sync + 'static>, limit: Duration) -> bool {
    let start = Instant::now();
    while !r.collect() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}
