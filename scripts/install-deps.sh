#!/usr/bin/env bash
# Installs the Debian packages the tests and the example use, when any is missing. Needs root.
set -euo pipefail
pkgs=(docker.io skopeo umoci busybox-static docker-registry uidmap jq ca-certificates debootstrap libcap2-bin attr util-linux passwd tar)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps.sh: missing packages ${missing[*]}; run as root to install them" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
