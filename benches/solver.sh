#!/usr/bin/env bash
# Times rbuild against docker build (BuildKit) and buildah bud on the scenarios of the solver
# issue's goal table, and writes benches/RESULTS.md: the machine, the tool versions, and per
# scenario the median wall time of each builder with rbuild's ratios to them (< 1: rbuild is
# faster) and rbuild's peak RSS. Not part of CI: the machine is shared and noisy, so read the
# ratios, not the seconds.
#
#   1 multistage  two independent stages that each `sleep 3`, joined by COPY --from (--no-cache)
#   2 ctx-noop    5,000-file / 131 MB context, `COPY . /app` + one RUN: rebuild with nothing changed
#   3 ctx-cold    the same Dockerfile and context, --no-cache
#   4 ctx-edit    the same, one context file edited since the last build
#   5 run-heavy   one RUN writing 20,000 files and ~300 MB (--no-cache)
#   6 many-steps  30 small ENV/COPY/RUN steps (--no-cache)
#   7 big-cold    `COPY . /app` of 100,000 small files (~408 MB), --no-cache
#   8 big-noop    its rebuild with nothing changed
#
# The builders take turns within each round, in an order that rotates from round to round
# (round 1: docker, buildah, rbuild; round 2: buildah, rbuild, docker; ...), so a slow spell of
# the machine hits all three alike. Before every timed build the page cache is flushed (`sync`,
# untimed), so no builder pays for writing back what the one before it left dirty, and the harness
# waits (untimed, at most 60 s) until the disk of $BENCH_DIR has done no I/O for a second: what a
# builder frees in the background after it returns (BuildKit's garbage collection, buildah's
# removals, the discards of the freed blocks on a filesystem mounted with `discard`) would
# otherwise land on the next builder's timed build. A rebuild
# scenario builds once untimed just before its timed build (and the edit scenario then appends a
# line to src/pkg07/file00007.txt, restored when the harness ends). Every build is quiet (-q), so
# no terminal rendering is measured. A build that fails is recorded with the last line of its
# output and the run goes on.
#
# Base image: Debian bookworm from scripts/make-bookworm.sh, imported into each builder as
# rbuild-bench/bookworm:latest (docker import, docker save, rbuild load, buildah pull of the
# docker archive); if debootstrap fails, a busybox root filesystem instead (RESULTS.md says which).
# Contexts are generated once, deterministically, under $BENCH_DIR and reused; so are rbuild's
# store and the base tars. Needs root, python3, bc, /usr/bin/time, buildah, and the test dockerd
# ($DOCKER_HOST, else scripts/dockerd.sh start).
#
# Usage: benches/solver.sh
#   RBUILD=target/release/rbuild  ROUNDS=3  SCENARIOS="1 2 3 4 5 6 7 8"
#   BENCH_DIR=/var/tmp/rbuild-bench  RESULTS=benches/RESULTS.md
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
RBUILD=$(realpath "${RBUILD:-target/release/rbuild}")
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-1 2 3 4 5 6 7 8}
BENCH_DIR=${BENCH_DIR:-/var/tmp/rbuild-bench}
RESULTS=${RESULTS:-benches/RESULTS.md}
DOCKER=/usr/bin/docker # Debian's CLI, whose `docker build` is BuildKit's without a buildx plugin
BUILDERS=(docker buildah rbuild)

die() { echo "solver.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (buildah, the test dockerd)"
for tool in "$RBUILD" "$DOCKER" buildah python3 bc /usr/bin/time; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done
DOCKER_HOST=${DOCKER_HOST:-${RBUILD_TEST_DOCKER_HOST:-$(scripts/dockerd.sh start)}} || die "no dockerd"
export DOCKER_HOST DOCKER_BUILDKIT=1
export RBUILD_ROOT=$BENCH_DIR/rbuild-store
run=$BENCH_DIR/run # this run's logs and figures (small files, overwritten by the next run)
mkdir -p "$BENCH_DIR/ctx" "$BENCH_DIR/base" "$run"
rm -f "$run"/*
BASE=rbuild-bench/bookworm:latest

# --- the build contexts ---------------------------------------------------------------------
# Written once; a stamp file says they are complete, so an interrupted generation starts over.
# s1-s4 are the shapes of the issue's goal table (the same generator and seed, so the same
# bytes); big is 100 directories of 1,000 files of 64..8,096 bytes (408 MB).
ctx=$BENCH_DIR/ctx
gen_version=1
if [ "$(cat "$ctx/.complete" 2>/dev/null)" != "$gen_version" ]; then
    echo "solver.sh: writing the build contexts under $ctx (once)" >&2
    rm -rf "$ctx/s1" "$ctx/s2" "$ctx/s3" "$ctx/s4" "$ctx/big" "$ctx/.complete"
    python3 - "$ctx" "$BASE" <<'PY' || die "context generation failed"
import os, random, sys

root, base = sys.argv[1], sys.argv[2]

def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)

WORDS = [b"alpha", b"beta", b"gamma", b"delta", b"layer", b"image", b"oci", b"docker", b"build",
         b"cache", b"rust", b"tar", b"gzip", b"sha256", b"manifest", b"config"]

def text(rng, n):
    out = bytearray()
    while len(out) < n:
        out += rng.choice(WORDS) + (b"\n" if rng.random() < 0.1 else b" ")
    return bytes(out[:n])

rng = random.Random(79)
# s1: 4,990 text files in 50 packages and ten 10 MiB blobs, half text, half random
for i in range(4990):
    write(f"{root}/s1/src/pkg{i % 50:02d}/file{i:05d}.txt", text(rng, rng.randint(512, 8192)))
for i in range(10):
    write(f"{root}/s1/data/blob{i}.bin", text(rng, 5 << 20) + rng.randbytes(5 << 20))
write(f"{root}/s1/.dockerignore", b"*.log\nbuild/\n")
write(f"{root}/s1/Dockerfile", f"""FROM {base}
WORKDIR /app
COPY . /app
RUN find /app -type f | wc -l > /app.count
CMD ["cat", "/app.count"]
""".encode())

# s2: one RUN that writes 20,000 small files, a 259 MB text file and a 50 MB file of zeros
write(f"{root}/s2/Dockerfile", f"""FROM {base}
RUN mkdir -p /gen && cd /gen && for d in $(seq 1 100); do mkdir d$d; for f in $(seq 1 200); do echo "file $d $f" > d$d/f$f; done; done \\
 && seq 1 30000000 > /gen/big.txt && head -c 50000000 /dev/zero > /gen/zero.bin
CMD ["ls", "/gen"]
""".encode())

# s3: two independent stages of 3 s each, joined by COPY --from
write(f"{root}/s3/Dockerfile", f"""FROM {base} AS left
RUN sleep 3 && echo left > /left.txt

FROM {base} AS right
RUN sleep 3 && echo right > /right.txt

FROM {base}
COPY --from=left /left.txt /out/left.txt
COPY --from=right /right.txt /out/right.txt
CMD ["cat", "/out/left.txt", "/out/right.txt"]
""".encode())

# s4: 30 small steps
steps = [f"FROM {base}"]
for i in range(10):
    write(f"{root}/s4/conf{i}.txt", f"conf {i}\n".encode())
    steps += [f"ENV STEP{i}=value{i}", f"COPY conf{i}.txt /etc/bench/conf{i}.txt",
              f"RUN echo step{i} >> /etc/bench/log"]
steps.append('CMD ["cat", "/etc/bench/log"]')
write(f"{root}/s4/Dockerfile", ("\n".join(steps) + "\n").encode())

# big: 100,000 files of 64..8,096 bytes, slices of one text pool (fast to write, compressible
# like source code)
rng = random.Random(80)
pool = text(rng, 1 << 20)
for d in range(100):
    os.makedirs(f"{root}/big/d{d:03d}")
    for f in range(1000):
        n = rng.randint(64, 8096)
        off = rng.randrange(len(pool) - n)
        with open(f"{root}/big/d{d:03d}/f{f:04d}.txt", "wb") as out:
            out.write(pool[off:off + n])
write(f"{root}/big/Dockerfile", f"""FROM {base}
COPY . /app
CMD ["ls", "/app"]
""".encode())
PY
    cp "$ctx/s1/src/pkg07/file00007.txt" "$ctx/file00007.orig"
    echo "$gen_version" >"$ctx/.complete"
fi
edited=$ctx/s1/src/pkg07/file00007.txt
restore_edit() { cp "$ctx/file00007.orig" "$edited"; }
restore_edit
trap restore_edit EXIT

# --- the base image in the three builders -----------------------------------------------------
base_note=""
if scripts/make-bookworm.sh "$BENCH_DIR/base/rootfs.tar" >/dev/null 2>"$run/make-bookworm.log"; then
    base_kind="Debian bookworm (minbase, debootstrapped by scripts/make-bookworm.sh)"
else
    base_kind="busybox (FALLBACK: debootstrap failed: $(tail -1 "$run/make-bookworm.log"))"
    echo "solver.sh: $base_kind" >&2
    rm -rf "$BENCH_DIR/base/busybox"
    mkdir -p "$BENCH_DIR/base/busybox/bin" "$BENCH_DIR/base/busybox/etc" "$BENCH_DIR/base/busybox/tmp"
    cp /bin/busybox "$BENCH_DIR/base/busybox/bin/"
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$BENCH_DIR/base/busybox/bin/$a"; done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$BENCH_DIR/base/busybox/etc/passwd"
    tar --numeric-owner -C "$BENCH_DIR/base/busybox" -cf "$BENCH_DIR/base/rootfs.tar" .
fi
# Imported again only when the root filesystem changed (make-bookworm.sh makes a new one a day).
sum=$(sha256sum "$BENCH_DIR/base/rootfs.tar" | cut -c1-64)
if [ "$(cat "$BENCH_DIR/base/imported" 2>/dev/null)" != "$sum" ] \
    || ! $DOCKER image inspect "$BASE" >/dev/null 2>&1 \
    || ! buildah inspect --type image "$BASE" >/dev/null 2>&1 \
    || ! "$RBUILD" inspect "$BASE" >/dev/null 2>&1; then
    echo "solver.sh: importing the base image into docker, rbuild and buildah" >&2
    $DOCKER import "$BENCH_DIR/base/rootfs.tar" "$BASE" >/dev/null || die "docker import failed"
    $DOCKER save "$BASE" -o "$BENCH_DIR/base/docker.tar" || die "docker save failed"
    "$RBUILD" load -i "$BENCH_DIR/base/docker.tar" >/dev/null || die "rbuild load failed"
    buildah pull -q "docker-archive:$BENCH_DIR/base/docker.tar" >/dev/null || die "buildah pull failed"
    buildah inspect --type image "$BASE" >/dev/null 2>&1 \
        || buildah tag "$(buildah images -q --filter reference='*rbuild-bench/bookworm*' | head -1)" "$BASE" \
        || die "buildah does not know $BASE"
    echo "$sum" >"$BENCH_DIR/base/imported"
fi

# --- the scenarios ----------------------------------------------------------------------------
#             name        context  kind  goal (rbuild/docker, at most)
declare -A NAME=([1]=multistage [2]=ctx-noop [3]=ctx-cold [4]=ctx-edit [5]=run-heavy [6]=many-steps [7]=big-cold [8]=big-noop)
declare -A CTX=([1]=s3 [2]=s1 [3]=s1 [4]=s1 [5]=s2 [6]=s4 [7]=big [8]=big)
declare -A KIND=([1]=cold [2]=noop [3]=cold [4]=edit [5]=cold [6]=cold [7]=cold [8]=noop)
declare -A GOAL=([1]=1.1 [2]=0.25 [3]=0.6 [4]=0.5 [5]=0.5 [6]=0.25 [7]=0.6 [8]=0.1)
declare -A WHAT=(
    [1]="two independent stages that each \`sleep 3\`, joined by \`COPY --from\` (cold)"
    [2]="no-op rebuild, context of 5,000 files / 131 MB (\`COPY . /app\` + one RUN)"
    [3]="cold \`COPY . /app\` of that context + one RUN"
    [4]="one context file edited, rebuild"
    [5]="RUN writing 20,000 files + ~300 MB (cold)"
    [6]="30 small ENV/COPY/RUN steps (cold)"
    [7]="cold \`COPY . /app\` of 100,000 small files (~408 MB)"
    [8]="no-op rebuild of that context"
)
RSS_GOAL_MB=64 # for scenario 7
for s in $SCENARIOS; do [ -n "${NAME[$s]:-}" ] || die "no scenario $s (1-8)"; done

# The block device under $BENCH_DIR, whose I/O `settle` watches ("" when it cannot be found).
bench_dev=$(basename "$(findmnt -no SOURCE --target "$BENCH_DIR" | head -1)" 2>/dev/null)
[ -r "/sys/class/block/$bench_dev/stat" ] || bench_dev=

settle() { # waits until the bench disk spent no time on I/O for 5 checks in a row, 0.2 s apart
    local stat=/sys/class/block/$bench_dev/stat prev cur quiet=0 checks=0
    [ -n "$bench_dev" ] || return 0
    prev=$(awk '{print $10}' "$stat") # io_ticks: milliseconds the device had I/O in flight
    while [ "$quiet" -lt 5 ] && [ "$checks" -lt 300 ]; do
        sleep 0.2
        checks=$((checks + 1))
        cur=$(awk '{print $10}' "$stat")
        if [ "$cur" = "$prev" ]; then quiet=$((quiet + 1)); else quiet=0; fi
        prev=$cur
    done
}

build() { # TOOL SCENARIO [--no-cache]: one quiet build; rbuild's peak RSS (KB) goes to $run/rss
    local tool=$1 s=$2; shift 2
    local dir=$ctx/${CTX[$s]} tag=rbuild-bench/${CTX[$s]}:latest
    case $tool in
    docker) $DOCKER build --network host -q "$@" -t "$tag" "$dir" ;;
    buildah) buildah bud --layers --isolation chroot --network host -q "$@" -t "$tag" "$dir" ;;
    rbuild) /usr/bin/time -f %M -o "$run/rss" "$RBUILD" build -q "$@" -t "$tag" "$dir" ;;
    esac
}

turn() { # SCENARIO TOOL ROUND: appends "scenario tool round seconds|fail rss reason" to runs.tsv
    local s=$1 tool=$2 r=$3 flags=() t0 t1 secs rc rss=- reason=-
    local log=$run/s$s-$tool-r$r.log
    case ${KIND[$s]} in
    cold) flags=(--no-cache) ;;
    noop) build "$tool" "$s" >"$log.warm" 2>&1 ;;
    edit)
        build "$tool" "$s" >"$log.warm" 2>&1
        # A line no earlier run wrote: an edit that restores content some builder has cached
        # (the same round and turn of an earlier run) would be a cache hit, not a rebuild.
        { cat "$ctx/file00007.orig"; echo "edited in round $r by the $tool turn at $(date +%s.%N)"; } >"$edited"
        ;;
    esac
    rm -f "$run/rss"
    sync
    settle
    t0=$(date +%s.%N)
    build "$tool" "$s" "${flags[@]}" >"$log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    if [ "$rc" = 0 ]; then
        secs=$(printf '%.3f' "$(echo "$t1 - $t0" | bc -l)")
        [ "$tool" = rbuild ] && rss=$(tail -1 "$run/rss" 2>/dev/null || echo -)
    else
        secs=fail
        reason=$(grep -v '^\s*$' "$log" | grep -v '^Command exited' | tail -1 | tr '\t|' '  ' | cut -c1-160)
        [ -n "$reason" ] || reason="exit status $rc"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$tool" "$r" "$secs" "$rss" "$reason" >>"$run/runs.tsv"
    printf 'round %s  %-2s %-10s %-7s %8s s%s\n' "$r" "$s" "${NAME[$s]}" "$tool" "$secs" \
        "$([ "$rss" != - ] && echo "  peak RSS $((rss / 1024)) MB")$([ "$reason" != - ] && echo "  ($reason)")" >&2
}

# --- RESULTS.md -------------------------------------------------------------------------------
median() { # the median of the numbers on stdin, or nothing
    sort -g | awk '{a[NR] = $1} END {if (NR) printf "%.2f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
runs_of() { # SCENARIO TOOL: seconds of its successful runs, one a line
    awk -F'\t' -v s="$1" -v t="$2" '$1 == s && $2 == t && $4 != "fail" {print $4}' "$run/runs.tsv"
}
ratio() { [ -n "$1" ] && [ -n "$2" ] && printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
write_results() { # ROUNDS_DONE [SCENARIO: the round after them is done up to this scenario]
    local done=$1 upto=${2:-} s d b x rd rb met rss rsscol tool m all rt rsss fails
    {
        echo "# rbuild vs docker build vs buildah: solver scenarios"
        echo
        echo "Written by \`benches/solver.sh\` (ROUNDS=$ROUNDS, SCENARIOS=\"$SCENARIOS\"). Each figure is the median"
        if [ -z "$upto" ] && [ "$done" = "$ROUNDS" ]; then
        echo "of $done rounds; within a round the three builders take turns in a rotating order. Ratios are"
    else
        echo "of the rounds completed ($done of $ROUNDS asked for, then round $((done + 1)) up to scenario"
        echo "$upto: the run stopped early; each scenario's table lists its rounds); within a round the three"
        echo "builders take turns in a rotating order. Ratios are"
    fi
        echo "rbuild's median over the other builder's (< 1: rbuild is faster). The machine is shared with other"
        echo "work, so the seconds are noisy; the ratios are the figures to read."
        echo
        echo "- Date: $started to $(date -u '+%H:%M UTC') (load average $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after)"
        echo "- Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) memory, kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
        echo "- Filesystem of the stores and contexts: $(findmnt -no FSTYPE,OPTIONS --target "$BENCH_DIR" | head -1)"
        echo "- docker: server $($DOCKER version --format '{{.Server.Version}}'), client $($DOCKER version --format '{{.Client.Version}}'), BuildKit; \`docker build --network host -q\`"
        echo "- buildah: $(buildah --version | sed 's/^buildah version //'); \`buildah bud --layers --isolation chroot --network host -q\`"
        echo "- rbuild: commit $rbuild_commit ($("$RBUILD" --version)); \`rbuild build -q\`, store on the same filesystem"
        echo "- Base image: $base_kind"
        echo "- Cold builds use \`--no-cache\` for all three (the base image is already in every store); a rebuild"
        echo "  is timed right after an untimed build of the same context. \`sync\`, then a wait until the disk ($bench_dev) has been idle"
        echo "  for a second (both untimed), before every timed build."
        echo
        echo "## Summary"
        echo
        echo "| # | scenario | docker s | buildah s | rbuild s | rbuild/docker | rbuild/buildah | goal rbuild/docker | met | rbuild peak RSS |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"
        for s in $SCENARIOS; do
            d=$(runs_of "$s" docker | median); b=$(runs_of "$s" buildah | median); x=$(runs_of "$s" rbuild | median)
            rd=$(ratio "$x" "$d"); rb=$(ratio "$x" "$b")
            met="-"
            [ -n "$rd" ] && met=$([ "$(echo "$rd <= ${GOAL[$s]}" | bc)" = 1 ] && echo yes || echo no)
            rss=$(awk -F'\t' -v s="$s" '$1 == s && $2 == "rbuild" && $5 != "-" {print $5}' "$run/runs.tsv" | sort -n | tail -1)
            rsscol=-
            if [ -n "$rss" ]; then
                rsscol="$((rss / 1024)) MB"
                [ "$s" = 7 ] && rsscol="$rsscol (goal ≤ $RSS_GOAL_MB MB: $([ $((rss / 1024)) -le $RSS_GOAL_MB ] && echo met || echo missed))"
            fi
            echo "| $s | ${NAME[$s]} | ${d:-failed} | ${b:-failed} | ${x:-failed} | ${rd:--} | ${rb:--} | ≤ ${GOAL[$s]} | $met | $rsscol |"
        done
        echo
        echo "Peak RSS is the largest maximum resident set size \`/usr/bin/time -f %M\` reported for rbuild's"
        echo "timed builds of the scenario (the process or its largest child)."
        for s in $SCENARIOS; do
            echo
            echo "## $s. ${NAME[$s]}: ${WHAT[$s]}"
            echo
            echo "Context \`${CTX[$s]}\`; goal rbuild/docker ≤ ${GOAL[$s]}."
            echo
            echo "| builder | median s | rounds (s) | rbuild/this |"
            echo "|---|---:|---|---:|"
            x=$(runs_of "$s" rbuild | median)
            for tool in "${BUILDERS[@]}"; do
                m=$(runs_of "$s" "$tool" | median)
                all=$(awk -F'\t' -v s="$s" -v t="$tool" '$1 == s && $2 == t {printf "%s%s", sep, $4; sep = ", "}' "$run/runs.tsv")
                if [ "$tool" = rbuild ]; then rt=-; else rt=$(ratio "$x" "$m"); rt=${rt:--}; fi
                echo "| $tool | ${m:-failed} | $all | $rt |"
            done
            rsss=$(awk -F'\t' -v s="$s" '$1 == s && $2 == "rbuild" && $5 != "-" {printf "%s%d", sep, $5 / 1024; sep = ", "}' "$run/runs.tsv")
            [ -n "$rsss" ] && { echo; echo "rbuild peak RSS per round: $rsss MB."; }
            fails=$(awk -F'\t' -v s="$s" '$1 == s && $4 == "fail" {printf "- %s, round %s: failed: %s\n", $2, $3, $6}' "$run/runs.tsv")
            [ -n "$fails" ] && { echo; echo "$fails"; }
        done
    } >"$RESULTS.tmp"
    mv "$RESULTS.tmp" "$RESULTS"
}

rbuild_commit=$(git -C "$repo" rev-parse --short=12 HEAD)
git -C "$repo" diff --quiet HEAD -- crates builder-cli Cargo.toml Cargo.lock || rbuild_commit="$rbuild_commit (with uncommitted changes)"

# One untimed build per builder first, so no timed build pays for a first use of the base image
# (rbuild's first build after loading the base took 11 s for scenario 1 here, the next ones 4 s).
for tool in "${BUILDERS[@]}"; do build "$tool" 1 >"$run/warmup-$tool.log" 2>&1 || die "$tool: warm-up build failed: $(tail -1 "$run/warmup-$tool.log")"; done

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$run/runs.tsv"
# RESULTS.md is rewritten after every scenario, so a run stopped early still leaves its figures.
for r in $(seq 1 "$ROUNDS"); do
    order=("${BUILDERS[@]:$(((r - 1) % 3))}" "${BUILDERS[@]:0:$(((r - 1) % 3))}")
    for s in $SCENARIOS; do
        for tool in "${order[@]}"; do turn "$s" "$tool" "$r"; done
        write_results "$((r - 1))" "$s"
    done
    write_results "$r"
    echo "solver.sh: round $r done, wrote $RESULTS" >&2
done
# Untimed: what the builds left (images their tags moved off, build caches) is dropped, the base
# images kept. Kept across runs, docker's build cache alone grew past 10 GB and filled the disk.
$DOCKER builder prune -af >/dev/null 2>&1 || echo "solver.sh: docker builder prune failed" >&2
$DOCKER image prune -f >/dev/null 2>&1 || echo "solver.sh: docker image prune failed" >&2
buildah rmi --prune >/dev/null 2>&1 || echo "solver.sh: buildah rmi --prune failed" >&2
"$RBUILD" prune >/dev/null 2>&1 || echo "solver.sh: rbuild prune failed" >&2
cat "$RESULTS"
