#!/usr/bin/env bash
# bench/gateway.sh: the gateway against nginx as a reverse proxy, side by side in one run, on
# this machine: the same upstream (tests/gw_upstream, GET /hello), wrk as the client.
# Two comparisons, each printed as a table:
#   - worker for worker: ONE gateway worker against ONE nginx worker, wrk -t1 -c50, the runs
#     alternated (gateway, nginx, gateway, ...; BENCH_ROUNDS rounds, medians reported) so that
#     both suffer the same noise: requests/s and p99 over plain HTTP and TLS with keep-alive,
#     plain HTTP again with the access log on (both sides log each request to a file), system
#     calls per keep-alive request (strace -c on the worker, 2000 requests over 10
#     connections), the worker's CPU time per request (what a busy machine disturbs least),
#     resident memory per worker, resumed (tickets) and full TLS handshakes per second and per
#     worker CPU-second, the latter next to mbedTLS's own public-key bound (bench_p256_cost);
#   - the deployment: two workers each, wrk -t2 -c64, the same measures without alternation.
# Prints the tables; also saved under bench/out/.
# Usage: bench/gateway.sh [DURATION_S] (default 10). Environment:
#   BENCH_PORT_BASE  first of the 30 ports used (default 25301)
#   BENCH_ROUNDS     alternated rounds of the one-worker comparison (default 3)
#   BENCH_ONLY       "one" or "two": only that comparison
# Needs wrk, nginx, openssl, strace.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps wrk nginx-light strace >/dev/null
root=$(pwd)
build=${SUITE_BUILD:-$root/build}
dur=${1:-10}
rounds=${BENCH_ROUNDS:-3}
only=${BENCH_ONLY:-}
base=${BENCH_PORT_BASE:-25301}
up_port=$base gw_http=$((base + 9)) gw_https=$((base + 10)) ng_http=$((base + 19)) ng_https=$((base + 20))

for tool in wrk nginx openssl strace; do
    command -v $tool >/dev/null || PATH=$PATH:/usr/sbin command -v $tool >/dev/null \
        || { echo "bench: $tool missing (apt-get install $tool)" >&2; exit 1; }
done
export PATH=$PATH:/usr/sbin
for bin in gateway/gateway tests/gw_upstream bench/bench_p256_cost; do
    [ -x "$build/$bin" ] || { echo "bench: build first ($build/$bin missing)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/bench-gateway.XXXXXX)
pids=()
gw_pid=
cleanup() {
    stop_gw
    stop_ng
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.3
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

# start_gw WORKERS on|off (access log): the gateway, its master's pid in gw_pid.
start_gw() {
    local log=off
    [ "$2" = on ] && log=stdout
    cat > "$tmp/gateway.ini" <<INI
[gateway]
workers = $1
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
    "$build/gateway/gateway" --config "$tmp/gateway.ini" >"$tmp/gateway.log" 2>&1 &
    gw_pid=$!
    wait_port $gw_https
    wait_port $gw_http
    for _ in $(seq 50); do [ "$(pgrep -c -P $gw_pid)" -ge "$1" ] && break; sleep 0.1; done
}
stop_gw() {
    [ -n "$gw_pid" ] || return 0
    kill -TERM "$gw_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$gw_pid" 2>/dev/null || true
    gw_pid=
}

# start_ng WORKERS on|off (access log)
start_ng() {
    local log=off
    [ "$2" = on ] && log="$tmp/nginx-access.log"
    mkdir -p "$tmp/ng"
    cat > "$tmp/nginx.conf" <<NGX
worker_processes $1;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log $log;
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
    wait_port $ng_http
}
stop_ng() {
    [ -f "$tmp/nginx.pid" ] || return 0
    local p
    p=$(cat "$tmp/nginx.pid")
    kill -QUIT "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    rm -f "$tmp/nginx.pid"
}
gw_workers() { pgrep -P "$gw_pid" | tr '\n' ' '; }
ng_workers() { pgrep -P "$(cat "$tmp/nginx.pid")" | tr '\n' ' '; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; } # utime+stime

# run_wrk THREADS CONNS URL [PID]: "rps p99_ms cpu_us" (cpu_us: PID's CPU time per request,
# what a busy machine disturbs least)
run_wrk() {
    local out rps p99 reqs t0=0 t1=0
    [ -n "${4:-}" ] && t0=$(cpu_ticks "$4")
    out=$(wrk -t"$1" -c"$2" -d"${dur}s" --latency "$3" 2>&1)
    [ -n "${4:-}" ] && t1=$(cpu_ticks "$4")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' <<<"$out")
    echo "${rps:-0} ${p99:-0} $(awk -v t="$((t1 - t0))" -v r="${reqs:-0}" -v hz="$(getconf CLK_TCK)" 'BEGIN { if (r > 0) printf "%.1f", t * 1e6 / hz / r; else print 0 }')"
}

# openssl s_time over N parallel clients: connections per second, and with PID, connections
# per CPU-second of PID.
run_stime() {
    local mode=$1 port=$2 n=$3 total=0 sp=() c t0=0 t1=0
    [ -n "${4:-}" ] && t0=$(cpu_ticks "$4")
    for i in $(seq "$n"); do
        openssl s_time -connect 127.0.0.1:$port -$mode -time "$dur" -cipher ECDHE-ECDSA-AES128-GCM-SHA256 \
            >"$tmp/stime.$i" 2>&1 &
        sp+=($!)
    done
    wait "${sp[@]}" || true
    [ -n "${4:-}" ] && t1=$(cpu_ticks "$4")
    local count=0
    for i in $(seq "$n"); do
        # "N connections in T real seconds, ..." (the last such line is this mode's)
        c=$(grep -Eo '[0-9]+ connections in [0-9]+ real seconds' "$tmp/stime.$i" | tail -1 | awk '{ if ($4 > 0) print $1/$4; else print 0 }')
        total=$(awk -v t="$total" -v c="${c:-0}" 'BEGIN {print t + c}')
        c=$(grep -Eo '[0-9]+ connections in [0-9]+ real seconds' "$tmp/stime.$i" | tail -1 | awk '{print $1}')
        count=$((count + ${c:-0}))
    done
    if [ -n "${4:-}" ]; then
        echo "$total $(awk -v c="$count" -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" 'BEGIN { if (t > 0) printf "%.1f", c * hz / t; else print 0 }')"
    else
        echo "$total"
    fi
}

# syscalls_per_req PID URL: system calls the process makes per request (strace -c) for 2000
# keep-alive requests over 10 connections; "total name=n.nn ..." (the five most made).
cat > "$tmp/count.lua" <<'LUA'
local n = 0
response = function() n = n + 1; if n >= 2000 then wrk.thread:stop() end end
LUA
syscalls_per_req() {
    local out reqs
    strace -c -f -U calls,name -S calls -p "$1" -o "$tmp/strace.out" 2>/dev/null &
    local sp=$!
    sleep 0.5
    out=$(wrk -t1 -c10 -d30s -s "$tmp/count.lua" "$2" 2>&1)
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    sleep 0.2
    kill -INT $sp 2>/dev/null || true
    wait $sp 2>/dev/null || true
    awk -v r="${reqs:-0}" '
        $1 ~ /^[0-9]+$/ && NF == 2 { if ($2 == "total") tot = $1; else if (n < 5) { top = top sprintf(" %s=%.2f", $2, $1 / r); n++ } }
        END { if (r > 0) printf "%.2f%s\n", tot / r, top; else print "n/a" }' "$tmp/strace.out"
}

rss_of() { # PIDs -> average VmRSS KiB
    local sum=0 n=0 v
    for p in "$@"; do
        v=$(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        sum=$((sum + v)); n=$((n + 1))
    done
    [ $n -gt 0 ] && echo $((sum / n)) || echo 0
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {if (NR == 0) print 0; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

cost=$("$build/bench/bench_p256_cost")
per_core=$(awk '/handshakes_per_core_p256/ {print $2}' <<<"$cost")
per_core_x=$(awk '/handshakes_per_core_x25519/ {print $2}' <<<"$cost")
stamp=$(date -u +%FT%TZ)
nginx_v=$(nginx -v 2>&1 | sed 's/.*nginx\///')
report=""

# ---- one worker each, alternated runs
if [ "$only" != two ]; then
    start_gw 1 off
    start_ng 1 off
    run_wrk 1 50 "http://127.0.0.1:$gw_http/hello" >/dev/null # warm-up
    run_wrk 1 50 "http://127.0.0.1:$ng_http/hello" >/dev/null
    declare -A v
    for k in gw_h_rps gw_h_p99 gw_h_cpu ng_h_rps ng_h_p99 ng_h_cpu gw_t_rps gw_t_p99 gw_t_cpu \
        ng_t_rps ng_t_p99 ng_t_cpu gw_l_rps gw_l_p99 gw_l_cpu ng_l_rps ng_l_p99 ng_l_cpu; do v[$k]=""; done
    # one measure: wrk against SIDE_KIND's URL, its worker's CPU
    one() { # KEY URL PID
        local a b c
        read -r a b c < <(run_wrk 1 50 "$2" "$3")
        v[${1}_rps]+=" $a"; v[${1}_p99]+=" $b"; v[${1}_cpu]+=" $c"
    }
    gww=$(gw_workers) ngw=$(ng_workers)
    for _ in $(seq "$rounds"); do
        one gw_h "http://127.0.0.1:$gw_http/hello" $gww
        one ng_h "http://127.0.0.1:$ng_http/hello" $ngw
        one gw_t "https://127.0.0.1:$gw_https/hello" $gww
        one ng_t "https://127.0.0.1:$ng_https/hello" $ngw
    done
    gw_sys_h=$(syscalls_per_req "$(gw_workers)" "http://127.0.0.1:$gw_http/hello")
    ng_sys_h=$(syscalls_per_req "$(ng_workers)" "http://127.0.0.1:$ng_http/hello")
    gw_sys_t=$(syscalls_per_req "$(gw_workers)" "https://127.0.0.1:$gw_https/hello")
    ng_sys_t=$(syscalls_per_req "$(ng_workers)" "https://127.0.0.1:$ng_https/hello")
    read -r gw_res gw_res_cpu < <(run_stime reuse $gw_https 2 $gww)
    read -r ng_res ng_res_cpu < <(run_stime reuse $ng_https 2 $ngw)
    read -r gw_full gw_full_cpu < <(run_stime new $gw_https 4 $gww)
    read -r ng_full ng_full_cpu < <(run_stime new $ng_https 4 $ngw)
    gw_rss=$(rss_of $gww)
    ng_rss=$(rss_of $ngw)
    stop_gw
    stop_ng
    start_gw 1 on
    start_ng 1 on
    gww=$(gw_workers) ngw=$(ng_workers)
    for _ in $(seq "$rounds"); do
        one gw_l "http://127.0.0.1:$gw_http/hello" $gww
        one ng_l "http://127.0.0.1:$ng_http/hello" $ngw
    done
    gw_sys_l=$(syscalls_per_req "$(gw_workers)" "http://127.0.0.1:$gw_http/hello")
    ng_sys_l=$(syscalls_per_req "$(ng_workers)" "http://127.0.0.1:$ng_http/hello")
    stop_gw
    stop_ng
    for k in "${!v[@]}"; do v[$k]=$(median <<<"${v[$k]}"); done
    row() { echo "| $1 | $2 | $3 | $(ratio "$2" "$3") |"; }
    report+="gateway vs nginx $nginx_v, ONE worker each, wrk -t1 -c50 ${dur}s, medians of $rounds alternated runs, $(nproc) cores, $stamp
| measure | gateway | nginx | gateway/nginx |
| --- | --- | --- | --- |
$(row "HTTP keep-alive req/s" "${v[gw_h_rps]}" "${v[ng_h_rps]}")
$(row "HTTP p99 ms" "${v[gw_h_p99]}" "${v[ng_h_p99]}")
$(row "HTTP worker CPU us per request" "${v[gw_h_cpu]}" "${v[ng_h_cpu]}")
$(row "TLS keep-alive req/s" "${v[gw_t_rps]}" "${v[ng_t_rps]}")
$(row "TLS p99 ms" "${v[gw_t_p99]}" "${v[ng_t_p99]}")
$(row "TLS worker CPU us per request" "${v[gw_t_cpu]}" "${v[ng_t_cpu]}")
$(row "HTTP keep-alive req/s, access log on" "${v[gw_l_rps]}" "${v[ng_l_rps]}")
$(row "HTTP p99 ms, access log on" "${v[gw_l_p99]}" "${v[ng_l_p99]}")
$(row "HTTP worker CPU us per request, access log on" "${v[gw_l_cpu]}" "${v[ng_l_cpu]}")
$(row "syscalls per HTTP request" "${gw_sys_h%% *}" "${ng_sys_h%% *}")
$(row "syscalls per TLS request" "${gw_sys_t%% *}" "${ng_sys_t%% *}")
$(row "syscalls per HTTP request, access log on" "${gw_sys_l%% *}" "${ng_sys_l%% *}")
$(row "resumed handshakes/s (s_time -reuse, 2 clients)" "$gw_res" "$ng_res")
$(row "resumed handshakes per worker CPU-second" "$gw_res_cpu" "$ng_res_cpu")
$(row "full handshakes/s (s_time -new, 4 clients)" "$gw_full" "$ng_full")
$(row "full handshakes per worker CPU-second" "$gw_full_cpu" "$ng_full_cpu")
$(row "RSS per worker KiB (after the runs)" "$gw_rss" "$ng_rss")
syscalls per request, the most made: gateway HTTP:${gw_sys_h#* } | nginx HTTP:${ng_sys_h#* }
  gateway TLS:${gw_sys_t#* } | nginx TLS:${ng_sys_t#* }
  gateway HTTP log on:${gw_sys_l#* } | nginx HTTP log on:${ng_sys_l#* }
full handshakes vs mbedTLS's own bound ($per_core_x/s per core with X25519, $per_core/s with P-256 ECDHE): $(ratio "$gw_full" "$per_core_x") per second, $(ratio "$gw_full_cpu" "$per_core_x") per worker CPU-second

"
fi

# ---- the deployment: two workers each
if [ "$only" != one ]; then
    workers=2
    conns=64
    start_gw $workers off
    start_ng $workers off
    run_wrk 2 $conns "http://127.0.0.1:$gw_http/hello" >/dev/null # warm-up
    read -r gw_http_rps gw_http_p99 _ < <(run_wrk 2 $conns "http://127.0.0.1:$gw_http/hello")
    read -r ng_http_rps ng_http_p99 _ < <(run_wrk 2 $conns "http://127.0.0.1:$ng_http/hello")
    read -r gw_tls_rps gw_tls_p99 _ < <(run_wrk 2 $conns "https://127.0.0.1:$gw_https/hello")
    read -r ng_tls_rps ng_tls_p99 _ < <(run_wrk 2 $conns "https://127.0.0.1:$ng_https/hello")
    gw_full=$(run_stime new $gw_https 2)
    ng_full=$(run_stime new $ng_https 2)
    gw_res=$(run_stime reuse $gw_https 2)
    ng_res=$(run_stime reuse $ng_https 2)
    # shellcheck disable=SC2046
    gw_rss=$(rss_of $(gw_workers))
    # shellcheck disable=SC2046
    ng_rss=$(rss_of $(ng_workers))
    stop_gw
    stop_ng
    report+="gateway vs nginx $nginx_v, $workers workers each, wrk -t2 -c$conns ${dur}s, $(nproc) cores, $stamp
| measure | gateway | nginx | gateway/nginx |
| --- | --- | --- | --- |
| HTTP keep-alive req/s | $gw_http_rps | $ng_http_rps | $(ratio "$gw_http_rps" "$ng_http_rps") |
| HTTP p99 ms | $gw_http_p99 | $ng_http_p99 | $(ratio "$gw_http_p99" "$ng_http_p99") |
| TLS keep-alive req/s | $gw_tls_rps | $ng_tls_rps | $(ratio "$gw_tls_rps" "$ng_tls_rps") |
| TLS p99 ms | $gw_tls_p99 | $ng_tls_p99 | $(ratio "$gw_tls_p99" "$ng_tls_p99") |
| full handshakes/s (s_time -new, 2 clients) | $gw_full | $ng_full | $(ratio "$gw_full" "$ng_full") |
| resumed handshakes/s (s_time -reuse, tickets) | $gw_res | $ng_res | $(ratio "$gw_res" "$ng_res") |
| RSS per worker KiB (after the runs) | $gw_rss | $ng_rss | $(ratio "$gw_rss" "$ng_rss") |
full handshakes vs mbedTLS's own bound ($workers workers x $per_core_x/s with X25519, $per_core/s with P-256 ECDHE): $(ratio "$gw_full" "$(awk -v p="$per_core_x" -v w=$workers 'BEGIN {print p*w}')")

"
fi
report+="mbedTLS public-key cost here: $(tr '\n' ' ' <<<"$cost")"
echo "$report"
mkdir -p "$root/bench/out"
echo "$report" > "$root/bench/out/gateway-$(date -u +%Y%m%dT%H%M%SZ).md"
