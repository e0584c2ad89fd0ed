#!/usr/bin/env bash
# Stage "fuzz": builds the three fuzz targets and runs each for a minute.
#
#   bash ci/fuzz.sh                          # what CI runs: ops, concurrent, snapshot, 60 s each
#   bash ci/fuzz.sh ops                      # one target
#   GENREG_FUZZ_SECONDS=600 bash ci/fuzz.sh  # longer runs
#
# Targets (fuzz/fuzz_targets/, sharing tests/support/ops.rs with the property tests):
#   ops         a sequence of operations against the registry and a sequential model,
#               compared after every step
#   concurrent  an operation sequence dealt to 2-4 threads on one registry, then a
#               consistency check of everything the threads saw (and a watcher's replay of the
#               events against the final state)
#   snapshot    the snapshot decoder: bytes as a JSON snapshot, restored when they parse
#
# The build is what `cargo fuzz build` does, spelled out, so CI needs no
# `cargo install cargo-fuzz`: nightly, sanitizer-coverage instrumentation, AddressSanitizer,
# debug assertions, into target/fuzz. The explicit --target keeps those flags off build scripts
# and proc macros.
#
# Corpora: fuzz/corpus/TARGET is checked in and only read here; new inputs go to
# scratch-corpus/TARGET (git-ignored; libFuzzer writes only into its first directory). To keep
# new finds, merge them minimised into the checked-in corpus and commit it:
#   target/fuzz/<triple>/release/TARGET -merge=1 fuzz/corpus/TARGET scratch-corpus/TARGET
# tests/fuzz_replay.rs replays the checked-in corpora under plain `cargo test`.
#
# A crash, a panic, a leak, a timeout (-timeout) or running out of memory fails the stage, with
# the offending input saved under fuzz/artifacts/TARGET/ (reproduce: run the binary on that file;
# then add the file to fuzz/corpus/TARGET as a regression input).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
stage_start fuzz
require_nightly

SECONDS_PER_TARGET="${GENREG_FUZZ_SECONDS:-60}"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(ops concurrent snapshot)
fi

triple="$(host_triple "$NIGHTLY")"
[ -n "$triple" ] || die "could not determine the host triple of '$NIGHTLY'"
bin_dir="target/fuzz/$triple/release"

fuzz_rustflags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    --cfg fuzzing
    -Cdebug-assertions
    -Zsanitizer=address
)
bins=()
for t in "${targets[@]}"; do
    [ -f "fuzz/fuzz_targets/$t.rs" ] || die "no fuzz target '$t' (fuzz/fuzz_targets/$t.rs)"
    bins+=(--bin "$t")
done

step "build fuzz targets: ${targets[*]}" env RUSTFLAGS="${fuzz_rustflags[*]}" \
    cargo "+$NIGHTLY" build --release --manifest-path fuzz/Cargo.toml --target "$triple" \
    "${bins[@]}" --target-dir target/fuzz ||
    die "the fuzz targets do not build (nightly '$NIGHTLY'; pin one with GENREG_NIGHTLY=nightly-YYYY-MM-DD)"

summary=()
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    scratch="scratch-corpus/$t"
    artifacts="fuzz/artifacts/$t"
    log="target/fuzz/$t.log"
    [ -d "$corpus" ] || die "$corpus is missing (it is checked in)"
    mkdir -p "$scratch" "$artifacts"
    t0=$SECONDS
    rc=0
    # The full libFuzzer log (a line per new input) goes to a file; its tail is printed.
    step "fuzz $t for ${SECONDS_PER_TARGET} s (log: $log)" \
        "$bin_dir/$t" "$scratch" "$corpus" \
        -max_total_time="$SECONDS_PER_TARGET" \
        -timeout=30 \
        -rss_limit_mb=4096 \
        -artifact_prefix="$artifacts/" \
        -print_final_stats=1 \
        >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '\n*** what failed (from %s):\n' "$log" >&2
        grep -E -A4 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$log" |
            head -n 40 >&2 || true
        printf '\n*** last 30 lines of %s:\n' "$log" >&2
        tail -n 30 "$log" >&2
        printf '\n*** inputs saved in %s:\n' "$artifacts" >&2
        ls -l "$artifacts" >&2 || true
        die "fuzz target '$t' FAILED (exit $rc): reproduce with '$bin_dir/$t <artifact>'"
    fi
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" || true
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
    summary+=("$(printf '%-11s %9s runs %7s exec/s %5d s' "$t" "${runs:-?}" "${rate:-?}" $((SECONDS - t0)))")
done

printf '\n'
printf '%s\n' "${summary[@]}"
