//! Replays the checked-in fuzz corpus (`fuzz/corpus/{ops,concurrent,snapshot}`) on the stable toolchain,
//! through the same harness the fuzz targets use (`tests/support/ops.rs`), decoding each file
//! exactly as libfuzzer-sys does (`Unstructured::new(data)` + `arbitrary_take_rest`). So plain
//! `cargo test` covers every input the fuzzers found interesting, and every crash they ever
//! found (each one is kept in the corpus as a regression input).

#[path = "support/ops.rs"]
mod ops;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use ops::{ConcurrentInput, Config, Op, decode, run_concurrent, run_sequential};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// Runs `f` on every file of the corpus and reports every file that fails, by name.
fn replay(target: &str, f: impl Fn(&[u8])) {
    let files = corpus(target);
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap();
        if catch_unwind(AssertUnwindSafe(|| f(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
    println!("{target}: replayed {} inputs", files.len());
}

#[test]
fn replay_ops_corpus() {
    replay("ops", |data| {
        if let Some(ops) = decode::<Vec<Op>>(data) {
            run_sequential(&ops, Config::default());
            // And bounded, as the fuzz target runs a quarter of its inputs.
            let bounded = Config {
                max_entries: Some(2),
                ..Config::default()
            };
            run_sequential(&ops, bounded);
            // And removing entries critical for a tick, as a fifth of its inputs do.
            let critical = Config {
                critical_after: Some(1),
                ..Config::default()
            };
            run_sequential(&ops, critical);
        }
    });
}

#[test]
fn replay_concurrent_corpus() {
    replay("concurrent", |data| {
        if let Some(input) = decode::<ConcurrentInput>(data) {
            // The same ops sequentially against the model, then on real threads.
            run_sequential(&input.ops, Config::default());
            run_concurrent(&input, Config::default());
        }
    });
}

/// The snapshot decoder's corpus: each file read as a JSON snapshot and, when it parses,
/// restored (as `fuzz/fuzz_targets/snapshot.rs` does); nothing may panic.
#[cfg(feature = "serde")]
#[test]
fn replay_snapshot_corpus() {
    replay("snapshot", |data| {
        if let Ok(snapshot) = serde_json::from_slice::<genreg::Snapshot<String>>(data) {
            let registry: genreg::Registry<String> = genreg::Registry::builder().events(64).build();
            let expected = snapshot.len();
            let described = snapshot
                .entries()
                .iter()
                .filter(|e| e.metadata.is_some())
                .count();
            if let Ok(n) = registry.restore(snapshot) {
                assert_eq!(n, expected);
                assert_eq!(registry.len(), n);
                // Entries restored with metadata are found by discovery, and only they.
                assert_eq!(
                    registry.find().run().expect("no condition").len(),
                    described
                );
            }
        }
    });
}
