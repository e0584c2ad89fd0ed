//! Metadata and discovery: registration with metadata on every path, queries, best match,
//! updates, reserved names, typed errors, and MARSYS's `CapabilityRegistry` and
//! `SmartCoordinator` patterns, race-free.

use std::sync::Arc;
use std::thread;

use genreg::discovery::{MARSYS_RESERVED, MAX_CAPABILITIES, MAX_IDENT_LEN, MAX_LABELS};
use genreg::{Error, EventKind, Filter, InstanceId, Match, Metadata, MetadataError, Registry};

/// A builder with a collector of its own (the global one leaks at exit under Miri).
fn builder<V: Send + Sync + 'static>() -> genreg::Builder<V> {
    Registry::builder().collector(genreg::epoch::Collector::new())
}

fn meta(kind: &str, caps: &[&str]) -> Metadata {
    Metadata::builder()
        .kind(kind)
        .capabilities(caps.iter().copied())
        .build()
        .unwrap()
}

fn names<V>(found: &[Match<V>]) -> Vec<&str> {
    found.iter().map(|m| m.name.as_str()).collect()
}

#[test]
fn marsys_capability_registry_finds_live_agents_only() {
    // MARSYS: register_capability(...), find_by_capability, find_best_match.
    let reg: Registry<Arc<str>> = builder().build();
    let t1 = reg
        .with_metadata(meta("translator", &["translation", "localization"]))
        .register("translator_1", Arc::from("t1"))
        .unwrap();
    let _w1 = reg
        .with_metadata(meta("writer", &["content_creation"]))
        .register("writer_1", Arc::from("w1"))
        .unwrap();
    let found = reg.find_by_capability("translation").unwrap();
    assert_eq!(names(&found), ["translator_1"]);
    assert_eq!(&*found[0].value, "t1");
    assert_eq!(found[0].tag, t1.tag());
    let best = reg
        .best_match(&["translation", "localization"])
        .unwrap()
        .unwrap();
    assert_eq!(best.name, "translator_1");

    // MARSYS's bug: the agent is gone, its capabilities are still listed. Not here.
    drop(t1);
    assert!(reg.find_by_capability("translation").unwrap().is_empty());
    assert!(reg.best_match(&["translation"]).unwrap().is_none());
    // ... and a re-registered name does not inherit the old agent's capabilities.
    let _t2 = reg
        .with_metadata(meta("writer", &["content_creation"]))
        .register("translator_1", Arc::from("now a writer"))
        .unwrap();
    assert!(reg.find_by_capability("translation").unwrap().is_empty());
    assert_eq!(
        names(&reg.find_by_capability("content_creation").unwrap()),
        ["translator_1", "writer_1"]
    );
    // Each entry: "has metadata", its name's prefix before `_`, its kind, its capability.
    assert_eq!(reg.discovery_index_len(), 2 * 4);
}

#[test]
fn smart_coordinator_delegates_by_kind_to_present_agents() {
    // MARSYS's SmartCoordinator: candidates by task type, only those present, pick one.
    let reg: Registry<Arc<String>> = builder().build();
    let mut guards = Vec::new();
    for (name, kind) in [
        ("data_analyst", "analysis"),
        ("researcher", "analysis"),
        ("writer", "writing"),
        ("editor", "writing"),
    ] {
        guards.push(
            reg.with_metadata(meta(kind, &[]))
                .register(name, Arc::new(name.to_uppercase()))
                .unwrap(),
        );
    }
    let delegate = |task_type: &str| -> Result<Arc<String>, String> {
        let candidates = reg.find_by_kind(task_type).map_err(|e| e.to_string())?;
        // The first by name: deterministic, and every candidate is live.
        let chosen = candidates
            .into_iter()
            .next()
            .ok_or_else(|| format!("No agents available for {task_type}"))?;
        Ok(chosen.value)
    };
    assert_eq!(*delegate("analysis").unwrap(), "DATA_ANALYST");
    drop(guards.remove(0)); // data_analyst leaves
    assert_eq!(*delegate("analysis").unwrap(), "RESEARCHER");
    assert_eq!(
        delegate("browsing").unwrap_err(),
        "No agents available for browsing"
    );
}

#[test]
fn every_registration_path_carries_metadata() {
    let reg: Registry<Arc<u32>> = builder().build();
    let m = Arc::new(meta("worker", &["x"]));
    let w = reg.with_metadata(Arc::clone(&m));
    let _a = w.register("a", Arc::new(1)).unwrap();
    let _b = w.register_detached("b", Arc::new(2)).unwrap();
    let _c = w
        .register_as("c", InstanceId::fresh(), Arc::new(3))
        .unwrap();
    let id = InstanceId::fresh();
    let _d = w.ensure_registered("d", id, Arc::new(4)).unwrap();
    let auto = w.register_auto("e", Arc::new(5)).unwrap();
    let owner = Arc::new(6);
    let weak = w.register_weak("f", &owner).unwrap();
    let owner2 = Arc::new(7);
    let _g = w
        .register_weak_as("g", InstanceId::fresh(), &owner2)
        .unwrap();
    let owner3 = Arc::new(8);
    let _h = w.ensure_registered_weak("h", id, &owner3).unwrap();
    let found = reg.find_by_capability("x").unwrap();
    assert_eq!(
        names(&found),
        ["a", "b", "c", "d", auto.name(), "f", "g", "h"]
    );
    assert!(found.iter().all(|f| Arc::ptr_eq(&f.metadata, &m)));
    drop(found); // the matches hold the weak owners' values
    assert_eq!(reg.metadata("f").unwrap().1.unwrap().kind(), Some("worker"));
    assert_eq!(
        reg.pin().get("a").unwrap().metadata().unwrap().kind(),
        Some("worker")
    );

    // A weak binding whose owner died is not found, and its entries are retracted when it is
    // purged.
    drop(owner);
    assert!(!names(&reg.find_by_capability("x").unwrap()).contains(&"f"));
    assert_eq!(reg.purge_dead(), 1);
    assert!(!weak.is_current());
    // Each: "has metadata", kind, capability; and the auto name's prefix before `-`.
    assert_eq!(reg.discovery_index_len(), 7 * 3 + 1);

    // Plain registrations carry none, and are not found.
    let _plain = reg.register("plain", Arc::new(9)).unwrap();
    assert_eq!(reg.metadata("plain").unwrap().1, None);
    assert!(reg.pin().get("plain").unwrap().metadata().is_none());
    assert_eq!(reg.find().run().unwrap().len(), 7);
}

#[test]
fn queries_compose_and_sort_by_name() {
    let reg: Registry<u32> = builder().build();
    let spec = [
        ("w-3", "worker", &["gpu", "cpu"][..], "eu"),
        ("w-1", "worker", &["cpu"][..], "us"),
        ("w-2", "worker", &["gpu"][..], "eu"),
        ("b-1", "browser", &["cpu", "web"][..], "eu"),
        ("b-2", "browser", &["web"][..], "us"),
    ];
    for (i, (name, kind, caps, region)) in spec.iter().enumerate() {
        let m = Metadata::builder()
            .kind(*kind)
            .capabilities(caps.iter().copied())
            .label("region", *region)
            .build()
            .unwrap();
        reg.with_metadata(m)
            .register_detached(name, i as u32)
            .unwrap();
    }
    let run = |q: genreg::Query<'_, u32>| names(&q.run().unwrap()).join(" ");
    assert_eq!(run(reg.find()), "b-1 b-2 w-1 w-2 w-3");
    assert_eq!(run(reg.find().kind("worker")), "w-1 w-2 w-3");
    assert_eq!(run(reg.find().capability("cpu")), "b-1 w-1 w-3");
    assert_eq!(run(reg.find().all_capabilities(["cpu", "gpu"])), "w-3");
    assert_eq!(
        run(reg.find().any_capability(["gpu", "web"])),
        "b-1 b-2 w-2 w-3"
    );
    assert_eq!(
        run(reg
            .find()
            .any_capability(["gpu", "web"])
            .label("region", "eu")),
        "b-1 w-2 w-3"
    );
    assert_eq!(run(reg.find().prefix("w-")), "w-1 w-2 w-3");
    assert_eq!(run(reg.find().prefix("w-").capability("gpu")), "w-2 w-3");
    assert_eq!(run(reg.find().prefix("w-").limit(2)), "w-1 w-2");
    assert_eq!(run(reg.find().prefix("zz")), "");
    assert_eq!(run(reg.find().kind("browser").capability("gpu")), "");
    assert_eq!(run(reg.find().any_capability(Vec::<String>::new())), "");
    assert_eq!(run(reg.find().limit(0)), "");
    assert_eq!(
        names(&reg.find_by_label("region", "us").unwrap()),
        ["b-2", "w-1"]
    );
    assert_eq!(names(&reg.find_by_prefix("b").unwrap()), ["b-1", "b-2"]);
}

#[test]
fn best_match_is_most_matches_then_load_then_name() {
    let reg: Registry<u32> = builder().build();
    for (name, caps, load) in [
        ("c", &["a", "b"][..], 5),
        ("b", &["a", "b"][..], 1),
        ("a", &["a", "b"][..], 1),
        ("d", &["a", "b", "x"][..], 0),
    ] {
        reg.with_metadata(meta("k", caps))
            .register_detached(name, load)
            .unwrap();
    }
    // Most matches.
    assert_eq!(reg.best_match(&["a", "b", "x"]).unwrap().unwrap().name, "d");
    // A tie on two: by name.
    assert_eq!(reg.best_match(&["a", "b"]).unwrap().unwrap().name, "a");
    // A tie broken by load first (the value is the load here), then by name.
    let by_load = reg.best_match_by(&["b"], |m| m.value).unwrap().unwrap();
    assert_eq!(by_load.name, "d");
    let tag = reg.tag_of("d").unwrap();
    reg.unregister_if_same("d", tag).unwrap();
    assert_eq!(
        reg.best_match_by(&["b"], |m| m.value)
            .unwrap()
            .unwrap()
            .name,
        "a"
    );
    assert!(reg.best_match(&["nothing"]).unwrap().is_none());
    assert!(reg.best_match(&[]).unwrap().is_none());
}

#[test]
fn update_metadata_is_tag_checked_and_an_event() {
    let reg: Registry<u32> = builder().events(64).build();
    let guard = reg
        .with_metadata(meta("worker", &["cpu"]))
        .register("w", 7)
        .unwrap();
    let mut watcher = reg.watch(Filter::all(), reg.revision()).unwrap();
    guard.set_metadata(meta("worker", &["gpu"])).unwrap();
    assert!(guard.is_current(), "the binding keeps its tag");
    assert!(reg.find_by_capability("cpu").unwrap().is_empty());
    let gpu = reg.find_by_capability("gpu").unwrap();
    assert_eq!((gpu[0].name.as_str(), gpu[0].value), ("w", 7));
    assert_eq!(gpu[0].tag, guard.tag());

    // A stale tag changes nothing.
    let stale = genreg::Tag::new(
        guard.tag().instance(),
        genreg::Generation::from_raw(guard.tag().generation().as_raw() + 1000),
    );
    assert!(matches!(
        reg.update_metadata("w", stale, meta("x", &[])),
        Err(Error::TagMismatch { current, .. }) if current == guard.tag()
    ));
    assert!(matches!(
        reg.update_metadata("nobody", stale, Metadata::new()),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        reg.update_metadata("bad\n", stale, Metadata::new()),
        Err(Error::InvalidName { .. })
    ));

    // An entry registered without metadata can be given some.
    let plain = reg.register("p", 1).unwrap();
    reg.update_metadata("p", plain.tag(), meta("late", &["gpu"]))
        .unwrap();
    assert_eq!(names(&reg.find_by_capability("gpu").unwrap()), ["p", "w"]);

    let events: Vec<_> = std::iter::from_fn(|| watcher.try_next()).collect();
    let kinds: Vec<_> = events
        .iter()
        .map(|e| match e.as_ref().unwrap().kind() {
            EventKind::MetadataUpdated { tag } => ("updated", *tag),
            EventKind::Registered { tag, .. } => ("registered", *tag),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("updated", guard.tag()),
            ("registered", plain.tag()),
            ("updated", plain.tag())
        ]
    );
    let first = events[0].as_ref().unwrap();
    assert!(first.metadata().unwrap().has_capability("gpu"));
}

#[test]
fn replacing_a_value_keeps_the_metadata() {
    let reg: Registry<u32> = builder().build();
    let mut g = reg
        .with_metadata(meta("worker", &["cpu"]))
        .register("w", 1)
        .unwrap();
    g.replace(2).unwrap();
    let found = reg.find_by_capability("cpu").unwrap();
    assert_eq!((found[0].value, found[0].tag), (2, g.tag()));
}

#[test]
fn snapshots_carry_metadata_through_restore() {
    let reg: Registry<u32> = builder().events(64).build();
    let tag = reg
        .with_metadata(meta("worker", &["cpu"]))
        .register_detached("w", 1)
        .unwrap();
    reg.register_detached("plain", 2).unwrap();
    let snap = reg.snapshot().unwrap();
    assert_eq!(
        snap.get("w").unwrap().metadata.as_deref(),
        Some(&meta("worker", &["cpu"]))
    );
    assert_eq!(snap.get("plain").unwrap().metadata, None);
    let target: Registry<u32> = builder().events(64).build();
    target.restore(snap).unwrap();
    let found = target.find_by_capability("cpu").unwrap();
    assert_eq!((found[0].name.as_str(), found[0].tag), ("w", tag));
    // And a snapshot taken after an update sees the update.
    reg.update_metadata("w", tag, meta("worker", &["gpu"]))
        .unwrap();
    let snap = reg.snapshot().unwrap();
    assert!(
        snap.get("w")
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .has_capability("gpu")
    );
}

#[cfg(feature = "serde")]
#[test]
fn metadata_round_trips_through_json_and_is_validated() {
    let m = Metadata::builder()
        .kind("k")
        .capabilities(["b", "a"])
        .label("region", "eu west")
        .build()
        .unwrap();
    let json = serde_json::to_string(&m).unwrap();
    let back: Metadata = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
    let bad = r#"{"kind":"has space","capabilities":[],"labels":[]}"#;
    let err = serde_json::from_str::<Metadata>(bad).unwrap_err();
    assert!(err.to_string().contains("kind"), "{err}");
}

#[test]
fn reserved_names_are_refused_in_any_case_on_every_path() {
    let reg: Registry<Arc<u32>> = builder().reserved_names(MARSYS_RESERVED).build();
    for name in ["start", "END", "User", "uSeR"] {
        let err = reg.register(name, Arc::new(1)).unwrap_err();
        let Error::Reserved { reserved, .. } = err.error() else {
            panic!("{err:?}");
        };
        assert_eq!(
            reserved.iter().collect::<Vec<_>>(),
            ["end", "start", "user"]
        );
        assert_eq!(
            err.to_string(),
            format!("name {name:?} is reserved (reserved names, in any case: end, start, user)")
        );
    }
    let owner = Arc::new(2);
    assert!(matches!(
        reg.register_weak("Start", &owner).unwrap_err().error(),
        Error::Reserved { .. }
    ));
    assert!(matches!(
        reg.with_metadata(Metadata::new())
            .register_detached("end", Arc::new(3))
            .unwrap_err()
            .error(),
        Error::Reserved { .. }
    ));
    // Names that merely contain a reserved one are fine, and so are auto names.
    reg.register_detached("user-agent", Arc::new(4)).unwrap();
    reg.register_detached("starter", Arc::new(5)).unwrap();
    assert!(reg.register_auto("user", Arc::new(6)).is_ok());
    assert_eq!(reg.reserved_names(), ["end", "start", "user"]);
    // Restoring a snapshot that holds a reserved name is refused.
    let open: Registry<Arc<u32>> = builder().events(16).build();
    open.register_detached("start", Arc::new(1)).unwrap();
    let snap = open.snapshot().unwrap();
    let strict: Registry<Arc<u32>> = builder().events(16).reserved_names(["START"]).build();
    assert!(matches!(
        strict.restore(snap),
        Err(genreg::RestoreError::Reserved { name }) if name == "start"
    ));
}

#[test]
fn bad_metadata_and_bad_queries_get_typed_errors() {
    let b = Metadata::builder;
    assert_eq!(
        b().capability("").build(),
        Err(MetadataError::Empty {
            field: genreg::discovery::Field::Capability
        })
    );
    assert!(matches!(
        b().kind("a b").build(),
        Err(MetadataError::InvalidChar { at: 1, .. })
    ));
    assert!(matches!(
        b().label("k", "v\u{7}").build(),
        Err(MetadataError::InvalidLabelValue {
            control_at: Some(1),
            ..
        })
    ));
    assert!(matches!(
        b().label("k=1", "v").build(),
        Err(MetadataError::InvalidChar { at: 1, .. })
    ));
    assert!(matches!(
        b().label("k", "1").label("k", "2").build(),
        Err(MetadataError::DuplicateLabel { key }) if key == "k"
    ));
    // The same label twice is one label; the same capability twice is one capability.
    let m = b()
        .label("k", "1")
        .label("k", "1")
        .capabilities(["a", "a"])
        .build()
        .unwrap();
    assert_eq!((m.labels().len(), m.capabilities().len()), (1, 1));
    let long = "x".repeat(MAX_IDENT_LEN + 1);
    assert!(matches!(
        b().capability(long.as_str()).build(),
        Err(MetadataError::TooLong { len, .. }) if len == MAX_IDENT_LEN + 1
    ));
    assert!(matches!(
        b().capabilities((0..=MAX_CAPABILITIES).map(|i| format!("c{i}")))
            .build(),
        Err(MetadataError::TooManyCapabilities { .. })
    ));
    let mut many = b();
    for i in 0..=MAX_LABELS {
        many = many.label(format!("k{i}"), "v");
    }
    assert!(matches!(
        many.build(),
        Err(MetadataError::TooManyLabels { .. })
    ));
    let mut big = b();
    for i in 0..30 {
        big = big.label(format!("k{i}"), "v".repeat(200));
    }
    assert!(matches!(big.build(), Err(MetadataError::TooLarge { .. })));
    for e in [
        b().capability("").build().unwrap_err(),
        b().kind("a b").build().unwrap_err(),
    ] {
        assert!(!e.to_string().is_empty());
    }

    let reg: Registry<u32> = builder().build();
    assert!(matches!(
        reg.find_by_capability("no spaces please"),
        Err(MetadataError::InvalidChar { .. })
    ));
    assert!(matches!(
        reg.find().prefix("a\u{0}").run(),
        Err(MetadataError::InvalidPrefix { .. })
    ));
    assert!(matches!(
        reg.best_match(&["ok", ""]),
        Err(MetadataError::Empty { .. })
    ));
    // The builder can start from existing metadata.
    let m = meta("k", &["a", "b"]);
    let changed = m
        .to_builder()
        .without_capability("a")
        .no_kind()
        .build()
        .unwrap();
    assert_eq!(changed.capabilities().collect::<Vec<_>>(), ["b"]);
    assert_eq!(changed.kind(), None);
}

#[test]
fn queries_race_with_churn_and_stay_exact_for_stable_bindings() {
    // Names `s-*` are stable (with capability "stable"); names `c-*` are re-registered over
    // and over, alternating between capability "left" and "right". A query never returns a
    // `c-*` binding for a capability it does not have, and always returns every `s-*`.
    let reg: Registry<u64> = builder().build();
    let stable: Vec<String> = (0..16).map(|i| format!("s-{i:02}")).collect();
    for (i, s) in stable.iter().enumerate() {
        reg.with_metadata(meta("s", &["stable", "left"]))
            .register_detached(s, i as u64)
            .unwrap();
    }
    let left = Arc::new(meta("c", &["left"]));
    let right = Arc::new(meta("c", &["right"]));
    let stop = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|s| {
        for t in 0..2u64 {
            let (reg, left, right, stop) = (&reg, &left, &right, &stop);
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let name = format!("c-{}-{}", t, i % 8);
                    // The value says which side it was registered with: 0 left, 1 right.
                    let side = (i / 8) % 2;
                    let m = if side == 0 { left } else { right };
                    if let Ok(tag) = reg
                        .with_metadata(Arc::clone(m))
                        .register_detached(&name, side)
                    {
                        if i % 3 == 0 {
                            let other = if side == 0 { right } else { left };
                            let _ = reg.update_metadata(&name, tag, Arc::clone(other));
                        }
                        let _ = reg.unregister_if_same(&name, tag);
                    }
                    i += 1;
                }
            });
        }
        // Stops the writers however this thread leaves (an assertion failing below must fail
        // the test, not leave the writers running and the scope waiting for them).
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        for _ in 0..if cfg!(miri) { 3 } else { 300 } {
            for (cap, other) in [("left", "right"), ("right", "left")] {
                let found = reg.find_by_capability(cap).unwrap();
                for m in &found {
                    assert!(m.metadata.has_capability(cap), "{m:?} returned for {cap}");
                    assert!(!m.metadata.has_capability(other));
                }
                if cap == "left" {
                    let got: Vec<&str> = found
                        .iter()
                        .filter(|m| m.name.starts_with("s-"))
                        .map(|m| m.name.as_str())
                        .collect();
                    assert_eq!(got, stable, "a stable binding was missed");
                }
            }
            let both = reg
                .find()
                .all_capabilities(["stable", "left"])
                .run()
                .unwrap();
            assert_eq!(both.len(), stable.len());
        }
    });
    // At quiescence the index holds exactly the stable entries' terms: nothing stale is left
    // behind by the racing publications and retractions.
    assert_eq!(reg.len(), stable.len());
    // Each: "has metadata", the prefix "s", the kind, two capabilities.
    assert_eq!(reg.discovery_index_len(), stable.len() * 5);
}

#[test]
fn terms_past_the_cap_are_still_found_and_the_index_stays_bounded() {
    // Every entry gets a label value of its own: far more distinct terms than the index gives
    // postings to (4,096). Those past the cap are found by reading every entry with metadata.
    let reg: Registry<u32> = builder().build();
    let n = if cfg!(miri) { 40 } else { 5000 };
    let label = |i: u32| {
        Metadata::builder()
            .kind("job")
            .label("id", i.to_string())
            .build()
            .unwrap()
    };
    for i in 0..n {
        reg.with_metadata(label(i))
            .register_detached(&format!("job{i}"), i)
            .unwrap();
    }
    for i in [0, n / 2, n - 1] {
        let found = reg.find_by_label("id", &i.to_string()).unwrap();
        assert_eq!(names(&found), [format!("job{i}").as_str()]);
    }
    assert!(reg.find_by_label("id", "none").unwrap().is_empty());
    assert_eq!(reg.find_by_kind("job").unwrap().len(), n as usize);
    // Churn with fresh label values: the index does not grow with it.
    let settled = reg.discovery_index_len();
    for i in n..2 * n {
        let tag = reg
            .with_metadata(label(i))
            .register_detached("temp", i)
            .unwrap();
        if i % 64 == 0 {
            // (A term past the cap is a scan of every entry with metadata: not every time.)
            assert_eq!(
                names(&reg.find_by_label("id", &i.to_string()).unwrap()),
                ["temp"]
            );
        }
        reg.unregister_if_same("temp", tag).unwrap();
    }
    assert_eq!(reg.discovery_index_len(), settled);
}

#[test]
fn best_match_scores_the_binding_it_returns() {
    // A stable entry always has both capabilities; others flip between both and one. Whatever
    // races, the answer has the best score there is (2), as its own metadata shows: it was
    // scored on the very binding it returns (a bug found by the orchestrator example: a
    // binding scored, then read again after an update, was returned with its new metadata).
    let reg: Registry<u32> = builder().build();
    let both = Arc::new(meta("w", &["a", "b"]));
    let one = Arc::new(meta("w", &["b"]));
    reg.with_metadata(Arc::clone(&both))
        .register_detached("stable", 0)
        .unwrap();
    let tags: Vec<_> = (0..4)
        .map(|i| {
            reg.with_metadata(Arc::clone(&both))
                .register_detached(&format!("flip-{i}"), i)
                .unwrap()
        })
        .collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            let mut k = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let i = k % tags.len();
                let m = if (k / tags.len()) % 2 == 0 {
                    &one
                } else {
                    &both
                };
                reg.update_metadata(&format!("flip-{i}"), tags[i], Arc::clone(m))
                    .unwrap();
                k += 1;
            }
        });
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        for _ in 0..if cfg!(miri) { 3 } else { 20_000 } {
            let best = reg.best_match(&["a", "b"]).unwrap().unwrap();
            assert!(best.metadata.has_capability("a"), "{best:?}");
            assert!(best.metadata.has_capability("b"), "{best:?}");
        }
    });
}
