#!/usr/bin/env bash
# Instructions per operation, counted by callgrind (exact and repeatable on a noisy machine).
#
#   bash benches/instr.sh [OPS] [PEERS]
#   OPS   default "hit miss peek get cycle stale replace"
#   PEERS default "genreg papaya scc-HashIndex ceiling"; also genreg-events (event log on)
#   PROF_NAMES=1024 (table size, a power of two), INSTR_N=20000 (operations counted per cell)
#
# Each cell is the throughput harness (benches/src/throughput.rs, built with the bench profile:
# optimised, with debug info) run as `throughput --child OP PEER N` under callgrind, counting only
# `prof_loop`; the figure is the loop's instructions / N. Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
OPS=(${1:-hit miss peek get cycle stale replace})
PEERS=(${2:-genreg papaya scc-HashIndex ceiling})
N="${INSTR_N:-20000}"
# The binary's path from cargo itself: it is under the workspace's target directory, or wherever
# CARGO_TARGET_DIR or build.target-dir put it.
B=$(cargo build -q --profile bench -p genreg-bench --bin throughput \
    --message-format=json-render-diagnostics | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' |
    tail -n 1)
[ -x "$B" ] || { echo "instr.sh: no throughput binary from cargo build" >&2; exit 1; }
out=$(mktemp -d)
# `genreg-events` (genreg with its event log on) lives in a build with the `events-peer` feature,
# kept apart: compiled into the same binary, it would change how genreg's own paths inline.
BE=""
if [[ " ${PEERS[*]} " == *" genreg-events "* ]]; then
    cp "$B" "$out/throughput-plain"
    B="$out/throughput-plain"
    BE=$(cargo build -q --profile bench -p genreg-bench --bin throughput --features events-peer \
        --message-format=json-render-diagnostics |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    cp "$BE" "$out/throughput-events"
    BE="$out/throughput-events"
fi
printf '%-10s' op
for p in "${PEERS[@]}"; do printf ' %16s' "$p"; done
printf '\n'
for op in "${OPS[@]}"; do
    printf '%-10s' "$op"
    for p in "${PEERS[@]}"; do
        f="$out/cg.$op.$p"
        bin="$B"
        [ "$p" = genreg-events ] && bin="$BE"
        if valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*prof_loop*' \
            --callgrind-out-file="$f" "$bin" --child "$op" "$p" "$N" >/dev/null 2>&1; then
            ir=$(sed -n 's/^summary: *//p' "$f" | awk '{print $1}')
            printf ' %16.1f' "$(echo "$ir / $N" | bc -l)"
        else
            printf ' %16s' "-"
        fi
    done
    printf '\n'
done
rm -rf "$out"
