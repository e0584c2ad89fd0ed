# Shared helpers for the CI stages in ci/*.sh and for .ci/run. Source it; do not run it.
#
# Every stage script is runnable on its own from anywhere inside the repository:
#   bash ci/miri.sh                 # the stage as CI runs it
#   bash ci/miri.sh --test api      # some stages accept a narrower selection (see each script)
#
# Conventions: `set -euo pipefail`; the stage's name and elapsed seconds are printed when it ends,
# passed or failed; each command is echoed before it runs; a failure names the command, its exit
# status and, where we know one, how to fix the environment.

set -euo pipefail

# Run from the repository root, whatever the caller's working directory.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The nightly toolchain used by Miri, ThreadSanitizer, loom's helpers and fuzzing.
# Override with e.g. GENREG_NIGHTLY=nightly-2026-05-15 to pin one.
NIGHTLY="${GENREG_NIGHTLY:-nightly}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

die() {
    printf '\n*** %s: %s\n' "${CI_STAGE:-ci}" "$*" >&2
    exit 1
}

# stage_start NAME: prints a banner now and "NAME: passed/FAILED in N s" when the script exits.
stage_start() {
    CI_STAGE="$1"
    CI_STAGE_T0=$SECONDS
    printf '\n======== stage %s ========\n' "$CI_STAGE"
    trap '_stage_end $?' EXIT
}

_stage_end() {
    local rc=$1 dt=$((SECONDS - CI_STAGE_T0))
    if [ "$rc" -eq 0 ]; then
        printf '======== stage %s: passed in %d s ========\n' "$CI_STAGE" "$dt"
    else
        printf '======== stage %s: FAILED (exit %d) after %d s ========\n' "$CI_STAGE" "$rc" "$dt" >&2
    fi
}

# step DESCRIPTION CMD [ARGS...]: runs one command, echoing it and timing it. Returns the
# command's exit status, so `step ... || die "hint"` can add advice; without `||`, `set -e`
# stops the stage.
step() {
    local desc="$1"
    shift
    printf '\n--- %s\n+ %s\n' "$desc" "$*"
    local t0=$SECONDS rc=0
    "$@" || rc=$?
    if [ "$rc" -eq 0 ]; then
        printf -- '--- %s: ok (%d s)\n' "$desc" $((SECONDS - t0))
    else
        printf '\n*** %s: FAILED (exit %d after %d s)\n*** command: %s\n' \
            "$desc" "$rc" $((SECONDS - t0)) "$*" >&2
    fi
    return "$rc"
}

require_rustup() {
    command -v rustup >/dev/null 2>&1 ||
        die "rustup is not on PATH; this stage installs toolchain components with it (https://rustup.rs)"
    command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"
}

require_nightly() {
    require_rustup
    rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1 ||
        die "toolchain '$NIGHTLY' is not installed: rustup toolchain install $NIGHTLY --profile minimal"
}

# add_components TOOLCHAIN COMPONENT...: idempotent (a no-op, offline, when already installed).
add_components() {
    local toolchain="$1"
    shift
    step "rustup component add $* ($toolchain)" rustup component add "$@" --toolchain "$toolchain" ||
        die "could not install $* for '$toolchain' (offline? or a nightly without them: pin one with GENREG_NIGHTLY=nightly-YYYY-MM-DD)"
}

# The host target triple of a toolchain (sanitizers and -Zbuild-std need an explicit --target).
host_triple() {
    rustc "+$1" -vV | sed -n 's/^host: //p'
}

# ensure_system_deps: the two system programs the etcd backend (genreg-etcd) needs: `protoc`
# (etcd-client's build compiles etcd's protobuf files) and `etcd` (its tests start real
# servers). Installed with apt-get when missing (Debian's etcd-server and protobuf-compiler);
# elsewhere the stage fails and says what to install. Never skipped silently.
ensure_system_deps() {
    local need=()
    command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
    command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
    [ "${#need[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "etcd and protoc are needed (the etcd backend's build and tests); install ${need[*]} (or your system's equivalent) and run again"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 ||
            die "need ${need[*]}: run 'apt-get install ${need[*]}' as root, then run again"
        sudo=(sudo)
    fi
    step "apt-get update" "${sudo[@]}" apt-get update -qq ||
        die "apt-get update failed: cannot install ${need[*]}"
    step "apt-get install ${need[*]}" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${need[@]}" ||
        die "could not install ${need[*]} (the etcd backend's build and tests need them)"
    command -v etcd >/dev/null 2>&1 && command -v protoc >/dev/null 2>&1 ||
        die "installed ${need[*]}, but etcd or protoc is still not on PATH"
}
