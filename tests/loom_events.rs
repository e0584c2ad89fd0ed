//! loom models of the event log's publication protocol (see the crate's `raw/log.rs`): the
//! revision is drawn after the load the CAS expects and before the CAS, the event published
//! after it (a skip if the CAS lost), and readers walk the ring in revision order.
//!
//! Run with the other models (`ci/loom.sh`):
//! ```sh
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom -C debug-assertions" \
//!   cargo test --release --test loom_events --target-dir target/loom -- --nocapture
//! ```
//! Each model checks outcomes, not only the absence of crashes: the events a watcher gets are
//! in strictly increasing revision order, each applies to the state the previous ones built
//! (a registration over a free name, a removal of the very binding bound), and their replay
//! equals the registry's final state.
#![cfg(loom)]

#[path = "support/loom_check.rs"]
mod loom_check;
use loom_check::check;

use std::collections::BTreeMap;

use genreg::{Event, EventKind, Filter, Registry, Revision, Tag, WatchError};

/// A registry on crossbeam-epoch's default collector (in loom mode it is created afresh for
/// every execution of the model): pinning it costs far fewer model steps than registering a
/// handle with an owned collector at every call.
fn registry(history: usize) -> Registry<u32> {
    Registry::builder()
        .hash_seed(0x5eed_0001)
        .events(history)
        .build()
}

/// Replays `events` over `state`, asserting order and consistency.
fn replay(state: &mut BTreeMap<String, Tag>, last: &mut Revision, events: &[Event<u32>]) {
    for e in events {
        assert!(e.revision() > *last, "{e:?} after {last:?}");
        *last = e.revision();
        let current = state.get(e.name()).copied();
        match e.kind() {
            EventKind::Registered { tag, .. } => {
                assert_eq!(current, None, "{e:?}: registered over a binding");
                state.insert(e.name().to_owned(), *tag);
            }
            EventKind::Replaced { old, tag, .. } => {
                assert_eq!(current, Some(*old), "{e:?}: replaced another binding");
                state.insert(e.name().to_owned(), *tag);
            }
            EventKind::Unregistered { tag, .. } => {
                assert_eq!(current, Some(*tag), "{e:?}: removed another binding");
                state.remove(e.name());
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Everything the watcher can deliver now.
fn drain(w: &mut genreg::Watcher<u32>) -> Vec<Event<u32>> {
    let mut out = Vec::new();
    while let Some(item) = w.try_next() {
        out.push(item.expect("history large enough"));
    }
    out
}

fn state_of(reg: &Registry<u32>) -> BTreeMap<String, Tag> {
    reg.entries()
        .into_iter()
        .map(|(n, e)| (n, e.tag()))
        .collect()
}

/// Two writers on one name, one of them also watching: the spawned thread registers the name
/// again (it wins only after the removal), the main thread removes the binding and then reads
/// the watcher while the other writer may still be mid-publication. Per name, revision order
/// must be commit order: `rev_after_cas` (the revision drawn after the CAS) fails here, as a
/// registration delivered before the removal it followed.
#[test]
fn two_writers_on_one_name_against_a_watcher() {
    check("two_writers_on_one_name_against_a_watcher", 2, || {
        let reg = registry(16);
        let t0 = reg.register_detached("a", 0).unwrap();
        let mut w = reg.watch(Filter::all(), Revision::ZERO).unwrap();
        let r2 = reg.clone();
        let binder = loom::thread::spawn(move || {
            let _ = r2.register_detached("a", 1);
        });
        reg.unregister_if_same("a", t0).unwrap();
        let mut seen = Vec::new();
        while let Some(item) = w.try_next() {
            seen.push(item.unwrap());
        }
        binder.join().unwrap();
        seen.extend(drain(&mut w));
        let mut state = BTreeMap::new();
        let mut last = Revision::ZERO;
        replay(&mut state, &mut last, &seen);
        assert_eq!(state, state_of(&reg), "replay differs from the final state");
    });
}

/// A writer against `subscribe`: the snapshot plus the watcher's events equal the final
/// state, and nothing at or before the snapshot's revision is delivered again.
#[test]
fn writer_against_subscribe() {
    check("writer_against_subscribe", 2, || {
        let reg = registry(16);
        let ta = reg.register_detached("a", 0).unwrap();
        let r1 = reg.clone();
        let writer = loom::thread::spawn(move || {
            r1.unregister_if_same("a", ta).unwrap();
        });
        let (snap, mut w) = reg.subscribe(Filter::all()).unwrap();
        writer.join().unwrap();
        let mut state: BTreeMap<String, Tag> = snap
            .entries()
            .iter()
            .map(|e| (e.name.clone(), e.tag))
            .collect();
        let mut last = snap.revision();
        replay(&mut state, &mut last, &drain(&mut w));
        assert_eq!(
            state,
            state_of(&reg),
            "snapshot + events differ from the state"
        );
    });
}

/// A slow watcher at the history bound (2 revisions kept, 3 written): it gets each event at
/// its own revision, or a typed `Lagged` error and then nothing; never a record of another
/// revision in place of the one it asked for.
#[test]
fn slow_watcher_at_the_history_bound() {
    check("slow_watcher_at_the_history_bound", 2, || {
        let reg = registry(2);
        let mut w = reg.watch(Filter::all(), Revision::ZERO).unwrap();
        let r1 = reg.clone();
        let writer = loom::thread::spawn(move || {
            for name in ["a", "b", "c"] {
                r1.register_detached(name, 0).unwrap();
            }
        });
        let mut got = Vec::new();
        let mut lagged = false;
        for _ in 0..3 {
            match w.try_next() {
                Some(Ok(e)) => got.push(e),
                Some(Err(WatchError::Lagged { .. })) => {
                    lagged = true;
                    break;
                }
                Some(Err(e)) => panic!("{e:?}"),
                None => {}
            }
        }
        writer.join().unwrap();
        if lagged {
            assert!(w.try_next().is_none(), "a lagged watcher ends");
        } else {
            loop {
                match w.try_next() {
                    Some(Ok(e)) => got.push(e),
                    Some(Err(WatchError::Lagged { .. })) => break,
                    Some(Err(e)) => panic!("{e:?}"),
                    None => break,
                }
            }
        }
        // Whatever was delivered is the true prefix: a at 1, b at 2, c at 3.
        for e in &got {
            let want = ["a", "b", "c"][e.revision().as_raw() as usize - 1];
            assert_eq!(e.name(), want, "{e:?}");
        }
        let revs: Vec<u64> = got.iter().map(|e| e.revision().as_raw()).collect();
        assert!(revs.windows(2).all(|p| p[0] + 1 == p[1]), "{revs:?}");
        assert!(revs.first().is_none_or(|r| *r == 1), "{revs:?}");
    });
}
