#!/usr/bin/env bash
# Starts a private dockerd (Debian's docker.io) for the differential tests, on its own socket and data
# root so it never touches a docker the machine may already run. Prints the DOCKER_HOST to use.
# Usage: scripts/dockerd.sh start|stop
set -euo pipefail
base=${RBUILD_TEST_DOCKER_DIR:-/var/lib/rbuild-test/docker}
sock=$base/docker.sock
case "${1:-start}" in
start)
    if [ "$(id -u)" != 0 ]; then echo "dockerd.sh: must run as root" >&2; exit 1; fi
    mkdir -p "$base"
    if DOCKER_HOST=unix://$sock /usr/bin/docker info >/dev/null 2>&1; then
        echo "unix://$sock"; exit 0
    fi
    nohup /usr/sbin/dockerd --host "unix://$sock" --data-root "$base/data" --exec-root "$base/exec" \
        --pidfile "$base/dockerd.pid" --bridge none --iptables=false --ip-masq=false \
        --containerd-namespace rbuild-test --containerd-plugins-namespace rbuild-test-plugins \
        >"$base/dockerd.log" 2>&1 &
    for _ in $(seq 1 600); do
        if DOCKER_HOST=unix://$sock /usr/bin/docker info >/dev/null 2>&1; then
            echo "unix://$sock"; exit 0
        fi
        if ! kill -0 $! 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "dockerd.sh: dockerd did not come up; log follows" >&2
    tail -50 "$base/dockerd.log" >&2
    exit 1
    ;;
stop)
    if [ -f "$base/dockerd.pid" ]; then kill "$(cat "$base/dockerd.pid")" 2>/dev/null || true; fi
    ;;
esac
