#!/bin/sh
# redis: the compose stack's Redis: append-only file fsynced every second, a password from
# REDIS_PASSWORD_FILE (in a config file, not on the command line).
set -eu
umask 077
{ echo "bind 0.0.0.0"; echo "protected-mode no"; echo "dir /data"; echo "appendonly yes"
  echo "appendfsync everysec"; echo "save \"\""
  printf 'requirepass "%s"\n' "$(cat "$REDIS_PASSWORD_FILE")"; } > /tmp/redis.conf
exec redis-server /tmp/redis.conf
