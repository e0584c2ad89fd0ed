#!/usr/bin/env bash
# Stage "miri": the library's unit tests and the api, tags, model, stress, watch, discovery,
# capacity, liveness, pool and read suites (the stress tests small enough for Miri) under Miri, which
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

export MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-permissive-provenance" PROPTEST_CASES=4

if [ "$#" -gt 0 ]; then
    step "miri test $*" cargo "+$NIGHTLY" miri test "$@"
    exit
fi

# Miri interprets one thread at a time, so one `cargo miri test` keeps one core busy. The
# machine has two: the model suite (about half of the interpreted time) runs beside all the
# others, each group in a cargo of its own with a target directory of its own (cargo holds its
# build directory's lock until its tests end, so two cargos on one directory run one after the
# other), logs printed when both are done.
group_a=(--test model)
group_b=(--lib --test api --test tags --test stress --test watch --test discovery --test capacity
    --test liveness --test pool)
logs="target/miri-logs"
mkdir -p "$logs"
t0=$SECONDS
printf '\n--- miri test, two groups at once (logs below when both are done)\n'
# The read suite runs after the model suite, in its cargo: it reads through crossbeam-epoch's
# global collector (genreg's own thread-local handle is the path it checks), whose queue holds
# pointers as integers, so Miri cannot see them reachable from the static and calls the bags that
# exiting threads push there leaks. It runs with leaks ignored; every other check stays on (the
# other suites use collectors of their own and keep the leak check).
{
    CARGO_TARGET_DIR=target/miri-model cargo "+$NIGHTLY" miri test "${group_a[@]}" &&
        CARGO_TARGET_DIR=target/miri-model MIRIFLAGS="$MIRIFLAGS -Zmiri-ignore-leaks" \
            cargo "+$NIGHTLY" miri test --test read
} >"$logs/a.log" 2>&1 &
pid_a=$!
cargo "+$NIGHTLY" miri test "${group_b[@]}" >"$logs/b.log" 2>&1 &
pid_b=$!
rc_a=0 rc_b=0
wait "$pid_a" || rc_a=$?
wait "$pid_b" || rc_b=$?
printf '\n--- miri test %s, then --test read (exit %d)\n' "${group_a[*]}" "$rc_a"
cat "$logs/a.log"
printf '\n--- miri test %s (exit %d)\n' "${group_b[*]}" "$rc_b"
cat "$logs/b.log"
printf -- '--- both groups done in %d s\n' $((SECONDS - t0))
[ "$rc_a" -eq 0 ] && [ "$rc_b" -eq 0 ] || die "Miri found a problem (see the group logs above)"
