#!/bin/sh
# Healthy when redis-server answers PING and the tk module is loaded.
# Sentinels (TK_ROLE=sentinel) only need to answer PING.
set -eu
port="${REDIS_PORT:-6379}"
if [ -n "${REDIS_PASSWORD:-}" ] && [ "${TK_ROLE:-}" != sentinel ]; then
    export REDISCLI_AUTH="$REDIS_PASSWORD"
fi
[ "$(redis-cli -h 127.0.0.1 -p "$port" PING)" = PONG ] || exit 1
[ "${TK_ROLE:-}" = sentinel ] && exit 0
redis-cli -h 127.0.0.1 -p "$port" MODULE LIST | grep -qx tk || exit 1
