#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test of the workspace
# (unit tests, the case-file suite in tests/cases, end-to-end runs), ending
# with one line that totals them. Starts the Kafka broker when none is given
# (SLUICE_KAFKA_BROKERS) or answering, and then stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
# An S3-protocol server on loopback for the object-store tests.
command -v moto_server >/dev/null 2>&1 || python3 -m pip install --quiet 'moto[server]'
log=$(mktemp)
started_broker=false
cleanup() {
    rm -f "$log"
    # Only a broker this run started: one that was given or already
    # answering belongs to someone else.
    if [[ $started_broker == true ]]; then
        ./scripts/broker.sh stop
    fi
}
trap cleanup EXIT
# A Kafka-protocol broker on loopback for stream mode (installed when missing).
if [[ -z "${SLUICE_KAFKA_BROKERS:-}" ]]; then
    if ! ./scripts/broker.sh status >/dev/null 2>&1; then
        started_broker=true
    fi
    SLUICE_KAFKA_BROKERS=$(./scripts/broker.sh start)
    export SLUICE_KAFKA_BROKERS
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
