#!/usr/bin/env bash
# Stage "tsan": the stress tests and the read-path tests under ThreadSanitizer, three times.
#
#   bash ci/tsan.sh                   # what CI runs: --test stress --test read, 3 runs
#   TSAN_RUNS=10 bash ci/tsan.sh      # more runs
#   bash ci/tsan.sh --test api        # another selection (arguments replace --test stress)
#
# Why three runs: an eager free (a node freed while a reader may still hold it) shows up as a
# race only when the free and the read happen to overlap; in trials it showed in about half the runs.
#
# crossbeam-epoch and TSan: TSan does not understand standalone memory fences, and the epoch
# protocol relies on them. crossbeam-epoch 0.9.21 handles this itself: its build script sees
# `-Zsanitizer=thread` (CARGO_CFG_SANITIZE) and sets `crossbeam_sanitize_thread`, which replaces
# each fence with acquire loads that TSan does model (see crossbeam-epoch's internal.rs,
# `try_advance`). So no suppressions file is used, and none may be added for genreg's code: a
# broad `race:crossbeam_epoch` suppression would also hide genuine use-after-free reports, whose
# freeing stack always runs through crossbeam-epoch's deferred-function machinery.
#
# `--cfg crossbeam_sanitize` (what crossbeam's own sanitizer CI uses) shrinks crossbeam-epoch's
# garbage bags from 64 objects to 4 and makes every collection drain the whole queue: nodes are
# freed much sooner after removal, so an eager free overlaps a read far more often.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
stage_start tsan
require_nightly

add_components "$NIGHTLY" rust-src
target="$(host_triple "$NIGHTLY")"
case "$target" in
    x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu) ;;
    *) die "ThreadSanitizer is run on x86_64/aarch64 Linux only (host is '$target')" ;;
esac

if [ "$#" -gt 0 ]; then
    selection=("$@")
else
    selection=(--test stress --test read)
fi
runs="${TSAN_RUNS:-3}"

# The memory test's default 10M register/unregister cycles measure boundedness, which the plain
# `cargo test --release` stage already does; under TSan (5-15x slower) they took 126 s per run.
# A race needs an overlap, not a long run: 200k cycles, three runs.
export GENREG_STRESS_CYCLES="${GENREG_STRESS_CYCLES:-200000}"
export RUSTFLAGS="-Zsanitizer=thread --cfg crossbeam_sanitize"
export TSAN_OPTIONS="halt_on_error=1"
# Line tables make TSan reports point at source lines; they do not change the optimised code.
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
cargo_tsan=(cargo "+$NIGHTLY" test -Zbuild-std --target "$target" --release --target-dir target/tsan)

step "build (std rebuilt with TSan)" "${cargo_tsan[@]}" "${selection[@]}" --no-run
for i in $(seq 1 "$runs"); do
    step "run $i/$runs" "${cargo_tsan[@]}" "${selection[@]}" ||
        die "ThreadSanitizer run $i/$runs failed: read the 'WARNING: ThreadSanitizer' report above"
done
