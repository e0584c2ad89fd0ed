//! The snapshot decoder: arbitrary bytes read as a JSON `Snapshot<String>` (what an
//! orchestrator's `load_state` reads back) and, when they parse, restored into an empty
//! registry. Corrupt, truncated or hostile input must give an error (serde's, or a typed
//! `RestoreError`), never a panic; a restore that succeeds must bind exactly the snapshot's
//! names with exactly its tags and metadata, and move the counters past them.
#![no_main]

use genreg::{Registry, RestoreError, Snapshot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(snapshot) = serde_json::from_slice::<Snapshot<String>>(data) else {
        return;
    };
    let registry: Registry<String> = Registry::builder()
        .collector(genreg::epoch::Collector::new())
        .events(64)
        .build();
    let expected: Vec<(String, genreg::Tag)> = snapshot
        .entries()
        .iter()
        .map(|e| (e.name.clone(), e.tag))
        .collect();
    // Metadata that decoded was validated by the decoder; it is restored as it was.
    let metadata: Vec<Option<genreg::Metadata>> = snapshot
        .entries()
        .iter()
        .map(|e| e.metadata.as_deref().cloned())
        .collect();
    let revision = snapshot.revision();
    match registry.restore(snapshot) {
        Ok(n) => {
            assert_eq!(n, expected.len());
            for ((name, tag), meta) in expected.iter().zip(&metadata) {
                let (t, m) = registry.metadata(name).expect("restored");
                assert_eq!(t, *tag, "{name:?}");
                assert_eq!(m.as_deref(), meta.as_ref(), "{name:?}");
            }
            // Discovery finds exactly the entries restored with metadata.
            let found = registry.find().run().expect("no condition").len();
            assert_eq!(found, metadata.iter().flatten().count());
            assert!(registry.revision() >= revision);
            // A fresh registration mints a generation past every restored one.
            if let Ok(tag) = registry.register_detached("fuzz-fresh-name", String::new()) {
                let max = expected.iter().map(|(_, t)| t.generation()).max();
                assert!(
                    max.is_none_or(|m| tag.generation() > m),
                    "{tag:?} vs {max:?}"
                );
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(
                registry.is_empty(),
                "a refused restore bound something: {e}"
            );
            let _: RestoreError = e;
        }
    }
});
