#!/usr/bin/env bash
# RUN-step benchmark against docker build and buildah bud on the same machine, in one run
# (not part of CI; the machine is shared and noisy, so read the ratios, not the seconds).
#
#   overhead: a Dockerfile of STEPS trivial RUN steps on a busybox base (--no-cache): per-step cost
#   bigstep:  one RUN that writes 20,000 small files and a 300 MB file: the cost of committing it
#
# Prints each run (the builders take turns), then the best and median wall times with the ratios
# rbuild/docker and rbuild/buildah (< 1: rbuild is faster), plus rbuild's peak RSS. For the bigstep
# each run is also split into the step itself and what the builder does after it (rbuild and
# docker), because creating 20,000 files on this machine's ext4 (no journal) takes 2-10 s
# depending on which recently freed inodes the allocator has to skip, for every builder alike.
# Needs root, the test dockerd (scripts/dockerd.sh start), buildah.
# Usage: benches/run-steps.sh   (RBUILD=target/release/rbuild STEPS=20 RUNS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
RBUILD=${RBUILD:-target/release/rbuild}
STEPS=${STEPS:-20}
RUNS=${RUNS:-3}
DOCKER_HOST=${RBUILD_TEST_DOCKER_HOST:-$(scripts/dockerd.sh start)}
export DOCKER_HOST DOCKER_BUILDKIT=1
for tool in "$RBUILD" /usr/bin/docker buildah /usr/bin/time; do
    command -v "$tool" >/dev/null 2>&1 || { echo "run-steps.sh: $tool not found" >&2; exit 1; }
done
work=$(mktemp -d /tmp/rbuild-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# A busybox base all three builders have.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
tar --numeric-owner -C "$work/rootfs" -cf "$work/base.tar" .
/usr/bin/docker import "$work/base.tar" bench/busybox:latest >/dev/null
/usr/bin/docker save bench/busybox:latest -o "$work/base-docker.tar"
export RBUILD_ROOT="$work/store"
"$RBUILD" load -i "$work/base-docker.tar" >/dev/null
buildah pull -q "docker-archive:$work/base-docker.tar" >/dev/null
buildah tag "$(buildah images -q --filter reference='*bench/busybox*' | head -1)" bench/busybox:latest 2>/dev/null || true

mkdir -p "$work/overhead" "$work/bigstep"
{
    echo "FROM bench/busybox:latest"
    for i in $(seq 1 "$STEPS"); do echo "RUN echo step $i > /dev/null"; done
} >"$work/overhead/Dockerfile"
# The step stamps the machine's uptime clock (shared by host and containers) when its command
# starts and ends, so each build splits into the step itself (creating 20,000 files is the
# filesystem's work, the same for every builder, and the noisiest part on this machine) and what
# the builder does after it: the commit, the image, the exit.
cat >"$work/bigstep/Dockerfile" <<'DF'
FROM bench/busybox:latest
RUN cut -d' ' -f1 /proc/uptime >/.t0 && mkdir /data && cd /data && i=0 && while [ $i -lt 20000 ]; do echo $i > f$i; i=$((i+1)); done && dd if=/dev/urandom of=/big bs=1M count=300 2>/dev/null && cut -d' ' -f1 /proc/uptime >/.t1
DF

secs() { # wall time in seconds of one run of "$@"; the end on the uptime clock goes to $work/end
    local t0 t1
    t0=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; t1=$(date +%s.%N)
    cut -d' ' -f1 /proc/uptime >"$work/end"
    echo "$t1 - $t0" | bc -l
}
# "STEP AFTER": seconds the bigstep's command ran, and from its end to the end of the build, read
# from the stamps in the image just built: rbuild's from its snapshot tree, docker's with `docker run`.
split_times() { # T0 T1
    echo "$2 - $1" | bc -l
    echo "$(cat "$work/end") - $2" | bc -l
}
split_rbuild() {
    local top tree
    top=$("$RBUILD" inspect bench/bigstep | sed -n '/"Layers"/,/]/p' | grep -o 'sha256:[0-9a-f]\{64\}' | tail -1)
    tree="$RBUILD_ROOT/snapshots/overlay/${top#sha256:}"
    echo $(split_times "$(cat "$tree/.t0")" "$(cat "$tree/.t1")")
}
split_docker() {
    echo $(split_times $(/usr/bin/docker run --rm --network none bench/bigstep cat /.t0 /.t1))
}
min() { printf '%s\n' "$@" | sort -g | head -1; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# The three builders take turns within each run, so a slow spell of the shared machine (or of the
# filesystem: ext4 without a journal skips recently freed inodes when it allocates, and a step that
# creates 20,000 files pays for that per file) hits all of them alike; per-run ratios show the spread.
for case in overhead bigstep; do
    ctx="$work/$case"
    rs=(); ds=(); bs=(); ras=(); das=()
    for run in $(seq 1 "$RUNS"); do
        r=$(secs "$RBUILD" --no-cache -q -t "bench/$case" "$ctx")
        [ "$case" = bigstep ] && read -r rstep rafter < <(split_rbuild) && ras+=("$rafter")
        d=$(secs /usr/bin/docker build --no-cache --network host -q -t "bench/$case" "$ctx")
        [ "$case" = bigstep ] && read -r dstep dafter < <(split_docker) && das+=("$dafter")
        b=$(secs buildah bud --isolation chroot --no-cache -q -t "bench/$case" "$ctx")
        rs+=("$r"); ds+=("$d"); bs+=("$b")
        printf '%-9s run %s: rbuild %6.2fs  docker %6.2fs  buildah %6.2fs  rbuild/docker %5.2f  rbuild/buildah %5.2f\n' \
            "$case" "$run" "$r" "$d" "$b" "$(echo "$r / $d" | bc -l)" "$(echo "$r / $b" | bc -l)"
        if [ "$case" = bigstep ]; then
            printf '%-9s        the step itself (the same kernel work): rbuild %5.2fs  docker %5.2fs\n' "" "$rstep" "$dstep"
            printf '%-9s        after the step (commit, image, exit): rbuild %5.2fs  docker %5.2fs  rbuild/docker %5.2f\n' \
                "" "$rafter" "$dafter" "$(echo "$rafter / $dafter" | bc -l)"
        fi
    done
    rss=$( { /usr/bin/time -f "%M" "$RBUILD" --no-cache -q -t "bench/$case" "$ctx" >/dev/null; } 2>&1 | tail -3) || { echo "rbuild failed: $rss" >&2; exit 1; }
    for stat in min median; do
        r=$($stat "${rs[@]}"); d=$($stat "${ds[@]}"); b=$($stat "${bs[@]}")
        printf '%-9s %-6s rbuild %6.2fs  docker %6.2fs  buildah %6.2fs  rbuild/docker %5.2f  rbuild/buildah %5.2f\n' \
            "$case" "$stat" "$r" "$d" "$b" "$(echo "$r / $d" | bc -l)" "$(echo "$r / $b" | bc -l)"
    done
    if [ "$case" = bigstep ]; then
        r=$(median "${ras[@]}"); d=$(median "${das[@]}")
        printf '%-9s median after the step: rbuild %5.2fs  docker %5.2fs  rbuild/docker %5.2f\n' \
            "$case" "$r" "$d" "$(echo "$r / $d" | bc -l)"
    fi
    printf '%-9s rbuild peak RSS %s MB\n' "$case" "$((rss / 1024))"
    if [ "$case" = overhead ]; then
        r=$(min "${rs[@]}"); d=$(min "${ds[@]}"); b=$(min "${bs[@]}")
        printf '%-9s per step: rbuild %.0f ms, docker %.0f ms, buildah %.0f ms (best total / %s steps, base included)\n' \
            "" "$(echo "$r * 1000 / $STEPS" | bc -l)" "$(echo "$d * 1000 / $STEPS" | bc -l)" "$(echo "$b * 1000 / $STEPS" | bc -l)" "$STEPS"
    fi
done
