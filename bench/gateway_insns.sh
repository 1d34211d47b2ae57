#!/usr/bin/env bash
# bench/gateway_insns.sh: instructions per proxied keep-alive request of ONE gateway worker,
# counted by valgrind's callgrind: repeatable on a noisy machine, where requests/s are not.
# Runs tests/gw_upstream and the gateway (one worker, access log off unless BENCH_LOG=on) under
# callgrind; after a warm-up the counters are zeroed, N requests (wrk, 10 keep-alive
# connections) are made over plain HTTP, then over TLS, each dumped and divided by the
# requests wrk counted. Prints "plain N", "tls N" (instructions per request; TLS with the
# handshakes of wrk's 10 connections taken out) and "full N" (instructions per full TLS
# handshake, openssl s_time -new, with the share of mbedTLS's public-key operations: the
# ECDSA signature and the ECDHE key pair and secret, what bench/p256_cost times; 100% would
# be the bound it gives) and keeps the profiles (callgrind_annotate them) in
# bench/out/insns-*/.
# Usage: bench/gateway_insns.sh [REQUESTS] (default 2000). BENCH_PORT_BASE as bench/gateway.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${SUITE_BUILD:-$root/build}
n=${1:-2000}
base=${BENCH_PORT_BASE:-25301}
up_port=$base gw_http=$((base + 9)) gw_https=$((base + 10))
log=off
[ "${BENCH_LOG:-off}" = on ] && log=stdout
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null && command -v wrk >/dev/null \
    || { echo "bench: needs valgrind and wrk" >&2; exit 1; }
out=$root/bench/out/insns-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
tmp=$(mktemp -d /tmp/bench-insns.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "bench: nothing on $1" >&2; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -keyout "$tmp/server.key" -out "$tmp/server.crt" 2>/dev/null
"$build/tests/gw_upstream" $up_port bench >/dev/null 2>&1 &
pids+=($!)
wait_port $up_port
cat > "$tmp/gateway.ini" <<INI
[gateway]
workers = 1
http = 127.0.0.1:$gw_http
http_redirect = off
https = 127.0.0.1:$gw_https
cert = $tmp/server.crt
key = $tmp/server.key
access_log = $log
max_conns_per_ip = 0
[upstream bench]
servers = 127.0.0.1:$up_port
[route /]
upstream = bench
rate = off
gzip = off
INI
valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$tmp/cg.%p" \
    "$build/gateway/gateway" --config "$tmp/gateway.ini" >"$tmp/gateway.log" 2>"$tmp/valgrind.log" &
master=$!
pids+=($master)
wait_port $gw_https
wait_port $gw_http
worker=
for _ in $(seq 100); do worker=$(pgrep -P $master | head -1) && [ -n "$worker" ] && break; sleep 0.1; done
# the worker answers once its start-up (under valgrind: seconds) is over; counting starts later
for _ in $(seq 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$gw_http/hello" && break
    sleep 0.1
done
cat > "$tmp/count.lua" <<LUA
local n = 0
response = function() n = n + 1; if n >= $n then wrk.thread:stop() end end
LUA
# inclusive instructions of the functions named (egrep) in a profile
incl() { callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$1" 2>/dev/null \
    | awk -v re="$2" '$0 ~ re {gsub(",", "", $1); s += $1} END {print s + 0}'; }
for mode in plain tls full; do
    url=http://127.0.0.1:$gw_http/hello
    [ $mode != plain ] && url=https://127.0.0.1:$gw_https/hello
    wrk -t1 -c10 -d3s "$url" >/dev/null 2>&1 # warm-up
    callgrind_control -z "$worker" >"$tmp/zero.log" 2>&1 || { echo "bench: callgrind_control -z failed:" >&2; cat "$tmp/zero.log" >&2; }
    if [ $mode = full ]; then
        reqs=$(openssl s_time -connect 127.0.0.1:$gw_https -new -time 5 -cipher ECDHE-ECDSA-AES128-GCM-SHA256 2>&1 \
            | grep -Eo '[0-9]+ connections in [0-9]+ real' | tail -1 | awk '{print $1}')
    else
        reqs=$(wrk -t1 -c10 -d120s -s "$tmp/count.lua" "$url" 2>&1 | awk '/requests in/ {print $1}')
    fi
    rm -f "$tmp"/cg."$worker".*
    callgrind_control -d "$mode" "$worker" >/dev/null 2>&1
    f=$(ls -t "$tmp"/cg."$worker".* | head -1)
    cp "$f" "$out/$mode.callgrind"
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
    hs=$(incl "$f" ':mbedtls_ssl_handshake \\[')
    case $mode in
    plain) echo "plain $(awk -v i="$ir" -v r="$reqs" 'BEGIN {printf "%.0f", i / r}') (requests $reqs, instructions $ir)" ;;
    tls) echo "tls $(awk -v i="$ir" -v h="$hs" -v r="$reqs" 'BEGIN {printf "%.0f", (i - h) / r}') (requests $reqs, instructions $ir, of which handshakes $hs)" ;;
    full)
        pk=$(incl "$f" ':(mbedtls_pk_sign|mbedtls_ecdh_make_params|mbedtls_ecdh_calc_secret) \\[')
        echo "full $(awk -v i="$ir" -v r="$reqs" 'BEGIN {printf "%.0f", i / r}') (handshakes $reqs; public-key operations $(awk -v p="$pk" -v i="$ir" 'BEGIN {printf "%.1f%%", 100 * p / i}') of the instructions)" ;;
    esac
done
echo "profiles: $out (callgrind_annotate --inclusive=yes FILE)"
