#!/usr/bin/env bash
# Builds a statically linked rbuild for x86_64 Linux and prints its path as the last line.
#
# Only the installed x86_64-unknown-linux-gnu toolchain is available (no musl target), so the
# binary links glibc statically (crt-static; relocation-model=static makes it a plain static
# executable rather than a static PIE, so `ldd` says "not a dynamic executable"). liblzma is built
# from xz2's bundled sources (LZMA_API_STATIC) instead of the system's shared library; zstd and
# bzip2 are always bundled. The static glibc pitfalls are avoided rather than worked around: names
# are resolved by reqwest's pure-Rust resolver (feature `static`), not getaddrinfo/NSS, and the
# only NSS lookup left (the invoking user's name for /etc/subuid, rootless only) falls back to
# the numeric uid when no NSS module can be loaded. At run time it needs nothing but
# newuidmap/newgidmap (package uidmap) for rootless builds.
#
# RBUILD_STATIC_PROFILE=dev builds the same static binary unoptimised (the test suite does, as a
# release build of every dependency for one more target would cost CI many minutes).
#
# The build goes to target/x86_64-unknown-linux-gnu/release (its own directory, so it never
# invalidates the debug build) and is incremental: a second run with no source change is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
export CARGO_INCREMENTAL=0
export LZMA_API_STATIC=1
# --target keeps these flags off build scripts and proc macros, which must stay dynamic.
export RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"
export CARGO_PROFILE_RELEASE_DEBUG=0
export CARGO_PROFILE_RELEASE_STRIP=symbols
export CARGO_PROFILE_DEV_DEBUG=0
export CARGO_PROFILE_DEV_STRIP=symbols
profile=${RBUILD_STATIC_PROFILE:-release}
cargo build --profile "$profile" --locked -p rbuild-cli --bin rbuild --features static --target "$target" >&2
dir=$profile
[ "$profile" = dev ] && dir=debug
bin="$PWD/target/$target/$dir/rbuild"
# ldd exits non-zero for a static executable: keep its verdict, not its status.
verdict=$(LC_ALL=C ldd "$bin" 2>&1 || true)
case "$verdict" in
  *"not a dynamic executable"*) ;;
  *) echo "build-static.sh: $bin is not statically linked: $verdict" >&2; exit 1 ;;
esac
echo "$bin"
