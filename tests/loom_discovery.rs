//! loom models of the discovery index's protocol (see the crate's `raw/index.rs`): a
//! publisher inserts fresh entries, fences and re-loads the binding (tidying its own entries if
//! the binding changed); a retractor fences and tidies the old binding's terms; a tidy gets the
//! entry, then loads the binding, and removes that entry only if the binding lacks the term.
//! The index (postings per term) is built of the crate's own lock-free map, so every atomic
//! of the protocol, the index's included, is a loom atomic here.
//!
//! Run with the other models (`ci/loom.sh`):
//! ```sh
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom -C debug-assertions" \
//!   cargo test --release --test loom_discovery --target-dir target/loom -- --nocapture
//! ```
//! Each model checks outcomes, not only the absence of crashes: every call's result is one
//! that some order of the calls gives, a query returns only bindings whose metadata it asked
//! for (and only the binding that carried it), and after all threads are joined the index
//! holds exactly the terms of the visible bindings with metadata: nothing stale is left
//! behind (`index_unchecked` fails here) and nothing justified was removed.
#![cfg(loom)]

#[path = "support/loom_check.rs"]
mod loom_check;
use loom_check::check;

#[cfg(not(crossbeam_loom))]
compile_error!(
    "the loom models need crossbeam-epoch in loom mode too: --cfg loom --cfg crossbeam_loom"
);

use std::sync::Arc;

use genreg::{Error, Event, EventKind, Filter, Metadata, Registry, Revision, Tag};

/// A registry on crossbeam-epoch's default collector (in loom mode it is created afresh for
/// every execution of the model): pinning it costs far fewer model steps than registering a
/// handle with an owned collector at every call.
fn registry() -> Registry<u32> {
    Registry::builder().hash_seed(0x5eed_0001).build()
}

/// Metadata with one capability (and no kind, no labels): two index terms, `n` and `c{cap}`.
fn cap(capability: &str) -> Arc<Metadata> {
    Arc::new(Metadata::builder().capability(capability).build().unwrap())
}

/// The index entries the visible bindings justify: for each binding with metadata, one for
/// the name run, one for its kind, one per capability and one per label.
fn justified(reg: &Registry<u32>) -> usize {
    reg.entries()
        .into_iter()
        .filter_map(|(name, _)| reg.metadata(&name).and_then(|(_, m)| m))
        .map(|m| 1 + usize::from(m.kind().is_some()) + m.capabilities().len() + m.labels().len())
        .sum()
}

/// Asserts that the index holds exactly the justified entries (after every thread is joined).
fn assert_index_exact(reg: &Registry<u32>, what: &str) {
    assert_eq!(
        reg.discovery_index_len(),
        justified(reg),
        "{what}: the index does not hold exactly the terms of the visible bindings \
         (a stale entry left behind, or a justified one removed)"
    );
}

/// The binding of `name` now: its tag and capabilities.
fn binding(reg: &Registry<u32>, name: &str) -> Option<(Tag, Vec<String>)> {
    reg.metadata(name).map(|(tag, m)| {
        let caps = m.map_or_else(Vec::new, |m| m.capabilities().map(str::to_owned).collect());
        (tag, caps)
    })
}

/// A registration with metadata (one capability) against an unconditional removal of the
/// name: the removal may come between the registration's commit and its publication, so the
/// retractor's tidy finds no entry yet and only the publisher's re-check (fence, re-load the
/// binding, tidy its own entries) can clean up. Two threads reach it: `index_unchecked`
/// (which skips that re-check) leaves the two entries of a removed binding behind here.
/// Bound 2 (about 36,000 iterations, 5 s); bound 3 explores about 620,000 in 90 s, too slow
/// for the suite (`GENREG_LOOM_EXTRA_PREEMPTIONS=1` runs it).
#[test]
fn index_entry_added_after_commit_races_its_removal() {
    check(
        "index_entry_added_after_commit_races_its_removal",
        2,
        || {
            let reg = registry();
            let r1 = reg.clone();
            let registrar = loom::thread::spawn(move || {
                r1.with_metadata(cap("a"))
                    .register_detached("x", 1)
                    .map_err(|r| r.error().clone())
            });
            let removed = reg.unregister("x");
            let registered = registrar.join().unwrap();
            // The name was free and only this thread binds it.
            let tag = registered.expect("the name was free");
            match &removed {
                // The removal came after the commit: it removed that binding.
                Ok(entry) => {
                    assert_eq!(entry.tag(), tag, "removed another binding");
                    assert_eq!(binding(&reg, "x"), None);
                }
                // The removal came first and found nothing: the binding stays, with its metadata.
                Err(Error::NotFound { .. }) => {
                    assert_eq!(binding(&reg, "x"), Some((tag, vec!["a".to_owned()])));
                }
                Err(e) => panic!("unregister: {e:?}"),
            }
            assert_index_exact(&reg, "registration vs removal");
        },
    );
}

/// A binding's entry goes stale while a query reads it: a writer registers `x` with
/// capability `a`, removes it, and registers `x` again with capability `b`; a query for `a`
/// runs against it. The query can read the `a` entry between the removal's commit and its
/// tidy, and check `x` after it is bound again with `b`.
///
/// The query returns only the first binding, and only with metadata that carries `a` (the
/// query's check of the current metadata: `query_unchecked` returns the second binding for
/// `a` here). At the end the stale entry is gone and the second binding's are there.
///
/// Two threads: the three-thread form of this model (the removal and the re-registration in
/// two threads, plus the query) did not finish within 400 s even at preemption bound 1 (each
/// call pins, probes the table and two postings, and a third thread multiplies all of that);
/// two threads already reach the stale entry that the query must not trust. The
/// registration-vs-removal race itself is `index_entry_added_after_commit_races_its_removal`.
#[test]
fn stale_index_entry_is_cleaned_up() {
    check("stale_index_entry_is_cleaned_up", 2, || {
        let reg = registry();
        let r1 = reg.clone();
        let writer = loom::thread::spawn(move || {
            let first = r1
                .with_metadata(cap("a"))
                .register_detached("x", 1)
                .unwrap();
            let removed = r1.unregister_if_same("x", first);
            assert_eq!(
                removed.map(|e| e.tag()),
                Ok(first),
                "its own binding, removed"
            );
            let second = r1
                .with_metadata(cap("b"))
                .register_detached("x", 2)
                .unwrap();
            (first, second)
        });
        let found = reg.find_by_capability("a").unwrap();
        let (first, second) = writer.join().unwrap();
        assert!(found.len() <= 1, "{found:?}");
        for m in &found {
            assert!(
                m.metadata.has_capability("a"),
                "{m:?} returned for capability a"
            );
            assert_eq!(m.name, "x");
            assert_eq!(m.tag, first, "{m:?}: not the binding registered with a");
            assert_eq!(m.value, 1, "{m:?}");
        }
        assert_eq!(binding(&reg, "x"), Some((second, vec!["b".to_owned()])));
        assert_index_exact(&reg, "re-registration after removal vs a query");
    });
}

/// Everything a watcher can deliver now.
fn drain(w: &mut genreg::Watcher<u32>) -> Vec<Event<u32>> {
    let mut out = Vec::new();
    while let Some(item) = w.try_next() {
        out.push(item.expect("history large enough"));
    }
    out
}

/// A metadata update (`a` to `b`, tag-checked) against a removal of the same binding by its
/// tag. The update keeps the tag, so the removal always succeeds; the update either fails
/// (`NotFound`: the removal came first) or lands before the removal, which the event log
/// shows in that order. Either way the name ends unbound and the index empty: the update's
/// fresh `c` entry for `b` may be published after the removal's tidy ran, so the publisher's
/// re-check must take it out (`index_unchecked` leaves it, with the name's `n` entry).
#[test]
fn metadata_update_races_removal() {
    check("metadata_update_races_removal", 2, || {
        let reg = Registry::builder().hash_seed(0x5eed_0001).events(8).build();
        let tag = reg
            .with_metadata(cap("a"))
            .register_detached("x", 1)
            .unwrap();
        let mut w = reg.watch(Filter::all(), Revision::ZERO).unwrap();
        let r1 = reg.clone();
        let updater = loom::thread::spawn(move || r1.update_metadata("x", tag, cap("b")));
        let removed = reg.unregister_if_same("x", tag);
        let updated = updater.join().unwrap();
        assert_eq!(
            removed.map(|e| e.tag()),
            Ok(tag),
            "an update keeps the tag: the removal by tag must succeed"
        );
        match &updated {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => panic!("update_metadata: {e:?}"),
        }
        assert_eq!(binding(&reg, "x"), None);
        assert_index_exact(&reg, "metadata update vs removal");

        let events = drain(&mut w);
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e.kind() {
                EventKind::Registered { tag: t, .. } if *t == tag => "registered",
                EventKind::MetadataUpdated { tag: t } if *t == tag => "updated",
                EventKind::Unregistered { tag: t, .. } if *t == tag => "unregistered",
                _ => panic!("unexpected event {e:?}"),
            })
            .collect();
        let want: &[&str] = if updated.is_ok() {
            &["registered", "updated", "unregistered"]
        } else {
            &["registered", "unregistered"]
        };
        assert_eq!(kinds, want, "{events:?}");
        assert!(
            events.windows(2).all(|p| p[0].revision() < p[1].revision()),
            "{events:?}"
        );
        if updated.is_ok() {
            let meta = events[1]
                .metadata()
                .expect("an update carries its metadata");
            assert!(
                meta.has_capability("b") && !meta.has_capability("a"),
                "{meta:?}"
            );
        }
    });
}
