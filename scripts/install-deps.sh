#!/usr/bin/env bash
# Installs the Debian packages the tests and the example use, when any is missing. Needs root.
set -euo pipefail
pkgs=(docker.io skopeo umoci busybox-static docker-registry uidmap jq ca-certificates debootstrap libcap2-bin attr util-linux passwd tar tini)
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

# Multi-platform builds: RUN steps of a foreign architecture run under qemu-user-static, which the
# kernel starts through a binfmt_misc handler registered with the F (fix-binary) flag, so the
# emulator need not exist inside the build's root. Without systemd nothing registers the handlers
# the package ships, so register them here (idempotent).
qemu_pkgs=(qemu-user-static binfmt-support)
qemu_missing=()
for p in "${qemu_pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || qemu_missing+=("$p")
done
if [ ${#qemu_missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "install-deps.sh: missing ${qemu_missing[*]}; run as root" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${qemu_missing[@]}" >/dev/null
fi
if [ "$(id -u)" = 0 ]; then
    binfmt=/proc/sys/fs/binfmt_misc
    [ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt"
    for conf in /usr/lib/binfmt.d/qemu-aarch64.conf /usr/lib/binfmt.d/qemu-arm.conf; do
        [ -f "$conf" ] || continue
        name=$(basename "$conf" .conf)
        [ -e "$binfmt/$name" ] || grep -v '^#' "$conf" | head -n1 >"$binfmt/register"
    done
fi

# The platform test builds an arm64 base from Debian's arm64 busybox-static package; keep the .deb
# in a cache directory the test reads (RBUILD_TEST_ARM64_BUSYBOX_DEB points at it).
arm64_cache=/var/cache/rbuild-test/arm64
if ! ls "$arm64_cache"/busybox-static_*_arm64.deb >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { echo "install-deps.sh: arm64 busybox-static not cached; run as root" >&2; exit 1; }
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
        apt-get update -qq
    fi
    mkdir -p "$arm64_cache"
    chown _apt "$arm64_cache" 2>/dev/null || true
    (cd "$arm64_cache" && { apt-get download -qq busybox-static:arm64 || { apt-get update -qq && apt-get download -qq busybox-static:arm64; }; })
fi
