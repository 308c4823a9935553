#!/usr/bin/env bash
# A Kafka-protocol broker on loopback for tests, CI and local stream jobs.
#
#   scripts/broker.sh start    install tansu if missing, start it, wait until it
#                              answers a metadata request, print the bootstrap address
#   scripts/broker.sh restart  kill it and start it again on the same data
#   scripts/broker.sh stop     stop it (its data directory goes too)
#   scripts/broker.sh status   print the bootstrap address if it answers, else fail
#   scripts/broker.sh install  install tansu if missing, print its path
#
# The broker is tansu (crates.io), an Apache-Kafka-compatible broker, on its
# SQLite store: its memory store reports wrong high watermarks. It has no topic
# auto-creation and no transactions; deleting a topic on SQLite deletes every
# topic, so tests use unique topic names and never delete.
#
# Two scripts at once are safe: installing tansu takes a lock in the tools
# directory (the second waits, then finds it installed) and builds in a
# private temporary directory; start, restart and stop take a lock per port.
#
# SLUICE_KAFKA_PORT    port on 127.0.0.1 (default 9092)
# SLUICE_TOOLS         where tansu is installed when it is not on PATH
#                      (default /var/tmp/sluice-tools, kept between CI runs)
# SLUICE_TANSU_INSTALL the install command, for tests of this script
#                      (default: cargo install tansu 0.6.0 with libsql)
set -euo pipefail

port="${SLUICE_KAFKA_PORT:-9092}"
tools="${SLUICE_TOOLS:-/var/tmp/sluice-tools}"
state="${TMPDIR:-/tmp}/sluice-kafka-$port"
address="127.0.0.1:$port"

# Sends a Kafka Metadata (v0) request and checks the reply's correlation id.
answers() {
    python3 - "$port" <<'EOF'
import socket, struct, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    client = b"sluice-broker-sh"
    body = struct.pack(">hhih", 3, 0, 7, len(client)) + client + struct.pack(">i", 0)
    s.sendall(struct.pack(">i", len(body)) + body)
    head = s.recv(8)
    sys.exit(0 if len(head) == 8 and struct.unpack(">ii", head)[1] == 7 else 1)
except OSError:
    sys.exit(1)
EOF
}

find_tansu() {
    if command -v tansu >/dev/null 2>&1; then
        command -v tansu
    elif [[ -x "$tools/bin/tansu" ]]; then
        echo "$tools/bin/tansu"
    else
        return 1
    fi
}

install_tansu() {
    mkdir -p "$tools"
    local lock
    exec {lock}>"$tools/install.lock"
    if ! flock -n "$lock"; then
        echo "broker: another process is installing tansu into $tools; waiting for it" >&2
        flock "$lock"
    fi
    # Whoever held the lock may have installed it meanwhile.
    if find_tansu >/dev/null; then
        exec {lock}>&-
        return 0
    fi
    echo "broker: installing tansu 0.6.0 into $tools (takes 15-25 minutes on 2 cores)" >&2
    # A private target directory: a shared one is what two installs at
    # once break ("Directory not empty" when one clears it under the other).
    local build status=0
    build=$(mktemp -d "${TMPDIR:-/tmp}/sluice-tansu-build.XXXXXX")
    CARGO_TARGET_DIR="$build" install_command >&2 || status=$?
    rm -rf "$build"
    exec {lock}>&-
    if [[ $status -ne 0 ]]; then
        echo "broker: installing tansu into $tools failed (exit status $status, output above)" >&2
        return "$status"
    fi
    find_tansu >/dev/null || {
        echo "broker: the install finished but there is no $tools/bin/tansu" >&2
        return 1
    }
}

install_command() {
    if [[ -n "${SLUICE_TANSU_INSTALL:-}" ]]; then
        bash -c "$SLUICE_TANSU_INSTALL"
    else
        # Without the libsql feature tansu has no persistent storage engine.
        cargo install tansu --version 0.6.0 --locked --features libsql --root "$tools"
    fi
}

# Runs "$@" holding this port's lock, so that two scripts do not start,
# restart or stop one broker at the same time.
with_port_lock() {
    local lock
    exec {lock}>"${TMPDIR:-/tmp}/sluice-kafka-$port.lock"
    flock "$lock"
    "$@"
    local status=$?
    exec {lock}>&-
    return "$status"
}

start() {
    if answers; then
        echo "$address"
        return 0
    fi
    rm -rf "$state"
    mkdir -p "$state"
    launch
}

# Runs tansu on the state directory as it is.
launch() {
    local tansu
    tansu=$(find_tansu) || { install_tansu && tansu=$(find_tansu); }
    # tansu reads a .env in its working directory: give it an empty one.
    (
        cd "$state"
        : >.env
        # Not holding the port's lock (an open descriptor) for its lifetime.
        nohup "$tansu" broker \
            --listener-url "tcp://$address" \
            --advertised-listener-url "tcp://$address" \
            --storage-engine "sqlite://tansu.db" \
            >"$state/broker.log" 2>&1 {lock}>&- &
        echo $! >"$state/pid"
    )
    for _ in $(seq 1 100); do
        if answers; then
            echo "$address"
            return 0
        fi
        if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
            echo "broker: tansu exited; its log:" >&2
            cat "$state/broker.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "broker: tansu did not answer on $address within 10 s; its log:" >&2
    cat "$state/broker.log" >&2
    return 1
}

# Kills the broker and starts it again on the same storage: what a broker
# restart in production looks like to clients.
restart() {
    if [[ -f "$state/pid" ]]; then
        local pid
        pid=$(cat "$state/pid")
        kill "$pid" 2>/dev/null || true
        # Its port is free only once it has exited.
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    mkdir -p "$state"
    launch
}

stop() {
    if [[ -f "$state/pid" ]]; then
        kill "$(cat "$state/pid")" 2>/dev/null || true
    fi
    rm -rf "$state"
}

case "${1:-}" in
    start) with_port_lock start ;;
    restart) with_port_lock restart ;;
    stop) with_port_lock stop ;;
    install) find_tansu || { install_tansu && find_tansu; } ;;
    status)
        if answers; then echo "$address"; else
            echo "broker: nothing answers on $address" >&2
            exit 1
        fi
        ;;
    *)
        echo "usage: $0 start|restart|stop|status|install" >&2
        exit 2
        ;;
esac
