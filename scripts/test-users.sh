#!/usr/bin/env bash
# Creates the unprivileged users the rootless sandbox tests run as (idempotent; needs root):
#   rbuildtest    with a subordinate id range rbuildtest:100000:65536 in /etc/subuid and /etc/subgid
#   rbuildnosub   with no subordinate range (exercises the single-id map and its warning)
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "test-users.sh: must run as root" >&2; exit 1; }
for u in rbuildtest rbuildnosub; do
    id -u "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$u"
done
for f in /etc/subuid /etc/subgid; do
    touch "$f"
    grep -q '^rbuildtest:' "$f" || echo 'rbuildtest:100000:65536' >> "$f"
    # rbuildnosub must have no range; useradd may add one automatically.
    sed -i '/^rbuildnosub:/d' "$f"
done
