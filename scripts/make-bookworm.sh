#!/usr/bin/env bash
# Makes a Debian bookworm (minbase) root filesystem tar for the tests that need a real distribution
# base (apt-get, useradd): Docker Hub is out of reach, so the test set-up debootstraps one and both
# builders import it. The tar has numeric owners and empty /dev, /proc and /sys, like the images
# Debian publishes. Needs root and the Debian mirror apt already uses.
#
# Usage: scripts/make-bookworm.sh OUT.tar     (prints OUT.tar's absolute path on success)
#
# The debootstrap result is cached per day in $RBUILD_TEST_CACHE (default /var/cache/rbuild-test) as
# bookworm-YYYYMMDD.tar, so repeated runs on one day reuse it; older days' tars are removed.
# The mirror is $RBUILD_DEBIAN_MIRROR, else the first debian URI of apt's sources, else deb.debian.org.
set -euo pipefail

out=${1:?usage: make-bookworm.sh OUT.tar}
[ "$(id -u)" = 0 ] || { echo "make-bookworm.sh: must run as root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || {
    echo "make-bookworm.sh: debootstrap is missing: install it (scripts/install-deps.sh)" >&2
    exit 1
}

mirror=${RBUILD_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    # deb822 sources first (bookworm's default), then the one-line format.
    mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit }}' || true)
fi
if [ -z "$mirror" ]; then
    mirror=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '{for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit }}' || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

cache=${RBUILD_TEST_CACHE:-/var/cache/rbuild-test}
mkdir -p "$cache"
cached=$cache/bookworm-$(date -u +%Y%m%d).tar

# One debootstrap at a time per cache (parallel test processes share it).
exec 9>"$cache/bookworm.lock"
flock 9

if [ ! -s "$cached" ]; then
    start=$(date +%s)
    tmp=$(mktemp -d "$cache/bookworm.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    if ! debootstrap --variant=minbase bookworm "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
        echo "make-bookworm.sh: debootstrap from $mirror failed; last lines of its log:" >&2
        tail -30 "$tmp/debootstrap.log" >&2
        tail -30 "$tmp/rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
        exit 1
    fi
    # Docker supplies these at run time; images ship them empty. resolv.conf and hostname are the
    # build host's, apt's lists are stale the moment the tar is made, and the downloaded .debs are
    # installed already (half the tar's size).
    find "$tmp/rootfs/dev" "$tmp/rootfs/proc" "$tmp/rootfs/sys" -mindepth 1 -delete 2>/dev/null || true
    rm -rf "$tmp/rootfs/var/lib/apt/lists/"* "$tmp/rootfs/var/cache/apt/"*.bin \
        "$tmp/rootfs/var/cache/apt/archives/"*.deb
    rm -f "$tmp/rootfs/etc/resolv.conf" "$tmp/rootfs/etc/hostname"
    tar -C "$tmp/rootfs" --numeric-owner --xattrs -cf "$tmp/rootfs.tar" .
    mv "$tmp/rootfs.tar" "$cached"
    rm -rf "$tmp"
    trap - EXIT
    # Yesterday's tars are not reused.
    find "$cache" -maxdepth 1 -name 'bookworm-*.tar' ! -path "$cached" -delete
    echo "make-bookworm.sh: debootstrapped bookworm from $mirror in $(($(date +%s) - start))s" >&2
fi

mkdir -p "$(dirname "$out")"
cp "$cached" "$out.tmp.$$"
mv "$out.tmp.$$" "$out"
realpath "$out"
