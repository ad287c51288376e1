#!/usr/bin/env bash
# The README's first command: builds rbuild, imports a busybox base made from the host's static busybox
# (`rbuild import`, as `docker import`), builds `example:1.0` (with RUN steps) into a private store,
# lists it and saves it as a docker-archive that `docker load` reads. Needs no registry and no network.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -x /bin/busybox ] || ! dpkg -s busybox-static >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
cargo build --release --locked -p rbuild-cli
out=${EXAMPLE_OUT:-target/example}
rm -rf "$out" && mkdir -p "$out/rootfs/bin" "$out/rootfs/etc" "$out/rootfs/tmp" "$out/rootfs/root"
cp /bin/busybox "$out/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$out/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$out/rootfs/etc/passwd"
echo 'root:x:0:' >"$out/rootfs/etc/group"
chmod 1777 "$out/rootfs/tmp"
tar --numeric-owner --owner=0 --group=0 -C "$out/rootfs" -cf "$out/busybox-rootfs.tar" .
export RBUILD_ROOT="$PWD/$out/store"
rbuild=target/release/rbuild
"$rbuild" import "$out/busybox-rootfs.tar" example/busybox:latest
"$rbuild" -f testdata/example/Dockerfile -t example:1.0 testdata/example
"$rbuild" images
"$rbuild" save example:1.0 -o "$out/example.tar"
echo "saved $out/example.tar: load it with 'docker load -i $out/example.tar' or 'rbuild load -i $out/example.tar'"
