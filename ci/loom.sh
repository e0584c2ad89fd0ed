#!/usr/bin/env bash
# Stage "loom": the model-checking suites (tests/loom.rs through the public API,
# tests/loom_events.rs, tests/loom_discovery.rs and tests/loom_capacity.rs for the event log,
# the discovery index and the bound on live bindings,
# and src/raw/loom_models.rs inside the crate), every model exhaustively explored up to its
# preemption bound.
#
#   bash ci/loom.sh                          # what CI runs: every model
#   bash ci/loom.sh register_race            # arguments go to the test binary (a name filter)
#
# Flags: BOTH `--cfg loom` (the crate's atomics become loom's) and
# `--cfg crossbeam_loom` (crossbeam-epoch's pins and frees become visible to loom); without the
# second every model would pass after one or two iterations while testing nothing (the crate
# refuses to build that way). Debug assertions stay on in the release build. Each model sets
# its own preemption bound (2, or 3 for the small key models); LOOM_MAX_PREEMPTIONS=2 is the
# documented default for anything that does not. LOOM_MAX_DURATION / LOOM_MAX_PERMUTATIONS
# would stop exploration silently with a pass, so they are cleared here (and the models ignore
# them too). Builds into target/loom, apart from the normal build (~85 s to compile).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
stage_start loom
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"

unset LOOM_MAX_DURATION LOOM_MAX_PERMUTATIONS LOOM_CHECKPOINT_FILE
export RUSTFLAGS="--cfg loom --cfg crossbeam_loom -C debug-assertions"
export LOOM_MAX_PREEMPTIONS=2

step "build loom models" cargo test --release --test loom --test loom_events \
    --test loom_discovery --test loom_capacity --test loom_liveness --test loom_pool --lib --target-dir target/loom \
    --no-run
# --nocapture: each model prints its bound, iteration count and time.
step "run loom models (public API, tests/loom.rs)" \
    cargo test --release --test loom --target-dir target/loom -- --nocapture "$@"
# The event log's publication protocol (tests/loom_events.rs): two writers on one name against
# a watcher, a writer against subscribe, a slow watcher at the history bound.
step "run loom models (events, tests/loom_events.rs)" \
    cargo test --release --test loom_events --target-dir target/loom -- --nocapture "$@"
# The discovery index's publish/retract/tidy protocol (tests/loom_discovery.rs): a registration
# with metadata against a removal, a query against a stale entry, an update against a removal.
step "run loom models (discovery index, tests/loom_discovery.rs)" \
    cargo test --release --test loom_discovery --target-dir target/loom -- --nocapture "$@"
# The bound on live bindings (tests/loom_capacity.rs): two registrations racing for the last
# place; a removal and a registration racing another registration.
step "run loom models (capacity, tests/loom_capacity.rs)" \
    cargo test --release --test loom_capacity --target-dir target/loom -- --nocapture "$@"
# The raw core's models (src/raw/loom_models.rs): protocols whose state the public API cannot
# set up, e.g. the next table's room check against copies, with three threads (~4 min).
step "run loom models (liveness, tests/loom_liveness.rs)" \
    cargo test --release --test loom_liveness --target-dir target/loom -- --nocapture "$@"
# Pools (tests/loom_pool.rs): acquirers racing for a member's last slot, a release racing an
# async waiter's registration, a waiter cancelled while woken.
step "run loom models (pools, tests/loom_pool.rs)" \
    cargo test --release --test loom_pool --target-dir target/loom -- --nocapture "$@"
step "run loom models (raw core, src/raw/loom_models.rs)" \
    cargo test --release --lib --target-dir target/loom -- --nocapture loom_models "$@"
