#!/usr/bin/env bash
# bench/jobs.sh: the workers' job runner (worker-ocr/runner.c) with job_driver's trivial
# handlers: queue overhead per job (XADD to handler start: median, p99) and jobs per second
# with 1 and 2 driver processes, through tests/integration/jobs_bench.py (a Redis of its own,
# a real svc-auth on the PostgreSQL of PGHOST/PGPORT, a fake svc-storage in Python).
#
# Environment: SUITE_BUILD (build dir, default build), PGHOST/PGPORT/PGUSER, BENCH_JOBS
# (2000), BENCH_LATENCY_JOBS (300), BENCH_CONCURRENCY (jobs at once per driver, 4).
set -euo pipefail
cd "$(dirname "$0")/.."
export SUITE_BUILD=${SUITE_BUILD:-$PWD/build}
exec python3 tests/integration/jobs_bench.py "$@"
