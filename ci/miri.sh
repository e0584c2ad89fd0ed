#!/usr/bin/env bash
# Stage "miri": the library's unit tests and the api, tags, model, stress and watch suites (the stress tests small enough for Miri) under Miri, which
# reports undefined behaviour, use-after-free, data races and leaks on the paths it executes.
#
#   bash ci/miri.sh                   # what CI runs
#   bash ci/miri.sh --test api        # a narrower selection (arguments replace the default list)
#
# Flags: crossbeam-epoch 0.9.21 itself trips Stacked Borrows and does not support
# strict provenance, so Miri runs with Tree Borrows and permissive provenance. PROPTEST_CASES=4
# keeps the property tests to a few cases (Miri is ~1000x slower than native). cargo-miri builds
# into target/miri, apart from the normal build.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
stage_start miri
require_nightly

add_components "$NIGHTLY" miri rust-src
step "miri sysroot" cargo "+$NIGHTLY" miri setup ||
    die "'cargo miri setup' failed: the sysroot for Miri could not be built"

if [ "$#" -gt 0 ]; then
    selection=("$@")
else
    selection=(--lib --test api --test tags --test model --test stress --test watch --test discovery --test capacity
        --test liveness --test pool)
fi
step "miri test ${selection[*]}" env \
    MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-permissive-provenance" \
    PROPTEST_CASES=4 \
    cargo "+$NIGHTLY" miri test "${selection[@]}"
