#!/bin/sh
# auth.sh: svc-auth benchmark: login throughput against the argon2 limit measured in the same
# run, /auth/me requests per second (cached token) and its p99 during a login storm, and the
# resident memory of one idle instance. Needs a build (SUITE_BUILD, default build/), wrk,
# openssl, redis-server and the PostgreSQL of PGHOST/PGPORT/PGUSER.
#   bench/auth.sh [seconds per phase, default 10]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/../deploy/install-deps" wrk >/dev/null
exec python3 "$here/auth_bench.py" "$@"
