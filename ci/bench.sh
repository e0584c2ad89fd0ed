#!/usr/bin/env bash
# Stage "bench": builds every benchmark target and runs each one short pass, to prove that the
# benchmarks compile and run. It measures nothing worth quoting; BENCHMARKS.md says how the
# published figures are produced.
#
#   bash ci/bench.sh                  # CI: every bench once, in criterion's --test mode
#   bash ci/bench.sh --quick          # criterion's quick mode: short real measurements
#   bash ci/bench.sh <criterion args> # anything else is passed to the benchmark binaries
#
# The benchmarks live in the `benches/` workspace member, genreg-bench (criterion and the peers
# are its dependencies, not genreg's), so every command here names it with `-p genreg-bench`.
# Only [[bench]] targets (benches/benches/*.rs) are run: `--bench '*'` leaves out every other
# target's bench harness (the throughput binary's, for one).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
stage_start bench
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"

# Every workspace member's targets; the [[bench]] ones are all genreg-bench's.
benches="$(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null ||
    cargo metadata --no-deps --format-version 1)"
count="$(grep -o '"kind":\["bench"\]' <<<"$benches" | wc -l || true)"
if [ "$count" -eq 0 ]; then
    printf 'no benchmark targets in benches/Cargo.toml or benches/benches/*.rs: nothing to run\n'
    exit 0
fi
printf '%d benchmark target(s)\n' "$count"

if [ "$#" -gt 0 ]; then
    args=("$@")
else
    args=(--test)
fi
step "build benches" cargo bench -p genreg-bench --bench '*' --no-run
step "run benches (${args[*]})" cargo bench -p genreg-bench --bench '*' -- "${args[@]}"

# The throughput harness, one short pass: it checks every result it gets from every peer under
# concurrency and exits non-zero if an operation failed where it must succeed.
step "throughput harness (--quick)" cargo run --release -p genreg-bench --bin throughput -- --quick
# conc-map-bench's workloads (bustle: ReadHeavy, Exchange, RapidGrow) at 2^14, every peer; bustle
# checks every result (a failed get, insert, remove or update panics).
step "bustle workloads (--quick)" cargo run --release -p genreg-bench --bin bustle -- --quick

# The events benchmark, one short pass (write path with the log off / on / watched, delivery
# against tokio's broadcast, subscribe at 1k and 1M names); it asserts what it receives.
step "events benchmark (--quick)" cargo run --release -p genreg-bench --bin events -- --quick

# The discovery benchmark, one short pass (find_by_capability and best_match against a scan and
# a hand-rolled side index at 1k and 100k entries, registration with and without metadata); it
# asserts that every method finds the same entries.
step "discovery benchmark (--quick)" cargo run --release -p genreg-bench --bin discovery -- --quick

# The liveness benchmark, one short pass (the bound's cost on registration, keepalive against
# is_current, the reaper's pass against purge_dead at 1k and 100k entries, HealthCheck against a
# sequential loop); it asserts that every cycle and keepalive succeeds, that each reap and
# purge_dead removes exactly the expired entries, and that every probe is recorded passing.
step "liveness benchmark (--quick)" cargo run --release -p genreg-bench --bin liveness -- --quick

# The pool benchmark, one short pass (acquire + release against MARSYS's mutex and a tokio
# Semaphore over a free list at 1 and 2 threads, the async wake-up latency with two polled
# waits of MARSYS's 0.5 s loop, the spread of each selection); it asserts that no acquire fails
# where a member must be free and that every lease is released. ~10 s.
step "pool benchmark (--quick)" cargo run --release -p genreg-bench --bin pool -- --quick

# The etcd backend's benchmark, one short pass against a single-member etcd it starts itself
# (genreg-etcd against raw etcd-client on the same transactions, mirror lookups against the
# in-process registry, mirror lag); a smoke test here, figures in BENCHMARKS.md. ~5 s.
ensure_system_deps
step "etcd benchmark (--quick)" cargo run --release -p genreg-etcd --example bench -- --quick
