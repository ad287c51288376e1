#!/usr/bin/env bash
# The whole test suite: installs what the tests use, starts a private dockerd (the differential
# oracle), then runs every test of the workspace. Tests that need docker fail (never skip) without it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/test-users.sh
RBUILD_TEST_DOCKER_HOST=$(scripts/dockerd.sh start)
export RBUILD_TEST_DOCKER_HOST
trap 'scripts/dockerd.sh stop' EXIT
cargo test --workspace --locked "$@"
# The facade's examples are the embedding documentation: they must build and run (offline, FROM scratch).
for ex in minimal progress_cancel tokio_userns; do cargo run --locked -q -p rbuild-lib --example "$ex"; done
