//! The loom suites' model runner (`tests/loom_events.rs`, `tests/loom_discovery.rs`,
//! `tests/loom_capacity.rs`), included with `#[path]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Runs a model exhaustively to `bound` preemptions (plus `GENREG_LOOM_EXTRA_PREEMPTIONS`),
/// ignoring loom's duration and permutation limits (which would stop exploration with a pass),
/// and prints its bound, iterations and time.
pub fn check(model: &str, bound: usize, f: impl Fn() + Send + Sync + 'static) {
    let bound = bound
        + std::env::var("GENREG_LOOM_EXTRA_PREEMPTIONS")
            .map(|v| v.parse::<usize>().expect("a number"))
            .unwrap_or(0);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(bound);
    builder.max_branches = 100_000;
    builder.max_duration = None;
    builder.max_permutations = None;
    let iterations = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&iterations);
    let started = Instant::now();
    builder.check(move || {
        count.fetch_add(1, Ordering::Relaxed);
        f();
    });
    let iterations = iterations.load(Ordering::Relaxed);
    println!(
        "loom model {model}: preemption bound {bound}, {iterations} iterations, {:.1?}",
        started.elapsed()
    );
    assert!(iterations > 1, "{model}: a single interleaving explored");
}
