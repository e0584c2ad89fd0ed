#!/usr/bin/env bash
# Stage "lint": formatting, clippy with warnings denied, and rustdoc with warnings denied.
# Stable toolchain (the active one). `-D warnings` lives here, not in the source (a new compiler lint must not break a user's build).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
stage_start lint
require_rustup
ensure_system_deps # protoc: clippy builds the etcd backend too

step "rustup component add rustfmt clippy (active toolchain)" rustup component add rustfmt clippy ||
    die "could not install rustfmt/clippy for the active toolchain"

step "rustfmt" cargo fmt --all -- --check ||
    die "code is not formatted: run 'cargo fmt --all' and commit the result"
# --workspace: genreg, the demo, the benches/ member (genreg-bench: the criterion benches, the
# peers' adapters and the throughput harness) and the etcd backend (genreg-etcd).
step "clippy" cargo clippy --workspace --all-targets -- -D warnings ||
    die "clippy found warnings (denied in CI); see above"
step "clippy (features serde, tokio)" \
    cargo clippy --workspace --all-targets --features genreg/serde,genreg/tokio -- -D warnings ||
    die "clippy found warnings with the optional features (denied in CI); see above"
step "rustdoc" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --features serde,tokio ||
    die "rustdoc warnings (broken intra-doc links, missing docs...); see above"
step "rustdoc (genreg-etcd)" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p genreg-etcd ||
    die "rustdoc warnings in genreg-etcd; see above"
