#!/usr/bin/env bash
# Pull/push benchmark against a local docker-registry (not run in CI).
#
# Makes a synthetic image (LAYERS layers of LAYER_MB MiB of incompressible files each), seeds it into
# a local registry with skopeo, then times in one run:
#   pull: `rbuild pull` (download + verify + decompress into the store + keep the gzip variant)
#         vs `skopeo copy docker://... oci:DIR` (download + verify, blobs only: no decompression)
#   push: `rbuild push` (reuses the pulled gzip variants: no recompression) into a fresh registry
#         vs `skopeo copy oci:DIR docker://...` into another fresh registry
#   and `podman pull` when podman is installed.
# Prints each time and the ratio rbuild/other (< 1 means rbuild is faster).
#
# Usage: benches/pull.sh            (RBUILD=path/to/rbuild, LAYERS=3, LAYER_MB=32, RUNS=3,
#                                    RBUILD_BASE=another/rbuild to compare in the same run)
# Use a release build for meaningful numbers: cargo build --release -p rbuild-cli
set -euo pipefail
cd "$(dirname "$0")/.."
RBUILD=${RBUILD:-target/release/rbuild}
LAYERS=${LAYERS:-3}
LAYER_MB=${LAYER_MB:-32}
RUNS=${RUNS:-3}
REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}
for tool in "$RBUILD" "$REGISTRY_BIN" skopeo python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "pull.sh: $tool not found" >&2; exit 1; }
done

work=$(mktemp -d /tmp/rbuild-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_registry NAME: starts it (killed on exit) and sets REG_HOST=127.0.0.1:PORT
start_registry() {
    local dir=$work/reg-$1 port
    port=$(free_port)
    mkdir -p "$dir/storage"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: 127.0.0.1:$port
EOF
    "$REGISTRY_BIN" serve "$dir/config.yml" >"$dir/log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 300); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/v2/')" 2>/dev/null; then
            REG_HOST="127.0.0.1:$port"; return 0
        fi
        sleep 0.1
    done
    echo "registry $1 did not start" >&2; cat "$dir/log" >&2; exit 1
}

now() { date +%s.%N; }
# timed LABEL CMD... : runs CMD, prints seconds
timed() {
    local t0 t1
    t0=$(now)
    "$@" >/dev/null 2>"$work/last.err" || { echo "FAILED: $*" >&2; cat "$work/last.err" >&2; exit 1; }
    t1=$(now)
    python3 -c "print(f'{$t1-$t0:.3f}')"
}
# best-of-RUNS: setup command run before each timing (untimed)
best() {
    local setup=$1; shift
    local best=""
    for _ in $(seq 1 "$RUNS"); do
        eval "$setup"
        local t
        t=$(timed "$@")
        best=$(python3 -c "b='$best'; print(min(float(b), $t) if b else $t)")
    done
    echo "$best"
}

if [ -n "${IMAGE_TAR:-}" ]; then
    # A real image instead of the synthetic one, e.g. the debootstrapped bookworm:
    #   IMAGE_TAR=$(scripts/make-bookworm.sh /tmp/bookworm-rootfs.tar) benches/pull.sh
    # (a rootfs tarball is imported with `rbuild import` and saved as a docker-archive first).
    echo "== image: $IMAGE_TAR"
    if tar -tf "$IMAGE_TAR" manifest.json >/dev/null 2>&1; then
        cp "$IMAGE_TAR" "$work/image.tar"
    else
        "$RBUILD" --root "$work/import" import "$IMAGE_TAR" bench/img:1 >/dev/null
        "$RBUILD" --root "$work/import" save bench/img:1 -o "$work/image.tar"
    fi
else
echo "== image: $LAYERS layers x $LAYER_MB MiB (incompressible)"
python3 - "$work/image.tar" "$LAYERS" "$LAYER_MB" <<'EOF'
import hashlib, io, json, os, sys, tarfile
out, layers, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
diff_ids, names = [], []
with tarfile.open(out, "w") as archive:
    for i in range(layers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            if i == 0:
                # A shell, so a RUN step can start on the image (pull+first RUN below).
                t.add("/bin/busybox", arcname="bin/busybox")
                sh = tarfile.TarInfo("bin/sh"); sh.type = tarfile.SYMTYPE; sh.linkname = "busybox"
                t.addfile(sh)
            for j in range(8):
                data = os.urandom(mb * 1024 * 1024 // 8)
                ti = tarfile.TarInfo(f"layer{i}/file{j}.bin"); ti.size = len(data); ti.mtime = 0
                t.addfile(ti, io.BytesIO(data))
        raw = buf.getvalue()
        d = hashlib.sha256(raw).hexdigest()
        diff_ids.append("sha256:" + d); names.append(f"{d}/layer.tar")
        ti = tarfile.TarInfo(names[-1]); ti.size = len(raw)
        archive.addfile(ti, io.BytesIO(raw))
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cname = hashlib.sha256(cfg).hexdigest() + ".json"
    for name, data in [(cname, cfg), ("manifest.json", json.dumps(
            [{"Config": cname, "RepoTags": ["bench/img:1"], "Layers": names}]).encode())]:
        ti = tarfile.TarInfo(name); ti.size = len(data); archive.addfile(ti, io.BytesIO(data))
EOF
fi

start_registry src; src=$REG_HOST
skopeo copy --quiet --dest-tls-verify=false "docker-archive:$work/image.tar" "docker://$src/bench/img:1"
echo "   seeded $src/bench/img:1"

echo "== pull (best of $RUNS)"
rb_pull=$(best "rm -rf $work/store" "$RBUILD" --root "$work/store" pull -q "$src/bench/img:1")
sk_pull=$(best "rm -rf $work/oci" skopeo copy --quiet --src-tls-verify=false "docker://$src/bench/img:1" "oci:$work/oci:img")
echo "   rbuild pull:            ${rb_pull}s"
rm -rf "$work/store"
rss_kb=$( { /usr/bin/time -f '%M' "$RBUILD" --root "$work/store" pull -q "$src/bench/img:1" >/dev/null; } 2>&1 | tail -1)
if [ -n "${IMAGE_TAR:-}" ]; then
    echo "   rbuild pull peak RSS:   $((rss_kb / 1024)) MB ($IMAGE_TAR)"
else
    echo "   rbuild pull peak RSS:   $((rss_kb / 1024)) MB (largest layer: $LAYER_MB MiB)"
fi
# Until a RUN step can start on the base: pull, unpack for the snapshotter, run one trivial step.
# Timed interleaved with `podman pull` (and RBUILD_BASE, another rbuild binary, when given), so
# that on a shared machine each ratio compares runs made under the same load.
mkdir -p "$work/runctx"
printf 'FROM %s\nRUN true\n' "$src/bench/img:1" >"$work/runctx/Dockerfile"
pd=""
if command -v podman >/dev/null 2>&1; then
    # A private, emptied storage per run: `podman rmi` keeps shared layers, which made pulls look free.
    pd="podman --root $work/podman --runroot $work/podman-run --storage-driver overlay"
fi
rb_run="" pd_pull="" base_run=""
minof() { python3 -c "b='$1'; print(min(float(b), $2) if b else $2)"; }
for i in $(seq 1 "$RUNS"); do
    rm -rf "$work/store"
    t_rb=$(timed "$RBUILD" --root "$work/store" build -q "$work/runctx"); rb_run=$(minof "$rb_run" "$t_rb")
    line="   run $i: rbuild pull+first RUN ${t_rb}s"
    if [ -n "$pd" ]; then
        rm -rf "$work/podman" "$work/podman-run"
        t_pd=$(timed $pd pull -q --tls-verify=false "$src/bench/img:1"); pd_pull=$(minof "$pd_pull" "$t_pd")
        line="$line, podman pull ${t_pd}s ($(python3 -c "print(f'{$t_rb/$t_pd:.2f}')"))"
    fi
    if [ -n "${RBUILD_BASE:-}" ]; then
        rm -rf "$work/store"
        t_b=$(timed "$RBUILD_BASE" --root "$work/store" build -q "$work/runctx"); base_run=$(minof "$base_run" "$t_b")
        line="$line, RBUILD_BASE ${t_b}s"
    fi
    echo "$line"
done
rm -rf "$work/store"
"$RBUILD" --root "$work/store" pull -q "$src/bench/img:1" >/dev/null
echo "   rbuild pull+first RUN:  ${rb_run}s (best of $RUNS)"
[ -n "$base_run" ] && echo "   RBUILD_BASE same:       ${base_run}s ($RBUILD_BASE)"
echo "   skopeo copy -> oci:     ${sk_pull}s"
python3 -c "print(f'   ratio rbuild/skopeo:    {$rb_pull/$sk_pull:.2f}')"
if [ -n "$pd" ]; then
    echo "   podman pull:            ${pd_pull}s"
    python3 -c "print(f'   ratio rbuild/podman:    {$rb_pull/$pd_pull:.2f}')"
    python3 -c "print(f'   ratio rbuild pull+first RUN / podman pull: {$rb_run/$pd_pull:.2f}')"
    [ -n "$base_run" ] && python3 -c "print(f'   ratio RBUILD_BASE pull+first RUN / podman pull: {$base_run/$pd_pull:.2f}')"
else
    echo "   podman: not installed, skipped"
fi

echo "== push into an empty registry (best of $RUNS; its storage is wiped before each run)"
start_registry dst1; dst1=$REG_HOST
start_registry dst2; dst2=$REG_HOST
rb_push=$(best "rm -rf $work/reg-dst1/storage/docker" "$RBUILD" --root "$work/store" push -q "$src/bench/img:1" "$dst1/bench/img:1")
sk_push=$(best "rm -rf $work/reg-dst2/storage/docker" skopeo copy --quiet --dest-tls-verify=false "oci:$work/oci:img" "docker://$dst2/bench/img:1")
echo "   rbuild push:            ${rb_push}s"
echo "   skopeo copy oci -> reg: ${sk_push}s"
python3 -c "print(f'   ratio rbuild/skopeo:    {$rb_push/$sk_push:.2f}')"
