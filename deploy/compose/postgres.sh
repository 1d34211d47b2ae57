#!/bin/sh
# postgres: the compose stack's PostgreSQL (a local image where none can be pulled). Creates
# the cluster on first start with the password from POSTGRES_PASSWORD_FILE, creates each
# database of POSTGRES_DATABASES that is missing (one per service), then runs the server.
set -eu
bin=/usr/lib/postgresql/15/bin
data=${PGDATA:-/var/lib/postgresql/data}
if [ ! -s "$data/PG_VERSION" ]; then
    "$bin/initdb" -D "$data" -U postgres --auth=scram-sha-256 --pwfile="$POSTGRES_PASSWORD_FILE" \
        -E UTF8 --locale=C.UTF-8 >/dev/null
    echo "listen_addresses = '*'" >> "$data/postgresql.conf"
    echo "host all all all scram-sha-256" >> "$data/pg_hba.conf"
fi
for db in $(echo "${POSTGRES_DATABASES:-}" | tr ',' ' '); do
    echo "SELECT 'exists' FROM pg_database WHERE datname = '$db'" |
        "$bin/postgres" --single -D "$data" postgres 2>/dev/null | grep -q '"exists"' ||
        echo "CREATE DATABASE $db" | "$bin/postgres" --single -D "$data" postgres >/dev/null
done
exec "$bin/postgres" -D "$data"
