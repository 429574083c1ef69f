#!/bin/sh
# tk-redis entrypoint: passes REDIS_PASSWORD to redis-server (requirepass, and
# masterauth so that replicas can sync) without putting it in the image or in
# the compose command line, then execs the command.
set -eu
if [ "${1:-}" = "redis-server" ] && [ -n "${REDIS_PASSWORD:-}" ]; then
    shift
    set -- redis-server "$@" --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD"
fi
exec "$@"
