#!/usr/bin/env bash
# Mutation check of the verification layers (not part of CI; the results are in MUTANTS.md).
#
# Builds the crate with one of its planted bugs switched on (`--cfg genreg_mutant="NAME"`, see
# `grep -rn genreg_mutant src/`), runs one verification layer against it and reports whether
# the layer caught the bug and how long that took: wall time from the start of the run (the
# build is done first and not counted) to the first sign of failure.
#
#   bash ci/mutants.sh                        # every mutant x every layer (about an hour here)
#   bash ci/mutants.sh no_generation          # one mutant, every layer
#   bash ci/mutants.sh loser_frees loom       # one cell
#   bash ci/mutants.sh all fuzz               # one layer or group, every mutant
#   bash ci/mutants.sh none                   # the control: no mutant, every layer must pass
#   bash ci/mutants.sh loser_frees loom-each  # each loom model on its own: which ones catch it
#
# MUTANT: cas_unregister | no_generation | loser_frees | reserve_race | rev_after_cas |
#         index_unchecked | query_unchecked | admit_race | expiry_unclaimed | lease_unchecked |
#         read_unchecked | probe_skip | blind_register (genreg-etcd) | all (those thirteen) |
#         none (control)
# LAYER (limits in parentheses; each runs what the named ci/ script runs, plus the cfg):
#   proptest     cargo test --release --test model -- --nocapture              (120 s)
#   api          cargo test --release --test api                               (120 s)
#   stress       cargo test --release --test stress                            (120 s)
#   capacity     cargo test --release --test capacity                          (120 s)
#   liveness     cargo test --release --test liveness                          (120 s)
#   pool         cargo test --release --test pool                              (120 s)
#   read         cargo test --release --test read                              (120 s)
#   etcd         cargo test --release -p genreg-etcd (real etcd servers: needs etcd on PATH)
#                                                                               (240 s)
#   discovery    cargo test --release --test discovery (ci/test.sh adds --features serde,
#                which only adds a JSON round trip; the test group builds without it)  (120 s)
#   unit, tags, replay   the rest of ci/test.sh's `cargo test --release`:
#                --lib, --test tags, --test fuzz_replay (the checked-in corpora)  (120 s)
#   loom         the suites as ci/loom.sh runs them, in cargo's order (the raw core's models
#                in --lib, tests/loom.rs, tests/loom_capacity.rs, tests/loom_discovery.rs,
#                tests/loom_events.rs, tests/loom_liveness.rs, tests/loom_pool.rs),
#                -- --nocapture (about 245 s without a mutant)                  (480 s)
#                A failing model aborts the loom binary, so only the first one is reported;
#                GENREG_MUTANTS_LOOM_FILTER=NAME runs only the matching models.
#   miri-lib, miri-api, miri-tags, miri-model, miri-stress
#                cargo +nightly miri test --lib / --test api / ..., with ci/miri.sh's
#                MIRIFLAGS and PROPTEST_CASES=4, one cell per test binary     (300 s each)
#   tsan         one run of --test stress under ThreadSanitizer with ci/tsan.sh's flags,
#                options and GENREG_STRESS_CYCLES=200000                       (300 s)
#   fuzz-ops, fuzz-concurrent              ci/fuzz.sh's libFuzzer binaries and options,
#                60 s from the checked-in corpus (fuzz/corpus/TARGET, read only)  (120 s)
#   fuzz-ops-empty, fuzz-concurrent-empty  the same from an empty corpus         (120 s)
# Groups: all (every layer above), test (proptest api stress capacity liveness pool read discovery unit
# tags replay), miri
#   (the five miri cells), fuzz (the four fuzz cells). Not in `all`: loom-each (every model of
#   tests/loom.rs, loom_events.rs, loom_discovery.rs, loom_capacity.rs, loom_liveness.rs and
#   loom_pool.rs as
#   its own cell,
#   `loom:NAME`).
# Limits: GENREG_MUTANTS_T_TEST, _T_LOOM, _T_MIRI, _T_TSAN, _FUZZ_SECONDS (and _T_BUILD).
# Repeats: GENREG_MUTANTS_REPEAT=N runs each cell N times (cells `LAYER#1` ... `LAYER#N`), to
# measure how often a layer that depends on a schedule or a random seed catches a mutant.
#
# Staying out of the way:
# - Everything runs on a snapshot of the working tree, target/mutants/tree, taken at the
#   start: a failing proptest writes its regression seed there, not into tests/; libFuzzer
#   writes new inputs and crash artifacts under target/mutants/fuzz; edits made meanwhile in
#   the real tree do not change a run half-way. The snapshot's commit and content hash are
#   printed and recorded with every result.
# - Each mutant and tool has its own target directory, target/mutant-NAME-GROUP (GROUP: test,
#   loom, miri, tsan, fuzz; the cells of a group share one build with the same flags).
# - One invocation at a time (a lock); cells run one after another (the machine has 2 cores).
#
# Output: a line per cell, also appended to target/mutants/results.tsv; the whole output of
# each run, every line stamped with the seconds since the run started, in target/mutants/logs.
# "caught": the run failed. Its time is that of the first line that shows it: a test FAILED, a
# crash (cargo's "signal: N"), a ThreadSanitizer/AddressSanitizer/Miri/libFuzzer report,
# glibc's heap-corruption abort, or for proptest and loom (run with --nocapture; none of their
# tests panics on purpose) the first panic, i.e. before proptest starts shrinking. "not
# caught": the run passed. "timeout": stopped at its limit with no failure seen (for a run
# that normally ends well inside its limit, that can also mean a hang).
#
# Exit status: 0 if every mutant run was caught by at least one layer; 1 if a mutant survived
# every layer run; 3 if a build failed; 2 if the control (`none`) failed a layer.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/mutants"
TREE="$OUT/tree"
LOGS="$OUT/logs"
NIGHTLY="${GENREG_NIGHTLY:-nightly}"

T_TEST="${GENREG_MUTANTS_T_TEST:-120}"
T_LOOM="${GENREG_MUTANTS_T_LOOM:-480}"
T_MIRI="${GENREG_MUTANTS_T_MIRI:-300}"
T_TSAN="${GENREG_MUTANTS_T_TSAN:-300}"
FUZZ_SECONDS="${GENREG_MUTANTS_FUZZ_SECONDS:-60}"
T_FUZZ=$((FUZZ_SECONDS + 60))
T_BUILD="${GENREG_MUTANTS_T_BUILD:-2400}"
REPEAT="${GENREG_MUTANTS_REPEAT:-1}"
RUN="" # "#k" while repeating

ALL_MUTANTS=(cas_unregister no_generation loser_frees reserve_race rev_after_cas index_unchecked
    query_unchecked admit_race expiry_unclaimed lease_unchecked read_unchecked probe_skip
    blind_register)
TEST_LAYERS=(proptest api stress capacity liveness pool read discovery unit tags replay)
MIRI_LAYERS=(miri-lib miri-api miri-tags miri-model miri-stress)
FUZZ_LAYERS=(fuzz-ops fuzz-ops-empty fuzz-concurrent fuzz-concurrent-empty)
ALL_LAYERS=("${TEST_LAYERS[@]}" etcd loom "${MIRI_LAYERS[@]}" tsan "${FUZZ_LAYERS[@]}")

die() {
    printf 'mutants: %s\n' "$*" >&2
    exit 3
}

usage() {
    sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------
case "${1:-all}" in
    -h | --help) usage 0 ;;
    all) mutants=("${ALL_MUTANTS[@]}") ;;
    none | cas_unregister | no_generation | loser_frees | reserve_race | rev_after_cas | \
        index_unchecked | query_unchecked | admit_race | expiry_unclaimed | lease_unchecked | \
        read_unchecked | probe_skip | blind_register) \
        mutants=("$1") ;;
    *) printf 'unknown mutant %q\n\n' "$1" >&2 && usage 3 ;;
esac
case "${2:-all}" in
    all) layers=("${ALL_LAYERS[@]}") ;;
    test) layers=("${TEST_LAYERS[@]}") ;;
    miri) layers=("${MIRI_LAYERS[@]}") ;;
    fuzz) layers=("${FUZZ_LAYERS[@]}") ;;
    loom | loom-each | tsan | etcd) layers=("$2") ;;
    *)
        if printf '%s\n' "${ALL_LAYERS[@]}" | grep -qxF -- "$2"; then
            layers=("$2")
        else
            printf 'unknown layer %q\n\n' "$2" >&2 && usage 3
        fi
        ;;
esac

mkdir -p "$OUT" "$LOGS"
exec 9>"$OUT/lock"
flock -n 9 || die "another ci/mutants.sh is running (lock $OUT/lock)"

command -v cargo >/dev/null || die "cargo is not on PATH"
command -v timeout >/dev/null || die "timeout (coreutils) is not on PATH"
if printf '%s\n' "${layers[@]}" | grep -qE '^(miri|tsan|fuzz)'; then
    rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1 ||
        die "toolchain '$NIGHTLY' is not installed (GENREG_NIGHTLY=... to pick one)"
fi
TRIPLE="$(rustc "+$NIGHTLY" -vV 2>/dev/null | sed -n 's/^host: //p')"

# ---------------------------------------------------------------------------------------------
# The snapshot
# ---------------------------------------------------------------------------------------------
# Extracted with fresh modification times (-m): cargo decides by mtime, and a file restored
# with an old mtime would look older than a build made from an earlier snapshot.
rm -rf "$TREE"
mkdir -p "$TREE"
tar -C "$ROOT" -cf - --exclude=./target --exclude=./.git --exclude=./scratch-corpus \
    --exclude=./fuzz/artifacts --exclude=./fuzz/target --exclude=./fuzz/coverage . |
    tar -C "$TREE" -xmf - || die "could not snapshot the tree into $TREE"
cd "$TREE"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$ROOT" status --porcelain --untracked-files=no -- src tests fuzz Cargo.toml \
    Cargo.lock 2>/dev/null | wc -l)"
content="$(find src tests fuzz/fuzz_targets fuzz/Cargo.toml Cargo.toml Cargo.lock -type f \
    ! -name '*.proptest-regressions' -print0 | sort -z | xargs -0 sha256sum | sha256sum |
    cut -c1-12)"
SNAPSHOT="$commit+$dirty/$content" # commit, uncommitted changed files, hash of the sources

# ---------------------------------------------------------------------------------------------
# Builds
# ---------------------------------------------------------------------------------------------
FUZZ_FLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions \
-Zsanitizer=address"

group_of() {
    case "$1" in
        proptest | api | stress | capacity | liveness | pool | read | discovery | unit | tags | replay) echo test ;;
        miri-*) echo miri ;;
        fuzz-*) echo fuzz ;;
        loom*) echo loom ;;
        *) echo "$1" ;;
    esac
}

target_dir() { echo "$ROOT/target/mutant-$1-$2"; } # MUTANT GROUP

# rustflags MUTANT GROUP: the group's RUSTFLAGS (those of its ci/ script), plus the cfg.
rustflags() {
    local cfg=""
    [ "$1" = none ] || cfg="--cfg genreg_mutant=\"$1\""
    case "$2" in
        test | miri | etcd) echo "$cfg" ;;
        loom) echo "--cfg loom --cfg crossbeam_loom -C debug-assertions $cfg" ;;
        tsan) echo "-Zsanitizer=thread --cfg crossbeam_sanitize $cfg" ;;
        fuzz) echo "$FUZZ_FLAGS $cfg" ;;
    esac
}

# group_env MUTANT GROUP: the environment of the group's build and runs, one VAR=value a line.
group_env() {
    printf '%s\n' "RUSTFLAGS=$(rustflags "$1" "$2")" CARGO_INCREMENTAL=0
    case "$2" in
        loom) printf '%s\n' LOOM_MAX_PREEMPTIONS=2 ;;
        # cargo-miri picks its own directory below CARGO_TARGET_DIR (…/miri).
        miri) printf '%s\n' "CARGO_TARGET_DIR=$(target_dir "$1" "$2")" PROPTEST_CASES=4 \
            "MIRIFLAGS=-Zmiri-tree-borrows -Zmiri-permissive-provenance" ;;
        tsan) printf '%s\n' GENREG_STRESS_CYCLES=200000 TSAN_OPTIONS=halt_on_error=1 \
            CARGO_PROFILE_RELEASE_DEBUG=line-tables-only ;;
    esac
}

build_cmd() { # MUTANT GROUP
    local td
    td="$(target_dir "$1" "$2")"
    case "$2" in
        test) echo cargo test --release --lib --test model --test api --test stress \
            --test capacity --test liveness --test pool --test read --test discovery --test tags --test fuzz_replay --no-run -v \
            --target-dir "$td" ;;
        loom) echo cargo test --release --test loom --test loom_events --test loom_discovery --test loom_capacity --test loom_liveness --test loom_pool --lib \
            --no-run -v --target-dir "$td" ;;
        etcd) echo cargo test --release -p genreg-etcd --no-run -v --target-dir "$td" ;;
        miri) echo cargo "+$NIGHTLY" miri test --lib --test api --test tags --test model \
            --test stress --no-run -v ;;
        tsan) echo cargo "+$NIGHTLY" test -Zbuild-std --target "$TRIPLE" --release --test stress \
            --no-run -v --target-dir "$td" ;;
        fuzz) echo cargo "+$NIGHTLY" build --release --manifest-path fuzz/Cargo.toml \
            --target "$TRIPLE" --bin ops --bin concurrent -v --target-dir "$td" ;;
    esac
}

declare -A BUILT # "MUTANT GROUP" -> ok | failed

# build MUTANT GROUP: once per invocation; checks that the cfg really reached genreg's rustc.
build() {
    local key="$1 $2" log="$LOGS/$1-$2.build.log"
    if [ -n "${BUILT[$key]:-}" ]; then
        [ "${BUILT[$key]}" = ok ]
        return
    fi
    local -a envs cmd
    mapfile -t envs < <(group_env "$1" "$2")
    read -r -a cmd <<<"$(build_cmd "$1" "$2")"
    printf '  build %-14s %-6s ' "$1" "$2"
    local t0=$SECONDS rc=0
    printf '# %s  snapshot %s\n# env: %s\n# cmd: %s\n' "$(date -Is)" "$SNAPSHOT" "${envs[*]}" \
        "${cmd[*]}" >"$log"
    if [ "$2" = miri ]; then
        env "${envs[@]}" cargo "+$NIGHTLY" miri setup >>"$log" 2>&1 || rc=$?
    fi
    [ "$rc" -eq 0 ] && { env "${envs[@]}" timeout "$T_BUILD" "${cmd[@]}" >>"$log" 2>&1 || rc=$?; }
    if [ "$rc" -ne 0 ]; then
        printf 'FAILED (exit %d, %d s): see %s\n' "$rc" $((SECONDS - t0)) "$log"
        BUILT[$key]=failed
        return 1
    fi
    # genreg is always recompiled (fresh mtimes), so its rustc line is in the log: the cfg
    # must be on it (and must not be, for the control).
    local line
    line="$(grep -E -- '--crate-name genreg ' "$log" | head -n 1)"
    if [ -z "$line" ]; then
        printf 'FAILED: genreg was not recompiled, cannot check the cfg (see %s)\n' "$log"
        BUILT[$key]=failed
        return 1
    elif [ "$1" != none ] && ! grep -qF "genreg_mutant=\"$1\"" <<<"$line"; then
        printf 'FAILED: genreg was compiled without the cfg (see %s)\n' "$log"
        BUILT[$key]=failed
        return 1
    elif [ "$1" = none ] && grep -qF 'genreg_mutant="' <<<"$line"; then
        printf 'FAILED: the control was compiled with a mutant cfg (see %s)\n' "$log"
        BUILT[$key]=failed
        return 1
    fi
    printf 'ok (%d s)\n' $((SECONDS - t0))
    BUILT[$key]=ok
}

# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
# Lines that show a failure. Miri's "error: Undefined Behavior" can share a line with libtest's
# "test NAME ... ", hence no anchor.
FAIL_RE='^test .* \.\.\. FAILED|\(signal: [0-9]+|WARNING: ThreadSanitizer|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|error: (Undefined Behavior|memory leaked|deadlock|abnormal termination|unsupported operation|the main thread terminated)|double free or corruption|free\(\): |corrupted (size|double)|malloc\(\): '
PANIC_RE='panicked at'
# Generic lines, only used when nothing more specific was seen.
FALLBACK_RE='^error: |process didn.t exit successfully'

# stamp T0_US FIRST_FILE REGEX: prefixes each line with the seconds since T0; records the
# first line matching REGEX (seconds<TAB>line) in FIRST_FILE, and the first generic error
# line in FIRST_FILE.fallback.
stamp() {
    local t0=$1 first=$2 re=$3 line now ms
    while IFS= read -r line || [ -n "$line" ]; do
        now=${EPOCHREALTIME/./}
        ms=$(((now - t0) / 1000))
        printf '[%4d.%03d] %s\n' $((ms / 1000)) $((ms % 1000)) "$line"
        if [ ! -e "$first" ] && [[ $line =~ $re ]]; then
            printf '%d.%d\t%s\n' $((ms / 1000)) $((ms % 1000 / 100)) "${line:0:200}" >"$first"
        elif [ ! -e "$first.fallback" ] && [[ $line =~ $FALLBACK_RE ]]; then
            printf '%d.%d\t%s\n' $((ms / 1000)) $((ms % 1000 / 100)) "${line:0:200}" \
                >"$first.fallback"
        fi
    done
}

RESULTS="$OUT/results.tsv"
[ -s "$RESULTS" ] ||
    printf 'date\tsnapshot\tmutant\tlayer\tresult\tseconds\tlimit\tfirst failure\tlog\n' >"$RESULTS"
declare -a SUMMARY
declare -A CAUGHT_BY # mutant -> the layers that caught it
BUILD_FAILED=0

record() { # MUTANT LAYER RESULT SECONDS LIMIT LINE LOG
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -Is)" "$SNAPSHOT" "$@" >>"$RESULTS"
    SUMMARY+=("$(printf '%-14s %-26s %-11s %7s s  %s' "$1" "$2" "$3" "$4" "${6:0:100}")")
    case "$3" in
        caught | FAILED) CAUGHT_BY[$1]="${CAUGHT_BY[$1]:-} $2" ;;
    esac
}

# run_cell MUTANT LAYER
run_cell() {
    local m=$1 layer=$2 group limit re="$FAIL_RE"
    group="$(group_of "$layer")"
    if ! build "$m" "$group"; then
        BUILD_FAILED=1
        record "$m" "$layer$RUN" "no build" - - "" "$LOGS/$m-$group.build.log"
        return
    fi
    local td
    td="$(target_dir "$m" "$group")"
    local -a envs cmd
    mapfile -t envs < <(group_env "$m" "$group")
    case "$layer" in
        proptest)
            limit=$T_TEST re="$FAIL_RE|$PANIC_RE"
            # Shrinking after a failure is capped so that the minimal case fits the limit.
            envs+=(PROPTEST_MAX_SHRINK_TIME=60000)
            cmd=(cargo test --release --test model --target-dir "$td" -- --nocapture) ;;
        api | stress | capacity | liveness | pool | read | discovery | tags)
            limit=$T_TEST
            cmd=(cargo test --release --test "$layer" --target-dir "$td") ;;
        unit)
            limit=$T_TEST
            cmd=(cargo test --release --lib --target-dir "$td") ;;
        etcd)
            limit=$((T_TEST * 2))
            cmd=(cargo test --release -p genreg-etcd --target-dir "$td") ;;
        replay)
            limit=$T_TEST
            cmd=(cargo test --release --test fuzz_replay --target-dir "$td") ;;
        loom)
            limit=$T_LOOM re="$FAIL_RE|$PANIC_RE"
            cmd=(cargo test --release --test loom --test loom_events --test loom_discovery --test loom_capacity --test loom_liveness --test loom_pool --lib
                --target-dir "$td"
                -- --nocapture ${GENREG_MUTANTS_LOOM_FILTER:+"$GENREG_MUTANTS_LOOM_FILTER"}) ;;
        loom:*)
            limit=$T_LOOM re="$FAIL_RE|$PANIC_RE"
            cmd=(cargo test --release --test loom --test loom_events --test loom_discovery --test loom_capacity --test loom_liveness --test loom_pool
                --target-dir "$td" -- --nocapture --exact "${layer#loom:}") ;;
        miri-lib)
            limit=$T_MIRI
            cmd=(cargo "+$NIGHTLY" miri test --lib) ;;
        miri-*)
            limit=$T_MIRI
            cmd=(cargo "+$NIGHTLY" miri test --test "${layer#miri-}") ;;
        tsan)
            limit=$T_TSAN
            cmd=(cargo "+$NIGHTLY" test -Zbuild-std --target "$TRIPLE" --release --test stress
                --target-dir "$td") ;;
        fuzz-*)
            limit=$T_FUZZ
            local t=${layer#fuzz-} corpus=()
            t=${t%-empty}
            [ "$layer" = "fuzz-$t" ] && corpus=("fuzz/corpus/$t")
            local dir="$OUT/fuzz/$m-$layer${RUN/\#/.}"
            rm -rf "$dir"
            mkdir -p "$dir/corpus" "$dir/artifacts"
            # ci/fuzz.sh's options; new inputs and crash inputs go under target/mutants/fuzz.
            cmd=("$td/$TRIPLE/release/$t" "$dir/corpus" "${corpus[@]}"
                -max_total_time="$FUZZ_SECONDS" -timeout=30 -rss_limit_mb=4096
                -artifact_prefix="$dir/artifacts/" -print_final_stats=1) ;;
        *) die "no command for layer $layer" ;;
    esac
    local log="$LOGS/$m-$layer${RUN/\#/.}.log" first="$LOGS/$m-$layer${RUN/\#/.}.first"
    rm -f "$first" "$first.fallback"
    printf '  run   %-14s %-26s (limit %3d s) ... ' "$m" "$layer$RUN" "$limit"
    printf '# %s  snapshot %s\n# cwd: %s\n# env: %s\n# cmd: %s\n' "$(date -Is)" "$SNAPSHOT" \
        "$TREE" "${envs[*]}" "${cmd[*]}" >"$log"
    local t0=${EPOCHREALTIME/./} rc
    env "${envs[@]}" timeout --kill-after=20 "$limit" "${cmd[@]}" 2>&1 |
        stamp "$t0" "$first" "$re" >>"$log"
    rc=${PIPESTATUS[0]}
    local total_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
    local total="$((total_ms / 1000)).$((total_ms % 1000 / 100))"
    printf '# exit %d after %s s\n' "$rc" "$total" >>"$log"

    local result secs line=""
    [ -e "$first" ] || { [ "$rc" -ne 0 ] && [ -e "$first.fallback" ] && first="$first.fallback"; }
    if [ -e "$first" ]; then
        IFS=$'\t' read -r secs line <"$first"
        result=caught
        [ "$rc" -eq 0 ] && result="check log" # a failure line in a passing run
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        result=timeout secs=$total
    elif [ "$rc" -ne 0 ]; then
        result=caught secs=$total line="exit status $rc"
    else
        result="not caught" secs=$total
    fi
    if [ "$m" = none ]; then # the control: a failure is a broken layer, not a catch
        case "$result" in
            caught) result=FAILED ;;
            "not caught") result=passed ;;
        esac
    fi
    printf '%s in %s s\n' "$result" "$secs"
    [ -n "$line" ] && printf '        %s\n' "$line"
    record "$m" "$layer$RUN" "$result" "$secs" "$limit" "$line" "$log"
}

# run_repeated MUTANT LAYER: the cell, REPEAT times.
run_repeated() {
    local k
    if [ "$REPEAT" -le 1 ]; then
        RUN=""
        run_cell "$1" "$2"
        return
    fi
    for k in $(seq 1 "$REPEAT"); do
        RUN="#$k"
        run_cell "$1" "$2"
    done
    RUN=""
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
printf 'mutants:  %s\nlayers:   %s\nsnapshot: %s (commit+uncommitted files/content hash) in %s\n' \
    "${mutants[*]}" "${layers[*]}" "$SNAPSHOT" "$TREE"
printf 'logs:     %s\nresults:  %s\n\n' "$LOGS" "$RESULTS"
T_START=$SECONDS
for m in "${mutants[@]}"; do
    printf '== %s\n' "$m"
    for layer in "${layers[@]}"; do
        if [ "$layer" != loom-each ]; then
            run_repeated "$m" "$layer"
            continue
        fi
        if ! build "$m" loom; then
            BUILD_FAILED=1
            record "$m" loom-each "no build" - - "" "$LOGS/$m-loom.build.log"
            continue
        fi
        mapfile -t models < <(env RUSTFLAGS="$(rustflags "$m" loom)" CARGO_INCREMENTAL=0 \
            cargo test --release --test loom --test loom_events --test loom_discovery --test loom_capacity --test loom_liveness --test loom_pool \
            --target-dir "$(target_dir "$m" loom)" \
            -- --list 2>/dev/null | sed -n 's/: test$//p')
        [ "${#models[@]}" -gt 0 ] || die "could not list the loom models"
        for model in "${models[@]}"; do
            run_repeated "$m" "loom:$model"
        done
    done
done

printf '\n================ results (%d s; snapshot %s) ================\n' \
    $((SECONDS - T_START)) "$SNAPSHOT"
printf '%-14s %-26s %-11s %9s  %s\n' mutant layer result time "first failure"
printf '%s\n' "${SUMMARY[@]}"

status=0
for m in "${mutants[@]}"; do
    if [ "$m" = none ]; then
        if [ -n "${CAUGHT_BY[none]:-}" ]; then
            printf '\nCONTROL FAILED: without a mutant these layers fail:%s\n' "${CAUGHT_BY[none]}"
            [ "$status" -eq 0 ] && status=2
        else
            printf '\ncontrol: every layer run passed without a mutant\n'
        fi
    elif [ -z "${CAUGHT_BY[$m]:-}" ]; then
        printf '\nSURVIVED: %s was caught by none of: %s\n' "$m" "${layers[*]}"
        status=1
    else
        printf '\n%s caught by:%s\n' "$m" "${CAUGHT_BY[$m]}"
    fi
done
if [ "$BUILD_FAILED" -eq 1 ] && [ "$status" -ne 1 ]; then
    status=3
fi
exit "$status"
