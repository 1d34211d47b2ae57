#!/usr/bin/env bash
# bench/upload.sh: a 1 GiB upload to svc-storage (throughput beside cp on the same volume, and
# svc-storage's resident memory through it); see bench/upload_bench.py. Uses PG*/REDIS_* and
# SUITE_BUILD as bench/run sets them.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/upload_bench.py "$@"
