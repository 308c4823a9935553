#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test of the workspace
# (unit tests, the case-file suite in tests/cases, end-to-end runs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
