#!/usr/bin/env bash
# Stage "test": THE test command the README gives (`bash ci/test.sh`). Unit tests, integration
# tests (api, tags, model/proptest, stress, fuzz-corpus replay) and doctests of genreg, in
# release mode; the examples; then the etcd backend's tests against real etcd servers they
# start themselves (etcd and protoc are installed first if missing: see ensure_system_deps).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
stage_start test
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"
ensure_system_deps

step "cargo test --release --features serde,tokio" cargo test --release --features serde,tokio

# The README's first command, shortened to one second: the example asserts its own invariants
# (B survives every late destructor, versions never go back, nothing leaks) and panics otherwise.
step "cargo run --release --example orchestrator -- 1" cargo run --release --example orchestrator -- 1

# MARSYS's save_state / load_state through JSON (the demo's `json` feature: genreg's serde).
step "cargo run --release -p genreg-demo --example persistence --features json" \
    cargo run --release -p genreg-demo --example persistence --features json

# The etcd backend (genreg-etcd): its tests start single-member etcd servers and a 3-member
# cluster on free loopback ports (never 2379), kill its leader, let leases expire; then the
# distributed example (three processes sharing one registry through an etcd it starts).
step "cargo test --release -p genreg-etcd" cargo test --release -p genreg-etcd
step "cargo run --release -p genreg-etcd --example distributed" \
    cargo run --release -p genreg-etcd --example distributed
