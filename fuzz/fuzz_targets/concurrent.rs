//! Concurrent fuzzing: an operation sequence dealt to 2-4 threads on one registry, every result
//! logged, then checked for consistency (`tests/support/ops.rs`, `run_concurrent`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/ops.rs"]
mod ops;

fuzz_target!(|input: ops::ConcurrentInput| {
    ops::run_concurrent(&input, ops::Config::default());
});
