#!/bin/sh
# The entrypoint of the CI's redis image (Debian's redis-server package), as the official redis
# image behaves: it runs as the user `redis` in /data, and `redis-server` starts without
# protected mode (other containers reach it by name); options given after it win.
set -eu
if [ "${1:-}" = redis-server ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
