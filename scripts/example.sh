#!/usr/bin/env bash
# The README's first command: builds rbuild, assembles a busybox context from the host's static busybox,
# builds `example:1.0` into a private store, lists it, and saves it as a docker-archive.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -x /bin/busybox ] || ! dpkg -s busybox-static >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
cargo build --release --locked -p rbuild-cli
out=${EXAMPLE_OUT:-target/example}
rm -rf "$out" && mkdir -p "$out/context/rootfs/bin" "$out/context/rootfs/etc" "$out/context/rootfs/tmp"
cp testdata/example/Dockerfile testdata/example/hello.sh "$out/context/"
cp /bin/busybox "$out/context/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$out/context/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$out/context/rootfs/etc/passwd"
echo 'root:x:0:' >"$out/context/rootfs/etc/group"
export RBUILD_ROOT="$PWD/$out/store"
rbuild=target/release/rbuild
"$rbuild" -f "$out/context/Dockerfile" -t example:1.0 "$out/context"
"$rbuild" images
"$rbuild" save example:1.0 -o "$out/example.tar"
echo "saved $out/example.tar: load it with 'docker load -i $out/example.tar' or 'rbuild load -i $out/example.tar'"
