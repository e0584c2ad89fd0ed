//! Differential fuzzing: a sequence of operations applied to the registry and to a sequential
//! model (`tests/support/ops.rs`), compared after every step. Build and run: `ci/fuzz.sh`.
//!
//! The registry gets its own epoch collector (`Config::default()`): dropping it at the end of
//! each input frees every retired node, so libFuzzer's per-input leak check stays quiet (and
//! cheap) unless something really leaks. With the global collector, deferred frees outlive the
//! input and libFuzzer runs a full LeakSanitizer scan after nearly every one (~5x slower).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/ops.rs"]
mod ops;

fuzz_target!(|ops: Vec<ops::Op>| {
    // A quarter of the inputs run bounded to two bindings (`Builder::max_entries`), a fifth
    // remove an entry critical for a tick (`Builder::remove_critical_after`).
    let cfg = ops::Config {
        max_entries: (ops.len() % 4 == 1).then_some(2),
        critical_after: (ops.len() % 5 == 2).then_some(1),
        ..ops::Config::default()
    };
    ops::run_sequential(&ops, cfg);
});
