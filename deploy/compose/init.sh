#!/bin/sh
# init: the compose stack's one-shot first step. Writes every secret that is missing into
# /run/suite/secrets (a volume shared read-only with the services) and a development TLS
# certificate into /etc/suite/certs when none is there, so that `cp .env.example .env` is the
# only preparation. A secret given in the environment (from .env) wins and is written as is.
# Runs again at every `up` and changes nothing that exists.
set -eu
s=/run/suite/secrets c=/etc/suite/certs
umask 077
mkdir -p "$s" "$c"
rand() { openssl rand -hex 32; }
put() { # NAME VALUE-IF-MISSING
    if [ -n "$(printenv "$1" 2>/dev/null || true)" ]; then printenv "$1" > "$s/$1.tmp"; mv "$s/$1.tmp" "$s/$1"
    elif [ ! -s "$s/$1" ]; then printf '%s\n' "$2" > "$s/$1.tmp"; mv "$s/$1.tmp" "$s/$1"; fi
}
put POSTGRES_PASSWORD "$(rand)"
put REDIS_PASSWORD "$(rand)"
put PAYMENTS_WEBHOOK_SECRET "$(rand)"
put AUTH_ADMIN_PASSWORD "$(openssl rand -base64 18)"
put SVC_SECRET_PAYMENTS "$(rand)"
put SVC_SECRET_STORAGE "$(rand)"
put SVC_SECRET_WORKERS "$(rand)"
printf 'payments=%s,storage=%s,workers=%s\n' "$(cat "$s/SVC_SECRET_PAYMENTS")" \
    "$(cat "$s/SVC_SECRET_STORAGE")" "$(cat "$s/SVC_SECRET_WORKERS")" > "$s/AUTH_SERVICE_SECRETS"
[ -s "$s/jwt-1.pem" ] || openssl ecparam -name prime256v1 -genkey -noout -out "$s/jwt-1.pem"
if [ ! -s "$c/server.crt" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
        -subj "/CN=${SERVER_NAME:-localhost}" \
        -addext "subjectAltName=DNS:${SERVER_NAME:-localhost},DNS:localhost,IP:127.0.0.1" \
        -keyout "$c/server.key.tmp" -out "$c/server.crt.tmp" 2>/dev/null
    mv "$c/server.key.tmp" "$c/server.key"; mv "$c/server.crt.tmp" "$c/server.crt"
fi
# the services run as uid 10001 (user "suite"), PostgreSQL and Redis as their own users:
# every secret is readable by them all, and by no one else outside the containers
chmod 0755 "$s" "$c"; chmod 0644 "$s"/* "$c/server.crt"; chown 10001 "$c/server.key"
echo "init: secrets and certificate ready (admin password in the secrets volume: AUTH_ADMIN_PASSWORD)"
