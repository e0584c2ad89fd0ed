#!/usr/bin/env bash
# Stage "test": THE test command, exactly as the README gives it. Unit tests, integration tests
# (api, tags, model/proptest, stress, fuzz-corpus replay) and doctests, in release mode.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
stage_start test
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"

step "cargo test --release --features serde,tokio" cargo test --release --features serde,tokio

# The README's first command, shortened to one second: the example asserts its own invariants
# (B survives every late destructor, versions never go back, nothing leaks) and panics otherwise.
step "cargo run --release --example orchestrator -- 1" cargo run --release --example orchestrator -- 1

# MARSYS's save_state / load_state through JSON (the demo's `json` feature: genreg's serde).
step "cargo run --release -p genreg-demo --example persistence --features json" \
    cargo run --release -p genreg-demo --example persistence --features json
