#!/usr/bin/env bash
# bench/gateway.sh: the gateway against nginx as a reverse proxy, side by side in one run, on
# this machine: the same upstream (tests/gw_upstream, GET /hello), the same worker count,
# wrk as the client. Measures requests/s and p99 over plain HTTP and over TLS with keep-alive,
# new full TLS handshakes per second (openssl s_time -new) next to mbedTLS's own P-256 cost
# measured now (bench_p256_cost), resumed handshakes per second (s_time -reuse, tickets), and
# the resident memory per worker. Prints a summary; also saved under bench/out/.
# Usage: bench/gateway.sh [DURATION_S] (default 10). Needs wrk, nginx, openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps wrk nginx-light >/dev/null
root=$(pwd)
build=${SUITE_BUILD:-$root/build}
dur=${1:-10}
workers=2
conns=64
up_port=25301 gw_http=25310 gw_https=25311 ng_http=25320 ng_https=25321

for tool in wrk nginx openssl; do
    command -v $tool >/dev/null || PATH=$PATH:/usr/sbin command -v $tool >/dev/null \
        || { echo "bench: $tool missing (apt-get install $tool)" >&2; exit 1; }
done
export PATH=$PATH:/usr/sbin
for bin in gateway/gateway tests/gw_upstream bench/bench_p256_cost; do
    [ -x "$build/$bin" ] || { echo "bench: build first ($build/$bin missing)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/bench-gateway.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    [ -f "$tmp/nginx.pid" ] && kill -QUIT "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
    sleep 0.5
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "bench: nothing on $1" >&2; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -keyout "$tmp/server.key" -out "$tmp/server.crt" 2>/dev/null

"$build/tests/gw_upstream" $up_port bench >/dev/null 2>&1 &
pids+=($!)
wait_port $up_port

cat > "$tmp/gateway.ini" <<INI
[gateway]
workers = $workers
http = 127.0.0.1:$gw_http
http_redirect = off
https = 127.0.0.1:$gw_https
cert = $tmp/server.crt
key = $tmp/server.key
access_log = off
max_conns_per_ip = 0
[upstream bench]
servers = 127.0.0.1:$up_port
[route /]
upstream = bench
rate = off
gzip = off
INI
"$build/gateway/gateway" --config "$tmp/gateway.ini" >"$tmp/gateway.log" 2>&1 &
gw_pid=$!
pids+=($gw_pid)
wait_port $gw_https

mkdir -p "$tmp/ng"
cat > "$tmp/nginx.conf" <<NGX
worker_processes $workers;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $tmp/ng/body;
    proxy_temp_path $tmp/ng/proxy;
    fastcgi_temp_path $tmp/ng/fcgi;
    uwsgi_temp_path $tmp/ng/uwsgi;
    scgi_temp_path $tmp/ng/scgi;
    upstream bench { server 127.0.0.1:$up_port; keepalive 64; }
    ssl_protocols TLSv1.2;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384;
    ssl_prefer_server_ciphers on;
    ssl_session_tickets on;
    ssl_session_cache off;
    server {
        listen 127.0.0.1:$ng_http;
        listen 127.0.0.1:$ng_https ssl;
        ssl_certificate $tmp/server.crt;
        ssl_certificate_key $tmp/server.key;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Real-IP \$remote_addr;
        }
    }
}
NGX
nginx -c "$tmp/nginx.conf" -p "$tmp" -g "daemon on;"
wait_port $ng_https

# wrk: "rps p99_ms"
run_wrk() {
    local out
    out=$(wrk -t2 -c$conns -d"${dur}s" --latency "$1" 2>&1)
    local rps p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' <<<"$out")
    echo "$rps $p99"
}

# openssl s_time over 2 parallel clients: connections per second.
run_stime() {
    local mode=$1 port=$2 total=0 sp=()
    for i in 1 2; do
        openssl s_time -connect 127.0.0.1:$port -$mode -time "$dur" -cipher ECDHE-ECDSA-AES128-GCM-SHA256 \
            >"$tmp/stime.$i" 2>&1 &
        sp+=($!)
    done
    wait "${sp[@]}" || true
    for i in 1 2; do
        # "N connections in T real seconds, ..." (the last such line is this mode's)
        c=$(grep -Eo '[0-9]+ connections in [0-9]+ real seconds' "$tmp/stime.$i" | tail -1 | awk '{ if ($4 > 0) print $1/$4; else print 0 }')
        total=$(awk -v t="$total" -v c="${c:-0}" 'BEGIN {print t + c}')
    done
    echo "$total"
}

rss_of() { # PIDs -> average VmRSS KiB
    local sum=0 n=0
    for p in "$@"; do
        v=$(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        sum=$((sum + v)); n=$((n + 1))
    done
    [ $n -gt 0 ] && echo $((sum / n)) || echo 0
}

run_wrk "http://127.0.0.1:$gw_http/hello" >/dev/null   # warm-up
read -r gw_http_rps gw_http_p99 < <(run_wrk "http://127.0.0.1:$gw_http/hello")
read -r ng_http_rps ng_http_p99 < <(run_wrk "http://127.0.0.1:$ng_http/hello")
read -r gw_tls_rps gw_tls_p99 < <(run_wrk "https://127.0.0.1:$gw_https/hello")
read -r ng_tls_rps ng_tls_p99 < <(run_wrk "https://127.0.0.1:$ng_https/hello")
gw_full=$(run_stime new $gw_https)
ng_full=$(run_stime new $ng_https)
gw_res=$(run_stime reuse $gw_https)
ng_res=$(run_stime reuse $ng_https)
cost=$("$build/bench/bench_p256_cost")
per_core=$(awk '/handshakes_per_core_p256/ {print $2}' <<<"$cost")
per_core_x=$(awk '/handshakes_per_core_x25519/ {print $2}' <<<"$cost")
gw_workers=$(pgrep -P $gw_pid | tr '\n' ' ')
ng_workers=$(pgrep -P "$(cat "$tmp/nginx.pid")" | tr '\n' ' ')
# shellcheck disable=SC2086
gw_rss=$(rss_of $gw_workers)
# shellcheck disable=SC2086
ng_rss=$(rss_of $ng_workers)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
report=$(cat <<REP
gateway vs nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $workers workers each, wrk -t2 -c$conns ${dur}s, $(nproc) cores, $(date -u +%FT%TZ)
| measure | gateway | nginx | gateway/nginx |
| --- | --- | --- | --- |
| HTTP keep-alive req/s | $gw_http_rps | $ng_http_rps | $(ratio "$gw_http_rps" "$ng_http_rps") |
| HTTP p99 ms | $gw_http_p99 | $ng_http_p99 | $(ratio "$gw_http_p99" "$ng_http_p99") |
| TLS keep-alive req/s | $gw_tls_rps | $ng_tls_rps | $(ratio "$gw_tls_rps" "$ng_tls_rps") |
| TLS p99 ms | $gw_tls_p99 | $ng_tls_p99 | $(ratio "$gw_tls_p99" "$ng_tls_p99") |
| full handshakes/s (s_time -new, 2 clients) | $gw_full | $ng_full | $(ratio "$gw_full" "$ng_full") |
| resumed handshakes/s (s_time -reuse, tickets) | $gw_res | $ng_res | $(ratio "$gw_res" "$ng_res") |
| RSS per worker KiB (after the runs) | $gw_rss | $ng_rss | $(ratio "$gw_rss" "$ng_rss") |
mbedTLS public-key cost here: $(tr '\n' ' ' <<<"$cost")
full handshakes vs mbedTLS's own bound ($workers workers x $per_core_x/s with X25519, $per_core/s with P-256 ECDHE): $(ratio "$gw_full" "$(awk -v p="$per_core_x" -v w=$workers 'BEGIN {print p*w}')")
REP
)
echo "$report"
mkdir -p "$root/bench/out"
echo "$report" > "$root/bench/out/gateway-$(date -u +%Y%m%dT%H%M%SZ).md"
