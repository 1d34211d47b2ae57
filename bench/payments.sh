#!/usr/bin/env bash
# bench/payments.sh: payments created per second through the full path (client -> svc-payments
# -> auth validation -> PostgreSQL) with wrk, against pgbench running the same INSERT on the
# same PostgreSQL in the same run (the physical limit). Prints both rates, the ratio and
# wrk's latency percentiles. Starts two svc-auth and two svc-payments instances of its own
# (databases of its own, dropped after) through tests/integration/payments_bench.py.
#
# Environment: SUITE_BUILD (build dir, default build), PGHOST/PGPORT/PGUSER (127.0.0.1:54320
# postgres), REDIS_HOST/REDIS_PORT (127.0.0.1:63790), BENCH_SECONDS (10), BENCH_CONNECTIONS
# (wrk connections, 32), BENCH_THREADS (wrk threads, 2), PG_POOL_SIZE (per instance, 4),
# BENCH_PGBENCH_CLIENTS (pgbench clients, default 2 x PG_POOL_SIZE: the connections both
# instances use).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps wrk nginx-light >/dev/null
command -v wrk >/dev/null || { echo "bench/payments.sh needs wrk (apt-get install wrk)"; exit 1; }
command -v pgbench >/dev/null || { echo "bench/payments.sh needs pgbench (postgresql-client)"; exit 1; }
exec python3 tests/integration/payments_bench.py "$@"
